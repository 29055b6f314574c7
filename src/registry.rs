//! The registry: turns one HTTP request into one HTTP response, on any [`Storage`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::auth::{presented, Access, Action, ClientAddr, Need, Presented, Principal};
use crate::body::Body;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, ErrorCode};
use crate::manifest::{Descriptor, Manifest, OCI_INDEX};
use crate::names::{Name, Reference, Tag};
use crate::range::{parse_content_range, parse_range, ByteRange};
use crate::route::{not_found, Route};
use crate::storage::{keys, DirectPut, Freshness, Storage, StorageError};
use crate::upload::{new_upload_id, valid_upload_id, UploadState};
use crate::urls::Urls;

pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// How much of a refused request's body is read before answering (see [`Registry::handle`]).
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Largest page a client may ask for with `n`.
pub const MAX_PAGE: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Config {
    /// Public base URL for `Location`/`Link`; empty for path-absolute URLs.
    pub base_url: String,
    /// Largest manifest accepted; larger ones get 413.
    pub max_manifest_size: usize,
    /// Advertised in `OCI-Chunk-Min-Length`.
    pub chunk_min_length: u64,
    /// Seconds since the Unix epoch; supplied by the adapter (the core has no clock).
    pub now: fn() -> u64,
    /// Who may do what (default: everyone everything).
    pub access: Arc<Access>,
    /// Upload sessions open at once; a new one past this gets 429 TOOMANYREQUESTS.
    pub max_upload_sessions: usize,
    /// Seconds a session may go without a request before it expires and its data is removed.
    pub upload_ttl: u64,
    /// Largest blob accepted, in bytes; larger ones get 413 SIZE_INVALID.
    pub max_blob_size: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_url: String::new(),
            max_manifest_size: 4 * 1024 * 1024,
            chunk_min_length: 1024 * 1024,
            now: || 0,
            access: Arc::new(Access::open()),
            max_upload_sessions: 1000,
            upload_ttl: 24 * 3600,
            max_blob_size: 32 << 30,
        }
    }
}

/// What a repository keeps of a manifest revision, beside its bytes in the blob store.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestRecord {
    media_type: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
}

pub struct Registry<S> {
    storage: S,
    config: Config,
    urls: Urls,
}

type Result<T> = std::result::Result<T, Error>;

fn internal(e: StorageError) -> Error {
    Error::internal(e)
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn response(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

fn finish(builder: http::response::Builder, body: Body) -> Response<Body> {
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn json_response(status: StatusCode, content_type: &str, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    finish(
        response(status)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len()),
        Body::from(body),
    )
}

/// Attached (as a response extension) to a 5xx response: what went wrong, for the adapter's
/// log. It never goes into the body.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// The response for an error: its status, its headers and the spec's JSON body.
pub fn error_response(e: &Error) -> Response<Body> {
    let body = e.body();
    let mut b = response(e.status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len());
    for (k, v) in &e.headers {
        b = b.header(k, v);
    }
    if e.status.is_server_error() {
        let cause = e
            .detail
            .as_ref()
            .map_or_else(|| e.message.clone(), |d| d.to_string());
        b = b.extension(InternalCause(cause));
    }
    finish(b, Body::from(body))
}

fn too_large(max: u64) -> Error {
    Error::new(ErrorCode::SizeInvalid)
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_message(format!("blobs are limited to {max} bytes"))
}

fn method_not_allowed(allow: &'static str) -> Error {
    Error::new(ErrorCode::Unsupported)
        .with_message("method not allowed")
        .with_header(header::ALLOW, HeaderValue::from_static(allow))
}

fn query(req: &Parts) -> HashMap<String, String> {
    req.uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The client's address as the adapter gave it, for counting failed logins.
fn client(req: &Parts) -> &str {
    req.extensions
        .get::<ClientAddr>()
        .map_or("unknown", |c| c.0.as_str())
}

fn header_str(req: &Parts, name: HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(req: &Parts) -> Result<Option<u64>> {
    match req.headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::new(ErrorCode::SizeInvalid).with_message("invalid Content-Length")
            }),
    }
}

fn parse_digest_param(value: Option<&String>) -> Result<Digest> {
    let v = value.ok_or_else(|| {
        Error::new(ErrorCode::DigestInvalid).with_message("digest parameter missing")
    })?;
    Digest::parse(v)
}

/// The `n` and `last` pagination parameters.
fn pagination(q: &HashMap<String, String>) -> Result<(Option<usize>, Option<String>)> {
    let n = match q.get("n") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| {
                    Error::new(ErrorCode::Unsupported)
                        .with_status(StatusCode::BAD_REQUEST)
                        .with_message("invalid pagination parameter n")
                })?
                .min(MAX_PAGE),
        ),
    };
    Ok((n, q.get("last").cloned()))
}

/// One page of a sorted list: the entries after `last`, at most `n` of them, and whether more
/// follow.
fn page(sorted: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let start = match last {
        Some(l) => sorted.partition_point(|s| s.as_str() <= l),
        None => 0,
    };
    let mut rest: Vec<String> = sorted.into_iter().skip(start).collect();
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            (rest, n > 0)
        }
        _ => (rest, false),
    }
}

