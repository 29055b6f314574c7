//! Operating the native server: `/healthz` and `/readyz` without credentials, and the
//! Prometheus metrics after a known sequence of requests (exact counts, bounded series).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::ops::OpsServer;
use common::target::core;
use common::{content, write_accounts, Client, Options, ALICE};
use edge_registry::storage::memory::MemoryStorage;
use edge_registry::Body;
use http::{Method, StatusCode};
use serde_json::json;

fn auth_args(accounts: &std::path::Path) -> Vec<String> {
    vec![
        "--auth".into(),
        "authenticated".into(),
        "--htpasswd".into(),
        accounts.join("htpasswd").display().to_string(),
        "--grants".into(),
        accounts.join("grants").display().to_string(),
    ]
}

#[tokio::test]
async fn health_checks_in_process() {
    let (reg, _) = core(MemoryStorage::new(), &Options::mode("authenticated"));
    for (path, op, body) in [
        ("/healthz", "health", json!({"status": "ok"})),
        (
            "/readyz",
            "ready",
            json!({"status": "ready", "checks": {"storage": "ok"}}),
        ),
    ] {
        let req = http::Request::builder()
            .method(Method::GET)
            .uri(path)
            .body(Body::Empty)
            .unwrap();
        let o = reg.handle(req).await;
        assert_eq!((o.response.status(), o.op), (StatusCode::OK, op), "{path}");
        let Body::Full(b) = o.response.into_body() else {
            panic!("{path}: a full body")
        };
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&b).unwrap(),
            body
        );
    }
}

#[tokio::test]
async fn health_and_readiness_answer_without_credentials() {
    let accounts = tempfile::tempdir().unwrap();
    write_accounts(accounts.path(), &[ALICE]);
    let root = tempfile::tempdir().unwrap();
    let args = auth_args(accounts.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = OpsServer::start(root.path(), &args);
    let c = Client::http(&server.url);
    c.get("/v2/").send().await.expect(StatusCode::UNAUTHORIZED);
    let r = c.get("/healthz").send().await;
    r.expect(StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ok"}));
    c.head("/healthz").send().await.expect(StatusCode::OK);
    let r = c.get("/readyz").send().await;
    r.expect(StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"status": "ready", "checks": {"storage": "ok", "accounts": "ok"}})
    );
    // Wrong credentials are not even looked at.
    let r = c.basic(("alice", "wrong")).get("/readyz").send().await;
    r.expect(StatusCode::OK);
    // Nothing is left behind by the probes.
    let probes = root.path().join("meta").join("_health");
    let left = std::fs::read_dir(&probes).map_or(0, |d| d.count());
    assert_eq!(left, 0, "probe objects left in {}", probes.display());

    // Storage that cannot be written: not ready, and the body says only which check failed.
    std::fs::remove_dir_all(&probes).ok();
    std::fs::write(&probes, b"in the way").unwrap();
    let r = c.get("/readyz").send().await;
    r.expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"status": "unavailable", "checks": {"storage": "failed", "accounts": "ok"}})
    );
    std::fs::remove_file(&probes).unwrap();
    c.get("/readyz").send().await.expect(StatusCode::OK);

    // An htpasswd file that no longer parses (re-read within 2 s): not ready.
    std::fs::write(
        accounts.path().join("htpasswd"),
        "alice:not-a-bcrypt-hash-s3cret\n",
    )
    .unwrap();
    let start = Instant::now();
    let r = loop {
        let r = c.get("/readyz").send().await;
        if r.status != StatusCode::OK || start.elapsed() > Duration::from_secs(15) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    r.expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"status": "unavailable", "checks": {"storage": "ok", "accounts": "failed"}})
    );
    assert!(!r.text().contains("s3cret"));
}

