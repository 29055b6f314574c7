//! Prometheus metrics for the native server (`--metrics-listen ADDR`): the series, the hooks
//! that feed them, and the listener that serves `/metrics` in the text format.
//!
//! Labels are bounded: the operation's stable name ([`crate::Outcome::op`]), the method, the
//! status, a notification endpoint's index. Never a repository, a digest or a path.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap;
use tokio::net::TcpListener;

use super::sharded;
use crate::event::Event;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

/// A mirror's prefix: configuration, so bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabel {
    mirror: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: u16,
}

fn latency() -> sharded::Histogram {
    // 0.5 ms .. about 65 s.
    sharded::Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Every series, and the hooks that feed them. Cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    // What every request updates is kept in per-thread shards ([`sharded`]).
    requests: Family<RequestLabels, sharded::Counter>,
    latency: Family<OpLabel, sharded::Histogram, fn() -> sharded::Histogram>,
    bytes_in: Family<OpLabel, sharded::Counter>,
    bytes_out: Family<OpLabel, sharded::Counter>,
    upload_sessions: Gauge,
    failed_logins: Counter,
    failed_logins_seen: AtomicU64,
    events: Family<EventLabel, sharded::Counter>,
    delivered: Family<EndpointLabel, Counter>,
    retries: Family<EndpointLabel, Counter>,
    dropped: Family<EndpointLabel, Counter>,
    pending: Family<EndpointLabel, Gauge>,
    storage_bytes: Gauge,
    storage_blobs: Gauge,
    gc_runs: Counter,
    gc_reclaimed: Counter,
    mirror_hits: Counter,
    mirror_misses: Counter,
    mirror_errors: Counter,
    mirror_ratelimit_remaining: Family<MirrorLabel, Gauge>,
    mirror_ratelimit_limit: Family<MirrorLabel, Gauge>,
    /// Read at every scrape: the process's total of failed logins ([`crate::auth::Access`]).
    failed_login_source: Mutex<Option<Arc<crate::auth::Access>>>,
    /// Tells this `Metrics` from others in the process, in the threads' caches of series.
    serial: u64,
}

/// How many series a thread's cache holds before it starts again (a process has one
/// `Metrics`; tests make many).
const SERIES_CACHED: usize = 4096;

thread_local! {
    /// The series each (operation, method, status) feeds, found in their families once per
    /// thread: a request then hashes a few words instead of each family's labels, and touches
    /// no lock or reference count that the other threads touch too (passing its cache line
    /// from core to core on every request). Keyed by the `Metrics`' serial first.
    static REQUEST_SERIES: RefCell<FxHashMap<(u64, usize, usize, u16), RequestSeries>> =
        RefCell::new(FxHashMap::default());
    /// Each event kind's counter, by (the `Metrics`' serial, the kind's name).
    static EVENT_SERIES: RefCell<FxHashMap<(u64, usize), sharded::Counter>> =
        RefCell::new(FxHashMap::default());
}

/// The series of one (operation, method, status). The byte counters are made on first use,
/// so that an operation that moves no bytes has no series for them, as before the cache.
struct RequestSeries {
    requests: sharded::Counter,
    latency: sharded::Histogram,
    bytes_in: OnceLock<sharded::Counter>,
    bytes_out: OnceLock<sharded::Counter>,
}

