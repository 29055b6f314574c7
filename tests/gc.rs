//! Garbage collection in process, over `MemoryStorage`: exactly the unshared blobs go,
//! referrers live with their subject, untagged manifests stay unless told, the grace period,
//! retention rules and the dry run, and the race against pushing clients.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use edge_registry::clock::{Clock, FixedClock};
use edge_registry::event::Event;
use edge_registry::gc::{self, check, Options, Retention};
use edge_registry::native::SystemClock;
use edge_registry::storage::memory::MemoryStorage;
use edge_registry::storage::Storage;
use http::StatusCode;
use serde_json::json;

use common::client::Client;
use common::content::{descriptor, image_of, to_bytes, with};
use common::target::{in_process_clocked, in_process_with};
use common::{sha256, Options as TargetOptions};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn open(storage: &MemoryStorage) -> Client {
    in_process_with(TargetOptions::open(), storage.clone()).client()
}

async fn collect(storage: &MemoryStorage, opts: &Options) -> gc::Outcome {
    gc::collect(storage, opts, &SystemClock).await.unwrap()
}

/// (blobs stored, their bytes).
async fn stored(storage: &MemoryStorage) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let page = storage.list_blobs(cursor.as_deref(), 100).await.unwrap();
        n += page.blobs.len() as u64;
        bytes += page.blobs.iter().map(|b| b.size).sum::<u64>();
        match page.next {
            Some(c) => cursor = Some(c),
            None => return (n, bytes),
        }
    }
}

