//! Storage on the local filesystem, the native default.
//!
//! Layout under the root:
//! - `blobs/<alg>/<first two hex>/<hex>`: blob data, each stored once;
//! - `meta/<key>`: the small objects (links, tags, referrers, catalog, upload states);
//! - `uploads/<id>`: the data of open upload sessions;
//! - `tmp/`: files being written, renamed into place when complete.
//!
//! Every small object and blob is written to `tmp/`, fsynced, then renamed into place (and the
//! directory fsynced), so a reader or a crash sees the old content or the new, never a part.
//! A blob's mtime is when it was stored (an upload's data gets the time of its commit).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::body::{Body, BoxError, ByteStream};
use crate::digest::Digest;
use crate::storage::{
    BlobInfo, BlobPage, Freshness, Storage, StorageError, StorageResult, UploadData, UploadWriter,
};

mod writer;

use writer::FsWriter;

/// How much a read of blob data asks the disk for at once.
const READ_CHUNK: usize = 1024 * 1024;
/// Blobs up to this size are read whole and inline (manifests, configs).
const SMALL_READ: u64 = 64 * 1024;
/// How much upload data is gathered, at most, while a write to disk is in flight, before the
/// next write waits for it.
const WRITE_BATCH: usize = 1024 * 1024;
/// How much upload data an idle disk is handed at once: less waits for more to come (or for
/// the end of the request), so a body that arrives in small pieces does not cost a trip to the
/// blocking pool for each.
const WRITE_EAGER: usize = 128 * 1024;

type UploadLock = Held;

use crate::storage::locks::{Held, Locks};

#[derive(Clone)]
pub struct FsStorage {
    root: Arc<PathBuf>,
    /// One lock per upload being written, held until its last write has landed (even when the
    /// request that started it is gone), so two writes to one upload never interleave.
    uploads: Locks,
    /// One lock per upload session, held by a request from reading the session's state to
    /// saving it (see `Storage::lock_session`).
    sessions: Locks,
    /// One lock per key being written conditionally (`put_if`).
    conditional: Locks,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError(format!("storage task failed: {e}")))?
        .map_err(StorageError::from)
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn content_version(content: &[u8]) -> String {
    crate::digest::Digest::of(crate::digest::Algorithm::Sha256, content)
        .hex()
        .to_string()
}

fn temp_name() -> String {
    crate::upload::new_upload_id()
}

impl FsStorage {
    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let store = Self::open_shared(&root)?;
        // Files left in tmp/ by a crash were never renamed into place: nothing refers to them.
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(store)
    }

    /// Opens a store that another process (a server) may be using: as [`FsStorage::open`],
    /// but leaves `tmp/` alone, where the other process's writes are under way.
    pub fn open_shared(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        for d in ["blobs", "meta", "uploads", "tmp", "locks"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(FsStorage {
            root: Arc::new(root),
            uploads: Locks::default(),
            sessions: Locks::default(),
            conditional: Locks::default(),
        })
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join("meta").join(key)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    async fn lock_upload(&self, id: &str) -> UploadLock {
        self.uploads.lock(id).await
    }

    fn temp_path(&self) -> PathBuf {
        self.root.join("tmp").join(temp_name())
    }

    /// The lock file of a key's stripe, for `put_if` across processes.
    fn stripe_path(&self, key: &str) -> PathBuf {
        let h = content_version(key.as_bytes());
        self.root.join("locks").join(format!("put-if-{}", &h[..2]))
    }

    /// Takes the collector's lock (`<root>/gc.lock`), held until the guard is dropped or the
    /// process ends, whichever process holds it; `None` when another holds it now.
    pub fn try_lock_collector(&self) -> io::Result<Option<FileLock>> {
        FileLock::try_take(&self.root.join("gc.lock"))
    }

    /// Waits for the collector's lock (blocking the thread).
    pub fn lock_collector(&self) -> io::Result<FileLock> {
        FileLock::take(&self.root.join("gc.lock"))
    }
}

/// An exclusive lock on a file (`flock`), released when dropped or when the process ends,
/// however it ends. It excludes other processes and other open files of this one.
pub struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
    }

    /// Waits for the lock (blocking the thread).
    pub fn take(path: &Path) -> io::Result<FileLock> {
        let f = Self::open(path)?;
        flock(&f, libc::LOCK_EX)?;
        Ok(FileLock(f))
    }

    /// Takes the lock if it is free now.
    pub fn try_take(path: &Path) -> io::Result<Option<FileLock>> {
        let f = Self::open(path)?;
        match flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(FileLock(f))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor this function borrows for the call.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Writes `data` to `dest` atomically: temp file, fsync, rename, fsync of the directory.
fn write_atomic(tmp: PathBuf, dest: &Path, data: &[u8]) -> io::Result<()> {
    let parent = dest.parent().ok_or_else(|| io::Error::other("no parent"))?;
    fs::create_dir_all(parent)?;
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        fs::rename(&tmp, dest)?;
        sync_dir(parent)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads exactly `len` bytes from the current position, into memory that is not zeroed first.
fn read_exact_len(file: &mut File, len: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shorter than expected",
        ));
    }
    Ok(Bytes::from(buf))
}

