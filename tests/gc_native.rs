//! Garbage collection natively: compare-and-set across processes, `edge-registry gc` beside a
//! running server (skopeo pulls what is left, with the same digests; bytes on disk counted),
//! a collector killed with SIGKILL at random points and run again, pushes racing collector
//! processes, and bad flags refused at start.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use edge_registry::gc::check;
use edge_registry::native::fs::FsStorage;
use edge_registry::storage::Storage;
use http::StatusCode;

use common::client::Client;
use common::content::{image_of, to_bytes};
use common::{sha256, Server};

const BIN: &str = env!("CARGO_BIN_EXE_edge-registry");

fn gc(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("gc")
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run edge-registry gc")
}

fn gc_json(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = gc(root, &all);
    assert!(
        out.status.success(),
        "gc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("gc --json prints the report")
}

/// Bytes and files under `<root>/blobs`.
fn disk(root: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut dirs = vec![root.join("blobs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dirs.push(e.path());
            } else {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

fn problems(root: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = FsStorage::open_shared(root).unwrap();
    rt.block_on(check::problems(&s)).unwrap()
}

// ---- compare-and-set across processes -------------------------------------------------------

const CAS_CHILD: &str = "EDGE_REGISTRY_TEST_CAS_ROOT";
const CAS_ROUNDS: usize = 300;

/// In a child process: increments the counter by compare-and-set; prints how often it won.
fn cas_child(root: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = FsStorage::open_shared(root).unwrap();
    let mut wins = 0;
    rt.block_on(async {
        for _ in 0..CAS_ROUNDS {
            let (raw, version) = s.get_versioned("counter").await.unwrap().unwrap();
            let n: u64 = std::str::from_utf8(&raw).unwrap().parse().unwrap();
            if s.put_if("counter", Bytes::from((n + 1).to_string()), &version)
                .await
                .unwrap()
            {
                wins += 1;
            }
        }
    });
    println!("\nwins={wins}");
}

#[test]
fn put_if_is_atomic_across_processes() {
    if let Ok(root) = std::env::var(CAS_CHILD) {
        return cas_child(&root);
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = FsStorage::open(dir.path()).unwrap();
    rt.block_on(s.put("counter", Bytes::from("0"))).unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "put_if_is_atomic_across_processes",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CAS_CHILD, dir.path())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut wins = 0u64;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.split("wins=").nth(1))
            .expect("the child says how often it won");
        wins += line.trim().parse::<u64>().unwrap();
    }
    let raw = rt.block_on(s.get("counter")).unwrap().unwrap();
    let n: u64 = std::str::from_utf8(&raw).unwrap().parse().unwrap();
    // Every win is one increment that no other process overwrote.
    assert_eq!(n, wins);
    assert!(wins > 0);
}

// ---- beside a running server, with skopeo --------------------------------------------------

#[test]
fn gc_beside_a_running_server_leaves_images_that_skopeo_pulls_unchanged() {
    use common::image::{run, Layout};
    let server = Server::native();
    let root = server.root().unwrap();
    let host = server.host();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::init(&work.path().join("src"));
    let d1 = layout.add_busybox("v1", "amd64", "one");
    let d2 = layout.add_busybox("v2", "amd64", "two");
    // skopeo with its own configuration, so nothing depends on /etc/containers.
    let conf = work.path().join("conf");
    std::fs::create_dir_all(conf.join("registries.d")).unwrap();
    std::fs::create_dir_all(conf.join("tmp")).unwrap();
    std::fs::write(
        conf.join("policy.json"),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    std::fs::write(
        conf.join("registries.conf"),
        "unqualified-search-registries = []\n",
    )
    .unwrap();
    std::fs::write(conf.join("auth.json"), r#"{"auths":{}}"#).unwrap();
    let skopeo = |args: &[&str]| {
        let mut c = Command::new("skopeo");
        c.arg("--policy")
            .arg(conf.join("policy.json"))
            .arg("--registries.d")
            .arg(conf.join("registries.d"))
            .arg("--tmpdir")
            .arg(conf.join("tmp"))
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", conf.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", conf.join("auth.json"))
            .env("TMPDIR", conf.join("tmp"));
        run(&mut c);
    };
    let src = format!("oci:{}", layout.dir.display());
    for tag in ["v1", "v2"] {
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("{src}:{tag}"),
            &format!("docker://{host}/gc/busybox:{tag}"),
        ]);
    }
    // v2 goes; its layer and config are its own (the markers differ), its manifest too.
    let c = Client::of(&server);
    common::block_on(async {
        c.delete(&format!("/v2/gc/busybox/manifests/{d2}"))
            .send()
            .await
            .expect(StatusCode::ACCEPTED);
    });
    let before = disk(&root);
    let dry = gc_json(&root, &["--grace", "0s", "--dry-run"]);
    assert_eq!(disk(&root), before, "the dry run changed nothing");
    let report = gc_json(&root, &["--grace", "0s"]);
    assert_eq!(report["removed"], dry["removed"]);
    assert_eq!(report["blobs_removed"], 3, "{report}");
    let after = disk(&root);
    assert_eq!(after.0, before.0 - 3);
    assert_eq!(
        after.1,
        before.1 - report["bytes_reclaimed"].as_u64().unwrap()
    );
    assert!(problems(&root).is_empty(), "{:?}", problems(&root));

    // v1 pulls, with the digest it was pushed with; v2 is gone.
    let back = work.path().join("back");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/gc/busybox:v1"),
        &format!("oci:{}:v1", back.display()),
    ]);
    assert_eq!(Layout::open(&back).manifest_digest("v1"), d1);
    common::block_on(async {
        let get = |r: String| c.get(&format!("/v2/gc/busybox/manifests/{r}")).send();
        assert_eq!(get(d2.clone()).await.status, StatusCode::NOT_FOUND);
        assert_eq!(get("v1".into()).await.status, StatusCode::OK);
    });
}

