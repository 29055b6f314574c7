//! The mirrors natively: the `serve` flags, the upstream client (reqwest with rustls and the
//! webpki roots, plus a CA file for private upstreams), the shared blob fetches, and what the
//! server logs and counts of each mirrored request. The mirror's logic is in the core
//! ([`crate::mirror`]).
//!
//! **Shared fetches:** the first request that misses a blob starts its fetch on a task of its
//! own, which writes the bytes (verified and stored by the core as they pass) into a spool
//! file as they arrive; that request and every other that wants the same blob meanwhile read
//! the spool from its first byte, each at its own pace, as far as it has been written. The
//! upstream is fetched once, the blob stored once, and no client waits for the end of the
//! fetch nor holds the others back. Memory stays flat: the bytes are in the file, not in RAM.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

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
        let body = Body::Stream(Box::pin(
            resp.bytes_stream().map_err(|e| Box::new(e) as BoxError),
        ));
        out.body(body).map_err(|e| e.to_string())
    }
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

/// How much the fetch gathers before writing to the spool while more is at hand.
const SPOOL_BATCH: usize = 1024 * 1024;

/// Drives a fetch into its spool file.
async fn run(flight: Arc<Flight>, start: StartFill) {
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
    let mut body = fill.body.fuse();
    let end = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&flight.path)
            .await
            .map_err(|e| e.to_string())?;
        let mut batch = BytesMut::new();
        let mut ended = false;
        loop {
            // Gather what is at hand (up to a batch), then write it.
            let next = if batch.is_empty() {
                Some(body.next().await)
            } else if batch.len() < SPOOL_BATCH {
                body.next().now_or_never()
            } else {
                None
            };
            match next {
                Some(Some(Ok(chunk))) => {
                    batch.extend_from_slice(&chunk);
                    continue;
                }
                Some(Some(Err(e))) => return Err(e.to_string()),
                Some(None) => ended = true,
                None => {}
            }
            if !batch.is_empty() {
                let n = batch.len() as u64;
                file.write_all(&batch).await.map_err(|e| e.to_string())?;
                file.flush().await.map_err(|e| e.to_string())?;
                batch.clear();
                flight.progress.send_modify(|p| p.written += n);
            }
            if ended {
                return Ok(());
            }
        }
    }
    .await;
    flight.progress.send_modify(|p| p.end = Some(end));
}

/// One request's stream of a shared fetch, from its first byte.
fn reader(flight: Arc<Flight>) -> ByteStream {
    struct R {
        flight: Arc<Flight>,
        rx: watch::Receiver<Progress>,
        file: Option<tokio::fs::File>,
        offset: u64,
    }
    let rx = flight.progress.subscribe();
    let r = R {
        flight,
        rx,
        file: None,
        offset: 0,
    };
    Box::pin(futures_util::stream::unfold(Some(r), |r| async move {
        let mut r = r?;
        let err = |e: String| -> BoxError { Box::new(std::io::Error::other(e)) };
        loop {
            let (written, end) = {
                let p = r.rx.borrow_and_update();
                (p.written, p.end.clone())
            };
            if r.offset < written {
                if r.file.is_none() {
                    match tokio::fs::File::open(&r.flight.path).await {
                        Ok(mut f) => {
                            if let Err(e) = f.seek(SeekFrom::Start(r.offset)).await {
                                return Some((Err(err(e.to_string())), None));
                            }
                            r.file = Some(f);
                        }
                        Err(e) => return Some((Err(err(e.to_string())), None)),
                    }
                }
                let n = (written - r.offset).min(SPOOL_BATCH as u64) as usize;
                let mut buf = vec![0u8; n];
                let file = r.file.as_mut()?;
                if let Err(e) = file.read_exact(&mut buf).await {
                    return Some((Err(err(e.to_string())), None));
                }
                r.offset += n as u64;
                return Some((Ok(Bytes::from(buf)), Some(r)));
            }
            match end {
                Some(Ok(())) => return None,
                Some(Err(e)) => return Some((Err(err(e)), None)),
                None => {
                    if r.rx.changed().await.is_err() {
                        return Some((Err(err("the shared fetch ended".into())), None));
                    }
                }
            }
        }
    }))
}

#[async_trait::async_trait]
impl Share for SpoolShare {
    async fn share(&self, key: String, start: StartFill) -> Result<Fill, Error> {
        let (flight, leader) = {
            let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(f) => (f.clone(), None),
                None => {
                    let path = tempfile::NamedTempFile::new_in(&self.dir)
                        .map_err(|e| Error::internal(format!("spool file: {e}")))?
                        .into_temp_path();
                    let (progress, _) = watch::channel(Progress::default());
                    let f = Arc::new(Flight { path, progress });
                    map.insert(key.clone(), f.clone());
                    (f, Some(start))
                }
            }
        };
        if let Some(start) = leader {
            let (f, flights, key) = (flight.clone(), self.flights.clone(), key.clone());
            tokio::spawn(async move {
                run(f.clone(), start).await;
                // Later requests find the blob stored (or start again after a failure).
                let mut map = flights.lock().unwrap_or_else(|p| p.into_inner());
                if map.get(&key).is_some_and(|g| Arc::ptr_eq(g, &f)) {
                    map.remove(&key);
                }
            });
        }
        let mut rx = flight.progress.subscribe();
        let head = rx
            .wait_for(|p| p.head.is_some())
            .await
            .map_err(|_| Error::internal("the shared fetch ended"))?
            .head
            .clone();
        match head {
            Some(Ok(size)) => Ok(Fill {
                size,
                body: reader(flight),
            }),
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
        tracing::debug!(mirror = %report.mirror, remaining = rl.remaining, limit = rl.limit, "upstream rate limit");
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
