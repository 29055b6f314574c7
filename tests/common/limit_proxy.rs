//! A body-limit proxy, as Cloudflare is in front of a Worker: on 127.0.0.1, it answers any
//! request whose body passes the limit (by `Content-Length`, or counted as it streams) with 413
//! and an HTML page, and forwards everything else to the server behind it, streaming both
//! ways. It counts the request body bytes it forwarded and the largest body, so tests can
//! tell how much a client sent.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};

/// Cloudflare's Free plan limit: 100 MB.
pub const LIMIT: u64 = 100_000_000;

const PAGE: &str = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n";

#[derive(Default)]
pub struct Counters {
    /// Request body bytes forwarded.
    pub forwarded: AtomicU64,
    /// The largest request body forwarded.
    pub largest: AtomicU64,
    /// Requests refused with 413.
    pub refused: AtomicU64,
}

pub struct Proxy {
    pub url: String,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub fn host(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    pub fn forwarded(&self) -> u64 {
        self.counters.forwarded.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.counters.forwarded.store(0, Ordering::Relaxed);
        self.counters.largest.store(0, Ordering::Relaxed);
        self.counters.refused.store(0, Ordering::Relaxed);
    }

    /// Starts a proxy in front of `upstream` (`http://host:port`), on this tokio runtime.
    pub async fn start(upstream: &str, limit: u64) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counters = Arc::new(Counters::default());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let upstream = upstream.trim_end_matches('/').to_string();
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (client, upstream, c) = (client.clone(), upstream.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        forward(req, client.clone(), upstream.clone(), c.clone(), limit)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Proxy {
            url,
            counters,
            task,
        }
    }
}

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn too_large(c: &Counters) -> Response<Body> {
    c.refused.fetch_add(1, Ordering::Relaxed);
    Response::builder()
        .status(StatusCode::PAYLOAD_TOO_LARGE)
        .header("content-type", "text/html")
        .header("connection", "close")
        .body(
            Full::new(Bytes::from_static(PAGE.as_bytes()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap()
}

async fn forward(
    req: Request<Incoming>,
    client: reqwest::Client,
    upstream: String,
    c: Arc<Counters>,
    limit: u64,
) -> Result<Response<Body>, Infallible> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit) {
        return Ok(too_large(&c));
    }
    let (parts, body) = req.into_parts();
    let url = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let seen = Arc::new(AtomicU64::new(0));
    let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, o2, c2) = (seen.clone(), over.clone(), c.clone());
    type BoxErr = Box<dyn std::error::Error + Send + Sync>;
    let stream = body
        .into_data_stream()
        .map(move |r| -> Result<Bytes, BoxErr> {
            let b = r.map_err(|e| -> BoxErr { Box::new(e) })?;
            let n = s2.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64;
            if n > limit {
                o2.store(true, Ordering::Relaxed);
                return Err("body over the limit".into());
            }
            c2.forwarded.fetch_add(b.len() as u64, Ordering::Relaxed);
            Ok(b)
        });
    let mut headers = parts.headers.clone();
    for h in ["connection", "transfer-encoding", "keep-alive", "expect"] {
        headers.remove(h);
    }
    let resp = client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    c.largest
        .fetch_max(seen.load(Ordering::Relaxed), Ordering::Relaxed);
    if over.load(Ordering::Relaxed) {
        return Ok(too_large(&c));
    }
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(
                    Full::new(Bytes::from(e.to_string()))
                        .map_err(|e| match e {})
                        .boxed(),
                )
                .unwrap())
        }
    };
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !["connection", "transfer-encoding", "keep-alive"].contains(&k.as_str()) {
            out = out.header(k, v);
        }
    }
    let body = StreamBody::new(resp.bytes_stream().map(|r| {
        r.map(Frame::data)
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
    }));
    Ok(out.body(BodyExt::boxed(body)).unwrap())
}
