//! The mirrors natively: the `serve` flags, the upstream client (reqwest with rustls and the
//! webpki roots, plus a CA file for private upstreams), the shared blob fetches, and what the
//! server logs and counts of each mirrored request. The mirror's logic is in the core
//! ([`crate::mirror`]).
//!
//! **Shared fetches:** the first request that misses a blob starts its fetch on a task of its
//! own. That task hands each piece (verified and stored by the core as it passes) straight to
//! the first request, and appends it to a spool file; every other request that wants the same
//! blob meanwhile reads the spool file from its first byte, at its own pace, as far as it has
//! been written. While the first request is alone it paces the fetch, as a direct pull would;
//! once others wait, a first request that falls behind (4 MiB untaken) reads the rest from the
//! spool file too, so nobody holds the others back. The upstream is fetched once, the blob
//! stored once, and no client waits for the end of the fetch. Memory stays flat: at most a few
//! MiB per fetch are in RAM (what the first request has not taken, the upstream's body read
//! ahead, the spool's pending write); the rest is in the file.
//!
//! **Throughput:** an upstream body of more than 1 MiB is read ahead on a task of its own, so
//! that the socket is read while the core hashes and stores the bytes before; the spool file
//! is written on the blocking pool, one write in flight, as the storage's upload writer does.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, watch, Notify};

use super::metrics::Metrics;
use crate::body::{Body, BoxError, ByteStream};
use crate::error::Error;
use crate::mirror::{Config, Fetch, Fill, Mirrors, Raw, Report, Served, Share, StartFill};

/// The `serve` flags of the mirrors.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MirrorArgs {
    /// Serve repositories under PREFIX from the registry at URL, caching what is pulled
    /// (`docker.io=https://registry-1.docker.io`); repeat for more.
    #[arg(long = "mirror", value_name = "PREFIX=URL")]
    pub mirror: Vec<String>,
    /// The mirror (a PREFIX) that serves names without a prefix, as dockerd's
    /// registry-mirrors ask (`/v2/library/nginx/...`).
    #[arg(long, env = "EDGE_REGISTRY_DEFAULT_MIRROR", value_name = "PREFIX")]
    pub default_mirror: Option<String>,
    /// A mirror (a PREFIX) whose one-part names get `library/`, as Docker Hub's do (on by
    /// itself for Docker Hub); repeatable.
    #[arg(long = "mirror-library", value_name = "PREFIX")]
    pub mirror_library: Vec<String>,
    /// Upstream credentials: lines of `PREFIX USER PASSWORD`; a mirror without a line pulls
    /// anonymously.
    #[arg(long, env = "EDGE_REGISTRY_MIRROR_CREDENTIALS", value_name = "FILE")]
    pub mirror_credentials: Option<PathBuf>,
    /// How long a cached tag is served without asking upstream (a duration).
    #[arg(long, env = "EDGE_REGISTRY_MIRROR_TAG_TTL", value_name = "DURATION")]
    pub mirror_tag_ttl: Option<String>,
    /// Extra CA certificates (PEM) trusted for upstreams, beside the webpki roots.
    #[arg(long, env = "EDGE_REGISTRY_MIRROR_CA_FILE", value_name = "FILE")]
    pub mirror_ca_file: Option<PathBuf>,
}

impl MirrorArgs {
    /// The mirrors, checked; `None` without any `--mirror`. `root` is the storage folder
    /// (the spool of shared fetches goes under it).
    pub fn build(&self, root: &Path) -> Result<Option<Arc<Mirrors>>, String> {
        let credentials = match &self.mirror_credentials {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("--mirror-credentials {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let config = Config::parse(&Raw {
            mirrors: self.mirror.iter().map(String::as_str).collect(),
            default: self.default_mirror.as_deref(),
            library: self.mirror_library.iter().map(String::as_str).collect(),
            credentials: credentials.as_deref(),
            tag_ttl: self.mirror_tag_ttl.as_deref(),
        })?;
        if config.is_empty() {
            if self.default_mirror.is_some() || credentials.is_some() {
                return Err("--default-mirror and --mirror-credentials need a --mirror".into());
            }
            return Ok(None);
        }
        let fetch = ReqwestFetch::new(self.mirror_ca_file.as_deref())?;
        let share = SpoolShare::new(&root.join("mirror-spool"))
            .map_err(|e| format!("{}: {e}", root.join("mirror-spool").display()))?;
        for u in &config.upstreams {
            tracing::info!(prefix = %u.prefix, upstream = %u.display_url(), credentials = u.credentials.is_some(), "mirror");
        }
        Ok(Some(Arc::new(
            Mirrors::new(config, Arc::new(fetch)).with_share(Arc::new(share)),
        )))
    }
}

