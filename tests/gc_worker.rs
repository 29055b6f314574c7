//! A collection of the server under test against a one-shot collection of the same content in
//! process: images that share layers (two busybox images pushed with skopeo, and images pushed
//! through the API), some deleted, then collected; the same blobs and manifests must go, and
//! what is left pulls with skopeo with the same digests.
//!
//! Against the Worker (`scripts/test-worker-gc`: `EDGE_REGISTRY_URL`, `EDGE_REGISTRY_PID`,
//! `EDGE_REGISTRY_WORKER_STATE` the folder of `scripts/worker-dev`, a Worker with
//! `--test-scheduled` and `GC_GRACE` 0s, `GC_INTERVAL` 0s and a small `GC_BUDGET`) the
//! collection is the incremental one: `/__scheduled` is triggered until the Worker's log says
//! the run is done, and each invocation's storage operations and CPU time are printed.
//! Natively it is `edge-registry gc --grace 0s` beside the running server.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use edge_registry::clock::FixedClock;
use edge_registry::gc::{self, Options};
use edge_registry::storage::memory::MemoryStorage;
use http::StatusCode;
use serde_json::Value;

use common::client::Client;
use common::content::{image_of, to_bytes};
use common::image::{run, Layout};
use common::target::in_process_with;
use common::{sha256, Options as TargetOptions, Server};

const BIN: &str = env!("CARGO_BIN_EXE_edge-registry");
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// skopeo with its own configuration, so nothing depends on /etc/containers.
struct Skopeo {
    conf: PathBuf,
}

impl Skopeo {
    fn new(dir: &Path) -> Skopeo {
        let conf = dir.join("conf");
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
        Skopeo { conf }
    }

    fn run(&self, args: &[&str]) {
        let c = &self.conf;
        let mut cmd = Command::new("skopeo");
        cmd.arg("--policy")
            .arg(c.join("policy.json"))
            .arg("--registries.d")
            .arg(c.join("registries.d"))
            .arg("--tmpdir")
            .arg(c.join("tmp"))
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", c.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", c.join("auth.json"))
            .env("TMPDIR", c.join("tmp"));
        run(&mut cmd);
    }
}

/// Pushes what skopeo pushed from `layout` (tag `tag` into `name`) through the API instead.
async fn push_layout(c: &Client, layout: &Layout, name: &str, tag: &str) {
    let m = layout.manifest(tag);
    let blobs = layout.blobs();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    digests.extend(layout.layer_digests(tag));
    for d in digests {
        c.push_blob(name, blobs[&d].clone()).await;
    }
    let media_type = m["mediaType"].as_str().unwrap_or(OCI_MANIFEST);
    c.put_manifest(name, tag, media_type, layout.manifest_bytes(tag))
        .await
        .expect(StatusCode::CREATED);
}

/// The API part of the content, the same on both sides; returns the digests it deletes.
async fn push_api_content(c: &Client) -> Vec<(String, String)> {
    let shared: &[u8] = b"a layer every image shares";
    let mut deleted = Vec::new();
    for i in 0..12 {
        let name = format!("gcw/many{}", i % 3);
        let config = format!("config {i}");
        let layer = format!("layer {i}");
        c.push_blob(&name, config.clone()).await;
        c.push_blob(&name, shared.to_vec()).await;
        c.push_blob(&name, layer.clone()).await;
        let m = to_bytes(&image_of(config.as_bytes(), &[shared, layer.as_bytes()]));
        c.push_manifest(&name, &format!("t{i}"), &m).await;
        if i < 2 {
            // A signature of t0 (kept) and of t1 (deleted): the one of the deleted image goes.
            let sig = signature(&m, i);
            c.push_blob(&name, b"{}".to_vec()).await;
            c.push_blob(&name, format!("sig {i}")).await;
            c.push_manifest(&name, &sha256(&sig), &sig).await;
        }
        if i % 3 == 1 {
            deleted.push((name, sha256(&m)));
        }
    }
    c.push_blob(
        "gcw/many0",
        Bytes::from_static(b"garbage nobody references"),
    )
    .await;
    deleted
}

