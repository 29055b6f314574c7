//! The domain layer: repositories over a [`Storage`]. It owns the key layout ([`keys`]), the
//! manifest record, the order in which content and links are written, and the upload session's
//! compare-and-set and claim ([`uploads`]). Handlers parse a request, call this, and build the
//! response; every change made and every pull served is emitted as an [`Event`].
//!
//! Content is written before the links that make it visible: a crash in between leaves
//! unreferenced bytes, never a dangling tag or link.

pub mod keys;
pub mod manifests;
pub mod uploads;

use std::sync::Arc;

use bytes::Bytes;

use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Error, ErrorCode};
use crate::event::{Event, Events};
use crate::manifest::Descriptor;
use crate::names::Name;
use crate::storage::{Freshness, Storage};

pub use manifests::ManifestRecord;

type Result<T> = std::result::Result<T, Error>;

/// Repositories, blobs, manifests, tags, referrers and upload sessions over a [`Storage`].
/// Cheap to clone: clones share the storage (a mirrored blob's fill holds one while it streams).
pub struct Store<S> {
    storage: Arc<S>,
    /// Whether a garbage collector may run on this storage, so that reads and pushes must
    /// follow its protocol (`crate::gc::guard`). On by default; a deployment where no collector
    /// can run (the Worker, until its cron collector exists) turns it off and saves the reads.
    guarded: bool,
}

impl<S> Clone for Store<S> {
    fn clone(&self) -> Self {
        Store {
            storage: self.storage.clone(),
            guarded: self.guarded,
        }
    }
}

impl<S: Storage> Store<S> {
    pub fn new(storage: S) -> Self {
        Store {
            storage: Arc::new(storage),
            guarded: true,
        }
    }

    /// Declares that no garbage collector ever runs on this storage (see [`Store::guarded`]).
    pub fn without_collector(mut self) -> Self {
        self.guarded = false;
        self
    }