// ---- killed at random points ---------------------------------------------------------------

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n
}

#[test]
fn a_collector_killed_at_random_points_then_run_again_leaves_a_consistent_store() {
    let server = Server::native();
    let root = server.root().unwrap();
    let c = Client::of(&server);
    let name = "gc/crash";
    let mut kept = Vec::new();
    common::block_on(async {
        for i in 0..4 {
            let config = format!("config {i}");
            let layer = format!("layer {i}");
            c.push_blob(name, config.clone()).await;
            c.push_blob(name, layer.clone()).await;
            let body = to_bytes(&image_of(config.as_bytes(), &[layer.as_bytes()]));
            let d = c.push_manifest(name, &format!("t{i}"), &body).await;
            if i % 2 == 0 {
                kept.push((format!("t{i}"), body, config, layer));
            } else {
                c.delete(&format!("/v2/{name}/manifests/{d}"))
                    .send()
                    .await
                    .expect(StatusCode::ACCEPTED);
            }
        }
        // Plenty of garbage, so that a kill lands in every phase.
        for i in 0..1500 {
            c.push_blob(name, format!("garbage {i}")).await;
        }
    });
    let mut kills = 0;
    for _ in 0..12 {
        let mut child = Command::new(BIN)
            .args(["gc", "--grace", "0s", "--root"])
            .arg(&root)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + random_below(300)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        // The server keeps serving what is tagged, whatever the collector's state.
        common::block_on(async {
            for (tag, body, _, _) in &kept {
                assert_eq!(&c.manifest(name, tag).await.unwrap().0, body);
            }
        });
    }
    gc_json(&root, &["--grace", "0s"]);
    assert!(problems(&root).is_empty(), "{:?}", problems(&root));
    // Only what the kept images need is left: 3 blobs each.
    assert_eq!(disk(&root).0, 3 * kept.len() as u64, "after {kills} kills");
    common::block_on(async {
        for (tag, body, config, layer) in &kept {
            assert_eq!(&c.manifest(name, tag).await.unwrap().0, body);
            c.blob_intact(name, config.as_bytes()).await;
            c.blob_intact(name, layer.as_bytes()).await;
        }
    });
}

// ---- pushes racing collector processes -------------------------------------------------------

