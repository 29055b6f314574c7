//! The mirrors on the Worker: their vars (`MIRRORS`, `DEFAULT_MIRROR`, `MIRROR_LIBRARY`,
//! `MIRROR_TAG_TTL`) and secret (`MIRROR_CREDENTIALS`), and upstream requests with `fetch`.
//! Concurrent misses of one blob fetch it once each ([`crate::mirror::Direct`]); the stored
//! result is the same content-addressed object. The mirror's logic is in the core.

use std::cell::RefCell;
use std::sync::Arc;

use worker::Env;

use crate::body::Body;
use crate::mirror::{Config, Fetch, Mirrors, Raw};

/// Upstream requests with the runtime's `fetch`, redirects left to the core.
struct WorkerFetch;

#[async_trait::async_trait(?Send)]
impl Fetch for WorkerFetch {
    async fn fetch(&self, req: http::Request<()>) -> Result<http::Response<Body>, String> {
        let (parts, ()) = req.into_parts();
        let headers = worker::Headers::new();
        for (k, v) in &parts.headers {
            if let Ok(v) = v.to_str() {
                headers.append(k.as_str(), v).map_err(|e| e.to_string())?;
            }
        }
        let mut init = worker::RequestInit::new();
        init.with_method(worker::Method::from(parts.method.as_str().to_string()))
            .with_headers(headers)
            .with_redirect(worker::RequestRedirect::Manual);
        let req = worker::Request::new_with_init(&parts.uri.to_string(), &init)
            .map_err(|e| e.to_string())?;
        let resp = worker::Fetch::Request(req)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = http::Response::builder().status(resp.status_code());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let body = match resp.body() {
            worker::ResponseBody::Stream(s) => super::native_body(s.clone()),
            worker::ResponseBody::Body(b) => Body::from(b.clone()),
            worker::ResponseBody::Empty => Body::Empty,
        };
        out.body(body).map_err(|e| e.to_string())
    }
}

thread_local! {
    /// This isolate's mirrors (their tokens and rate limits live across requests), rebuilt
    /// when their configuration changes.
    static MIRRORS: RefCell<Option<(Config, Arc<Mirrors>)>> = const { RefCell::new(None) };
}

/// The mirrors from the vars and the secret; `None` without `MIRRORS`. An error (for the log
/// only: it never quotes the secret) makes every request a 500.
pub fn mirrors(env: &Env) -> Result<Option<Arc<Mirrors>>, String> {
    let mirrors = super::var(env, "MIRRORS").unwrap_or_default();
    let default = super::var(env, "DEFAULT_MIRROR");
    let library = super::var(env, "MIRROR_LIBRARY").unwrap_or_default();
    let credentials = super::secret(env, "MIRROR_CREDENTIALS");
    let ttl = super::var(env, "MIRROR_TAG_TTL");
    let config = Config::parse(&Raw {
        mirrors: mirrors.split_whitespace().collect(),
        default: default.as_deref(),
        library: vec![library.as_str()],
        credentials: credentials.as_deref(),
        tag_ttl: ttl.as_deref(),
    })
    .map_err(|e| format!("the mirrors are misconfigured: {e}"))?;
    if config.is_empty() {
        return Ok(None);
    }
    if let Some(m) = MIRRORS.with_borrow(|c| {
        c.as_ref()
            .filter(|(cfg, _)| *cfg == config)
            .map(|(_, m)| m.clone())
    }) {
        return Ok(Some(m));
    }
    // An isolate runs on one thread; the registry takes its mirrors as an `Arc`.
    #[allow(clippy::arc_with_non_send_sync)]
    let m = Arc::new(Mirrors::new(config.clone(), Arc::new(WorkerFetch)));
    MIRRORS.with_borrow_mut(|c| *c = Some((config, m.clone())));
    Ok(Some(m))
}
