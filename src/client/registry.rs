//! The registry HTTP client: one [`Registry`] per host, speaking the token protocol (a Bearer
//! challenge, then the realm with Basic credentials or anonymously; tokens cached per scope),
//! Basic-only registries, and the spec's errors. Requests with a body that can be sent again
//! are retried once after a challenge; streaming ones call [`Registry::authorize`] first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::auth::{from_auth_files, token_from_json, Challenge, Credentials};
use super::reference::Host;
use super::{describe_reqwest, Error, Result};
use crate::digest::{Algorithm, Digest};
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// The largest manifest read (the spec's 4 MiB, which registries hold to).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// How often a request that got 502, 503 or 504 is sent again.
const RETRIES: u32 = 4;

/// Every manifest media type a client accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--creds`; without them, the auth files are looked at.
    pub creds: Option<Credentials>,
    /// `--authfile`.
    pub authfile: Option<PathBuf>,
    /// Allow plain HTTP (and unverified certificates) for a host given without a scheme.
    pub insecure: bool,
    /// A limit on each whole request (verify); `None`: only connect and read timeouts.
    pub timeout: Option<Duration>,
}

/// A manifest as served: its bytes, media type and digest (checked).
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    /// A manifest from its bytes: the media type from its `mediaType` or shape.
    pub fn from_bytes(bytes: Bytes, media_type: Option<&str>) -> Result<Manifest> {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::msg(format!("the manifest is not JSON: {e}")))?;
        let media_type = media_type
            .filter(|m| !m.is_empty() && *m != "application/json")
            .map(str::to_string)
            .or_else(|| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                if v.get("manifests").is_some() {
                    OCI_INDEX.to_string()
                } else {
                    OCI_MANIFEST.to_string()
                }
            });
        let digest = Digest::of(Algorithm::Sha256, &bytes);
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| Error::msg(format!("manifest {} is not JSON: {e}", self.digest)))
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

#[derive(Default)]
struct AuthState {
    /// The registry asked for Basic credentials (a Basic-only registry).
    basic: bool,
    /// The Bearer challenge (realm, service).
    bearer: Option<Challenge>,
    /// Tokens by scope.
    tokens: HashMap<String, String>,
    /// `/v2/` was asked and needs nothing.
    open: bool,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
}

/// A client of one registry. Cheap to clone; clones share tokens.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// The scope to pull from `repo`, or to push to it.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn build_http(opts: &Options, insecure_tls: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("edge-registry/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(20))
        .read_timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::limited(10))
        .danger_accept_invalid_certs(insecure_tls);
    if let Some(t) = opts.timeout {
        b = b.timeout(t);
    }
    b.build().map_err(Error::from)
}

