//! The one test client: requests are a method, a path with its query, headers and a body
//! (bytes, or a stream); a [`Response`] is a status, headers and the body's bytes
//! ([`RequestBuilder::send_streaming`] keeps it a stream). It speaks to a registry in process
//! (through `Registry::handle`, as the native server hands requests over) or over HTTP, the
//! same way; [`super::target`] says which.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use edge_registry::auth::ClientAddr;
use edge_registry::body::ByteStream;
use edge_registry::error::InternalCause;
use edge_registry::storage::memory::MemoryStorage;
use edge_registry::{Body, Registry};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use super::content::{image_of, sha256, to_bytes, with, OCI_INDEX, OCI_MANIFEST};
use super::Server;

// ---- the client -----------------------------------------------------------------------------

/// Where a client's requests go.
#[derive(Clone)]
pub(super) enum Conn {
    InProcess(Arc<Registry<MemoryStorage>>),
    Http { c: reqwest::Client, base: String },
}

/// A client of one registry, anonymous or with credentials.
#[derive(Clone)]
pub struct Client {
    conn: Conn,
    /// Sent as `Authorization` unless a request sets its own.
    authorization: Option<String>,
}

impl Client {
    pub(super) fn of_conn(conn: Conn) -> Client {
        Client {
            conn,
            authorization: None,
        }
    }

