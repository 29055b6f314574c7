//! The store `serve` runs on: the filesystem (the default) or the scale-out store, one type
//! for the server, so choosing between them is a few lines in `main`.

use bytes::Bytes;

use super::ScaleStorage;
use crate::body::{Body, ByteStream};
use crate::digest::Digest;
use crate::native::fs::FsStorage;
use crate::storage::{
    BlobPage, DirectPut, Freshness, ManifestKey, ManifestLookup, SessionGuard, Storage,
    StorageResult, UploadData, UploadWriter,
};

#[derive(Clone)]
pub enum NativeStorage {
    Fs(FsStorage),
    Scale(Box<ScaleStorage>),
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            NativeStorage::Fs($s) => $e,
            NativeStorage::Scale($s) => $e,
        }
    };
}

#[async_trait::async_trait]
impl Storage for NativeStorage {
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        both!(self, s => s.get(key).await)
    }
    async fn put(&self, key: &str, value: Bytes) -> StorageResult<()> {
        both!(self, s => s.put(key, value).await)
    }
    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, String)>> {
        both!(self, s => s.get_versioned(key).await)
    }
    async fn put_if(&self, key: &str, value: Bytes, version: &str) -> StorageResult<bool> {
        both!(self, s => s.put_if(key, value, version).await)
    }
    async fn put_new(&self, key: &str, value: Bytes) -> StorageResult<bool> {
        both!(self, s => s.put_new(key, value).await)
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        both!(self, s => s.delete(key).await)
    }
    async fn list(&self, dir: &str, fresh: Freshness) -> StorageResult<Vec<String>> {
        both!(self, s => s.list(dir, fresh).await)
    }
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        both!(self, s => s.blob_size(digest).await)
    }
    async fn blob_read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<Body>> {
        both!(self, s => s.blob_read(digest, start, len).await)
    }
    async fn blob_put_direct(
        &self,
        digest: &Digest,
        size: u64,
        body: Body,
    ) -> StorageResult<DirectPut> {
        both!(self, s => s.blob_put_direct(digest, size, body).await)
    }
    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()> {
        both!(self, s => s.blob_put(digest, data).await)
    }
    async fn list_blobs(&self, cursor: Option<&str>, limit: usize) -> StorageResult<BlobPage> {
        both!(self, s => s.list_blobs(cursor, limit).await)
    }
    async fn blob_delete(&self, digest: &Digest) -> StorageResult<()> {
        both!(self, s => s.blob_delete(digest).await)
    }
    async fn lookup_manifest(
        &self,
        key: ManifestKey<'_>,
        records: &str,
        read: bool,
    ) -> StorageResult<ManifestLookup> {
        both!(self, s => s.lookup_manifest(key, records, read).await)
    }
    async fn lock_session(&self, id: &str) -> Box<dyn SessionGuard> {
        both!(self, s => s.lock_session(id).await)
    }
    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
        backend: Option<&str>,
    ) -> StorageResult<Box<dyn UploadWriter>> {
        both!(self, s => s.upload_writer(id, offset, backend).await)
    }
    async fn upload_read(
        &self,
        id: &str,
        len: u64,
        backend: Option<&str>,
    ) -> StorageResult<ByteStream> {
        both!(self, s => s.upload_read(id, len, backend).await)
    }
    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
        backend: Option<&str>,
    ) -> StorageResult<()> {
        both!(self, s => s.upload_commit(id, digest, size, backend).await)
    }
    async fn upload_delete(&self, id: &str, backend: Option<&str>) -> StorageResult<()> {
        both!(self, s => s.upload_delete(id, backend).await)
    }
    async fn list_upload_data(&self) -> StorageResult<Vec<UploadData>> {
        both!(self, s => s.list_upload_data().await)
    }
}