/// A signature (an artifact manifest whose subject is `subject`), the `i`th.
fn signature(subject: &Bytes, i: usize) -> Bytes {
    let mut m = image_of(b"{}", &[format!("sig {i}").as_bytes()]);
    m["artifactType"] = "application/vnd.example.signature".into();
    m["subject"] = serde_json::json!({
        "mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": subject.len(),
    });
    to_bytes(&m)
}

async fn delete(c: &Client, name: &str, digest: &str) {
    c.delete(&format!("/v2/{name}/manifests/{digest}"))
        .send()
        .await
        .expect(StatusCode::ACCEPTED);
}

fn removed_set(report: &Value) -> BTreeSet<String> {
    report["removed"]
        .as_array()
        .expect("a report with removals")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The `"message":"gc"` lines of the Worker's log so far.
fn gc_lines(state: &Path) -> Vec<Value> {
    let log = std::fs::read_to_string(state.join("wrangler.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "gc")
        .collect()
}

/// Objects under `blobs/` in the local R2 (miniflare's SQLite), and their bytes.
fn r2_blobs(state: &Path) -> (u64, u64) {
    let script = r#"
import glob, sqlite3, sys
n = size = 0
for db in glob.glob(sys.argv[1] + '/data/v3/r2/**/*.sqlite', recursive=True):
    c = sqlite3.connect('file:' + db + '?mode=ro', uri=True)
    try:
        for (k, s) in c.execute("select key, size from _mf_objects where key like 'blobs/%'"):
            n += 1; size += s
    except sqlite3.OperationalError:
        pass
print(n, size)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(state)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|w| w.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The incremental collection on the Worker: `/__scheduled` until the run is done. Returns
/// its report.
async fn collect_on_worker(server: &Server, state: &Path) -> Value {
    let c = Client::of(server);
    let before = gc_lines(state).len();
    let mut cpu = Vec::new();
    for _ in 0..2000 {
        let t0 = server.cpu_seconds();
        let r = c.get("/__scheduled?cron=*+*+*+*+*").send().await;
        assert!(r.status.is_success(), "{}", r.status);
        // The log line comes after the answer: wait for it.
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines = gc_lines(state);
            if lines.len() > before + cpu.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let (Some(a), Some(b)) = (t0, server.cpu_seconds()) {
            cpu.push(b - a);
        }
        let last = lines.last().cloned().unwrap_or_default();
        assert_ne!(last["status"], "busy", "a lease left held: {last}");
        if last["status"] == "done" {
            let steps: Vec<&Value> = lines[before..].iter().collect();
            let ops: Vec<u64> = steps.iter().filter_map(|l| l["ops"].as_u64()).collect();
            let n = ops.len() as f64;
            println!(
                "incremental collection: {} invocations; storage operations (≈ R2 subrequests) per invocation: mean {:.1}, max {}; workerd CPU per invocation (R2 emulation included): mean {:.1} ms, max {:.0} ms",
                ops.len(),
                ops.iter().sum::<u64>() as f64 / n,
                ops.iter().max().unwrap(),
                cpu.iter().sum::<f64>() * 1000.0 / cpu.len() as f64,
                cpu.iter().cloned().fold(0.0, f64::max) * 1000.0,
            );
            return last["report"].clone();
        }
    }
    panic!("the collection did not finish in 2000 invocations");
}

#[test]
fn an_incremental_collection_removes_what_a_one_shot_one_does_and_the_rest_pulls() {
    let server = Server::start();
    let worker_state = std::env::var("EDGE_REGISTRY_WORKER_STATE")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let host = server.host();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::init(&work.path().join("src"));
    let d1 = layout.add_busybox("v1", "amd64", "one");
    let d2 = layout.add_busybox("v2", "amd64", "two");
    let skopeo = Skopeo::new(work.path());
    let src = format!("oci:{}", layout.dir.display());
    for tag in ["v1", "v2"] {
        skopeo.run(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("{src}:{tag}"),
            &format!("docker://{host}/gcw/busybox:{tag}"),
        ]);
    }
    let c = Client::of(&server);
    let memory = MemoryStorage::new();
    let local = in_process_with(TargetOptions::open(), memory.clone()).client();
    common::block_on(async {
        for tag in ["v1", "v2"] {
            push_layout(&local, &layout, "gcw/busybox", tag).await;
        }
        let deleted = push_api_content(&c).await;
        assert_eq!(deleted, push_api_content(&local).await);
        for (name, d) in deleted
            .iter()
            .chain([&("gcw/busybox".to_string(), d2.clone())])
        {
            delete(&c, name, d).await;
            delete(&local, name, d).await;
        }
    });
    let want = one_shot(&memory);
    let before = worker_state.as_deref().map(r2_blobs);
    let report: Value = match &worker_state {
        Some(state) => common::block_on(collect_on_worker(&server, state)),
        None => {
            let root = server.root().unwrap();
            let out = Command::new(BIN)
                .args(["gc", "--grace", "0s", "--json", "--root"])
                .arg(&root)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        }
    };
    assert_eq!(removed_set(&report), want.0, "{report}");
    assert_eq!(report["blobs_removed"], want.1.blobs_removed);
    assert_eq!(report["bytes_reclaimed"], want.1.bytes_reclaimed);
    assert_eq!(report["blobs_kept"], want.1.blobs_kept);
    if let (Some(state), Some((n, bytes))) = (&worker_state, before) {
        let (n2, bytes2) = r2_blobs(state);
        println!(
            "R2 objects under blobs/: {n} ({bytes} bytes) before, {n2} ({bytes2} bytes) after"
        );
        assert_eq!(n - n2, want.1.blobs_removed, "R2 objects removed");
        assert_eq!(bytes - bytes2, want.1.bytes_reclaimed, "R2 bytes removed");
    }

    // What is left pulls with skopeo, with the digest it was pushed with; v2 is gone.
    let back = work.path().join("back");
    skopeo.run(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/gcw/busybox:v1"),
        &format!("oci:{}:v1", back.display()),
    ]);
    assert_eq!(Layout::open(&back).manifest_digest("v1"), d1);
    common::block_on(async {
        let get = |r: String| c.get(&format!("/v2/gcw/busybox/manifests/{r}")).send();
        assert_eq!(get(d2.clone()).await.status, StatusCode::NOT_FOUND);
        for i in (0..12).filter(|i| i % 3 != 1) {
            let r = c
                .get(&format!("/v2/gcw/many{}/manifests/t{i}", i % 3))
                .send()
                .await;
            assert_eq!(r.status, StatusCode::OK, "t{i}");
        }
        // The kept image's signature stays; the deleted one's went with it.
        for (i, want) in [(0, StatusCode::OK), (1, StatusCode::NOT_FOUND)] {
            let name = format!("gcw/many{i}");
            let config = format!("config {i}");
            let layer = format!("layer {i}");
            let shared: &[u8] = b"a layer every image shares";
            let m = to_bytes(&image_of(config.as_bytes(), &[shared, layer.as_bytes()]));
            let sig = sha256(&signature(&m, i));
            let r = c.get(&format!("/v2/{name}/manifests/{sig}")).send().await;
            assert_eq!(r.status, want, "the signature of t{i}");
        }
    });
}

/// A one-shot collection of `memory` (grace 0): what it removed, and its report.
fn one_shot(memory: &MemoryStorage) -> (BTreeSet<String>, gc::Report) {
    let opts = Options {
        grace: 0,
        ..Options::default()
    };
    let clock = FixedClock::at_ms(u64::MAX / 2);
    let report = common::block_on(gc::collect(memory, &opts, &clock))
        .unwrap()
        .report;
    (report.removed.iter().cloned().collect(), report)
}
