//! The scale-out store on real engines (PostgreSQL 15 and Garage on 127.0.0.1, see
//! `common::engines`): the storage suite, several instances sharing one database and one
//! bucket (an upload started on one instance and finished on another, a manifest seen at once
//! everywhere, racing chunks and final PUTs across instances, skopeo pushing through one and
//! pulling through the other, an instance killed mid-upload), PostgreSQL going down and
//! coming back, a Garage node dying in a 3-node cluster, and bad start arguments.
//!
//! The HTTP API and concurrency suites also run against two instances behind a round-robin
//! proxy: `scripts/test-scale`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::client::{content_range, with_digest};
use common::content::{image_of, sha256, to_bytes, OCI_MANIFEST};

use common::engines::{instance, Garage, Postgres, BUCKET};
use common::{repo, Client};
use edge_registry::clock::Clock;
use edge_registry::native::scale::{ScaleOptions, ScaleStorage};
use edge_registry::native::SystemClock;
use edge_registry::storage::suite;
use http::StatusCode;

const MIB: usize = 1024 * 1024;

fn now() -> u64 {
    SystemClock.now()
}

fn content(seed: u8, len: usize) -> Bytes {
    let mut x: u32 = 0x9e37_79b9 ^ seed as u32;
    Bytes::from(
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect::<Vec<u8>>(),
    )
}

fn options(pg: &Postgres, garage: &Garage) -> ScaleOptions {
    ScaleOptions {
        metadata: pg.url(),
        blobs: garage.blobs_url(0),
        credentials_file: Some(credentials_file(garage)),
        pool_size: 8,
    }
}

/// The Garage key in an AWS shared-credentials file (the other way to pass credentials).
fn credentials_file(garage: &Garage) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("scale-creds-{}", repo("c")));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("credentials");
    std::fs::write(
        &path,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            garage.key, garage.secret
        ),
    )
    .unwrap();
    path
}

/// The storage suite on the scale-out store, twice (it keeps to its own keys), and the
/// number of PostgreSQL round trips a manifest GET costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_suite_and_round_trips() {
    let (pg, garage) = (Postgres::start(), Garage::single());
    let s = ScaleStorage::open(&options(&pg, &garage)).await.unwrap();
    for round in ["first", "second"] {
        let report = suite::run(&s, now).await;
        println!("scale ({round}):\n{report}");
        assert!(report.all_passed(), "the storage suite failed:\n{report}");
    }
    // A second store on the same engines migrates nothing and sees the same data.
    let again = ScaleStorage::open(&options(&pg, &garage)).await.unwrap();
    use edge_registry::storage::Storage;
    s.put("probe/x", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(
        again.get("probe/x").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );

    // Round trips per manifest GET, through the core on this store: with its one-statement
    // lookup, and (for comparison) with the trait's default lookup, which reads the tag, the
    // record and the blob's row one after the other (`Metered` does not forward the lookup).
    let name = repo("trips");
    let (by_tag, by_digest) = manifest_get_trips(&s, s.clone(), &name).await;
    let metered = edge_registry::gc::metered::Metered::new(s.clone());
    let (default_tag, default_digest) = manifest_get_trips(&s, metered, &name).await;
    println!(
        "PostgreSQL round trips per manifest GET: by tag {by_tag}, by digest {by_digest} \
         (the default lookup: by tag {default_tag}, by digest {default_digest})"
    );
    assert_eq!((by_tag, by_digest), (1, 1));
    assert_eq!((default_tag, default_digest), (3, 2));
}

/// One request through the core.
async fn handle<S: edge_registry::storage::Storage>(
    registry: &edge_registry::Registry<S>,
    method: &str,
    path: String,
    body: Bytes,
    ct: &str,
) -> (StatusCode, Bytes) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .header("content-length", body.len())
        .body(edge_registry::body::Body::Full(body))
        .unwrap();
    let out = registry.handle(req).await;
    let status = out.response.status();
    let body = out
        .response
        .into_body()
        .collect_limited(1 << 20)
        .await
        .unwrap()
        .unwrap_or_default();
    (status, body)
}

