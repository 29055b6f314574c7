//! Manifests in a repository: the record kept beside their bytes, resolving a tag or digest,
//! storing a validated manifest (content, record, referrer entry, catalog, then the tag), and
//! deleting by tag or digest.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{keys, Result, Store};
use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Error, ErrorCode};
use crate::event::{Event, Events};
use crate::manifest::Manifest;
use crate::names::{Name, Reference, Tag};
use crate::storage::{Freshness, ManifestKey, Storage};

/// What a repository keeps of a manifest revision, beside its bytes in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// When it was last pushed, in milliseconds since the Unix epoch (every push writes it, so
    /// every push changes the record; the collector relies on that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<u64>,
    /// The day (seconds since the epoch / 86400) it was last pulled, written at most once a
    /// day (for retention rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<u64>,
}

/// A manifest found by [`Store::resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    pub digest: Digest,
    pub record: ManifestRecord,
    /// The record's storage version, for recording a pull.
    pub version: String,
}

fn manifest_unknown(reference: &impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::ManifestUnknown)
        .with_detail(serde_json::json!({ "reference": reference.to_string() }))
}

fn to_json(value: &impl Serialize) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::internal(format!("serialising a record: {e}")))
}

impl<S: Storage> Store<S> {
    /// Where a tag points, if it exists.
    pub async fn tag_target(&self, name: &Name, tag: &Tag) -> Result<Option<Digest>> {
        let Some(raw) = self.storage.get(&keys::tag(name, tag)).await? else {
            return Ok(None);
        };
        let corrupt = || Error::internal(format!("corrupt tag {name}:{tag}"));
        let text = std::str::from_utf8(&raw).map_err(|_| corrupt())?;
        Digest::parse(text).map(Some).map_err(|_| corrupt())
    }

    /// The repository's tags, sorted.
    pub async fn tags(&self, name: &Name) -> Result<Vec<String>> {
        let mut tags = self
            .storage
            .list(&keys::tags_dir(name), Freshness::Current)
            .await?;
        tags.sort();
        Ok(tags)
    }

    /// The manifest a reference names in the repository; MANIFEST_UNKNOWN when there is none.
    pub async fn resolve(&self, name: &Name, reference: &Reference) -> Result<Resolved> {
        Ok(self.lookup(name, reference, false).await?.0)
    }