/// Upstream requests with reqwest (rustls): redirects are left to the core.
pub struct ReqwestFetch {
    client: reqwest::Client,
}

impl ReqwestFetch {
    pub fn new(ca_file: Option<&Path>) -> Result<ReqwestFetch, String> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!(
                "edge-registry/",
                env!("CARGO_PKG_VERSION"),
                " (mirror)"
            ))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60));
        if let Some(p) = ca_file {
            let pem =
                std::fs::read(p).map_err(|e| format!("--mirror-ca-file {}: {e}", p.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("--mirror-ca-file {}: {e}", p.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--mirror-ca-file {}: no certificate in it",
                    p.display()
                ));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(|e| e.to_string())?;
        Ok(ReqwestFetch { client })
    }
}

#[async_trait::async_trait]
impl Fetch for ReqwestFetch {
    async fn fetch(&self, req: http::Request<()>) -> Result<http::Response<Body>, String> {
        let (parts, ()) = req.into_parts();
        let resp = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .send()
            .await
            .map_err(|e| crate::client::describe_reqwest(&e))?;
        let mut out = http::Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = resp.headers().clone();
        }
        let stream: ByteStream = Box::pin(resp.bytes_stream().map_err(|e| Box::new(e) as BoxError));
        // A large body is read ahead on a task of its own, so that the socket is read while
        // the core hashes and stores what came before (hyper reads no further than asked).
        let large = out
            .headers_ref()
            .and_then(crate::body::content_length)
            .is_none_or(|l| l > READ_AHEAD_OVER);
        let body = Body::Stream(if large { read_ahead(stream) } else { stream });
        out.body(body).map_err(|e| e.to_string())
    }
}

/// Bodies longer than this (or of no declared length) are read ahead.
const READ_AHEAD_OVER: u64 = 1024 * 1024;
/// How many chunks are read ahead (hyper's are at most about 400 KiB).
const READ_AHEAD_CHUNKS: usize = 8;

/// `stream`, read on a task of its own up to [`READ_AHEAD_CHUNKS`] ahead of its reader. The
/// task ends when the stream does or the reader is gone.
fn read_ahead(mut stream: ByteStream) -> ByteStream {
    let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                () = tx.closed() => return,
            };
            let Some(item) = item else { return };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(tokio_stream_from(rx))
}

fn tokio_stream_from(
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
) -> impl futures_util::Stream<Item = Result<Bytes, BoxError>> {
    futures_util::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) })
}

/// How far a shared fetch has got.
#[derive(Clone, Default)]
struct Progress {
    /// The fetch's start: the blob's size, or why it failed.
    head: Option<Result<Option<u64>, Error>>,
    /// Bytes in the spool file.
    written: u64,
    /// The end: stored, or why not.
    end: Option<Result<(), String>>,
}

struct Flight {
    path: tempfile::TempPath,
    progress: watch::Sender<Progress>,
    /// Requests that joined the fetch (besides the one that started it).
    joiners: AtomicUsize,
    /// Wakes the fetch waiting for its first request to take what it was given, or for
    /// others to join.
    wake: Notify,
}

/// Blob fetches shared through spool files in a folder.
pub struct SpoolShare {
    dir: PathBuf,
    flights: Arc<Mutex<HashMap<String, Arc<Flight>>>>,
}