/// A `&'static str` by where it is: the labels are constants, so equal pointers are equal
/// labels (two copies of one label would only make two entries for the same series).
fn key(s: &'static str) -> usize {
    s.as_ptr() as usize
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("edge_registry");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency as fn() -> sharded::Histogram),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            upload_sessions: Gauge::default(),
            failed_logins: Counter::default(),
            failed_logins_seen: AtomicU64::new(0),
            events: Family::default(),
            delivered: Family::default(),
            retries: Family::default(),
            dropped: Family::default(),
            pending: Family::default(),
            storage_bytes: Gauge::default(),
            serial: {
                static SERIALS: AtomicU64 = AtomicU64::new(1);
                SERIALS.fetch_add(1, Ordering::Relaxed)
            },
            storage_blobs: Gauge::default(),
            gc_runs: Counter::default(),
            gc_reclaimed: Counter::default(),
            mirror_hits: Counter::default(),
            mirror_misses: Counter::default(),
            mirror_errors: Counter::default(),
            mirror_ratelimit_remaining: Family::default(),
            mirror_ratelimit_limit: Family::default(),
            failed_login_source: Mutex::new(None),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "requests",
            "Requests answered, by operation, method and status",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to the response's head, by operation",
            m.latency.clone(),
        );
        r.register(
            "request_bytes",
            "Request body bytes received (by Content-Length), by operation",
            m.bytes_in.clone(),
        );
        r.register(
            "response_bytes",
            "Response body bytes sent (by Content-Length), by operation",
            m.bytes_out.clone(),
        );
        r.register(
            "upload_sessions_open",
            "Upload sessions open",
            m.upload_sessions.clone(),
        );
        r.register(
            "failed_logins",
            "Logins refused for a wrong user or password",
            m.failed_logins.clone(),
        );
        r.register(
            "events",
            "Domain events (pushes, pulls, mounts, deletions), by kind",
            m.events.clone(),
        );
        r.register(
            "notification_deliveries",
            "Notification events delivered, by endpoint (its index among --notify)",
            m.delivered.clone(),
        );
        r.register(
            "notification_retries",
            "Failed notification POSTs, each retried later, by endpoint",
            m.retries.clone(),
        );
        r.register(
            "notification_drops",
            "Notification events dropped (the spool or the queue was full), by endpoint",
            m.dropped.clone(),
        );
        r.register(
            "notification_pending",
            "Notification events spooled and not yet delivered, by endpoint",
            m.pending.clone(),
        );
        r.register(
            "storage_bytes",
            "Bytes of blobs stored, as of the collector's last run",
            m.storage_bytes.clone(),
        );
        r.register(
            "storage_blobs",
            "Blobs stored, as of the collector's last run",
            m.storage_blobs.clone(),
        );
        r.register("gc_runs", "Garbage collection runs", m.gc_runs.clone());
        r.register(
            "gc_reclaimed_bytes",
            "Bytes garbage collection removed",
            m.gc_reclaimed.clone(),
        );
        r.register(
            "mirror_hits",
            "Mirror requests served from storage",
            m.mirror_hits.clone(),
        );
        r.register(
            "mirror_misses",
            "Mirror requests fetched from upstream",
            m.mirror_misses.clone(),
        );
        r.register(
            "mirror_upstream_errors",
            "Mirror requests whose upstream failed",
            m.mirror_errors.clone(),
        );
        r.register(
            "mirror_upstream_ratelimit_remaining",
            "Pulls the upstream last said are left (its ratelimit-remaining), by mirror prefix",
            m.mirror_ratelimit_remaining.clone(),
        );
        r.register(
            "mirror_upstream_ratelimit_limit",
            "The upstream's last ratelimit-limit, by mirror prefix",
            m.mirror_ratelimit_limit.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One request answered.
    pub fn request(
        &self,
        op: &'static str,
        method: &http::Method,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        let op = OpLabel { op };
        self.with_request_series(op.op, method, status, |series| {
            series.requests.inc();
            series.latency.observe(elapsed);
            if bytes_in > 0 {
                series
                    .bytes_in
                    .get_or_init(|| self.bytes_in.get_or_create(&op).clone())
                    .inc_by(bytes_in);
            }
            if bytes_out > 0 {
                series
                    .bytes_out
                    .get_or_init(|| self.bytes_out.get_or_create(&op).clone())
                    .inc_by(bytes_out);
            }
        });
        // Sessions opened and closed, from the outcome of the operations that do so.
        match (op.op, status) {
            ("upload.start", 202) => {
                self.upload_sessions.inc();
            }
            ("upload.complete", 201) | ("upload.cancel", 204) => {
                self.upload_sessions.dec();
            }
            _ => {}
        }
    }

    /// The events of a request (or of the sweeper). Exhaustive: a new event kind must choose
    /// its series here.
    pub fn events(&self, events: &[Event]) {
        for e in events {
            match e {
                Event::BlobPushed { .. }
                | Event::BlobMounted { .. }
                | Event::BlobPulled { .. }
                | Event::BlobDeleted { .. }
                | Event::ManifestPushed { .. }
                | Event::ManifestPulled { .. }
                | Event::ManifestDeleted { .. }
                | Event::TagMoved { .. }
                | Event::TagDeleted { .. } => {}
                // A collection's totals come through `gc_run`; each removal counts here.
                Event::BlobCollected { .. }
                | Event::ManifestCollected { .. }
                | Event::TagExpired { .. } => {}
                // The sweeper that expires sessions sets the gauge of open ones itself.
                Event::UploadExpired { .. } => {}
            }
            let event = e.name();
            EVENT_SERIES.with_borrow_mut(|cache| {
                if cache.len() >= SERIES_CACHED {
                    cache.clear();
                }
                cache
                    .entry((self.serial, key(event)))
                    .or_insert_with(|| self.events.get_or_create(&EventLabel { event }).clone())
                    .inc();
            });
        }
    }

    /// Runs `f` on the series of (`op`, `method`, `status`), from this thread's cache.
    fn with_request_series(
        &self,
        op: &'static str,
        method: &'static str,
        status: u16,
        f: impl FnOnce(&RequestSeries),
    ) {
        REQUEST_SERIES.with_borrow_mut(|cache| {
            if cache.len() >= SERIES_CACHED {
                cache.clear();
            }
            let series = cache
                .entry((self.serial, key(op), key(method), status))
                .or_insert_with(|| RequestSeries {
                    requests: self
                        .requests
                        .get_or_create(&RequestLabels { op, method, status })
                        .clone(),
                    latency: self.latency.get_or_create(&OpLabel { op }).clone(),
                    bytes_in: OnceLock::new(),
                    bytes_out: OnceLock::new(),
                });
            f(series)
        })
    }

    /// The upload sessions open, as the sweeper counted them.
    pub fn set_upload_sessions(&self, open: usize) {
        self.upload_sessions.set(open as i64);
    }

    /// Where failed logins are counted (read at every scrape).
    pub fn watch_failed_logins(&self, access: Arc<crate::auth::Access>) {
        *self
            .failed_login_source
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(access);
    }

    // ---- notifications ------------------------------------------------------------------

    pub fn notification_delivered(&self, endpoint: usize, events: u64) {
        self.delivered
            .get_or_create(&endpoint_label(endpoint))
            .inc_by(events);
    }

    pub fn notification_retry(&self, endpoint: usize) {
        self.retries.get_or_create(&endpoint_label(endpoint)).inc();
    }

    pub fn notification_dropped(&self, endpoint: usize, events: u64) {
        self.dropped
            .get_or_create(&endpoint_label(endpoint))
            .inc_by(events);
    }

    pub fn set_notification_pending(&self, endpoint: usize, events: u64) {
        self.pending
            .get_or_create(&endpoint_label(endpoint))
            .set(events as i64);
    }

    // ---- hooks for the collector and the mirror -----------------------------------------

    /// What the collector's last run found stored.
    pub fn set_storage(&self, bytes: u64, blobs: u64) {
        self.storage_bytes.set(bytes as i64);
        self.storage_blobs.set(blobs as i64);
    }

    /// One garbage collection run, and the bytes it removed.
    pub fn gc_run(&self, reclaimed_bytes: u64) {
        self.gc_runs.inc();
        self.gc_reclaimed.inc_by(reclaimed_bytes);
    }

    pub fn mirror_hit(&self) {
        self.mirror_hits.inc();
    }

    pub fn mirror_miss(&self) {
        self.mirror_misses.inc();
    }

    pub fn mirror_upstream_error(&self) {
        self.mirror_errors.inc();
    }

    /// The rate limit a mirror's upstream last reported (`mirror` is its configured prefix).
    pub fn mirror_rate_limit(&self, mirror: &str, remaining: u64, limit: u64) {
        let label = MirrorLabel {
            mirror: mirror.to_string(),
        };
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.mirror_ratelimit_remaining
            .get_or_create(&label)
            .set(clamp(remaining));
        self.mirror_ratelimit_limit
            .get_or_create(&label)
            .set(clamp(limit));
    }

    /// The metrics in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        if let Some(a) = self
            .failed_login_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let total = a.failed_logins();
            let seen = self.failed_logins_seen.swap(total, Ordering::Relaxed);
            self.failed_logins.inc_by(total.saturating_sub(seen));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

fn endpoint_label(endpoint: usize) -> EndpointLabel {
    EndpointLabel {
        endpoint: endpoint.min(u16::MAX as usize) as u16,
    }
}

/// The method as a bounded label: the standard ones, else `other`.
fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        http::Method::POST => "POST",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let http = hyper::server::conn::http1::Builder::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let metrics = metrics.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let metrics = metrics.clone();
            async move {
                let (status, ct, body) = match (req.method(), req.uri().path()) {
                    (&http::Method::GET, "/metrics") => {
                        (200, CONTENT_TYPE, Bytes::from(metrics.encode()))
                    }
                    _ => (404, "text/plain", Bytes::from_static(b"not found\n")),
                };
                let mut resp = http::Response::new(Full::new(body));
                *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(ct),
                );
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