/// Pushes an image to `name` (through `storage`, on `s`) unless there, and counts the
/// PostgreSQL statements of a manifest GET by tag and by digest (after a first GET, which
/// records the day's pull: one write a day). HEADs cost the same as GETs.
async fn manifest_get_trips<S: edge_registry::storage::Storage>(
    s: &ScaleStorage,
    storage: S,
    name: &str,
) -> (u64, u64) {
    let registry = edge_registry::Registry::new(storage, edge_registry::Settings::default())
        .with_clock(Arc::new(SystemClock));
    let config = Bytes::from_static(b"{}");
    let layer = content(1, 1000);
    for blob in [&config, &layer] {
        let (st, _) = handle(
            &registry,
            "POST",
            format!("/v2/{name}/blobs/uploads/?digest={}", sha256(blob)),
            blob.clone(),
            "application/octet-stream",
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let manifest = to_bytes(&image_of(&config, &[&layer]));
    let (st, _) = handle(
        &registry,
        "PUT",
        format!("/v2/{name}/manifests/v1"),
        manifest.clone(),
        OCI_MANIFEST,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let get = |method: &'static str, reference: String| {
        handle(
            &registry,
            method,
            format!("/v2/{name}/manifests/{reference}"),
            Bytes::new(),
            "",
        )
    };
    assert_eq!(get("GET", "v1".into()).await.0, StatusCode::OK);
    let before = s.round_trips();
    let (st, body) = get("GET", "v1".into()).await;
    let by_tag = s.round_trips() - before;
    assert_eq!((st, body), (StatusCode::OK, manifest.clone()));
    let before = s.round_trips();
    let (st, body) = get("GET", sha256(&manifest)).await;
    let by_digest = s.round_trips() - before;
    assert_eq!((st, body), (StatusCode::OK, manifest.clone()));
    // HEAD: no more than a GET (no bytes; the default lookup skips the blob's row).
    let before = s.round_trips();
    assert_eq!(get("HEAD", "v1".into()).await.0, StatusCode::OK);
    let head = s.round_trips() - before;
    assert!(head <= by_tag, "HEAD {head}, GET {by_tag}");
    assert_eq!(get("GET", "nope".into()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get("GET", sha256(b"nothing")).await.0,
        StatusCode::NOT_FOUND
    );
    (by_tag.max(head), by_digest)
}

/// Two instances on one database and bucket: any instance answers any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_everything() {
    if let Ok(metadata) = std::env::var(LOCK_HOLDER) {
        return hold_collector_lock(metadata).await;
    }
    let (pg, garage) = (Postgres::start(), Garage::single());
    let (a, b) = (
        instance(&pg, &garage, 0, &[]),
        instance(&pg, &garage, 0, &[]),
    );
    let (ca, cb) = (Client::of(&a), Client::of(&b));
    let name = repo("shared");

    // A chunked upload: opened on A, PATCHes alternating B, A, B, completed on A. Chunks
    // of 5 MiB, so the 8 MiB parts straddle requests and instances.
    let data = content(2, 23 * MIB + 17);
    let d = sha256(&data);
    let mut loc = ca.start_upload(&name).await;
    let mut offset = 0;
    let chunk = 5 * MIB;
    let mut turn = 0;
    while data.len() - offset > chunk {
        let c = if turn % 2 == 0 { &cb } else { &ca };
        turn += 1;
        let r = c
            .patch(&loc)
            .header("Content-Range", content_range(offset, chunk))
            .body(data.slice(offset..offset + chunk))
            .send()
            .await;
        r.expect(StatusCode::ACCEPTED);
        offset += chunk;
        assert_eq!(r.upload_offset(), offset as u64);
        loc = r.location();
        // The other instance sees the progress at once.
        let other = if turn % 2 == 0 { &cb } else { &ca };
        let status = other.get(&loc).send().await;
        status.expect(StatusCode::NO_CONTENT);
        assert_eq!(status.upload_offset(), offset as u64);
    }
    ca.put(&with_digest(&loc, &d))
        .header("Content-Range", content_range(offset, data.len() - offset))
        .body(data.slice(offset..))
        .send()
        .await
        .expect_digest(StatusCode::CREATED, &d);
    cb.blob_intact(&name, &data).await;
    ca.blob_intact(&name, &data).await;
    let d_first = d.clone();

    // A manifest pushed through B is served at once by A, by tag and digest.
    let config = Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    cb.push_blob(&name, config.clone()).await;
    let manifest = to_bytes(&image_of(&config, &[&data]));
    let md = cb.push_manifest(&name, "latest", &manifest).await;
    let (got, digest) = ca
        .manifest(&name, "latest")
        .await
        .expect("A serves B's manifest");
    assert_eq!((got, digest), (manifest.clone(), md.clone()));
    assert!(ca.manifest(&name, &md).await.is_some());
    assert_eq!(ca.tags(&name).await.unwrap(), vec!["latest".to_string()]);
    assert!(ca.catalog().await.contains(&name));

    // Racing chunks of one session across instances: exactly one lands, the others 416.
    let loc = ca.start_upload(&name).await;
    let chunk = content(3, MIB);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            let (loc, chunk) = (loc.clone(), chunk.clone());
            tokio::spawn(async move {
                c.patch(&loc)
                    .header("Content-Range", content_range(0, chunk.len()))
                    .body(chunk)
                    .send()
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::RANGE_NOT_SATISFIABLE)
        .count();
    assert_eq!((won, lost), (1, 7), "{statuses:?}");
    // Racing final PUTs across instances: exactly one commits.
    let dc = sha256(&chunk);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            let url = with_digest(&loc, &dc);
            tokio::spawn(async move { c.put(&url).send().await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| s.is_client_error() || *s == StatusCode::CREATED));
    cb.blob_intact(&name, &chunk).await;

    // Kill -9 A in the middle of a chunked upload; B finishes it from the last acknowledged
    // byte, and the digest checks.
    let (mut a, ca) = (a, ca);
    let data = content(4, 20 * MIB + 5);
    let d = sha256(&data);
    let loc = ca.start_upload(&name).await;
    let first = 9 * MIB;
    ca.patch(&loc)
        .header("Content-Range", content_range(0, first))
        .body(data.slice(..first))
        .send()
        .await
        .expect(StatusCode::ACCEPTED);
    // A request in flight when A dies: its bytes were never acknowledged.
    let (ca2, loc2, part) = (ca.clone(), loc.clone(), data.slice(first..first + 6 * MIB));
    let in_flight = tokio::spawn(async move {
        let slow = futures_util::stream::unfold(0usize, move |sent| {
            let part = part.clone();
            async move {
                if sent >= part.len() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let end = (sent + 256 * 1024).min(part.len());
                Some((
                    Ok::<_, edge_registry::body::BoxError>(part.slice(sent..end)),
                    end,
                ))
            }
        });
        ca2.patch(&loc2)
            .header("Content-Range", content_range(first, 6 * MIB))
            .stream(Box::pin(slow))
            .try_send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    a.kill();
    let _ = in_flight.await;
    let status = cb.get(&loc).send().await;
    status.expect(StatusCode::NO_CONTENT);
    let offset = status.upload_offset() as usize;
    assert_eq!(offset, first, "B resumes from the last acknowledged byte");
    cb.put(&with_digest(&loc, &d))
        .header("Content-Range", content_range(offset, data.len() - offset))
        .body(data.slice(offset..))
        .send()
        .await
        .expect_digest(StatusCode::CREATED, &d);
    cb.blob_intact(&name, &data).await;
    // A restarted instance serves it too.
    let a = instance(&pg, &garage, 0, &[]);
    Client::of(&a).blob_intact(&name, &data).await;
    drop(a);

    // The garbage collector across instances, on the same engines. What is tagged so far:
    // `latest` (the 23 MiB blob and its config); the rest is garbage.
    let tagged = [md, sha256(&config), d_first];
    collector_across_instances(&pg, &garage, &b, &tagged).await;
}

/// Set in the child that [`hold_collector_lock`] runs in: the `--metadata` URL.
const LOCK_HOLDER: &str = "EDGE_REGISTRY_TEST_GC_LOCK_HOLDER";

/// In a child process (this test binary again): takes the collector's lock, says `held`, and
/// holds it until killed.
async fn hold_collector_lock(metadata: String) {
    let store = ScaleStorage::open(&ScaleOptions {
        metadata,
        blobs: std::env::var("EDGE_REGISTRY_BLOBS").unwrap(),
        credentials_file: None,
        pool_size: 2,
    })
    .await
    .unwrap();
    let _lock = store
        .try_lock_collector()
        .await
        .unwrap()
        .expect("the lock is free");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "\nheld").unwrap();
        out.flush().unwrap();
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// `edge-registry gc` on the scale-out store, with `--json`; the report.
fn gc_cli(pg: &Postgres, garage: &Garage) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
        .args(["gc", "--json", "--grace", "0s", "--metadata"])
        .arg(pg.url())
        .arg("--blobs")
        .arg(garage.blobs_url(0))
        .envs(garage.env())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("gc --json prints its report")
}

/// The collection flag's generation, once it says idle (waiting up to `limit` for
/// `until(generation)`).
async fn idle_generation(
    store: &ScaleStorage,
    limit: Duration,
    until: impl Fn(u64) -> bool,
) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let f = edge_registry::gc::guard::flag(store).await.unwrap();
        if !f.active && until(f.generation) {
            return f.generation;
        }
        assert!(
            Instant::now() < deadline,
            "the collector did not run: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One collector at a time across instances (PostgreSQL's lock: two stores racing for it,
/// a serving instance's timer skipping while another holds it, a holder killed with SIGKILL
/// freeing it), then clients pushing through instance `b` while instance A collects every
/// second and `edge-registry gc` processes collect too: nothing acknowledged is lost, and
/// afterwards exactly the tagged blobs are stored, in PostgreSQL and in S3.
async fn collector_across_instances(
    pg: &Postgres,
    garage: &Garage,
    b: &common::Server,
    tagged_before: &[String],
) {
    let store = ScaleStorage::open(&options(pg, garage)).await.unwrap();
    let other = ScaleStorage::open(&options(pg, garage)).await.unwrap();
    // Two instances asking at once: exactly one gets it, each time.
    for _ in 0..10 {
        let (x, y) = tokio::join!(store.try_lock_collector(), other.try_lock_collector());
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x.is_some() != y.is_some(), "both or neither took the lock");
        for l in [x, y].into_iter().flatten() {
            l.release().await;
        }
    }

    // A holder killed with SIGKILL: PostgreSQL frees its lock as the socket closes.
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "two_instances_share_everything",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOCK_HOLDER, pg.url())
        .env("EDGE_REGISTRY_BLOBS", garage.blobs_url(0))
        .envs(garage.env())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = holder.stdout.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.trim() == "held")
    })
    .await
    .unwrap();
    assert!(said, "the holder did not take the lock");
    assert!(store.try_lock_collector().await.unwrap().is_none());
    holder.kill().unwrap();
    holder.wait().unwrap();
    let killed = Instant::now();
    let lock = loop {
        if let Some(l) = store.try_lock_collector().await.unwrap() {
            break l;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the lock of a killed holder was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "collector lock free {:?} after its holder was killed",
        killed.elapsed()
    );
    lock.release().await;

    // Instance A collects every second; while another holds the lock, it skips.
    let a = instance(pg, garage, 0, &["--gc-interval", "1s", "--gc-grace", "0s"]);
    let first = idle_generation(&store, Duration::from_secs(20), |g| g >= 1).await;
    let held = store.lock_collector().await.unwrap();
    let during = edge_registry::gc::guard::flag(&store).await.unwrap();
    assert!(!during.active && during.generation >= first);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        edge_registry::gc::guard::flag(&store).await.unwrap(),
        during,
        "a collection ran while another held the lock"
    );
    held.release().await;
    idle_generation(&store, Duration::from_secs(20), |g| g > during.generation).await;

    // The race: clients push through B (and delete), A collects every second, and
    // `edge-registry gc` processes collect in between.
    let (ca, cb) = (Client::of(&a), Client::of(b));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cli = {
        let (done, url, blobs, env) = (done.clone(), pg.url(), garage.blobs_url(0), garage.env());
        std::thread::spawn(move || {
            let (mut runs, mut removed) = (0u64, 0u64);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let out = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
                    .args(["gc", "--json", "--grace", "0s", "--metadata", &url])
                    .args(["--blobs", &blobs])
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .env("RUST_LOG", "warn")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "gc: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                runs += 1;
                removed += r["blobs_removed"].as_u64().unwrap();
                std::thread::sleep(Duration::from_millis(300));
            }
            (runs, removed)
        })
    };
    let pool: Vec<Bytes> = (0..8)
        .map(|i| Bytes::from(format!("scale pool blob {i}")))
        .collect();
    let until = Instant::now() + Duration::from_secs(12);
    let mut clients = Vec::new();
    for i in 0..6usize {
        let (c, pool) = (cb.clone(), pool.clone());
        clients.push(tokio::spawn(async move {
            let name = format!("gc-race/c{}", i % 3);
            let mut kept: Vec<(String, Bytes, Vec<Bytes>)> = Vec::new();
            let (mut n, mut refused, mut pushed) = (0usize, 0u32, Vec::new());
            while Instant::now() < until || n < 3 {
                n += 1;
                let config = Bytes::from(format!("gc config {i} {n}"));
                let own = Bytes::from(format!("gc layer {i} {n}"));
                let shared = pool[(i * 3 + n) % pool.len()].clone();
                let manifest = to_bytes(&image_of(&config, &[&shared, &own]));
                let blobs = vec![config, shared, own];
                let tag = format!("t{i}-{n}");
                refused += c
                    .push_racing_collector(&name, &tag, &blobs, &manifest)
                    .await;
                pushed.extend(blobs.iter().map(|b| sha256(b)));
                pushed.push(sha256(&manifest));
                kept.push((tag, manifest, blobs));
                // Keep the last two; the one before goes, by digest.
                if kept.len() > 2 {
                    let (_, old, _) = kept.remove(0);
                    c.delete(&format!("/v2/{name}/manifests/{}", sha256(&old)))
                        .send()
                        .await
                        .expect(StatusCode::ACCEPTED);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (name, kept, refused, pushed)
        }));
    }
    let mut results = Vec::new();
    for t in clients {
        results.push(t.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (runs, cli_removed) = cli.join().unwrap();
    let last = gc_cli(pg, garage);

    // Everything acknowledged and still tagged pulls, through both instances.
    let mut expected: std::collections::BTreeSet<String> = tagged_before.iter().cloned().collect();
    let (mut refused, mut pushed) = (0, std::collections::BTreeSet::new());
    for (name, kept, r, p) in &results {
        refused += r;
        pushed.extend(p.iter().cloned());
        for (tag, manifest, blobs) in kept {
            for c in [&ca, &cb] {
                assert_eq!(&c.manifest(name, tag).await.unwrap().0, manifest);
                for blob in blobs {
                    c.blob_intact(name, blob).await;
                }
            }
            expected.insert(sha256(manifest));
            expected.extend(blobs.iter().map(|b| sha256(b)));
        }
    }
    // With the collector's lock held (A's runs wait), the store is exactly what is tagged:
    // no problems, no blob row more or less, and one S3 object per blob row.
    let held = store.lock_collector().await.unwrap();
    let problems = edge_registry::gc::check::problems(&store).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let mut stored = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        use edge_registry::storage::Storage;
        let page = store.list_blobs(cursor.as_deref(), 1000).await.unwrap();
        stored.extend(page.blobs.iter().map(|b| b.digest.to_string()));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(stored, expected, "stored blobs against tagged blobs");
    let keys = suite::Inspect::stored_keys(&store).await.unwrap();
    let objects = keys
        .iter()
        .filter(|k| k.starts_with("blobs/") || k.starts_with("parts/"))
        .count();
    assert_eq!(
        objects,
        stored.len(),
        "S3 objects against blob rows: {keys:?}"
    );
    held.release().await;
    let garbage = pushed.difference(&expected).count();
    assert!(garbage > 0, "the race made no garbage");
    println!(
        "collector race: {} blobs pushed, {garbage} garbage gone, {} kept; {runs} gc processes \
         removed {cli_removed} (+{} in the last), instance A the rest; {refused} pushes refused \
         and retried",
        pushed.len(),
        expected.len(),
        last["blobs_removed"]
    );
}

/// skopeo pushes an image through instance A and pulls it through instance B, identical.
#[test]
fn skopeo_push_through_one_pull_through_the_other() {
    if Command::new("skopeo").arg("--version").output().is_err()
        || Command::new("umoci").arg("--version").output().is_err()
    {
        panic!("skopeo and umoci are needed (scripts/test installs them)");
    }
    let (pg, garage) = (Postgres::start(), Garage::single());
    let (a, b) = (
        instance(&pg, &garage, 0, &[]),
        instance(&pg, &garage, 0, &[]),
    );
    let work = tempfile::tempdir().unwrap();
    let src = common::image::Layout::init(&work.path().join("src"));
    let digest = src.add_busybox("v1", "amd64", "scale");
    let name = repo("skopeo");
    let conf = work.path().join("policy.json");
    std::fs::write(&conf, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    let skopeo = |src: &str, dest: &str| {
        common::image::run(
            Command::new("skopeo")
                .arg("--policy")
                .arg(&conf)
                .args(["--command-timeout", "120s", "copy"])
                .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
                .args([src, dest])
                .env("TMPDIR", work.path()),
        );
    };
    skopeo(
        &format!("oci:{}:v1", src.dir.display()),
        &format!("docker://{}/{name}:v1", a.host()),
    );
    let dest = work.path().join("dest");
    skopeo(
        &format!("docker://{}/{name}:v1", b.host()),
        &format!("oci:{}:v1", dest.display()),
    );
    let pulled = common::image::Layout::open(&dest);
    assert_eq!(pulled.manifest_digest("v1"), digest);
}

/// PostgreSQL stopped: requests get a 503 with the spec's JSON body, quickly; service
/// resumes when it is back, on the same instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_is_503_then_service_resumes() {
    let (pg, garage) = (Postgres::start(), Garage::single());
    let server = instance(&pg, &garage, 0, &[]);
    let c = Client::of(&server);
    let name = repo("pg-down");
    let data = content(5, 1000);
    c.push_blob(&name, data.clone()).await;
    pg.stop();
    for path in [
        format!("/v2/{name}/blobs/{}", sha256(&data)),
        format!("/v2/{name}/tags/list"),
        "/v2/_catalog".to_string(),
    ] {
        let start = Instant::now();
        let r = c.get(&path).timeout(Duration::from_secs(20)).send().await;
        let took = start.elapsed();
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            r.text()
        );
        assert_eq!(r.code(), "UNKNOWN", "{path}");
        assert!(r.header("retry-after").is_some(), "{path}");
        assert!(took < Duration::from_secs(10), "{path} took {took:?}");
    }
    let start = Instant::now();
    let r = c
        .post(&format!("/v2/{name}/blobs/uploads/"))
        .timeout(Duration::from_secs(20))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(start.elapsed() < Duration::from_secs(10));
    pg.resume();
    // The pool makes new connections: within a few seconds every request works again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c
            .head(&format!("/v2/{name}/blobs/{}", sha256(&data)))
            .send()
            .await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after PostgreSQL came back",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.blob_intact(&name, &data).await;
    c.push_chunked(&name, &content(6, 3 * MIB), MIB).await;
}

/// A bad start: `--metadata`, `--blobs`, the environment, and what the error must say.
type Case<'a> = (String, String, Vec<(&'a str, &'a str)>, &'a str);

/// Each bad start argument gives one clear error, and the server does not start.
#[test]
fn bad_start_arguments_fail_clearly() {
    let (pg, garage) = (Postgres::start(), Garage::single());
    let start = |metadata: &str, blobs: &str, env: &[(&str, &str)]| -> String {
        let root = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root.path())
            .args(["--metadata", metadata, "--blobs", blobs])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "started with {metadata} {blobs}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let keys = [
        ("AWS_ACCESS_KEY_ID", garage.key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", garage.secret.as_str()),
    ];
    let blobs = garage.blobs_url(0);
    let cases: Vec<Case> = vec![
        (
            "mysql://x/y".into(),
            blobs.clone(),
            keys.to_vec(),
            "postgres://",
        ),
        (
            pg.url(),
            "s3://?endpoint=http://x".into(),
            keys.to_vec(),
            "no bucket",
        ),
        (
            pg.url(),
            format!("s3://{BUCKET}"),
            keys.to_vec(),
            "no endpoint",
        ),
        (pg.url(), blobs.clone(), vec![], "AWS_ACCESS_KEY_ID"),
        (
            pg.url().replace("scale-test-password", "wrong"),
            blobs.clone(),
            keys.to_vec(),
            "password authentication failed",
        ),
        (
            format!(
                "postgres://postgres@127.0.0.1:{}/postgres",
                common::engines::free_port()
            ),
            blobs.clone(),
            keys.to_vec(),
            "cannot connect to PostgreSQL",
        ),
        (
            pg.url(),
            blobs.clone(),
            vec![
                ("AWS_ACCESS_KEY_ID", "GK000000000000000000000000"),
                ("AWS_SECRET_ACCESS_KEY", garage.secret.as_str()),
            ],
            "refused the credentials",
        ),
        (
            pg.url(),
            blobs.replace(BUCKET, "no-such-bucket"),
            keys.to_vec(),
            "does not exist",
        ),
    ];
    for (metadata, blobs, env, expect) in cases {
        let started = Instant::now();
        let err = start(&metadata, &blobs, &env);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{metadata} {blobs}: took {:?}",
            started.elapsed()
        );
        assert!(
            err.contains(expect),
            "{metadata} {blobs}: expected {expect:?} in {err}"
        );
        assert!(
            !err.contains("scale-test-password"),
            "a password in the error: {err}"
        );
        assert!(
            !err.contains(&garage.secret),
            "a secret in the error: {err}"
        );
        // One error, not a backtrace or a log flood.
        assert!(err.trim().lines().count() <= 2, "{err}");
    }
}

