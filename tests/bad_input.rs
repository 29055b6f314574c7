//! Malformed input: every row of the table sends one bad (or borderline) request and checks
//! the status, the spec's JSON error body `{"errors":[{"code":..,"message":..}]}` and its code,
//! never a 5xx, and that the registry keeps serving afterwards. The table runs in process
//! (`name::in_process`) and over HTTP (`name::http`).
//!
//! Over HTTP, most rows go through the test client. Rows whose path a URL parser would
//! normalise (`..`, `%2e%2e`) or whose framing the client cannot express (chunked bodies that
//! end early, a declared length that the body does not meet) are written by hand over a TCP
//! socket (`.raw()`), so the bytes the server sees are exactly the bytes in the table. In
//! process, every row goes to `Registry::handle` as the native server would hand it over: the
//! path as it is, and the framing turned into the body stream hyper would make of it (one that
//! fails where the client stopped sending). The tests of malformed HTTP itself are HTTP only.
//!
//! The tests at the end (`spec_*`) pin behaviour the server gets wrong at the time of writing;
//! each says what the spec (or RFC 9110, which it defers to) wants.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::client::{RequestBuilder, Response};
use common::content::{descriptor_of, sha256, sha512, OCI_CONFIG, OCI_INDEX, OCI_LAYER};
use common::content::{DOCKER_MANIFEST, OCI_MANIFEST};
use common::{repo, Client, Server, Target, Transport};
use edge_registry::body::{BoxError, ByteStream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// Every request must be answered within this long; a hang is a failure, not a stuck test.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The error codes of the OCI Distribution Spec v1.1; an error body may use no other.
const SPEC_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

// ---- requests ---------------------------------------------------------------------------

/// How a row's body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    /// `Content-Length` of the body (sent for PATCH/POST/PUT even when empty).
    Length,
    /// `Transfer-Encoding: chunked`, complete.
    Chunked,
    /// `Transfer-Encoding: chunked`, then the client stops sending (half-close) mid-body.
    ChunkedEndsEarly,
    /// `Content-Length: n` whatever the body's length; a shorter body is followed by a
    /// half-close, a longer one is sent whole (its tail is not part of the request).
    Declared(u64),
    /// No framing header added: the row's headers and body are sent exactly as given.
    Verbatim,
}

/// One request and what the answer must be.
struct Row {
    label: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: Framing,
    raw: bool,
    /// Acceptable statuses.
    statuses: Vec<u16>,
    /// Acceptable error codes (first entry of `errors`); empty: any spec code.
    codes: Vec<&'static str>,
    /// Headers the answer must have, and their value when `Some`.
    want_headers: Vec<(&'static str, Option<String>)>,
    want_body: Option<Vec<u8>>,
}

fn row(method: &'static str, path: impl Into<String>) -> Row {
    let path = path.into();
    Row {
        label: format!("{method} {}", short(&path)),
        method,
        path,
        headers: Vec::new(),
        body: Vec::new(),
        framing: Framing::Length,
        raw: false,
        statuses: Vec::new(),
        codes: Vec::new(),
        want_headers: Vec::new(),
        want_body: None,
    }
}

fn short(s: &str) -> String {
    if s.len() <= 140 {
        s.to_string()
    } else {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...({} bytes)", &s[..end], s.len())
    }
}

impl Row {
    /// A note that says why the row is there.
    fn note(mut self, note: &str) -> Self {
        self.label = format!("{} [{note}]", self.label);
        self
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
    fn framing(mut self, f: Framing) -> Self {
        self.framing = f;
        self.raw = true;
        self
    }
    fn raw(mut self) -> Self {
        self.raw = true;
        self
    }
    /// Expects `status`, and for an error, the code `code` ("" for any spec code).
    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.statuses.push(status);
        if !code.is_empty() {
            self.codes.push(code);
        }
        self
    }
    fn or_status(mut self, status: u16) -> Self {
        self.statuses.push(status);
        self
    }
    fn or_code(mut self, code: &'static str) -> Self {
        self.codes.push(code);
        self
    }
    fn has_header(mut self, name: &'static str) -> Self {
        self.want_headers.push((name, None));
        self
    }
    fn header_eq(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.want_headers.push((name, Some(value.into())));
        self
    }
    fn want_body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.want_body = Some(b.into());
        self
    }
}

/// Sends a row to the registry under test, and reads the answer.
async fn send(s: &Target, r: &Row) -> Result<Response, String> {
    match s.server() {
        Some(server) if r.raw => send_raw(&server.host(), r).await,
        Some(server) => {
            let url = reqwest::Url::parse(&format!("{}{}", server.url, r.path)).unwrap();
            let sent = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            assert_eq!(
                sent, r.path,
                "the client would not send this path as it is; mark the row .raw()"
            );
            assert_eq!(
                r.framing,
                Framing::Length,
                "only raw rows choose their framing"
            );
            request(&s.client(), r).try_send().await
        }
        None => request(&s.client(), r).try_send().await,
    }
}

/// A row as a request of the test client, its framing as the body a server makes of it.
fn request(c: &Client, r: &Row) -> RequestBuilder {
    let method = Method::from_bytes(r.method.as_bytes()).unwrap();
    let mut b = c.request(method, &r.path).timeout(TIMEOUT);
    for (k, v) in &r.headers {
        b = b.header(k, v);
    }
    let body = Bytes::from(r.body.clone());
    match r.framing {
        Framing::Length if !body.is_empty() || matches!(r.method, "PATCH" | "POST" | "PUT") => {
            b.body(body)
        }
        Framing::Length => b,
        Framing::Chunked => b.stream(pieces(body, None)),
        Framing::ChunkedEndsEarly => b.stream(pieces(body, Some("the client stopped sending"))),
        Framing::Declared(n) if (body.len() as u64) < n => b.header("Content-Length", n).stream(
            pieces(body, Some("the body ended before its Content-Length")),
        ),
        // The bytes past the declared length are not part of the request.
        Framing::Declared(n) => b.header("Content-Length", n).body(body.slice(..n as usize)),
        Framing::Verbatim => {
            let chunked = r
                .headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
            assert!(chunked, "in process, a verbatim body must be chunked");
            let (data, error) = match dechunk(&body) {
                Ok(data) => (data, None),
                Err(_) => (Vec::new(), Some("bad chunked encoding")),
            };
            b.stream(pieces(Bytes::from(data), error))
        }
    }
}

/// `body` as a stream of 64 KiB pieces, failing with `error` at its end if given.
fn pieces(body: Bytes, error: Option<&'static str>) -> ByteStream {
    let mut items: Vec<Result<Bytes, BoxError>> = (0..body.len())
        .step_by(64 * 1024)
        .map(|at| Ok(body.slice(at..(at + 64 * 1024).min(body.len()))))
        .collect();
    if let Some(e) = error {
        items.push(Err(e.into()));
    }
    Box::pin(futures_util::stream::iter(items))
}

/// Writes the request by hand and reads the answer until the server closes the connection.
async fn send_raw(host: &str, r: &Row) -> Result<Response, String> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
        r.method, r.path
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut payload = Vec::new();
    let mut half_close = false;
    match r.framing {
        Framing::Length => {
            if !r.body.is_empty() || matches!(r.method, "PATCH" | "POST" | "PUT") {
                head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
            }
            payload.extend_from_slice(&r.body);
        }
        Framing::Chunked | Framing::ChunkedEndsEarly => {
            head.push_str("Transfer-Encoding: chunked\r\n");
            for chunk in r.body.chunks(64 * 1024) {
                payload.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                payload.extend_from_slice(chunk);
                payload.extend_from_slice(b"\r\n");
            }
            if r.framing == Framing::Chunked {
                payload.extend_from_slice(b"0\r\n\r\n");
            } else {
                half_close = true;
            }
        }
        Framing::Declared(n) => {
            head.push_str(&format!("Content-Length: {n}\r\n"));
            payload.extend_from_slice(&r.body);
            half_close = (r.body.len() as u64) < n;
        }
        Framing::Verbatim => payload.extend_from_slice(&r.body),
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&payload);
    raw_exchange(host, bytes, half_close, r.method, &r.path).await
}

