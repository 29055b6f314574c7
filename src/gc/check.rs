//! A walk of everything, for tests and for `edge-registry gc --check`: every tag, every
//! manifest record and everything it references must be stored, and no collection may be
//! left half-done.

use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::repo::keys;
use crate::storage::Storage;

use super::guard;
use super::mark::Snapshot;

/// What is wrong, one line each (empty when all is well): tags pointing at no record, records
/// whose bytes are gone, references to blobs that are not stored or not linked, children
/// without a record, markers left behind, the flag left active.
pub async fn problems<S: Storage + ?Sized>(storage: &S) -> Result<Vec<String>, Error> {
    let snap = Snapshot::read(storage).await?;
    let mut out = Vec::new();
    for repo in &snap.repos {
        let name = &repo.name;
        for (tag, d) in &repo.tags {
            if !repo.records.contains_key(d) {
                out.push(format!(
                    "tag {name}:{tag} points at {d}, which has no record"
                ));
            }
        }
        for (d, (record, _)) in &repo.records {
            let Some(body) = storage.blob_read(d, 0, record.size).await? else {
                out.push(format!("manifest {name}@{d}: bytes missing"));
                continue;
            };
            let bytes = body
                .collect_limited(record.size as usize + 1)
                .await
                .map_err(|e| Error::internal(e.to_string()))?
                .unwrap_or_default();
            if Digest::of(d.algorithm(), &bytes) != *d {
                out.push(format!("manifest {name}@{d}: bytes do not match"));
                continue;
            }
            let Ok(m) = Manifest::parse(Some(&record.media_type), &bytes) else {
                out.push(format!("manifest {name}@{d}: does not parse"));
                continue;
            };
            for b in &m.blobs {
                if storage.blob_size(b).await?.is_none() {
                    out.push(format!("manifest {name}@{d}: blob {b} missing"));
                } else if storage.get(&keys::blob_link(name, b)).await?.is_none() {
                    out.push(format!("manifest {name}@{d}: blob {b} not linked"));
                }
            }
            for c in &m.manifests {
                if !repo.records.contains_key(c) {
                    out.push(format!("index {name}@{d}: child {c} has no record"));
                }
            }
        }
    }
    for (_, dir) in guard::marker_dirs() {
        for hex in storage
            .list(&dir, crate::storage::Freshness::Current)
            .await?
        {
            out.push(format!("marker {dir}/{hex} left behind"));
        }
    }
    if guard::flag(storage).await?.active {
        out.push("a collection is marked active".to_string());
    }
    Ok(out)
}
