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
    report.push("upload_large", upload_large(&cx).await);
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
        for size in sizes {
            let mut w = self
                .s
                .upload_writer(id, offset as u64, backend.as_deref())
                .await?;
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

// ---- small objects ----------------------------------------------------------------------------

async fn objects<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let (key, nested) = (cx.key("obj/a"), cx.key("obj/a-dir/b"));
    ensure!(
        s.get(&key).await?.is_none(),
        "get of an absent key answered"
    );
    s.put(&key, Bytes::from_static(b"one")).await?;
    let got = s.get(&key).await?;
    ensure!(
        got.as_deref() == Some(b"one".as_ref()),
        "get after put: {got:?}"
    );
    s.put(&key, Bytes::from_static(b"two")).await?;
    let got = s.get(&key).await?;
    ensure!(
        got.as_deref() == Some(b"two".as_ref()),
        "get after overwrite: {got:?}"
    );
    s.put(&key, Bytes::new()).await?;
    let got = s.get(&key).await?;
    ensure!(
        got.as_deref() == Some(b"".as_ref()),
        "an empty object: {got:?}"
    );
    s.put(&nested, Bytes::from_static(b"deep")).await?;
    let got = s.get(&nested).await?;
    ensure!(
        got.as_deref() == Some(b"deep".as_ref()),
        "a nested key: {got:?}"
    );
    s.delete(&key).await?;
    ensure!(s.get(&key).await?.is_none(), "get after delete answered");
    s.delete(&key).await?;
    s.delete(&nested).await?;
    ensure!(s.get(&nested).await?.is_none(), "nested get after delete");
    Ok(String::new())
}

async fn conditional_writes<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let key = cx.key("cond");
    ensure!(
        s.get_versioned(&key).await?.is_none(),
        "absent key has a version"
    );
    ensure!(
        !s.put_if(&key, Bytes::from_static(b"a"), "0").await?,
        "put_if wrote an absent key"
    );
    s.put(&key, Bytes::from_static(b"one")).await?;
    let (value, v1) = s
        .get_versioned(&key)
        .await?
        .ok_or(Fail("no version".into()))?;
    ensure!(value.as_ref() == b"one", "get_versioned: {value:?}");
    // Two writers read the same version: the first wins, the second is refused.
    ensure!(
        s.put_if(&key, Bytes::from_static(b"two"), &v1).await?,
        "put_if at the current version was refused"
    );
    ensure!(
        !s.put_if(&key, Bytes::from_static(b"three"), &v1).await?,
        "put_if at a stale version wrote"
    );
    let (value, v2) = s
        .get_versioned(&key)
        .await?
        .ok_or(Fail("no version".into()))?;
    ensure!(value.as_ref() == b"two", "after the race: {value:?}");
    ensure!(v1 != v2, "the version did not change with a write");
    ensure!(
        s.put_if(&key, Bytes::from_static(b"four"), &v2).await?,
        "put_if at the new version was refused"
    );
    let got = s.get(&key).await?;
    ensure!(got.as_deref() == Some(b"four".as_ref()), "get: {got:?}");
    s.delete(&key).await?;
    ensure!(
        !s.put_if(&key, Bytes::from_static(b"five"), &v2).await?,
        "put_if wrote a deleted key"
    );
    ensure!(s.get(&key).await?.is_none(), "a refused put_if wrote");
    Ok(String::new())
}

async fn list_current<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let dir = cx.key("list");
    let keys = [
        "d/b",
        "d/a",
        "d/c/deeper",
        "d/e/f/deepest",
        "e/x",
        "d-sibling",
    ];
    for k in keys {
        s.put(&format!("{dir}/{k}"), Bytes::new()).await?;
    }
    let d = format!("{dir}/d");
    let names = sorted(s.list(&d, Freshness::Current).await?);
    ensure!(
        names == ["a", "b"],
        "list of a folder: {names:?}, expected [a, b]"
    );
    let none = s.list(&cx.key("nothing"), Freshness::Current).await?;
    ensure!(none.is_empty(), "list of an absent folder: {none:?}");
    s.delete(&format!("{d}/a")).await?;
    s.put(&format!("{d}/z"), Bytes::new()).await?;
    let names = sorted(s.list(&d, Freshness::Current).await?);
    ensure!(
        names == ["b", "z"],
        "list after a delete and a put: {names:?}"
    );
    for k in keys.iter().chain(&["d/z"]) {
        s.delete(&format!("{dir}/{k}")).await?;
    }
    let names = s.list(&d, Freshness::Current).await?;
    ensure!(names.is_empty(), "list after deleting all: {names:?}");
    Ok(String::new())
}