    /// A blob's collection state for a read or a push: `false` when it is being deleted (see
    /// `crate::gc::guard::still_there`); always `true` without a collector.
    async fn still_there(&self, digest: &Digest) -> Result<bool> {
        if !self.guarded {
            return Ok(true);
        }
        Ok(crate::gc::guard::still_there(&*self.storage, digest).await?)
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.storage.get(key).await?.is_some())
    }

    /// Writes an empty marker object unless it is there already.
    async fn ensure(&self, key: &str) -> Result<()> {
        if !self.exists(key).await? {
            self.storage.put(key, Bytes::new()).await?;
        }
        Ok(())
    }

    // ---- repositories ---------------------------------------------------------------------

    /// Whether the repository has ever received content.
    pub async fn repository_exists(&self, name: &Name) -> Result<bool> {
        self.exists(&keys::catalog_entry(name)).await
    }

    /// Every repository's name, sorted. The catalog is the one listing that may be a little
    /// stale (the Worker caches it).
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .storage
            .list(keys::CATALOG_DIR, Freshness::Cached)
            .await?
            .iter()
            .map(|e| keys::catalog_name(e))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn add_to_catalog(&self, name: &Name) -> Result<()> {
        self.ensure(&keys::catalog_entry(name)).await
    }

    // ---- blobs ----------------------------------------------------------------------------

    /// Whether the blob is linked into the repository.
    pub async fn blob_linked(&self, name: &Name, digest: &Digest) -> Result<bool> {
        self.exists(&keys::blob_link(name, digest)).await
    }

    /// The size of a blob linked into the repository, or `None` (not linked, or not stored).
    pub async fn blob_size(&self, name: &Name, digest: &Digest) -> Result<Option<u64>> {
        if !self.blob_linked(name, digest).await? {
            return Ok(None);
        }
        Ok(self.storage.blob_size(digest).await?)
    }

    /// As [`Store::blob_size`], for a read that may lead a client to reference the blob (HEAD,
    /// GET): while a collection is under way, a condemned blob is revived, and one being
    /// deleted is unknown.
    pub async fn blob_readable(&self, name: &Name, digest: &Digest) -> Result<Option<u64>> {
        let size = self.blob_size(name, digest).await?;
        if size.is_some() && !self.still_there(digest).await? {
            return Ok(None);
        }
        Ok(size)
    }

    /// `len` bytes of a blob from `start`, emitting a pull.
    pub async fn read_blob(
        &self,
        name: &Name,
        digest: &Digest,
        start: u64,
        len: u64,
        events: &mut Events,
    ) -> Result<Option<Body>> {
        let body = self.storage.blob_read(digest, start, len).await?;
        if body.is_some() {
            events.push(Event::BlobPulled {
                repo: name.clone(),
                digest: digest.clone(),
                size: len,
            });
        }
        Ok(body)
    }

    /// Links a stored blob into the repository (and the repository into the catalog).
    async fn link_blob(&self, name: &Name, digest: &Digest) -> Result<()> {
        self.ensure(&keys::blob_link(name, digest)).await?;
        self.add_to_catalog(name).await
    }

    /// A blob was stored by an upload: links it, emitting a push.
    pub async fn blob_stored(
        &self,
        name: &Name,
        digest: &Digest,
        size: u64,
        events: &mut Events,
    ) -> Result<()> {
        self.link_blob(name, digest).await?;
        // The bytes may have been there already and be in the middle of being collected (see
        // `crate::gc`): revive them, or refuse the upload so that the client sends it again.
        if self.guarded
            && (!self.still_there(digest).await? || self.storage.blob_size(digest).await?.is_none())
        {
            self.storage.delete(&keys::blob_link(name, digest)).await?;
            return Err(Error::new(ErrorCode::TooManyRequests)
                .with_message("the blob was being garbage-collected; send it again")
                .with_detail(serde_json::json!({ "digest": digest.to_string() })));
        }
        events.push(Event::BlobPushed {
            repo: name.clone(),
            digest: digest.clone(),
            size,
        });
        Ok(())
    }

    /// Links a blob of `from` into `name` without copying it, if `from` has it; `false` when
    /// it cannot be mounted.
    pub async fn mount_blob(
        &self,
        name: &Name,
        from: &Name,
        digest: &Digest,
        events: &mut Events,
    ) -> Result<bool> {
        let Some(size) = self.blob_readable(from, digest).await? else {
            return Ok(false);
        };
        self.link_blob(name, digest).await?;
        events.push(Event::BlobMounted {
            repo: name.clone(),
            from: from.clone(),
            digest: digest.clone(),
            size,
        });
        Ok(true)
    }

    /// Unlinks a blob from the repository; BLOB_UNKNOWN when it is not linked.
    pub async fn unlink_blob(
        &self,
        name: &Name,
        digest: &Digest,
        events: &mut Events,
    ) -> Result<()> {
        let key = keys::blob_link(name, digest);
        if !self.exists(&key).await? {
            return Err(Error::new(ErrorCode::BlobUnknown)
                .with_detail(serde_json::json!({ "digest": digest.to_string() })));
        }
        self.storage.delete(&key).await?;
        events.push(Event::BlobDeleted {
            repo: name.clone(),
            digest: digest.clone(),
        });
        Ok(())
    }

    // ---- referrers ------------------------------------------------------------------------

    /// The descriptors of the manifests whose subject is `subject`, sorted by digest.
    pub async fn referrers(&self, name: &Name, subject: &Digest) -> Result<Vec<Descriptor>> {
        let dir = keys::referrers_dir(name, subject);
        let mut out: Vec<Descriptor> = Vec::new();
        for entry in self.storage.list(&dir, Freshness::Current).await? {
            let Some(raw) = self.storage.get(&format!("{dir}/{entry}")).await? else {
                continue;
            };
            // A record that does not parse (none should) is left out, not a failure of the list.
            if let Ok(desc) = serde_json::from_slice::<Descriptor>(&raw) {
                out.push(desc);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }
}
