//! Storage on R2 (everything that must be read back at once) with KV as a cache only (of
//! listings the core asks for with [`Freshness::Cached`]).
//!
//! Keys in the bucket:
//! - `meta/<key>`: the small objects (links, tags, referrers, catalog, upload states);
//! - `blobs/<alg>/<hex>`: a blob, either its bytes or, for a chunked upload of at least one
//!   full part, an empty object whose custom metadata `location` names where its bytes are and
//!   `size` their size (so completing an upload never copies its parts);
//! - `parts/<id>`: the multipart object a chunked upload is assembled into (`data/<id>/parts`
//!   for sessions and blobs from before this layout, still read);
//! - `data/<id>/tail/<offset>-<random>`: the bytes of an upload past its last full part.
//!
//! So everything under `data/` is upload data that no blob uses: a chunked upload smaller than
//! a part is copied from its tail to `blobs/` when committed (under [`PART_SIZE`], and read back
//! once anyway when it is larger). Blobs committed before this layout may still point into
//! `data/` (see [`Storage::list_upload_data`] below).
//!
//! R2 wants every part of a multipart upload but the last to have the same size, and clients
//! send chunks of any size (docker sends a whole layer in one PATCH). So the writer re-chunks:
//! it uploads full [`PART_SIZE`] parts as they fill and keeps the remainder in a small tail
//! object. Every request writes a tail of its own (named by its offset and a random suffix) and
//! the session's state names the current one, so the state always names a tail that exists,
//! even if a later request dies half-way or loses a race on the session (the session's state
//! is saved with an R2 etag condition).

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::TryStreamExt;
use worker::{Bucket, Conditional, Include, KvStore, Range, UploadedPart};

use crate::body::{Body, BoxError, ByteStream};
use crate::digest::{Algorithm, Digest};
use crate::storage::{
    BlobInfo, BlobPage, DirectPut, Freshness, Storage, StorageError, StorageResult, UploadData,
    UploadWriter,
};

mod writer;

use writer::{R2Writer, UploadBackend};

/// The size of every multipart part but the last: 10 MiB, so 10,000 parts hold 100 GiB.
pub const PART_SIZE: usize = 10 * 1024 * 1024;
/// R2's limit on the number of parts.
const MAX_PARTS: usize = 10_000;
/// The most keys one R2 list call returns.
const LIST_MAX: usize = 1000;
/// KV's limit on the length of a key.
const KV_KEY_MAX: usize = 512;

fn err(e: impl std::fmt::Display) -> StorageError {
    StorageError(e.to_string())
}

#[derive(Clone)]
pub struct R2Storage {
    bucket: Bucket,
    /// Where `Cached` listings are kept, for `cache_ttl` seconds (0: not cached).
    cache: Option<KvStore>,
    cache_ttl: u64,
}

fn meta_key(key: &str) -> String {
    format!("meta/{key}")
}