async fn list_cached<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let dir = cx.key("cached");
    for k in ["a", "b", "sub/c"] {
        s.put(&format!("{dir}/{k}"), Bytes::new()).await?;
    }
    // Never listed before, so no cache can hold an older answer.
    let first = sorted(s.list(&dir, Freshness::Cached).await?);
    ensure!(
        first == ["a", "b"],
        "first cached list: {first:?}, expected [a, b]"
    );
    s.delete(&format!("{dir}/a")).await?;
    s.put(&format!("{dir}/c"), Bytes::new()).await?;
    let current = sorted(s.list(&dir, Freshness::Current).await?);
    ensure!(
        current == ["b", "c"],
        "current list after a change: {current:?}"
    );
    // Cached may answer the earlier listing or the current one, nothing else.
    let cached = sorted(s.list(&dir, Freshness::Cached).await?);
    let note = if cached == first {
        "the second cached list came from the cache"
    } else if cached == current {
        "the second cached list was current"
    } else {
        return Err(Fail(format!(
            "cached list after a change: {cached:?}, neither {first:?} nor {current:?}"
        )));
    };
    for k in ["b", "c", "sub/c"] {
        s.delete(&format!("{dir}/{k}")).await?;
    }
    Ok(note.to_string())
}

// ---- blobs --------------------------------------------------------------------------------------

async fn blob_put_read_ranges<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    // Small enough to be read at once, and large enough to be streamed (filesystem: 64 KiB).
    let small = cx.content(1, 10);
    let large = cx.content(2, 200 * 1024 + 3);
    let absent = sha256(&cx.content(3, 10));
    for data in [&small, &large] {
        let d = sha256(data);
        s.blob_put(&d, Bytes::copy_from_slice(data)).await?;
        // Storing it again is harmless.
        s.blob_put(&d, Bytes::copy_from_slice(data)).await?;
        let n = data.len() as u64;
        cx.expect_blob(
            &d,
            data,
            &[
                (0, 1),
                (1, n - 2),
                (n - 1, 1),
                (n / 2, n / 3),
                (3, 0),
                (n, 0),
            ],
        )
        .await?;
    }
    ensure!(
        s.blob_size(&absent).await?.is_none(),
        "blob_size of an absent blob"
    );
    ensure!(
        cx.read_blob(&absent, 0, 1).await?.is_none(),
        "blob_read of an absent blob answered"
    );
    for data in [&small, &large] {
        s.blob_delete(&sha256(data)).await?;
    }
    Ok(String::new())
}

// ---- uploads ------------------------------------------------------------------------------------

async fn upload_small<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    let data = cx.content(10, 300 * 1024 + 1);
    let d = sha256(&data);
    let backend = cx
        .upload(&id, &data, &[100 * 1024, 150 * 1024], 7_000)
        .await?;
    let read = collect(Body::Stream(
        s.upload_read(&id, data.len() as u64, backend.as_deref())
            .await?,
    ))
    .await?;
    ensure!(
        read == data,
        "upload_read: {} bytes, not those written",
        read.len()
    );
    s.upload_commit(&id, &d, data.len() as u64, backend.as_deref())
        .await?;
    let n = data.len() as u64;
    cx.expect_blob(&d, &data, &[(0, 10), (100 * 1024 - 5, 10), (n - 10, 10)])
        .await?;
    let left = cx.upload_ids().await?;
    ensure!(
        !left.iter().any(|u| u.id == id),
        "list_upload_data still lists a committed upload"
    );
    s.blob_delete(&d).await?;
    Ok(String::new())
}