/// Pushes a config and layers and an image manifest of them under `reference`; returns the
/// manifest's bytes and digest.
async fn push(
    c: &Client,
    name: &str,
    reference: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> (Bytes, String) {
    c.push_blob(name, config.to_vec()).await;
    for l in layers {
        c.push_blob(name, l.to_vec()).await;
    }
    let body = to_bytes(&image_of(config, layers));
    let d = c.push_manifest(name, reference, &body).await;
    (body, d)
}

async fn pulls(c: &Client, name: &str, reference: &str, body: &Bytes, blobs: &[&[u8]]) {
    let (got, _) = c.manifest(name, reference).await.expect("manifest");
    assert_eq!(got, body, "{name}:{reference}");
    for b in blobs {
        c.blob_intact(name, b).await;
    }
}

async fn no_problems(storage: &MemoryStorage) {
    let p = check::problems(storage).await.unwrap();
    assert!(p.is_empty(), "{p:#?}");
}

#[tokio::test]
async fn exactly_the_unshared_blobs_go() {
    let storage = MemoryStorage::new();
    let c = open(&storage);
    let shared: &[u8] = b"shared layer";
    let (a, b) = ("gc/one", "gc/two");
    let (ma, _) = push(&c, a, "a", b"config a", &[shared, b"layer a"]).await;
    let (_, db) = push(&c, a, "b", b"config b", &[shared, b"layer b"]).await;
    let (mc, _) = push(&c, b, "c", b"config c", &[shared, b"layer c"]).await;
    c.delete(&format!("/v2/{a}/manifests/{db}"))
        .send()
        .await
        .expect(StatusCode::ACCEPTED);
    let before = stored(&storage).await;
    let keys_before: BTreeSet<String> = storage.stored_keys().into_iter().collect();

    // The dry run says what goes, and changes nothing.
    let dry = collect(
        &storage,
        &Options {
            dry_run: true,
            ..Options::default()
        },
    )
    .await;
    let keys_after: BTreeSet<String> = storage.stored_keys().into_iter().collect();
    assert_eq!(keys_before, keys_after);
    assert!(dry.events.is_empty());

    let out = collect(&storage, &Options::default()).await;
    let b_manifest = to_bytes(&image_of(b"config b", &[shared, b"layer b"]));
    let gone: BTreeSet<String> = [sha256(b"config b"), sha256(b"layer b"), db.clone()].into();
    let removed: BTreeSet<String> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::BlobCollected { digest, .. } => Some(digest.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(removed, gone);
    assert_eq!(out.report.blobs_removed, 3);
    assert_eq!(
        out.report.bytes_reclaimed,
        (b"config b".len() + b"layer b".len() + b_manifest.len()) as u64
    );
    assert_eq!(out.report.removed, dry.report.removed);
    assert_eq!(out.report.blobs_kept, before.0 - 3);
    let after = stored(&storage).await;
    assert_eq!(after, (before.0 - 3, before.1 - out.report.bytes_reclaimed));
    assert_eq!(
        (after.0, after.1),
        (out.report.blobs_kept, out.report.bytes_kept)
    );

    pulls(&c, a, "a", &ma, &[b"config a", shared, b"layer a"]).await;
    pulls(&c, b, "c", &mc, &[b"config c", shared, b"layer c"]).await;
    c.blob_absent(a, &sha256(b"layer b")).await;
    c.blob_absent(a, &sha256(b"config b")).await;
    no_problems(&storage).await;

    // Nothing more to do, and the summary is stored.
    let again = collect(&storage, &Options::default()).await;
    assert_eq!(again.report.blobs_removed, 0);
    let summary = storage.get(gc::guard::LAST_RUN).await.unwrap().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    assert_eq!(summary["blobs_removed"], 0);
}

/// An artifact manifest (a signature) whose subject is `subject`.
fn signature(subject: &Bytes, sig: &[u8]) -> Bytes {
    to_bytes(&with(
        image_of(b"{}", &[sig]),
        json!({
            "artifactType": "application/vnd.example.signature",
            "subject": { "mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": subject.len() },
        }),
    ))
}

#[tokio::test]
async fn a_signature_goes_with_its_image() {
    let storage = MemoryStorage::new();
    let c = open(&storage);
    let name = "gc/signed";
    let (ma, da) = push(&c, name, "a", b"config a", &[b"layer a"]).await;
    let (mb, db) = push(&c, name, "b", b"config b", &[b"layer b"]).await;
    c.push_blob(name, b"{}".to_vec()).await;
    c.push_blob(name, b"sig a".to_vec()).await;
    c.push_blob(name, b"sig b".to_vec()).await;
    let (sa, sb) = (signature(&ma, b"sig a"), signature(&mb, b"sig b"));
    let dsa = c.push_manifest(name, &sha256(&sa), &sa).await;
    let dsb = c.push_manifest(name, &sha256(&sb), &sb).await;
    c.delete(&format!("/v2/{name}/manifests/{db}"))
        .send()
        .await
        .expect(StatusCode::ACCEPTED);

    // Grace 0: the signature's record was pushed just now.
    let out = collect(
        &storage,
        &Options {
            grace: 0,
            ..Options::default()
        },
    )
    .await;
    let removed: BTreeSet<String> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::BlobCollected { digest, .. } => Some(digest.to_string()),
            _ => None,
        })
        .collect();
    let want: BTreeSet<String> = [
        db,
        dsb.clone(),
        sha256(b"config b"),
        sha256(b"layer b"),
        sha256(b"sig b"),
    ]
    .into();
    assert_eq!(removed, want);
    assert!(out.events.contains(&Event::ManifestCollected {
        repo: edge_registry::names::Name::parse(name).unwrap(),
        digest: edge_registry::digest::Digest::parse(&dsb).unwrap(),
    }));
    // The kept image's signature stays, and is still its referrer.
    pulls(&c, name, "a", &ma, &[b"config a", b"layer a"]).await;
    pulls(&c, name, &dsa, &sa, &[b"{}", b"sig a"]).await;
    let r = c.get(&format!("/v2/{name}/referrers/{da}")).send().await;
    let listed: Vec<String> = r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec![dsa]);
    assert!(c.manifest(name, &dsb).await.is_none());
    no_problems(&storage).await;
}

