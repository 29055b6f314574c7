//! The storage trait the core runs on, the key layout of its indexes, and the in-memory store.
//!
//! Storage holds three things:
//! - **blobs**, addressed by digest and stored once, whoever pushed them (manifests are blobs too);
//! - **small objects** under string keys: the links of blobs and manifests into repositories,
//!   tags, referrers, the catalog and upload sessions. Each is written whole and atomically;
//! - **upload data**: the bytes of an open upload session, appended chunk by chunk.
//!
//! The registry logic (what to link where, in which order) lives in the core, so every backend
//! only has to get these primitives right. [`suite`] checks them, the same way on every backend.

pub mod locks;
pub mod memory;
#[cfg(any(not(target_arch = "wasm32"), feature = "storage-suite"))]
pub mod suite;

use bytes::Bytes;

use crate::body::{Body, ByteStream, MaybeSend, MaybeSendSync};
use crate::digest::Digest;

/// A failure of the backend itself (I/O, the platform); the core answers it with a 500.
#[derive(Debug, Clone)]
pub struct StorageError(pub String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

/// How [`StorageError::unavailable`] marks its message.
const UNAVAILABLE: &str = "unavailable: ";

impl StorageError {
    /// A service the backend depends on is down or unreachable (the scale-out store's
    /// PostgreSQL or S3): the core answers 503, and the client may retry.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        StorageError(format!("{UNAVAILABLE}{cause}"))
    }

    /// Whether this is [`StorageError::unavailable`].
    pub fn is_unavailable(&self) -> bool {
        self.0.starts_with(UNAVAILABLE)
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError(e.to_string())
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
/// `'static`: a mirrored blob's bytes are stored by a stream that outlives the request's borrow.
pub trait Storage: MaybeSendSync + 'static {
    /// Reads a small object.
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>>;
    /// Writes a small object whole: readers see the old value or the new one, never a mix.
    async fn put(&self, key: &str, value: Bytes) -> StorageResult<()>;
    /// Reads a small object with its version: an opaque tag that changes with every write.
    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, String)>>;
    /// Writes a small object only if it is still at `version` (as [`Storage::get_versioned`]
    /// gave it). `Ok(false)`, and nothing written, when another writer got there first.
    async fn put_if(&self, key: &str, value: Bytes, version: &str) -> StorageResult<bool>;
    /// Writes a small object only if there is none under `key` (create-only, as atomic as
    /// [`Storage::put_if`]). `Ok(false)`, and nothing written, when one is there.
    async fn put_new(&self, key: &str, value: Bytes) -> StorageResult<bool>;
    /// Removes a small object; removing one that is not there is not an error.
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// The names of the small objects directly under `dir` (keys `dir/<name>`, not
    /// `dir/<name>/<more>`), in any order, each once.
    ///
    /// With [`Freshness::Current`] the answer must reflect every write and delete that completed
    /// before the call. With [`Freshness::Cached`] the backend may instead answer what a listing
    /// of the same `dir` answered earlier, up to its cache lifetime ago (the Worker: the
    /// `CATALOG_CACHE_TTL` var); a backend without a cache answers as for `Current`.
    async fn list(&self, dir: &str, fresh: Freshness) -> StorageResult<Vec<String>>;

    /// The size of a stored blob, or `None`.
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>>;
    /// `len` bytes of a blob from `start`, as a body to send, or `None` when it is not stored.
    async fn blob_read(&self, digest: &Digest, start: u64, len: u64)
        -> StorageResult<Option<Body>>;
    /// Stores a whole blob straight from a request body of `size` bytes, if the backend can
    /// verify `digest` itself as it writes (R2 checks a checksum), so the bytes never pass
    /// through the core. The default declines and hands the body back; the core then hashes it
    /// while it streams into an upload.
    async fn blob_put_direct(
        &self,
        digest: &Digest,
        size: u64,
        body: Body,
    ) -> StorageResult<DirectPut> {
        let _ = (digest, size);
        Ok(DirectPut::Declined(body))
    }
    /// Stores a small blob (a manifest) whose digest the caller has verified.
    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()>;

    /// One page of the stored blobs, in ascending order of digest (algorithm, then hex), with
    /// the size [`Storage::blob_size`] gives and when each was stored.
    ///
    /// `cursor` is `None` for the first page, else the `next` of the previous page. A page holds
    /// at most `limit` blobs (a `limit` of 0 is taken as 1) and may hold fewer, even none, while
    /// more follow; only `next == None` marks the end. Walking from `None` to the end yields
    /// every blob stored for the whole walk exactly once (a blob stored or deleted during the
    /// walk may or may not appear). A cursor stays valid across processes and restarts, so the
    /// walk may be spread over many invocations. What a cursor the backend did not make gives
    /// is undefined (an error, or some page).
    async fn list_blobs(&self, cursor: Option<&str>, limit: usize) -> StorageResult<BlobPage>;
    /// A manifest GET's reads, in as few round trips as the backend can: the digest the tag
    /// holds (or the digest asked for), the versioned small object `<records>/<alg>/<hex>` of
    /// that digest (its record), and, when `read`, the blob's bytes (all of them). The default
    /// reads the tag, then the record, and leaves the bytes to the caller
    /// ([`ManifestLookup::body`] `None`); the scale-out store answers all three in one
    /// statement.
    async fn lookup_manifest(
        &self,
        key: ManifestKey<'_>,
        records: &str,
        read: bool,
    ) -> StorageResult<ManifestLookup> {
        let _ = read;
        let target = match key {
            ManifestKey::Tag(tag) => match self.get(tag).await? {
                Some(t) => t,
                None => return Ok(ManifestLookup::default()),
            },
            ManifestKey::Digest(d) => Bytes::from(d.to_string()),
        };
        let digest = std::str::from_utf8(&target)
            .ok()
            .and_then(|t| Digest::parse(t).ok());
        let record = match digest {
            Some(d) => {
                self.get_versioned(&format!("{records}/{}/{}", d.algorithm().as_str(), d.hex()))
                    .await?
            }
            None => None,
        };
        Ok(ManifestLookup {
            target: Some(target),
            record,
            body: None,
        })
    }
    /// Removes a blob and every byte stored for it (for an upload committed into place, the
    /// upload's bytes too), so that afterwards [`Storage::blob_size`] and
    /// [`Storage::blob_read`] answer `None` and [`Storage::list_blobs`] omits it. Removing a
    /// blob that is not stored is not an error. A crash part-way may leave bytes that nothing
    /// refers to, never a blob that is listed or sized but cannot be read.
    async fn blob_delete(&self, digest: &Digest) -> StorageResult<()>;

    /// Holds off other requests on upload session `id` until the guard is dropped, so two
    /// chunks of one session are never received at once. Natively this is a lock in the
    /// process. The default (and R2, whose isolates share no memory) has none: there, two
    /// requests racing on one session can at worst spoil that session, which its digest check
    /// then refuses; nothing stored is affected.
    async fn lock_session(&self, id: &str) -> Box<dyn SessionGuard> {
        let _ = id;
        Box::new(())
    }

    /// Opens the data of upload `id` for appending at `offset`. Anything stored past `offset`
    /// (from a request that failed half-way) is discarded. `backend` is what the last
    /// [`UploadWriter::finish`] returned.
    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
        backend: Option<&str>,
    ) -> StorageResult<Box<dyn UploadWriter>>;
    /// Streams the first `len` bytes of upload `id` (to hash them with another algorithm).
    async fn upload_read(
        &self,
        id: &str,
        len: u64,
        backend: Option<&str>,
    ) -> StorageResult<ByteStream>;
    /// Turns the first `size` bytes of upload `id`, verified to hash to `digest`, into that
    /// blob, and removes the upload data. Already holding the blob is success.
    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
        backend: Option<&str>,
    ) -> StorageResult<()>;
    /// Removes the data of upload `id`.
    async fn upload_delete(&self, id: &str, backend: Option<&str>) -> StorageResult<()>;
    /// The uploads that have bytes stored (written by an [`UploadWriter`] and neither committed
    /// nor deleted since), each once, in any order, with when its bytes were last written (or,
    /// where finding the newest write is costly, some write's time; see each backend).
    /// Committed blobs are never listed here, even where their bytes stay where the upload put
    /// them. `upload_delete(id, None)` must remove the bytes of a listed upload that the
    /// backend can see. A backend may omit an upload whose bytes it cannot list (R2: one whose
    /// bytes are all in parts of an unfinished multipart upload, which R2 aborts by itself).
    async fn list_upload_data(&self) -> StorageResult<Vec<UploadData>>;
}