/// Sends `bytes` as they are (then half-closes, if asked) and reads what comes back until
/// the server closes the connection: the answer to `method` `path`, or why there was none.
async fn raw_exchange(
    host: &str,
    bytes: Vec<u8>,
    half_close: bool,
    method: &str,
    path: &str,
) -> Result<Response, String> {
    let exchange = async {
        let stream = TcpStream::connect(host)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut rd, mut wr) = stream.into_split();
        // Write while reading, so a server that answers before reading the whole body cannot
        // deadlock us.
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            if half_close {
                let _ = wr.shutdown().await;
            }
            // Keep the write half open (unless half-closed) until the answer is read.
            wr
        });
        let mut out = Vec::new();
        let read = rd.read_to_end(&mut out).await;
        let _ = writer.await;
        if out.is_empty() {
            return Err(format!(
                "connection closed without an answer ({})",
                match read {
                    Ok(_) => "EOF".to_string(),
                    Err(e) => e.to_string(),
                }
            ));
        }
        parse_response(&out, method, path)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
}

/// Parses the final (non-1xx) HTTP/1.1 response in `raw`, the answer to `method` `path`.
fn parse_response(mut raw: &[u8], method: &str, path: &str) -> Result<Response, String> {
    loop {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("incomplete response: {:?}", String::from_utf8_lossy(raw)))?;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let rest = &raw[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        if (100..200).contains(&status) {
            raw = rest;
            continue;
        }
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            dechunk(rest)?
        } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
            rest[..len.min(rest.len())].to_vec()
        } else {
            rest.to_vec()
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let k = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("{k}: {e}"))?;
            let v = HeaderValue::from_str(&v).map_err(|e| format!("{k}: {e}"))?;
            map.append(k, v);
        }
        return Ok(Response {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            path: path.to_string(),
            status: StatusCode::from_u16(status).map_err(|e| e.to_string())?,
            headers: map,
            cause: None,
            body: Bytes::from(body),
        });
    }
}

fn dechunk(mut s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = s
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_str = String::from_utf8_lossy(&s[..eol]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        s = &s[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(s.get(..size).ok_or("short chunk")?);
        s = s.get(size + 2..).ok_or("short chunk")?;
    }
}

// ---- checks -----------------------------------------------------------------------------

/// What is wrong with `reply` as an answer to `r`; empty when it is right.
fn problems(r: &Row, reply: &Result<Response, String>) -> Vec<String> {
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => return vec![e.clone()],
    };
    let mut p = Vec::new();
    let status = reply.status.as_u16();
    if status >= 500 {
        p.push(format!("server error {status}"));
    }
    if !r.statuses.contains(&status) {
        p.push(format!("status {status}, want one of {:?}", r.statuses));
    }
    if status >= 400 {
        let ct = reply.header("content-type").unwrap_or("");
        if !ct.starts_with("application/json") {
            p.push(format!(
                "error with Content-Type {ct:?}, want application/json"
            ));
        }
        if r.method == "HEAD" {
            if !reply.body.is_empty() {
                p.push("HEAD answer with a body".into());
            }
        } else {
            match serde_json::from_slice::<Value>(&reply.body) {
                Err(_) => p.push("error body is not JSON".into()),
                Ok(v) => p.extend(error_body_problems(&v, &r.codes)),
            }
        }
    }
    for (name, want) in &r.want_headers {
        match (reply.header(name), want) {
            (None, _) => p.push(format!("no {name} header")),
            (Some(got), Some(want)) if got != want => {
                p.push(format!("{name}: {got:?}, want {want:?}"))
            }
            _ => {}
        }
    }
    if let Some(want) = &r.want_body {
        if reply.body != want {
            p.push(format!(
                "body {:?}, want {:?}",
                short(&reply.text()),
                String::from_utf8_lossy(want)
            ));
        }
    }
    if !p.is_empty() {
        p.push(format!(
            "got {status} {:?} {}",
            reply.headers,
            short(&reply.text())
        ));
    }
    p
}

/// Checks the spec's error body shape: `{"errors":[{"code","message",("detail")}, ...]}`.
fn error_body_problems(v: &Value, codes: &[&str]) -> Vec<String> {
    let mut p = Vec::new();
    let Some(errors) = v.get("errors").and_then(Value::as_array) else {
        return vec!["error body has no \"errors\" array".into()];
    };
    if errors.is_empty() {
        p.push("\"errors\" is empty".into());
    }
    for e in errors {
        let code = e.get("code").and_then(Value::as_str);
        match code {
            None => p.push("an error without a string \"code\"".into()),
            Some(c) if !SPEC_CODES.contains(&c) => p.push(format!("code {c} is not a spec code")),
            _ => {}
        }
        if e.get("message").and_then(Value::as_str).is_none() {
            p.push("an error without a string \"message\"".into());
        }
    }
    if let Some(first) = errors
        .first()
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
    {
        if !codes.is_empty() && !codes.contains(&first) {
            p.push(format!("code {first}, want one of {codes:?}"));
        }
    }
    p
}

