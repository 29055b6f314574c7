//! Storage in memory: for tests, and a reference for what each primitive must do.
//!
//! It has no clock of its own: the times it records (a blob's `modified`, an upload's) come
//! from the function given to [`MemoryStorage::with_clock`], and are 0 with
//! [`MemoryStorage::new`], as the core's `Config::default()` clock is.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{
    BlobInfo, BlobPage, Freshness, Storage, StorageError, StorageResult, UploadData, UploadWriter,
};
use crate::body::{Body, ByteStream};
use crate::digest::Digest;

#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Bytes>,
    /// Bumped by every write of a key, for `put_if`.
    versions: HashMap<String, u64>,
    /// Each blob with when it was stored; ordered by digest, for `list_blobs`.
    blobs: BTreeMap<Digest, (Bytes, u64)>,
    /// Each upload's bytes with when they were last written.
    uploads: HashMap<String, (Vec<u8>, u64)>,
}

#[derive(Clone)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
    now: fn() -> u64,
    /// One lock per upload session in use, as the filesystem store has: the requests of one
    /// session are served one at a time.
    sessions: super::locks::Locks,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::with_clock(|| 0)
    }
}

impl MemoryStorage {
    /// An empty store that records every time as 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that records times (seconds since the Unix epoch) from `now`.
    pub fn with_clock(now: fn() -> u64) -> Self {
        MemoryStorage {
            inner: Arc::default(),
            now,
            sessions: super::locks::Locks::default(),
        }
    }

    /// The keys of everything stored: `meta/<key>` for small objects, `blobs/<digest>` and
    /// `uploads/<id>` (for the storage suite's check that a delete leaves nothing behind).
    pub fn stored_keys(&self) -> Vec<String> {
        let inner = self.lock();
        let objects = inner.objects.keys().map(|k| format!("meta/{k}"));
        let blobs = inner.blobs.keys().map(|d| format!("blobs/{d}"));
        let uploads = inner.uploads.keys().map(|id| format!("uploads/{id}"));
        objects.chain(blobs).chain(uploads).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write: every write is one
        // map operation. So a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn once(data: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(data) }))
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Storage for MemoryStorage {
    async fn lock_session(&self, id: &str) -> Box<dyn super::SessionGuard> {
        Box::new(self.sessions.lock(id).await)
    }

    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        Ok(self.lock().objects.get(key).cloned())
    }

    async fn put(&self, key: &str, value: Bytes) -> StorageResult<()> {
        let mut inner = self.lock();
        inner.objects.insert(key.to_string(), value);
        *inner.versions.entry(key.to_string()).or_default() += 1;
        Ok(())
    }

    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, String)>> {
        let inner = self.lock();
        Ok(inner.objects.get(key).map(|v| {
            let version = inner.versions.get(key).copied().unwrap_or_default();
            (v.clone(), version.to_string())
        }))
    }

    async fn put_if(&self, key: &str, value: Bytes, version: &str) -> StorageResult<bool> {
        let mut inner = self.lock();
        let current = inner.versions.get(key).copied().unwrap_or_default();
        if !inner.objects.contains_key(key) || current.to_string() != version {
            return Ok(false);
        }
        inner.objects.insert(key.to_string(), value);
        inner.versions.insert(key.to_string(), current + 1);
        Ok(true)
    }

    async fn put_new(&self, key: &str, value: Bytes) -> StorageResult<bool> {
        let mut inner = self.lock();
        if inner.objects.contains_key(key) {
            return Ok(false);
        }
        inner.objects.insert(key.to_string(), value);
        *inner.versions.entry(key.to_string()).or_default() += 1;
        Ok(true)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let mut inner = self.lock();
        inner.objects.remove(key);
        *inner.versions.entry(key.to_string()).or_default() += 1;
        Ok(())
    }