    /// [`Store::resolve`], and with `read` the manifest's bytes too when the backend reads
    /// them in the same go ([`Storage::lookup_manifest`]: the scale-out store answers a GET in
    /// one statement): `Some(body)` then, for [`Store::read_manifest`].
    pub async fn lookup(
        &self,
        name: &Name,
        reference: &Reference,
        read: bool,
    ) -> Result<(Resolved, Option<Option<Body>>)> {
        let tag_key;
        let key = match reference {
            Reference::Digest(d) => ManifestKey::Digest(d),
            Reference::Tag(t) => {
                tag_key = keys::tag(name, t);
                ManifestKey::Tag(&tag_key)
            }
        };
        let found = self
            .storage
            .lookup_manifest(key, &keys::manifests_root(name), read)
            .await?;
        let target = found.target.ok_or_else(|| manifest_unknown(reference))?;
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => std::str::from_utf8(&target)
                .ok()
                .and_then(|text| Digest::parse(text).ok())
                .ok_or_else(|| Error::internal(format!("corrupt tag {name}:{t}")))?,
        };
        let (raw, version) = found.record.ok_or_else(|| manifest_unknown(reference))?;
        let record: ManifestRecord = serde_json::from_slice(&raw)
            .map_err(|_| Error::internal(format!("corrupt manifest record {name}@{digest}")))?;
        Ok((
            Resolved {
                digest,
                record,
                version,
            },
            found.body,
        ))
    }

    /// Records that a manifest was pulled on `day`, unless it already was that day: at most
    /// one write a day per manifest, by compare-and-set (a lost race or a failure is left be:
    /// pull times are coarse, and a pull never fails for them).
    pub async fn note_pull(&self, name: &Name, found: &Resolved, day: u64) {
        if found.record.pulled == Some(day) {
            return;
        }
        let record = ManifestRecord {
            pulled: Some(day),
            ..found.record.clone()
        };
        if let Ok(raw) = to_json(&record) {
            let _ = self
                .storage
                .put_if(&keys::manifest(name, &found.digest), raw, &found.version)
                .await;
        }
    }

    /// The bytes of a resolved manifest (unless [`Store::lookup`] read them already:
    /// `prefetched`), emitting a pull.
    pub async fn read_manifest(
        &self,
        name: &Name,
        reference: &Reference,
        found: &Resolved,
        prefetched: Option<Option<Body>>,
        events: &mut Events,
    ) -> Result<Body> {
        let body = match prefetched {
            Some(body) => body,
            None => {
                self.storage
                    .blob_read(&found.digest, 0, found.record.size)
                    .await?
            }
        }
        .ok_or_else(|| manifest_unknown(reference))?;
        events.push(Event::ManifestPulled {
            repo: name.clone(),
            digest: found.digest.clone(),
            media_type: found.record.media_type.clone(),
            size: found.record.size,
            tag: match reference {
                Reference::Tag(t) => Some(t.clone()),
                Reference::Digest(_) => None,
            },
        });
        Ok(body)
    }

    /// Stores a validated manifest whose bytes hash to `digest`, and points `tag` at it. The
    /// blobs and manifests it references must be in the repository (MANIFEST_BLOB_UNKNOWN).
    /// `pushed` is the time in milliseconds.
    ///
    /// Against a concurrent collection (see [`crate::gc`]): the collection flag is read before
    /// the references are checked, the record is written, and only then are the references
    /// protected (revived, or found gone: the record is undone and the push refused), before
    /// the tag is written and the push answered.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_manifest(
        &self,
        name: &Name,
        digest: &Digest,
        tag: Option<&Tag>,
        manifest: &Manifest,
        body: Bytes,
        pushed: u64,
        events: &mut Events,
    ) -> Result<()> {
        self.store_manifest(name, digest, tag, manifest, body, pushed, true, events)
            .await
    }

    /// As [`Store::put_manifest`], for a manifest a mirror fetched from its upstream (verified
    /// against its digest): the blobs and manifests it references need not be here yet (they
    /// are fetched when pulled), so only the manifest itself is protected from a collection.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_mirrored_manifest(
        &self,
        name: &Name,
        digest: &Digest,
        tag: Option<&Tag>,
        manifest: &Manifest,
        body: Bytes,
        fetched: u64,
        events: &mut Events,
    ) -> Result<()> {
        self.store_manifest(name, digest, tag, manifest, body, fetched, false, events)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_manifest(
        &self,
        name: &Name,
        digest: &Digest,
        tag: Option<&Tag>,
        manifest: &Manifest,
        body: Bytes,
        pushed: u64,
        check_references: bool,
        events: &mut Events,
    ) -> Result<()> {
        let missing = |d: &Digest| {
            Error::new(ErrorCode::ManifestBlobUnknown)
                .with_detail(serde_json::json!({ "digest": d.to_string() }))
        };
        let before = if self.guarded {
            Some(crate::gc::guard::flag(&*self.storage).await?)
        } else {
            None
        };
        let references = if check_references {
            (manifest.blobs.as_slice(), manifest.manifests.as_slice())
        } else {
            (&[][..], &[][..])
        };
        for blob in references.0 {
            if self.blob_size(name, blob).await?.is_none() {
                return Err(missing(blob));
            }
        }
        for m in references.1 {
            if !self.exists(&keys::manifest(name, m)).await?
                || self.storage.blob_size(m).await?.is_none()
            {
                return Err(missing(m));
            }
        }

        // Content first, then the links that make it visible.
        let size = body.len() as u64;
        self.storage.blob_put(digest, body).await?;
        let record = ManifestRecord {
            media_type: manifest.media_type.clone(),
            size,
            subject: manifest.subject.clone(),
            pushed: Some(pushed),
            pulled: None,
        };
        let record_key = keys::manifest(name, digest);
        self.storage.put(&record_key, to_json(&record)?).await?;
        let referrer_key = manifest
            .subject
            .as_ref()
            .map(|subject| keys::referrer(name, subject, digest));
        if let Some(key) = &referrer_key {
            let desc = manifest.referrer_descriptor(digest, size);
            self.storage.put(key, to_json(&desc)?).await?;
        }
        self.add_to_catalog(name).await?;
        // The tag too is written before the references are protected: a tag is a root for
        // every collection, so a collection whose markers came after this read sees it.
        let mut previous = None;
        if let Some(tag) = tag {
            previous = self.tag_target(name, tag).await.ok().flatten();
            self.storage
                .put(&keys::tag(name, tag), Bytes::from(digest.to_string()))
                .await?;
        }
        let refs: Vec<Digest> = std::iter::once(digest.clone())
            .chain(references.0.iter().cloned())
            .chain(references.1.iter().cloned())
            .collect();
        let gone = match before {
            Some(before) => crate::gc::guard::protect(&*self.storage, before, &refs).await?,
            None => None,
        };
        if let Some(gone) = gone {
            // Collected under us: undo the tag (unless someone moved it since), the referrer
            // entry and the record, and refuse the push.
            if let Some(tag) = tag {
                let key = keys::tag(name, tag);
                if let Some((raw, version)) = self.storage.get_versioned(&key).await? {
                    if raw.as_ref() == digest.to_string().as_bytes() {
                        match &previous {
                            Some(p) => {
                                self.storage
                                    .put_if(&key, Bytes::from(p.to_string()), &version)
                                    .await?;
                            }
                            None => self.storage.delete(&key).await?,
                        }
                    }
                }
            }
            if let Some(key) = &referrer_key {
                self.storage.delete(key).await?;
            }
            self.storage.delete(&record_key).await?;
            return Err(missing(&gone));
        }
        events.push(Event::ManifestPushed {
            repo: name.clone(),
            digest: digest.clone(),
            media_type: record.media_type,
            size,
            tag: tag.cloned(),
        });
        if let Some(tag) = tag {
            if previous.as_ref() != Some(digest) {
                events.push(Event::TagMoved {
                    repo: name.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                    previous,
                });
            }
        }
        Ok(())
    }

    /// Removes a tag (the manifest stays); MANIFEST_UNKNOWN when there is no such tag.
    pub async fn delete_tag(&self, name: &Name, tag: &Tag, events: &mut Events) -> Result<()> {
        let digest = self.tag_target(name, tag).await?.ok_or_else(|| {
            Error::new(ErrorCode::ManifestUnknown)
                .with_detail(serde_json::json!({ "tag": tag.as_str() }))
        })?;
        self.storage.delete(&keys::tag(name, tag)).await?;
        events.push(Event::TagDeleted {
            repo: name.clone(),
            tag: tag.clone(),
            digest,
        });
        Ok(())
    }

    /// Removes a manifest from the repository: first the tags pointing at it (so no tag ever
    /// points at a manifest that is gone), then its referrer entry, then its record.
    pub async fn delete_manifest(
        &self,
        name: &Name,
        digest: &Digest,
        events: &mut Events,
    ) -> Result<()> {
        let found = self
            .resolve(name, &Reference::Digest(digest.clone()))
            .await?;
        for t in self
            .storage
            .list(&keys::tags_dir(name), Freshness::Current)
            .await?
        {
            let Ok(tag) = Tag::parse(&t) else { continue };
            if self.tag_target(name, &tag).await.ok().flatten().as_ref() == Some(digest) {
                self.storage.delete(&keys::tag(name, &tag)).await?;
                events.push(Event::TagDeleted {
                    repo: name.clone(),
                    tag,
                    digest: digest.clone(),
                });
            }
        }
        if let Some(subject) = &found.record.subject {
            self.storage
                .delete(&keys::referrer(name, subject, digest))
                .await?;
        }
        self.storage.delete(&keys::manifest(name, digest)).await?;
        events.push(Event::ManifestDeleted {
            repo: name.clone(),
            digest: digest.clone(),
        });
        Ok(())
    }
}