    /// A client of the server at `base` (`http://host:port`).
    pub fn http(base: &str) -> Client {
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A server closes a connection that sits idle too long: ours after 30 s
            // (`header_read_timeout`), wrangler dev's proxy (Node's http server) after 5 s.
            // Reusing one it is closing fails the request (hyper's IncompleteMessage), so
            // idle connections are dropped before that, as a well-configured client does.
            .pool_idle_timeout(std::time::Duration::from_secs(3))
            .build()
            .unwrap();
        Client::of_conn(Conn::Http {
            c,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// A client of `server`.
    pub fn of(server: &Server) -> Client {
        Client::http(&server.url)
    }

    /// This client with Basic credentials.
    pub fn basic(&self, (user, password): (&str, &str)) -> Client {
        Client {
            authorization: Some(basic(user, password)),
            ..self.clone()
        }
    }

    /// This client with a Bearer token.
    pub fn bearer(&self, token: &str) -> Client {
        Client {
            authorization: Some(format!("Bearer {token}")),
            ..self.clone()
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: RequestBody::None,
            timeout: None,
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn head(&self, path: &str) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    // ---- pushing ----

    /// Pushes a blob in one `POST ?digest=` (201, with its digest); returns the digest.
    pub async fn push_blob(&self, name: &str, data: impl Into<Bytes>) -> String {
        self.try_push_blob(name, data)
            .await
            .unwrap_or_else(|e| panic!("pushing a blob to {name}: {e}"))
    }

    /// [`Client::push_blob`], `Err` if the request got no answer.
    pub async fn try_push_blob(
        &self,
        name: &str,
        data: impl Into<Bytes>,
    ) -> Result<String, String> {
        let data = data.into();
        let d = sha256(&data);
        self.post(&format!("/v2/{name}/blobs/uploads/?digest={d}"))
            .body(data)
            .try_send()
            .await?
            .expect_digest(StatusCode::CREATED, &d);
        Ok(d)
    }

    /// Opens an upload session (202); returns its location.
    pub async fn start_upload(&self, name: &str) -> String {
        let r = self
            .post(&format!("/v2/{name}/blobs/uploads/"))
            .send()
            .await;
        r.expect(StatusCode::ACCEPTED);
        r.location()
    }

    /// Pushes a blob in a session of its own: PATCHes of `chunk` bytes with `Content-Range`,
    /// each acknowledged at its offset, and a PUT with the last chunk. Returns the digest.
    pub async fn push_chunked(&self, name: &str, data: &Bytes, chunk: usize) -> String {
        let d = sha256(data);
        let mut loc = self.start_upload(name).await;
        let mut offset = 0;
        while data.len() - offset > chunk {
            let r = self
                .patch(&loc)
                .header("Content-Range", content_range(offset, chunk))
                .body(data.slice(offset..offset + chunk))
                .send()
                .await;
            r.expect(StatusCode::ACCEPTED);
            offset += chunk;
            assert_eq!(r.upload_offset(), offset as u64);
            loc = r.location();
        }
        self.put(&with_digest(&loc, &d))
            .header("Content-Range", content_range(offset, data.len() - offset))
            .body(data.slice(offset..))
            .send()
            .await
            .expect_digest(StatusCode::CREATED, &d);
        d
    }

    /// PUTs a manifest; the answer is the caller's to check.
    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: impl Into<Bytes>,
    ) -> Response {
        self.put(&format!("/v2/{name}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(body)
            .send()
            .await
    }

    /// PUTs an OCI image manifest (201, with its digest); returns the digest.
    pub async fn push_manifest(&self, name: &str, reference: &str, body: &Bytes) -> String {
        self.try_push_manifest(name, reference, body)
            .await
            .unwrap_or_else(|e| panic!("pushing manifest {reference} to {name}: {e}"))
    }

    /// [`Client::push_manifest`], `Err` if the request got no answer.
    pub async fn try_push_manifest(
        &self,
        name: &str,
        reference: &str,
        body: &Bytes,
    ) -> Result<String, String> {
        let d = sha256(body);
        self.put(&format!("/v2/{name}/manifests/{reference}"))
            .header("Content-Type", OCI_MANIFEST)
            .body(body.clone())
            .try_send()
            .await?
            .expect_digest(StatusCode::CREATED, &d);
        Ok(d)
    }

    /// Pushes an image while a collector may be running: HEADs each blob and uploads what is
    /// missing, then PUTs the manifest; again when the collector took a blob in between (400
    /// MANIFEST_BLOB_UNKNOWN, or 429 on the upload). Returns how many PUTs were refused.
    pub async fn push_racing_collector(
        &self,
        name: &str,
        tag: &str,
        blobs: &[Bytes],
        manifest: &Bytes,
    ) -> u32 {
        for refused in 0..50 {
            for b in blobs {
                let d = sha256(b);
                if self
                    .head(&format!("/v2/{name}/blobs/{d}"))
                    .send()
                    .await
                    .status
                    != StatusCode::OK
                {
                    let r = self
                        .post(&format!("/v2/{name}/blobs/uploads/?digest={d}"))
                        .body(b.clone())
                        .send()
                        .await;
                    assert!(
                        r.status == StatusCode::CREATED
                            || r.status == StatusCode::TOO_MANY_REQUESTS,
                        "upload: {} {}",
                        r.status,
                        r.text()
                    );
                }
            }
            let r = self
                .put_manifest(name, tag, OCI_MANIFEST, manifest.clone())
                .await;
            if r.status == StatusCode::CREATED {
                return refused;
            }
            assert_eq!(
                r.code(),
                "MANIFEST_BLOB_UNKNOWN",
                "manifest PUT: {} {}",
                r.status,
                r.text()
            );
        }
        panic!("{name}:{tag} refused 50 times");
    }

    /// Pushes a config, one layer and an image manifest for them (with the keys of `extra`)
    /// tagged `tag`; returns the manifest's bytes and digest.
    pub async fn push_image(
        &self,
        name: &str,
        tag: &str,
        layer: &[u8],
        extra: Value,
    ) -> (Bytes, String) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","layer":{}}}"#,
            layer.len()
        );
        self.push_blob(name, config.clone()).await;
        self.push_blob(name, layer.to_vec()).await;
        let body = to_bytes(&with(image_of(config.as_bytes(), &[layer]), extra));
        let d = self.push_manifest(name, tag, &body).await;
        (body, d)
    }

    // ---- tokens ----

    /// `GET /token?service=edge-registry&scope=..` with this client's credentials.
    pub async fn token(&self, scopes: &[&str]) -> Response {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("service", "edge-registry");
        for s in scopes {
            q.append_pair("scope", s);
        }
        self.get(&format!("/token?{}", q.finish())).send().await
    }

    /// A token for `scopes` (200, `token` and `access_token` alike, an expiry).
    pub async fn token_string(&self, scopes: &[&str]) -> String {
        let r = self.token(scopes).await;
        r.expect(StatusCode::OK);
        let v = r.json();
        assert_eq!(v["token"], v["access_token"]);
        assert!(v["expires_in"].as_u64().unwrap() > 0);
        v["token"].as_str().unwrap().to_string()
    }

    // ---- reading back ----

    /// The blob is in `name` with exactly these bytes: HEAD (its length), GET (its digest
    /// header and bytes) and a range of its second half.
    pub async fn blob_intact(&self, name: &str, data: &[u8]) {
        let d = sha256(data);
        let path = format!("/v2/{name}/blobs/{d}");
        let r = self.head(&path).send().await;
        assert_eq!(r.status, StatusCode::OK, "HEAD blob {d} of {name}");
        assert_eq!(r.header("content-length"), Some(&*data.len().to_string()));
        let r = self.get(&path).send().await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "GET blob {d} of {name} (HEAD said 200): {}",
            r.text()
        );
        assert_eq!(r.header("docker-content-digest"), Some(&*d));
        assert_eq!(r.body.len(), data.len(), "size of blob {d}");
        assert!(r.body == data, "content of blob {d}");
        assert_eq!(sha256(&r.body), d);
        if let Some(end) = data.len().checked_sub(1) {
            let r = self
                .get(&path)
                .header("Range", format!("bytes={}-{end}", end / 2))
                .send()
                .await;
            assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "range of blob {d}");
            assert!(r.body == data[end / 2..], "range of blob {d}");
        }
    }

    /// The blob `d` is unknown in `name` (404 BLOB_UNKNOWN).
    pub async fn blob_absent(&self, name: &str, d: &str) {
        let r = self.get(&format!("/v2/{name}/blobs/{d}")).send().await;
        assert_eq!(
            r.status_code(),
            (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into()),
            "blob {d} of {name}"
        );
    }

    /// The blob is either unknown in `name` or there with exactly these bytes.
    pub async fn blob_absent_or_intact(&self, name: &str, data: &[u8]) {
        let d = sha256(data);
        let r = self.head(&format!("/v2/{name}/blobs/{d}")).send().await;
        match r.status {
            StatusCode::OK => self.blob_intact(name, data).await,
            _ => self.blob_absent(name, &d).await,
        }
    }

    /// GETs a manifest: its bytes and digest, or `None` if it is unknown (404
    /// MANIFEST_UNKNOWN). Checks that the digest header matches the bytes (and a digest
    /// reference), that the media type is the body's, and that HEAD agrees.
    pub async fn manifest(&self, name: &str, reference: &str) -> Option<(Bytes, String)> {
        let path = format!("/v2/{name}/manifests/{reference}");
        let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
        let r = self.get(&path).header("Accept", &accept).send().await;
        if r.status != StatusCode::OK {
            assert_eq!(
                r.status_code(),
                (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into()),
                "manifest {reference} of {name}"
            );
            return None;
        }
        let d = r
            .header("docker-content-digest")
            .expect("Docker-Content-Digest")
            .to_string();
        assert_eq!(sha256(&r.body), d, "manifest {reference} of {name}: digest");
        if reference.contains(':') {
            assert_eq!(d, reference);
        }
        assert_eq!(
            r.header("content-type"),
            r.json()["mediaType"].as_str(),
            "manifest {reference} of {name}: media type"
        );
        let h = self.head(&path).header("Accept", &accept).send().await;
        assert_eq!(h.status, StatusCode::OK, "HEAD manifest {reference}");
        assert_eq!(h.header("content-length"), Some(&*r.body.len().to_string()));
        Some((r.body, d))
    }

    /// The tags of `name` (in one list), or `None` if the repository is unknown (404
    /// NAME_UNKNOWN).
    pub async fn tags(&self, name: &str) -> Option<Vec<String>> {
        let r = self.get(&format!("/v2/{name}/tags/list")).send().await;
        if r.status == StatusCode::NOT_FOUND {
            assert_eq!(r.status_code().1, "NAME_UNKNOWN");
            return None;
        }
        r.expect(StatusCode::OK);
        let v = r.json();
        assert_eq!(v["name"], json!(name));
        Some(strings(&v["tags"]))
    }

    /// The whole catalog, following its pages.
    pub async fn catalog(&self) -> Vec<String> {
        let mut all = Vec::new();
        let mut next = Some("/v2/_catalog?n=1000".to_string());
        while let Some(path) = next.take() {
            let r = self.get(&path).send().await;
            r.expect(StatusCode::OK);
            next = r.next_page();
            all.extend(strings(&r.json()["repositories"]));
        }
        all
    }
}

/// `Basic <base64 of user:password>`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

/// `Content-Range` of `len` bytes at `offset` (`start-end`, inclusive).
pub fn content_range(offset: usize, len: usize) -> String {
    format!("{}-{}", offset, offset + len - 1)
}

/// An upload location with `digest=` added to its query.
pub fn with_digest(loc: &str, d: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={d}")
}

/// A JSON array of strings.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

// ---- requests -------------------------------------------------------------------------------

enum RequestBody {
    None,
    Bytes(Bytes),
    Stream(ByteStream),
}

/// One request, built up and then sent.
#[must_use]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    /// The path and query, or an absolute URL.
    path: String,
    headers: Vec<(String, String)>,
    body: RequestBody,
    timeout: Option<Duration>,
}

impl RequestBuilder {
    /// Adds a header (a repeated name adds another line).
    pub fn header(mut self, name: &str, value: impl Display) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        self.header("Authorization", basic(user, password))
    }