impl SpoolShare {
    /// Spools into `dir`, emptied first (what is there was left by a previous process).
    pub fn new(dir: &Path) -> std::io::Result<SpoolShare> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        Ok(SpoolShare {
            dir: dir.to_path_buf(),
            flights: Arc::default(),
        })
    }

    /// Fetches in flight.
    pub fn in_flight(&self) -> usize {
        self.flights.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The most a spool read takes at once.
const SPOOL_READ: usize = 1024 * 1024;
/// An idle spool file is written to once this much is pending.
const SPOOL_EAGER: usize = 256 * 1024;
/// The most that waits for the spool file while a write is in flight; past it, the fetch
/// waits for the disk (memory stays flat).
const SPOOL_PENDING: usize = 4 * 1024 * 1024;
/// The most the first request may leave untaken of what the fetch handed it directly; past it,
/// it reads the rest from the spool file, as the others do.
const DIRECT_QUEUED: usize = 4 * 1024 * 1024;

fn io_error(e: impl ToString) -> BoxError {
    Box::new(std::io::Error::other(e.to_string()))
}

/// Appends a fetch's bytes to its spool file on the blocking pool, one write in flight at a
/// time; each write, once done, tells the readers how far the file goes.
struct SpoolWriter {
    flight: Arc<Flight>,
    file: Option<std::fs::File>,
    in_flight: Option<tokio::task::JoinHandle<std::io::Result<std::fs::File>>>,
    pending: Vec<Bytes>,
    pending_len: usize,
}

impl SpoolWriter {
    fn open(flight: Arc<Flight>) -> std::io::Result<SpoolWriter> {
        let file = std::fs::OpenOptions::new().write(true).open(&flight.path)?;
        Ok(SpoolWriter {
            flight,
            file: Some(file),
            in_flight: None,
            pending: Vec::new(),
            pending_len: 0,
        })
    }

    /// Waits for the write in flight, if any.
    async fn settle(&mut self) -> Result<(), String> {
        if let Some(h) = self.in_flight.take() {
            self.file = Some(
                h.await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(())
    }

    /// Writes what is pending (after the write in flight).
    async fn write_pending(&mut self) -> Result<(), String> {
        self.settle().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut file = self.file.take().ok_or("the spool file failed")?;
        let batch = std::mem::take(&mut self.pending);
        let n = std::mem::take(&mut self.pending_len) as u64;
        let flight = self.flight.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                file.write_all(chunk)?;
            }
            flight.progress.send_modify(|p| p.written += n);
            Ok(file)
        }));
        Ok(())
    }

    async fn push(&mut self, chunk: Bytes) -> Result<(), String> {
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        let idle = self.in_flight.as_ref().is_none_or(|h| h.is_finished());
        if (idle && self.pending_len >= SPOOL_EAGER) || self.pending_len >= SPOOL_PENDING {
            self.write_pending().await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), String> {
        self.write_pending().await?;
        self.settle().await
    }
}

/// Drives a fetch: every byte into its spool file, and while it keeps up, straight to the
/// request that started it (`direct`).
async fn run(flight: Arc<Flight>, start: StartFill, direct: Direct) {
    let fill = match start().await {
        Ok(fill) => fill,
        Err(e) => {
            flight.progress.send_modify(|p| p.head = Some(Err(e)));
            return;
        }
    };
    flight
        .progress
        .send_modify(|p| p.head = Some(Ok(fill.size)));
    let mut body = fill.body;
    let mut direct = Some(direct);
    let end = async {
        let mut spool = SpoolWriter::open(flight.clone()).map_err(|e| e.to_string())?;
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    if let Some(d) = &direct {
                        if !d.give(&flight, chunk.clone()).await {
                            // Gone, or behind others: it reads the spool file from here on.
                            direct = None;
                        }
                    }
                    spool.push(chunk).await?;
                }
                Some(Err(e)) => {
                    direct = None;
                    return Err(e.to_string());
                }
                None => return spool.finish().await,
            }
        }
    }
    .await;
    drop(direct);
    flight.progress.send_modify(|p| p.end = Some(end));
}

/// The fetch's side of the first request's direct stream.
struct Direct {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
}

impl Direct {
    /// Hands `chunk` over; `false` once the request is gone, or when it has fallen behind
    /// while others wait on the fetch (alone, it paces the fetch, as a direct pull would).
    async fn give(&self, flight: &Flight, chunk: Bytes) -> bool {
        let n = chunk.len();
        loop {
            if self.tx.is_closed() {
                return false;
            }
            let queued = self.queued.load(Ordering::Acquire);
            if queued == 0 || queued + n <= DIRECT_QUEUED {
                break;
            }
            if flight.joiners.load(Ordering::Acquire) > 0 {
                return false;
            }
            tokio::select! {
                () = flight.wake.notified() => {}
                () = self.tx.closed() => return false,
            }
        }
        self.queued.fetch_add(n, Ordering::AcqRel);
        self.tx.send(chunk).is_ok()
    }
}