impl Registry {
    /// A client of `host`. `http://` is plain HTTP; without a scheme it is HTTPS, and with
    /// `--insecure` HTTPS is tried first (certificates unchecked), then plain HTTP if that
    /// cannot connect.
    pub async fn connect(host: &Host, opts: &Options) -> Result<Registry> {
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => from_auth_files(host.auth_key(), opts.authfile.as_deref())?,
        };
        let http = build_http(opts, opts.insecure)?;
        let make = |scheme: &str| -> Result<Registry> {
            let base = Url::parse(&format!("{scheme}://{}/", host.authority))
                .map_err(|e| Error::msg(format!("{}: {e}", host.authority)))?;
            Ok(Registry {
                inner: Arc::new(Inner {
                    http: http.clone(),
                    base,
                    creds: creds.clone(),
                    auth: Mutex::new(AuthState::default()),
                }),
            })
        };
        match host.tls {
            Some(true) => make("https"),
            // An explicit `http://` is the user's choice of plain HTTP.
            Some(false) => make("http"),
            None if !opts.insecure => make("https"),
            None => {
                let https = make("https")?;
                let probe = https
                    .inner
                    .http
                    .get(https.url("/v2/")?)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match probe {
                    Ok(_) => Ok(https),
                    Err(_) => make("http"),
                }
            }
        }
    }

    /// The registry's base URL (`scheme://host/`).
    pub fn base(&self) -> &Url {
        &self.inner.base
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// `path` (starting with `/`) or an absolute URL (a `Location`), against the base.
    pub fn url(&self, path_or_url: &str) -> Result<Url> {
        self.inner
            .base
            .join(path_or_url)
            .map_err(|e| Error::msg(format!("bad URL {path_or_url:?}: {e}")))
    }

    fn auth_header(&self, scope: &str) -> Option<String> {
        let st = self.inner.auth.lock().unwrap();
        if let Some(t) = st.tokens.get(scope) {
            return Some(format!("Bearer {t}"));
        }
        if st.basic {
            return self.inner.creds.as_ref().map(Credentials::basic);
        }
        None
    }

    /// Forgets the token for `scope` (it was refused: expired, say).
    pub fn forget_token(&self, scope: &str) {
        self.inner.auth.lock().unwrap().tokens.remove(scope);
    }

    /// Learns what a 401's challenge asks for, and gets a token for `scope` if it is Bearer.
    async fn answer_challenge(&self, resp: &Response, scope: &str) -> Result<()> {
        let header = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(ch) = Challenge::parse(header) else {
            return Err(Error::msg(format!(
                "{}: 401 without a usable WWW-Authenticate challenge",
                self.inner.base
            )));
        };
        match ch.scheme.as_str() {
            "basic" => {
                if self.inner.creds.is_none() {
                    return Err(Error::msg(format!(
                        "{}: the registry needs credentials (--creds USER:PASS or an auth file)",
                        self.inner.base
                    )));
                }
                self.inner.auth.lock().unwrap().basic = true;
                Ok(())
            }
            "bearer" => {
                self.inner.auth.lock().unwrap().bearer = Some(ch);
                self.fetch_token(scope).await
            }
            other => Err(Error::msg(format!(
                "{}: unsupported auth scheme {other:?}",
                self.inner.base
            ))),
        }
    }

    /// Gets a token for `scope` from the Bearer realm: with Basic credentials if there are
    /// any, else anonymously.
    async fn fetch_token(&self, scope: &str) -> Result<()> {
        let ch = self.inner.auth.lock().unwrap().bearer.clone();
        let Some(ch) = ch else { return Ok(()) };
        let realm = ch
            .realm()
            .ok_or_else(|| Error::msg("the Bearer challenge has no realm"))?;
        let mut url = Url::parse(realm)
            .or_else(|_| self.url(realm))
            .map_err(|_| Error::msg(format!("the token realm {realm:?} is not a URL")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = ch.params.get("service") {
                q.append_pair("service", s);
            }
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.inner.http.get(url);
        if let Some(c) = &self.inner.creds {
            req = req.header(AUTHORIZATION, c.basic());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::msg(format!("token endpoint: {}", describe_reqwest(&e))))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::msg(if self.inner.creds.is_some() {
                format!("authentication failed at {realm}: wrong user or password (HTTP {status})")
            } else {
                format!(
                    "{realm}: the registry needs credentials (--creds USER:PASS or an auth file)"
                )
            }));
        }
        if !status.is_success() {
            return Err(Error::msg(format!("token endpoint {realm}: HTTP {status}")));
        }
        let body = read_limited(resp, 1 << 20).await?;
        let token = token_from_json(&body)
            .ok_or_else(|| Error::msg(format!("token endpoint {realm}: no token in its answer")))?;
        self.inner
            .auth
            .lock()
            .unwrap()
            .tokens
            .insert(scope.to_string(), token);
        Ok(())
    }

    /// Makes sure requests for `scope` carry what the registry wants, before a request whose
    /// body cannot be sent twice.
    pub async fn authorize(&self, scope: &str) -> Result<()> {
        let bearer = {
            let st = self.inner.auth.lock().unwrap();
            if st.open || st.basic || st.tokens.contains_key(scope) {
                return Ok(());
            }
            st.bearer.is_some()
        };
        if bearer {
            return self.fetch_token(scope).await;
        }
        let resp = self
            .inner
            .http
            .get(self.url("/v2/")?)
            .send()
            .await
            .map_err(|e| Error::msg(format!("{}: {}", self.inner.base, describe_reqwest(&e))))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.answer_challenge(&resp, scope).await
        } else {
            // A registry that lets /v2/ through may still ask for a scope later: `send`
            // answers that challenge.
            self.inner.auth.lock().unwrap().open = resp.status().is_success();
            Ok(())
        }
    }

    /// Sends the request `make` builds, with the credentials `scope` needs; after a 401 it
    /// answers the challenge and sends it once more, and after a 502/503/504 it tries again a
    /// few times (so `make` must build a body that can be sent again).
    pub async fn send(
        &self,
        scope: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        let mut challenged = false;
        let mut attempt = 0;
        loop {
            let resp = self.send_once(scope, make(&self.inner.http)).await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                self.forget_token(scope);
                self.inner.auth.lock().unwrap().open = false;
                self.answer_challenge(&resp, scope).await?;
                continue;
            }
            // "If an 502, 503 or 504 error is received, the client SHOULD assume that the
            // download can proceed due to a temporary condition": a few tries, backing off.
            if matches!(status.as_u16(), 502..=504) && attempt < RETRIES {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Sends `req` once, with the credentials `scope` needs as known now.
    pub async fn send_once(&self, scope: &str, mut req: RequestBuilder) -> Result<Response> {
        if let Some(h) = self.auth_header(scope) {
            req = req.header(AUTHORIZATION, h);
        }
        req.send()
            .await
            .map_err(|e| Error::msg(format!("{}: {}", self.inner.base, describe_reqwest(&e))))
    }

    /// A request on the API: `method` on `path` (or a `Location`), with `scope`'s credentials.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response> {
        let url = self.url(path)?;
        self.send(scope, |c| {
            let mut r = c
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(b) = &body {
                r = r.body(b.clone());
            }
            r
        })
        .await
    }

    /// GETs a manifest (bounded to 4 MiB) and checks it against `reference` when that is a
    /// digest, and against `Docker-Content-Digest` otherwise.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, MANIFEST_ACCEPT.parse().unwrap());
        let resp = self
            .request(Method::GET, &path, &pull_scope(repo), headers, None)
            .await?;
        let resp = check(resp, &format!("GET manifest {repo}:{reference}")).await?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| Digest::parse(s).ok());
        let bytes = read_limited(resp, MAX_MANIFEST).await?;
        let want = Digest::parse(reference).ok().or(header_digest);
        let mut m = Manifest::from_bytes(bytes, media_type.as_deref())?;
        if let Some(want) = want {
            let got = Digest::of(want.algorithm(), &m.bytes);
            if got != want {
                return Err(Error::msg(format!(
                    "manifest {repo}:{reference}: its bytes hash to {got}, not {want}"
                )));
            }
            m.digest = want;
        }
        Ok(m)
    }

    /// PUTs a manifest under `reference` (a tag or its digest); returns the digest the
    /// registry reports (or ours).
    pub async fn put_manifest(&self, repo: &str, reference: &str, m: &Manifest) -> Result<()> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            m.media_type
                .parse()
                .map_err(|_| Error::msg("bad manifest media type"))?,
        );
        let resp = self
            .request(
                Method::PUT,
                &path,
                &push_scope(repo),
                headers,
                Some(m.bytes.clone()),
            )
            .await?;
        check(resp, &format!("PUT manifest {repo}:{reference}")).await?;
        Ok(())
    }

    /// HEADs a blob: its size if the repository has it.
    pub async fn head_blob(&self, repo: &str, digest: &Digest, scope: &str) -> Result<Option<u64>> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self
            .request(Method::HEAD, &path, scope, HeaderMap::new(), None)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => check(resp, &format!("HEAD blob {digest}"))
                .await
                .map(|_| None),
        }
    }

    /// GETs a blob from `offset` (following redirects): the response, 200 or 206.
    pub async fn get_blob(&self, repo: &str, digest: &Digest, offset: u64) -> Result<Response> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert("range", format!("bytes={offset}-").parse().unwrap());
        }
        let resp = self
            .request(Method::GET, &path, &pull_scope(repo), headers, None)
            .await?;
        check(resp, &format!("GET blob {digest}")).await
    }
}

