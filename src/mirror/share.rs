//! Sharing one upstream fetch of a blob among the requests that miss it at once. The core
//! starts a fetch through a [`Share`]: [`Direct`] (the Worker's, and the default) runs one per
//! request; the native adapter's runs the first and streams its bytes to every request that
//! wants the same blob meanwhile, as they arrive.

use std::future::Future;
use std::pin::Pin;

use crate::body::{ByteStream, MaybeSendSync};
use crate::error::Error;

/// A blob on its way from upstream: its size, if the upstream said, and its bytes. The stream
/// ends without an error only once the blob was verified against its digest and stored; a
/// failure (a mismatch, the upstream gone) ends it with an error, and nothing is stored.
pub struct Fill {
    pub size: Option<u64>,
    pub body: ByteStream,
}

#[cfg(not(target_arch = "wasm32"))]
pub type FillFuture = Pin<Box<dyn Future<Output = Result<Fill, Error>> + Send>>;
#[cfg(target_arch = "wasm32")]
pub type FillFuture = Pin<Box<dyn Future<Output = Result<Fill, Error>>>>;

/// Starts a fetch (called at most once per shared fetch).
#[cfg(not(target_arch = "wasm32"))]
pub type StartFill = Box<dyn FnOnce() -> FillFuture + Send>;
#[cfg(target_arch = "wasm32")]
pub type StartFill = Box<dyn FnOnce() -> FillFuture>;

/// Runs blob fetches, sharing them where the platform can.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Share: MaybeSendSync {
    /// This request's copy of the fetch of `key`: a fetch of `key` already under way, joined
    /// from its first byte, or else the one `start` begins.
    async fn share(&self, key: String, start: StartFill) -> Result<Fill, Error>;
}

/// One fetch per request.
pub struct Direct;

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Share for Direct {
    async fn share(&self, _key: String, start: StartFill) -> Result<Fill, Error> {
        start().await
    }
}
