//! Storage for stateless servers that scale out: the decisions in PostgreSQL, the bytes in
//! S3-compatible object storage (`serve --metadata postgres://... --blobs s3://...`). Any
//! number of instances share one database and one bucket, and any of them answers any
//! request, including the next chunk of an upload another one started.
//!
//! PostgreSQL holds (see [`pg`] for the schema):
//! - `er_objects`: every small object (links, tags, manifest records, referrers, the catalog,
//!   upload sessions with their hash state), a row with a version drawn from a sequence, so
//!   [`Storage::put_if`] is one conditional `UPDATE` and a deleted and re-created key never
//!   gets an old version back; [`Storage::list`] is an indexed equality on the row's folder;
//! - `er_blobs`: each blob's size, when it was stored, and which S3 object holds its bytes;
//! - `er_upload_data`: the uploads that have bytes in S3 (and their multipart upload), written
//!   before the first byte goes out, so a crash never leaves bytes that nothing lists.
//!
//! S3 holds only bytes, and is never asked to decide anything (Garage ignores conditional
//! headers on writes):
//! - `blobs/<alg>/<hex>.<unique>`: a blob stored whole (a manifest, a small upload). Each
//!   write has a key of its own, so a write racing a delete of the same digest never loses
//!   the bytes its row points at;
//! - `parts/<id>`: the multipart object a chunked upload is assembled into, which becomes the
//!   blob as it is (its row points at it: nothing is copied);
//! - `data/<id>/tail/<offset>-<random>`: an upload's bytes past its last full part, as on R2.
//!
//! Upload data is re-chunked into equal [`PART_SIZE`] parts as the R2 store does; the
//! session's `backend` field holds the multipart id, the parts' etags and the tail. The
//! requests of one session are serialised across instances by a PostgreSQL advisory lock
//! held for the request (released by PostgreSQL itself when an instance dies), and its state
//! is saved by compare-and-set on top, so of racing chunks exactly one lands.
//!
//! The garbage collector runs over this store like any other, one at a time across instances
//! under a PostgreSQL advisory lock ([`collector`]). What its protocol needs holds here:
//! [`Storage::get_versioned`] and [`Storage::put_if`] are one `SELECT` and one conditional
//! `UPDATE` of a row (PostgreSQL re-checks the condition on the newest row version, so a
//! compare-and-set is atomic across instances), versions never come back (a sequence), every
//! statement commits on its own and is seen by the next statement of any instance, and
//! [`Storage::blob_delete`] deletes the row before the bytes.
//!
//! A manifest GET is one statement ([`Storage::lookup_manifest`]: the tag, the record and the
//! blob's row joined), then the S3 GET.

pub mod collector;
mod either;
pub mod pg;
pub mod s3;
mod writer;

pub use either::NativeStorage;

use std::time::Duration;

use bytes::Bytes;

use crate::body::{Body, ByteStream};
use crate::digest::{Algorithm, Digest};
use crate::storage::{
    BlobInfo, BlobPage, Freshness, ManifestKey, ManifestLookup, SessionGuard, Storage,
    StorageError, StorageResult, UploadData, UploadWriter,
};

use pg::{bounded, Db};
use s3::S3;
use writer::{ScaleWriter, UploadBackend};

/// The size of every multipart part but the last (S3 wants at least 5 MiB; 10,000 parts of
/// 8 MiB hold 78 GiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// S3's limit on the number of parts.
const MAX_PARTS: usize = 10_000;

/// How a session lock waits: short sleeps between tries, growing to this.
const LOCK_POLL_MAX: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct ScaleStorage {
    db: Db,
    s3: S3,
}

/// What `serve` needs to open the store.
pub struct ScaleOptions {
    pub metadata: String,
    pub blobs: String,
    pub credentials_file: Option<std::path::PathBuf>,
    /// The most PostgreSQL connections each of the two pools opens.
    pub pool_size: usize,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The folder of a key: everything before its last `/` ("" for a key without one).
fn dir_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(d, _)| d)
}

fn blob_object(digest: &Digest, unique: &str) -> String {
    format!(
        "blobs/{}/{}.{unique}",
        digest.algorithm().as_str(),
        digest.hex()
    )
}