impl<S: Storage> Registry<S> {
    pub fn new(storage: S, config: Config) -> Self {
        let urls = Urls::new(&config.base_url);
        Registry {
            storage,
            config,
            urls,
        }
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Answers one request. Never fails: errors become the spec's JSON error responses.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        let (parts, mut body) = req.into_parts();
        let mut resp = match self.dispatch(&parts, &mut body).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        if !matches!(body, Body::Empty) {
            // The handler left the body unread (a refused request, a body on a GET). A client
            // still sending it would see a reset instead of our answer, and the connection
            // could not carry another request: read (and drop) a modest amount of it. A client
            // that waits for `100 Continue` has sent nothing yet, and is spared.
            let waiting = parts
                .headers
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            let drained =
                !waiting && matches!(body.collect_limited(DRAIN_LIMIT).await, Ok(Some(_)));
            if !drained {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        if head {
            *resp.body_mut() = Body::Empty;
        }
        resp.headers_mut()
            .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        resp
    }

    /// Where clients fetch tokens: `<base URL>/token`, or, without a configured base URL, the
    /// URL this request reached (its scheme, as a proxy reports it, and its host).
    fn token_realm(&self, req: &Parts) -> String {
        if !self.config.base_url.is_empty() {
            return format!("{}/token", self.config.base_url.trim_end_matches('/'));
        }
        let host = header_str(req, header::HOST)
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        let scheme = header_str(req, HeaderName::from_static("x-forwarded-proto"))
            .or_else(|| req.uri.scheme_str())
            .unwrap_or("http");
        let clean = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                .collect()
        };
        format!("{}://{}/token", clean(scheme), clean(host))
    }

    /// Authenticates the request and checks it may do what its route needs.
    fn authorize(&self, req: &Parts, route: &Route, realm: &str) -> Result<Principal> {
        let access = &self.config.access;
        let principal =
            access.authenticate(&req.headers, client(req), realm, (self.config.now)())?;
        let need = match route {
            Route::Base => Need::Base,
            Route::Catalog => Need::Catalog,
            Route::Tags(n) | Route::Referrers(n, _) => Need::Repo(n.as_str(), Action::Pull),
            Route::Manifest(n, _) | Route::Blob(n, _) => {
                Need::Repo(n.as_str(), Action::of_method(&req.method))
            }
            // Every request of an upload session pushes, even asking for its status.
            Route::UploadStart(n) | Route::Upload(n, _) => Need::Repo(n.as_str(), Action::Push),
            Route::Token | Route::Ui(_) => return Ok(principal),
        };
        access.check(&principal, need, realm)?;
        Ok(principal)
    }

    /// The token endpoint: `GET /token?service=..&scope=..` with Basic credentials (or none,
    /// for an anonymous token), or the OAuth2 password grant as a form `POST`.
    async fn token(&self, req: &Parts, body: &mut Body) -> Result<Response<Body>> {
        let mut pairs: Vec<(String, String)> = req
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        // Basic credentials, or none (a Bearer token does not get another token).
        let mut credentials = match presented(&req.headers) {
            Presented::Basic(Some(c)) => Some(c),
            Presented::Basic(None) => {
                return Err(self
                    .config
                    .access
                    .token_unauthorized()
                    .with_message("malformed Basic credentials"))
            }
            Presented::Nothing | Presented::Bearer(_) => None,
        };
        match req.method {
            Method::GET | Method::HEAD => {}
            Method::POST => {
                let form = std::mem::replace(body, Body::Empty)
                    .collect_limited(64 * 1024)
                    .await
                    .map_err(|_| {
                        Error::new(ErrorCode::Unsupported).with_status(StatusCode::BAD_REQUEST)
                    })?
                    .ok_or_else(|| {
                        Error::new(ErrorCode::SizeInvalid)
                            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                            .with_message("token request too large")
                    })?;
                let form: Vec<(String, String)> =
                    form_urlencoded::parse(&form).into_owned().collect();
                let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                match field("grant_type").as_deref() {
                    Some("password") => {
                        credentials = Some((
                            field("username").unwrap_or_default(),
                            field("password").unwrap_or_default(),
                        ));
                    }
                    _ => {
                        return Err(Error::new(ErrorCode::Unsupported)
                            .with_status(StatusCode::BAD_REQUEST)
                            .with_message("unsupported grant_type (only password)"))
                    }
                }
                pairs.extend(form);
            }
            _ => return Err(method_not_allowed("GET, HEAD, POST")),
        }
        let scopes: Vec<String> = pairs
            .into_iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v)
            .collect();
        let token = self.config.access.issue_token(
            credentials,
            &scopes,
            client(req),
            (self.config.now)(),
        )?;
        let mut resp = json_response(StatusCode::OK, "application/json", &token);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    async fn dispatch(&self, req: &Parts, body: &mut Body) -> Result<Response<Body>> {
        let route = Route::parse(req.uri.path())?;
        let realm = self.token_realm(req);
        if route == Route::Token {
            return self.token(req, body).await;
        }
        let principal = self.authorize(req, &route, &realm)?;
        let m = req.method.clone();
        let get = m == Method::GET || m == Method::HEAD;
        match route {
            Route::Base if get => Ok(json_response(
                StatusCode::OK,
                "application/json",
                &serde_json::json!({}),
            )),
            Route::Base => Err(method_not_allowed("GET, HEAD")),
            Route::Catalog if get => self.catalog(req, &principal).await,
            Route::Catalog => Err(method_not_allowed("GET, HEAD")),
            Route::Tags(name) if get => self.tags(req, &name).await,
            Route::Tags(_) => Err(method_not_allowed("GET, HEAD")),
            Route::Manifest(name, r) => match m {
                Method::GET | Method::HEAD => self.get_manifest(&name, &r, m == Method::HEAD).await,
                Method::PUT => self.put_manifest(req, body, &name, &r).await,
                Method::DELETE => self.delete_manifest(&name, &r).await,
                _ => Err(method_not_allowed("GET, HEAD, PUT, DELETE")),
            },
            Route::Blob(name, d) => match m {
                Method::GET | Method::HEAD => {
                    self.get_blob(req, &name, &d, m == Method::HEAD).await
                }
                Method::DELETE => self.delete_blob(&name, &d).await,
                _ => Err(method_not_allowed("GET, HEAD, DELETE")),
            },
            Route::UploadStart(name) => match m {
                Method::POST => {
                    // Mounting from another repository needs pull access there.
                    let from_allowed = query(req).get("from").is_some_and(|from| {
                        self.config.access.allows(&principal, from, Action::Pull)
                    });
                    self.start_upload(req, body, &name, from_allowed).await
                }
                _ => Err(method_not_allowed("POST")),
            },
            Route::Upload(name, id) => match m {
                Method::GET | Method::HEAD => self.upload_status(&name, &id).await,
                Method::PATCH => self.patch_upload(req, body, &name, &id).await,
                Method::PUT => self.put_upload(req, body, &name, &id).await,
                Method::DELETE => self.cancel_upload(&name, &id).await,
                _ => Err(method_not_allowed("GET, HEAD, PATCH, PUT, DELETE")),
            },
            Route::Referrers(name, d) if get => self.referrers(req, &name, &d).await,
            Route::Referrers(..) => Err(method_not_allowed("GET, HEAD")),
            Route::Ui(path) if get => {
                let asset = crate::ui::asset(&path).ok_or_else(not_found)?;
                Ok(finish(
                    response(StatusCode::OK)
                        .header(header::CONTENT_TYPE, asset.content_type)
                        .header(header::CONTENT_LENGTH, asset.bytes.len())
                        .header(header::CACHE_CONTROL, "no-cache"),
                    Body::Full(Bytes::from_static(asset.bytes)),
                ))
            }
            Route::Ui(_) => Err(method_not_allowed("GET, HEAD")),
            Route::Token => Err(not_found()),
        }
    }

    // ---- indexes ------------------------------------------------------------------------

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.storage.get(key).await.map_err(internal)?.is_some())
    }

    /// Adds the repository to the catalog the first time it receives content.
    async fn ensure_catalog(&self, name: &Name) -> Result<()> {
        let key = keys::catalog_entry(name);
        if !self.exists(&key).await? {
            self.storage
                .put(&key, Bytes::new())
                .await
                .map_err(internal)?;
        }
        Ok(())
    }

    async fn link_blob(&self, name: &Name, digest: &Digest) -> Result<()> {
        let key = keys::blob_link(name, digest);
        if !self.exists(&key).await? {
            self.storage
                .put(&key, Bytes::new())
                .await
                .map_err(internal)?;
        }
        self.ensure_catalog(name).await
    }

    async fn catalog(&self, req: &Parts, principal: &Principal) -> Result<Response<Body>> {
        let q = query(req);
        let (n, last) = pagination(&q)?;
        let mut names: Vec<String> = self
            .storage
            .list(keys::CATALOG_DIR, Freshness::Cached)
            .await
            .map_err(internal)?
            .iter()
            .map(|e| keys::catalog_name(e))
            .filter(|name| self.config.access.can_list(principal, name))
            .collect();
        names.sort();
        let (repos, more) = page(names, n, last.as_deref());
        let mut resp = json_response(
            StatusCode::OK,
            "application/json",
            &serde_json::json!({ "repositories": repos }),
        );
        if more {
            if let (Some(n), Some(l)) = (n, repos.last()) {
                resp.headers_mut()
                    .insert(header::LINK, hv(&self.urls.catalog_next(n, l)));
            }
        }
        Ok(resp)
    }

    async fn tags(&self, req: &Parts, name: &Name) -> Result<Response<Body>> {
        let q = query(req);
        let (n, last) = pagination(&q)?;
        if !self.exists(&keys::catalog_entry(name)).await? {
            return Err(Error::new(ErrorCode::NameUnknown)
                .with_detail(serde_json::json!({ "name": name.as_str() })));
        }
        let mut tags = self
            .storage
            .list(&keys::tags_dir(name), Freshness::Current)
            .await
            .map_err(internal)?;
        tags.sort();
        let (tags, more) = page(tags, n, last.as_deref());
        let mut resp = json_response(
            StatusCode::OK,
            "application/json",
            &serde_json::json!({ "name": name.as_str(), "tags": tags }),
        );
        if more {
            if let (Some(n), Some(l)) = (n, tags.last()) {
                resp.headers_mut()
                    .insert(header::LINK, hv(&self.urls.tags_next(name, n, l)));
            }
        }
        Ok(resp)
    }

    // ---- blobs --------------------------------------------------------------------------

    async fn get_blob(
        &self,
        req: &Parts,
        name: &Name,
        digest: &str,
        head: bool,
    ) -> Result<Response<Body>> {
        let digest = Digest::parse(digest)?;
        let unknown = || {
            Error::new(ErrorCode::BlobUnknown)
                .with_detail(serde_json::json!({ "digest": digest.to_string() }))
        };
        if !self.exists(&keys::blob_link(name, &digest)).await? {
            return Err(unknown());
        }
        let size = self
            .storage
            .blob_size(&digest)
            .await
            .map_err(internal)?
            .ok_or_else(unknown)?;
        let range = match header_str(req, header::RANGE) {
            Some(r) => parse_range(r, size),
            None => ByteRange::Full,
        };
        let (status, start, len) = match range {
            ByteRange::Full => (StatusCode::OK, 0, size),
            ByteRange::Partial { start, end } => {
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            ByteRange::Unsatisfiable => {
                return Err(Error::new(ErrorCode::SizeInvalid)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_message("requested range not satisfiable")
                    .with_header(header::CONTENT_RANGE, hv(&format!("bytes */{size}"))));
            }
        };
        let mut b = response(status)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, format!("\"{digest}\""))
            .header(header::CACHE_CONTROL, "max-age=31536000")
            .header(CONTENT_DIGEST, digest.to_string());
        if status == StatusCode::PARTIAL_CONTENT {
            b = b.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", start, start + len - 1, size),
            );
        }
        if head {
            return Ok(finish(b, Body::Empty));
        }
        let body = self
            .storage
            .blob_read(&digest, start, len)
            .await
            .map_err(internal)?
            .ok_or_else(unknown)?;
        Ok(finish(b, body))
    }

    async fn delete_blob(&self, name: &Name, digest: &str) -> Result<Response<Body>> {
        let digest = Digest::parse(digest)?;
        let key = keys::blob_link(name, &digest);
        if !self.exists(&key).await? {
            return Err(Error::new(ErrorCode::BlobUnknown)
                .with_detail(serde_json::json!({ "digest": digest.to_string() })));
        }
        self.storage.delete(&key).await.map_err(internal)?;
        Ok(finish(
            response(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0),
            Body::Empty,
        ))
    }

    // ---- uploads ------------------------------------------------------------------------

    fn upload_response(
        &self,
        status: StatusCode,
        name: &Name,
        id: &str,
        offset: u64,
    ) -> http::response::Builder {
        response(status)
            .header(header::LOCATION, self.urls.upload(name, id))
            .header(header::RANGE, format!("0-{}", offset.saturating_sub(1)))
            .header(UPLOAD_UUID, id)
            .header(header::CONTENT_LENGTH, 0)
    }

    fn blob_created(&self, name: &Name, digest: &Digest) -> Response<Body> {
        finish(
            response(StatusCode::CREATED)
                .header(header::LOCATION, self.urls.blob(name, digest))
                .header(CONTENT_DIGEST, digest.to_string())
                .header(header::CONTENT_LENGTH, 0),
            Body::Empty,
        )
    }

    async fn start_upload(
        &self,
        req: &Parts,
        body: &mut Body,
        name: &Name,
        from_allowed: bool,
    ) -> Result<Response<Body>> {
        let q = query(req);
        if let Some(mount) = q.get("mount") {
            let digest = Digest::parse(mount)?;
            if let Some(from) = q.get("from").filter(|_| from_allowed) {
                let from = Name::parse(from)?;
                let linked = self.exists(&keys::blob_link(&from, &digest)).await?;
                if linked
                    && self
                        .storage
                        .blob_size(&digest)
                        .await
                        .map_err(internal)?
                        .is_some()
                {
                    self.link_blob(name, &digest).await?;
                    return Ok(self.blob_created(name, &digest));
                }
            }
            // Not mountable: fall through to an ordinary session, as the spec says.
        } else if q.contains_key("digest") {
            // Monolithic upload: the whole blob in this one request.
            let digest = parse_digest_param(q.get("digest"))?;
            let expected = content_length(req)?;
            if expected.is_some_and(|size| size > self.config.max_blob_size) {
                return Err(too_large(self.config.max_blob_size));
            }
            if let Some(size) = expected {
                let taken = std::mem::replace(body, Body::Empty);
                match self
                    .storage
                    .blob_put_direct(&digest, size, taken)
                    .await
                    .map_err(internal)?
                {
                    DirectPut::Stored => {
                        self.link_blob(name, &digest).await?;
                        return Ok(self.blob_created(name, &digest));
                    }
                    DirectPut::Mismatch => {
                        return Err(Error::new(ErrorCode::DigestInvalid)
                            .with_detail(serde_json::json!({ "expected": digest.to_string() })))
                    }
                    DirectPut::Declined(b) => *body = b,
                }
            }
            let id = new_upload_id();
            let mut state = UploadState::new(name, digest.algorithm(), (self.config.now)());
            let received = self.receive(&mut state, &id, body, expected).await;
            if let Err(e) = received {
                let _ = self
                    .storage
                    .upload_delete(&id, state.backend.as_deref())
                    .await;
                return Err(e);
            }
            return self.complete(state, &id, name, &digest).await;
        }
        self.check_session_bound().await?;
        let id = new_upload_id();
        let state = UploadState::new(name, Algorithm::Sha256, (self.config.now)());
        self.save_state(name, &id, &state).await?;
        Ok(finish(
            self.upload_response(StatusCode::ACCEPTED, name, &id, 0)
                .header(CHUNK_MIN_LENGTH, self.config.chunk_min_length),
            Body::Empty,
        ))
    }

    async fn load_state(&self, name: &Name, id: &str) -> Result<UploadState> {
        let unknown = || {
            Error::new(ErrorCode::BlobUploadUnknown).with_detail(serde_json::json!({ "id": id }))
        };
        if !valid_upload_id(id) {
            return Err(unknown());
        }
        let (raw, version) = self
            .storage
            .get_versioned(&keys::upload(id))
            .await
            .map_err(internal)?
            .ok_or_else(unknown)?;
        let mut state = UploadState::decode(&raw).ok_or_else(unknown)?;
        if state.repo != name.as_str() || state.completing {
            return Err(unknown());
        }
        if state.is_stale((self.config.now)(), self.config.upload_ttl) {
            self.expire_upload(id, &state).await;
            return Err(unknown());
        }
        state.version = Some(version);
        Ok(state)
    }

    /// Removes a session and its data.
    async fn expire_upload(&self, id: &str, state: &UploadState) {
        let _ = self
            .storage
            .upload_delete(id, state.backend.as_deref())
            .await;
        let _ = self.storage.delete(&keys::upload(id)).await;
    }

    /// Removes every session that has seen no request for `upload_ttl` seconds (and any whose
    /// state no longer parses). Returns how many sessions remain open. Adapters call it
    /// periodically; opening a session at the bound calls it too.
    pub async fn expire_uploads(&self) -> std::result::Result<usize, StorageError> {
        let now = (self.config.now)();
        let mut open = 0;
        for id in self
            .storage
            .list(keys::UPLOADS_DIR, Freshness::Current)
            .await?
        {
            // Natively this waits for a request working on the session, which then has
            // refreshed its activity time.
            let _session = self.storage.lock_session(&id).await;
            let Some(raw) = self.storage.get(&keys::upload(&id)).await? else {
                continue;
            };
            match UploadState::decode(&raw) {
                Some(state) if !state.is_stale(now, self.config.upload_ttl) => open += 1,
                Some(state) => self.expire_upload(&id, &state).await,
                None => {
                    let _ = self.storage.delete(&keys::upload(&id)).await;
                }
            }
        }
        Ok(open)
    }

    /// Refuses a new session when `max_upload_sessions` are open (after expiring stale ones).
    async fn check_session_bound(&self) -> Result<()> {
        let max = self.config.max_upload_sessions;
        let open = self
            .storage
            .list(keys::UPLOADS_DIR, Freshness::Current)
            .await
            .map_err(internal)?
            .len();
        if open < max || self.expire_uploads().await.map_err(internal)? < max {
            return Ok(());
        }
        Err(Error::new(ErrorCode::TooManyRequests)
            .with_message(format!(
                "{max} upload sessions are open: finish or cancel some, or wait for them to expire"
            ))
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("60")))
    }

    /// Saves a session's state: a new one as it is, one that was read only if nobody saved it
    /// since (a request that lost such a race gets 416 with the session's current range).
    async fn save_state(&self, name: &Name, id: &str, state: &UploadState) -> Result<()> {
        let key = keys::upload(id);
        let value = Bytes::from(state.encode());
        let Some(version) = &state.version else {
            return self.storage.put(&key, value).await.map_err(internal);
        };
        if self
            .storage
            .put_if(&key, value, version)
            .await
            .map_err(internal)?
        {
            return Ok(());
        }
        let current = self.load_state(name, id).await?;
        Err(Error::new(ErrorCode::BlobUploadInvalid)
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_message("the upload was changed by another request")
            .with_header(
                header::RANGE,
                hv(&format!("0-{}", current.offset.saturating_sub(1))),
            )
            .with_header(header::LOCATION, hv(&self.urls.upload(name, id)))
            .with_header(UPLOAD_UUID, hv(id)))
    }

    /// Checks a chunk's `Content-Range` against the session; returns the chunk's length.
    fn check_content_range(
        &self,
        req: &Parts,
        name: &Name,
        id: &str,
        state: &UploadState,
    ) -> Result<Option<u64>> {
        let length = content_length(req)?;
        let Some(cr) = header_str(req, header::CONTENT_RANGE) else {
            return Ok(length);
        };
        let out_of_order = || {
            Error::new(ErrorCode::BlobUploadInvalid)
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_message("chunk does not start where the upload ends")
                .with_header(
                    header::RANGE,
                    hv(&format!("0-{}", state.offset.saturating_sub(1))),
                )
                .with_header(header::LOCATION, hv(&self.urls.upload(name, id)))
                .with_header(UPLOAD_UUID, hv(id))
        };
        let (start, end) = parse_content_range(cr).ok_or_else(out_of_order)?;
        if start != state.offset {
            return Err(out_of_order());
        }
        let chunk = end - start + 1;
        if length.is_some_and(|l| l != chunk) {
            return Err(Error::new(ErrorCode::SizeInvalid)
                .with_message("Content-Length does not match Content-Range"));
        }
        Ok(Some(chunk))
    }

    /// Streams a request body into an upload, hashing it on the way, and saves the session's
    /// new offset and hash state only once the bytes are durable.
    async fn receive(
        &self,
        state: &mut UploadState,
        id: &str,
        body: &mut Body,
        expected: Option<u64>,
    ) -> Result<()> {
        if expected.is_some_and(|e| state.offset + e > self.config.max_blob_size) {
            return Err(too_large(self.config.max_blob_size));
        }
        let mut hasher = state
            .hasher()
            .ok_or_else(|| Error::internal("corrupt upload state"))?;
        let mut writer = self
            .storage
            .upload_writer(id, state.offset, state.backend.as_deref())
            .await
            .map_err(internal)?;
        let mut stream = std::mem::replace(body, Body::Empty).into_stream();
        let mut n: u64 = 0;
        // An error here leaves the rest of the body unread: the connection must close.
        let close = |e: Error| e.with_header(header::CONNECTION, HeaderValue::from_static("close"));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                close(
                    Error::new(ErrorCode::BlobUploadInvalid)
                        .with_message("request body ended early"),
                )
            })?;
            n += chunk.len() as u64;
            if state.offset + n > self.config.max_blob_size {
                return Err(close(too_large(self.config.max_blob_size)));
            }
            if expected.is_some_and(|e| n > e) {
                return Err(close(
                    Error::new(ErrorCode::SizeInvalid).with_message("body longer than declared"),
                ));
            }
            hasher.update(&chunk);
            writer.write(chunk).await.map_err(|e| close(internal(e)))?;
        }
        if expected.is_some_and(|e| n != e) {
            return Err(
                Error::new(ErrorCode::SizeInvalid).with_message("body shorter than declared")
            );
        }
        state.backend = writer.finish().await.map_err(internal)?;
        state.offset += n;
        state.updated = (self.config.now)();
        state.set_hasher(&hasher);
        Ok(())
    }

    async fn patch_upload(
        &self,
        req: &Parts,
        body: &mut Body,
        name: &Name,
        id: &str,
    ) -> Result<Response<Body>> {
        let _session = self.storage.lock_session(id).await;
        let mut state = self.load_state(name, id).await?;
        let expected = self.check_content_range(req, name, id, &state)?;
        self.receive(&mut state, id, body, expected).await?;
        self.save_state(name, id, &state).await?;
        Ok(finish(
            self.upload_response(StatusCode::ACCEPTED, name, id, state.offset),
            Body::Empty,
        ))
    }

    async fn put_upload(
        &self,
        req: &Parts,
        body: &mut Body,
        name: &Name,
        id: &str,
    ) -> Result<Response<Body>> {
        let _session = self.storage.lock_session(id).await;
        let mut state = self.load_state(name, id).await?;
        let q = query(req);
        let digest = parse_digest_param(q.get("digest"))?;
        let expected = self.check_content_range(req, name, id, &state)?;
        if expected != Some(0) {
            self.receive(&mut state, id, body, expected).await?;
        }
        self.complete(state, id, name, &digest).await
    }

    /// Verifies the finished upload against `digest` and turns it into a blob of the repository.
    async fn complete(
        &self,
        state: UploadState,
        id: &str,
        name: &Name,
        digest: &Digest,
    ) -> Result<Response<Body>> {
        let backend = state.backend.as_deref();
        let actual = if state.offset == 0 {
            // Nothing was received (and an empty upload may have written no data at all).
            Hasher::new(digest.algorithm()).finish()
        } else if state.algorithm() == Some(digest.algorithm()) {
            state
                .hasher()
                .ok_or_else(|| Error::internal("corrupt upload state"))?
                .finish()
        } else {
            // The session hashed with another algorithm: hash the stored bytes once more.
            let mut h = Hasher::new(digest.algorithm());
            let mut s = self
                .storage
                .upload_read(id, state.offset, backend)
                .await
                .map_err(internal)?;
            while let Some(chunk) = s.next().await {
                h.update(&chunk.map_err(|e| Error::internal(e.to_string()))?);
            }
            h.finish()
        };
        if &actual != digest {
            let _ = self.storage.upload_delete(id, backend).await;
            let _ = self.storage.delete(&keys::upload(id)).await;
            return Err(Error::new(ErrorCode::DigestInvalid).with_detail(
                serde_json::json!({ "expected": digest.to_string(), "actual": actual.to_string() }),
            ));
        }
        if state.version.is_some() {
            // Claim the session first: of racing final PUTs exactly one commits (the others
            // get 416 or 404), and a crash from here on leaves a session that clients see as
            // unknown, never one whose data was already moved into the blob store.
            let claimed = UploadState {
                completing: true,
                ..state.clone()
            };
            self.save_state(name, id, &claimed).await?;
        }
        self.storage
            .upload_commit(id, digest, state.offset, backend)
            .await
            .map_err(internal)?;
        self.link_blob(name, digest).await?;
        self.storage
            .delete(&keys::upload(id))
            .await
            .map_err(internal)?;
        Ok(self.blob_created(name, digest))
    }

    async fn upload_status(&self, name: &Name, id: &str) -> Result<Response<Body>> {
        let state = self.load_state(name, id).await?;
        Ok(finish(
            self.upload_response(StatusCode::NO_CONTENT, name, id, state.offset),
            Body::Empty,
        ))
    }

    async fn cancel_upload(&self, name: &Name, id: &str) -> Result<Response<Body>> {
        let _session = self.storage.lock_session(id).await;
        let state = self.load_state(name, id).await?;
        self.storage
            .delete(&keys::upload(id))
            .await
            .map_err(internal)?;
        self.storage
            .upload_delete(id, state.backend.as_deref())
            .await
            .map_err(internal)?;
        Ok(finish(
            response(StatusCode::NO_CONTENT).header(header::CONTENT_LENGTH, 0),
            Body::Empty,
        ))
    }

    // ---- manifests ----------------------------------------------------------------------

    /// Resolves a reference to the digest and record of a manifest in the repository.
    async fn resolve(
        &self,
        name: &Name,
        reference: &Reference,
    ) -> Result<(Digest, ManifestRecord)> {
        let unknown = || {
            Error::new(ErrorCode::ManifestUnknown)
                .with_detail(serde_json::json!({ "reference": reference.to_string() }))
        };
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                let raw = self
                    .storage
                    .get(&keys::tag(name, t))
                    .await
                    .map_err(internal)?
                    .ok_or_else(unknown)?;
                Digest::parse(
                    std::str::from_utf8(&raw).map_err(|_| Error::internal("corrupt tag"))?,
                )
                .map_err(|_| Error::internal("corrupt tag"))?
            }
        };
        let raw = self
            .storage
            .get(&keys::manifest(name, &digest))
            .await
            .map_err(internal)?
            .ok_or_else(unknown)?;
        let record: ManifestRecord =
            serde_json::from_slice(&raw).map_err(|_| Error::internal("corrupt manifest record"))?;
        Ok((digest, record))
    }

    async fn get_manifest(
        &self,
        name: &Name,
        reference: &str,
        head: bool,
    ) -> Result<Response<Body>> {
        let reference = Reference::parse(reference)?;
        let (digest, record) = self.resolve(name, &reference).await?;
        let b = response(StatusCode::OK)
            .header(header::CONTENT_TYPE, &record.media_type)
            .header(header::CONTENT_LENGTH, record.size)
            .header(header::ETAG, format!("\"{digest}\""))
            .header(CONTENT_DIGEST, digest.to_string());
        if head {
            return Ok(finish(b, Body::Empty));
        }
        let body = self
            .storage
            .blob_read(&digest, 0, record.size)
            .await
            .map_err(internal)?
            .ok_or_else(|| Error::new(ErrorCode::ManifestUnknown))?;
        Ok(finish(b, body))
    }

    async fn put_manifest(
        &self,
        req: &Parts,
        body: &mut Body,
        name: &Name,
        reference: &str,
    ) -> Result<Response<Body>> {
        let reference = Reference::parse(reference)?;
        let limit = self.config.max_manifest_size;
        let too_large = || {
            Error::new(ErrorCode::SizeInvalid)
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                .with_message(format!("manifest larger than {limit} bytes"))
        };
        if content_length(req)?.is_some_and(|l| l > limit as u64) {
            return Err(too_large());
        }
        let content_type = header_str(req, header::CONTENT_TYPE).map(str::to_string);
        let body = std::mem::replace(body, Body::Empty)
            .collect_limited(limit)
            .await
            .map_err(|_| {
                Error::new(ErrorCode::ManifestInvalid).with_message("request body ended early")
            })?
            .ok_or_else(too_large)?;
        let manifest = Manifest::parse(content_type.as_deref(), &body)?;
        let digest = match &reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &body);
                if &actual != d {
                    return Err(Error::new(ErrorCode::DigestInvalid)
                        .with_detail(serde_json::json!({ "expected": d.to_string(), "actual": actual.to_string() })));
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &body),
        };
        for blob in &manifest.blobs {
            if !self.exists(&keys::blob_link(name, blob)).await? {
                return Err(Error::new(ErrorCode::ManifestBlobUnknown)
                    .with_detail(serde_json::json!({ "digest": blob.to_string() })));
            }
        }
        for m in &manifest.manifests {
            if !self.exists(&keys::manifest(name, m)).await? {
                return Err(Error::new(ErrorCode::ManifestBlobUnknown)
                    .with_detail(serde_json::json!({ "digest": m.to_string() })));
            }
        }

        // Content first, then the links that make it visible: a crash in between leaves
        // unreferenced bytes, never a dangling tag.
        let size = body.len() as u64;
        self.storage
            .blob_put(&digest, body)
            .await
            .map_err(internal)?;
        let record = ManifestRecord {
            media_type: manifest.media_type.clone(),
            size,
            subject: manifest.subject.as_ref().map(|s| s.to_string()),
        };
        self.storage
            .put(
                &keys::manifest(name, &digest),
                Bytes::from(serde_json::to_vec(&record).unwrap_or_default()),
            )
            .await
            .map_err(internal)?;
        if let Some(subject) = &manifest.subject {
            let desc = manifest.referrer_descriptor(&digest, size);
            self.storage
                .put(
                    &keys::referrer(name, subject, &digest),
                    Bytes::from(serde_json::to_vec(&desc).unwrap_or_default()),
                )
                .await
                .map_err(internal)?;
        }
        self.ensure_catalog(name).await?;
        if let Reference::Tag(tag) = &reference {
            self.storage
                .put(&keys::tag(name, tag), Bytes::from(digest.to_string()))
                .await
                .map_err(internal)?;
        }
        let mut b = response(StatusCode::CREATED)
            .header(header::LOCATION, self.urls.manifest(name, &digest))
            .header(CONTENT_DIGEST, digest.to_string())
            .header(header::CONTENT_LENGTH, 0);
        if let Some(subject) = &manifest.subject {
            b = b.header(OCI_SUBJECT, subject.to_string());
        }
        Ok(finish(b, Body::Empty))
    }

    async fn delete_manifest(&self, name: &Name, reference: &str) -> Result<Response<Body>> {
        let reference = Reference::parse(reference)?;
        let accepted = || {
            finish(
                response(StatusCode::ACCEPTED).header(header::CONTENT_LENGTH, 0),
                Body::Empty,
            )
        };
        match &reference {
            Reference::Tag(tag) => {
                let key = keys::tag(name, tag);
                if !self.exists(&key).await? {
                    return Err(Error::new(ErrorCode::ManifestUnknown)
                        .with_detail(serde_json::json!({ "tag": tag.as_str() })));
                }
                self.storage.delete(&key).await.map_err(internal)?;
                Ok(accepted())
            }
            Reference::Digest(_) => {
                let (digest, record) = self.resolve(name, &reference).await?;
                // Tags first, so no tag ever points at a manifest that is gone.
                let digest_str = digest.to_string();
                for t in self
                    .storage
                    .list(&keys::tags_dir(name), Freshness::Current)
                    .await
                    .map_err(internal)?
                {
                    let Ok(tag) = Tag::parse(&t) else { continue };
                    let key = keys::tag(name, &tag);
                    if self.storage.get(&key).await.map_err(internal)?.as_deref()
                        == Some(digest_str.as_bytes())
                    {
                        self.storage.delete(&key).await.map_err(internal)?;
                    }
                }
                if let Some(subject) = record
                    .subject
                    .as_deref()
                    .and_then(|s| Digest::parse(s).ok())
                {
                    self.storage
                        .delete(&keys::referrer(name, &subject, &digest))
                        .await
                        .map_err(internal)?;
                }
                self.storage
                    .delete(&keys::manifest(name, &digest))
                    .await
                    .map_err(internal)?;
                Ok(accepted())
            }
        }
    }

    // ---- referrers ----------------------------------------------------------------------

    async fn referrers(&self, req: &Parts, name: &Name, digest: &str) -> Result<Response<Body>> {
        let subject = Digest::parse(digest)?;
        let q = query(req);
        let filter = q.get("artifactType");
        let mut manifests: Vec<Descriptor> = Vec::new();
        for entry in self
            .storage
            .list(&keys::referrers_dir(name, &subject), Freshness::Current)
            .await
            .map_err(internal)?
        {
            let key = format!("{}/{}", keys::referrers_dir(name, &subject), entry);
            let Some(raw) = self.storage.get(&key).await.map_err(internal)? else {
                continue;
            };
            let Ok(desc) = serde_json::from_slice::<Descriptor>(&raw) else {
                continue;
            };
            if filter.is_some_and(|f| desc.artifact_type.as_ref() != Some(f)) {
                continue;
            }
            manifests.push(desc);
        }
        manifests.sort_by(|a, b| a.digest.cmp(&b.digest));
        let mut resp = json_response(
            StatusCode::OK,
            OCI_INDEX,
            &serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }),
        );
        if filter.is_some() {
            resp.headers_mut().insert(
                OCI_FILTERS_APPLIED,
                HeaderValue::from_static("artifactType"),
            );
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let v: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(page(v.clone(), None, None), (v.clone(), false));
        assert_eq!(
            page(v.clone(), Some(2), None),
            (vec!["a".into(), "b".into()], true)
        );
        assert_eq!(
            page(v.clone(), Some(2), Some("b")),
            (vec!["c".into(), "d".into()], false)
        );
        assert_eq!(page(v.clone(), Some(0), None), (vec![], false));
        assert_eq!(
            page(v.clone(), Some(10), Some("bb")),
            (vec!["c".into(), "d".into()], false)
        );
        assert_eq!(page(v.clone(), None, Some("z")), (vec![], false));
        assert!(!page(v, Some(4), None).1);
    }
}
