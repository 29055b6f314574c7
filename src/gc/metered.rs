//! A [`Storage`] that counts what it is asked, for the collector's budget: each call counts
//! what it costs in R2 subrequests (the Worker's limit), one for most, two for a blob read or
//! delete (a HEAD first), one per 1,000 names listed.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::body::{Body, ByteStream};
use crate::digest::Digest;
use crate::storage::{
    BlobPage, DirectPut, Freshness, SessionGuard, Storage, StorageResult, UploadData, UploadWriter,
};

/// Counts the operations made through it. It holds its own handle on the store (a clone:
/// stores are handles), since a [`Storage`] lives for `'static`.
pub struct Metered<S> {
    inner: S,
    ops: AtomicU64,
}

impl<S: Storage> Metered<S> {
    pub fn new(inner: S) -> Self {
        Metered {
            inner,
            ops: AtomicU64::new(0),
        }
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.ops.fetch_add(n, Ordering::Relaxed);
    }

    /// One list call per 1,000 names, at least one.
    fn pages(n: usize) -> u64 {
        (n as u64).div_ceil(1000).max(1)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<S: Storage> Storage for Metered<S> {
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        self.add(1);
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Bytes) -> StorageResult<()> {
        self.add(1);
        self.inner.put(key, value).await
    }
    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, String)>> {
        self.add(1);
        self.inner.get_versioned(key).await
    }
    async fn put_if(&self, key: &str, value: Bytes, version: &str) -> StorageResult<bool> {
        self.add(1);
        self.inner.put_if(key, value, version).await
    }
    async fn put_new(&self, key: &str, value: Bytes) -> StorageResult<bool> {
        self.add(1);
        self.inner.put_new(key, value).await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.add(1);
        self.inner.delete(key).await
    }
    async fn list(&self, dir: &str, fresh: Freshness) -> StorageResult<Vec<String>> {
        let names = self.inner.list(dir, fresh).await?;
        self.add(Self::pages(names.len()));
        Ok(names)
    }
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        self.add(1);
        self.inner.blob_size(digest).await
    }
    async fn blob_read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<Body>> {
        self.add(2);
        self.inner.blob_read(digest, start, len).await
    }
    async fn blob_put_direct(
        &self,
        digest: &Digest,
        size: u64,
        body: Body,
    ) -> StorageResult<DirectPut> {
        self.add(1);
        self.inner.blob_put_direct(digest, size, body).await
    }
    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()> {
        self.add(1);
        self.inner.blob_put(digest, data).await
    }
    async fn list_blobs(&self, cursor: Option<&str>, limit: usize) -> StorageResult<BlobPage> {
        let page = self.inner.list_blobs(cursor, limit).await?;
        self.add(Self::pages(page.blobs.len()));
        Ok(page)
    }
    async fn blob_delete(&self, digest: &Digest) -> StorageResult<()> {
        self.add(2);
        self.inner.blob_delete(digest).await
    }
    async fn lock_session(&self, id: &str) -> Box<dyn SessionGuard> {
        self.inner.lock_session(id).await
    }
    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
        backend: Option<&str>,
    ) -> StorageResult<Box<dyn UploadWriter>> {
        self.add(1);
        self.inner.upload_writer(id, offset, backend).await
    }
    async fn upload_read(
        &self,
        id: &str,
        len: u64,
        backend: Option<&str>,
    ) -> StorageResult<ByteStream> {
        self.add(1);
        self.inner.upload_read(id, len, backend).await
    }
    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
        backend: Option<&str>,
    ) -> StorageResult<()> {
        self.add(1);
        self.inner.upload_commit(id, digest, size, backend).await
    }
    async fn upload_delete(&self, id: &str, backend: Option<&str>) -> StorageResult<()> {
        self.add(1);
        self.inner.upload_delete(id, backend).await
    }
    async fn list_upload_data(&self) -> StorageResult<Vec<UploadData>> {
        self.add(1);
        self.inner.list_upload_data().await
    }
}