fn parts_object(id: &str) -> String {
    format!("parts/{id}")
}

fn tails_prefix(id: &str) -> String {
    format!("data/{id}/")
}

/// The advisory lock key of upload session `id`.
fn session_lock_key(id: &str) -> i64 {
    let d = Digest::of(Algorithm::Sha256, format!("session:{id}").as_bytes());
    let bytes = hex::decode(&d.hex()[..16]).unwrap_or_default();
    i64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]))
}

impl ScaleStorage {
    /// Opens the store: checks the URLs and credentials, connects to PostgreSQL, migrates the
    /// schema, and checks the bucket. Any problem is one clear error.
    pub async fn open(o: &ScaleOptions) -> Result<Self, String> {
        let pg_config = pg::parse_url(&o.metadata)?;
        let s3_url = s3::S3Url::parse(&o.blobs)?;
        let creds = s3::credentials(o.credentials_file.as_deref())?;
        let s3 = S3::new(&s3_url, creds)?;
        let db = Db::connect(&pg_config, o.pool_size.max(2)).await?;
        s3.check().await?;
        Ok(ScaleStorage { db, s3 })
    }

    /// Statements sent to PostgreSQL since the store was opened.
    pub fn round_trips(&self) -> u64 {
        self.db
            .round_trips
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn blob_row(&self, digest: &Digest) -> StorageResult<Option<(u64, String)>> {
        let c = self.db.client().await?;
        let st = bounded(c.prepare_cached("SELECT size, location FROM er_blobs WHERE digest = $1"))
            .await?;
        self.db.count();
        let row = bounded(c.query_opt(&st, &[&digest.to_string()])).await?;
        Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1))))
    }

    /// Records a blob whose bytes are at `location`. When the digest is already recorded,
    /// the bytes at `location` are not needed and are removed.
    async fn record_blob(
        &self,
        digest: &Digest,
        size: u64,
        location: &str,
        upload: Option<&str>,
    ) -> StorageResult<()> {
        let mut c = self.db.client().await?;
        let tx = bounded(c.transaction()).await?;
        self.db.count();
        let inserted = bounded(tx.execute(
            "INSERT INTO er_blobs (digest, size, location, modified) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO NOTHING",
            &[&digest.to_string(), &(size as i64), &location, &now_secs()],
        ))
        .await?;
        if let Some(id) = upload {
            // In the same transaction: an upload is either still listed or its blob is
            // recorded, never both and never neither.
            self.db.count();
            bounded(tx.execute("DELETE FROM er_upload_data WHERE id = $1", &[&id])).await?;
        }
        self.db.count();
        bounded(tx.commit()).await?;
        if inserted == 0 {
            // Someone stored the same content first; ours is identical and not needed.
            self.s3.delete(location).await?;
        }
        Ok(())
    }

    /// Marks upload `id` as having data (before any byte of it goes to S3).
    async fn note_upload_data(&self, id: &str) -> StorageResult<()> {
        let c = self.db.client().await?;
        self.db.count();
        bounded(c.execute(
            "INSERT INTO er_upload_data (id, modified) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET modified = excluded.modified",
            &[&id, &now_secs()],
        ))
        .await?;
        Ok(())
    }

    /// Records the multipart upload of upload `id` (so it can be aborted without the
    /// session).
    async fn note_multipart(&self, id: &str, multipart: &str) -> StorageResult<()> {
        let c = self.db.client().await?;
        self.db.count();
        bounded(c.execute(
            "INSERT INTO er_upload_data (id, modified, multipart) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET multipart = excluded.multipart",
            &[&id, &now_secs(), &multipart],
        ))
        .await?;
        Ok(())
    }

    /// Assembles a chunked upload into its multipart object (its tail becomes the last
    /// part), unless that was done already; returns the object's key.
    async fn assemble(&self, id: &str, state: &UploadBackend) -> StorageResult<String> {
        let Some(mp) = &state.mp else {
            return Err(StorageError("upload has no parts to assemble".into()));
        };
        let key = parts_object(id);
        if self.s3.exists(&key).await? {
            return Ok(key);
        }
        let mut etags = state.parts.clone();
        if state.tail > 0 {
            let tail = self.read_tail(state).await?;
            let number = etags.len() as u16 + 1;
            etags.push(self.s3.upload_part(&key, mp, number, tail).await?);
        }
        self.s3.complete_multipart(&key, mp, &etags).await?;
        Ok(key)
    }

    async fn read_tail(&self, state: &UploadBackend) -> StorageResult<Bytes> {
        let key = state
            .tail_key
            .as_deref()
            .ok_or_else(|| StorageError("upload tail has no key".into()))?;
        let data = self
            .s3
            .get(key)
            .await?
            .ok_or_else(|| StorageError("upload tail is missing".into()))?;
        if (data.len() as u64) < state.tail {
            return Err(StorageError("upload tail is shorter than recorded".into()));
        }
        Ok(data.slice(..state.tail as usize))
    }

    async fn delete_tails(&self, id: &str) -> StorageResult<()> {
        let keys: Vec<String> = self
            .s3
            .list(&tails_prefix(id), 0)
            .await?
            .into_iter()
            .map(|l| l.key)
            .collect();
        self.s3.delete_many(&keys).await
    }
}

