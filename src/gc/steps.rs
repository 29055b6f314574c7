//! The collector in bounded steps, for a platform whose every invocation has a budget (the
//! Worker's cron trigger: CPU time and subrequests). [`step`] does at most about `budget`
//! storage operations ([`Metered`] counts them as R2 subrequests) and saves where it got to in
//! storage; the next call goes on from there, so a collection spans as many invocations as it
//! needs, and any of them may die at any point: what it did since the last save is done again.
//!
//! # The same protocol as [`super::collect`]
//! A run of generation `g` goes through these phases, each resumable at any unit:
//! 1. **recover**: writes `_gc/active = active g` (when the run begins), then finishes the
//!    deletions a crashed run left in `deleting` (in the sweep) and drops its other markers;
//! 2. **list**: walks the blob listing a page at a time: the blobs stored within the grace
//!    period, the totals;
//! 3. **mark**: reads each repository's indexes (tags, manifest records, links) a key at a
//!    time, applies retention, and walks the live manifests from the roots, reading each live
//!    manifest's bytes once per repository and pass;
//! 4. **condemn**: walks the blob listing again, and writes `condemned g` for every blob not
//!    live and older than the grace period (the candidates, also kept in chunks of
//!    `_gc/candidates/<n>`);
//! 5. **remark**: the mark again, begun only after every marker is written; now a record new
//!    or rewritten since the first mark is a root too;
//! 6. **sweep**: for each candidate, live in the re-mark → un-condemned; else the marker
//!    moves `condemned → deleting` by compare-and-set, and only if that wins do its links,
//!    manifest records and referrer entries go (in every repository either mark saw it in),
//!    then its bytes, then the marker;
//! 7. **finish**: the markers left (revived) go, the summary is written to `_gc/last-run`,
//!    the state goes, and `_gc/active = idle g` last.
//!
//! The argument of [`super`] holds as it is: the flag says `active` from before the first
//! marker to after the last deletion; the re-mark begins after the last marker is written; a
//! deletion needs the compare-and-set from `condemned`. Redoing a unit after a crash is
//! harmless: the marks only read, a condemnation redone before the re-mark only writes
//! `condemned` again before the re-mark begins, and a sweep redone finds the marker gone (done)
//! or in `deleting` of this generation (finished now).
//!
//! # One invocation at a time
//! A lease, `_gc/lease`: `held <holder> <until ms>` or `free …`, created with
//! [`Storage::put_new`] and taken or given back only with [`Storage::put_if`] (an R2 etag
//! condition: never KV). It is held for [`LEASE_MS`], longer than any invocation may run
//! (a cron invocation's wall-time limit is 15 minutes), so two invocations never work at
//! once, and one that dies leaves it to expire. Nothing is held across invocations but the
//! state, which only the lease's holder writes.
//!
//! # What is kept between invocations (`_gc/state`, JSON)
//! The phase and its cursor; the live set and, per repository, the digests linked and
//! recorded, as 64-bit prefixes of the digests (a prefix shared by chance only ever keeps
//! something: a blob is condemned only if no live digest has its prefix, and a sweep deletes
//! the keys of exact digests, trying every repository that may have one); the versions of
//! the first mark's records that were not roots (exact); the repository being read; the
//! report so far (its list of removals capped at 1,000 lines; the counts are whole).
//!
//! Legacy manifest records without a push time are roots here (the one-shot collector looks
//! at their bytes' time in the listing, which this one does not keep).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::guard::{self, Flag, State};
use super::mark::{RepoIndex, Snapshot};
use super::metered::Metered;
use super::{Options, Report};
use crate::clock::Clock;
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::event::Event;
use crate::manifest::Manifest;
use crate::names::{Name, Tag};
use crate::repo::{keys, ManifestRecord};
use crate::storage::{Freshness, Storage};

type Result<T> = std::result::Result<T, Error>;

