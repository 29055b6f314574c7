//! The body type the core speaks: empty, a buffer, or a stream of chunks. Adapters convert
//! their platform's bodies to and from it without buffering streams.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A message's declared `Content-Length`, if it has a valid one.
pub fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A stream of body chunks. `Send` natively; on wasm32 the platform's streams are not.
#[cfg(not(target_arch = "wasm32"))]
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;
#[cfg(target_arch = "wasm32")]
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>>>>;

/// `Send` natively, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Send + Sync` natively, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}

/// A platform's own body (a JavaScript `ReadableStream` in a Worker, say). The core never looks
/// inside: it reads it as a stream when it needs the bytes, while an adapter or a storage backend
/// of the same platform may take it whole, so bytes can go from the network to storage (or back)
/// without passing through the core.
pub trait NativeBody: MaybeSend {
    fn into_stream(self: Box<Self>) -> ByteStream;
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

pub enum Body {
    Empty,
    Full(Bytes),
    Stream(ByteStream),
    Native(Box<dyn NativeBody>),
}

impl Body {
    pub fn into_stream(self) -> ByteStream {
        match self {
            Body::Empty => Box::pin(futures_util::stream::empty()),
            Body::Full(b) => Box::pin(futures_util::stream::once(async move { Ok(b) })),
            Body::Stream(s) => s,
            Body::Native(n) => n.into_stream(),
        }
    }

    /// Reads the whole body if it is at most `limit` bytes; `Ok(None)` when it is longer.
    pub async fn collect_limited(self, limit: usize) -> Result<Option<Bytes>, BoxError> {
        match self {
            Body::Empty => Ok(Some(Bytes::new())),
            Body::Full(b) => Ok((b.len() <= limit).then_some(b)),
            other => {
                let mut s = other.into_stream();
                let mut buf = BytesMut::new();
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    if buf.len() + chunk.len() > limit {
                        return Ok(None);
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(Some(buf.freeze()))
            }
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::Full(Bytes::from(v))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Full(b)
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream"),
            Body::Native(_) => f.write_str("Body::Native"),
        }
    }
}