/// Sends every row in order and fails with the list of rows that were answered wrong.
async fn run_table(s: &Target, rows: &[Row]) {
    let failures = table_failures(s, rows).await;
    assert!(
        failures.is_empty(),
        "{} of {} rows answered wrong:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Sends every row in order; returns what was wrong with each answer.
async fn table_failures(s: &Target, rows: &[Row]) -> Vec<String> {
    let mut failures = Vec::new();
    for r in rows {
        assert!(
            !r.statuses.is_empty(),
            "row without expectation: {}",
            r.label
        );
        let reply = send(s, r).await;
        let p = problems(r, &reply);
        if !p.is_empty() {
            failures.push(format!(
                "{} {:?}:\n    {}",
                r.label,
                r.headers,
                p.join("\n    ")
            ));
        }
    }
    failures
}

async fn assert_still_serving(s: &mut Target) {
    let r = s.client().get("/v2/").timeout(TIMEOUT).send().await;
    assert_eq!(
        r.status,
        200,
        "GET /v2/ after the table: {}",
        short(&r.text())
    );
    assert!(s.is_running(), "the server process exited");
}

/// Opens an upload session in `name`; returns its id.
async fn open_session(c: &Client, name: &str) -> String {
    let loc = c.start_upload(name).await;
    loc.rsplit('/').next().unwrap().to_string()
}

// ---- content ----------------------------------------------------------------------------

/// An image manifest of a config and layers given as (digest, size).
fn image_manifest(config: (&str, usize), layers: &[(&str, usize)]) -> Value {
    common::content::image_manifest(
        descriptor_of(OCI_CONFIG, config.0, config.1),
        layers
            .iter()
            .map(|(d, size)| descriptor_of(OCI_LAYER, d, *size))
            .collect(),
    )
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// A valid manifest of exactly `size` bytes, padded with an annotation.
fn manifest_of_size(config: (&str, usize), layer: (&str, usize), size: usize) -> Vec<u8> {
    let mut m = image_manifest(config, &[layer]);
    m["annotations"] = json!({ "pad": "" });
    let base = to_vec(&m).len();
    m["annotations"]["pad"] = json!("p".repeat(size - base));
    let body = to_vec(&m);
    assert_eq!(body.len(), size);
    body
}

fn hex_of(c: char, n: usize) -> String {
    c.to_string().repeat(n)
}

// ---- the table --------------------------------------------------------------------------

async fn malformed_requests_get_spec_errors_and_the_server_keeps_serving(t: Transport) {
    let mut s = Target::start(t);
    let c = s.client();
    let host = s.server().map_or("localhost".to_string(), Server::host);
    let name = repo("bad-input");
    let other = repo("bad-input-other");

    // What the rows refer to: a layer blob, a config blob, an image manifest tagged v1, and a
    // blob in another repository.
    let layer: &[u8] = b"hello world";
    let blob = c.push_blob(&name, layer).await;
    let config: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;
    let cfg = c.push_blob(&name, config).await;
    let image = to_vec(&image_manifest(
        (&cfg, config.len()),
        &[(&blob, layer.len())],
    ));
    let image_digest = sha256(&image);
    c.put_manifest(&name, "v1", OCI_MANIFEST, image.clone())
        .await
        .expect(StatusCode::CREATED);
    c.push_blob(&other, &b"other"[..]).await;

    // Upload sessions: one that holds 5 bytes (for out-of-order chunks), one for length
    // mismatches, one for bad digests on PUT, one that other repositories try to use, one
    // completed with the wrong digest, one cancelled and one completed by the table.
    let s_ooo = open_session(&c, &name).await;
    c.patch(&format!("/v2/{name}/blobs/uploads/{s_ooo}"))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", "0-4")
        .body(&b"hello"[..])
        .send()
        .await
        .expect(StatusCode::ACCEPTED);
    let s_len = open_session(&c, &name).await;
    let s_digest = open_session(&c, &name).await;
    let s_foreign = open_session(&c, &name).await;
    let s_wrong = open_session(&c, &name).await;
    let s_cancel = open_session(&c, &name).await;
    let s_done = open_session(&c, &name).await;

    let v2 = format!("/v2/{name}");
    let up = |id: &str| format!("/v2/{name}/blobs/uploads/{id}");
    let unknown_digest = format!("sha256:{}", hex_of('0', 64));
    let unknown_uuid = "01234567-89ab-4cde-8f01-23456789abcd";
    let bad_digests: Vec<(&str, String)> = vec![
        ("too short", "sha256:abc".into()),
        ("md5", "md5:d41d8cd98f00b204e9800998ecf8427e".into()),
        (
            "uppercase hex",
            format!("sha256:{}", blob[7..].to_uppercase()),
        ),
        ("uppercase algorithm", format!("SHA256:{}", &blob[7..])),
        ("65 hex", format!("{blob}0")),
        ("63 hex", blob[..blob.len() - 1].to_string()),
        ("sha512 with 64 hex", format!("sha512:{}", &blob[7..])),
        ("not hex", format!("sha256:{}g", &blob[7..70])),
        ("no algorithm", format!(":{}", &blob[7..])),
        ("no colon", format!("sha256{}", &blob[7..])),
        ("algorithm only", "sha256:".into()),
        ("plus in algorithm", format!("sha256+b64:{}", &blob[7..])),
    ];
    let ct_image = ("Content-Type", OCI_MANIFEST);
    let good_put = |reference: &str| {
        row("PUT", format!("{v2}/manifests/{reference}"))
            .header(ct_image.0, ct_image.1)
            .body(image.clone())
    };

    let mut rows: Vec<Row> = Vec::new();

    // -- unknown routes and wrong methods
    for p in [
        "/v2/nothing-here".to_string(),
        format!("{v2}/unknown/x"),
        format!("{v2}/tags/nope"),
        format!("{v2}/tags"),
        v2.clone(),
        format!("{v2}/blobs"),
        "/v2//".into(),
    ] {
        rows.push(
            row("GET", p)
                .expect(404, "UNSUPPORTED")
                .or_code("NAME_INVALID"),
        );
    }
    for (m, p, allow) in [
        ("POST", "/v2/".to_string(), "GET, HEAD"),
        ("DELETE", "/v2/".into(), "GET, HEAD"),
        ("PUT", "/v2/_catalog".into(), "GET, HEAD"),
        ("DELETE", format!("{v2}/tags/list"), "GET, HEAD"),
        (
            "POST",
            format!("{v2}/manifests/v1"),
            "GET, HEAD, PUT, DELETE",
        ),
        (
            "PATCH",
            format!("{v2}/manifests/v1"),
            "GET, HEAD, PUT, DELETE",
        ),
        ("PUT", format!("{v2}/blobs/{blob}"), "GET, HEAD, DELETE"),
        ("POST", format!("{v2}/blobs/{blob}"), "GET, HEAD, DELETE"),
        ("GET", format!("{v2}/blobs/uploads/"), "POST"),
        ("PATCH", format!("{v2}/blobs/uploads/"), "POST"),
        ("DELETE", format!("{v2}/blobs/uploads"), "POST"),
        ("POST", up(&s_ooo), "GET, HEAD, PATCH, PUT, DELETE"),
        ("PUT", format!("{v2}/referrers/{blob}"), "GET, HEAD"),
        ("OPTIONS", "/v2/".into(), "GET, HEAD"),
    ] {
        rows.push(
            row(m, p)
                .expect(405, "UNSUPPORTED")
                .header_eq("allow", allow),
        );
    }
    rows.push(
        row("FROB", "/v2/")
            .raw()
            .note("extension method")
            .expect(405, "UNSUPPORTED")
            .has_header("allow"),
    );
    rows.push(
        row("get", "/v2/")
            .raw()
            .note("methods are case-sensitive")
            .expect(405, "UNSUPPORTED")
            .has_header("allow"),
    );

    // -- malformed digests, wherever a digest goes
    for (what, d) in &bad_digests {
        let n = *what;
        rows.push(
            row("GET", format!("{v2}/blobs/{d}"))
                .note(n)
                .expect(400, "DIGEST_INVALID"),
        );
        rows.push(
            row("HEAD", format!("{v2}/blobs/{d}"))
                .note(n)
                .expect(400, "DIGEST_INVALID"),
        );
        rows.push(
            row("DELETE", format!("{v2}/blobs/{d}"))
                .note(n)
                .expect(400, "DIGEST_INVALID"),
        );
        rows.push(
            row("POST", format!("{v2}/blobs/uploads/?digest={d}"))
                .note(n)
                .body(layer)
                .expect(400, "DIGEST_INVALID"),
        );
        rows.push(
            row("PUT", format!("{}?digest={d}", up(&s_digest)))
                .note(n)
                .expect(400, "DIGEST_INVALID"),
        );
        rows.push(
            row(
                "POST",
                format!("{v2}/blobs/uploads/?mount={d}&from={other}"),
            )
            .note(n)
            .expect(400, "DIGEST_INVALID"),
        );
        // Without a colon a reference is a tag (and "sha256<hex>" a valid one). Reading a
        // reference that can name nothing is MANIFEST_UNKNOWN, as the conformance tests expect;
        // deleting one is a bad request.
        if d.contains(':') {
            for m in ["GET", "HEAD"] {
                rows.push(
                    row(m, format!("{v2}/manifests/{d}"))
                        .note(n)
                        .expect(404, "MANIFEST_UNKNOWN"),
                );
            }
            rows.push(
                row("DELETE", format!("{v2}/manifests/{d}"))
                    .note(n)
                    .expect(400, "DIGEST_INVALID"),
            );
        }
        rows.push(
            row("GET", format!("{v2}/referrers/{d}"))
                .note(n)
                .expect(400, "DIGEST_INVALID"),
        );
    }
    // The conformance suite's unknown manifest: not a valid tag, so nothing can have it.
    for m in ["GET", "HEAD"] {
        rows.push(
            row(m, format!("{v2}/manifests/.INVALID_MANIFEST_NAME"))
                .expect(404, "MANIFEST_UNKNOWN"),
        );
    }
    rows.push(
        good_put(".INVALID_MANIFEST_NAME")
            .expect(400, "MANIFEST_INVALID")
            .or_code("NAME_INVALID"),
    );
    // A PUT to a malformed digest reference is refused whether or not the body is a valid
    // manifest (DIGEST_INVALID or, if the body is checked first, MANIFEST_INVALID).
    rows.push(
        good_put("sha256:abc")
            .expect(400, "DIGEST_INVALID")
            .or_code("MANIFEST_INVALID"),
    );
    rows.push(
        good_put(&format!("md5:{}", hex_of('a', 32)))
            .expect(400, "DIGEST_INVALID")
            .or_code("MANIFEST_INVALID"),
    );
    rows.push(
        good_put(&image_digest.to_uppercase().replace("SHA256", "sha256"))
            .note("uppercase hex")
            .expect(400, "DIGEST_INVALID")
            .or_code("MANIFEST_INVALID"),
    );
    rows.push(
        row("GET", format!("{v2}/blobs/"))
            .note("empty digest")
            .expect(400, "DIGEST_INVALID")
            .or_status(404),
    );
    rows.push(
        row(
            "GET",
            format!("{v2}/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd"),
        )
        .raw()
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row("GET", format!("{v2}/blobs/sha256%3A{}", &blob[7..]))
            .raw()
            .note("percent-encoded colon is the same digest")
            .expect(200, "")
            .want_body(layer),
    );
    rows.push(
        row("POST", format!("{v2}/blobs/uploads/?digest="))
            .body(layer)
            .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row("PUT", up(&s_digest))
            .note("no digest parameter")
            .expect(400, "DIGEST_INVALID"),
    );
    rows.push(row("PUT", format!("{}?digest=", up(&s_digest))).expect(400, "DIGEST_INVALID"));
    // A refused PUT leaves the session as it was.
    rows.push(
        row("GET", up(&s_digest))
            .note("session survives refused PUTs")
            .expect(204, "")
            .header_eq("range", "0-0"),
    );
    // Well-formed digests that name nothing.
    rows.push(row("GET", format!("{v2}/blobs/{unknown_digest}")).expect(404, "BLOB_UNKNOWN"));
    rows.push(row("HEAD", format!("{v2}/blobs/{unknown_digest}")).expect(404, "BLOB_UNKNOWN"));
    rows.push(row("DELETE", format!("{v2}/blobs/{unknown_digest}")).expect(404, "BLOB_UNKNOWN"));
    rows.push(
        row("GET", format!("/v2/{other}/blobs/{blob}"))
            .note("blob of another repository")
            .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row("GET", format!("{v2}/manifests/{unknown_digest}")).expect(404, "MANIFEST_UNKNOWN"),
    );
    rows.push(
        row("GET", format!("/v2/{other}/manifests/{image_digest}"))
            .note("manifest of another repository")
            .expect(404, "MANIFEST_UNKNOWN"),
    );
    rows.push(row("GET", format!("{v2}/manifests/nope")).expect(404, "MANIFEST_UNKNOWN"));
    // The referrers API must not 404 on a well-formed digest, known or not.
    rows.push(
        row("GET", format!("{v2}/referrers/{unknown_digest}"))
            .expect(200, "")
            .header_eq("content-type", OCI_INDEX),
    );
    rows.push(
        row(
            "GET",
            format!("/v2/{}/referrers/{unknown_digest}", repo("never-pushed")),
        )
        .expect(200, "")
        .header_eq("content-type", OCI_INDEX),
    );
    rows.push(
        row(
            "POST",
            format!("{v2}/blobs/uploads/?digest={unknown_digest}"),
        )
        .body(layer)
        .note("digest does not match the body")
        .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row(
            "POST",
            format!("{v2}/blobs/uploads/?digest={blob}&digest=sha256:abc"),
        )
        .body(layer)
        .note("repeated parameter")
        .expect(400, "DIGEST_INVALID")
        .or_status(201),
    );
    rows.push(
        row("PUT", format!("{}?digest={unknown_digest}", up(&s_wrong)))
            .body(&b"abc"[..])
            .note("session data does not match the digest")
            .expect(400, "DIGEST_INVALID"),
    );

    // -- mounts
    rows.push(
        row(
            "POST",
            format!("{v2}/blobs/uploads/?mount={blob}&from=Bad_Name"),
        )
        .expect(400, "NAME_INVALID")
        .or_status(202),
    );
    rows.push(
        row(
            "POST",
            format!("{v2}/blobs/uploads/?mount={unknown_digest}&from={other}"),
        )
        .note("unmountable: falls back to a session")
        .expect(202, "")
        .has_header("location"),
    );

    // -- invalid repository names
    let long = "a".repeat(256);
    let long_components = vec!["ab"; 86].join("/"); // 86*3-1 = 257 characters
    let just_fits = "a".repeat(255);
    for (what, n) in [
        ("uppercase", "Bad".to_string()),
        ("uppercase component", format!("{name}/Sub")),
        ("double dot", "a..b".into()),
        ("triple underscore", "a___b".into()),
        ("leading dash", "-a".into()),
        ("trailing dash", "a-".into()),
        ("leading underscore", "_a".into()),
        ("leading dot", ".a".into()),
        ("colon", "a:b".into()),
        ("encoded space", "a%20b".into()),
        ("256 characters", long.clone()),
        ("257 characters in components", long_components.clone()),
        ("non-ASCII", "caf%C3%A9".into()),
    ] {
        rows.push(
            row("GET", format!("/v2/{n}/tags/list"))
                .note(what)
                .expect(400, "NAME_INVALID"),
        );
        rows.push(
            row("GET", format!("/v2/{n}/manifests/v1"))
                .note(what)
                .expect(400, "NAME_INVALID"),
        );
        rows.push(
            row("PUT", format!("/v2/{n}/manifests/v1"))
                .header(ct_image.0, ct_image.1)
                .body(image.clone())
                .note(what)
                .expect(400, "NAME_INVALID"),
        );
        rows.push(
            row("GET", format!("/v2/{n}/blobs/{blob}"))
                .note(what)
                .expect(400, "NAME_INVALID"),
        );
        rows.push(
            row("POST", format!("/v2/{n}/blobs/uploads/"))
                .note(what)
                .expect(400, "NAME_INVALID"),
        );
        rows.push(
            row("GET", format!("/v2/{n}/referrers/{blob}"))
                .note(what)
                .expect(400, "NAME_INVALID"),
        );
    }
    // Paths a URL parser would rewrite: sent as they are.
    for (what, p) in [
        ("dot-dot", "/v2/../tags/list".to_string()),
        ("dot-dot inside", format!("{v2}/../../etc/tags/list")),
        ("dot-dot manifest", format!("/v2/../{name}/manifests/v1")),
        ("single dot", format!("/v2/./{name}/tags/list")),
        ("encoded dot-dot", "/v2/%2e%2e/tags/list".into()),
        (
            "encoded dot-dot inside",
            format!("{v2}/%2E%2E/manifests/v1"),
        ),
        (
            "encoded dot-dot upload",
            "/v2/%2e%2e/%2e%2e/blobs/uploads/".to_string(),
        ),
        ("encoded slash", format!("/v2/{name}%2Fx/tags/list")),
        (
            "encoded slash lower",
            format!("/v2/{name}%2fx/blobs/{blob}"),
        ),
        ("encoded backslash", format!("/v2/{name}%5Cx/tags/list")),
        ("empty component", format!("/v2/{name}//x/tags/list")),
        ("leading separator", format!("/v2//{name}/tags/list")),
        ("trailing separator", format!("/v2/{name}//tags/list")),
        ("invalid UTF-8", "/v2/%ff/tags/list".into()),
        ("NUL", "/v2/a%00b/tags/list".into()),
        ("brace", "/v2/{x}/tags/list".into()),
        (
            "absolute-form with dot-dot",
            format!("http://{host}/v2/../x/tags/list"),
        ),
    ] {
        rows.push(row("GET", p).raw().note(what).expect(400, "NAME_INVALID"));
    }
    rows.push(
        row("POST", format!("/v2/../../{name}/blobs/uploads/"))
            .raw()
            .expect(400, "NAME_INVALID"),
    );
    rows.push(
        row("DELETE", format!("/v2/{name}/../{other}/blobs/{blob}"))
            .raw()
            .expect(400, "NAME_INVALID"),
    );
    rows.push(
        row("GET", format!("/v2/{just_fits}/tags/list"))
            .note("255 characters is a valid name")
            .expect(404, "NAME_UNKNOWN"),
    );
    rows.push(
        row("GET", format!("/v2/{}/tags/list", repo("never-pushed"))).expect(404, "NAME_UNKNOWN"),
    );

    // -- invalid tags
    let long_tag = "t".repeat(129);
    let max_tag = "t".repeat(128);
    for (what, t) in [
        ("129 characters", long_tag.as_str()),
        ("leading dot", ".hidden"),
        ("leading dash", "-x"),
        ("plus", "a+b"),
        ("encoded slash", "a%2Fb"),
        ("encoded space", "a%20b"),
        ("non-ASCII", "t%C3%A9"),
        ("NUL", "t%00"),
        ("tilde", "a~b"),
    ] {
        rows.push(good_put(t).note(what).expect(400, "MANIFEST_INVALID"));
        rows.push(
            row("GET", format!("{v2}/manifests/{t}"))
                .note(what)
                .expect(400, "MANIFEST_INVALID")
                .or_status(404)
                .or_code("MANIFEST_UNKNOWN"),
        );
        rows.push(
            row("DELETE", format!("{v2}/manifests/{t}"))
                .note(what)
                .expect(400, "MANIFEST_INVALID")
                .or_status(404)
                .or_code("MANIFEST_UNKNOWN"),
        );
    }
    rows.push(
        row("GET", format!("{v2}/manifests/{max_tag}"))
            .note("128 characters is a valid tag")
            .expect(404, "MANIFEST_UNKNOWN"),
    );

    // -- Range on blob GET (the blob is 11 bytes)
    for bad in [
        "bytes=11-",
        "bytes=100-200",
        "bytes=11-11",
        "bytes=5-2",
        "bytes=abc",
        "bytes=-0",
        "bytes=-",
        "bytes=",
        "bytes=0-1,x",
        "bytes=99999999999999999999999-",
        "bytes=+1-2",
        "bytes=0x1-2",
    ] {
        rows.push(
            row("GET", format!("{v2}/blobs/{blob}"))
                .header("Range", bad)
                .expect(416, "SIZE_INVALID")
                .header_eq("content-range", "bytes */11"),
        );
    }
    rows.push(
        row("HEAD", format!("{v2}/blobs/{blob}"))
            .header("Range", "bytes=11-")
            .expect(416, "SIZE_INVALID")
            .header_eq("content-range", "bytes */11"),
    );
    for (range, content_range, body) in [
        ("bytes=0-4", "bytes 0-4/11", &b"hello"[..]),
        ("bytes=6-", "bytes 6-10/11", b"world"),
        ("bytes=-5", "bytes 6-10/11", b"world"),
        ("bytes=-500", "bytes 0-10/11", layer),
        ("bytes=0-100", "bytes 0-10/11", layer),
        ("bytes=10-10", "bytes 10-10/11", b"d"),
        (" bytes=0-0 ", "bytes 0-0/11", b"h"),
    ] {
        rows.push(
            row("GET", format!("{v2}/blobs/{blob}"))
                .header("Range", range)
                .expect(206, "")
                .header_eq("content-range", content_range)
                .want_body(body),
        );
    }
    rows.push(
        row("GET", format!("{v2}/blobs/{blob}"))
            .header("Range", "bytes=0-1,3-4")
            .note("several ranges may be answered whole")
            .expect(200, "")
            .or_status(206),
    );

    // -- Content-Range on PATCH (the session holds 5 bytes)
    for cr in ["0-4", "10-14", "6-10", "4-8", "bytes 0-4/5"] {
        rows.push(
            row("PATCH", up(&s_ooo))
                .header("Content-Range", cr)
                .body(&b"world"[..])
                .note("out of order")
                .expect(416, "BLOB_UPLOAD_INVALID")
                .header_eq("range", "0-4")
                .has_header("location"),
        );
    }
    for cr in ["abc", "5-", "-9", "9-5", "5-9-10", "", "0x5-9", "five-nine"] {
        rows.push(
            row("PATCH", up(&s_ooo))
                .header("Content-Range", cr)
                .body(&b"world"[..])
                .note("malformed")
                .expect(416, "BLOB_UPLOAD_INVALID")
                .or_status(400)
                .header_eq("range", "0-4"),
        );
    }
    rows.push(
        row(
            "PUT",
            format!("{}?digest={}", up(&s_ooo), sha256(b"helloworld")),
        )
        .header("Content-Range", "0-4")
        .body(&b"world"[..])
        .note("out of order final chunk")
        .expect(416, "BLOB_UPLOAD_INVALID")
        .header_eq("range", "0-4"),
    );
    rows.push(
        row("GET", up(&s_ooo))
            .note("refused chunks leave the session as it was")
            .expect(204, "")
            .header_eq("range", "0-4"),
    );

    // -- Content-Length and body framing mismatches (session s_len is empty)
    rows.push(
        row("PATCH", up(&s_len))
            .header("Content-Range", "0-9")
            .body(&b"hello"[..])
            .note("Content-Length 5, Content-Range 10 bytes")
            .expect(400, "SIZE_INVALID")
            .or_status(416)
            .or_code("BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("PATCH", up(&s_len))
            .header("Content-Range", "0-4")
            .body(&b"hello world"[..])
            .framing(Framing::Chunked)
            .note("chunked body longer than its Content-Range")
            .expect(400, "SIZE_INVALID")
            .or_code("BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("PATCH", up(&s_len))
            .header("Content-Range", "0-9")
            .body(&b"hello"[..])
            .framing(Framing::Chunked)
            .note("chunked body shorter than its Content-Range")
            .expect(400, "SIZE_INVALID")
            .or_code("BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("PATCH", up(&s_len))
            .body(&b"hello"[..])
            .framing(Framing::ChunkedEndsEarly)
            .note("chunked body ends early")
            .expect(400, "BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("PATCH", up(&s_len))
            .body(&b"hello"[..])
            .framing(Framing::Declared(100))
            .note("declared 100 bytes, sent 5")
            .expect(400, "BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("PATCH", up(&s_len))
            .header("Transfer-Encoding", "chunked")
            .body(&b"zz\r\nhello\r\n0\r\n\r\n"[..])
            .framing(Framing::Verbatim)
            .note("bad chunk size")
            .expect(400, "BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("GET", up(&s_len))
            .note("failed chunks leave the session empty")
            .expect(204, "")
            .header_eq("range", "0-0"),
    );
    rows.push(
        row("POST", format!("{v2}/blobs/uploads/?digest={blob}"))
            .body(layer)
            .framing(Framing::Declared(100))
            .note("monolithic: declared 100 bytes, sent 11")
            .expect(400, "BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("POST", format!("{v2}/blobs/uploads/?digest={blob}"))
            .body(layer)
            .framing(Framing::Declared(5))
            .note("monolithic: declared 5 bytes, sent 11: only 5 are the body")
            .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        row("POST", format!("{v2}/blobs/uploads/?digest={blob}"))
            .body(layer)
            .framing(Framing::ChunkedEndsEarly)
            .note("monolithic: chunked body ends early")
            .expect(400, "BLOB_UPLOAD_INVALID"),
    );
    rows.push(
        row("PUT", format!("{v2}/manifests/early"))
            .header(ct_image.0, ct_image.1)
            .body(&image[..20])
            .framing(Framing::ChunkedEndsEarly)
            .note("manifest body ends early")
            .expect(400, "MANIFEST_INVALID"),
    );

    // -- manifests that are not valid
    let im = |v: &Value| {
        row("PUT", format!("{v2}/manifests/bad"))
            .header(ct_image.0, ct_image.1)
            .body(to_vec(v))
    };
    let valid = image_manifest((&cfg, config.len()), &[(&blob, layer.len())]);
    let with = |k: &str, val: Value| {
        let mut m = valid.clone();
        m[k] = val;
        m
    };
    let without = |k: &str| {
        let mut m = valid.clone();
        m.as_object_mut().unwrap().remove(k);
        m
    };
    for (what, body) in [
        ("not JSON", b"{not json".to_vec()),
        ("empty body", Vec::new()),
        ("JSON array", b"[]".to_vec()),
        ("JSON string", b"\"manifest\"".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("truncated", image[..image.len() - 1].to_vec()),
        ("trailing garbage", [&image[..], b"}"].concat()),
        (
            "invalid UTF-8",
            [&image[..image.len() - 2], b"\xff}"].concat(),
        ),
        (
            "unclosed nesting",
            [b"{\"x\":".to_vec(), vec![b'['; 100_000]].concat(),
        ),
    ] {
        rows.push(
            row("PUT", format!("{v2}/manifests/bad"))
                .header(ct_image.0, ct_image.1)
                .body(body)
                .note(what)
                .expect(400, "MANIFEST_INVALID"),
        );
    }
    for (what, m) in [
        ("schemaVersion 1", with("schemaVersion", json!(1))),
        ("schemaVersion 3", with("schemaVersion", json!(3))),
        ("schemaVersion \"2\"", with("schemaVersion", json!("2"))),
        ("schemaVersion 2.5", with("schemaVersion", json!(2.5))),
        ("schemaVersion null", with("schemaVersion", Value::Null)),
        ("no schemaVersion", without("schemaVersion")),
        ("no config", without("config")),
        ("no layers", without("layers")),
        ("config not an object", with("config", json!("config"))),
        ("layers not a list", with("layers", json!({}))),
        (
            "config digest malformed",
            with(
                "config",
                json!({"mediaType": OCI_CONFIG, "digest": "sha256:abc", "size": 1}),
            ),
        ),
        (
            "config digest md5",
            with(
                "config",
                json!({"mediaType": OCI_CONFIG, "digest": "md5:d41d8cd98f00b204e9800998ecf8427e", "size": 1}),
            ),
        ),
        (
            "layer digest uppercase",
            with(
                "layers",
                json!([{"mediaType": OCI_LAYER, "digest": blob.to_uppercase(), "size": 11}]),
            ),
        ),
        (
            "layer without digest",
            with("layers", json!([{"mediaType": OCI_LAYER, "size": 11}])),
        ),
        (
            "negative size",
            with(
                "layers",
                json!([{"mediaType": OCI_LAYER, "digest": blob, "size": -11}]),
            ),
        ),
        (
            "size a string",
            with(
                "layers",
                json!([{"mediaType": OCI_LAYER, "digest": blob, "size": "11"}]),
            ),
        ),
        ("image with manifests", with("manifests", json!([]))),
        (
            "subject digest malformed",
            with(
                "subject",
                json!({"mediaType": OCI_MANIFEST, "digest": "sha256:zz", "size": 1}),
            ),
        ),
        (
            "annotations not strings",
            with("annotations", json!({"a": 1})),
        ),
        (
            "mediaType unknown",
            with("mediaType", json!("application/x-whatever")),
        ),
        ("mediaType index", with("mediaType", json!(OCI_INDEX))),
    ] {
        rows.push(im(&m).note(what).expect(400, "MANIFEST_INVALID"));
    }
    for (what, ct, m) in [
        (
            "Content-Type Docker, mediaType OCI",
            DOCKER_MANIFEST,
            valid.clone(),
        ),
        (
            "Content-Type index, mediaType image",
            OCI_INDEX,
            valid.clone(),
        ),
        (
            "unknown Content-Type",
            "application/x-whatever",
            without("mediaType"),
        ),
        (
            "Docker schema 1",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            json!({"schemaVersion": 1, "name": name, "tag": "bad", "fsLayers": []}),
        ),
        (
            "index with config",
            OCI_INDEX,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "config": valid["config"]}),
        ),
        (
            "index without manifests",
            OCI_INDEX,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX}),
        ),
        (
            "index entry digest malformed",
            OCI_INDEX,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:1", "size": 1}]}),
        ),
        ("index platform nested too deep", OCI_INDEX, {
            let mut deep = json!(1);
            for _ in 0..200 {
                deep = json!([deep]);
            }
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": image_digest, "size": image.len(), "platform": deep}]})
        }),
    ] {
        rows.push(
            row("PUT", format!("{v2}/manifests/bad"))
                .header("Content-Type", ct)
                .body(to_vec(&m))
                .note(what)
                .expect(400, "MANIFEST_INVALID"),
        );
    }
    // References to content the repository does not have.
    for (what, m) in [
        (
            "missing config",
            image_manifest((&unknown_digest, 2), &[(&blob, layer.len())]),
        ),
        (
            "missing layer",
            image_manifest((&cfg, config.len()), &[(&unknown_digest, 3)]),
        ),
        (
            "layer only in another repository",
            image_manifest((&cfg, config.len()), &[(&sha256(b"other"), 5)]),
        ),
    ] {
        rows.push(im(&m).note(what).expect(400, "MANIFEST_BLOB_UNKNOWN"));
    }
    for (what, entries) in [
        ("missing manifest", vec![unknown_digest.clone()]),
        (
            "one of two missing",
            vec![image_digest.clone(), unknown_digest.clone()],
        ),
    ] {
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries.iter().map(|d| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 10})).collect::<Vec<_>>(),
        });
        rows.push(
            row("PUT", format!("{v2}/manifests/bad-index"))
                .header("Content-Type", OCI_INDEX)
                .body(to_vec(&m))
                .note(what)
                .expect(400, "MANIFEST_BLOB_UNKNOWN"),
        );
    }
    // A digest reference that is not the body's digest.
    rows.push(
        good_put(&unknown_digest)
            .note("body has another digest")
            .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        good_put(&blob)
            .note("digest of another blob")
            .expect(400, "DIGEST_INVALID"),
    );
    rows.push(
        good_put(&format!("sha512:{}", hex_of('0', 128)))
            .note("sha512 reference, other content")
            .expect(400, "DIGEST_INVALID"),
    );
    // Size limits: exactly 4 MiB is accepted, one byte more is refused.
    let at_limit = manifest_of_size((&cfg, config.len()), (&blob, layer.len()), MAX_MANIFEST);
    let over_limit = manifest_of_size((&cfg, config.len()), (&blob, layer.len()), MAX_MANIFEST + 1);
    rows.push(
        row("PUT", format!("{v2}/manifests/at-limit"))
            .header(ct_image.0, ct_image.1)
            .body(at_limit)
            .note("exactly 4 MiB")
            .expect(201, ""),
    );
    rows.push(
        row("PUT", format!("{v2}/manifests/over-limit"))
            .header(ct_image.0, ct_image.1)
            .body(over_limit.clone())
            .note("4 MiB + 1 with Content-Length")
            .expect(413, "SIZE_INVALID")
            .or_code("MANIFEST_INVALID"),
    );
    rows.push(
        row("PUT", format!("{v2}/manifests/over-limit"))
            .header(ct_image.0, ct_image.1)
            .body(over_limit)
            .framing(Framing::Chunked)
            .note("4 MiB + 1, chunked")
            .expect(413, "SIZE_INVALID")
            .or_code("MANIFEST_INVALID"),
    );
    rows.push(
        row("PUT", format!("{v2}/manifests/over-limit"))
            .header(ct_image.0, ct_image.1)
            .body(&b"{}"[..])
            .framing(Framing::Declared(5_000_000_000))
            .note("declares 5 GB, sends 2 bytes")
            .expect(413, "SIZE_INVALID")
            .or_code("MANIFEST_INVALID"),
    );
    rows.push(
        row("GET", format!("{v2}/manifests/over-limit"))
            .note("nothing was stored")
            .expect(404, "MANIFEST_UNKNOWN"),
    );

    // -- upload ids
    for id in [
        "not-a-uuid".to_string(),
        unknown_uuid.to_string(),
        s_ooo.to_uppercase(),
        s_ooo.replace('-', "_"),
        format!("{s_ooo}0"),
        "%2e%2e".into(),
        "..%2F..%2Fmeta%2F_catalog".into(),
        format!("..%2F{s_ooo}"),
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
    ] {
        let p = up(&id);
        rows.push(
            row("GET", p.clone())
                .raw()
                .expect(404, "BLOB_UPLOAD_UNKNOWN"),
        );
        rows.push(
            row("PATCH", p.clone())
                .raw()
                .body(&b"x"[..])
                .expect(404, "BLOB_UPLOAD_UNKNOWN"),
        );
        rows.push(
            row("PUT", format!("{p}?digest={unknown_digest}"))
                .raw()
                .expect(404, "BLOB_UPLOAD_UNKNOWN"),
        );
        rows.push(row("DELETE", p).raw().expect(404, "BLOB_UPLOAD_UNKNOWN"));
    }
    rows.push(
        row("GET", format!("{v2}/blobs/uploads/../../../../etc/passwd"))
            .raw()
            .note("not a route")
            .expect(404, "UNSUPPORTED")
            .or_code("BLOB_UPLOAD_UNKNOWN")
            .or_status(400)
            .or_code("NAME_INVALID"),
    );
    rows.push(
        row("PATCH", format!("{v2}/blobs/uploads/{s_ooo}/.."))
            .raw()
            .body(&b"x"[..])
            .note("not a route")
            .expect(404, "UNSUPPORTED")
            .or_code("BLOB_UPLOAD_UNKNOWN"),
    );

    // -- a session used through another repository
    for n in [other.clone(), format!("{name}/sub"), format!("{name}x")] {
        let p = format!("/v2/{n}/blobs/uploads/{s_foreign}");
        rows.push(row("GET", p.clone()).expect(404, "BLOB_UPLOAD_UNKNOWN"));
        rows.push(row("HEAD", p.clone()).expect(404, "BLOB_UPLOAD_UNKNOWN"));
        rows.push(
            row("PATCH", p.clone())
                .body(&b"x"[..])
                .expect(404, "BLOB_UPLOAD_UNKNOWN"),
        );
        rows.push(
            row("PUT", format!("{p}?digest={}", sha256(b"x")))
                .body(&b"x"[..])
                .expect(404, "BLOB_UPLOAD_UNKNOWN"),
        );
        rows.push(row("DELETE", p).expect(404, "BLOB_UPLOAD_UNKNOWN"));
    }
    rows.push(
        row("GET", format!("/v2/{other}/blobs/{}", sha256(b"x")))
            .note("nothing leaked into the other repository")
            .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row("GET", up(&s_foreign))
            .note("the session is intact in its own repository")
            .expect(204, "")
            .header_eq("range", "0-0"),
    );

    // -- sessions that are over: cancelled, completed
    rows.push(row("DELETE", up(&s_cancel)).expect(204, ""));
    rows.push(
        row("PATCH", up(&s_cancel))
            .body(&b"x"[..])
            .note("cancelled")
            .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row("DELETE", up(&s_cancel))
            .note("cancelled twice")
            .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row("PUT", format!("{}?digest={}", up(&s_done), sha256(b"done")))
            .body(&b"done"[..])
            .expect(201, ""),
    );
    rows.push(
        row("PATCH", up(&s_done))
            .body(&b"more"[..])
            .note("completed")
            .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row("PUT", format!("{}?digest={}", up(&s_done), sha256(b"done")))
            .body(&b"done"[..])
            .note("completed twice")
            .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );
    rows.push(
        row("GET", up(&s_done))
            .note("completed")
            .expect(404, "BLOB_UPLOAD_UNKNOWN"),
    );

    // -- pagination
    for q in ["n=-1", "n=abc", "n=1.5", "n=", "n=0x10", "n=%2B", "n=1e3"] {
        rows.push(row("GET", format!("/v2/_catalog?{q}")).expect(400, ""));
        rows.push(row("GET", format!("{v2}/tags/list?{q}")).expect(400, ""));
    }
    rows.push(
        row("GET", "/v2/_catalog?n=99999999999999999999999")
            .note("larger than any integer")
            .expect(400, "")
            .or_status(200),
    );
    rows.push(row("GET", format!("{v2}/tags/list?n=-1&last=%ff")).expect(400, ""));
    rows.push(
        row("GET", format!("{v2}/tags/list?last=%ff%fe&n=1"))
            .note("last not UTF-8")
            .expect(200, "")
            .or_status(400),
    );

    // -- bodies and headers where none are expected
    rows.push(row("GET", "/v2/").body(&b"unexpected"[..]).expect(200, ""));
    rows.push(
        row("GET", format!("{v2}/blobs/{blob}"))
            .body(vec![b'x'; 100_000])
            .expect(200, "")
            .want_body(layer),
    );
    rows.push(
        row("DELETE", format!("{v2}/blobs/{unknown_digest}"))
            .body(vec![b'x'; 100_000])
            .expect(404, "BLOB_UNKNOWN"),
    );
    rows.push(
        row("GET", "/v2/")
            .header("X-Big", "b".repeat(64 * 1024))
            .note("a 64 KiB header")
            .expect(200, ""),
    );
    rows.push(
        row("GET", format!("{v2}/manifests/v1"))
            .header("Accept", "x".repeat(10_000))
            .expect(200, "")
            .want_body(image.clone()),
    );

    run_table(&s, &rows).await;

    // Every failure left its session usable: finish two of them properly.
    let r = c
        .put(&format!("{}?digest={}", up(&s_len), sha256(b"fine")))
        .header("Content-Range", "0-3")
        .body(&b"fine"[..])
        .send()
        .await;
    assert_eq!(r.status, 201, "s_len: {}", r.text());
    let r = c
        .put(&format!("{}?digest={}", up(&s_ooo), sha256(b"helloworld")))
        .body(&b"world"[..])
        .send()
        .await;
    assert_eq!(r.status, 201, "s_ooo: {}", r.text());
    let r = c
        .get(&format!("{v2}/blobs/{}", sha256(b"helloworld")))
        .send()
        .await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"helloworld"[..]));

    println!("{} rows", rows.len());
    assert_still_serving(&mut s).await;
}
both_transports!(
    #[tokio::test(flavor = "multi_thread")]
    malformed_requests_get_spec_errors_and_the_server_keeps_serving
);

// ---- credentials and the token endpoint ---------------------------------------------------

/// Malformed credentials, tokens and token requests, against a registry that needs credentials:
/// 401 UNAUTHORIZED with a challenge (or the spec's other codes), never a 5xx.
async fn malformed_credentials_and_token_requests_get_spec_errors(t: Transport) {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut s = Target::auth(t, "authenticated");
    let name = repo("bad-auth");
    let tags = format!("/v2/{name}/tags/list");
    let mut rows: Vec<Row> = Vec::new();
    for value in [
        "Basic".to_string(),
        "Basic !!!not-base64!!!".into(),
        format!("Basic {}", b64(b"no-colon")),
        format!("Basic {}", b64(b"\xff\xfe:\xfd")),
        format!("Basic {}", b64(b":")),
        format!("basic {}", b64(b"alice:not-the-password")),
        format!(
            "Basic {}",
            b64(format!("alice:{}", "p".repeat(10_000)).as_bytes())
        ),
        "Bearer".into(),
        "Bearer x.y".into(),
        "Bearer ..".into(),
        format!("Bearer {}", "a".repeat(8_000)),
        format!("Bearer {}.{}", b64(b"{\"sub\":\"alice\"}"), b64(b"sig")),
        "Digest username=\"alice\"".into(),
        "Negotiate abc".into(),
        "".into(),
    ] {
        rows.push(
            row("GET", tags.clone())
                .header("Authorization", value)
                .expect(401, "UNAUTHORIZED")
                .has_header("www-authenticate"),
        );
    }
    let form = "application/x-www-form-urlencoded";
    rows.push(row("GET", "/token?scope=garbage").expect(401, "UNAUTHORIZED"));
    rows.push(
        row("GET", "/token?scope=repository:a:pull")
            .header("Authorization", "Basic !!!not-base64!!!")
            .expect(401, "UNAUTHORIZED")
            .has_header("www-authenticate"),
    );
    rows.push(
        row("GET", "/token?scope=repository:Bad%20Name:pull&scope=%ff")
            .header("Authorization", format!("Basic {}", b64(b"nobody:nothing")))
            .expect(401, "UNAUTHORIZED"),
    );
    rows.push(
        row("POST", "/token")
            .header("Content-Type", form)
            .body("grant_type=refresh_token&refresh_token=abc&service=edge-registry")
            .expect(400, "UNSUPPORTED"),
    );
    rows.push(
        row("POST", "/token")
            .header("Content-Type", form)
            .body(vec![b'a'; 100 * 1024])
            .expect(413, "SIZE_INVALID"),
    );
    rows.push(
        row("POST", "/token")
            .body(vec![0xffu8, 0, 1, 2, 3])
            .expect(400, "UNSUPPORTED"),
    );
    rows.push(
        row("POST", "/token")
            .header("Content-Type", form)
            .body("grant_type=password&username=alice&password=wrong")
            .expect(401, "UNAUTHORIZED"),
    );
    rows.push(row("PUT", "/token").expect(405, "UNSUPPORTED"));
    rows.push(row("DELETE", "/token").expect(405, "UNSUPPORTED"));
    run_table(&s, &rows).await;

    // Still serving, to the right credentials.
    let r = s.user(common::ALICE).get("/v2/").send().await;
    assert_eq!(r.status, 200);
    assert!(s.is_running(), "the server process exited");
}
both_transports!(
    #[tokio::test(flavor = "multi_thread")]
    malformed_credentials_and_token_requests_get_spec_errors
);

// ---- malformed HTTP -------------------------------------------------------------------

/// Requests that are not valid HTTP, or strain the HTTP layer. Some are answered by hyper
/// before the registry sees them (with an empty body: there is no JSON to give); those must
/// still be 4xx, and the server must keep serving.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_http_is_refused_without_crashing() {
    let mut s = Target::http(Server::start());
    let host = s.server().unwrap().host();
    let h = format!("Host: {host}\r\nConnection: close\r\n");
    // (what, bytes, half-close after sending)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("space in path", format!("GET /v2/a b/tags/list HTTP/1.1\r\n{h}\r\n").into_bytes(), false),
        ("not HTTP", b"\x00\x01\x02 hello\r\n\r\n".to_vec(), false),
        ("no version", b"GET /v2/\r\n\r\n".to_vec(), false),
        ("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), false),
        (
            "Content-Length not a number",
            format!("POST /v2/a/blobs/uploads/ HTTP/1.1\r\n{h}Content-Length: abc\r\n\r\n").into_bytes(),
            false,
        ),
        (
            "two different Content-Lengths",
            format!("POST /v2/a/blobs/uploads/ HTTP/1.1\r\n{h}Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx").into_bytes(),
            false,
        ),
        (
            "URI of 70000 bytes",
            format!("GET /v2/{}/tags/list HTTP/1.1\r\n{h}\r\n", "a".repeat(70_000)).into_bytes(),
            false,
        ),
        (
            "200 headers",
            format!(
                "GET /v2/ HTTP/1.1\r\n{h}{}\r\n",
                (0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
            false,
        ),
        (
            "a 5 MiB header",
            format!("GET /v2/ HTTP/1.1\r\n{h}X-Big: {}\r\n\r\n", "b".repeat(5 << 20)).into_bytes(),
            false,
        ),
        (
            "headers end early",
            format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\nX-Half: ").into_bytes(),
            true,
        ),
        (
            "header without colon",
            format!("GET /v2/ HTTP/1.1\r\n{h}NoColonHere\r\n\r\n").into_bytes(),
            false,
        ),
        (
            "obsolete line folding",
            format!("GET /v2/ HTTP/1.1\r\n{h}X-Fold: a\r\n b\r\n\r\n").into_bytes(),
            false,
        ),
        (
            "unknown transfer coding",
            format!("POST /v2/a/blobs/uploads/ HTTP/1.1\r\n{h}Transfer-Encoding: gzip\r\n\r\n").into_bytes(),
            false,
        ),
    ];
    let may_close = ["not HTTP", "HTTP/2 preface on HTTP/1", "headers end early"];
    // hyper checks its 4 MiB buffer limit per read, so a head just over it may get through.
    let may_accept = ["a 5 MiB header"];
    let mut failures = Vec::new();
    for (what, bytes, half_close) in cases {
        let outcome = raw_exchange(&host, bytes, half_close, "RAW", what).await;
        match outcome {
            Ok(r) if r.status.is_client_error() => {
                // Answered by the registry: then it is the spec's JSON.
                if r.header("docker-distribution-api-version").is_some() {
                    let v: Result<Value, _> = serde_json::from_slice(&r.body);
                    if !v
                        .as_ref()
                        .is_ok_and(|v| error_body_problems(v, &[]).is_empty())
                    {
                        failures.push(format!(
                            "{what}: registry answer not spec JSON: {}",
                            r.text()
                        ));
                    }
                }
            }
            Ok(r) if r.status == 200 && may_accept.contains(&what) => {}
            Ok(r) => failures.push(format!("{what}: status {} {}", r.status, r.text())),
            // Closing a connection that never formed an HTTP/1 request is fine.
            Err(_) if may_close.contains(&what) => {}
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A body on GET is read and dropped: the next request on the connection is answered.
    let pipelined = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhelloGET /v2/_catalog HTTP/1.1\r\n{h}\r\n"
    );
    let out = tokio::time::timeout(TIMEOUT, async {
        let mut s = TcpStream::connect(&host).await.unwrap();
        s.write_all(pipelined.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .expect("pipelined requests answered");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains("\"repositories\""), "{out}");

    // A client that stalls half-way through its headers holds only its own connection.
    let mut stalled = TcpStream::connect(&host).await.unwrap();
    stalled
        .write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes())
        .await
        .unwrap();
    let r = s.client().get("/v2/").timeout(TIMEOUT).send().await;
    assert_eq!(r.status, 200);
    drop(stalled);

    assert_still_serving(&mut s).await;
}

// ---- spec discrepancies and regressions ---------------------------------------------------

/// "POST /v2/<name>/blobs/uploads/" then "PUT <location>?digest=<digest>" with no body
/// (Content-Length: 0) completes an upload of zero bytes: 201 Created, not a 500 because no
/// chunk ever created the session's data file (fixed in 45028b7; kept as a regression test).
async fn session_completed_without_any_chunk_is_created(t: Transport) {
    let mut s = Target::start(t);
    let c = s.client();
    let name = repo("bad-input-empty");
    let mut failures = Vec::new();
    for d in [sha256(b""), sha512(b"")] {
        let id = open_session(&c, &name).await;
        let put = row("PUT", format!("/v2/{name}/blobs/uploads/{id}?digest={d}"));
        let r = send(&s, &put).await.unwrap();
        if r.status != 201 {
            failures.push(format!(
                "PUT ?digest={d} with no body: {} {}",
                r.status,
                r.text()
            ));
        }
    }
    assert_still_serving(&mut s).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
both_transports!(
    #[tokio::test(flavor = "multi_thread")]
    session_completed_without_any_chunk_is_created
);

/// A Content-Range whose end is the largest integer must be refused (416, or 400), with the
/// spec's JSON; it must not cut the connection without an answer.
async fn spec_content_range_at_the_integer_limit_is_refused_not_dropped(t: Transport) {
    let mut s = Target::start(t);
    let c = s.client();
    let name = repo("bad-input-overflow");
    let mut rows = Vec::new();
    for m in ["PATCH", "PUT"] {
        let id = open_session(&c, &name).await;
        let q = if m == "PUT" {
            format!("?digest={}", sha256(b"x"))
        } else {
            String::new()
        };
        rows.push(
            row(m, format!("/v2/{name}/blobs/uploads/{id}{q}"))
                .header("Content-Range", format!("0-{}", u64::MAX))
                .body(&b"x"[..])
                .expect(416, "BLOB_UPLOAD_INVALID")
                .or_status(400)
                .or_code("SIZE_INVALID"),
        );
    }
    let failures = table_failures(&s, &rows).await;
    assert_still_serving(&mut s).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
both_transports!(
    #[tokio::test(flavor = "multi_thread")]
    spec_content_range_at_the_integer_limit_is_refused_not_dropped
);

/// RFC 9110 section 14.2, which the spec defers to for blob ranges: "An origin server MUST
/// ignore a Range header field that contains a range unit it does not understand." So a
/// Range in another unit gets the whole blob, 200.
async fn spec_range_in_an_unknown_unit_is_ignored(t: Transport) {
    let mut s = Target::start(t);
    let name = repo("bad-input-range");
    let blob = s.client().push_blob(&name, &b"hello world"[..]).await;
    let rows: Vec<Row> = ["items=0-1", "lines=0-"]
        .into_iter()
        .map(|unit| {
            row("GET", format!("/v2/{name}/blobs/{blob}"))
                .header("Range", unit)
                .expect(200, "")
                .want_body(&b"hello world"[..])
        })
        .collect();
    run_table(&s, &rows).await;
    assert_still_serving(&mut s).await;
}
both_transports!(
    #[tokio::test(flavor = "multi_thread")]
    spec_range_in_an_unknown_unit_is_ignored
);