/// Where a run's state is kept between steps.
pub const STATE: &str = "_gc/state";
/// The lease that keeps steps one at a time.
pub const LEASE: &str = "_gc/lease";
/// The folder of the candidates' chunks.
pub const CANDIDATES: &str = "_gc/candidates";
/// How long a lease holds: longer than an invocation can run.
pub const LEASE_MS: u64 = 20 * 60 * 1000;
/// The most removals listed in a run's report.
const REMOVED_MAX: usize = 1000;
/// The most blobs a listing page asks for.
const PAGE: usize = 1000;
const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// A run's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Recover,
    List,
    Mark,
    Condemn,
    Remark,
    Sweep,
    Finish,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Recover => "recover",
            Phase::List => "list",
            Phase::Mark => "mark",
            Phase::Condemn => "condemn",
            Phase::Remark => "remark",
            Phase::Sweep => "sweep",
            Phase::Finish => "finish",
        }
    }
}

/// What a step found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No collection is under way and none is due.
    Idle,
    /// Another invocation holds the lease.
    Busy,
    /// The collection goes on at the next step, in this phase.
    Working(Phase),
    /// The collection finished in this step.
    Done(Report),
}

/// One step's outcome.
#[derive(Debug)]
pub struct Step {
    pub status: Status,
    /// Storage operations this step made (about R2 subrequests).
    pub ops: u64,
    /// What it removed.
    pub events: Vec<Event>,
    /// The run's generation and how many steps it has taken (this one included); 0 when idle.
    pub generation: u64,
    pub steps: u64,
}

/// A set of 64-bit digest prefixes, kept as one hex string.
#[derive(Debug, Clone, Default)]
struct Prefixes(BTreeSet<u64>);

fn prefix(d: &Digest) -> u64 {
    u64::from_str_radix(&d.hex()[..16], 16).unwrap_or(0)
}

impl Prefixes {
    fn insert(&mut self, d: &Digest) {
        self.0.insert(prefix(d));
    }
    fn contains(&self, d: &Digest) -> bool {
        self.0.contains(&prefix(d))
    }
}

impl Serialize for Prefixes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(self.0.len() * 16);
        for p in &self.0 {
            out.push_str(&format!("{p:016x}"));
        }
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Prefixes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 16 != 0 || !text.is_ascii() {
            return Err(serde::de::Error::custom("bad prefix set"));
        }
        let mut set = BTreeSet::new();
        for i in (0..text.len()).step_by(16) {
            set.insert(
                u64::from_str_radix(&text[i..i + 16], 16).map_err(serde::de::Error::custom)?,
            );
        }
        Ok(Prefixes(set))
    }
}

/// Where the reading of one repository got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Stage {
    Index,
    Tags,
    Records,
    Retention,
    Roots,
    Walk,
}

/// One repository being marked.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RepoWork {
    name: String,
    stage: Stage,
    next: usize,
    tag_names: Vec<String>,
    record_names: Vec<Digest>,
    tags: Vec<(String, Digest)>,
    records: BTreeMap<Digest, (ManifestRecord, String)>,
    expired: Vec<(String, Digest)>,
    todo: Vec<Digest>,
    seen: BTreeSet<Digest>,
}

/// A run, as saved between steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Run {
    generation: u64,
    started_ms: u64,
    /// Seconds since the epoch at the start: what the grace period counts from.
    now: u64,
    grace: u64,
    delete_untagged: bool,
    phase: Phase,
    steps: u64,
    cursor: Option<String>,
    young: BTreeSet<Digest>,
    listed: u64,
    listed_bytes: u64,
    repos: Vec<String>,
    repo: usize,
    work: Option<RepoWork>,
    live: Prefixes,
    links: BTreeMap<String, Prefixes>,
    records: BTreeMap<String, Prefixes>,
    first: BTreeMap<String, BTreeMap<Digest, String>>,
    chunks: u64,
    chunk: u64,
    offset: usize,
    recover: Vec<Digest>,
    report: Report,
}

/// What one step keeps in memory only.
#[derive(Default)]
struct Cache {
    chunk: Option<(u64, Vec<(Digest, u64)>)>,
    referrers: Option<(String, HashMap<Digest, Vec<Digest>>)>,
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: not collecting"))
}

/// Takes the lease for `holder`; `false` when another holds it.
async fn take_lease<S: Storage + ?Sized>(s: &S, holder: &str, now_ms: u64) -> Result<bool> {
    for _ in 0..3 {
        let Some((raw, version)) = s.get_versioned(LEASE).await? else {
            // Create it free, then take it like any other (a lost creation race is harmless).
            s.put_new(LEASE, Bytes::from(format!("free {holder} {now_ms}")))
                .await?;
            continue;
        };
        let text = std::str::from_utf8(&raw).unwrap_or("");
        let mut words = text.split(' ');
        if words.next() == Some("held") {
            let until: u64 = words
                .nth(1)
                .and_then(|w| w.parse().ok())
                .unwrap_or(u64::MAX);
            if until > now_ms {
                return Ok(false);
            }
        }
        let held = format!("held {holder} {}", now_ms + LEASE_MS);
        return Ok(s.put_if(LEASE, Bytes::from(held), &version).await?);
    }
    Ok(false)
}

