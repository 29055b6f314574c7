//! The storage test suite: one set of checks of the [`Storage`] primitives that every backend
//! runs, natively in `tests/storage.rs` (memory, filesystem) and on R2 in the Worker built with
//! the `storage-suite` feature (`POST /_storage-suite`, `scripts/test-worker-storage`).
//!
//! Each check returns its outcome instead of panicking (a panic aborts a Worker), works under
//! keys and contents of its own run (so it may run on a store that holds other things, and
//! more than once), and removes what it stored. Nothing else may write to the store while the
//! suite runs: some checks compare everything stored before and after.
//!
//! The checks record times with `now`, the clock the backend's times are compared to; a
//! [`MemoryStorage`] must then be made [`MemoryStorage::with_clock`] that clock.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;

use super::memory::MemoryStorage;
use super::{BlobInfo, Freshness, Storage, StorageError, StorageResult, UploadData, UploadWriter};
use crate::body::Body;
use crate::digest::{Algorithm, Digest};

/// What the suite looks at beyond the trait: everything the backend stores, to check that a
/// delete leaves nothing behind.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Inspect {
    /// The name of every object the backend holds (blob bytes, upload bytes, small objects),
    /// in the backend's own naming, in any order.
    async fn stored_keys(&self) -> StorageResult<Vec<String>>;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Inspect for MemoryStorage {
    async fn stored_keys(&self) -> StorageResult<Vec<String>> {
        Ok(MemoryStorage::stored_keys(self))
    }
}

/// R2's part size: uploads larger than this make the R2 writer re-chunk into parts.
const PART: usize = 10 * 1024 * 1024;
/// How far a recorded time may be from the suite's clock (R2's clock is not the Worker's).
const CLOCK_SLACK: u64 = 300;

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// Why it failed; on success, anything worth reporting (or empty).
    pub message: String,
}

/// The outcomes of a run of the suite.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub checks: Vec<Check>,
}

impl Report {
    /// At least one check ran and none failed.
    pub fn all_passed(&self) -> bool {
        self.passed > 0 && self.failed == 0
    }

    fn push(&mut self, name: &'static str, outcome: Result<String, Fail>) {
        let (ok, message) = match outcome {
            Ok(note) => (true, note),
            Err(Fail(why)) => (false, why),
        };
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        self.checks.push(Check { name, ok, message });
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            let status = if c.ok { "ok" } else { "FAILED" };
            write!(f, "{:<32} {status}", c.name)?;
            if !c.message.is_empty() {
                write!(f, ": {}", c.message)?;
            }
            writeln!(f)?;
        }
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Why a check failed.
#[derive(Debug)]
struct Fail(String);

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Self {
        Fail(format!("storage error: {e}"))
    }
}

type Outcome = Result<String, Fail>;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(Fail(format!($($why)+)));
        }
    };
}

/// Runs every check on `s`, in order, and reports each.
pub async fn run<S: Storage + Inspect + ?Sized>(s: &S, now: fn() -> u64) -> Report {
    let cx = Cx {
        s,
        now,
        run: crate::upload::new_upload_id(),
    };
    let mut report = Report::default();
    report.push("objects", objects(&cx).await);
    report.push("conditional_writes", conditional_writes(&cx).await);
    report.push("list_current", list_current(&cx).await);
    report.push("list_cached", list_cached(&cx).await);
    report.push("blob_put_read_ranges", blob_put_read_ranges(&cx).await);
    report.push("upload_small", upload_small(&cx).await);
    report.push("upload_large", upload_large(&cx, Declare::Never).await);
    report.push(
        "upload_large_declared",
        upload_large(&cx, Declare::Always).await,
    );
    report.push(
        "upload_large_some_declared",
        upload_large(&cx, Declare::Alternate).await,
    );
    report.push(
        "upload_read_then_commit",
        upload_read_then_commit(&cx).await,
    );
    report.push(
        "upload_discards_unsaved",
        upload_discards_unsaved(&cx).await,
    );
    report.push("upload_commit_existing", upload_commit_existing(&cx).await);
    report.push("upload_empty", upload_empty(&cx).await);
    report.push("upload_delete", upload_delete(&cx).await);
    report.push("list_upload_data", list_upload_data(&cx).await);
    report.push("list_blobs_paging", list_blobs_paging(&cx).await);
    report.push("blob_delete", blob_delete(&cx).await);
    report.push("blob_delete_chunked", blob_delete_chunked(&cx).await);
    report
}

/// Which requests of an upload declare their length to the writer.
#[derive(Clone, Copy)]
enum Declare {
    Never,
    Always,
    /// Every other one, from the first.
    Alternate,
}

impl Declare {
    fn picks(self, request: usize) -> bool {
        match self {
            Declare::Never => false,
            Declare::Always => true,
            Declare::Alternate => request.is_multiple_of(2),
        }
    }
}

/// What every check works with.
struct Cx<'a, S: ?Sized> {
    s: &'a S,
    now: fn() -> u64,
    /// Unique to this run: in keys, and the seed of contents.
    run: String,
}

