//! Operating the Worker: one JSON log line per request (the native `--json-logs` fields), one
//! Workers Analytics Engine data point per request, notifications through a Cloudflare Queue
//! (this Worker produces and consumes; wrangler.toml sets retries and a dead-letter queue), and
//! the timer that bounds `/readyz`'s R2 HEAD.

use std::time::Duration;

use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use worker::{Context, Env, MessageBatch, MessageExt};

use crate::event::Event;
use crate::health::{Probe, Readiness, ReadyCheck};
use crate::notify::{self, Config, Envelope, RequestRecord, SourceRecord};

/// The Analytics Engine dataset's binding.
const ANALYTICS: &str = "ANALYTICS";
/// The notification queue's binding.
const QUEUE: &str = "NOTIFY_QUEUE";

/// What is read of a request before the core takes it.
pub struct Seen {
    pub record: RequestRecord,
    pub proto: Option<String>,
    pub path: String,
    pub bytes_in: u64,
    pub start_ms: f64,
}

fn header(req: &worker::Request, name: &str) -> String {
    req.headers().get(name).ok().flatten().unwrap_or_default()
}

pub fn see(req: &worker::Request) -> Seen {
    let url = req.url().ok();
    let host = url
        .as_ref()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_default();
    Seen {
        record: RequestRecord {
            id: String::new(),
            addr: header(req, "cf-connecting-ip"),
            host,
            method: req.inner().method(),
            useragent: header(req, "user-agent"),
        },
        proto: url.as_ref().map(|u| u.scheme().to_string()),
        path: req.path(),
        bytes_in: header(req, "content-length").parse().unwrap_or(0),
        start_ms: worker::Date::now().as_millis() as f64,
    }
}

/// What the core answered, for [`after`].
pub struct Answered<'a> {
    pub op: &'static str,
    pub status: u16,
    pub bytes_out: u64,
    pub events: &'a [Event],
    pub user: Option<&'a str>,
    /// Logins this request was refused for a wrong user or password (0 or 1).
    pub failed_logins: u64,
    /// What a mirrored request did (its mirror, the upstream's rate limit).
    pub mirror: Option<&'a crate::mirror::Report>,
}

/// Logs the request, writes its data point, and queues its notifications (after the response,
/// through `wait_until`, so the queue never slows it).
pub fn after(env: &Env, ctx: &Context, seen: Seen, a: Answered<'_>) {
    let ms = worker::Date::now().as_millis() as f64 - seen.start_ms;
    // The native server's fields; never a header, a credential or a query.
    let mut line = serde_json::json!({
        "level": "INFO",
        "message": "request",
        "method": seen.record.method,
        "path": seen.path,
        "op": a.op,
        "status": a.status,
        "bytes_in": seen.bytes_in,
        "bytes_out": a.bytes_out,
        "ms": ms,
    });
    // A mirrored request: its mirror (a configured prefix) and the upstream's rate limit.
    let rate_limit = a.mirror.and_then(|m| m.rate_limit);
    if let Some(m) = a.mirror {
        line["mirror"] = m.mirror.clone().into();
    }
    if let Some(rl) = rate_limit {
        line["ratelimit_remaining"] = rl.remaining.into();
        line["ratelimit_limit"] = rl.limit.into();
    }
    worker::console_log!("{line}");
    if let Ok(ds) = env.analytics_engine(ANALYTICS) {
        let status = a.status.to_string();
        // Unknown rate limits are -1.
        let (remaining, limit) =
            rate_limit.map_or((-1.0, -1.0), |rl| (rl.remaining as f64, rl.limit as f64));
        let point = worker::AnalyticsEngineDataPointBuilder::new()
            .indexes([a.op])
            .add_blob(a.op)
            .add_blob(seen.record.method.as_str())
            .add_blob(status.as_str())
            .add_double(a.status as f64)
            .add_double(seen.bytes_in as f64)
            .add_double(a.bytes_out as f64)
            .add_double(ms)
            .add_double(a.events.len() as f64)
            .add_double(a.failed_logins as f64)
            .add_blob(a.mirror.map_or("", |m| m.mirror.as_str()))
            .add_double(remaining)
            .add_double(limit)
            .build();
        if let Err(e) = ds.write_data_point(&point) {
            worker::console_warn!("analytics data point not written: {e}");
        }
    }
    if !a.events.is_empty() {
        queue_notifications(env, ctx, seen, &a);
    }
}

/// The notification settings: vars NOTIFY_URLS, NOTIFY_SINGLE_URLS and NOTIFY_IGNORE_ACTIONS,
/// secret NOTIFY_HEADERS. A setting that does not parse is logged (without values) and sends
/// nothing.
fn config(env: &Env) -> Option<Config> {
    let urls = super::var(env, "NOTIFY_URLS").unwrap_or_default();
    let single = super::var(env, "NOTIFY_SINGLE_URLS").unwrap_or_default();
    let ignore = super::var(env, "NOTIFY_IGNORE_ACTIONS").unwrap_or_default();
    let headers = super::secret(env, "NOTIFY_HEADERS").unwrap_or_default();
    match Config::from_vars(&urls, &single, &headers, &ignore) {
        Ok(c) if !c.is_empty() => Some(c),
        Ok(_) => None,
        Err(e) => {
            worker::console_error!("notifications are misconfigured: {e}");
            None
        }
    }
}