/// A session lock: an advisory lock held on a connection of its own for as long as the guard
/// lives. Dropping the guard unlocks and gives the connection back; if that cannot be done
/// (or the guard is dropped while the lock is being taken), the connection is closed, which
/// releases the lock in PostgreSQL. An instance that dies releases its locks the same way.
struct SessionLock {
    conn: Option<deadpool_postgres::Object>,
    key: i64,
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let unlocked = tokio::time::timeout(
                        Duration::from_secs(5),
                        conn.query_one("SELECT pg_advisory_unlock($1)", &[&key]),
                    )
                    .await;
                    if !matches!(unlocked, Ok(Ok(_))) {
                        // Closing the connection releases whatever it holds.
                        drop(deadpool_postgres::Object::take(conn));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(conn)),
        }
    }
}

/// Takes the advisory lock of `key` on `conn`, trying without blocking PostgreSQL (so a
/// request that gives up leaves nothing waiting there).
async fn take_lock(lock: &mut SessionLock) -> StorageResult<()> {
    let mut pause = Duration::from_millis(2);
    loop {
        let conn = lock
            .conn
            .as_ref()
            .ok_or_else(|| StorageError("no lock connection".into()))?;
        let got: bool = bounded(conn.query_one("SELECT pg_try_advisory_lock($1)", &[&lock.key]))
            .await?
            .get(0);
        if got {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LOCK_POLL_MAX);
    }
}

/// Detaches a lock connection from the pool unless `done`: a lock taken by a dropped future
/// must not go back to the pool still held.
struct Detach<'a>(&'a mut SessionLock, bool);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        if !self.1 {
            if let Some(conn) = self.0.conn.take() {
                drop(deadpool_postgres::Object::take(conn));
            }
        }
    }
}