/// The first request's stream: what the fetch hands it directly, then (once it has fallen
/// behind, or at the end) the spool file from where it got to.
fn leader(
    flight: Arc<Flight>,
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
) -> ByteStream {
    enum S {
        Direct {
            flight: Arc<Flight>,
            rx: mpsc::UnboundedReceiver<Bytes>,
            queued: Arc<AtomicUsize>,
            offset: u64,
        },
        Spool(ByteStream),
    }
    let s = S::Direct {
        flight,
        rx,
        queued,
        offset: 0,
    };
    Box::pin(futures_util::stream::unfold(s, |mut s| async move {
        loop {
            match s {
                S::Direct {
                    flight,
                    mut rx,
                    queued,
                    offset,
                } => match rx.recv().await {
                    Some(chunk) => {
                        queued.fetch_sub(chunk.len(), Ordering::AcqRel);
                        flight.wake.notify_one();
                        let offset = offset + chunk.len() as u64;
                        let s = S::Direct {
                            flight,
                            rx,
                            queued,
                            offset,
                        };
                        return Some((Ok(chunk), s));
                    }
                    None => s = S::Spool(reader(flight, offset)),
                },
                S::Spool(mut r) => {
                    let item = r.next().await?;
                    return Some((item, S::Spool(r)));
                }
            }
        }
    }))
}

/// A request's stream of a shared fetch's spool file, from `offset`, as far as it has been
/// written, to the fetch's end.
fn reader(flight: Arc<Flight>, offset: u64) -> ByteStream {
    struct R {
        flight: Arc<Flight>,
        rx: watch::Receiver<Progress>,
        file: Option<std::fs::File>,
        offset: u64,
    }
    let rx = flight.progress.subscribe();
    let r = R {
        flight,
        rx,
        file: None,
        offset,
    };
    Box::pin(futures_util::stream::unfold(Some(r), |r| async move {
        let mut r = r?;
        loop {
            let (written, end) = {
                let p = r.rx.borrow_and_update();
                (p.written, p.end.clone())
            };
            if r.offset < written {
                let n = (written - r.offset).min(SPOOL_READ as u64) as usize;
                let (file, path, offset) = (r.file.take(), r.flight.path.to_path_buf(), r.offset);
                let read = tokio::task::spawn_blocking(move || {
                    let mut file = match file {
                        Some(f) => f,
                        None => {
                            let mut f = std::fs::File::open(path)?;
                            f.seek(SeekFrom::Start(offset))?;
                            f
                        }
                    };
                    let mut buf = Vec::with_capacity(n);
                    (&mut file).take(n as u64).read_to_end(&mut buf)?;
                    if buf.len() != n {
                        return Err(std::io::Error::other("the spool file is short"));
                    }
                    Ok((file, Bytes::from(buf)))
                })
                .await;
                return match read {
                    Ok(Ok((file, data))) => {
                        r.file = Some(file);
                        r.offset += data.len() as u64;
                        Some((Ok(data), Some(r)))
                    }
                    Ok(Err(e)) => Some((Err(io_error(e)), None)),
                    Err(e) => Some((Err(io_error(e)), None)),
                };
            }
            match end {
                Some(Ok(())) => return None,
                Some(Err(e)) => return Some((Err(io_error(e)), None)),
                None => {
                    if r.rx.changed().await.is_err() {
                        return Some((Err(io_error("the shared fetch ended")), None));
                    }
                }
            }
        }
    }))
}

#[async_trait::async_trait]
impl Share for SpoolShare {
    async fn share(&self, key: String, start: StartFill) -> Result<Fill, Error> {
        let (flight, direct) = {
            let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(f) => {
                    f.joiners.fetch_add(1, Ordering::AcqRel);
                    f.wake.notify_one();
                    (f.clone(), None)
                }
                None => {
                    let path = tempfile::NamedTempFile::new_in(&self.dir)
                        .map_err(|e| Error::internal(format!("spool file: {e}")))?
                        .into_temp_path();
                    let (progress, _) = watch::channel(Progress::default());
                    let f = Arc::new(Flight {
                        path,
                        progress,
                        joiners: AtomicUsize::new(0),
                        wake: Notify::new(),
                    });
                    map.insert(key.clone(), f.clone());
                    let (tx, rx) = mpsc::unbounded_channel();
                    let queued = Arc::new(AtomicUsize::new(0));
                    let d = Direct {
                        tx,
                        queued: queued.clone(),
                    };
                    (f, Some((start, d, rx, queued)))
                }
            }
        };
        let mut rx = flight.progress.subscribe();
        let body = match direct {
            Some((start, d, rx, queued)) => {
                let (f, flights, key) = (flight.clone(), self.flights.clone(), key.clone());
                tokio::spawn(async move {
                    run(f.clone(), start, d).await;
                    // Later requests find the blob stored (or start again after a failure).
                    let mut map = flights.lock().unwrap_or_else(|p| p.into_inner());
                    if map.get(&key).is_some_and(|g| Arc::ptr_eq(g, &f)) {
                        map.remove(&key);
                    }
                });
                leader(flight.clone(), rx, queued)
            }
            None => reader(flight.clone(), 0),
        };
        let head = rx
            .wait_for(|p| p.head.is_some())
            .await
            .map_err(|_| Error::internal("the shared fetch ended"))?
            .head
            .clone();
        match head {
            Some(Ok(size)) => Ok(Fill { size, body }),
            Some(Err(e)) => Err(e),
            None => Err(Error::internal("the shared fetch ended")),
        }
    }
}

