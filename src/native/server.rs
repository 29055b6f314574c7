//! A hyper server around the core. Request bodies go to the core as streams, response bodies
//! come back as streams; nothing is buffered here.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::ops::Ops;
use crate::body::{Body, BoxError};
use crate::error::InternalCause;
use crate::registry::Registry;
use crate::storage::Storage;

pub type HyperBody = UnsyncBoxBody<Bytes, BoxError>;

/// How the server treats connections and requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a request body may send nothing before the request is abandoned.
    pub body_timeout: Duration,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers name the client.
    pub trusted_proxies: TrustedProxies,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_timeout: Duration::from_secs(60),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// The proxies (address ranges) whose forwarding headers are believed (`--trusted-proxy`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// From CIDRs (`10.0.0.0/8`) or single addresses (`127.0.0.1`).
    pub fn parse<'a>(cidrs: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        cidrs
            .into_iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("--trusted-proxy {c:?} is not an address or CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address. The peer's, unless the peer is a trusted proxy: then the nearest
    /// address in the forwarding chain (`Forwarded`, else `X-Forwarded-For`, read from the
    /// right) that is not a trusted proxy itself. A hop that does not parse ends the walk, so a
    /// client can never pick its own address by writing the header.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<Option<IpAddr>> = if headers.contains_key(http::header::FORWARDED) {
            headers
                .get_all(http::header::FORWARDED)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|element| {
                    element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, v)| forwarded_addr(v))
                })
                .collect()
        } else {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|h| h.trim().parse().ok())
                .collect()
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

/// The address of a `Forwarded` header's `for=` value: `1.2.3.4`, `1.2.3.4:80`,
/// `"[2001:db8::1]:4711"`.
fn forwarded_addr(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.parse()
        .ok()
        .or_else(|| v.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
}

/// Converts a hyper request into the core's request, its body a stream that fails if the
/// client sends nothing for `idle`.
pub fn to_core(req: http::Request<Incoming>, idle: Duration) -> http::Request<Body> {
    let (parts, incoming) = req.into_parts();
    let stream = incoming
        .into_data_stream()
        .map_err(|e| Box::new(e) as BoxError);
    http::Request::from_parts(parts, Body::Stream(Box::pin(idle_timeout(stream, idle))))
}

/// Ends a stream with an error once it yields nothing for `idle`.
fn idle_timeout(
    stream: impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    futures_util::stream::unfold(Some(Box::pin(stream)), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(item)) => Some((item, Some(s))),
            Ok(None) => None,
            Err(_) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the request body sent nothing for {} s", idle.as_secs()),
                );
                Some((Err(Box::new(e) as BoxError), None))
            }
        }
    })
}

/// Converts the core's response into a hyper response, streaming its body.
pub fn from_core(resp: http::Response<Body>) -> http::Response<HyperBody> {
    resp.map(|body| match body {
        Body::Empty => Empty::new()
            .map_err(|e: Infallible| match e {})
            .boxed_unsync(),
        Body::Full(b) => Full::new(b)
            .map_err(|e: Infallible| match e {})
            .boxed_unsync(),
        Body::Stream(s) => StreamBody::new(s.map_ok(Frame::data)).boxed_unsync(),
        Body::Native(n) => StreamBody::new(n.into_stream().map_ok(Frame::data)).boxed_unsync(),
    })
}

/// The declared length, 0 when none (what the request log and the byte counters take).
fn content_length(headers: &http::HeaderMap) -> u64 {
    crate::body::content_length(headers).unwrap_or(0)
}

/// Serves the registry on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve<S: Storage + 'static>(
    listener: TcpListener,
    registry: Arc<Registry<S>>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, registry, limits, Ops::default(), shutdown).await
}

/// As [`serve`], feeding each request's outcome to metrics and notifications.
pub async fn serve_with<S: Storage + 'static>(
    listener: TcpListener,
    registry: Arc<Registry<S>>,
    limits: Limits,
    ops: Ops,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(4 * 1024 * 1024)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let registry = registry.clone();
        let limits = limits.clone();
        let ops = ops.clone();
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            let registry = registry.clone();
            let client = limits.trusted_proxies.client(peer.ip(), req.headers());
            let client = client.to_string();
            let seen = ops.see(&req, &client);
            req.extensions_mut().insert(crate::auth::ClientAddr(client));
            let body_timeout = limits.body_timeout;
            let ops = ops.clone();
            async move {
                let start = Instant::now();
                let method = req.method().clone();
                let path = req.uri().path().to_string();
                let received = content_length(req.headers());
                let outcome = registry.handle(to_core(req, body_timeout)).await;
                let resp = outcome.response;
                let status = resp.status().as_u16();
                let sent = content_length(resp.headers());
                ops.observe(
                    outcome.op,
                    &method,
                    status,
                    (received, sent),
                    start.elapsed(),
                    &outcome.events,
                    outcome.user.as_deref(),
                    seen,
                );
                if let Some(report) = resp.extensions().get::<crate::mirror::Report>() {
                    super::mirror::observe(report, ops.metrics.as_deref());
                }
                if let Some(cause) = resp.extensions().get::<InternalCause>() {
                    tracing::error!(%method, path, op = outcome.op, cause = %cause.0, "internal error");
                }
                tracing::info!(
                    %method,
                    path,
                    op = outcome.op,
                    status,
                    bytes_in = received,
                    bytes_out = sent,
                    ms = start.elapsed().as_secs_f64() * 1000.0,
                    "request"
                );
                Ok::<_, Infallible>(from_core(resp))
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
            tracing::warn!("gave up waiting for open connections");
        }
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn client_addresses_come_from_trusted_proxies_only() {
        let t = TrustedProxies::parse(["10.0.0.0/8", "127.0.0.1"]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = headers(&[("x-forwarded-for", "203.0.113.9, 10.1.2.3")]);
        // An untrusted peer's headers are ignored.
        assert_eq!(t.client(ip("198.51.100.1"), &xff), ip("198.51.100.1"));
        // Through two trusted proxies, the first untrusted hop from the right.
        assert_eq!(t.client(ip("127.0.0.1"), &xff), ip("203.0.113.9"));
        // A client cannot choose its address by prepending one: the rightmost untrusted wins.
        let spoof = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9")]);
        assert_eq!(t.client(ip("10.0.0.1"), &spoof), ip("203.0.113.9"));
        let fwd = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:4711\"",
        )]);
        assert_eq!(t.client(ip("10.0.0.1"), &fwd), ip("2001:db8::1"));
        let junk = headers(&[("x-forwarded-for", "203.0.113.9, garbage")]);
        assert_eq!(t.client(ip("10.0.0.1"), &junk), ip("10.0.0.1"));
        assert!(TrustedProxies::parse(["not-an-ip"]).is_err());
    }
}