    pub fn bearer_auth(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// A body of known length (sent with its `Content-Length`).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = RequestBody::Bytes(body.into());
        self
    }

    /// A body of unknown length, streamed (chunked over HTTP, unless a `Content-Length`
    /// header is set).
    pub fn stream(mut self, body: ByteStream) -> Self {
        self.body = RequestBody::Stream(body);
        self
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form(self, pairs: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// Fails the request (an `Err` of [`RequestBuilder::try_send`]) if it takes longer.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Sends the request and reads the whole answer; a request that gets none fails the test.
    pub async fn send(self) -> Response {
        let what = format!("{} {}", self.method, self.path);
        self.try_send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Sends the request and reads the whole answer; `Err` if there is none (the server
    /// died, the connection broke, the time ran out).
    pub async fn try_send(self) -> Result<Response, String> {
        let timeout = self.timeout;
        let exchange = async {
            let r = self.send_streaming().await?;
            r.collect().await
        };
        match timeout {
            Some(d) => tokio::time::timeout(d, exchange)
                .await
                .map_err(|_| format!("no answer within {d:?}"))?,
            None => exchange.await,
        }
    }

    /// Sends the request; the answer's body stays a stream.
    pub async fn send_streaming(self) -> Result<StreamingResponse, String> {
        let authorization = self.client.authorization.clone();
        let mut headers = self.headers;
        if let Some(a) = authorization {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                headers.push(("Authorization".into(), a));
            }
        }
        let (method, path) = (self.method, self.path);
        match &self.client.conn {
            Conn::InProcess(registry) => {
                in_process_exchange(registry, method, path, headers, self.body).await
            }
            Conn::Http { c, base } => {
                let url = if path.starts_with("http://") || path.starts_with("https://") {
                    path.clone()
                } else {
                    format!("{base}{path}")
                };
                let mut b = c.request(method.clone(), url);
                for (k, v) in &headers {
                    b = b.header(k, v);
                }
                b = match self.body {
                    RequestBody::None => b,
                    RequestBody::Bytes(bytes) => b.body(bytes),
                    RequestBody::Stream(s) => b.body(reqwest::Body::wrap_stream(s)),
                };
                if let Some(d) = self.timeout {
                    b = b.timeout(d);
                }
                let r = b.send().await.map_err(|e| format!("{e:?}"))?;
                Ok(StreamingResponse {
                    method,
                    path,
                    status: r.status(),
                    headers: r.headers().clone(),
                    cause: None,
                    body: Box::pin(
                        r.bytes_stream()
                            .map(|c| c.map_err(|e| Box::new(e) as edge_registry::body::BoxError)),
                    ),
                })
            }
        }
    }
}

/// One request through `Registry::handle`, as the native server hands it over: from
/// 127.0.0.1, with a `Host`, and the `Content-Length` an HTTP client would send (that of a
/// body of known length; 0 without a body, but for the methods without payload semantics).
async fn in_process_exchange(
    registry: &Registry<MemoryStorage>,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: RequestBody,
) -> Result<StreamingResponse, String> {
    let mut req = http::Request::builder().method(method.clone()).uri(&path);
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        req = req.header(http::header::HOST, "localhost");
    }
    let length = match &body {
        RequestBody::Bytes(b) => Some(b.len()),
        RequestBody::None => {
            let payload =
                ![Method::GET, Method::HEAD, Method::DELETE, Method::CONNECT].contains(&method);
            payload.then_some(0)
        }
        RequestBody::Stream(_) => None,
    };
    if let Some(length) = length {
        if !has("content-length") && !has("transfer-encoding") {
            req = req.header(http::header::CONTENT_LENGTH, length);
        }
    }
    for (k, v) in &headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("{k}: {e}"))?;
        let value = HeaderValue::from_str(v).map_err(|e| format!("{k}: {e}"))?;
        req = req.header(name, value);
    }
    let body = match body {
        RequestBody::None => Body::Empty,
        RequestBody::Bytes(b) => Body::Full(b),
        RequestBody::Stream(s) => Body::Stream(s),
    };
    let mut req = req.body(body).map_err(|e| format!("{path}: {e}"))?;
    req.extensions_mut().insert(ClientAddr("127.0.0.1".into()));
    let (parts, body) = registry.handle(req).await.response.into_parts();
    Ok(StreamingResponse {
        method,
        path,
        status: parts.status,
        headers: parts.headers,
        cause: parts.extensions.get::<InternalCause>().map(|c| c.0.clone()),
        body: body.into_stream(),
    })
}