/// The manifest [`Storage::lookup_manifest`] looks up.
#[derive(Debug, Clone, Copy)]
pub enum ManifestKey<'a> {
    /// By tag: the small object at this key holds the manifest's digest.
    Tag(&'a str),
    /// By digest.
    Digest(&'a Digest),
}

/// What [`Storage::lookup_manifest`] found.
#[derive(Default)]
pub struct ManifestLookup {
    /// What the tag holds (a digest, as text), or the digest asked for; `None` when the tag
    /// does not exist.
    pub target: Option<Bytes>,
    /// The record and its version, when the target is a digest and it has one.
    pub record: Option<(Bytes, String)>,
    /// When asked to read and the backend read the bytes in the same go, the blob's bytes
    /// (`Some(None)`: the blob is not stored); `None` leaves them to [`Storage::blob_read`].
    pub body: Option<Option<Body>>,
}

/// How current a [`Storage::list`] answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Reflects every write and delete completed before the call.
    Current,
    /// May be as old as the backend's listing cache allows; for listings that tolerate that
    /// (the catalog).
    Cached,
}

/// A stored blob, as [`Storage::list_blobs`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was stored, in seconds since the Unix epoch. Storing content that is already
    /// there may keep the first time or take the new one: backends differ.
    pub modified: u64,
}

/// One page of [`Storage::list_blobs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobPage {
    pub blobs: Vec<BlobInfo>,
    /// The cursor of the next page, opaque; `None` at the end.
    pub next: Option<String>,
}

/// An upload with bytes stored, as [`Storage::list_upload_data`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadData {
    pub id: String,
    /// When its bytes were last written, in seconds since the Unix epoch.
    pub modified: u64,
}

/// Held while a request works on an upload session (see [`Storage::lock_session`]).
pub trait SessionGuard: MaybeSend {}
impl<T: MaybeSend> SessionGuard for T {}

/// What became of [`Storage::blob_put_direct`].
pub enum DirectPut {
    /// Stored and verified.
    Stored,
    /// The bytes did not hash to the digest; nothing was stored.
    Mismatch,
    /// The backend cannot verify this digest itself; here is the body back, unread.
    Declined(Body),
}

/// Appends one request's chunks to an upload.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait UploadWriter: MaybeSend {
    /// Tells the writer, before the first [`UploadWriter::write`], how many bytes this request
    /// brings (its declared length), when the core knows it. A backend may use it to stream
    /// into fixed-size pieces instead of buffering them (R2); the default ignores it. The core
    /// never writes more than declared, and a request that brings fewer fails before
    /// [`UploadWriter::finish`].
    fn declared_length(&mut self, len: u64) {
        let _ = len;
    }
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()>;
    /// Makes what was written durable. Returns the backend's state for this upload, which the
    /// core keeps in the session and hands back to the next call.
    async fn finish(self: Box<Self>) -> StorageResult<Option<String>>;
}
