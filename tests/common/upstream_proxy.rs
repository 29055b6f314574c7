//! A proxy in front of a mirror's upstream, on 127.0.0.1, for the mirror tests: it counts the
//! requests it sees, answers blob GETs with a 307 to a second port (a CDN, which fetches the
//! blob from the upstream with credentials of its own, as a pre-signed URL would), and fails
//! on demand (503, 429, a dropped connection, a flipped byte in a blob, a manifest with a wrong
//! digest, a wrong `Content-Type` or over 4 MiB).
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};

type BoxErr = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxErr>;

/// How the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass = 0,
    /// Every request: 503.
    Unavailable,
    /// Every request: 429.
    TooMany,
    /// Every connection is closed at once, before an answer.
    Drop,
    /// Blob bodies have one byte flipped (in the middle).
    FlipByte,
    /// Manifests come with a `Docker-Content-Digest` that is not theirs.
    WrongDigest,
    /// Manifests come as `text/html`.
    WrongType,
    /// Manifests are padded past 4 MiB.
    Oversize,
}

/// One request the proxy saw: the method, the path (with query), whether it was on the CDN
/// port, and whether it carried an `Authorization`.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub cdn: bool,
    pub authorized: bool,
}

struct State {
    upstream: String,
    mode: AtomicU8,
    redirect: AtomicBool,
    /// Basic credentials the CDN port sends upstream.
    cdn_auth: Option<String>,
    seen: Mutex<Vec<Seen>>,
    client: reqwest::Client,
    cdn_url: Mutex<String>,
    /// `ratelimit-remaining` / `ratelimit-limit` sent with manifests, as Docker Hub does.
    rate_limit: Mutex<Option<(u64, u64)>>,
}

pub struct UpstreamProxy {
    pub url: String,
    pub cdn_url: String,
    state: Arc<State>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for UpstreamProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn full(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap()
}

impl UpstreamProxy {
    /// Starts the proxy (and its CDN port) in front of `upstream` on this tokio runtime.
    /// `cdn_auth` is the `Authorization` the CDN port sends upstream.
    pub async fn start(upstream: &str, cdn_auth: Option<String>) -> UpstreamProxy {
        let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cdn = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", main.local_addr().unwrap());
        let cdn_url = format!("http://{}", cdn.local_addr().unwrap());
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            mode: AtomicU8::new(Mode::Pass as u8),
            redirect: AtomicBool::new(true),
            cdn_auth,
            seen: Mutex::default(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cdn_url: Mutex::new(cdn_url.clone()),
            rate_limit: Mutex::default(),
        });
        let tasks = vec![
            tokio::spawn(accept(main, state.clone(), false)),
            tokio::spawn(accept(cdn, state.clone(), true)),
        ];
        UpstreamProxy {
            url,
            cdn_url,
            state,
            tasks,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Whether blob GETs are redirected to the CDN port (on by default).
    pub fn set_redirect(&self, on: bool) {
        self.state.redirect.store(on, Ordering::SeqCst);
    }

    /// Sends Docker Hub's rate-limit headers with manifests: (remaining, limit).
    pub fn set_rate_limit(&self, rl: Option<(u64, u64)>) {
        *self.state.rate_limit.lock().unwrap() = rl;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    /// The requests seen with `method` whose path contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.contains(part))
            .count()
    }

    /// Blob GETs that reached the upstream (through the CDN port, or directly).
    pub fn blob_gets(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == "GET" && s.path.contains("/blobs/"))
            .filter(|s| s.cdn || !self.state.redirect.load(Ordering::SeqCst))
            .count()
    }
}

async fn accept(listener: tokio::net::TcpListener, state: Arc<State>, cdn: bool) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        if state.mode.load(Ordering::SeqCst) == Mode::Drop as u8 {
            drop(sock);
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, state.clone(), cdn));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                .await;
        });
    }
}

fn mode(state: &State) -> Mode {
    match state.mode.load(Ordering::SeqCst) {
        1 => Mode::Unavailable,
        2 => Mode::TooMany,
        3 => Mode::Drop,
        4 => Mode::FlipByte,
        5 => Mode::WrongDigest,
        6 => Mode::WrongType,
        7 => Mode::Oversize,
        _ => Mode::Pass,
    }
}