/// One queue message: the events of one request for one endpoint (one event, for a
/// single-event endpoint).
#[derive(Debug, Serialize, Deserialize)]
pub struct Delivery {
    pub url: String,
    #[serde(default)]
    pub single: bool,
    pub envelope: Envelope,
}

fn queue_notifications(env: &Env, ctx: &Context, seen: Seen, a: &Answered<'_>) {
    let Some(config) = config(env) else { return };
    let mut request = seen.record;
    request.id = crate::upload::new_upload_id();
    let cx = notify::Context {
        base: notify::public_base(
            super::var(env, "BASE_URL").as_deref().unwrap_or(""),
            Some(&request.host),
            seen.proto.as_deref(),
        ),
        request,
        actor: a.user.map(str::to_string),
        source: SourceRecord {
            addr: "cloudflare-worker".into(),
            instance_id: instance_id(),
        },
        now_ms: worker::Date::now().as_millis(),
    };
    let events = notify::notices(a.events, &cx, &config.ignore, crate::upload::new_upload_id);
    if events.is_empty() {
        return;
    }
    let queue = match env.queue(QUEUE) {
        Ok(q) => q,
        Err(e) => {
            worker::console_error!("no notification queue bound ({QUEUE}): {e}");
            return;
        }
    };
    let mut batch = Vec::new();
    for endpoint in &config.urls {
        let deliveries: Vec<Vec<notify::Notice>> = if endpoint.single {
            events.iter().map(|e| vec![e.clone()]).collect()
        } else {
            vec![events.clone()]
        };
        batch.extend(deliveries.into_iter().map(|events| Delivery {
            url: endpoint.url.clone(),
            single: endpoint.single,
            envelope: Envelope { events },
        }));
    }
    ctx.wait_until(async move {
        let messages = worker::BatchMessageBuilder::new().messages(batch).build();
        if let Err(e) = queue.send_batch(messages).await {
            worker::console_error!("queueing notifications failed: {e}");
        }
    });
}

thread_local! {
    static INSTANCE: String = crate::upload::new_upload_id();
}

/// This isolate's id (`source.instanceID`): new with every isolate.
fn instance_id() -> String {
    INSTANCE.with(Clone::clone)
}

/// How long one notification POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// The queue's consumer: POSTs each message's envelope to its endpoint; a failure is retried
/// by the queue after a delay that grows with the message's age (up to 5 minutes), and after
/// wrangler.toml's `max_retries` the message goes to the dead-letter queue.
pub async fn consume(batch: MessageBatch<Delivery>, env: &Env) -> worker::Result<()> {
    let headers = super::secret(env, "NOTIFY_HEADERS").unwrap_or_default();
    let headers = match Config::from_vars("", "", &headers, "") {
        Ok(c) => c.headers,
        Err(e) => {
            worker::console_error!("NOTIFY_HEADERS: {e}");
            Vec::new()
        }
    };
    for message in batch.messages()? {
        let d = message.body();
        match post(d, &headers).await {
            Ok(()) => message.ack(),
            Err(why) => {
                let age = (worker::Date::now()
                    .as_millis()
                    .saturating_sub(message.timestamp().as_millis())
                    / 1000) as u32;
                let delay = age.clamp(1, 300);
                worker::console_warn!(
                    "notification POST failed ({why}); retrying in {delay} s ({} events)",
                    d.envelope.events.len()
                );
                message.retry_with_options(
                    &worker::QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(delay)
                        .build(),
                );
            }
        }
    }
    Ok(())
}

async fn post(d: &Delivery, headers: &[(String, String)]) -> Result<(), String> {
    let h = worker::Headers::new();
    let media_type = if d.single {
        notify::MEDIA_TYPE_SINGLE
    } else {
        notify::MEDIA_TYPE
    };
    h.set("content-type", media_type)
        .map_err(|e| e.to_string())?;
    for (k, v) in headers {
        h.set(k, v)
            .map_err(|_| format!("header {k} not accepted"))?;
    }
    let body = serde_json::to_string(&d.envelope).map_err(|e| e.to_string())?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_headers(h)
        .with_body(Some(body.into()));
    let req = worker::Request::new_with_init(&d.url, &init).map_err(|e| e.to_string())?;
    let request = worker::Fetch::Request(req);
    let sending = Box::pin(request.send());
    let timeout = Box::pin(worker::Delay::from(POST_TIMEOUT));
    let outcome = select(sending, timeout).await;
    match outcome {
        Either::Left((Ok(resp), _)) if (200..300).contains(&resp.status_code()) => Ok(()),
        Either::Left((Ok(resp), _)) => Err(format!("status {}", resp.status_code())),
        Either::Left((Err(e), _)) => Err(e.to_string()),
        Either::Right(_) => Err("timed out".into()),
    }
}

/// `/readyz` on the Worker: a HEAD on R2, bounded by a timer.
struct WorkerReady;

#[async_trait::async_trait(?Send)]
impl ReadyCheck for WorkerReady {
    async fn sleep(&self, ms: u64) {
        worker::Delay::from(Duration::from_millis(ms)).await
    }
}

pub fn readiness() -> Readiness {
    Readiness {
        probe: Probe::Head,
        check: Some(std::sync::Arc::new(WorkerReady)),
    }
}