#[tokio::test]
async fn metrics_count_a_known_sequence_exactly() {
    let accounts = tempfile::tempdir().unwrap();
    write_accounts(accounts.path(), &[ALICE]);
    let root = tempfile::tempdir().unwrap();
    let mut args = auth_args(accounts.path());
    args.extend(["--metrics-listen".into(), "127.0.0.1:0".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = OpsServer::start(root.path(), &args);
    let before = server.scrape().await;
    assert_eq!(before.get("edge_registry_upload_sessions_open"), 0.0);
    assert!(before.series("edge_registry_requests_total").is_empty());

    let c = Client::http(&server.url).basic(ALICE);
    let repo = "metrics/app";
    let config = Bytes::from_static(br#"{"os":"linux"}"#);
    let layer = content::bytes(3, 3000);
    c.push_blob(repo, config.clone()).await;
    c.push_chunked(repo, &layer, 1000).await;
    let manifest = content::to_bytes(&content::image_of(&config, &[&layer]));
    let md = c.push_manifest(repo, "v1", &manifest).await;
    for _ in 0..3 {
        c.get(&format!("/v2/{repo}/manifests/v1"))
            .send()
            .await
            .expect(StatusCode::OK);
    }
    c.head(&format!("/v2/{repo}/manifests/{md}"))
        .send()
        .await
        .expect(StatusCode::OK);
    c.get(&format!("/v2/{repo}/blobs/{}", content::sha256(&layer)))
        .send()
        .await
        .expect(StatusCode::OK);
    let missing = c.get(&format!("/v2/{repo}/manifests/v2")).send().await;
    missing.expect(StatusCode::NOT_FOUND);
    Client::http(&server.url)
        .basic(("alice", "wrong-password"))
        .get("/v2/")
        .send()
        .await
        .expect(StatusCode::UNAUTHORIZED);

    let s = server.scrape().await;
    let req = |op: &str, method: &str, status: u16| {
        s.get(&format!(
            "edge_registry_requests_total{{op=\"{op}\",method=\"{method}\",status=\"{status}\"}}"
        ))
    };
    let want = [
        ("upload.start", "POST", 201, 1.0),
        ("upload.start", "POST", 202, 1.0),
        ("upload.patch", "PATCH", 202, 2.0),
        ("upload.complete", "PUT", 201, 1.0),
        ("manifest.put", "PUT", 201, 1.0),
        ("manifest.get", "GET", 200, 3.0),
        ("manifest.head", "HEAD", 200, 1.0),
        ("blob.get", "GET", 200, 1.0),
        ("manifest.get", "GET", 404, 1.0),
        ("base", "GET", 401, 1.0),
    ];
    for (op, method, status, n) in want {
        assert_eq!(
            req(op, method, status),
            n,
            "{op} {method} {status}\n{}",
            s.text
        );
    }
    // Exactly these series: one per (operation, method, status) seen.
    assert_eq!(
        s.series("edge_registry_requests_total").len(),
        want.len(),
        "{}",
        s.text
    );
    let count = |op: &str| {
        s.get(&format!(
            "edge_registry_request_duration_seconds_count{{op=\"{op}\"}}"
        ))
    };
    assert_eq!(count("manifest.get"), 4.0);
    assert_eq!(count("upload.patch"), 2.0);
    let bytes =
        |dir: &str, op: &str| s.get(&format!("edge_registry_{dir}_bytes_total{{op=\"{op}\"}}"));
    assert_eq!(bytes("request", "manifest.put"), manifest.len() as f64);
    // Error bodies count too.
    assert_eq!(
        bytes("response", "manifest.get"),
        (3 * manifest.len() + missing.body.len()) as f64
    );
    assert_eq!(bytes("request", "upload.start"), config.len() as f64);
    assert_eq!(bytes("request", "upload.patch"), 2000.0);
    assert_eq!(bytes("request", "upload.complete"), 1000.0);
    assert_eq!(bytes("response", "blob.get"), layer.len() as f64);
    assert_eq!(s.get("edge_registry_upload_sessions_open"), 0.0);
    assert_eq!(s.get("edge_registry_failed_logins_total"), 1.0);
    let event = |e: &str| s.get(&format!("edge_registry_events_total{{event=\"{e}\"}}"));
    assert_eq!(event("blob.pushed"), 2.0);
    assert_eq!(event("manifest.pushed"), 1.0);
    assert_eq!(event("tag.moved"), 1.0);
    assert_eq!(event("manifest.pulled"), 3.0);
    assert_eq!(event("blob.pulled"), 1.0);
    // The hooks other features feed are there, at zero.
    for name in [
        "edge_registry_storage_bytes",
        "edge_registry_storage_blobs",
        "edge_registry_gc_runs_total",
        "edge_registry_gc_reclaimed_bytes_total",
        "edge_registry_mirror_hits_total",
        "edge_registry_mirror_misses_total",
        "edge_registry_mirror_upstream_errors_total",
    ] {
        assert_eq!(s.get(name), 0.0, "{name}\n{}", s.text);
        assert!(s.text.contains(&format!("\n{name} ")), "{name}\n{}", s.text);
    }
    // Bounded: no repository, digest, tag or path in any label.
    for secret in [repo, "sha256", "/v2", "alice", "v1\""] {
        assert!(!s.text.contains(secret), "{secret} in\n{}", s.text);
    }

    // An open session shows, and goes once cancelled.
    let loc = c.start_upload(repo).await;
    let s = server.scrape().await;
    assert_eq!(s.get("edge_registry_upload_sessions_open"), 1.0);
    c.delete(&loc).send().await.expect(StatusCode::NO_CONTENT);
    let s = server.scrape().await;
    assert_eq!(s.get("edge_registry_upload_sessions_open"), 0.0);

    // Anything but /metrics is a 404 there.
    let other = server
        .metrics
        .as_ref()
        .unwrap()
        .replace("/metrics", "/other");
    assert_eq!(reqwest::get(&other).await.unwrap().status(), 404);
}