/// Logs what a mirrored request did, and counts it.
pub fn observe(report: &Report, metrics: Option<&Metrics>) {
    for note in &report.notes {
        tracing::warn!(mirror = %report.mirror, "{note}");
    }
    if let Some(rl) = report.rate_limit {
        // Logged when the request went upstream; metrics keep the last value in any case.
        if matches!(report.served, Some(Served::Hit) | None) {
            tracing::debug!(mirror = %report.mirror, remaining = rl.remaining, limit = rl.limit, "upstream rate limit");
        } else {
            tracing::info!(mirror = %report.mirror, remaining = rl.remaining, limit = rl.limit, "upstream rate limit");
        }
        if let Some(m) = metrics {
            m.mirror_rate_limit(&report.mirror, rl.remaining, rl.limit);
        }
    }
    if let (Some(m), Some(served)) = (metrics, report.served) {
        match served {
            Served::Hit => m.mirror_hit(),
            Served::Miss => m.mirror_miss(),
            Served::Stale => {
                m.mirror_hit();
                m.mirror_upstream_error();
            }
            Served::Failed => m.mirror_upstream_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: usize, size: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i as u8; size])).collect()
    }

    /// A fetch of `chunks` that then ends cleanly or, with `fail`, with an error (as a blob
    /// that does not verify does).
    fn start(chunks: Vec<Bytes>, fail: bool) -> StartFill {
        Box::new(move || {
            Box::pin(async move {
                let size = chunks.iter().map(|c| c.len() as u64).sum();
                let mut items: Vec<Result<Bytes, BoxError>> = chunks.into_iter().map(Ok).collect();
                if fail {
                    items.push(Err(io_error("the blob does not match")));
                }
                Ok(Fill {
                    size: Some(size),
                    body: Box::pin(futures_util::stream::iter(items)),
                })
            })
        })
    }

    async fn collect(mut s: ByteStream) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_first_request_that_reads_nothing_holds_no_joiner_back() {
        let dir = tempfile::tempdir().unwrap();
        let share = SpoolShare::new(dir.path()).unwrap();
        // 16 MiB: the first request, which reads nothing yet, pauses the fetch (it is alone)
        // once 4 MiB wait for it.
        let data = chunks(64, 256 * 1024);
        let want = data.concat();
        let first = share.share("k".into(), start(data, false)).await.unwrap();
        assert_eq!(first.size, Some(want.len() as u64));
        // A joiner resumes it, and gets everything without the first request reading a byte.
        let joiner = share
            .share("k".into(), start(Vec::new(), true))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(60), collect(joiner.body)).await;
        assert!(got.expect("the joiner was held back").unwrap() == want);
        // The first request then reads it all too, the rest from the spool file.
        assert!(collect(first.body).await.unwrap() == want);
        let started = std::time::Instant::now();
        while share.in_flight() > 0 || std::fs::read_dir(dir.path()).unwrap().count() > 0 {
            assert!(started.elapsed() < Duration::from_secs(10), "spool left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fetch_alone_streams_to_its_request_and_a_failure_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let share = SpoolShare::new(dir.path()).unwrap();
        let data = chunks(40, 100_000);
        let want = data.concat();
        let fill = share.share("a".into(), start(data, false)).await.unwrap();
        assert!(collect(fill.body).await.unwrap() == want);
        // A fetch that fails at its end (after every byte): an error, never a clean end.
        let fill = share
            .share("b".into(), start(chunks(40, 100_000), true))
            .await
            .unwrap();
        let got = collect(fill.body).await;
        assert!(
            got.as_ref().is_err_and(|e| e.contains("does not match")),
            "{:?}",
            got.map(|v| v.len())
        );
    }
}
