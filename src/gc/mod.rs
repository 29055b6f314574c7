//! Garbage collection: removes the blobs, manifest records, links and referrer entries that
//! nothing live references, online, while clients push. Sans-IO like the rest of the core: it
//! runs over a [`Storage`] with the time from a [`Clock`], and returns a [`Report`] and the
//! [`Event`]s of what it removed.
//!
//! # What is live
//! A manifest a tag points at; a child of a live index; a referrer (its `subject`) of a live
//! manifest; the config and layers of a live manifest; and every manifest record that is not
//! a referrer, unless untagged manifests may go ([`Options::delete_untagged`]). A referrer
//! that is not tagged lives with its subject: the signature of a deleted image goes. A record pushed within the grace
//! period, or whose bytes were stored within it, is always a root; a blob stored within it is
//! never a candidate. The mark reads the catalog, tags, manifest records and links (indexes)
//! and the bytes of live manifests (small); never a layer.
//!
//! # One collector at a time
//! Callers make sure of it: natively a lock file held for the run (`edge-registry gc` and the
//! server's timer take the same one, across processes); on the scale-out store a PostgreSQL
//! advisory lock held by the session every statement of the run goes through, across
//! instances (`native::scale::collector`).
//!
//! # Safety against pushes
//! The invariant: once a manifest PUT answered 201, everything it references stays readable
//! for as long as it is tagged or referenced. A client may HEAD a blob, skip its upload and
//! reference it while the collector decides it is garbage. The protocol (keys in [`guard`]):
//!
//! Collector, in one run of generation `g`:
//! 1. writes `_gc/active = active g` (before any marker);
//! 2. lists the blobs, reads the indexes and marks (first mark); finishes any marker left in
//!    `deleting` by a crashed run, drops any other left-over marker; applies retention;
//! 3. writes a marker `condemned g` for every candidate (not live, older than the grace);
//! 4. re-reads the indexes and marks again (the re-mark): now a record that is new or was
//!    rewritten since the first mark is a root too. Candidates found live are un-condemned
//!    (marker deleted);
//! 5. for each other candidate, moves its marker `condemned → deleting` by compare-and-set on
//!    the version it reads; only if that wins does it delete the links, the manifest records
//!    and referrer entries, then the bytes, then the marker. A marker found `revived` is left
//!    (the blob stays);
//! 6. deletes the remaining markers, then writes `_gc/active = idle g`.
//!
//! Manifest PUT ([`crate::repo::Store::put_manifest`]): reads the flag (`before`); checks every
//! referenced blob and child is linked and stored; writes the manifest's bytes, its record
//! (which carries the push time, so every push changes it), its referrer entry, catalog entry
//! and tag; reads the flag again (`after`). If both say `idle` with the same generation, done.
//! Otherwise, for each reference and the manifest itself: a `condemned` marker is moved to
//! `revived` by compare-and-set (a lost race re-reads); `deleting` means it is going, and no
//! marker with no bytes means it went: the tag (if still ours), the record and the referrer
//! entry are undone and the PUT answers 400 MANIFEST_BLOB_UNKNOWN. Otherwise 201.
//!
//! Why a reference made after the mark either revives the blob or makes the PUT fail
//! (Dekker-style: each side writes its own mark before it reads the other's; `get_versioned`
//! and `put_if` are linearizable on every backend, and on R2 the compare-and-set is an etag
//! condition, never KV). Take a PUT that references blob B, which the collector deletes:
//! - The deletion needs the CAS `condemned → deleting` to win, so B's marker was `condemned`
//!   from step 3 until that CAS, and the re-mark (between them) did not find B live.
//! - If the PUT read the flag as `idle g'` both times, no run began between the reads (a run
//!   writes `active` first), and one that was under way at the first read had finished (it
//!   writes `idle` last): B was stored when checked and nothing could delete it before the
//!   second read. A run that starts later reads the PUT's tag (a root) in its first mark.
//! - Otherwise the PUT read B's marker after writing its tag and record. If that read came
//!   after the marker was written, it saw `condemned` (and revived it: the collector's CAS,
//!   under the version it read before, then fails; or the collector's CAS won first and the
//!   PUT saw `deleting` and failed), or saw no marker because the deletion had finished, and
//!   then B's bytes were gone and the PUT failed. If it came before the marker was written,
//!   the tag was written before the marker, so before the re-mark, which found B live.
//! - A PUT by digest writes no tag: its record is the root. A record new or rewritten since
//!   the first mark is a root in the re-mark, one the first mark saw is a root if pushed
//!   within the grace period, and a referrer is live with its subject. So an untagged
//!   manifest pushed by digest is safe for the grace period (when untagged manifests may go,
//!   they go after it: an index referencing it must be pushed within it, and the index's PUT
//!   protects its children like any reference).
//!
//! Blob HEAD and GET, mount and upload revive a `condemned` marker too, and treat `deleting`
//! as unknown (an upload is refused with 429, to be sent again), so a client that was just
//! told a blob exists rarely has its PUT refused.
//!
//! The one timing assumption (for untagged manifests when they may go): the grace period is
//! longer than a manifest PUT takes, and the clocks of processes sharing a store agree to
//! within it.
//!
//! The hot path pays two small reads of the flag per manifest PUT, one per blob HEAD or GET,
//! and one existence check per referenced blob; marker reads only while a collection is under
//! way.