/// Answers, or (in [`Mode::Drop`]) fails, which makes hyper close the connection unanswered:
/// kept-alive connections fail as new ones do.
async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    cdn: bool,
) -> Result<Response<Body>, BoxErr> {
    if state.mode.load(Ordering::SeqCst) == Mode::Drop as u8 {
        return Err("dropped".into());
    }
    answer(req, state, cdn).await.map_err(|e| match e {})
}

async fn answer(
    req: Request<Incoming>,
    state: Arc<State>,
    cdn: bool,
) -> Result<Response<Body>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let method = req.method().to_string();
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        cdn,
        authorized: req.headers().contains_key("authorization"),
    });
    let mode = mode(&state);
    match mode {
        Mode::Unavailable => {
            return Ok(full(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"errors":[{"code":"UNAVAILABLE","message":"down"}]}"#,
            ))
        }
        Mode::TooMany => {
            return Ok(full(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            ))
        }
        _ => {}
    }
    let blob_get = method == "GET" && path.contains("/blobs/sha256:");
    if blob_get && !cdn && state.redirect.load(Ordering::SeqCst) {
        let cdn_url = state.cdn_url.lock().unwrap().clone();
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("location", format!("{cdn_url}{path}"))
            .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
            .unwrap());
    }
    let mut headers = req.headers().clone();
    for h in ["connection", "transfer-encoding", "keep-alive", "host"] {
        headers.remove(h);
    }
    if cdn {
        headers.remove("authorization");
        if let Some(a) = &state.cdn_auth {
            headers.insert("authorization", a.parse().unwrap());
        }
    }
    let resp = state
        .client
        .request(req.method().clone(), format!("{}{path}", state.upstream))
        .headers(headers)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(_) => {
            return Ok(full(
                StatusCode::BAD_GATEWAY,
                r#"{"errors":[{"code":"UNKNOWN","message":"proxy"}]}"#,
            ))
        }
    };
    let status = resp.status();
    let manifest = path.contains("/manifests/") && status == StatusCode::OK;
    let mut out = Response::builder().status(status);
    for (k, v) in resp.headers() {
        if ["connection", "transfer-encoding", "keep-alive"].contains(&k.as_str()) {
            continue;
        }
        if manifest && k == "docker-content-digest" && mode == Mode::WrongDigest {
            out = out.header(
                k,
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            );
            continue;
        }
        if manifest && k == "content-type" && mode == Mode::WrongType {
            out = out.header(k, "text/html");
            continue;
        }
        if manifest && k == "content-length" && mode == Mode::Oversize {
            continue;
        }
        out = out.header(k, v);
    }
    if let Some((remaining, limit)) = *state.rate_limit.lock().unwrap() {
        if path.contains("/manifests/") {
            out = out
                .header("ratelimit-limit", format!("{limit};w=21600"))
                .header("ratelimit-remaining", format!("{remaining};w=21600"));
        }
    }
    if manifest && mode == Mode::Oversize && method == "GET" {
        // A manifest of 5 MiB: the real one, then spaces (still JSON).
        let mut body = resp.bytes().await.unwrap_or_default().to_vec();
        body.resize(5 * 1024 * 1024, b' ');
        return Ok(out
            .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
            .unwrap());
    }
    let flip = blob_get && mode == Mode::FlipByte;
    let total = resp.content_length().unwrap_or(0);
    let mut at = 0u64;
    let body = StreamBody::new(resp.bytes_stream().map(move |r| {
        let mut b = r.map_err(|e| -> BoxErr { Box::new(e) })?;
        let middle = total / 2;
        if flip && at <= middle && middle < at + b.len() as u64 {
            let mut v = b.to_vec();
            v[(middle - at) as usize] ^= 0x01;
            b = Bytes::from(v);
        }
        at += b.len() as u64;
        Ok(Frame::data(b))
    }));
    Ok(out.body(BodyExt::boxed(body)).unwrap())
}