async fn upload_large<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    // Over two parts; requests that end inside a part, cross parts, and fill exactly up to one.
    let len = 2 * PART + 123_457;
    let data = cx.content(20, len);
    let d = sha256(&data);
    let requests = [
        3 * 1024 * 1024 + 17,
        PART - (3 * 1024 * 1024 + 17),
        PART + 1000,
        1,
    ];
    let backend = cx.upload(&id, &data, &requests, 1024 * 1024 + 5).await?;
    s.upload_commit(&id, &d, len as u64, backend.as_deref())
        .await?;
    let (p, n) = (PART as u64, len as u64);
    cx.expect_blob(
        &d,
        &data,
        &[
            (0, 1),
            (p - 10, 20),
            (2 * p - 1, 2),
            (p, p),
            (n - 1, 1),
            (5, n - 5),
        ],
    )
    .await?;
    let left = cx.upload_ids().await?;
    ensure!(
        !left.iter().any(|u| u.id == id),
        "list_upload_data still lists a committed upload"
    );
    s.blob_delete(&d).await?;
    Ok(String::new())
}

async fn upload_read_then_commit<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    // The core reads an upload back (to hash it with another algorithm) just before committing.
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    let len = PART + 4097;
    let data = cx.content(30, len);
    let d = sha256(&data);
    let backend = cx.upload(&id, &data, &[PART / 2], 2 * 1024 * 1024).await?;
    let prefix = collect(Body::Stream(
        s.upload_read(&id, 1000, backend.as_deref()).await?,
    ))
    .await?;
    ensure!(
        prefix == data[..1000],
        "upload_read of a prefix: {} bytes differ",
        prefix.len()
    );
    let all = collect(Body::Stream(
        s.upload_read(&id, len as u64, backend.as_deref()).await?,
    ))
    .await?;
    ensure!(
        all == data,
        "upload_read of all: {} bytes differ",
        all.len()
    );
    s.upload_commit(&id, &d, len as u64, backend.as_deref())
        .await?;
    cx.expect_blob(&d, &data, &[(PART as u64 - 1, 2)]).await?;
    s.blob_delete(&d).await?;
    Ok(String::new())
}

async fn upload_discards_unsaved<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    // A request whose state the session never saved (it failed, or lost a race) is not part of
    // the upload: the next request appends at the saved offset, with the saved state.
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    let first = cx.content(40, 70_000);
    let lost = cx.content(41, PART + 50_000);
    let second = cx.content(42, 30_000);
    let saved = cx.upload(&id, &first, &[], 64 * 1024).await?;
    let mut w = s.upload_writer(&id, 70_000, saved.as_deref()).await?;
    write_chunks(&mut *w, &lost, 1024 * 1024).await?;
    let _unsaved = w.finish().await?;
    let mut w = s.upload_writer(&id, 70_000, saved.as_deref()).await?;
    write_chunks(&mut *w, &second, 4096).await?;
    let backend = w.finish().await?;
    let data = [first, second].concat();
    let d = sha256(&data);
    s.upload_commit(&id, &d, data.len() as u64, backend.as_deref())
        .await?;
    cx.expect_blob(&d, &data, &[(69_990, 20)]).await?;
    s.blob_delete(&d).await?;
    // The lost request's bytes may stay until the upload is deleted (the session's expiry).
    s.upload_delete(&id, backend.as_deref()).await?;
    Ok(String::new())
}

async fn upload_commit_existing<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let mut notes = Vec::new();
    for (i, len) in [(0u32, 5_000usize), (1, PART + 10)] {
        let data = cx.content(50 + i, len);
        let d = sha256(&data);
        let first = crate::upload::new_upload_id();
        let backend = cx.upload(&first, &data, &[], 1024 * 1024).await?;
        s.upload_commit(&first, &d, len as u64, backend.as_deref())
            .await?;
        let before = cx.keys().await?;
        // The same content again: committing it is success, and keeps one copy.
        let again = crate::upload::new_upload_id();
        let backend = cx.upload(&again, &data, &[], 1024 * 1024).await?;
        s.upload_commit(&again, &d, len as u64, backend.as_deref())
            .await?;
        cx.expect_blob(&d, &data, &[]).await?;
        let left = cx.upload_ids().await?;
        ensure!(
            !left.iter().any(|u| u.id == again || u.id == first),
            "list_upload_data lists a committed upload ({len} bytes)"
        );
        let after = cx.keys().await?;
        ensure!(
            before == after,
            "committing stored content ({len} bytes) changed what is stored: {}",
            diff(&before, &after)
        );
        s.blob_delete(&d).await?;
        notes.push(format!("{len} bytes"));
    }
    Ok(notes.join(", "))
}

