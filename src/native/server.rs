//! A hyper server around the core. Request bodies go to the core as streams, response bodies
//! come back as streams; nothing is buffered here.

use std::convert::Infallible;
use std::future::Future;
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

use crate::body::{Body, BoxError};
use crate::registry::{InternalCause, Registry};
use crate::storage::Storage;

pub type HyperBody = UnsyncBoxBody<Bytes, BoxError>;

/// Bounds on what one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a request body may send nothing before the request is abandoned.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_timeout: Duration::from_secs(60),
        }
    }
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

fn content_length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Serves the registry on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve<S: Storage + 'static>(
    listener: TcpListener,
    registry: Arc<Registry<S>>,
    limits: Limits,
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
        let client = crate::auth::ClientAddr(peer.ip().to_string());
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            let registry = registry.clone();
            req.extensions_mut().insert(client.clone());
            async move {
                let start = Instant::now();
                let method = req.method().clone();
                let path = req.uri().path().to_string();
                let received = content_length(req.headers());
                let resp = registry.handle(to_core(req, limits.body_timeout)).await;
                let status = resp.status().as_u16();
                let sent = content_length(resp.headers());
                if let Some(cause) = resp.extensions().get::<InternalCause>() {
                    tracing::error!(%method, path, cause = %cause.0, "internal error");
                }
                tracing::info!(
                    %method,
                    path,
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
