//! The mark: a snapshot of the indexes (catalog, tags, manifest records, blob links), and the
//! live set computed from it. It reads manifest bytes (small) to follow references, never
//! layer bytes, and reads each manifest once per run whatever the number of repositories or
//! passes that meet it (a digest's content never changes).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::manifest::Manifest;
use crate::names::{Name, Tag};
use crate::repo::{keys, ManifestRecord};
use crate::storage::{BlobInfo, Freshness, Storage};

type Result<T> = std::result::Result<T, Error>;

const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// One repository's indexes.
#[derive(Debug, Clone)]
pub struct RepoIndex {
    pub name: Name,
    pub tags: Vec<(Tag, Digest)>,
    /// Each manifest record with its storage version.
    pub records: BTreeMap<Digest, (ManifestRecord, String)>,
    pub links: BTreeSet<Digest>,
}

/// Every repository's indexes, read at one time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub repos: Vec<RepoIndex>,
}

impl Snapshot {
    /// Reads the indexes. The catalog is listed fresh (never from a cache): a repository the
    /// mark did not see would have its content collected.
    pub async fn read<S: Storage + ?Sized>(storage: &S) -> Result<Snapshot> {
        let mut entries = storage.list(keys::CATALOG_DIR, Freshness::Current).await?;
        entries.sort();
        let mut repos = Vec::new();
        for entry in entries {
            let Ok(name) = Name::parse(&keys::catalog_name(&entry)) else {
                continue;
            };
            repos.push(read_repo(storage, name).await?);
        }
        Ok(Snapshot { repos })
    }

    pub fn repo(&self, name: &Name) -> Option<&RepoIndex> {
        self.repos.iter().find(|r| &r.name == name)
    }
}

async fn read_repo<S: Storage + ?Sized>(storage: &S, name: Name) -> Result<RepoIndex> {
    let mut tags = Vec::new();
    let mut tag_names = storage
        .list(&keys::tags_dir(&name), Freshness::Current)
        .await?;
    tag_names.sort();
    for t in tag_names {
        let Ok(tag) = Tag::parse(&t) else { continue };
        let Some(raw) = storage.get(&keys::tag(&name, &tag)).await? else {
            continue;
        };
        if let Some(d) = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| Digest::parse(s).ok())
        {
            tags.push((tag, d));
        }
    }
    let mut records = BTreeMap::new();
    let mut links = BTreeSet::new();
    for alg in ALGORITHMS {
        for hex in storage
            .list(&keys::manifests_dir(&name, alg), Freshness::Current)
            .await?
        {
            let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.as_str())) else {
                continue;
            };
            let Some((raw, version)) = storage.get_versioned(&keys::manifest(&name, &d)).await?
            else {
                continue;
            };
            let record: ManifestRecord = serde_json::from_slice(&raw).map_err(|_| {
                Error::internal(format!(
                    "corrupt manifest record {name}@{d}: not collecting"
                ))
            })?;
            records.insert(d, (record, version));
        }
        for hex in storage
            .list(&keys::links_dir(&name, alg), Freshness::Current)
            .await?
        {
            if let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.as_str())) {
                links.insert(d);
            }
        }
    }
    Ok(RepoIndex {
        name,
        tags,
        records,
        links,
    })
}

/// What a manifest references.
#[derive(Debug, Clone, Default)]
pub struct Refs {
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
}

/// Manifests read so far, by digest.
#[derive(Default)]
pub struct RefCache(HashMap<Digest, Refs>);