async fn upload_empty<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    // A session completed with no bytes: nothing was ever written for it.
    let s = cx.s;
    let id = crate::upload::new_upload_id();
    let d = sha256(b"");
    let existed = s.blob_size(&d).await?.is_some();
    s.upload_commit(&id, &d, 0, None).await?;
    cx.expect_blob(&d, b"", &[(0, 0)]).await?;
    if !existed {
        s.blob_delete(&d).await?;
    }
    Ok(String::new())
}

async fn upload_delete<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let before = cx.keys().await?;
    let mut notes = Vec::new();
    for (i, len) in [(0u32, 60_000usize), (1, PART + 60_000)] {
        let id = crate::upload::new_upload_id();
        let data = cx.content(60 + i, len);
        let backend = cx.upload(&id, &data, &[len / 3], 512 * 1024).await?;
        s.upload_delete(&id, backend.as_deref()).await?;
        let listed = cx.upload_ids().await?;
        ensure!(
            !listed.iter().any(|u| u.id == id),
            "list_upload_data lists a deleted upload ({len} bytes)"
        );
        // Deleting again, or an upload that never had data, is fine.
        s.upload_delete(&id, backend.as_deref()).await?;
        s.upload_delete(&crate::upload::new_upload_id(), None)
            .await?;
        notes.push(format!("{len} bytes"));
    }
    let after = cx.keys().await?;
    ensure!(
        before == after,
        "deleted uploads left something: {}",
        diff(&before, &after)
    );
    Ok(notes.join(", "))
}

async fn list_upload_data<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let from = (cx.now)();
    let small = crate::upload::new_upload_id();
    let large = crate::upload::new_upload_id();
    let small_data = cx.content(70, 1234);
    let large_data = cx.content(71, PART + 1234);
    let small_backend = cx.upload(&small, &small_data, &[], 1024).await?;
    let large_backend = cx
        .upload(&large, &large_data, &[PART - 1], 1024 * 1024)
        .await?;
    let listed = cx.upload_ids().await?;
    let mut ids: Vec<&str> = listed.iter().map(|u| u.id.as_str()).collect();
    ids.sort();
    let unique = ids.windows(2).all(|w| w[0] != w[1]);
    ensure!(unique, "list_upload_data lists an upload twice: {ids:?}");
    for (id, what) in [
        (&small, "a small upload"),
        (&large, "an upload of over a part"),
    ] {
        let Some(u) = listed.iter().find(|u| &u.id == id) else {
            return Err(Fail(format!("list_upload_data lacks {what} ({id})")));
        };
        ensure!(
            cx.plausible(u.modified, from),
            "{what}: modified {} is not between {from} and now ({})",
            u.modified,
            (cx.now)()
        );
    }
    let d = sha256(&small_data);
    s.upload_commit(
        &small,
        &d,
        small_data.len() as u64,
        small_backend.as_deref(),
    )
    .await?;
    s.upload_delete(&large, large_backend.as_deref()).await?;
    let listed = cx.upload_ids().await?;
    ensure!(
        !listed.iter().any(|u| u.id == small || u.id == large),
        "list_upload_data lists a committed or deleted upload"
    );
    s.blob_delete(&d).await?;
    Ok(format!("{} upload(s) listed in all", ids.len()))
}

// ---- walking and deleting blobs ---------------------------------------------------------------