pub mod check;
pub mod guard;
pub mod mark;
pub mod metered;
pub mod retention;
pub mod steps;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::clock::Clock;
use crate::digest::Digest;
use crate::error::Error;
use crate::event::Event;
use crate::names::{Name, Tag};
use crate::repo::keys;
use crate::storage::{BlobInfo, Storage};

use guard::{Flag, State};
use mark::{live, RefCache, Roots, Snapshot};
pub use retention::Retention;

type Result<T> = std::result::Result<T, Error>;

/// How a collection runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds: nothing younger is collected.
    pub grace: u64,
    /// Whether untagged manifests that nothing live references may go.
    pub delete_untagged: bool,
    /// Report what would be removed, and change nothing.
    pub dry_run: bool,
    pub retention: Retention,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace: 3600,
            delete_untagged: false,
            dry_run: false,
            retention: Retention::default(),
        }
    }
}

/// What a run did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Report {
    pub dry_run: bool,
    pub blobs_removed: u64,
    pub manifests_removed: u64,
    pub tags_removed: u64,
    pub bytes_reclaimed: u64,
    pub blobs_kept: u64,
    pub bytes_kept: u64,
    /// Candidates that a request revived, or the re-mark found live.
    pub spared: u64,
    /// Deletions left half-done by a crashed run, finished by this one.
    pub recovered: u64,
    /// Seconds since the epoch.
    pub started: u64,
    pub duration_ms: u64,
    /// Each thing removed: `tag <repo>:<tag>`, `manifest <repo>@<digest>`, `blob <digest>
    /// <size>`.
    pub removed: Vec<String>,
}

impl Report {
    /// The one-line summary for logs.
    pub fn summary(&self) -> String {
        format!(
            "{}blobs removed={} manifests removed={} tags removed={} bytes reclaimed={} blobs kept={} bytes kept={} spared={} recovered={} took {} ms",
            if self.dry_run { "dry run: " } else { "" },
            self.blobs_removed,
            self.manifests_removed,
            self.tags_removed,
            self.bytes_reclaimed,
            self.blobs_kept,
            self.bytes_kept,
            self.spared,
            self.recovered,
            self.duration_ms
        )
    }
}

/// A run's report and the events of what it removed.
#[derive(Debug, Default)]
pub struct Outcome {
    pub report: Report,
    pub events: Vec<Event>,
}

/// Every stored blob, by digest.
async fn all_blobs<S: Storage + ?Sized>(storage: &S) -> Result<HashMap<Digest, BlobInfo>> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = storage.list_blobs(cursor.as_deref(), 1000).await?;
        out.extend(page.blobs.into_iter().map(|b| (b.digest.clone(), b)));
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(out),
        }
    }
}

