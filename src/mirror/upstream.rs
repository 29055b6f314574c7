//! Talking to upstream registries: the [`Fetch`] trait the adapters provide (one HTTP request
//! in, the response out with its body streaming), and on top of it, in the core, the token
//! protocol (a Bearer challenge answered at its realm, anonymously or with Basic credentials,
//! tokens cached per upstream and scope until they expire; Basic-only upstreams), redirects
//! (Docker Hub and GHCR send blob GETs to a CDN: followed, without our credentials once the
//! host changes) and the rate-limit headers.

use std::collections::HashMap;
use std::sync::Mutex;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use url::Url;

use super::challenge::Challenge;
use super::config::Upstream;
use crate::body::{Body, MaybeSendSync};

/// How many redirects a request follows.
const MAX_REDIRECTS: usize = 5;
/// The largest token endpoint answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;
/// A token is used until this long before it expires.
const TOKEN_MARGIN_MS: u64 = 10_000;
/// A token answer without `expires_in` is good for this long (the spec's default).
const TOKEN_DEFAULT_TTL: u64 = 60;

/// One HTTP request to an upstream, as the platform sends it: natively an HTTPS client
/// (reqwest with rustls), on the Worker `fetch`. Redirects must not be followed (the core
/// follows them, deciding which credentials go where).
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Fetch: MaybeSendSync {
    /// Sends `req` (no body) and returns the response once its head arrived, its body
    /// streaming. `Err` when the upstream could not be reached (refused, reset, timed out, a
    /// TLS failure); the message is for the log and must hold no credentials.
    async fn fetch(&self, req: Request<()>) -> Result<Response<Body>, String>;
}

/// Why an upstream request gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// It could not be reached.
    Unreachable(String),
    /// It answered with this status (after the token dance).
    Status(StatusCode),
    /// It answered something we refuse (a manifest that does not verify, a wrong type).
    Invalid(String),
}

impl UpstreamError {
    /// What the client's error says in `detail`.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            UpstreamError::Unreachable(_) => serde_json::json!({ "upstream": "unreachable" }),
            UpstreamError::Status(s) => serde_json::json!({ "upstream_status": s.as_u16() }),
            UpstreamError::Invalid(why) => {
                serde_json::json!({ "upstream": "invalid", "reason": why })
            }
        }
    }

    /// Whether the upstream is down or refusing service (unreachable, 5xx, 429), so that a
    /// stale copy may be served instead.
    pub fn is_outage(&self) -> bool {
        match self {
            UpstreamError::Unreachable(_) | UpstreamError::Invalid(_) => true,
            UpstreamError::Status(s) => s.is_server_error() || *s == StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Unreachable(e) => write!(f, "unreachable: {e}"),
            UpstreamError::Status(s) => write!(f, "HTTP {}", s.as_u16()),
            UpstreamError::Invalid(why) => write!(f, "invalid answer: {why}"),
        }
    }
}

/// The rate limit an upstream last reported (`ratelimit-remaining` / `ratelimit-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub remaining: u64,
    pub limit: u64,
}

impl RateLimit {
    /// Parses Docker Hub's headers: `ratelimit-limit: 100;w=21600`.
    pub fn from_headers(h: &HeaderMap) -> Option<RateLimit> {
        let num = |name: &str| -> Option<u64> {
            h.get(name)?
                .to_str()
                .ok()?
                .split(';')
                .next()?
                .trim()
                .parse()
                .ok()
        };
        Some(RateLimit {
            remaining: num("ratelimit-remaining")?,
            limit: num("ratelimit-limit")?,
        })
    }

    /// At most a tenth of the budget is left.
    pub fn is_low(&self) -> bool {
        self.remaining.saturating_mul(10) <= self.limit
    }
}

/// What an upstream's `/v2/` asked for.
#[derive(Debug, Clone)]
enum Scheme {
    Bearer(Challenge),
    Basic,
}

/// Tokens, challenges and rate limits of every upstream, shared by all requests (a process
/// natively, an isolate on the Worker).
#[derive(Default)]
pub struct Sessions {
    /// Tokens by (upstream, scope): the token and when it expires (ms).
    tokens: Mutex<HashMap<(usize, String), (String, u64)>>,
    schemes: Mutex<HashMap<usize, Scheme>>,
    limits: Mutex<HashMap<usize, RateLimit>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request to one upstream.
pub struct Call<'a> {
    pub index: usize,
    pub upstream: &'a Upstream,
    pub method: Method,
    /// The path, from `/v2/`, with its query.
    pub path: String,
    /// The repository (upstream name), for the token's scope.
    pub repository: &'a str,
    pub headers: HeaderMap,
    pub now_ms: u64,
}

impl Sessions {
    /// What the upstream last said of its rate limit.
    pub fn rate_limit(&self, index: usize) -> Option<RateLimit> {
        lock(&self.limits).get(&index).copied()
    }

    fn authorization(&self, call: &Call<'_>, scope: &str) -> Option<String> {
        match lock(&self.schemes).get(&call.index) {
            Some(Scheme::Basic) => call.upstream.credentials.as_ref().map(|c| c.basic()),
            Some(Scheme::Bearer(_)) => lock(&self.tokens)
                .get(&(call.index, scope.to_string()))
                .filter(|(_, exp)| *exp > call.now_ms)
                .map(|(t, _)| format!("Bearer {t}")),
            None => None,
        }
    }