/// Gives the lease back, if `holder` still holds it.
async fn release_lease<S: Storage + ?Sized>(s: &S, holder: &str, now_ms: u64) -> Result<()> {
    if let Some((raw, version)) = s.get_versioned(LEASE).await? {
        if raw.starts_with(format!("held {holder} ").as_bytes()) {
            let free = format!("free {holder} {now_ms}");
            s.put_if(LEASE, Bytes::from(free), &version).await?;
        }
    }
    Ok(())
}

/// Whether a new run is due: the last one began at least `interval` seconds ago.
async fn due<S: Storage + ?Sized>(s: &S, interval: Option<u64>, now: u64) -> Result<bool> {
    let Some(interval) = interval else {
        return Ok(false);
    };
    let Some(raw) = s.get(guard::LAST_RUN).await? else {
        return Ok(true);
    };
    let started = serde_json::from_slice::<serde_json::Value>(&raw)
        .ok()
        .and_then(|v| v["started"].as_u64())
        .unwrap_or(0);
    Ok(started.saturating_add(interval) <= now)
}

/// One step of the incremental collection: goes on with the run under way, or, when none is
/// and one is `interval` seconds (if any) after the last run's start, begins one. Does about
/// `budget` storage operations at most (past it, only the unit in hand is finished).
pub async fn step<S: Storage + Clone>(
    storage: &S,
    opts: &Options,
    clock: &dyn Clock,
    budget: u64,
    interval: Option<u64>,
) -> Result<Step> {
    if opts.dry_run {
        return Err(Error::internal("a dry run is not incremental"));
    }
    let m = Metered::new(storage.clone());
    let now_ms = clock.now_ms();
    let mut out = Step {
        status: Status::Idle,
        ops: 0,
        events: Vec::new(),
        generation: 0,
        steps: 0,
    };
    let flag = guard::flag(&m).await?;
    if !flag.active && !due(&m, interval, now_ms / 1000).await? {
        out.ops = m.ops();
        return Ok(out);
    }
    let holder = crate::upload::new_upload_id();
    if !take_lease(&m, &holder, now_ms).await? {
        out.status = Status::Busy;
        out.ops = m.ops();
        return Ok(out);
    }
    let result = work(&m, opts, clock, budget, flag, &mut out).await;
    let released = release_lease(&m, &holder, clock.now_ms()).await;
    result?;
    released?;
    out.ops = m.ops();
    Ok(out)
}

async fn work<S: Storage>(
    m: &Metered<S>,
    opts: &Options,
    clock: &dyn Clock,
    budget: u64,
    flag: Flag,
    out: &mut Step,
) -> Result<()> {
    // Under the lease now: the state is ours to read and write.
    let saved = match m.get(STATE).await? {
        Some(raw) => serde_json::from_slice::<Run>(&raw).ok(),
        None => None,
    };
    let mut run = match saved {
        Some(run) => run,
        None => {
            // A new run; a state that does not parse is dropped and its run begun again
            // (its markers are recovered like a crashed run's).
            let started_ms = clock.now_ms();
            let generation = guard::flag(m).await?.generation.max(flag.generation) + 1;
            let active = Flag {
                active: true,
                generation,
            };
            m.put(guard::ACTIVE, active.encode()).await?;
            Run {
                generation,
                started_ms,
                now: started_ms / 1000,
                grace: opts.grace,
                delete_untagged: opts.delete_untagged,
                phase: Phase::Recover,
                steps: 0,
                cursor: None,
                young: BTreeSet::new(),
                listed: 0,
                listed_bytes: 0,
                repos: Vec::new(),
                repo: 0,
                work: None,
                live: Prefixes::default(),
                links: BTreeMap::new(),
                records: BTreeMap::new(),
                first: BTreeMap::new(),
                chunks: 0,
                chunk: 0,
                offset: 0,
                recover: Vec::new(),
                report: Report {
                    started: started_ms / 1000,
                    ..Report::default()
                },
            }
        }
    };
    run.steps += 1;
    out.generation = run.generation;
    out.steps = run.steps;
    let mut cache = Cache::default();
    // At least one unit a step, however small the budget; then as many as it leaves room for,
    // with 3 operations kept for the state's save and the lease's release.
    loop {
        if unit(m, &mut run, opts, budget, &mut cache, &mut out.events).await? {
            run.report.duration_ms = clock.now_ms().saturating_sub(run.started_ms);
            out.status = Status::Done(finish(m, &run).await?);
            return Ok(());
        }
        if m.ops() + 3 >= budget {
            break;
        }
    }
    let state = serde_json::to_vec(&run).map_err(|e| Error::internal(e.to_string()))?;
    m.put(STATE, state.into()).await?;
    out.status = Status::Working(run.phase);
    Ok(())
}

