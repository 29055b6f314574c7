//! Health checks: `/healthz` (the process answers) and `/readyz` (storage works, and whatever
//! the adapter checks itself, such as the account files having parsed). Both answer without
//! credentials and say nothing but which check failed; causes go to the log only.
//!
//! The storage probe is one core function both adapters call ([`probe_storage`]): natively a
//! small write, read back and removed; on the Worker a HEAD (R2 bills writes, and a HEAD
//! proves the bucket answers). The adapter bounds it in time through [`ReadyCheck::sleep`].

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::{select, Either};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{Body, MaybeSendSync};
use crate::digest::Digest;
use crate::error::InternalCause;
use crate::storage::Storage;

/// The key the write probe uses (a small object outside every index).
pub const PROBE_PREFIX: &str = "_health/probe-";

/// How long the storage probe may take before `/readyz` reports storage as failed.
pub const PROBE_TIMEOUT_MS: u64 = 2_000;

/// How the storage is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Probe {
    /// Write a small object, read it back, remove it: storage is writable.
    #[default]
    WriteRead,
    /// Ask for the size of a blob (a HEAD on R2): storage answers. For backends that bill
    /// writes.
    Head,
}

/// What the adapter adds to a readiness check: a timer to bound the probe, and checks of
/// its own.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait ReadyCheck: MaybeSendSync {
    /// Completes after `ms` milliseconds.
    async fn sleep(&self, ms: u64);
    /// The adapter's own checks, by name, and whether each passes (natively: `accounts`,
    /// whether the account files parsed when last read).
    fn checks(&self) -> Vec<(&'static str, bool)> {
        Vec::new()
    }
}

/// How a registry checks readiness.
#[derive(Clone, Default)]
pub struct Readiness {
    pub probe: Probe,
    pub check: Option<Arc<dyn ReadyCheck>>,
}

/// Probes `storage` once; `nonce` makes the write probe's key unique to this call, so
/// concurrent probes never read each other's value. The error is for the log only.
pub async fn probe_storage<S: Storage + ?Sized>(
    storage: &S,
    probe: Probe,
    nonce: &str,
) -> Result<(), String> {
    match probe {
        Probe::WriteRead => {
            let key = format!("{PROBE_PREFIX}{nonce}");
            let value = Bytes::from(format!("ready {nonce}"));
            storage
                .put(&key, value.clone())
                .await
                .map_err(|e| format!("probe write: {e}"))?;
            let read = storage
                .get(&key)
                .await
                .map_err(|e| format!("probe read: {e}"))?;
            // Removing it is tidiness, not part of the check.
            let _ = storage.delete(&key).await;
            match read {
                Some(v) if v == value => Ok(()),
                Some(_) => Err("probe read back other bytes".into()),
                None => Err("probe read back nothing".into()),
            }
        }
        Probe::Head => {
            let empty = Digest::parse(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            )
            .map_err(|e| format!("probe digest: {}", e.message))?;
            storage
                .blob_size(&empty)
                .await
                .map(|_| ())
                .map_err(|e| format!("probe head: {e}"))
        }
    }
}

/// Runs the readiness checks: the storage probe (bounded by the adapter's timer, if any)
/// and the adapter's own.
pub async fn check<S: Storage + ?Sized>(
    storage: &S,
    readiness: &Readiness,
    nonce: &str,
) -> Vec<(&'static str, Result<(), String>)> {
    let probe = probe_storage(storage, readiness.probe, nonce);
    let storage_result = match &readiness.check {
        Some(c) => {
            let timeout = c.sleep(PROBE_TIMEOUT_MS);
            match select(Box::pin(probe), timeout).await {
                Either::Left((r, _)) => r,
                Either::Right(_) => Err(format!(
                    "the storage probe took longer than {PROBE_TIMEOUT_MS} ms"
                )),
            }
        }
        None => probe.await,
    };
    let mut checks = vec![("storage", storage_result)];
    if let Some(c) = &readiness.check {
        for (name, ok) in c.checks() {
            checks.push((
                name,
                if ok {
                    Ok(())
                } else {
                    Err(format!("{name} check failed"))
                },
            ));
        }
    }
    checks
}

/// The response of `/readyz`: 200 when every check passes, else 503; the body names each
/// check and `ok` or `failed`, the causes go to the log (as an [`InternalCause`]).
pub fn ready_response(checks: &[(&'static str, Result<(), String>)]) -> Response<Body> {
    let ok = checks.iter().all(|(_, r)| r.is_ok());
    let map: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, r)| {
            let v = if r.is_ok() { "ok" } else { "failed" };
            (name.to_string(), serde_json::Value::from(v))
        })
        .collect();
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "unavailable" },
        "checks": map,
    });
    let mut resp = status_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    );
    if !ok {
        let causes: Vec<String> = checks
            .iter()
            .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect();
        resp.extensions_mut()
            .insert(InternalCause(format!("not ready: {}", causes.join("; "))));
    }
    resp
}

/// The response of `/healthz`: the process answers.
pub fn health_response() -> Response<Body> {
    status_response(StatusCode::OK, serde_json::json!({ "status": "ok" }))
}

fn status_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let bytes = Bytes::from(body.to_string());
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    *resp.body_mut() = Body::Full(bytes);
    resp
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    #[tokio::test]
    async fn probes_write_read_and_head() {
        {
            let s = MemoryStorage::new();
            assert_eq!(probe_storage(&s, Probe::WriteRead, "a").await, Ok(()));
            // The probe leaves nothing behind.
            assert_eq!(
                s.get(&format!("{PROBE_PREFIX}a")).await.unwrap(),
                None::<Bytes>
            );
            assert_eq!(probe_storage(&s, Probe::Head, "b").await, Ok(()));
            let checks = check(&s, &Readiness::default(), "c").await;
            let r = ready_response(&checks);
            assert_eq!(r.status(), StatusCode::OK);
            let bad = ready_response(&[("storage", Err("disk on fire".into()))]);
            assert_eq!(bad.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(bad.extensions().get::<InternalCause>().is_some());
            match bad.into_body() {
                Body::Full(b) => {
                    let s = String::from_utf8_lossy(&b);
                    assert!(s.contains("\"storage\":\"failed\""), "{s}");
                    assert!(!s.contains("fire"), "{s}");
                }
                _ => panic!("a full body"),
            }
        }
    }
}