/// Runs one collection. The caller makes sure no other runs at the same time.
pub async fn collect<S: Storage + ?Sized>(
    storage: &S,
    opts: &Options,
    clock: &dyn Clock,
) -> Result<Outcome> {
    let started_ms = clock.now_ms();
    let now = started_ms / 1000;
    let mut out = Outcome::default();
    out.report.dry_run = opts.dry_run;
    out.report.started = now;
    let generation = guard::flag(storage).await?.generation + 1;
    if !opts.dry_run {
        let active = Flag {
            active: true,
            generation,
        };
        storage.put(guard::ACTIVE, active.encode()).await?;
    }
    let mut blobs = all_blobs(storage).await?;
    let mut snap1 = Snapshot::read(storage).await?;
    if !opts.dry_run {
        recover(storage, &snap1, &mut blobs, &mut out).await?;
    }

    // Retention, before the mark.
    let mut dropped: HashSet<(Name, Tag)> = HashSet::new();
    if !opts.retention.is_empty() {
        for (name, tag, digest) in opts.retention.expired(&snap1, now) {
            if !opts.dry_run && !expire_tag(storage, &name, &tag, &digest).await? {
                continue;
            }
            out.report.tags_removed += 1;
            out.report.removed.push(format!("tag {name}:{tag}"));
            out.events.push(Event::TagExpired {
                repo: name.clone(),
                tag: tag.clone(),
                digest,
            });
            dropped.insert((name, tag));
        }
        for repo in &mut snap1.repos {
            repo.tags
                .retain(|(t, _)| !dropped.contains(&(repo.name.clone(), t.clone())));
        }
    }

    let mut cache = RefCache::default();
    let none = HashSet::new();
    let roots = Roots {
        delete_untagged: opts.delete_untagged,
        grace: opts.grace,
        now,
        blobs: &blobs,
        first: None,
        dropped: &none,
    };
    let live1 = live(storage, &snap1, &roots, &mut cache).await?;
    let mut candidates: Vec<&BlobInfo> = blobs
        .values()
        .filter(|b| {
            !live1.digests.contains(&b.digest) && b.modified.saturating_add(opts.grace) <= now
        })
        .collect();
    candidates.sort_by(|a, b| a.digest.cmp(&b.digest));

    if opts.dry_run {
        for b in &candidates {
            note_removal(&snap1, b, &mut out, false);
        }
    } else {
        for b in &candidates {
            storage
                .put(
                    &guard::marker(&b.digest),
                    guard::encode(State::Condemned, generation),
                )
                .await?;
        }
        let snap2 = Snapshot::read(storage).await?;
        let roots = Roots {
            first: Some(&snap1),
            ..roots
        };
        let live2 = live(storage, &snap2, &roots, &mut cache).await?;
        let merged = merge(&[&snap1, &snap2]);
        for b in &candidates {
            let key = guard::marker(&b.digest);
            if live2.digests.contains(&b.digest) {
                storage.delete(&key).await?;
                out.report.spared += 1;
                continue;
            }
            let Some((raw, version)) = storage.get_versioned(&key).await? else {
                continue;
            };
            if guard::parse(&raw).0 != State::Condemned
                || !storage
                    .put_if(&key, guard::encode(State::Deleting, generation), &version)
                    .await?
            {
                out.report.spared += 1;
                continue;
            }
            sweep(storage, &merged, b, &mut out).await?;
        }
        // What is left is revived: those markers go, then the flag says idle.
        clear_markers(storage, false).await?;
        let idle = Flag {
            active: false,
            generation,
        };
        storage.put(guard::ACTIVE, idle.encode()).await?;
    }
    let removed: HashSet<&str> = out
        .report
        .removed
        .iter()
        .filter_map(|r| r.strip_prefix("blob "))
        .filter_map(|r| r.split(' ').next())
        .collect();
    for b in blobs.values() {
        if !removed.contains(b.digest.to_string().as_str()) {
            out.report.blobs_kept += 1;
            out.report.bytes_kept += b.size;
        }
    }
    out.report.duration_ms = clock.now_ms().saturating_sub(started_ms);
    if !opts.dry_run {
        if let Ok(summary) = serde_json::to_vec(&out.report) {
            storage.put(guard::LAST_RUN, summary.into()).await?;
        }
    }
    Ok(out)
}