    /// Sends `call`, answering one 401 challenge and following redirects.
    pub async fn send(
        &self,
        fetch: &dyn Fetch,
        call: Call<'_>,
    ) -> Result<Response<Body>, UpstreamError> {
        let scope = format!("repository:{}:pull", call.repository);
        let base = &call.upstream.url;
        let mut challenged = false;
        // A Bearer upstream without a token for this scope: one from its realm first, rather
        // than a 401 first.
        let known = lock(&self.schemes).get(&call.index).cloned();
        if let Some(Scheme::Bearer(ch)) = known {
            if self.authorization(&call, &scope).is_none() {
                challenged = true;
                self.fetch_token(fetch, &call, &ch, &scope).await?;
            }
        }
        loop {
            let mut url = base
                .join(call.path.trim_start_matches('/'))
                .map_err(|e| UpstreamError::Invalid(format!("bad path: {e}")))?;
            let auth = self.authorization(&call, &scope);
            let mut redirects = 0;
            let resp = loop {
                let mut req = Request::builder()
                    .method(call.method.clone())
                    .uri(url.as_str())
                    .body(())
                    .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
                *req.headers_mut() = call.headers.clone();
                // Our credentials go to the upstream's own host only, never to a CDN.
                if let Some(a) = auth.as_deref().filter(|_| same_origin(&url, base)) {
                    if let Ok(v) = HeaderValue::from_str(a) {
                        req.headers_mut().insert(header::AUTHORIZATION, v);
                    }
                }
                let resp = fetch.fetch(req).await.map_err(UpstreamError::Unreachable)?;
                if let Some(rl) = RateLimit::from_headers(resp.headers()) {
                    lock(&self.limits).insert(call.index, rl);
                }
                let status = resp.status();
                if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                    let location = resp
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .ok_or(UpstreamError::Status(status))?;
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(UpstreamError::Invalid("too many redirects".into()));
                    }
                    url = url
                        .join(location)
                        .map_err(|_| UpstreamError::Invalid("a bad redirect".into()))?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(UpstreamError::Invalid("a bad redirect".into()));
                    }
                    continue;
                }
                break resp;
            };
            if resp.status() == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let header = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                match Challenge::parse(&header) {
                    Some(ch) if ch.scheme == "bearer" => {
                        lock(&self.schemes).insert(call.index, Scheme::Bearer(ch.clone()));
                        self.fetch_token(fetch, &call, &ch, &scope).await?;
                        continue;
                    }
                    Some(ch) if ch.scheme == "basic" && call.upstream.credentials.is_some() => {
                        lock(&self.schemes).insert(call.index, Scheme::Basic);
                        continue;
                    }
                    _ => {}
                }
            }
            return Ok(resp);
        }
    }

    /// Gets a token for `scope` at the challenge's realm, with Basic credentials if the
    /// upstream has some, else anonymously, and caches it until it expires.
    async fn fetch_token(
        &self,
        fetch: &dyn Fetch,
        call: &Call<'_>,
        ch: &Challenge,
        scope: &str,
    ) -> Result<(), UpstreamError> {
        let realm = ch
            .realm()
            .ok_or_else(|| UpstreamError::Invalid("a Bearer challenge without a realm".into()))?;
        let mut url = call
            .upstream
            .url
            .join(realm)
            .map_err(|_| UpstreamError::Invalid("the token realm is not a URL".into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UpstreamError::Invalid(
                "the token realm is not a URL".into(),
            ));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = ch.params.get("service") {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(url.as_str())
            .body(())
            .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        if let Some(c) = &call.upstream.credentials {
            if let Ok(v) = HeaderValue::from_str(&c.basic()) {
                req.headers_mut().insert(header::AUTHORIZATION, v);
            }
        }
        let resp = fetch.fetch(req).await.map_err(UpstreamError::Unreachable)?;
        if !resp.status().is_success() {
            // The token endpoint's refusal stands for the request's (a 401: wrong
            // credentials; a 5xx: an outage).
            return Err(UpstreamError::Status(resp.status()));
        }
        let body = resp
            .into_body()
            .collect_limited(MAX_TOKEN_ANSWER)
            .await
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?
            .ok_or_else(|| UpstreamError::Invalid("the token answer is too large".into()))?;
        let (token, expires_in) = super::challenge::token_with_expiry(&body)
            .ok_or_else(|| UpstreamError::Invalid("no token in the token answer".into()))?;
        let ttl_ms = expires_in.unwrap_or(TOKEN_DEFAULT_TTL).saturating_mul(1000);
        let expires = call.now_ms + ttl_ms.saturating_sub(TOKEN_MARGIN_MS).max(1000);
        lock(&self.tokens).insert((call.index, scope.to_string()), (token, expires));
        Ok(())
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits() {
        let mut h = HeaderMap::new();
        assert_eq!(RateLimit::from_headers(&h), None);
        h.insert("ratelimit-limit", HeaderValue::from_static("100;w=21600"));
        h.insert("ratelimit-remaining", HeaderValue::from_static("9;w=21600"));
        let rl = RateLimit::from_headers(&h).unwrap();
        assert_eq!((rl.remaining, rl.limit), (9, 100));
        assert!(rl.is_low());
        assert!(!RateLimit {
            remaining: 11,
            limit: 100
        }
        .is_low());
    }

    #[test]
    fn outages() {
        assert!(UpstreamError::Status(StatusCode::SERVICE_UNAVAILABLE).is_outage());
        assert!(UpstreamError::Status(StatusCode::TOO_MANY_REQUESTS).is_outage());
        assert!(UpstreamError::Unreachable("refused".into()).is_outage());
        assert!(!UpstreamError::Status(StatusCode::NOT_FOUND).is_outage());
        assert_eq!(
            UpstreamError::Status(StatusCode::BAD_GATEWAY).detail()["upstream_status"],
            502
        );
    }
}