#[test]
fn pushes_racing_collector_processes_beside_the_server_lose_nothing() {
    const CLIENTS: usize = 8;
    const COLLECTIONS: usize = 100;
    let server = Server::native();
    let root = server.root().unwrap();
    let c = Client::of(&server);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (root, done) = (root.clone(), done.clone());
        std::thread::spawn(move || {
            let mut removed = 0;
            // At most 100 collections, and none started past 20 s (after the third): on a busy
            // machine a collection can fall behind the clients' garbage, each then taking
            // longer than the last, and the race must still end.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            for k in 0..COLLECTIONS {
                if k >= 3 && std::time::Instant::now() > deadline {
                    break;
                }
                let r = gc_json(&root, &["--grace", "0s"]);
                if std::env::var("GC_DEBUG").is_ok() {
                    eprintln!("{k}: {r}");
                }
                // Paced: the clients get to push between two collections.
                std::thread::sleep(Duration::from_millis(150));
                removed += r["blobs_removed"].as_u64().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            removed
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("pool {i}"))).collect();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..CLIENTS {
            let (c, pool, done) = (c.clone(), pool.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let name = format!("race/n{}", i % 3);
                let mut mine = Vec::new();
                let mut n = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || n < 3 {
                    n += 1;
                    // Paced, so that the garbage made between two collections stays bounded.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let config = Bytes::from(format!("config {i} {n}"));
                    let own = Bytes::from(format!("layer {i} {n}"));
                    let a = pool[(i + n) % pool.len()].clone();
                    let blobs = vec![config.clone(), a.clone(), own.clone()];
                    let manifest = to_bytes(&image_of(&config, &[&a, &own]));
                    let tag = format!("t{i}-{n}");
                    push_racing(&c, &name, &tag, &blobs, &manifest).await;
                    if n % 2 == 0 {
                        c.delete(&format!("/v2/{name}/manifests/{}", sha256(&manifest)))
                            .send()
                            .await
                            .expect(StatusCode::ACCEPTED);
                    } else {
                        mine.push((tag, manifest, blobs));
                        // Keep the last two, so the store stays small.
                        if mine.len() > 2 {
                            let (_, old, _) = mine.remove(0);
                            c.delete(&format!("/v2/{name}/manifests/{}", sha256(&old)))
                                .send()
                                .await
                                .expect(StatusCode::ACCEPTED);
                        }
                    }
                }
                (name, mine)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let removed = collector.join().unwrap();
    assert!(removed > 0);
    rt.block_on(async {
        for (name, mine) in &results {
            for (tag, manifest, blobs) in mine {
                assert_eq!(&c.manifest(name, tag).await.unwrap().0, manifest);
                for b in blobs {
                    c.blob_intact(name, b).await;
                }
            }
        }
    });
    gc_json(&root, &["--grace", "0s"]);
    assert!(problems(&root).is_empty(), "{:?}", problems(&root));
}

/// HEAD each blob, upload what is missing, PUT the manifest; again while the collector takes
/// a blob in between (400 MANIFEST_BLOB_UNKNOWN, or 429 on upload).
async fn push_racing(c: &Client, name: &str, tag: &str, blobs: &[Bytes], manifest: &Bytes) {
    for _ in 0..50 {
        for b in blobs {
            let d = sha256(b);
            if c.head(&format!("/v2/{name}/blobs/{d}")).send().await.status != StatusCode::OK {
                let r = c
                    .post(&format!("/v2/{name}/blobs/uploads/?digest={d}"))
                    .body(b.clone())
                    .send()
                    .await;
                assert!(
                    r.status == StatusCode::CREATED || r.status == StatusCode::TOO_MANY_REQUESTS,
                    "{} {}",
                    r.status,
                    r.text()
                );
            }
        }
        let r = c
            .put_manifest(
                name,
                tag,
                "application/vnd.oci.image.manifest.v1+json",
                manifest.clone(),
            )
            .await;
        if r.status == StatusCode::CREATED {
            return;
        }
        assert_eq!(
            r.code(),
            "MANIFEST_BLOB_UNKNOWN",
            "{} {}",
            r.status,
            r.text()
        );
    }
    panic!("{name}:{tag} refused 50 times");
}

// ---- bad input -------------------------------------------------------------------------------

#[test]
fn malformed_durations_and_rules_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    FsStorage::open(dir.path()).unwrap();
    let out = gc(dir.path(), &["--grace", "1w"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--grace") && err.contains("not a duration"),
        "{err}"
    );

    let rules = dir.path().join("rules");
    std::fs::write(&rules, "library/* keep-last=5\nother keep-forever=yes\n").unwrap();
    let out = gc(dir.path(), &["--retention", rules.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("keep-forever"),
        "{err}"
    );

    for args in [
        vec!["--gc-interval", "soon"],
        vec!["--gc-grace", "1y"],
        vec!["--gc-delete-untagged", "perhaps"],
        vec!["--retention", rules.to_str().unwrap()],
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(dir.path())
            .args(&args)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(args[0]), "{args:?}: {err}");
    }
}