#[async_trait::async_trait]
impl Storage for ScaleStorage {
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        let c = self.db.client().await?;
        let st = bounded(c.prepare_cached("SELECT value FROM er_objects WHERE key = $1")).await?;
        self.db.count();
        let row = bounded(c.query_opt(&st, &[&key])).await?;
        Ok(row.map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))))
    }

    async fn put(&self, key: &str, value: Bytes) -> StorageResult<()> {
        let c = self.db.client().await?;
        let st = bounded(c.prepare_cached(
            "INSERT INTO er_objects (key, dir, value, version) \
             VALUES ($1, $2, $3, nextval('er_versions')) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
        ))
        .await?;
        self.db.count();
        bounded(c.execute(&st, &[&key, &dir_of(key), &value.as_ref()])).await?;
        Ok(())
    }

    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, String)>> {
        let c = self.db.client().await?;
        let st = bounded(c.prepare_cached("SELECT value, version FROM er_objects WHERE key = $1"))
            .await?;
        self.db.count();
        let row = bounded(c.query_opt(&st, &[&key])).await?;
        Ok(row.map(|r| {
            (
                Bytes::from(r.get::<_, Vec<u8>>(0)),
                r.get::<_, i64>(1).to_string(),
            )
        }))
    }

    async fn put_if(&self, key: &str, value: Bytes, version: &str) -> StorageResult<bool> {
        let Ok(version) = version.parse::<i64>() else {
            return Ok(false);
        };
        let c = self.db.client().await?;
        let st = bounded(c.prepare_cached(
            "UPDATE er_objects SET value = $2, version = nextval('er_versions') \
             WHERE key = $1 AND version = $3",
        ))
        .await?;
        self.db.count();
        let n = bounded(c.execute(&st, &[&key, &value.as_ref(), &version])).await?;
        Ok(n == 1)
    }

    async fn put_new(&self, key: &str, value: Bytes) -> StorageResult<bool> {
        let c = self.db.client().await?;
        let st = bounded(c.prepare_cached(
            "INSERT INTO er_objects (key, dir, value, version) \
             VALUES ($1, $2, $3, nextval('er_versions')) ON CONFLICT (key) DO NOTHING",
        ))
        .await?;
        self.db.count();
        let n = bounded(c.execute(&st, &[&key, &dir_of(key), &value.as_ref()])).await?;
        Ok(n == 1)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let c = self.db.client().await?;
        let st = bounded(c.prepare_cached("DELETE FROM er_objects WHERE key = $1")).await?;
        self.db.count();
        bounded(c.execute(&st, &[&key])).await?;
        Ok(())
    }

    async fn list(&self, dir: &str, _fresh: Freshness) -> StorageResult<Vec<String>> {
        let c = self.db.client().await?;
        let st = bounded(c.prepare_cached("SELECT key FROM er_objects WHERE dir = $1")).await?;
        self.db.count();
        let rows = bounded(c.query(&st, &[&dir])).await?;
        let skip = if dir.is_empty() { 0 } else { dir.len() + 1 };
        Ok(rows
            .into_iter()
            .filter_map(|r| r.get::<_, String>(0).get(skip..).map(str::to_string))
            .collect())
    }

    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        Ok(self.blob_row(digest).await?.map(|(size, _)| size))
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<Body>> {
        let Some((size, location)) = self.blob_row(digest).await? else {
            return Ok(None);
        };
        if len == 0 || size == 0 {
            return Ok(Some(Body::Empty));
        }
        Ok(self
            .s3
            .get_range(&location, start, len)
            .await?
            .map(Body::Stream))
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()> {
        if self.blob_row(digest).await?.is_some() {
            return Ok(());
        }
        let location = blob_object(digest, &crate::upload::new_upload_id());
        let size = data.len() as u64;
        self.s3.put(&location, data).await?;
        self.record_blob(digest, size, &location, None).await
    }

    async fn list_blobs(&self, cursor: Option<&str>, limit: usize) -> StorageResult<BlobPage> {
        let limit = limit.max(1);
        let after = cursor.unwrap_or("");
        let c = self.db.client().await?;
        self.db.count();
        let rows = bounded(c.query(
            "SELECT digest, size, modified FROM er_blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
            &[&after, &(limit as i64 + 1)],
        ))
        .await?;
        let more = rows.len() > limit;
        let mut blobs = Vec::with_capacity(limit);
        for r in rows.into_iter().take(limit) {
            let d: String = r.get(0);
            let digest = Digest::parse(&d)
                .map_err(|_| StorageError(format!("a blob row names no digest: {d}")))?;
            blobs.push(BlobInfo {
                digest,
                size: r.get::<_, i64>(1) as u64,
                modified: r.get::<_, i64>(2).max(0) as u64,
            });
        }
        let next = if more {
            blobs.last().map(|b| b.digest.to_string())
        } else {
            None
        };
        Ok(BlobPage { blobs, next })
    }

    /// One statement: the tag (or the digest), the record with its version, and the blob's
    /// row; then, for a GET, the bytes from S3 straight away.
    async fn lookup_manifest(
        &self,
        key: ManifestKey<'_>,
        records: &str,
        read: bool,
    ) -> StorageResult<ManifestLookup> {
        let c = self.db.client().await?;
        let row = match key {
            ManifestKey::Tag(tag) => {
                // A tag holds `alg:hex`; its record is `<records>/alg/hex` (`escape`: any
                // bytes read as text, so a corrupt tag is the core's to report).
                let st = bounded(c.prepare_cached(
                    "SELECT t.value, r.value, r.version, b.size, b.location \
                     FROM er_objects t \
                     LEFT JOIN er_objects r \
                       ON r.key = $2 || '/' || replace(encode(t.value, 'escape'), ':', '/') \
                     LEFT JOIN er_blobs b ON b.digest = encode(t.value, 'escape') \
                     WHERE t.key = $1",
                ))
                .await?;
                self.db.count();
                bounded(c.query_opt(&st, &[&tag, &records])).await?
            }
            ManifestKey::Digest(d) => {
                let record = format!("{records}/{}/{}", d.algorithm().as_str(), d.hex());
                let st = bounded(c.prepare_cached(
                    "SELECT $1::text::bytea, r.value, r.version, b.size, b.location \
                     FROM (SELECT $1::text AS d) q \
                     LEFT JOIN er_objects r ON r.key = $2 \
                     LEFT JOIN er_blobs b ON b.digest = q.d",
                ))
                .await?;
                self.db.count();
                bounded(c.query_opt(&st, &[&d.to_string(), &record])).await?
            }
        };
        drop(c);
        let Some(row) = row else {
            return Ok(ManifestLookup::default());
        };
        let target = Bytes::from(row.get::<_, Vec<u8>>(0));
        let record = row
            .get::<_, Option<Vec<u8>>>(1)
            .zip(row.get::<_, Option<i64>>(2))
            .map(|(v, version)| (Bytes::from(v), version.to_string()));
        let blob = row
            .get::<_, Option<i64>>(3)
            .zip(row.get::<_, Option<String>>(4));
        let body = match (read, &record, blob) {
            (true, Some(_), None) => Some(None),
            (true, Some(_), Some((0, _))) => Some(Some(Body::Empty)),
            (true, Some(_), Some((size, location))) => Some(
                self.s3
                    .get_range(&location, 0, size as u64)
                    .await?
                    .map(Body::Stream),
            ),
            _ => None,
        };
        Ok(ManifestLookup {
            target: Some(target),
            record,
            body,
        })
    }

    async fn blob_delete(&self, digest: &Digest) -> StorageResult<()> {
        let c = self.db.client().await?;
        self.db.count();
        let row = bounded(c.query_opt(
            "DELETE FROM er_blobs WHERE digest = $1 RETURNING location",
            &[&digest.to_string()],
        ))
        .await?;
        drop(c);
        // The row first: a crash before the bytes go leaves bytes nothing points to.
        if let Some(r) = row {
            let location: String = r.get(0);
            self.s3.delete(&location).await?;
        }
        Ok(())
    }

    async fn lock_session(&self, id: &str) -> Box<dyn SessionGuard> {
        let conn = match self.db.lock_client().await {
            Ok(c) => c,
            Err(e) => {
                // The request goes on and meets the same failure at its first statement
                // (a 503); the session's compare-and-set still guards its state.
                tracing::warn!(error = %e, "could not take an upload session lock");
                return Box::new(());
            }
        };
        let mut lock = SessionLock {
            conn: Some(conn),
            key: session_lock_key(id),
        };
        let mut detach = Detach(&mut lock, false);
        match take_lock(&mut *detach.0).await {
            Ok(()) => {
                detach.1 = true;
                drop(detach);
                Box::new(lock)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not take an upload session lock");
                drop(detach);
                Box::new(())
            }
        }
    }

    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
        backend: Option<&str>,
    ) -> StorageResult<Box<dyn UploadWriter>> {
        let state = UploadBackend::decode(backend)?;
        if state.offset() != offset {
            return Err(StorageError(
                "upload state does not match its offset".into(),
            ));
        }
        self.note_upload_data(id).await?;
        Ok(Box::new(ScaleWriter::new(self.clone(), id, state)))
    }

    async fn upload_read(
        &self,
        id: &str,
        len: u64,
        backend: Option<&str>,
    ) -> StorageResult<ByteStream> {
        let state = UploadBackend::decode(backend)?;
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let stream = if state.mp.is_some() {
            let key = self.assemble(id, &state).await?;
            self.s3.get_range(&key, 0, len).await?
        } else {
            let key = state
                .tail_key
                .as_deref()
                .ok_or_else(|| StorageError("upload has no data".into()))?;
            self.s3.get_range(key, 0, len).await?
        };
        stream.ok_or_else(|| StorageError("upload data is missing".into()))
    }

    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
        backend: Option<&str>,
    ) -> StorageResult<()> {
        if self.blob_row(digest).await?.is_some() {
            return self.upload_delete(id, backend).await;
        }
        let state = UploadBackend::decode(backend)?;
        if state.offset() < size {
            return Err(StorageError(
                "upload data is shorter than its recorded size".into(),
            ));
        }
        let location = if state.mp.is_none() || size == 0 {
            // Smaller than a part: the tail is the whole blob, copied to a key of its own (so
            // nothing under data/ is ever a blob).
            let data = if size == 0 {
                Bytes::new()
            } else {
                self.read_tail(&state).await?.slice(..size as usize)
            };
            let location = blob_object(digest, id);
            self.s3.put(&location, data).await?;
            location
        } else {
            if state.offset() != size {
                return Err(StorageError(
                    "a multipart upload commits all of its data".into(),
                ));
            }
            self.assemble(id, &state).await?
        };
        self.record_blob(digest, size, &location, Some(id)).await?;
        // The tails are in the blob now, or copied (a failure here leaves them to the sweep
        // of upload data: the upload is no longer listed, so only by prefix).
        self.delete_tails(id).await
    }

    async fn upload_delete(&self, id: &str, backend: Option<&str>) -> StorageResult<()> {
        let state = UploadBackend::decode(backend).unwrap_or_default();
        let c = self.db.client().await?;
        self.db.count();
        let row =
            bounded(c.query_opt("SELECT multipart FROM er_upload_data WHERE id = $1", &[&id]))
                .await?;
        drop(c);
        let mut multiparts: Vec<String> = state.mp.iter().cloned().collect();
        if let Some(Some(mp)) = row.as_ref().map(|r| r.get::<_, Option<String>>(0)) {
            if !multiparts.contains(&mp) {
                multiparts.push(mp);
            }
        }
        for mp in &multiparts {
            self.s3.abort_multipart(&parts_object(id), mp).await?;
        }
        if row.is_some() {
            // Still listed, so never committed: an assembled object (upload_read) is ours.
            self.s3.delete(&parts_object(id)).await?;
        }
        self.delete_tails(id).await?;
        let c = self.db.client().await?;
        self.db.count();
        bounded(c.execute("DELETE FROM er_upload_data WHERE id = $1", &[&id])).await?;
        Ok(())
    }

    async fn list_upload_data(&self) -> StorageResult<Vec<UploadData>> {
        let c = self.db.client().await?;
        self.db.count();
        let rows = bounded(c.query("SELECT id, modified FROM er_upload_data", &[])).await?;
        Ok(rows
            .into_iter()
            .map(|r| UploadData {
                id: r.get(0),
                modified: r.get::<_, i64>(1).max(0) as u64,
            })
            .collect())
    }
}

/// Everything stored, for the storage suite: rows as `meta/<key>`, `blob-rows/<digest>` and
/// `upload-rows/<id>`, and every S3 object by its key.
#[async_trait::async_trait]
impl crate::storage::suite::Inspect for ScaleStorage {
    async fn stored_keys(&self) -> StorageResult<Vec<String>> {
        let c = self.db.client().await?;
        let mut keys = Vec::new();
        for r in bounded(c.query("SELECT key FROM er_objects", &[])).await? {
            keys.push(format!("meta/{}", r.get::<_, String>(0)));
        }
        for r in bounded(c.query("SELECT digest FROM er_blobs", &[])).await? {
            keys.push(format!("blob-rows/{}", r.get::<_, String>(0)));
        }
        for r in bounded(c.query("SELECT id FROM er_upload_data", &[])).await? {
            keys.push(format!("upload-rows/{}", r.get::<_, String>(0)));
        }
        drop(c);
        let objects = self.s3.list("", 0).await?;
        keys.extend(objects.into_iter().map(|o| o.key));
        Ok(keys)
    }
}