// ---- responses ------------------------------------------------------------------------------

/// An answer whose body is still a stream.
pub struct StreamingResponse {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// In process, the cause of a 5xx (which only goes to the log).
    pub cause: Option<String>,
    pub body: ByteStream,
}

impl StreamingResponse {
    /// Reads the whole body.
    pub async fn collect(mut self) -> Result<Response, String> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.body.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| format!("reading the body: {e:?}"))?);
        }
        Ok(Response {
            method: self.method,
            path: self.path,
            status: self.status,
            headers: self.headers,
            cause: self.cause,
            body: buf.freeze(),
        })
    }
}

/// An answer, whichever way it came: status, headers, and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// What was asked, for messages.
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// In process, the cause of a 5xx (which only goes to the log).
    pub cause: Option<String>,
    pub body: Bytes,
}

impl Response {
    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_else(|_| panic!("{name}: not text")))
    }

    /// `Location`, which must be there.
    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("{} {}: no Location", self.method, self.path))
            .to_string()
    }

    /// The body as text (lossy), and the cause of a 5xx where it is known.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        match &self.cause {
            Some(cause) => format!("{text} (cause: {cause})"),
            None => text,
        }
    }

    /// The body as JSON, which it must be.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: {} body is not JSON ({e}): {}",
                self.method,
                self.path,
                self.status,
                self.text()
            )
        })
    }

    /// The first error code of the body, "" if there is none.
    pub fn code(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The status and the first error code ("" for a success), checking what every answer
    /// must be: never a 5xx, and an error is the spec's JSON (`application/json`) with a code
    /// (but for HEAD, which has no body).
    pub fn status_code(&self) -> (StatusCode, String) {
        let what = format!("{} {}: {}", self.method, self.path, self.status);
        assert!(!self.status.is_server_error(), "{what}: {}", self.text());
        let code = self.code();
        if self.status.is_client_error() && self.method != Method::HEAD {
            assert_eq!(
                self.header("content-type"),
                Some("application/json"),
                "{what}: content type of an error"
            );
            assert!(
                !code.is_empty(),
                "{what} without an error code: {}",
                self.text()
            );
        }
        (self.status, code)
    }

    /// Asserts that this is the error `status` with the code `code` (see
    /// [`Response::status_code`]).
    pub fn expect_error(&self, status: StatusCode, code: &str) -> &Response {
        assert_eq!(
            self.status_code(),
            (status, code.to_string()),
            "{} {}",
            self.method,
            self.path
        );
        self
    }

    /// Asserts the status (the body is in the message).
    pub fn expect(&self, status: StatusCode) -> &Response {
        assert_eq!(
            self.status,
            status,
            "{} {}: {}",
            self.method,
            self.path,
            self.text()
        );
        self
    }

    /// Asserts the status, and a `Docker-Content-Digest` of `d` with it.
    pub fn expect_digest(&self, status: StatusCode, d: &str) -> &Response {
        self.expect(status);
        assert_eq!(
            self.header("docker-content-digest"),
            Some(d),
            "{} {}",
            self.method,
            self.path
        );
        self
    }

    /// The offset an upload's `Range: 0-<last>` stands for: `0-0` is how an empty session is
    /// reported (no test session ever holds exactly one byte).
    pub fn upload_offset(&self) -> u64 {
        let range = self.header("range").expect("Range header");
        let last: u64 = range
            .strip_prefix("0-")
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("bad Range {range:?}"));
        if last == 0 {
            0
        } else {
            last + 1
        }
    }

    /// The path and query of the `Link: <..>; rel="next"` page, if any.
    pub fn next_page(&self) -> Option<String> {
        self.header("link").map(|l| {
            assert!(l.ends_with("; rel=\"next\""), "{l}");
            let url = &l[l.find('<').unwrap() + 1..l.find('>').unwrap()];
            // Path-absolute, or absolute: keep the path and query.
            url.find("/v2/").map_or(url, |i| &url[i..]).to_string()
        })
    }
}

/// Runs `f` to its end on a runtime of its own (for the tests that are not async).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}
