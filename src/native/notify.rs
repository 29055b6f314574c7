//! Notification delivery for the native server (`--notify URL`, repeatable).
//!
//! The request path writes its events' notices once, as the JSON lines the spool holds
//! ([`crate::notify::write_lines`], into a buffer of its thread), and appends them to each
//! endpoint's bounded in-memory queue (in a shard per core, each a byte buffer behind a lock
//! its thread holds for a copy, never for any I/O; see `Shard`); a full queue drops them,
//! logged and counted. Per endpoint, one task writes what the
//! queue holds to the endpoint's spool on disk ([`super::spool`]), a batch per file, and another
//! POSTs the oldest spooled batches to the
//! endpoint, removing them only once it answered 2xx, and retrying failures with exponential
//! backoff (with jitter), without end. So a slow or dead endpoint never slows a request,
//! events survive restarts and crashes (delivered at least once; `id` tells repeats apart),
//! and only a full spool loses the oldest events, logged and counted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest as _;
use tokio::sync::Notify;

use super::metrics::Metrics;
use super::spool::{self, Spool};
use crate::event::Event;
use crate::notify::{self, Config, SourceRecord};

/// How delivery behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    /// Events an endpoint's spool may hold; past that the oldest are dropped.
    pub spool_max_events: u64,
    /// Events an endpoint's in-memory queue may hold before the spool writer takes them.
    pub queue: usize,
    /// Events in one POST, at most.
    pub batch_events: u64,
    /// How long a POST may take.
    pub timeout: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// The registry's public base URL (`--base-url`), for `target.url`; empty: from `Host`.
    pub base_url: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: Config::default(),
            spool_max_events: 100_000,
            queue: 20_000,
            batch_events: 100,
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
            base_url: String::new(),
        }
    }
}

struct Shared {
    index: usize,
    endpoint: notify::Endpoint,
    headers: Vec<(String, String)>,
    spool: Mutex<Spool>,
    /// Wakes the sender when a batch is spooled.
    spooled: Notify,
    /// Notices not yet spooled: the queue, in shards (see [`Shard`]).
    shards: Box<[Shard]>,
    /// Wakes the spool writer when a shard of the queue stops being empty.
    filled: Notify,
    /// Events a shard of the queue may hold.
    shard_max: u64,
    metrics: Option<Arc<Metrics>>,
}

/// A shard of an endpoint's queue. A request's thread appends to a shard of its own, so that
/// threads do not contend for one lock (passing its cache line from core to core on every
/// notified request). Each request's notices carry when they were queued (a monotonic clock),
/// and the spool writer takes every shard at once (all their locks held) and merges them in
/// that order: notices of a request that began after another's answer was sent come after
/// the other's, as with one queue.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Queued>);

impl Shard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a shard holds: JSON lines, one an event, appended a request at a time.
#[derive(Default)]
struct Queued {
    lines: Vec<u8>,
    /// Per request: when its notices were queued, and where they end in `lines`.
    marks: Vec<(u64, usize)>,
    events: u64,
}

impl Queued {
    fn clear(&mut self) {
        self.lines.clear();
        self.marks.clear();
        self.events = 0;
    }
}

/// The lines of `taken` (shards of a queue) in the order their requests queued them: the
/// shard's own lines when only one holds any, else merged into `out`.
fn ordered<'a>(taken: &'a [Queued], out: &'a mut Vec<u8>) -> &'a [u8] {
    let mut holding = taken.iter().filter(|q| !q.marks.is_empty());
    match (holding.next(), holding.next()) {
        (None, _) => return &[],
        (Some(q), None) => return &q.lines,
        _ => {}
    }
    out.clear();
    out.reserve(taken.iter().map(|q| q.lines.len()).sum());
    // Each shard's next request; the earliest of them goes next (the first shard on a tie).
    let mut next = vec![0usize; taken.len()];
    loop {
        let mut earliest: Option<(u64, usize)> = None;
        for (i, q) in taken.iter().enumerate() {
            if let Some(&(when, _)) = q.marks.get(next[i]) {
                if earliest.is_none_or(|(w, _)| when < w) {
                    earliest = Some((when, i));
                }
            }
        }
        let Some((_, i)) = earliest else {
            return out;
        };
        let q = &taken[i];
        let start = match next[i] {
            0 => 0,
            n => q.marks[n - 1].1,
        };
        out.extend_from_slice(&q.lines[start..q.marks[next[i]].1]);
        next[i] += 1;
    }
}

/// A monotonic clock's reading, in nanoseconds since the process first read it.
fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