impl<S: Storage + Inspect + ?Sized> Cx<'_, S> {
    fn key(&self, rest: &str) -> String {
        format!("suite-{}/{rest}", self.run)
    }

    /// `len` bytes unique to this run and `seed`, that do not repeat with a short period.
    fn content(&self, seed: u32, len: usize) -> Vec<u8> {
        let run = Digest::of(Algorithm::Sha256, self.run.as_bytes());
        let salt = u32::from_str_radix(&run.hex()[..8], 16).unwrap_or(1);
        let mut x = (seed ^ salt).wrapping_mul(2_654_435_761).wrapping_add(1) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Writes `data` to upload `id` as requests of the sizes in `requests` (the rest in one
    /// more), each in chunks of at most `chunk`, as the core would; returns the backend state.
    async fn upload(
        &self,
        id: &str,
        data: &[u8],
        requests: &[usize],
        chunk: usize,
    ) -> Result<Option<String>, Fail> {
        self.upload_declaring(id, data, requests, chunk, Declare::Never)
            .await
    }

    /// [`Cx::upload`], telling the writer the length of the requests `declare` picks, as the
    /// core does when a request has a `Content-Length`.
    async fn upload_declaring(
        &self,
        id: &str,
        data: &[u8],
        requests: &[usize],
        chunk: usize,
        declare: Declare,
    ) -> Result<Option<String>, Fail> {
        let mut backend: Option<String> = None;
        let mut offset = 0;
        let mut sizes = requests.to_vec();
        let sent: usize = sizes.iter().sum();
        ensure!(
            sent <= data.len(),
            "test bug: requests longer than the data"
        );
        if sent < data.len() {
            sizes.push(data.len() - sent);
        }
        for (i, size) in sizes.into_iter().enumerate() {
            let mut w = self
                .s
                .upload_writer(id, offset as u64, backend.as_deref())
                .await?;
            if declare.picks(i) {
                w.declared_length(size as u64);
            }
            write_chunks(&mut *w, &data[offset..offset + size], chunk).await?;
            backend = w.finish().await?;
            offset += size;
        }
        Ok(backend)
    }

    async fn read_blob(&self, d: &Digest, start: u64, len: u64) -> Result<Option<Vec<u8>>, Fail> {
        match self.s.blob_read(d, start, len).await? {
            Some(body) => Ok(Some(collect(body).await?)),
            None => Ok(None),
        }
    }

    /// Checks that blob `d` is `data`: its size, all of it, and the ranges in `ranges`.
    async fn expect_blob(&self, d: &Digest, data: &[u8], ranges: &[(u64, u64)]) -> Outcome {
        let size = self.s.blob_size(d).await?;
        ensure!(
            size == Some(data.len() as u64),
            "blob_size of {d}: {size:?}, expected {}",
            data.len()
        );
        let all = self.read_blob(d, 0, data.len() as u64).await?;
        ensure!(all.is_some(), "blob_read of {d}: None");
        ensure!(
            all.as_deref() == Some(data),
            "blob_read of {d}: {} bytes differ from the {} stored",
            all.map_or(0, |a| a.len()),
            data.len()
        );
        for &(start, len) in ranges {
            let got = self.read_blob(d, start, len).await?;
            let want = &data[start as usize..(start + len) as usize];
            ensure!(
                got.as_deref() == Some(want),
                "blob_read of {d} at {start}+{len}: {:?} bytes, not the stored ones",
                got.map(|g| g.len())
            );
        }
        Ok(String::new())
    }

    /// Checks that blob `d` is gone.
    async fn expect_no_blob(&self, d: &Digest) -> Outcome {
        let size = self.s.blob_size(d).await?;
        ensure!(size.is_none(), "blob_size of deleted {d}: {size:?}");
        let read = self.read_blob(d, 0, 1).await?;
        ensure!(read.is_none(), "blob_read of deleted {d} answered a body");
        Ok(String::new())
    }

    async fn upload_ids(&self) -> Result<Vec<UploadData>, Fail> {
        Ok(self.s.list_upload_data().await?)
    }

    /// Every blob, walked with pages of `limit`; fails if the walk does not end or repeats.
    async fn all_blobs(&self, limit: usize) -> Result<(Vec<BlobInfo>, usize), Fail> {
        let mut all: Vec<BlobInfo> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = self.s.list_blobs(cursor.as_deref(), limit).await?;
            pages += 1;
            ensure!(
                page.blobs.len() <= limit.max(1),
                "a page of limit {limit} held {}",
                page.blobs.len()
            );
            for b in page.blobs {
                if let Some(prev) = all.last() {
                    ensure!(
                        prev.digest < b.digest,
                        "list_blobs (limit {limit}) is not in ascending order or repeats: {} then {}",
                        prev.digest,
                        b.digest
                    );
                }
                all.push(b);
            }
            match page.next {
                None => return Ok((all, pages)),
                Some(next) => {
                    ensure!(
                        cursor.as_deref() != Some(next.as_str()),
                        "list_blobs (limit {limit}) gave the same cursor twice: {next}"
                    );
                    ensure!(pages < 1_000_000, "list_blobs does not end");
                    cursor = Some(next);
                }
            }
        }
    }

    /// Whether `t` is a plausible time for something stored between `from` and now.
    fn plausible(&self, t: u64, from: u64) -> bool {
        from.saturating_sub(CLOCK_SLACK) <= t && t <= (self.now)() + CLOCK_SLACK
    }

    async fn keys(&self) -> Result<BTreeSet<String>, Fail> {
        Ok(self.s.stored_keys().await?.into_iter().collect())
    }
}

async fn write_chunks(w: &mut dyn UploadWriter, data: &[u8], chunk: usize) -> Result<(), Fail> {
    for c in data.chunks(chunk.max(1)) {
        w.write(Bytes::copy_from_slice(c)).await?;
    }
    Ok(())
}

async fn collect(body: Body) -> Result<Vec<u8>, Fail> {
    let mut stream = body.into_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| Fail(format!("body stream: {e}")))?);
    }
    Ok(out)
}

fn sha256(data: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, data)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn diff(before: &BTreeSet<String>, after: &BTreeSet<String>) -> String {
    let gone: Vec<_> = before.difference(after).collect();
    let new: Vec<_> = after.difference(before).collect();
    format!("new: {new:?}; gone: {gone:?}")
}

mod blobs;
mod objects;
mod uploads;

use blobs::*;
use objects::*;
use uploads::*;
