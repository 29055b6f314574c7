//! `GET /v2/_sizes` (not in the spec; for the web UI): each repository the caller may pull,
//! with its manifests' count, its unique and shared bytes, and whether the caller may delete
//! there; and the total of the blobs they hold, each counted once.
//!
//! Sizes come from the manifests' descriptors (the config's and layers' `size`, and the
//! manifest's own), never from blob bytes. What each manifest references never changes, so
//! it is read once and kept per repository in `_sizes/<catalog entry>`; a request reads the
//! manifest listing and that cache, and only the manifests it has not seen (at most
//! [`MAX_READS`] a request: past that the answer says `"partial": true`, and the next request
//! goes on). A blob is *shared* when another listed repository references it too, else
//! *unique*; the total counts every blob once.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::response::{json, Result};
use super::{Ctx, Registry};
use crate::auth::Action;
use crate::body::Body;
use crate::digest::{Algorithm, Digest};
use crate::manifest::Manifest;
use crate::names::Name;
use crate::repo::{keys, ManifestRecord};
use crate::storage::{Freshness, Storage};

/// Manifests read (not yet in a cache) per request.
pub const MAX_READS: usize = 500;

/// The cache of one repository: each manifest's blobs with their sizes (itself first).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cached {
    manifests: BTreeMap<String, Vec<(String, u64)>>,
}

fn cache_key(name: &Name) -> String {
    format!("_sizes/{}", name.as_str().replace('/', ":"))
}

/// A manifest's blobs and their sizes from its descriptors; `None` when it is gone.
async fn blobs_of<S: Storage + ?Sized>(
    s: &S,
    name: &Name,
    d: &Digest,
) -> Result<Option<Vec<(String, u64)>>> {
    let Some(raw) = s.get(&keys::manifest(name, d)).await? else {
        return Ok(None);
    };
    let Ok(record) = serde_json::from_slice::<ManifestRecord>(&raw) else {
        return Ok(None);
    };
    let Some(body) = s.blob_read(d, 0, record.size).await? else {
        return Ok(None);
    };
    let bytes = match body.collect_limited(record.size as usize + 1).await {
        Ok(Some(b)) => b,
        _ => return Ok(None),
    };
    let mut out = vec![(d.to_string(), record.size)];
    let (Ok(m), Ok(v)) = (
        Manifest::parse(Some(&record.media_type), &bytes),
        serde_json::from_slice::<serde_json::Value>(&bytes),
    ) else {
        return Ok(Some(out));
    };
    let stored: Vec<String> = m.blobs.iter().map(|b| b.to_string()).collect();
    let descriptors = std::iter::once(&v["config"])
        .chain(v["layers"].as_array().into_iter().flatten())
        .chain(v["blobs"].as_array().into_iter().flatten());
    for desc in descriptors {
        if let (Some(digest), Some(size)) = (desc["digest"].as_str(), desc["size"].as_u64()) {
            // Foreign layers (with `urls`) are not stored here.
            if stored.iter().any(|b| b == digest) && !out.iter().any(|(b, _)| b == digest) {
                out.push((digest.to_string(), size));
            }
        }
    }
    Ok(Some(out))
}

#[derive(Serialize)]
struct RepoSize {
    name: String,
    manifests: usize,
    unique: u64,
    shared: u64,
    delete: bool,
}

impl<S: Storage> Registry<S> {
    pub(super) async fn sizes(&self, cx: &mut Ctx<'_>) -> Result<Response<Body>> {
        let s = self.store.storage();
        let names: Vec<String> = self
            .store
            .repositories()
            .await?
            .into_iter()
            .filter(|name| self.access.can_list(&cx.principal, name))
            .collect();
        let mut reads = 0;
        let mut partial = false;
        // Each repository's blobs with their sizes.
        let mut repos: Vec<(Name, usize, HashMap<String, u64>)> = Vec::new();
        for name in names {
            let Ok(name) = Name::parse(&name) else {
                continue;
            };
            let mut listed = Vec::new();
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                for hex in s
                    .list(&keys::manifests_dir(&name, alg), Freshness::Current)
                    .await?
                {
                    if let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.as_str())) {
                        listed.push(d);
                    }
                }
            }
            let key = cache_key(&name);
            let mut cached: Cached = match s.get(&key).await? {
                Some(raw) => serde_json::from_slice(&raw).unwrap_or_default(),
                None => Cached::default(),
            };
            let before = cached.manifests.len();
            let mut changed = false;
            let keep: std::collections::HashSet<String> =
                listed.iter().map(|d| d.to_string()).collect();
            cached.manifests.retain(|d, _| keep.contains(d));
            changed |= cached.manifests.len() != before;
            for d in &listed {
                if cached.manifests.contains_key(&d.to_string()) {
                    continue;
                }
                if reads >= MAX_READS {
                    partial = true;
                    continue;
                }
                reads += 1;
                if let Some(blobs) = blobs_of(s, &name, d).await? {
                    cached.manifests.insert(d.to_string(), blobs);
                    changed = true;
                }
            }
            if changed {
                // Only a cache: a store that takes no writes (a read-only root) answers all
                // the same.
                if let Ok(raw) = serde_json::to_vec(&cached) {
                    let _ = s.put(&key, Bytes::from(raw)).await;
                }
            }
            let mut blobs = HashMap::new();
            for list in cached.manifests.values() {
                for (b, size) in list {
                    blobs.insert(b.clone(), *size);
                }
            }
            repos.push((name, cached.manifests.len(), blobs));
        }
        let mut holders: HashMap<&str, (u64, usize)> = HashMap::new();
        for (_, _, blobs) in &repos {
            for (b, size) in blobs {
                holders.entry(b.as_str()).or_insert((*size, 0)).1 += 1;
            }
        }
        let total: u64 = holders.values().map(|(size, _)| size).sum();
        let out: Vec<RepoSize> = repos
            .iter()
            .map(|(name, manifests, blobs)| {
                let (mut unique, mut shared) = (0, 0);
                for (b, size) in blobs {
                    if holders.get(b.as_str()).is_some_and(|(_, n)| *n > 1) {
                        shared += size;
                    } else {
                        unique += size;
                    }
                }
                RepoSize {
                    name: name.as_str().to_string(),
                    manifests: *manifests,
                    unique,
                    shared,
                    delete: self
                        .access
                        .allows(&cx.principal, name.as_str(), Action::Delete),
                }
            })
            .collect();
        json(
            StatusCode::OK,
            "application/json",
            &serde_json::json!({
                "repositories": out,
                "total": total,
                "blobs": holders.len(),
                "partial": partial,
            }),
        )
    }
}