/// Does one unit of work; `true` when the run is complete.
async fn unit<S: Storage>(
    m: &Metered<S>,
    run: &mut Run,
    opts: &Options,
    budget: u64,
    cache: &mut Cache,
    events: &mut Vec<Event>,
) -> Result<bool> {
    match run.phase {
        Phase::Recover => {
            for (alg, dir) in guard::marker_dirs() {
                for hex in m.list(&dir, Freshness::Current).await? {
                    let key = format!("{dir}/{hex}");
                    let Ok(digest) = Digest::parse(&format!("{}:{hex}", alg.as_str())) else {
                        m.delete(&key).await?;
                        continue;
                    };
                    match m.get(&key).await? {
                        Some(raw) if guard::parse(&raw).0 == State::Deleting => {
                            run.recover.push(digest);
                        }
                        Some(_) => m.delete(&key).await?,
                        None => {}
                    }
                }
            }
            run.recover.sort();
            run.recover.dedup();
            run.phase = Phase::List;
        }
        Phase::List => {
            let page = m.list_blobs(run.cursor.as_deref(), PAGE).await?;
            for b in page.blobs {
                if b.modified.saturating_add(run.grace) > run.now {
                    run.young.insert(b.digest);
                }
            }
            run.cursor = page.next;
            if run.cursor.is_none() {
                start_pass(m, run, Phase::Mark).await?;
            }
        }
        Phase::Mark | Phase::Remark => mark_unit(m, run, opts, cache, events).await?,
        Phase::Condemn => {
            let remaining = budget.saturating_sub(m.ops()) as usize;
            let page = m
                .list_blobs(run.cursor.as_deref(), remaining.clamp(1, PAGE))
                .await?;
            let mut lines = Vec::new();
            for b in &page.blobs {
                run.listed += 1;
                run.listed_bytes += b.size;
                if run.live.contains(&b.digest)
                    || b.modified.saturating_add(run.grace) > run.now
                    || run.recover.contains(&b.digest)
                {
                    continue;
                }
                m.put(
                    &guard::marker(&b.digest),
                    guard::encode(State::Condemned, run.generation),
                )
                .await?;
                lines.push(format!("{} {}", b.digest, b.size));
            }
            if !lines.is_empty() {
                m.put(
                    &format!("{CANDIDATES}/{}", run.chunks),
                    Bytes::from(lines.join("\n")),
                )
                .await?;
                run.chunks += 1;
            }
            run.cursor = page.next;
            if run.cursor.is_none() {
                start_pass(m, run, Phase::Remark).await?;
            }
        }
        Phase::Sweep => sweep_unit(m, run, cache, events).await?,
        Phase::Finish => {
            // The candidates' chunks go, then the markers left (revived ones), a budget's
            // worth at a time.
            if run.chunk > 0 {
                while run.chunk > 0 && m.ops() < budget {
                    run.chunk -= 1;
                    m.delete(&format!("{CANDIDATES}/{}", run.chunk)).await?;
                }
                return Ok(false);
            }
            let mut left = false;
            for (_, dir) in guard::marker_dirs() {
                for hex in m.list(&dir, Freshness::Current).await? {
                    if m.ops() >= budget {
                        left = true;
                        break;
                    }
                    m.delete(&format!("{dir}/{hex}")).await?;
                }
            }
            return Ok(!left);
        }
    }
    Ok(false)
}