async fn list_blobs_paging<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let from = (cx.now)();
    let mut ours: Vec<(Digest, u64)> = Vec::new();
    for i in 0..7u32 {
        let data = cx.content(80 + i, 100 + i as usize * 1000);
        let d = sha256(&data);
        s.blob_put(&d, Bytes::from(data.clone())).await?;
        ours.push((d, data.len() as u64));
    }
    // Chunked uploads: one over a part (on R2 a record pointing at its parts), one under.
    for (i, len) in [(0u32, PART + 77), (1, 77_777)] {
        let data = cx.content(90 + i, len);
        let d = sha256(&data);
        let id = crate::upload::new_upload_id();
        let backend = cx.upload(&id, &data, &[], 1024 * 1024).await?;
        s.upload_commit(&id, &d, len as u64, backend.as_deref())
            .await?;
        ours.push((d, len as u64));
    }
    let mut pages_seen = Vec::new();
    for limit in [1, 3, 1000, 0] {
        let (all, pages) = cx.all_blobs(limit).await?;
        pages_seen.push(format!(
            "limit {limit}: {} blobs in {pages} pages",
            all.len()
        ));
        for (d, size) in &ours {
            let found: Vec<&BlobInfo> = all.iter().filter(|b| &b.digest == d).collect();
            ensure!(
                found.len() == 1,
                "list_blobs (limit {limit}) lists {d} {} times",
                found.len()
            );
            ensure!(
                found[0].size == *size,
                "list_blobs (limit {limit}): {d} has size {}, stored {size}",
                found[0].size
            );
            ensure!(
                cx.plausible(found[0].modified, from),
                "list_blobs: {d} modified {} is not between {from} and now ({})",
                found[0].modified,
                (cx.now)()
            );
        }
    }
    for (d, _) in &ours {
        s.blob_delete(d).await?;
    }
    Ok(pages_seen.join("; "))
}

async fn blob_delete<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    let s = cx.s;
    let data = cx.content(100, 4321);
    let d = sha256(&data);
    let other = cx.content(101, 1234);
    let o = sha256(&other);
    let before = cx.keys().await?;
    s.blob_put(&d, Bytes::from(data.clone())).await?;
    s.blob_put(&o, Bytes::from(other.clone())).await?;
    s.blob_delete(&d).await?;
    cx.expect_no_blob(&d).await?;
    let (all, _) = cx.all_blobs(1000).await?;
    ensure!(
        !all.iter().any(|b| b.digest == d),
        "list_blobs lists a deleted blob"
    );
    ensure!(
        all.iter().any(|b| b.digest == o),
        "list_blobs lacks a blob stored next to the deleted one"
    );
    cx.expect_blob(&o, &other, &[]).await?;
    // Deleting it again, or a blob never stored, is fine.
    s.blob_delete(&d).await?;
    s.blob_delete(&sha256(&cx.content(102, 1))).await?;
    // And it can be stored again.
    s.blob_put(&d, Bytes::from(data.clone())).await?;
    cx.expect_blob(&d, &data, &[]).await?;
    s.blob_delete(&d).await?;
    s.blob_delete(&o).await?;
    let after = cx.keys().await?;
    ensure!(
        before == after,
        "deleted blobs left something: {}",
        diff(&before, &after)
    );
    Ok(String::new())
}

async fn blob_delete_chunked<S: Storage + Inspect + ?Sized>(cx: &Cx<'_, S>) -> Outcome {
    // A blob committed from an upload: deleting it removes the upload's bytes too.
    let s = cx.s;
    let mut notes = Vec::new();
    for (i, len) in [(0u32, 2 * PART + 5), (1, 33_333)] {
        let data = cx.content(110 + i, len);
        let d = sha256(&data);
        let before = cx.keys().await?;
        let id = crate::upload::new_upload_id();
        let backend = cx.upload(&id, &data, &[len / 2 + 3], 1024 * 1024).await?;
        s.upload_commit(&id, &d, len as u64, backend.as_deref())
            .await?;
        let stored = cx.keys().await?;
        let added = stored.difference(&before).count();
        ensure!(added > 0, "a committed upload ({len} bytes) stored nothing");
        s.blob_delete(&d).await?;
        cx.expect_no_blob(&d).await?;
        let (all, _) = cx.all_blobs(1000).await?;
        ensure!(
            !all.iter().any(|b| b.digest == d),
            "list_blobs lists a deleted blob"
        );
        let after = cx.keys().await?;
        ensure!(
            before == after,
            "deleting a blob of {len} bytes committed from an upload left something: {}",
            diff(&before, &after)
        );
        s.blob_delete(&d).await?;
        notes.push(format!("{len} bytes: {added} object(s) stored, all gone"));
    }
    Ok(notes.join("; "))
}