/// Reads a body of at most `limit` bytes.
pub async fn read_limited(resp: Response, limit: usize) -> Result<Bytes> {
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Err(Error::msg(format!("a response body over {limit} bytes")));
    }
    let mut out = bytes::BytesMut::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Error::msg(describe_reqwest(&e)))?;
        if out.len() + chunk.len() > limit {
            return Err(Error::msg(format!("a response body over {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// `resp` if it succeeded; else an error naming `what`, the status and the registry's error
/// code and message (from the spec's JSON body, if it sent one).
pub async fn check(resp: Response, what: &str) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let html = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("html"));
    let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    Err(Error::msg(format!(
        "{what}: {}",
        describe_error(status, &body, html)
    )))
}

/// `HTTP 404 (NAME_UNKNOWN: repository name not known)`, or what the body says.
pub fn describe_error(status: StatusCode, body: &[u8], html: bool) -> String {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let first = v
        .as_ref()
        .and_then(|v| v["errors"].as_array())
        .and_then(|a| a.first());
    let mut s = format!("HTTP {status}");
    if let Some(e) = first {
        s.push_str(&format!(
            " ({}: {})",
            e["code"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("")
        ));
    } else if html || body.starts_with(b"<") {
        s.push_str(" (an HTML page, not the registry's answer: a proxy or CDN in between?)");
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        s.push_str("; a proxy's body limit? try a smaller --chunk-size");
    }
    s
}

/// A short digest for messages: `sha256:0123456789ab`.
pub fn short(d: &Digest) -> String {
    let hex = d.hex();
    format!("{}:{}", d.algorithm().as_str(), &hex[..hex.len().min(12)])
}

/// The media types of manifests this client copies.
pub fn is_manifest_type(t: &str) -> bool {
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&t)
}