    async fn list(&self, dir: &str, _fresh: Freshness) -> StorageResult<Vec<String>> {
        let prefix = format!("{dir}/");
        let inner = self.lock();
        Ok(inner
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.contains('/')).then(|| rest.to_string())
            })
            .collect())
    }

    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        Ok(self.lock().blobs.get(digest).map(|(b, _)| b.len() as u64))
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<Body>> {
        let inner = self.lock();
        let Some((blob, _)) = inner.blobs.get(digest) else {
            return Ok(None);
        };
        let start = (start as usize).min(blob.len());
        let end = start.saturating_add(len as usize).min(blob.len());
        Ok(Some(Body::Full(blob.slice(start..end))))
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()> {
        let now = (self.now)();
        self.lock()
            .blobs
            .entry(digest.clone())
            .or_insert((data, now));
        Ok(())
    }

    async fn list_blobs(&self, cursor: Option<&str>, limit: usize) -> StorageResult<BlobPage> {
        let after = match cursor {
            Some(c) => Bound::Excluded(
                Digest::parse(c).map_err(|_| StorageError(format!("not a blob cursor: {c}")))?,
            ),
            None => Bound::Unbounded,
        };
        let limit = limit.max(1);
        let inner = self.lock();
        let mut rest = inner.blobs.range((after, Bound::Unbounded));
        let blobs: Vec<BlobInfo> = rest
            .by_ref()
            .take(limit)
            .map(|(digest, (data, modified))| BlobInfo {
                digest: digest.clone(),
                size: data.len() as u64,
                modified: *modified,
            })
            .collect();
        let next = match (rest.next(), blobs.last()) {
            (Some(_), Some(last)) => Some(last.digest.to_string()),
            _ => None,
        };
        Ok(BlobPage { blobs, next })
    }

    async fn blob_delete(&self, digest: &Digest) -> StorageResult<()> {
        self.lock().blobs.remove(digest);
        Ok(())
    }

    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
        _backend: Option<&str>,
    ) -> StorageResult<Box<dyn UploadWriter>> {
        Ok(Box::new(MemoryWriter {
            storage: self.clone(),
            id: id.to_string(),
            offset: offset as usize,
            pending: Vec::new(),
        }))
    }

    async fn upload_read(
        &self,
        id: &str,
        len: u64,
        _backend: Option<&str>,
    ) -> StorageResult<ByteStream> {
        let inner = self.lock();
        let (data, _) = inner
            .uploads
            .get(id)
            .ok_or_else(|| StorageError(format!("upload {id} has no data")))?;
        let end = (len as usize).min(data.len());
        Ok(once(Bytes::copy_from_slice(&data[..end])))
    }

    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
        _backend: Option<&str>,
    ) -> StorageResult<()> {
        let now = (self.now)();
        let mut inner = self.lock();
        let (mut data, _) = inner.uploads.remove(id).unwrap_or_default();
        if inner.blobs.contains_key(digest) {
            return Ok(());
        }
        if (data.len() as u64) < size {
            return Err(StorageError(format!(
                "upload {id} holds fewer than {size} bytes"
            )));
        }
        data.truncate(size as usize);
        inner.blobs.insert(digest.clone(), (Bytes::from(data), now));
        Ok(())
    }

    async fn upload_delete(&self, id: &str, _backend: Option<&str>) -> StorageResult<()> {
        self.lock().uploads.remove(id);
        Ok(())
    }

    async fn list_upload_data(&self) -> StorageResult<Vec<UploadData>> {
        Ok(self
            .lock()
            .uploads
            .iter()
            .map(|(id, (_, modified))| UploadData {
                id: id.clone(),
                modified: *modified,
            })
            .collect())
    }
}

struct MemoryWriter {
    storage: MemoryStorage,
    id: String,
    offset: usize,
    pending: Vec<u8>,
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl UploadWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        self.pending.extend_from_slice(&chunk);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> StorageResult<Option<String>> {
        let now = (self.storage.now)();
        let mut inner = self.storage.lock();
        let (data, modified) = inner.uploads.entry(self.id.clone()).or_default();
        *modified = now;
        if data.len() < self.offset {
            return Err(StorageError(format!(
                "upload {} is shorter than its offset",
                self.id
            )));
        }
        data.truncate(self.offset);
        data.extend_from_slice(&self.pending);
        Ok(None)
    }
}