/// Begins a pass of the mark over the catalog as it is now.
async fn start_pass<S: Storage>(m: &Metered<S>, run: &mut Run, phase: Phase) -> Result<()> {
    let mut repos = m.list(keys::CATALOG_DIR, Freshness::Current).await?;
    repos.sort();
    run.repos = repos;
    run.repo = 0;
    run.work = None;
    run.cursor = None;
    if phase == Phase::Remark {
        run.live = Prefixes::default();
    }
    run.phase = phase;
    Ok(())
}

/// Whether a manifest record is a root of its own (see [`super::mark::Roots`]): yes unless
/// untagged manifests may go or it is a referrer; but always when it is young (pushed within
/// the grace period or since the run began, or its bytes stored within it), has no push time,
/// or, in the re-mark, is new or rewritten since the first mark.
fn is_root(run: &Run, repo: &str, d: &Digest, record: &ManifestRecord, version: &str) -> bool {
    if !run.delete_untagged && record.subject.is_none() {
        return true;
    }
    let Some(pushed) = record.pushed else {
        return true;
    };
    if pushed >= run.started_ms || (pushed / 1000).saturating_add(run.grace) > run.now {
        return true;
    }
    if run.young.contains(d) {
        return true;
    }
    run.phase == Phase::Remark
        && run
            .first
            .get(repo)
            .and_then(|f| f.get(d))
            .is_none_or(|v| v != version)
}

