//! edge-registry: an OCI Distribution v1.1 registry.
//!
//! The core (everything but [`native`] and `worker`) is sans-IO: it turns an
//! [`http::Request`] into an [`http::Response`] over an async [`storage::Storage`], and knows
//! nothing of tokio, hyper, the filesystem or Cloudflare. Adapters convert requests, responses
//! and streams, and supply the storage.

pub mod auth;
pub mod body;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod names;
pub mod range;
pub mod registry;
pub mod route;
pub mod storage;
pub mod ui;
pub mod upload;
pub mod urls;

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub mod native;

#[cfg(target_arch = "wasm32")]
pub mod worker;

pub use body::Body;
pub use error::{Error, ErrorCode};
pub use registry::{Config, Registry};