fn blob_key(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

/// The digest a `blobs/` key names.
fn blob_of_key(key: &str) -> Option<Digest> {
    let (alg, hex) = key.strip_prefix("blobs/")?.split_once('/')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// Where a new chunked upload assembles its parts: outside `data/`, since it becomes the blob.
fn parts_key(id: &str) -> String {
    format!("parts/{id}")
}

fn tail_key(id: &str, name: &str) -> String {
    format!("data/{id}/tail/{name}")
}

fn tails_prefix(id: &str) -> String {
    format!("data/{id}/tail/")
}

/// The KV key of a cached listing of `dir`: the folder itself when KV takes a key that long.
fn list_cache_key(dir: &str) -> String {
    let key = format!("list-v1:{dir}");
    if key.len() <= KV_KEY_MAX {
        key
    } else {
        format!(
            "list-v1#{}",
            Digest::of(Algorithm::Sha256, dir.as_bytes()).hex()
        )
    }
}

/// Seconds since the Unix epoch of an R2 upload time.
fn seconds(date: worker::Date) -> u64 {
    date.as_millis() / 1000
}

fn empty_stream() -> ByteStream {
    Box::pin(futures_util::stream::empty())
}

impl R2Storage {
    pub fn new(bucket: Bucket, cache: Option<KvStore>, cache_ttl: u64) -> Self {
        R2Storage {
            bucket,
            cache,
            cache_ttl,
        }
    }

    async fn read_all(&self, key: &str) -> StorageResult<Option<Vec<u8>>> {
        let Some(obj) = self.bucket.get(key).execute().await.map_err(err)? else {
            return Ok(None);
        };
        match obj.body() {
            Some(body) => Ok(Some(body.bytes().await.map_err(err)?)),
            None => Ok(Some(Vec::new())),
        }
    }

    /// Where a blob's bytes are, and its size.
    async fn locate(&self, d: &Digest) -> StorageResult<Option<(String, u64)>> {
        let key = blob_key(d);
        let Some(obj) = self.bucket.head(&key).await.map_err(err)? else {
            return Ok(None);
        };
        let meta = obj.custom_metadata().map_err(err)?;
        match (meta.get("location"), meta.get("size")) {
            (Some(loc), Some(size)) => Ok(Some((loc.clone(), size.parse().map_err(err)?))),
            _ => Ok(Some((key, obj.size()))),
        }
    }

    async fn list_all(&self, prefix: &str, delimiter: bool) -> StorageResult<Vec<String>> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = self.bucket.list().prefix(prefix);
            if delimiter {
                q = q.delimiter("/");
            }
            if let Some(c) = cursor.take() {
                q = q.cursor(c);
            }
            let page = q.execute().await.map_err(err)?;
            for obj in page.objects() {
                names.push(obj.key()[prefix.len()..].to_string());
            }
            if !page.truncated() {
                break;
            }
            cursor = page.cursor();
            if cursor.is_none() {
                break;
            }
        }
        Ok(names)
    }

    /// Every object under `prefix` (no delimiter), a page at a time, with its upload time.
    async fn objects_under(&self, prefix: &str) -> StorageResult<Vec<(String, u64)>> {
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = self.bucket.list().prefix(prefix);
            if let Some(c) = cursor.take() {
                q = q.cursor(c);
            }
            let page = q.execute().await.map_err(err)?;
            for obj in page.objects() {
                found.push((obj.key(), seconds(obj.uploaded())));
            }
            cursor = page.cursor().filter(|_| page.truncated());
            if cursor.is_none() {
                return Ok(found);
            }
        }
    }

    /// The keys of every object in the bucket (for the storage suite).
    #[cfg(feature = "storage-suite")]
    pub(crate) async fn stored_keys(&self) -> StorageResult<Vec<String>> {
        Ok(self
            .objects_under("")
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    async fn delete_prefix(&self, prefix: &str) -> StorageResult<()> {
        let keys: Vec<String> = self
            .list_all(prefix, false)
            .await?
            .into_iter()
            .map(|k| format!("{prefix}{k}"))
            .collect();
        for chunk in keys.chunks(1000) {
            self.bucket
                .delete_multiple(chunk.to_vec())
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Assembles a chunked upload into one object (its tail becomes the last part), unless
    /// that was done already; returns the object's key.
    async fn assemble(&self, id: &str, state: &UploadBackend) -> StorageResult<String> {
        let Some(mp) = &state.mp else {
            // Never reached a full part: the tail object is the whole blob.
            return Ok(state.tail_object(id));
        };
        let key = state.parts_object(id);
        if self.bucket.head(&key).await.map_err(err)?.is_some() {
            return Ok(key);
        }
        let upload = self.bucket.resume_multipart_upload(&key, mp).map_err(err)?;
        let mut parts: Vec<UploadedPart> = state
            .parts
            .iter()
            .enumerate()
            .map(|(i, etag)| UploadedPart::new(i as u16 + 1, etag.clone()))
            .collect();
        if state.tail > 0 {
            let tail = self
                .read_all(&state.tail_object(id))
                .await?
                .ok_or_else(|| err("upload tail is missing"))?;
            let part = upload
                .upload_part(parts.len() as u16 + 1, tail)
                .await
                .map_err(err)?;
            parts.push(part);
        }
        upload.complete(parts).await.map_err(err)?;
        Ok(key)
    }
}

#[async_trait::async_trait(?Send)]
impl Storage for R2Storage {
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        Ok(self.read_all(&meta_key(key)).await?.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes) -> StorageResult<()> {
        self.bucket
            .put(meta_key(key), value.to_vec())
            .execute()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, String)>> {
        let Some(obj) = self
            .bucket
            .get(meta_key(key))
            .execute()
            .await
            .map_err(err)?
        else {
            return Ok(None);
        };
        let etag = obj.etag();
        let data = match obj.body() {
            Some(body) => body.bytes().await.map_err(err)?,
            None => Vec::new(),
        };
        Ok(Some((Bytes::from(data), etag)))
    }

    async fn put_if(&self, key: &str, value: Bytes, version: &str) -> StorageResult<bool> {
        // R2 checks the etag and writes in one step; it answers null when the check fails.
        let put = self
            .bucket
            .put(meta_key(key), value.to_vec())
            .only_if(Conditional {
                etag_matches: Some(version.to_string()),
                ..Default::default()
            });
        Ok(put.execute().await.map_err(err)?.is_some())
    }

    async fn put_new(&self, key: &str, value: Bytes) -> StorageResult<bool> {
        // `etagDoesNotMatch: *`: R2 writes only when no object is there, in one step.
        let put = self
            .bucket
            .put(meta_key(key), value.to_vec())
            .only_if(Conditional {
                etag_does_not_match: Some("*".to_string()),
                ..Default::default()
            });
        Ok(put.execute().await.map_err(err)?.is_some())
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.bucket.delete(meta_key(key)).await.map_err(err)
    }

    async fn list(&self, dir: &str, fresh: Freshness) -> StorageResult<Vec<String>> {
        // A listing that may be a little stale is served from KV, and kept there when listed.
        let cache = self
            .cache
            .as_ref()
            .filter(|_| fresh == Freshness::Cached && self.cache_ttl > 0)
            .map(|kv| (kv, list_cache_key(dir)));
        if let Some((kv, key)) = &cache {
            if let Ok(Some(cached)) = kv.get(key).json::<Vec<String>>().await {
                return Ok(cached);
            }
        }
        let names = self.list_all(&format!("{}/", meta_key(dir)), true).await?;
        if let Some((kv, key)) = &cache {
            if let Ok(put) = kv.put(key, &names) {
                // KV takes at least 60 s; a failed cache write only costs the next list.
                let _ = put.expiration_ttl(self.cache_ttl.max(60)).execute().await;
            }
        }
        Ok(names)
    }

    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        Ok(self.locate(digest).await?.map(|(_, size)| size))
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<Body>> {
        let Some((key, size)) = self.locate(digest).await? else {
            return Ok(None);
        };
        if len == 0 || size == 0 {
            return Ok(Some(Body::Empty));
        }
        let mut q = self.bucket.get(&key);
        if start != 0 || len != size {
            q = q.range(Range::OffsetWithLength {
                offset: start,
                length: len,
            });
        }
        let Some(obj) = q.execute().await.map_err(err)? else {
            return Ok(None);
        };
        let Some(body) = obj.body() else {
            return Ok(Some(Body::Empty));
        };
        // Hand R2's stream straight to the response: the bytes never enter wasm.
        let stream = body.response_body().map_err(err)?;
        match stream {
            worker::ResponseBody::Stream(s) => Ok(Some(super::native_body(s))),
            worker::ResponseBody::Body(b) => Ok(Some(Body::Full(Bytes::from(b)))),
            worker::ResponseBody::Empty => Ok(Some(Body::Empty)),
        }
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()> {
        self.bucket
            .put(blob_key(digest), data.to_vec())
            .execute()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn list_blobs(&self, cursor: Option<&str>, limit: usize) -> StorageResult<BlobPage> {
        // The cursor is the key, less `blobs/`, of the last object looked at.
        let limit = limit.max(1);
        let mut blobs = Vec::new();
        let mut last: Option<String> = cursor.map(|c| format!("blobs/{c}"));
        let mut r2_cursor: Option<String> = None;
        loop {
            let want = (limit - blobs.len()).min(LIST_MAX) as u32;
            let mut q = self
                .bucket
                .list()
                .prefix("blobs/")
                .limit(want)
                .include(vec![Include::CustomMetadata]);
            q = match (r2_cursor.take(), &last) {
                (Some(c), _) => q.cursor(c),
                (None, Some(after)) => q.start_after(after.clone()),
                (None, None) => q,
            };
            let page = q.execute().await.map_err(err)?;
            for obj in page.objects() {
                let key = obj.key();
                if let Some(digest) = blob_of_key(&key) {
                    let meta = obj.custom_metadata().map_err(err)?;
                    let size = match (meta.get("location"), meta.get("size")) {
                        (Some(_), Some(size)) => size.parse().map_err(err)?,
                        _ => obj.size(),
                    };
                    blobs.push(BlobInfo {
                        digest,
                        size,
                        modified: seconds(obj.uploaded()),
                    });
                }
                last = Some(key);
            }
            r2_cursor = page.cursor().filter(|_| page.truncated());
            if r2_cursor.is_none() {
                return Ok(BlobPage { blobs, next: None });
            }
            if blobs.len() >= limit {
                let next = last.and_then(|k| k.strip_prefix("blobs/").map(str::to_string));
                return Ok(BlobPage { blobs, next });
            }
        }
    }

    async fn blob_delete(&self, digest: &Digest) -> StorageResult<()> {
        let key = blob_key(digest);
        let Some(obj) = self.bucket.head(&key).await.map_err(err)? else {
            return Ok(());
        };
        let meta = obj.custom_metadata().map_err(err)?;
        // The pointer first: a crash before the bytes go leaves bytes nothing points to.
        self.bucket.delete(&key).await.map_err(err)?;
        if let Some(location) = meta.get("location") {
            // Only ever an upload's object, never another blob.
            if location.starts_with("parts/") || location.starts_with("data/") {
                self.bucket.delete(location).await.map_err(err)?;
            }
        }
        Ok(())
    }

    async fn blob_put_direct(
        &self,
        digest: &Digest,
        size: u64,
        body: Body,
    ) -> StorageResult<DirectPut> {
        let stream = match super::take_native(body) {
            Ok(s) => s,
            Err(body) => return Ok(DirectPut::Declined(body)),
        };
        if size == 0 {
            // An empty request has no stream to check; let the core do it.
            return Ok(DirectPut::Declined(super::native_body(stream)));
        }
        let checksum = hex::decode(digest.hex()).map_err(err)?;
        let put = self
            .bucket
            .put(blob_key(digest), worker::Data::ReadableStream(stream));
        let put = match digest.algorithm() {
            Algorithm::Sha256 => put.sha256(checksum),
            Algorithm::Sha512 => put.sha512(checksum),
        };
        match put.execute().await {
            Ok(_) => Ok(DirectPut::Stored),
            // R2 refuses a body that does not match its checksum, and stores nothing.
            Err(e)
                if e.to_string().to_ascii_lowercase().contains("checksum")
                    || e.to_string().to_ascii_lowercase().contains("digest") =>
            {
                Ok(DirectPut::Mismatch)
            }
            Err(e) => Err(err(e)),
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
            return Err(err("upload state does not match its offset"));
        }
        Ok(Box::new(R2Writer::new(self.clone(), id, state)))
    }

    async fn upload_read(
        &self,
        id: &str,
        len: u64,
        backend: Option<&str>,
    ) -> StorageResult<ByteStream> {
        let state = UploadBackend::decode(backend)?;
        if len == 0 {
            return Ok(empty_stream());
        }
        let key = self.assemble(id, &state).await?;
        let obj = self
            .bucket
            .get(&key)
            .range(Range::Prefix { length: len })
            .execute()
            .await
            .map_err(err)?
            .ok_or_else(|| err("upload data is missing"))?;
        let body = obj.body().ok_or_else(|| err("upload data has no body"))?;
        let stream = body.stream().map_err(err)?;
        Ok(Box::pin(stream.map_ok(Bytes::from).map_err(|e| {
            Box::new(std::io::Error::other(e.to_string())) as BoxError
        })))
    }

    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
        backend: Option<&str>,
    ) -> StorageResult<()> {
        let key = blob_key(digest);
        if self.bucket.head(&key).await.map_err(err)?.is_some() {
            return self.upload_delete(id, backend).await;
        }
        if size == 0 {
            self.bucket
                .put(&key, Vec::new())
                .execute()
                .await
                .map_err(err)?;
            return self.upload_delete(id, backend).await;
        }
        let state = UploadBackend::decode(backend)?;
        if state.mp.is_none() {
            // Smaller than a part: the tail is the whole blob. It is copied to the blob's key
            // (R2 checks the digest once more), so no blob keeps its bytes among upload data.
            let mut data = self
                .read_all(&state.tail_object(id))
                .await?
                .ok_or_else(|| err("upload tail is missing"))?;
            if (data.len() as u64) < size {
                return Err(err("upload data is shorter than its recorded size"));
            }
            data.truncate(size as usize);
            let checksum = hex::decode(digest.hex()).map_err(err)?;
            let put = self.bucket.put(&key, data);
            let put = match digest.algorithm() {
                Algorithm::Sha256 => put.sha256(checksum),
                Algorithm::Sha512 => put.sha512(checksum),
            };
            put.execute().await.map_err(err)?;
            return self.delete_prefix(&tails_prefix(id)).await;
        }
        let location = self.assemble(id, &state).await?;
        let meta = HashMap::from([
            ("location".to_string(), location),
            ("size".to_string(), size.to_string()),
        ]);
        // Two uploads of the same digest that race here both point it at identical bytes;
        // whichever record lands last wins, and the other's data is merely unreferenced.
        self.bucket
            .put(&key, Vec::new())
            .custom_metadata(meta)
            .execute()
            .await
            .map_err(err)?;
        // The tails are part of the assembled object now (a crash before this leaves them to
        // the session's expiry).
        self.delete_prefix(&tails_prefix(id)).await
    }

    async fn upload_delete(&self, id: &str, backend: Option<&str>) -> StorageResult<()> {
        let state = UploadBackend::decode(backend).unwrap_or_default();
        if let Some(mp) = &state.mp {
            if let Ok(upload) = self
                .bucket
                .resume_multipart_upload(state.parts_object(id), mp)
            {
                let _ = upload.abort().await;
            }
        }
        self.delete_prefix(&tails_prefix(id)).await
    }

    /// One walk of `data/` (a list call per 1,000 objects): an upload's time is its newest
    /// tail's. Objects named `data/<id>/parts` are skipped: those are assembled uploads of the
    /// old layout, which may be blobs. (A blob committed from a single tail before the current
    /// layout points at that tail under `data/`: such a tail is listed here.)
    async fn list_upload_data(&self) -> StorageResult<Vec<UploadData>> {
        let mut newest: HashMap<String, u64> = HashMap::new();
        for (key, uploaded) in self.objects_under("data/").await? {
            let Some((id, rest)) = key["data/".len()..].split_once('/') else {
                continue;
            };
            if rest == "parts" {
                continue;
            }
            let t = newest.entry(id.to_string()).or_default();
            *t = (*t).max(uploaded);
        }
        Ok(newest
            .into_iter()
            .map(|(id, modified)| UploadData { id, modified })
            .collect())
    }
}