/// A 3-node Garage cluster (replication 3): one node killed during pushes and pulls; the
/// registry keeps serving through another node, and what was acknowledged reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garage_node_failure_keeps_serving() {
    let (pg, mut garage) = (Postgres::start(), Garage::cluster());
    // Instances on nodes 0 and 1; node 2 dies.
    let (a, b) = (
        instance(&pg, &garage, 0, &[]),
        instance(&pg, &garage, 1, &[]),
    );
    let (ca, cb) = (Client::of(&a), Client::of(&b));
    let name = repo("garage-failure");
    let mut acknowledged = Vec::new();
    for i in 0..4u8 {
        let data = content(10 + i, 3 * MIB + i as usize);
        ca.push_chunked(&name, &data, MIB).await;
        acknowledged.push(data);
    }
    let pushes = {
        let (ca, name) = (ca.clone(), name.clone());
        tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..6u8 {
                let data = content(20 + i, 9 * MIB + i as usize);
                if let Ok(d) = ca.try_push_blob(&name, data.clone()).await {
                    done.push((d, data));
                }
            }
            done
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    garage.nodes[2].kill();
    for data in &acknowledged {
        cb.blob_intact(&name, data).await;
    }
    let pushed = pushes.await.unwrap();
    assert!(
        !pushed.is_empty(),
        "no push went through with one node down"
    );
    for (_, data) in &pushed {
        cb.blob_intact(&name, data).await;
        ca.blob_intact(&name, data).await;
    }
    // New pushes still work with the node down.
    let data = content(30, 2 * MIB);
    cb.push_chunked(&name, &data, MIB).await;
    ca.blob_intact(&name, &data).await;
}
