//! Operating the native server: the flags for metrics and notifications, what the server
//! does with each request's outcome (metrics, notifications), and the readiness check.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::metrics::Metrics;
use super::notify::{self, Notifier};
use crate::event::Event;
use crate::health::{Probe, Readiness, ReadyCheck};
use crate::notify::{Config, SourceRecord};

/// The `serve` flags of this module.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OpsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (a listener of its own; off unless given).
    #[arg(long, env = "EDGE_REGISTRY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// POST notifications (the reference registry's event envelope) to URL; repeat for more.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// Send notifications to this URL one event per POST, with the media type
    /// `application/vnd.docker.distribution.events.v2+json`, as the reference registry 3.x does;
    /// repeatable.
    #[arg(long = "notify-single", value_name = "URL")]
    pub notify_single: Vec<String>,
    /// A header sent with every notification, `Name: value` (e.g. an Authorization); repeatable.
    #[arg(long = "notify-header", value_name = "'NAME: VALUE'")]
    pub notify_headers: Vec<String>,
    /// Actions not notified, comma-separated: push, pull, delete, mount.
    #[arg(long = "notify-ignore-actions", value_name = "ACTIONS")]
    pub notify_ignore_actions: Vec<String>,
    /// Events an endpoint's spool holds at most; past that the oldest are dropped.
    #[arg(long, default_value_t = 100_000, value_name = "EVENTS")]
    pub notify_spool_max: u64,
    /// The longest wait between retries of a failing endpoint (a duration).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub notify_max_backoff: String,
    /// How long one notification POST may take (a duration).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub notify_timeout: String,
}

impl OpsArgs {
    /// The notification settings, checked.
    pub fn notify_options(&self, base_url: &str) -> Result<notify::Options, String> {
        let config = Config::parse(
            self.notify.iter().map(String::as_str),
            self.notify_single.iter().map(String::as_str),
            self.notify_headers.iter().map(String::as_str),
            self.notify_ignore_actions.iter().map(String::as_str),
        )
        .map_err(|e| format!("--notify: {e}"))?;
        let duration = |flag: &str, v: &str| {
            crate::settings::parse_duration(v)
                .map(|s| Duration::from_secs(s.max(1)))
                .map_err(|e| format!("--{flag}: {e}"))
        };
        Ok(notify::Options {
            config,
            spool_max_events: self.notify_spool_max,
            max_backoff: duration("notify-max-backoff", &self.notify_max_backoff)?,
            timeout: duration("notify-timeout", &self.notify_timeout)?,
            base_url: base_url.to_string(),
            ..notify::Options::default()
        })
    }
}

/// What the server does with each request besides answering it.
#[derive(Clone, Default)]
pub struct Ops {
    pub metrics: Option<Arc<Metrics>>,
    pub notifier: Option<Arc<Notifier>>,
}

/// A header's value as text: bytes that are not UTF-8 (a header may carry any) replaced.
fn value(v: Option<&http::HeaderValue>) -> Option<std::borrow::Cow<'_, str>> {
    v.map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// What the server reads of a request before the core takes it, for notifications: the
/// client's address and the `Host`, `User-Agent` and `X-Forwarded-Proto` headers, copied
/// into one buffer (one allocation, where a copy of each would take four).
pub struct Seen {
    text: String,
    /// Where each field ends in `text`: address, host, user agent, proto.
    ends: [usize; 4],
    has_proto: bool,
}

impl Seen {
    fn field(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..self.ends[i]).unwrap_or_default()
    }
}

impl Ops {
    /// Starts notifications (if any endpoint is given) with their spools under `root`.
    pub fn start(
        root: &Path,
        options: notify::Options,
        metrics: Option<Arc<Metrics>>,
        listen: SocketAddr,
    ) -> std::io::Result<Ops> {
        let notifier = if options.config.is_empty() {
            None
        } else {
            let source = SourceRecord {
                addr: listen.to_string(),
                instance_id: crate::upload::new_upload_id(),
            };
            Some(Notifier::start(root, options, source, metrics.clone())?)
        };
        Ok(Ops { metrics, notifier })
    }

    /// Reads what notifications need of a request (nothing when they are off).
    pub fn see(&self, req: &http::Request<hyper::body::Incoming>, client: &str) -> Option<Seen> {
        self.notifier.as_ref()?;
        let h = req.headers();
        let proto = value(h.get("x-forwarded-proto"));
        let has_proto = proto.is_some();
        let fields = [
            std::borrow::Cow::Borrowed(client),
            value(h.get(http::header::HOST)).unwrap_or_default(),
            value(h.get(http::header::USER_AGENT)).unwrap_or_default(),
            proto.unwrap_or_default(),
        ];
        let mut text = String::with_capacity(fields.iter().map(|f| f.len()).sum());
        let mut ends = [0; 4];
        for (end, f) in ends.iter_mut().zip(&fields) {
            text.push_str(f);
            *end = text.len();
        }
        Some(Seen {
            text,
            ends,
            has_proto,
        })
    }

    /// One request answered: its metrics and its notifications.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        op: &'static str,
        method: &http::Method,
        status: u16,
        bytes: (u64, u64),
        elapsed: Duration,
        events: &[Event],
        user: Option<&str>,
        seen: Option<Seen>,
    ) {
        if let Some(m) = &self.metrics {
            m.request(op, method, status, bytes.0, bytes.1, elapsed);
            m.events(events);
        }
        if let (Some(n), Some(seen)) = (&self.notifier, seen) {
            if !events.is_empty() {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let request = notify::RequestView {
                    addr: seen.field(0),
                    host: seen.field(1),
                    method: method.as_str(),
                    useragent: seen.field(2),
                    proto: seen.has_proto.then(|| seen.field(3)),
                };
                n.publish(events, &request, user, now_ms);
            }
        }
    }
}

/// The native readiness check: storage probed by a write and a read (bounded by a tokio
/// timer), and whether the account files parsed when last read.
pub struct NativeReady {
    pub accounts_parsed: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl ReadyCheck for NativeReady {
    async fn sleep(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await
    }

    fn checks(&self) -> Vec<(&'static str, bool)> {
        vec![("accounts", self.accounts_parsed.load(Ordering::Relaxed))]
    }
}

/// The readiness of a native registry.
pub fn readiness(accounts_parsed: Arc<AtomicBool>) -> Readiness {
    Readiness {
        probe: Probe::WriteRead,
        check: Some(Arc::new(NativeReady { accounts_parsed })),
    }
}
