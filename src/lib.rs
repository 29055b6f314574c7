//! edge-registry: an OCI Distribution v1.1 registry.
//!
//! The core (everything but [`native`] and `worker`) is sans-IO: it turns an
//! [`http::Request`] into an [`http::Response`] plus the [`event::Event`]s of what it did, over
//! an async [`storage::Storage`], and knows nothing of tokio, hyper, the filesystem or
//! Cloudflare. Platform needs come in as provider traits ([`clock::Clock`],
//! [`auth::PasswordCheck`]); adapters convert requests, responses, streams and settings, and
//! supply the storage.
//!
//! - [`route`]: the operation table (route + method → [`route::Op`], the access it needs);
//! - [`registry`]: the handlers, one file per API area;
//! - [`repo`]: the domain layer over [`storage::Storage`] (key layout, manifest records, the
//!   order of writes, upload sessions), which emits the events;
//! - [`auth`]: access control; [`settings`]: every setting, one set of names and defaults;
//! - [`error`]: the spec's error codes and their one JSON body; [`urls`]: the one URL builder;
//! - [`digest`], [`manifest`], [`names`], [`range`], [`upload`]: parsing and validation.

pub mod auth;
pub mod body;
pub mod clock;
pub mod digest;
pub mod error;
pub mod event;
pub mod gc;
pub mod health;
pub mod manifest;
pub mod mirror;
pub mod names;
pub mod notify;
pub mod range;
pub mod registry;
pub mod repo;
pub mod route;
pub mod settings;
pub mod storage;
pub mod ui;
pub mod upload;
pub mod urls;

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub mod native;

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub mod client;

#[cfg(target_arch = "wasm32")]
pub mod worker;

pub use body::Body;
pub use error::{Error, ErrorCode};
pub use registry::{Outcome, Registry};
pub use settings::Settings;