impl RefCache {
    /// What the manifest references. A manifest whose bytes are gone references nothing (its
    /// record dangles); one that does not parse stops the run, since its references are unknown.
    async fn get<S: Storage + ?Sized>(
        &mut self,
        storage: &S,
        digest: &Digest,
        record: &ManifestRecord,
    ) -> Result<&Refs> {
        if !self.0.contains_key(digest) {
            let refs = match storage.blob_read(digest, 0, record.size).await? {
                None => Refs::default(),
                Some(body) => {
                    let bytes = body
                        .collect_limited(record.size as usize + 1)
                        .await
                        .map_err(|e| Error::internal(format!("reading manifest {digest}: {e}")))?
                        .unwrap_or_default();
                    let m = Manifest::parse(Some(&record.media_type), &bytes).map_err(|_| {
                        Error::internal(format!("manifest {digest} does not parse: not collecting"))
                    })?;
                    Refs {
                        blobs: m.blobs,
                        manifests: m.manifests,
                    }
                }
            };
            self.0.insert(digest.clone(), refs);
        }
        Ok(&self.0[digest])
    }
}

/// How the roots are chosen.
pub struct Roots<'a> {
    pub delete_untagged: bool,
    /// Seconds.
    pub grace: u64,
    /// Seconds since the epoch.
    pub now: u64,
    /// The stored blobs at the start of the run, by digest.
    pub blobs: &'a HashMap<Digest, BlobInfo>,
    /// For the re-mark: the first mark's snapshot (a record new or rewritten since is a root).
    pub first: Option<&'a Snapshot>,
    /// Tags to leave out (retention, in a dry run).
    pub dropped: &'a HashSet<(Name, Tag)>,
}

impl Roots<'_> {
    fn young(&self, modified: u64) -> bool {
        modified.saturating_add(self.grace) > self.now
    }

    /// Whether a record is a root of its own: yes unless untagged manifests may go or it is a
    /// referrer (which lives with its subject); but always when it is young (by its push time
    /// or its bytes' time), or new or rewritten since the first mark.
    fn record(&self, repo: &Name, d: &Digest, record: &ManifestRecord, version: &str) -> bool {
        if !self.delete_untagged && record.subject.is_none() {
            return true;
        }
        if record.pushed.is_some_and(|ms| self.young(ms / 1000)) {
            return true;
        }
        // Stored after the blob listing, or young.
        if self.blobs.get(d).is_none_or(|b| self.young(b.modified)) {
            return true;
        }
        self.first.is_some_and(|f| {
            f.repo(repo)
                .and_then(|r| r.records.get(d))
                .is_none_or(|(_, v)| v != version)
        })
    }
}

/// What is live: every digest referenced, globally, and each repository's live manifests.
#[derive(Debug, Default)]
pub struct Live {
    pub digests: HashSet<Digest>,
    pub manifests: HashSet<(Name, Digest)>,
}

/// Computes what is live in `snap`.
pub async fn live<S: Storage + ?Sized>(
    storage: &S,
    snap: &Snapshot,
    roots: &Roots<'_>,
    cache: &mut RefCache,
) -> Result<Live> {
    let mut live = Live::default();
    for repo in &snap.repos {
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for (d, (record, _)) in &repo.records {
            if let Some(subject) = &record.subject {
                referrers.entry(subject).or_default().push(d);
            }
        }
        let mut todo: Vec<Digest> = repo
            .tags
            .iter()
            .filter(|(t, _)| !roots.dropped.contains(&(repo.name.clone(), t.clone())))
            .map(|(_, d)| d.clone())
            .collect();
        for (d, (record, version)) in &repo.records {
            if roots.record(&repo.name, d, record, version) {
                todo.push(d.clone());
            }
        }
        let mut seen: HashSet<Digest> = HashSet::new();
        while let Some(d) = todo.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            live.digests.insert(d.clone());
            live.manifests.insert((repo.name.clone(), d.clone()));
            if let Some(children) = referrers.get(&d) {
                todo.extend(children.iter().map(|c| (*c).clone()));
            }
            let Some((record, _)) = repo.records.get(&d) else {
                continue;
            };
            let refs = cache.get(storage, &d, record).await?;
            live.digests.extend(refs.blobs.iter().cloned());
            todo.extend(refs.manifests.iter().cloned());
        }
    }
    Ok(live)
}