#[tokio::test]
async fn untagged_manifests_stay_unless_told_and_index_children_stay() {
    let storage = MemoryStorage::new();
    let c = open(&storage);
    let name = "gc/untagged";
    let (m1, d1) = push(
        &c,
        name,
        &sha256(&to_bytes(&image_of(b"c1", &[b"l1"]))),
        b"c1",
        &[b"l1"],
    )
    .await;
    let (m2, d2) = push(
        &c,
        name,
        &sha256(&to_bytes(&image_of(b"c2", &[b"l2"]))),
        b"c2",
        &[b"l2"],
    )
    .await;
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &m2)],
    }));
    let r = c
        .put_manifest(name, "multi", OCI_INDEX, index.clone())
        .await;
    r.expect(StatusCode::CREATED);

    let out = collect(
        &storage,
        &Options {
            grace: 0,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(out.report.blobs_removed, 0, "{:?}", out.report.removed);
    pulls(&c, name, &d1, &m1, &[b"c1", b"l1"]).await;

    // Grace 0: the records were pushed just now.
    let opts = Options {
        delete_untagged: true,
        grace: 0,
        ..Options::default()
    };
    let out = collect(&storage, &opts).await;
    let removed: BTreeSet<String> = out.report.removed.iter().cloned().collect();
    let want: BTreeSet<String> = [
        format!("manifest {name}@{d1}"),
        format!("blob {d1} {}", m1.len()),
        format!("blob {} 2", sha256(b"c1")),
        format!("blob {} 2", sha256(b"l1")),
    ]
    .into();
    assert_eq!(removed, want);
    assert!(c.manifest(name, &d1).await.is_none());
    pulls(&c, name, &d2, &m2, &[b"c2", b"l2"]).await;
    assert_eq!(c.manifest(name, "multi").await.unwrap().0, index);
    no_problems(&storage).await;
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn nothing_younger_than_the_grace_period_goes() {
    let storage = MemoryStorage::with_clock(now_secs);
    let c = open(&storage);
    let name = "gc/young";
    c.push_blob(name, b"nobody uses me".to_vec()).await;
    let out = collect(&storage, &Options::default()).await;
    assert_eq!(out.report.blobs_removed, 0);
    c.blob_intact(name, b"nobody uses me").await;
    let out = collect(
        &storage,
        &Options {
            grace: 0,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(out.report.blobs_removed, 1);
    c.blob_absent(name, &sha256(b"nobody uses me")).await;
    no_problems(&storage).await;
}

#[tokio::test]
async fn retention_keeps_exactly_what_the_rules_say() {
    const DAY: u64 = 86_400_000;
    let now: u64 = 1_000 * DAY;
    let storage = MemoryStorage::new();
    let clock = Arc::new(FixedClock::at_ms(now));
    let c = in_process_clocked(storage.clone(), clock.clone()).client();
    // (repo, tag, days ago)
    let pushes = [
        ("ret/app", "latest", 100),
        ("ret/app", "v1.0", 90),
        ("ret/app", "dev-1", 30),
        ("ret/app", "dev-2", 3),
        ("ret/app", "dev-3", 2),
        ("ret/app", "dev-4", 1),
        ("ret/recent", "a", 10),
        ("ret/recent", "b", 1),
        ("ret/pulled", "p", 50),
        ("ret/pulled", "q", 50),
        ("other/kept", "x", 500),
    ];
    for (i, (repo, tag, days)) in pushes.iter().enumerate() {
        clock.set_ms(now - days * DAY);
        let layer = format!("layer {i}");
        push(
            &c,
            repo,
            tag,
            format!("config {i}").as_bytes(),
            &[layer.as_bytes()],
        )
        .await;
    }
    // `p` was pulled 3 days ago.
    clock.set_ms(now - 3 * DAY);
    assert!(c.manifest("ret/pulled", "p").await.is_some());
    clock.set_ms(now);

    let rules = Retention::parse(
        "ret/app keep-last=2 keep=latest,v*\nret/recent pushed-within=5d\nret/pulled pulled-within=7d\n",
    )
    .unwrap();
    let opts = Options {
        retention: rules,
        ..Options::default()
    };
    let keys_before: BTreeSet<String> = storage.stored_keys().into_iter().collect();
    let dry = gc::collect(
        &storage,
        &Options {
            dry_run: true,
            ..opts.clone()
        },
        &*clock,
    )
    .await
    .unwrap();
    assert_eq!(keys_before, storage.stored_keys().into_iter().collect());
    let expired = [
        "tag ret/app:dev-1",
        "tag ret/app:dev-2",
        "tag ret/pulled:q",
        "tag ret/recent:a",
    ];
    let mut dry_tags: Vec<&str> = dry
        .report
        .removed
        .iter()
        .map(String::as_str)
        .filter(|r| r.starts_with("tag "))
        .collect();
    dry_tags.sort();
    assert_eq!(dry_tags, expired);

    let out = gc::collect(&storage, &opts, &*clock).await.unwrap();
    assert_eq!(out.report.tags_removed, 4);
    let survivors: HashMap<&str, Vec<String>> = [
        ("ret/app", vec!["dev-3", "dev-4", "latest", "v1.0"]),
        ("ret/recent", vec!["b"]),
        ("ret/pulled", vec!["p"]),
        ("other/kept", vec!["x"]),
    ]
    .into_iter()
    .map(|(r, t)| (r, t.into_iter().map(String::from).collect()))
    .collect();
    for (repo, tags) in &survivors {
        assert_eq!(&c.tags(repo).await.unwrap(), tags, "{repo}");
    }
    // The expired tags' manifests stay, untagged, by default.
    assert_eq!(out.report.blobs_removed, 0);
    let expired_events = out
        .events
        .iter()
        .filter(|e| matches!(e, Event::TagExpired { .. }))
        .count();
    assert_eq!(expired_events, 4);
    no_problems(&storage).await;
}

// ---- the race -----------------------------------------------------------------------------

/// What one client pushed and still has tagged: tag → (manifest, its blobs).
type Pushed = HashMap<String, (Bytes, Vec<Bytes>)>;

/// Pushes `blobs` that are not there (HEAD first, as clients do), then the manifest; retries
/// when the collector took a blob in between (400 MANIFEST_BLOB_UNKNOWN, or 429 on upload).
async fn push_racing(c: &Client, name: &str, tag: &str, blobs: &[Bytes], manifest: &Bytes) -> u32 {
    let mut refused = 0;
    for _ in 0..50 {
        for b in blobs {
            let d = sha256(b);
            let head = c.head(&format!("/v2/{name}/blobs/{d}")).send().await;
            if head.status != StatusCode::OK {
                let r = c
                    .post(&format!("/v2/{name}/blobs/uploads/?digest={d}"))
                    .body(b.clone())
                    .send()
                    .await;
                assert!(
                    r.status == StatusCode::CREATED || r.status == StatusCode::TOO_MANY_REQUESTS,
                    "upload: {} {}",
                    r.status,
                    r.text()
                );
            }
        }
        let r = c
            .put_manifest(name, tag, OCI_MANIFEST, manifest.clone())
            .await;
        match r.status {
            StatusCode::CREATED => return refused,
            StatusCode::BAD_REQUEST => {
                assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN", "{}", r.text());
                refused += 1;
            }
            s => panic!("manifest PUT: {s} {}", r.text()),
        }
    }
    panic!("{name}:{tag} refused 50 times");
}

/// One collection: a one-shot one, or (`incremental`) the incremental collector's steps of a
/// small budget until its run is done, each step a chance for the clients to go on.
/// Past `until`, `done` tells the clients to stop, so that a run they keep outgrowing (on a
/// busy machine) still finishes.
async fn collect_once(
    storage: &MemoryStorage,
    opts: &Options,
    incremental: bool,
    until: std::time::Instant,
    done: &std::sync::atomic::AtomicBool,
) -> gc::Report {
    if !incremental {
        return collect(storage, opts).await.report;
    }
    loop {
        if std::time::Instant::now() > until {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let step = gc::steps::step(storage, opts, &SystemClock, 200, Some(0))
            .await
            .unwrap();
        match step.status {
            gc::steps::Status::Done(report) => return report,
            gc::steps::Status::Working(_) => tokio::task::yield_now().await,
            other => panic!("{other:?}"),
        }
    }
}

async fn race(delete_untagged: bool, incremental: bool) {
    const CLIENTS: usize = 8;
    const COLLECTIONS: usize = 200;
    let storage = MemoryStorage::new();
    let c = open(&storage);
    let pool: Vec<Bytes> = (0..12)
        .map(|i| Bytes::from(format!("pool blob {i}")))
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (c, pool, done) = (c.clone(), pool.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let name = format!("race/c{}", i % 3);
            let mut mine: Pushed = HashMap::new();
            let mut refused = 0;
            let mut n = 0usize;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || n < 5 {
                n += 1;
                let config = Bytes::from(format!("config {i} {n}"));
                let own = Bytes::from(format!("layer {i} {n}"));
                let layers = [
                    pool[(i + n) % pool.len()].clone(),
                    pool[(i * 7 + n * 3) % pool.len()].clone(),
                    own,
                ];
                let layers: Vec<Bytes> = layers
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let refs: Vec<&[u8]> = layers.iter().map(|b| b.as_ref()).collect();
                let manifest = to_bytes(&image_of(&config, &refs));
                let tag = format!("t{i}-{n}");
                let mut blobs = vec![config];
                blobs.extend(layers);
                refused += push_racing(&c, &name, &tag, &blobs, &manifest).await;
                if incremental {
                    // Paced: an incremental collection takes many steps, and clients pushing
                    // flat out would outgrow it.
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                mine.insert(tag, (manifest, blobs));
                // Keep the last two; the one before goes, by digest (so the store stays small
                // and every collection has garbage to find).
                if n > 2 {
                    let old = format!("t{i}-{}", n - 2);
                    if let Some((m, _)) = mine.remove(&old) {
                        c.delete(&format!("/v2/{name}/manifests/{}", sha256(&m)))
                            .send()
                            .await
                            .expect(StatusCode::ACCEPTED);
                    }
                }
            }
            (name, mine, refused)
        }));
    }
    let opts = Options {
        grace: 0,
        delete_untagged,
        ..Options::default()
    };
    let mut removed = 0;
    // The incremental collector runs back to back for a while, however many runs that is.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut collections = 0;
    for k in 0.. {
        if (incremental && std::time::Instant::now() > until) || (!incremental && k == COLLECTIONS)
        {
            break;
        }
        collections += 1;
        let report = collect_once(&storage, &opts, incremental, until, &done).await;
        if std::env::var("GC_DEBUG").is_ok() {
            eprintln!("{k}: {}", report.summary());
        }
        removed += report.blobs_removed;
        tokio::task::yield_now().await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut refused = 0;
    let mut tagged = 0;
    for h in clients {
        let (name, mine, r) = h.await.unwrap();
        refused += r;
        for (tag, (manifest, blobs)) in &mine {
            let refs: Vec<&[u8]> = blobs.iter().map(|b| b.as_ref()).collect();
            pulls(&c, &name, tag, manifest, &refs).await;
            tagged += 1;
        }
    }
    // One more collection after the clients stopped, and everything tagged still pulls.
    removed += collect_once(&storage, &opts, incremental, until, &done)
        .await
        .blobs_removed;
    no_problems(&storage).await;
    assert!(removed > 0, "the collector removed nothing");
    println!("{collections} collections (incremental: {incremental}), {removed} blobs removed, {tagged} tags checked, {refused} pushes refused and retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_the_collector_never_lose_a_blob() {
    race(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_the_incremental_collector_never_lose_a_blob() {
    race(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_the_incremental_collector_deleting_untagged_never_lose_a_blob() {
    race(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_the_collector_deleting_untagged_never_lose_a_blob() {
    race(true, false).await;
}

#[test]
fn clock_is_used() {
    // The collector's report takes its start from the clock it is given.
    let clock = FixedClock::at_ms(5_000);
    let storage = MemoryStorage::new();
    let out = common::block_on(gc::collect(&storage, &Options::default(), &clock)).unwrap();
    assert_eq!(out.report.started, clock.now());
}