/// Streams `len` bytes of `file` from its current position.
fn stream_file(file: File, len: u64) -> ByteStream {
    let state = (Some(file), len);
    Box::pin(futures_util::stream::unfold(
        state,
        |(file, remaining)| async move {
            let mut file = file?;
            if remaining == 0 {
                return None;
            }
            let want = remaining.min(READ_CHUNK as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let data = read_exact_len(&mut file, want)?;
                Ok::<_, io::Error>((file, data))
            })
            .await;
            match read {
                Ok(Ok((file, data))) => {
                    let left = remaining - data.len() as u64;
                    Some((Ok(data), (Some(file), left)))
                }
                Ok(Err(e)) => Some((Err(Box::new(e) as BoxError), (None, 0))),
                Err(e) => Some((Err(Box::new(e) as BoxError), (None, 0))),
            }
        },
    ))
}

#[async_trait::async_trait]
impl Storage for FsStorage {
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        // Small objects are read inline: one read of a few bytes from the page cache costs far
        // less than a hop to the blocking pool (and is what makes manifest GETs fast).
        let path = self.meta_path(key);
        Ok(not_found_is_none(fs::read(path))?.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes) -> StorageResult<()> {
        let (dest, tmp) = (self.meta_path(key), self.temp_path());
        blocking(move || write_atomic(tmp, &dest, &value)).await
    }

    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, String)>> {
        Ok(self.get(key).await?.map(|b| {
            let version = content_version(&b);
            (b, version)
        }))
    }

    async fn put_if(&self, key: &str, value: Bytes, version: &str) -> StorageResult<bool> {
        // The version of a small object is the digest of its content. A lock makes the compare
        // and the write one step: a lock per key within this process (so waiting takes no
        // thread), then a lock file per stripe of keys across processes (`edge-registry gc`
        // beside a server), held by the blocking task that compares and writes.
        let _held = self.conditional.lock(key).await;
        let (dest, tmp, lock) = (self.meta_path(key), self.temp_path(), self.stripe_path(key));
        let version = version.to_string();
        blocking(move || {
            let _lock = FileLock::take(&lock)?;
            match not_found_is_none(fs::read(&dest))? {
                Some(current) if content_version(&current) == version => {}
                _ => return Ok(false),
            }
            write_atomic(tmp, &dest, &value)?;
            Ok(true)
        })
        .await
    }

    async fn put_new(&self, key: &str, value: Bytes) -> StorageResult<bool> {
        // Under the same locks as `put_if`: the check and the write are one step.
        let _held = self.conditional.lock(key).await;
        let (dest, tmp, lock) = (self.meta_path(key), self.temp_path(), self.stripe_path(key));
        blocking(move || {
            let _lock = FileLock::take(&lock)?;
            if not_found_is_none(fs::read(&dest))?.is_some() {
                return Ok(false);
            }
            write_atomic(tmp, &dest, &value)?;
            Ok(true)
        })
        .await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.meta_path(key);
        blocking(move || not_found_is_none(fs::remove_file(path)).map(|_| ())).await
    }

    async fn list(&self, dir: &str, _fresh: Freshness) -> StorageResult<Vec<String>> {
        let path = self.meta_path(dir);
        blocking(move || {
            let Some(entries) = not_found_is_none(fs::read_dir(path))? else {
                return Ok(Vec::new());
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    if let Ok(name) = entry.file_name().into_string() {
                        names.push(name);
                    }
                }
            }
            Ok(names)
        })
        .await
    }

    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        // A stat, inline for the same reason as `get`.
        let path = self.blob_path(digest);
        Ok(not_found_is_none(fs::metadata(path))?.map(|m| m.len()))
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<Body>> {
        let path = self.blob_path(digest);
        if len <= SMALL_READ {
            // Manifests and configs: read at once, inline.
            let Some(mut f) = not_found_is_none(File::open(path))? else {
                return Ok(None);
            };
            f.seek(SeekFrom::Start(start))?;
            return Ok(Some(Body::Full(read_exact_len(&mut f, len as usize)?)));
        }
        let file = blocking(move || {
            let Some(mut f) = not_found_is_none(File::open(path))? else {
                return Ok(None);
            };
            f.seek(SeekFrom::Start(start))?;
            Ok(Some(f))
        })
        .await?;
        Ok(file.map(|f| Body::Stream(stream_file(f, len))))
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()> {
        let (dest, tmp) = (self.blob_path(digest), self.temp_path());
        blocking(move || {
            if dest.exists() {
                return Ok(());
            }
            write_atomic(tmp, &dest, &data)
        })
        .await
    }

    async fn list_blobs(&self, cursor: Option<&str>, limit: usize) -> StorageResult<BlobPage> {
        let after = match cursor {
            Some(c) => Some(
                Digest::parse(c).map_err(|_| StorageError(format!("not a blob cursor: {c}")))?,
            ),
            None => None,
        };
        let root = self.root.join("blobs");
        blocking(move || list_blob_files(&root, after.as_ref(), limit.max(1))).await
    }

    async fn blob_delete(&self, digest: &Digest) -> StorageResult<()> {
        let path = self.blob_path(digest);
        blocking(move || {
            if not_found_is_none(fs::remove_file(&path))?.is_some() {
                if let Some(parent) = path.parent() {
                    sync_dir(parent)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn lock_session(&self, id: &str) -> Box<dyn crate::storage::SessionGuard> {
        Box::new(self.sessions.lock(id).await)
    }

    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
        _backend: Option<&str>,
    ) -> StorageResult<Box<dyn UploadWriter>> {
        let lock = self.lock_upload(id).await;
        let path = self.upload_path(id);
        // Opened inline, like the small reads: a hop to the blocking pool costs more than the
        // open itself, and far more when the CPUs are busy (a thread has to be woken and wait
        // for one). A tail to cut (rare) may free many blocks: that goes to the pool.
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len < offset {
            return Err(io::Error::other("upload data is shorter than its recorded offset").into());
        }
        if len > offset {
            // Left by a request that failed half-way: not part of the upload.
            file = blocking(move || {
                file.set_len(offset)?;
                Ok(file)
            })
            .await?;
        }
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(FsWriter {
            file: Some((file, lock)),
            in_flight: None,
            pending: Vec::new(),
            pending_len: 0,
        }))
    }

    async fn upload_read(
        &self,
        id: &str,
        len: u64,
        _backend: Option<&str>,
    ) -> StorageResult<ByteStream> {
        let path = self.upload_path(id);
        let file = blocking(move || File::open(path)).await?;
        Ok(stream_file(file, len))
    }

    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
        _backend: Option<&str>,
    ) -> StorageResult<()> {
        let _lock = self.lock_upload(id).await;
        let (src, dest) = (self.upload_path(id), self.blob_path(digest));
        blocking(move || {
            if dest.exists() {
                // Someone stored the same content first; ours is identical and not needed.
                return not_found_is_none(fs::remove_file(&src)).map(|_| ());
            }
            // An empty upload never wrote a data file.
            let f = OpenOptions::new()
                .create(size == 0)
                .truncate(false)
                .write(true)
                .open(&src)?;
            let len = f.metadata()?.len();
            if len < size {
                return Err(io::Error::other(
                    "upload data is shorter than its recorded size",
                ));
            }
            if len > size {
                f.set_len(size)?;
                f.sync_data()?;
            }
            // The blob's time is when it was stored, not when the upload last grew.
            f.set_modified(std::time::SystemTime::now())?;
            drop(f);
            let parent = dest.parent().ok_or_else(|| io::Error::other("no parent"))?;
            fs::create_dir_all(parent)?;
            fs::rename(&src, &dest)?;
            sync_dir(parent)
        })
        .await
    }

    async fn upload_delete(&self, id: &str, _backend: Option<&str>) -> StorageResult<()> {
        let _lock = self.lock_upload(id).await;
        let path = self.upload_path(id);
        blocking(move || not_found_is_none(fs::remove_file(path)).map(|_| ())).await
    }

    async fn list_upload_data(&self) -> StorageResult<Vec<UploadData>> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut found = Vec::new();
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let Ok(id) = entry.file_name().into_string() else {
                    continue;
                };
                // Gone since the directory was read (committed or deleted): not listed.
                let Some(meta) = not_found_is_none(entry.metadata())? else {
                    continue;
                };
                if meta.is_file() {
                    found.push(UploadData {
                        id,
                        modified: seconds(meta.modified()?),
                    });
                }
            }
            Ok(found)
        })
        .await
    }
}

