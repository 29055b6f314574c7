//! What the targets that drive a whole `Registry` share: a registry over memory storage, and
//! one request through it, checked for what must hold of every response.

#![allow(dead_code)]

use bytes::Bytes;
use edge_registry::error::InternalCause;
use edge_registry::storage::memory::MemoryStorage;
use edge_registry::{Body, Registry, Settings};
use futures::executor::block_on;
use http::{header, HeaderMap, Method, Request, StatusCode};

pub type Reg = Registry<MemoryStorage>;

pub fn registry() -> Reg {
    Registry::new(MemoryStorage::new(), Settings::default())
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Sends one request and reads the answer. Panics (a finding) on a 5xx, on a `Content-Length`
/// that is not the body's length, on a body answering `HEAD`, or on an error without the spec's
/// JSON body.
pub fn send(reg: &Reg, req: Request<Body>) -> Answer {
    let what = format!("{} {}", req.method(), req.uri());
    let head = req.method() == Method::HEAD;
    let resp = block_on(reg.handle(req)).response;
    let status = resp.status();
    let cause = resp.extensions().get::<InternalCause>().cloned();
    let (parts, body) = resp.into_parts();
    let body = block_on(body.collect_limited(usize::MAX))
        .expect("the response body reads")
        .expect("no limit");
    assert!(
        !status.is_server_error(),
        "{what} answered {status}: {cause:?}"
    );
    if head {
        assert!(body.is_empty(), "{what}: a body answering HEAD");
    } else if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len.to_str().unwrap().parse().unwrap();
        assert_eq!(len, body.len() as u64, "{what}: Content-Length");
    }
    if status.is_client_error() && !head {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("an error body is JSON");
        assert!(v["errors"][0]["code"].is_string(), "{what}: {v}");
    }
    Answer {
        status,
        headers: parts.headers,
        body,
    }
}

pub fn get(reg: &Reg, uri: &str) -> Answer {
    let req = Request::get(uri)
        .body(Body::Empty)
        .expect("a valid request");
    send(reg, req)
}

/// An index listing no manifests: a manifest that needs no blobs.
pub const EMPTY_INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// Tags `repo:tag` with [`EMPTY_INDEX`].
pub fn put_tag(reg: &Reg, repo: &str, tag: &str) {
    let req = Request::put(format!("/v2/{repo}/manifests/{tag}"))
        .header(
            header::CONTENT_TYPE,
            "application/vnd.oci.image.index.v1+json",
        )
        .body(Body::from(Bytes::from_static(EMPTY_INDEX.as_bytes())))
        .unwrap();
    let a = send(reg, req);
    assert_eq!(a.status, StatusCode::CREATED, "{repo}:{tag}");
}