async fn mark_unit<S: Storage>(
    m: &Metered<S>,
    run: &mut Run,
    opts: &Options,
    cache: &mut Cache,
    events: &mut Vec<Event>,
) -> Result<()> {
    if run.repo >= run.repos.len() {
        if run.phase == Phase::Mark {
            run.phase = Phase::Condemn;
            run.cursor = None;
        } else {
            run.phase = Phase::Sweep;
        }
        return Ok(());
    }
    let entry = run.repos[run.repo].clone();
    let Ok(name) = Name::parse(&keys::catalog_name(&entry)) else {
        run.repo += 1;
        return Ok(());
    };
    let mut w = run.work.take().unwrap_or_else(|| RepoWork {
        name: name.as_str().to_string(),
        stage: Stage::Index,
        next: 0,
        tag_names: Vec::new(),
        record_names: Vec::new(),
        tags: Vec::new(),
        records: BTreeMap::new(),
        expired: Vec::new(),
        todo: Vec::new(),
        seen: BTreeSet::new(),
    });
    let repo = w.name.clone();
    match w.stage {
        Stage::Index => {
            w.tag_names = m.list(&keys::tags_dir(&name), Freshness::Current).await?;
            w.tag_names.sort();
            for alg in ALGORITHMS {
                for hex in m
                    .list(&keys::manifests_dir(&name, alg), Freshness::Current)
                    .await?
                {
                    if let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.as_str())) {
                        run.records.entry(repo.clone()).or_default().insert(&d);
                        w.record_names.push(d);
                    }
                }
                for hex in m
                    .list(&keys::links_dir(&name, alg), Freshness::Current)
                    .await?
                {
                    if let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.as_str())) {
                        run.links.entry(repo.clone()).or_default().insert(&d);
                    }
                }
            }
            w.stage = Stage::Tags;
            w.next = 0;
        }
        Stage::Tags => {
            if let Some(t) = w.tag_names.get(w.next).cloned() {
                w.next += 1;
                if let Ok(tag) = Tag::parse(&t) {
                    if let Some(raw) = m.get(&keys::tag(&name, &tag)).await? {
                        if let Some(d) = std::str::from_utf8(&raw)
                            .ok()
                            .and_then(|s| Digest::parse(s).ok())
                        {
                            w.tags.push((t, d));
                        }
                    }
                }
            } else {
                w.stage = Stage::Records;
                w.next = 0;
            }
        }
        Stage::Records => {
            if let Some(d) = w.record_names.get(w.next).cloned() {
                w.next += 1;
                if let Some((raw, version)) = m.get_versioned(&keys::manifest(&name, &d)).await? {
                    let record: ManifestRecord = serde_json::from_slice(&raw)
                        .map_err(|_| corrupt(format!("corrupt manifest record {name}@{d}")))?;
                    w.records.insert(d, (record, version));
                }
            } else {
                w.stage = Stage::Retention;
                w.next = 0;
                if run.phase == Phase::Mark && !opts.retention.is_empty() {
                    let index = RepoIndex {
                        name: name.clone(),
                        tags: w
                            .tags
                            .iter()
                            .filter_map(|(t, d)| Tag::parse(t).ok().map(|t| (t, d.clone())))
                            .collect(),
                        records: w.records.clone(),
                        links: BTreeSet::new(),
                    };
                    let snap = Snapshot { repos: vec![index] };
                    w.expired = opts
                        .retention
                        .expired(&snap, run.now)
                        .into_iter()
                        .map(|(_, t, d)| (t.as_str().to_string(), d))
                        .collect();
                }
            }
        }
        Stage::Retention => {
            if let Some((t, d)) = w.expired.get(w.next).cloned() {
                w.next += 1;
                let tag = Tag::parse(&t).map_err(|e| Error::internal(e.to_string()))?;
                if super::expire_tag(m, &name, &tag, &d).await? {
                    run.report.tags_removed += 1;
                    note(&mut run.report, format!("tag {name}:{tag}"));
                    events.push(Event::TagExpired {
                        repo: name.clone(),
                        tag,
                        digest: d,
                    });
                }
                w.tags.retain(|(x, _)| *x != t);
            } else {
                w.stage = Stage::Roots;
            }
        }
        Stage::Roots => {
            let mut todo: Vec<Digest> = w.tags.iter().map(|(_, d)| d.clone()).collect();
            for (d, (record, version)) in &w.records {
                if is_root(run, &repo, d, record, version) {
                    todo.push(d.clone());
                } else if run.phase == Phase::Mark {
                    run.first
                        .entry(repo.clone())
                        .or_default()
                        .insert(d.clone(), version.clone());
                }
            }
            w.todo = todo;
            w.stage = Stage::Walk;
        }
        Stage::Walk => {
            // Digests already seen cost nothing: go on to the next one that needs a read.
            let mut done = true;
            while let Some(d) = w.todo.pop() {
                if !w.seen.insert(d.clone()) {
                    continue;
                }
                run.live.insert(&d);
                if cache.referrers.as_ref().is_none_or(|(r, _)| *r != repo) {
                    let mut map: HashMap<Digest, Vec<Digest>> = HashMap::new();
                    for (r, (record, _)) in &w.records {
                        if let Some(subject) = &record.subject {
                            map.entry(subject.clone()).or_default().push(r.clone());
                        }
                    }
                    cache.referrers = Some((repo.clone(), map));
                }
                if let Some((_, map)) = &cache.referrers {
                    if let Some(children) = map.get(&d) {
                        w.todo.extend(children.iter().cloned());
                    }
                }
                if let Some((record, _)) = w.records.get(&d) {
                    let (blobs, manifests) = read_manifest(m, &d, record).await?;
                    for b in &blobs {
                        run.live.insert(b);
                    }
                    w.todo.extend(manifests);
                    done = false;
                    break;
                }
            }
            if done && w.todo.is_empty() {
                run.repo += 1;
                return Ok(());
            }
        }
    }
    run.work = Some(w);
    Ok(())
}

/// What a manifest references (blobs, manifests); nothing when its bytes are gone.
async fn read_manifest<S: Storage + ?Sized>(
    m: &S,
    d: &Digest,
    record: &ManifestRecord,
) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let Some(body) = m.blob_read(d, 0, record.size).await? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let bytes = body
        .collect_limited(record.size as usize + 1)
        .await
        .map_err(|e| Error::internal(format!("reading manifest {d}: {e}")))?
        .unwrap_or_default();
    let parsed = Manifest::parse(Some(&record.media_type), &bytes)
        .map_err(|_| corrupt(format!("manifest {d} does not parse")))?;
    Ok((parsed.blobs, parsed.manifests))
}

fn note(report: &mut Report, line: String) {
    if report.removed.len() < REMOVED_MAX {
        report.removed.push(line);
    }
}