fn seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The names in `dir` in ascending order, or none when it does not exist.
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let Some(entries) = not_found_is_none(fs::read_dir(dir))? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Up to `limit` blobs under `root` (`<alg>/<2 hex>/<hex>`) after `after`, in digest order, and
/// the cursor of the next page. Only the folders that can hold blobs past `after` are read, and
/// one more blob is looked for past the page, so the last page says it is the last.
fn list_blob_files(root: &Path, after: Option<&Digest>, limit: usize) -> io::Result<BlobPage> {
    let mut blobs: Vec<BlobInfo> = Vec::new();
    for alg in sorted_names(root)? {
        let Some(algorithm) = crate::digest::Algorithm::parse(&alg) else {
            continue;
        };
        if after.is_some_and(|a| algorithm < a.algorithm()) {
            continue;
        }
        let same_alg = after.filter(|a| a.algorithm() == algorithm);
        for prefix in sorted_names(&root.join(&alg))? {
            if same_alg.is_some_and(|a| prefix.as_str() < &a.hex()[..2]) {
                continue;
            }
            let dir = root.join(&alg).join(&prefix);
            for hex in sorted_names(&dir)? {
                let Ok(digest) = Digest::parse(&format!("{alg}:{hex}")) else {
                    continue;
                };
                if after.is_some_and(|a| &digest <= a) || !hex.starts_with(&prefix) {
                    continue;
                }
                if blobs.len() == limit {
                    // There is at least one more: the page is full and not the last.
                    let next = blobs.last().map(|b| b.digest.to_string());
                    return Ok(BlobPage { blobs, next });
                }
                // Deleted since the folder was read: not listed.
                let Some(meta) = not_found_is_none(fs::metadata(dir.join(&hex)))? else {
                    continue;
                };
                blobs.push(BlobInfo {
                    digest,
                    size: meta.len(),
                    modified: seconds(meta.modified()?),
                });
            }
        }
    }
    Ok(BlobPage { blobs, next: None })
}

/// Every file under the root, as a path relative to it (for the storage suite).
#[async_trait::async_trait]
impl crate::storage::suite::Inspect for FsStorage {
    async fn stored_keys(&self) -> StorageResult<Vec<String>> {
        let root = self.root.clone();
        blocking(move || {
            let mut found = Vec::new();
            let mut dirs = vec![root.to_path_buf()];
            while let Some(dir) = dirs.pop() {
                for entry in fs::read_dir(&dir)? {
                    let entry = entry?;
                    // Lock files are not objects.
                    if entry.path() == root.join("locks") || entry.path() == root.join("gc.lock") {
                        continue;
                    }
                    if entry.file_type()?.is_dir() {
                        dirs.push(entry.path());
                    } else if let Ok(rel) = entry.path().strip_prefix(&*root) {
                        found.push(rel.to_string_lossy().into_owned());
                    }
                }
            }
            Ok(found)
        })
        .await
    }
}
