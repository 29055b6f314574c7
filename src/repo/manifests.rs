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
use crate::storage::{Freshness, Storage};

/// What a repository keeps of a manifest revision, beside its bytes in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

/// A manifest found by [`Store::resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    pub digest: Digest,
    pub record: ManifestRecord,
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
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => self
                .tag_target(name, t)
                .await?
                .ok_or_else(|| manifest_unknown(reference))?,
        };
        let raw = self
            .storage
            .get(&keys::manifest(name, &digest))
            .await?
            .ok_or_else(|| manifest_unknown(reference))?;
        let record: ManifestRecord = serde_json::from_slice(&raw)
            .map_err(|_| Error::internal(format!("corrupt manifest record {name}@{digest}")))?;
        Ok(Resolved { digest, record })
    }

    /// The bytes of a resolved manifest, emitting a pull.
    pub async fn read_manifest(
        &self,
        name: &Name,
        reference: &Reference,
        found: &Resolved,
        events: &mut Events,
    ) -> Result<Body> {
        let body = self
            .storage
            .blob_read(&found.digest, 0, found.record.size)
            .await?
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
    pub async fn put_manifest(
        &self,
        name: &Name,
        digest: &Digest,
        tag: Option<&Tag>,
        manifest: &Manifest,
        body: Bytes,
        events: &mut Events,
    ) -> Result<()> {
        let missing = |d: &Digest| {
            Error::new(ErrorCode::ManifestBlobUnknown)
                .with_detail(serde_json::json!({ "digest": d.to_string() }))
        };
        for blob in &manifest.blobs {
            if !self.blob_linked(name, blob).await? {
                return Err(missing(blob));
            }
        }
        for m in &manifest.manifests {
            if !self.exists(&keys::manifest(name, m)).await? {
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
        };
        self.storage
            .put(&keys::manifest(name, digest), to_json(&record)?)
            .await?;
        if let Some(subject) = &manifest.subject {
            let desc = manifest.referrer_descriptor(digest, size);
            self.storage
                .put(&keys::referrer(name, subject, digest), to_json(&desc)?)
                .await?;
        }
        self.add_to_catalog(name).await?;
        events.push(Event::ManifestPushed {
            repo: name.clone(),
            digest: digest.clone(),
            media_type: record.media_type,
            size,
            tag: tag.cloned(),
        });
        if let Some(tag) = tag {
            let previous = self.tag_target(name, tag).await.ok().flatten();
            self.storage
                .put(&keys::tag(name, tag), Bytes::from(digest.to_string()))
                .await?;
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