impl Shared {
    /// Queues `events` notices (`lines`) of a request, queued at `when`, in this thread's
    /// shard, unless it is full.
    fn enqueue(&self, when: u64, lines: &[u8], events: u64) {
        let was_empty = {
            let mut q = self.shards[super::sharded::thread_shard(self.shards.len())].lock();
            if q.events + events > self.shard_max {
                drop(q);
                self.dropped(events, "the queue is full");
                return;
            }
            q.lines.extend_from_slice(lines);
            let end = q.lines.len();
            q.marks.push((when, end));
            q.events += events;
            q.events == events
        };
        if was_empty {
            self.filled.notify_one();
        }
    }

    fn spool(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_pending(&self, events: u64) {
        if let Some(m) = &self.metrics {
            m.set_notification_pending(self.index, events);
        }
    }

    fn dropped(&self, events: u64, why: &str) {
        tracing::warn!(
            endpoint = self.index,
            events,
            "notification events dropped: {why}"
        );
        if let Some(m) = &self.metrics {
            m.notification_dropped(self.index, events);
        }
    }
}

/// The notifier: maps events and queues them for every endpoint.
pub struct Notifier {
    /// What each endpoint's tasks share, its queue among it.
    endpoints: Vec<Arc<Shared>>,
    ignore: Vec<String>,
    source: SourceRecord,
    /// `--base-url` as `target.url`'s base, if given.
    base_url: Option<String>,
    ids: Ids,
}

/// Event and request ids, in the form of random (version 4) UUIDs: 60 random bits drawn once
/// per process, then a counter, so that the request path makes no system call for them. Ids
/// differ across processes by the random part (a repeat needs two processes to draw the same
/// 60 bits) and within one by the counter. Each thread takes the counter's values a block at a
/// time, so that threads do not share (and pass between cores) one counter per event.
struct Ids {
    random: u64,
    counter: std::sync::atomic::AtomicU64,
    /// Tells this `Ids` from others in the process, for the threads' blocks.
    serial: u64,
}

/// How many ids a thread takes from the counter at a time.
const ID_BLOCK: u64 = 256;

thread_local! {
    /// The block of ids this thread takes from: the `Ids` it is of (its serial), the next
    /// value and the block's end.
    static ID_RANGE: std::cell::Cell<(u64, u64, u64)> = const { std::cell::Cell::new((0, 0, 0)) };
}

impl Ids {
    fn new() -> Ids {
        static SERIALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut b = [0u8; 16];
        let _ = getrandom::fill(&mut b);
        Ids {
            random: u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            counter: std::sync::atomic::AtomicU64::new(
                u64::from_le_bytes(b[8..].try_into().unwrap_or_default()) >> 8,
            ),
            serial: SERIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The counter's next value for this thread.
    fn count(&self) -> u64 {
        ID_RANGE.with(|r| {
            let (serial, next, end) = r.get();
            if serial == self.serial && next < end {
                r.set((serial, next + 1, end));
                return next;
            }
            let start = self
                .counter
                .fetch_add(ID_BLOCK, std::sync::atomic::Ordering::Relaxed);
            r.set((self.serial, start + 1, start + ID_BLOCK));
            start
        })
    }

    fn next(&self) -> Id {
        let n = self.count();
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.random.to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let mut h = [0u8; 32];
        // Cannot fail: the output is exactly twice the input.
        let _ = hex::encode_to_slice(b, &mut h);
        let mut id = [b'-'; 36];
        for (from, to, len) in [(0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)] {
            id[to..to + len].copy_from_slice(&h[from..from + len]);
        }
        Id(id)
    }
}

/// An id, on the stack: a UUID's 36 characters.
struct Id([u8; 36]);

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        // Hex digits and dashes only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// What a notice tells of its request, borrowed from it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestView<'a> {
    pub addr: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub useragent: &'a str,
    /// `X-Forwarded-Proto`, for the base of `target.url`.
    pub proto: Option<&'a str>,
}

/// The folder of an endpoint's spool: named by a hash of its URL, so a restart with the
/// endpoints in another order still finds each one's events.
pub fn spool_dir(root: &Path, url: &str) -> PathBuf {
    let h = sha2::Sha256::digest(url.as_bytes());
    root.join("notifications").join(hex::encode(&h[..8]))
}

impl Notifier {
    /// Opens each endpoint's spool under `root` and starts its tasks (on the current tokio
    /// runtime). Events spooled by an earlier run are delivered first.
    pub fn start(
        root: &Path,
        options: Options,
        source: SourceRecord,
        metrics: Option<Arc<Metrics>>,
    ) -> std::io::Result<Arc<Notifier>> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(concat!("edge-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| std::io::Error::other(format!("notification client: {e}")))?;
        let mut endpoints = Vec::new();
        // A shard of each queue per thread that may run requests.
        let shards = super::sharded::shards();
        for (index, endpoint) in options.config.urls.iter().enumerate() {
            let spool = Spool::open(&spool_dir(root, &endpoint.url), options.spool_max_events)?;
            let pending = spool.events();
            let shared = Arc::new(Shared {
                index,
                endpoint: endpoint.clone(),
                headers: options.config.headers.clone(),
                spool: Mutex::new(spool),
                spooled: Notify::new(),
                shards: (0..shards).map(|_| Shard::default()).collect(),
                filled: Notify::new(),
                shard_max: (options.queue / shards).max(1) as u64,
                metrics: metrics.clone(),
            });
            shared.set_pending(pending);
            if pending > 0 {
                tracing::info!(
                    endpoint = index,
                    events = pending,
                    "notification events left by the last run: delivering them"
                );
            }
            tokio::spawn(write_spool(shared.clone()));
            tokio::spawn(deliver(shared.clone(), client.clone(), options.clone()));
            endpoints.push(shared);
        }
        Ok(Arc::new(Notifier {
            endpoints,
            ignore: options.config.ignore.clone(),
            source,
            // The configured base, made once (else each request's `Host` makes it).
            base_url: (!options.base_url.is_empty())
                .then(|| notify::public_base(&options.base_url, None, None)),
            ids: Ids::new(),
        }))
    }

    /// Queues the notices of one request's events, without waiting. `request` is what the
    /// adapter read of the request before handing it to the core (its `id` is filled in here).
    pub fn publish(
        &self,
        events: &[Event],
        request: &RequestView<'_>,
        actor: Option<&str>,
        now_ms: u64,
    ) {
        if self.endpoints.is_empty() || !notify::any_notified(events, &self.ignore) {
            return;
        }
        let id = self.ids.next();
        let write = |base: &str| {
            let cx = notify::View {
                id: id.as_ref(),
                addr: request.addr,
                host: request.host,
                method: request.method,
                useragent: request.useragent,
                actor,
                source: &self.source,
                base,
                now_ms,
            };
            LINES.with_borrow_mut(|lines| {
                lines.clear();
                let count =
                    notify::write_lines(events, &cx, &self.ignore, || self.ids.next(), lines);
                if count > 0 {
                    let when = monotonic_ns();
                    for shared in &self.endpoints {
                        shared.enqueue(when, lines, count);
                    }
                }
                // A flood of large events must not pin a large buffer to the thread.
                if lines.capacity() > 64 * 1024 {
                    *lines = Vec::new();
                }
            });
        };
        if let Some(base) = &self.base_url {
            return write(base);
        }
        // The base of `target.url` from the request's `Host` (and proxy's scheme), remembered
        // per thread for the host it saw last.
        BASE.with_borrow_mut(|(h, p, base)| {
            if h != request.host || p.as_deref() != request.proto || base.is_empty() {
                *base = notify::public_base("", Some(request.host), request.proto);
                (*h, *p) = (request.host.to_string(), request.proto.map(str::to_string));
            }
            write(base)
        })
    }

    /// Events spooled and not yet delivered, per endpoint.
    pub fn pending(&self) -> Vec<u64> {
        self.endpoints.iter().map(|s| s.spool().events()).collect()
    }
}

thread_local! {
    /// The last `Host` and scheme a thread saw, and the base URL they make.
    static BASE: std::cell::RefCell<(String, Option<String>, String)> =
        const { std::cell::RefCell::new((String::new(), None, String::new())) };

    /// Where a request's notices are written before they are queued (kept, so that a pull
    /// allocates nothing for them).
    static LINES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest queue buffer kept for reuse (a batch of about 6,000 pull events).
const SPARE_MAX: usize = 4 << 20;

/// How long the spool writer waits for more events before it writes a batch.
const LINGER: Duration = Duration::from_millis(20);

/// Takes what the queue holds, all of it at a time, and spools it as one batch.
async fn write_spool(shared: Arc<Shared>) {
    // What the shards get back when their lines are taken: the last batch's, emptied, so that
    // the request path appends into memory already grown instead of growing a new buffer
    // (copying what it holds each time it doubles) for every batch. And the buffer where the
    // shards' lines are merged.
    let mut spares: Vec<Queued> = shared.shards.iter().map(|_| Queued::default()).collect();
    let mut merged: Vec<u8> = Vec::new();
    loop {
        shared.filled.notified().await;
        // What arrives within `LINGER` joins this batch (one file, one fsync): under a flood
        // of events the spool is written a few dozen times a second, not once per request,
        // and the task sleeps instead of being woken by every event. The events wait in
        // memory for at most `LINGER` more. A batch holds at most the queue's bound.
        tokio::time::sleep(LINGER).await;
        let mut taken = std::mem::take(&mut spares);
        {
            // Every shard at once, so that the batch is a cut of the queue: no notice left
            // for the next batch was queued before one taken (see `Shard`).
            let mut locked: Vec<_> = shared.shards.iter().map(Shard::lock).collect();
            for (q, t) in locked.iter_mut().zip(taken.iter_mut()) {
                std::mem::swap(&mut **q, t);
            }
        }
        let events: u64 = taken.iter().map(|q| q.events).sum();
        if events == 0 {
            spares = taken;
            continue;
        }
        let (batch, dir) = {
            let mut s = shared.spool();
            (s.reserve(events), s.dir().to_path_buf())
        };
        let mut out = std::mem::take(&mut merged);
        let written = tokio::task::spawn_blocking(move || {
            let written = spool::write_batch(&dir, batch, ordered(&taken, &mut out));
            (written, taken, out)
        })
        .await;
        let written = written.map(|(written, mut taken, mut out)| {
            // Kept for the next batch unless a burst made them large.
            for q in &mut taken {
                q.clear();
                if q.lines.capacity() > SPARE_MAX {
                    *q = Queued::default();
                }
            }
            spares = taken;
            if out.capacity() <= SPARE_MAX {
                out.clear();
                merged = out;
            }
            written
        });
        if spares.len() != shared.shards.len() {
            // The blocking task failed (and took the spares with it).
            spares = shared.shards.iter().map(|_| Queued::default()).collect();
        }
        match written {
            Ok(Ok(())) => {
                let (dropped, pending) = {
                    let mut s = shared.spool();
                    (s.added(batch), s.events())
                };
                let lost: u64 = dropped.iter().map(|b| b.count).sum();
                if lost > 0 {
                    shared.dropped(lost, "the spool is full (oldest dropped)");
                }
                shared.set_pending(pending);
                shared.spooled.notify_one();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not spool notification events");
                shared.dropped(events, "the spool could not be written");
            }
            Err(e) => tracing::warn!(error = %e, "the spool task failed"),
        }
    }
}

/// POSTs the oldest spooled batches, in order, at most `batch_events` events a POST (one for
/// a single-event endpoint; a spool
/// file may hold more: its lines are sent in slices, and the file is removed once every slice
/// was taken), retrying with backoff until the endpoint takes them.
async fn deliver(shared: Arc<Shared>, client: reqwest::Client, options: Options) {
    let per_post = if shared.endpoint.single {
        1
    } else {
        options.batch_events.max(1) as usize
    };
    let mut failures: u32 = 0;
    // The head batch's events already delivered, when it was sent in slices and one failed.
    let mut resume: Option<(spool::Batch, usize)> = None;
    loop {
        let (picked, dir) = {
            let s = shared.spool();
            (s.oldest(options.batch_events), s.dir().to_path_buf())
        };
        if picked.is_empty() {
            shared.spooled.notified().await;
            continue;
        }
        let read = {
            let (dir, picked) = (dir.clone(), picked.clone());
            tokio::task::spawn_blocking(move || {
                let mut parts = Vec::new();
                for b in picked {
                    if let Some(body) = spool::read_batch(&dir, b)? {
                        parts.push(body);
                    }
                }
                Ok::<_, std::io::Error>(parts)
            })
            .await
        };
        let parts = match read {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not read the notification spool");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => return,
        };
        let events: Vec<&[u8]> = parts.iter().flat_map(|p| spool::events(p)).collect();
        let mut sent = match resume {
            Some((b, n)) if b == picked[0] => n.min(events.len()),
            _ => 0,
        };
        let mut ok = true;
        while sent < events.len() {
            let slice = &events[sent..(sent + per_post).min(events.len())];
            let mut body = Vec::with_capacity(
                slice.iter().map(|e| e.len() + 1).sum::<usize>() + b"{\"events\":[]}".len(),
            );
            body.extend_from_slice(b"{\"events\":[");
            for (i, e) in slice.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(e);
            }
            body.extend_from_slice(b"]}");
            if !post(&client, &shared, body).await {
                ok = false;
                break;
            }
            sent += slice.len();
            if let Some(m) = &shared.metrics {
                m.notification_delivered(shared.index, slice.len() as u64);
            }
        }
        if ok {
            failures = 0;
            resume = None;
            let (files, pending) = {
                let mut s = shared.spool();
                (s.delivered(&picked), s.events())
            };
            let _ = tokio::task::spawn_blocking(move || {
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
            })
            .await;
            shared.set_pending(pending);
        } else {
            resume = Some((picked[0], sent));
            failures = failures.saturating_add(1);
            if let Some(m) = &shared.metrics {
                m.notification_retry(shared.index);
            }
            tokio::time::sleep(backoff(failures, options.max_backoff)).await;
        }
    }
}

/// One POST; whether the endpoint took it (2xx). Failures are logged with the endpoint's
/// index only: its URL and headers may hold credentials.
async fn post(client: &reqwest::Client, shared: &Shared, body: Vec<u8>) -> bool {
    let mut req = client
        .post(&shared.endpoint.url)
        .header(reqwest::header::CONTENT_TYPE, shared.endpoint.media_type())
        .body(body);
    for (k, v) in &shared.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => true,
        Ok(resp) => {
            tracing::warn!(
                endpoint = shared.index,
                status = resp.status().as_u16(),
                "notification endpoint refused events; retrying"
            );
            false
        }
        Err(e) => {
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "failed"
            };
            tracing::warn!(endpoint = shared.index, "notification POST {why}; retrying");
            false
        }
    }
}

/// Exponential backoff from 0.5 s, doubling, up to `max`, with up to 25% jitter off.
fn backoff(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max);
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let jitter = u16::from_le_bytes(b) as u32 % 1000;
    base.saturating_sub(base.mul_f64(jitter as f64 / 4000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_uuids_and_differ() {
        let ids = Ids::new();
        let (a, b) = (ids.next(), ids.next());
        let (a, b) = (a.as_ref(), b.as_ref());
        assert_ne!(a, b);
        assert!(crate::upload::valid_upload_id(a), "{a}");
        assert!(uuid_shaped(a), "{a}");
        assert_ne!(Ids::new().next().as_ref()[..18], a[..18]);
    }

    fn shard(requests: &[(u64, &str)]) -> Queued {
        let mut q = Queued::default();
        for (when, lines) in requests {
            q.lines.extend_from_slice(lines.as_bytes());
            q.marks.push((*when, q.lines.len()));
            q.events += lines.matches('\n').count() as u64;
        }
        q
    }

    /// The shards' requests come out in the order they were queued, a request's lines
    /// together; one shard's lines are taken as they are.
    #[test]
    fn shards_merge_in_the_order_requests_were_queued() {
        let taken = [
            shard(&[(10, "a\n"), (40, "d\nd2\n"), (41, "e\n")]),
            shard(&[]),
            shard(&[(20, "b\nb2\n"), (30, "c\n"), (41, "f\n"), (90, "g\n")]),
        ];
        let mut out = Vec::new();
        assert_eq!(ordered(&taken, &mut out), b"a\nb\nb2\nc\nd\nd2\ne\nf\ng\n");
        let one = [shard(&[]), shard(&[(5, "x\n"), (3, "y\n")])];
        let mut unused = Vec::new();
        let lines = ordered(&one, &mut unused);
        assert_eq!(lines, b"x\ny\n");
        assert_eq!(lines.as_ptr(), one[1].lines.as_ptr());
        assert!(ordered(&[shard(&[]), shard(&[])], &mut out).is_empty());
    }

    /// Threads take ids in blocks: across threads, blocks and two `Ids` used in turn on one
    /// thread, no id repeats.
    #[test]
    fn ids_from_many_threads_and_notifiers_never_repeat() {
        let ids = Arc::new(Ids::new());
        let other = Arc::new(Ids::new());
        let n = 3 * ID_BLOCK as usize + 7;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (ids, other) = (ids.clone(), other.clone());
                std::thread::spawn(move || {
                    (0..n)
                        .flat_map(|_| [ids.next(), other.next()])
                        .map(|id| id.as_ref().to_string())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(uuid_shaped(&id), "{id}");
                assert!(all.insert(id), "an id repeated");
            }
        }
        assert_eq!(all.len(), 4 * 2 * n);
    }

    /// 8-4-4-4-12 lowercase hex digits, version 4, variant 10.
    fn uuid_shaped(id: &str) -> bool {
        let parts: Vec<&str> = id.split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && parts
                .iter()
                .all(|p| p.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            && id.as_bytes()[14] == b'4'
            && matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b')
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let max = Duration::from_secs(60);
        assert!(backoff(1, max) <= Duration::from_millis(500));
        assert!(backoff(1, max) >= Duration::from_millis(375));
        assert!(backoff(4, max) >= Duration::from_secs(3));
        assert!(backoff(40, max) <= max);
        assert!(backoff(40, max) >= Duration::from_secs(45));
    }
}