/// Removes a tag if it still points where retention saw it; `false` when it moved.
async fn expire_tag<S: Storage + ?Sized>(
    storage: &S,
    name: &Name,
    tag: &Tag,
    digest: &Digest,
) -> Result<bool> {
    let key = keys::tag(name, tag);
    match storage.get(&key).await? {
        Some(raw) if raw.as_ref() == digest.to_string().as_bytes() => {
            storage.delete(&key).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Records in the report what removing blob `b` removes (done or, in a dry run, to be done).
fn note_removal(snap: &Snapshot, b: &BlobInfo, out: &mut Outcome, done: bool) {
    for repo in &snap.repos {
        if repo.records.contains_key(&b.digest) {
            out.report.manifests_removed += 1;
            out.report
                .removed
                .push(format!("manifest {}@{}", repo.name, b.digest));
            if done {
                out.events.push(Event::ManifestCollected {
                    repo: repo.name.clone(),
                    digest: b.digest.clone(),
                });
            }
        }
    }
    out.report.blobs_removed += 1;
    out.report.bytes_reclaimed += b.size;
    out.report
        .removed
        .push(format!("blob {} {}", b.digest, b.size));
    if done {
        out.events.push(Event::BlobCollected {
            digest: b.digest.clone(),
            size: b.size,
        });
    }
}

/// Both snapshots in one: every repository, link and record either saw.
fn merge(snaps: &[&Snapshot]) -> Snapshot {
    let mut merged = Snapshot::default();
    for snap in snaps {
        for repo in &snap.repos {
            match merged.repos.iter_mut().find(|r| r.name == repo.name) {
                None => merged.repos.push(repo.clone()),
                Some(m) => {
                    m.links.extend(repo.links.iter().cloned());
                    for (d, r) in &repo.records {
                        m.records.entry(d.clone()).or_insert_with(|| r.clone());
                    }
                }
            }
        }
    }
    merged
}

/// Deletes a blob whose marker this run moved to `deleting`: its links and records (with
/// their referrer entries) in every repository `merged` knows, then its bytes, then the marker.
async fn sweep<S: Storage + ?Sized>(
    storage: &S,
    merged: &Snapshot,
    b: &BlobInfo,
    out: &mut Outcome,
) -> Result<()> {
    for repo in &merged.repos {
        if repo.links.contains(&b.digest) {
            storage
                .delete(&keys::blob_link(&repo.name, &b.digest))
                .await?;
        }
        if let Some((record, _)) = repo.records.get(&b.digest) {
            if let Some(subject) = &record.subject {
                storage
                    .delete(&keys::referrer(&repo.name, subject, &b.digest))
                    .await?;
            }
            storage
                .delete(&keys::manifest(&repo.name, &b.digest))
                .await?;
        }
    }
    storage.blob_delete(&b.digest).await?;
    storage.delete(&guard::marker(&b.digest)).await?;
    note_removal(merged, b, out, true);
    Ok(())
}

/// Finishes the deletions a crashed run left in `deleting`, and drops its other markers.
async fn recover<S: Storage + ?Sized>(
    storage: &S,
    snap: &Snapshot,
    blobs: &mut HashMap<Digest, BlobInfo>,
    out: &mut Outcome,
) -> Result<()> {
    for (alg, dir) in guard::marker_dirs() {
        for hex in storage
            .list(&dir, crate::storage::Freshness::Current)
            .await?
        {
            let key = format!("{dir}/{hex}");
            let Ok(digest) = Digest::parse(&format!("{}:{hex}", alg.as_str())) else {
                storage.delete(&key).await?;
                continue;
            };
            let Some(raw) = storage.get(&key).await? else {
                continue;
            };
            if guard::parse(&raw).0 == State::Deleting {
                let info = blobs.remove(&digest).unwrap_or(BlobInfo {
                    digest: digest.clone(),
                    size: 0,
                    modified: 0,
                });
                sweep(storage, snap, &info, out).await?;
                out.report.recovered += 1;
            } else {
                storage.delete(&key).await?;
            }
        }
    }
    Ok(())
}

/// Deletes every marker (but, unless `all`, those in `deleting`, which a crash left and the
/// next run finishes).
async fn clear_markers<S: Storage + ?Sized>(storage: &S, all: bool) -> Result<()> {
    for (_, dir) in guard::marker_dirs() {
        for hex in storage
            .list(&dir, crate::storage::Freshness::Current)
            .await?
        {
            let key = format!("{dir}/{hex}");
            let keep = match storage.get(&key).await? {
                Some(raw) => !all && guard::parse(&raw).0 == State::Deleting,
                None => true,
            };
            if !keep {
                storage.delete(&key).await?;
            }
        }
    }
    Ok(())
}