async fn sweep_unit<S: Storage>(
    m: &Metered<S>,
    run: &mut Run,
    cache: &mut Cache,
    events: &mut Vec<Event>,
) -> Result<()> {
    if let Some(d) = run.recover.last().cloned() {
        // A crashed run's deletion: finished whatever the marks say.
        remove(m, run, &d, None, events).await?;
        run.recover.pop();
        run.report.recovered += 1;
        return Ok(());
    }
    if run.chunk >= run.chunks {
        // The finish counts the chunks back down as it deletes them.
        run.phase = Phase::Finish;
        return Ok(());
    }
    if cache.chunk.as_ref().is_none_or(|(n, _)| *n != run.chunk) {
        let raw = m
            .get(&format!("{CANDIDATES}/{}", run.chunk))
            .await?
            .unwrap_or_default();
        let lines = std::str::from_utf8(&raw)
            .unwrap_or("")
            .lines()
            .filter_map(|l| {
                let (d, size) = l.split_once(' ')?;
                Some((Digest::parse(d).ok()?, size.parse().ok()?))
            })
            .collect();
        cache.chunk = Some((run.chunk, lines));
    }
    let Some((_, lines)) = &cache.chunk else {
        return Ok(());
    };
    let Some((d, size)) = lines.get(run.offset).cloned() else {
        run.chunk += 1;
        run.offset = 0;
        return Ok(());
    };
    run.offset += 1;
    let key = guard::marker(&d);
    if run.live.contains(&d) {
        m.delete(&key).await?;
        run.report.spared += 1;
        return Ok(());
    }
    let Some((raw, version)) = m.get_versioned(&key).await? else {
        // Done by a step that died before it saved.
        return Ok(());
    };
    match guard::parse(&raw) {
        (State::Condemned, _) => {
            let deleting = guard::encode(State::Deleting, run.generation);
            if !m.put_if(&key, deleting, &version).await? {
                run.report.spared += 1;
                return Ok(());
            }
        }
        // Ours, begun by a step that died before it saved.
        (State::Deleting, _) => {}
        (State::Revived, _) => {
            run.report.spared += 1;
            return Ok(());
        }
    }
    remove(m, run, &d, Some(size), events).await
}

/// Deletes a blob whose marker is in `deleting`: its links and manifest records (with their
/// referrer entries) in every repository that may have one, its bytes, then the marker.
async fn remove<S: Storage>(
    m: &Metered<S>,
    run: &mut Run,
    d: &Digest,
    size: Option<u64>,
    events: &mut Vec<Event>,
) -> Result<()> {
    for (repo, set) in &run.links {
        if set.contains(d) {
            if let Ok(name) = Name::parse(repo) {
                m.delete(&keys::blob_link(&name, d)).await?;
            }
        }
    }
    for (repo, set) in &run.records {
        if !set.contains(d) {
            continue;
        }
        let Ok(name) = Name::parse(repo) else {
            continue;
        };
        let key = keys::manifest(&name, d);
        let Some(raw) = m.get(&key).await? else {
            continue;
        };
        if let Ok(record) = serde_json::from_slice::<ManifestRecord>(&raw) {
            if let Some(subject) = &record.subject {
                m.delete(&keys::referrer(&name, subject, d)).await?;
            }
        }
        m.delete(&key).await?;
        run.report.manifests_removed += 1;
        note(&mut run.report, format!("manifest {name}@{d}"));
        events.push(Event::ManifestCollected {
            repo: name,
            digest: d.clone(),
        });
    }
    let size = match size {
        Some(s) => s,
        None => m.blob_size(d).await?.unwrap_or(0),
    };
    m.blob_delete(d).await?;
    m.delete(&guard::marker(d)).await?;
    run.report.blobs_removed += 1;
    run.report.bytes_reclaimed += size;
    note(&mut run.report, format!("blob {d} {size}"));
    events.push(Event::BlobCollected {
        digest: d.clone(),
        size,
    });
    Ok(())
}

/// Ends a run: the summary is written, the state goes, the flag says idle.
async fn finish<S: Storage>(m: &Metered<S>, run: &Run) -> Result<Report> {
    let mut report = run.report.clone();
    report.blobs_kept = run.listed.saturating_sub(report.blobs_removed);
    report.bytes_kept = run.listed_bytes.saturating_sub(report.bytes_reclaimed);
    if let Ok(summary) = serde_json::to_vec(&report) {
        m.put(guard::LAST_RUN, summary.into()).await?;
    }
    m.delete(STATE).await?;
    let idle = Flag {
        active: false,
        generation: run.generation,
    };
    m.put(guard::ACTIVE, idle.encode()).await?;
    Ok(report)
}
