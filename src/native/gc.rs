//! The collector natively: `edge-registry gc` runs it once (also beside a running server on
//! the same root), and `serve --gc-interval` runs it on a timer. Both take the collector's lock
//! file (`<root>/gc.lock`), so one collection runs at a time across processes; the storage's
//! compare-and-set is atomic across processes too (see [`super::fs`]). On the scale-out store
//! (`--metadata`, `--blobs`) the lock is PostgreSQL's, across instances (see
//! [`super::scale::collector`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::gc::{self, Options, Retention};
use crate::settings::{parse_duration, Settings};

use super::fs::FsStorage;
use super::scale::{ScaleOptions, ScaleStorage};
use super::SystemClock;

/// The store a collector runs on, and so which lock it takes.
#[derive(Clone)]
pub enum Collector {
    /// The filesystem: the lock file under the root.
    Fs(FsStorage),
    /// The scale-out store: PostgreSQL's advisory lock, across instances.
    Scale(Box<ScaleStorage>),
}

/// `edge-registry gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Folder the registry stores into (a server may be running on it).
    #[arg(long, env = "EDGE_REGISTRY_ROOT", default_value = "./registry-data")]
    pub root: PathBuf,
    /// Show what would be removed, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Let untagged manifests go too, unless something live references them.
    #[arg(long)]
    pub delete_untagged: bool,
    /// Nothing stored or pushed more recently than this is collected (a duration).
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub grace: u64,
    /// Retention rules (see the README), applied before the mark.
    #[arg(long, value_name = "FILE")]
    pub retention: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Collect on the scale-out store: its PostgreSQL (as `serve --metadata`; needs --blobs).
    #[arg(
        long,
        env = "EDGE_REGISTRY_METADATA",
        requires = "blobs",
        hide_env_values = true
    )]
    pub metadata: Option<String>,
    /// The scale-out store's S3 bucket (as `serve --blobs`).
    #[arg(long, env = "EDGE_REGISTRY_BLOBS", requires = "metadata")]
    pub blobs: Option<String>,
    /// An AWS shared-credentials file for --blobs (as `serve --blobs-credentials`).
    #[arg(long, env = "EDGE_REGISTRY_BLOBS_CREDENTIALS")]
    pub blobs_credentials: Option<PathBuf>,
}

/// The collector flags of `serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeGc {
    /// Run the garbage collector this often (a duration; off unless given).
    #[arg(long, env = "EDGE_REGISTRY_GC_INTERVAL", value_parser = duration)]
    pub gc_interval: Option<u64>,
    /// Retention rules for the collector (see the README).
    #[arg(long, env = "EDGE_REGISTRY_RETENTION", value_name = "FILE")]
    pub retention: Option<PathBuf>,
}

fn duration(s: &str) -> Result<u64, String> {
    parse_duration(s)
}

fn invalid(msg: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_string())
}

/// Reads and checks a retention file; none gives no rules.
pub fn load_retention(path: Option<&Path>) -> std::io::Result<Retention> {
    let Some(path) = path else {
        return Ok(Retention::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("--retention {}: {e}", path.display())))?;
    Retention::parse(&text).map_err(|e| invalid(format!("--retention {}: {e}", path.display())))
}

/// Runs one collection under the collector's lock; `None` when `wait` is false and another
/// collection holds the lock.
pub async fn collect_once(
    collector: &Collector,
    opts: &Options,
    wait: bool,
) -> Result<Option<gc::Outcome>, String> {
    match collector {
        Collector::Fs(storage) => {
            let lock = if wait {
                let s = storage.clone();
                tokio::task::spawn_blocking(move || s.lock_collector())
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
            } else {
                match storage.try_lock_collector().map_err(|e| e.to_string())? {
                    Some(l) => l,
                    None => return Ok(None),
                }
            };
            let out = gc::collect(storage, opts, &SystemClock)
                .await
                .map_err(|e| e.cause())?;
            drop(lock);
            Ok(Some(out))
        }
        Collector::Scale(storage) => {
            let lock = if wait {
                storage.lock_collector().await.map_err(|e| e.to_string())?
            } else {
                match storage
                    .try_lock_collector()
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(l) => l,
                    None => return Ok(None),
                }
            };
            let out = gc::collect(lock.storage(), opts, &SystemClock).await;
            lock.release().await;
            out.map(Some).map_err(|e| e.cause())
        }
    }
}

/// `edge-registry gc`: one collection; prints the report.
pub fn run(args: GcArgs) -> std::io::Result<()> {
    let retention = load_retention(args.retention.as_deref())?;
    let opts = Options {
        grace: args.grace,
        delete_untagged: args.delete_untagged,
        dry_run: args.dry_run,
        retention,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let collector = match (&args.metadata, &args.blobs) {
        (Some(metadata), Some(blobs)) => {
            let options = ScaleOptions {
                metadata: metadata.clone(),
                blobs: blobs.clone(),
                credentials_file: args.blobs_credentials.clone(),
                pool_size: 2,
            };
            let store = rt
                .block_on(ScaleStorage::open(&options))
                .map_err(std::io::Error::other)?;
            Collector::Scale(Box::new(store))
        }
        _ => {
            if !args.root.join("meta").is_dir() {
                return Err(invalid(format!(
                    "--root {}: no registry there",
                    args.root.display()
                )));
            }
            Collector::Fs(FsStorage::open_shared(&args.root)?)
        }
    };
    let out = rt
        .block_on(collect_once(&collector, &opts, true))
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::other("the collector's lock was not taken"))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&out.report).map_err(std::io::Error::other)?
        );
    } else {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for line in &out.report.removed {
            println!("{verb} {line}");
        }
        println!("{}", out.report.summary());
    }
    Ok(())
}

/// The options `serve` collects with, from its settings and flags.
pub fn serve_options(settings: &Settings, flags: &ServeGc) -> std::io::Result<Options> {
    Ok(Options {
        grace: settings.gc_grace,
        delete_untagged: settings.gc_delete_untagged,
        dry_run: false,
        retention: load_retention(flags.retention.as_deref())?,
    })
}

/// Collects every `interval` seconds in the background (a run that finds another collection
/// under way is skipped).
/// What the server does with each finished collection (notifications, metrics).
pub type OnRun = Box<dyn Fn(&crate::gc::Report, &[crate::event::Event]) + Send + Sync>;

pub fn spawn_periodic(storage: Collector, interval: u64, opts: Options, on_run: OnRun) {
    let opts = Arc::new(opts);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
            match collect_once(&storage, &opts, false).await {
                Ok(Some(out)) => {
                    for e in &out.events {
                        tracing::debug!(event = e.name(), ?e, "gc");
                    }
                    tracing::info!(summary = %out.report.summary(), "garbage collection");
                    on_run(&out.report, &out.events);
                }
                Ok(None) => tracing::info!("garbage collection skipped: another is running"),
                Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
            }
        }
    });
}
