//! Notifications from the native server to a local receiver on 127.0.0.1: exactly the
//! expected events with the reference registry's fields; everything delivered once a receiver
//! that was down comes back, and after a SIGKILL and a restart; a hanging receiver does not
//! slow pushes (measured and printed, not asserted).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::ops::{free_addr, Answer, OpsServer, Receiver};
use common::{content, write_accounts, Client, ALICE};
use futures_util::StreamExt;
use http::StatusCode;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
const MEDIA_TYPE_SINGLE: &str = "application/vnd.docker.distribution.events.v2+json";

fn ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn pushes_pulls_mounts_and_deletes_are_notified_exactly() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
    let accounts = tempfile::tempdir().unwrap();
    write_accounts(accounts.path(), &[ALICE]);
    let root = tempfile::tempdir().unwrap();
    let (htpasswd, grants) = (
        accounts.path().join("htpasswd").display().to_string(),
        accounts.path().join("grants").display().to_string(),
    );
    let server = OpsServer::start(
        root.path(),
        &[
            "--auth",
            "authenticated",
            "--htpasswd",
            &htpasswd,
            "--grants",
            &grants,
            "--notify",
            &receiver.url,
            "--notify-header",
            "Authorization: Bearer receiver-t0ken",
        ],
    );
    let host = server.url.trim_start_matches("http://").to_string();
    let c = Client::http(&server.url).basic(ALICE);
    let (repo, other) = ("notify/app", "notify/other");
    let config = Bytes::from_static(br#"{"os":"linux"}"#);
    let layer = content::bytes(11, 2500);
    let (cd, ld) = (content::sha256(&config), content::sha256(&layer));
    c.push_blob(repo, config.clone()).await;
    c.push_chunked(repo, &layer, 1000).await;
    let manifest = content::to_bytes(&content::image_of(&config, &[&layer]));
    let md = c.push_manifest(repo, "v1", &manifest).await;
    c.get(&format!("/v2/{repo}/manifests/v1"))
        .send()
        .await
        .expect(StatusCode::OK);
    // A HEAD is no pull.
    c.head(&format!("/v2/{repo}/manifests/v1"))
        .send()
        .await
        .expect(StatusCode::OK);
    c.get(&format!("/v2/{repo}/blobs/{ld}"))
        .send()
        .await
        .expect(StatusCode::OK);
    c.post(&format!(
        "/v2/{other}/blobs/uploads/?mount={ld}&from={repo}"
    ))
    .send()
    .await
    .expect(StatusCode::CREATED);
    c.delete(&format!("/v2/{repo}/manifests/{md}"))
        .send()
        .await
        .expect(StatusCode::ACCEPTED);
    c.delete(&format!("/v2/{repo}/blobs/{cd}"))
        .send()
        .await
        .expect(StatusCode::ACCEPTED);
    // Failures notify nothing.
    c.get(&format!("/v2/{repo}/manifests/v1"))
        .send()
        .await
        .expect(StatusCode::NOT_FOUND);

    let events = receiver.wait_for(9, WAIT).await;
    // Nothing more follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_after = receiver.events();
    assert_eq!(events_after.len(), 9, "{events_after:#?}");
    assert_eq!(events, events_after);

    let blob_url = |r: &str, d: &str| format!("http://{host}/v2/{r}/blobs/{d}");
    let manifest_url = format!("http://{host}/v2/{repo}/manifests/{md}");
    let octet = "application/octet-stream";
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let want = [
        (
            "push",
            "POST",
            json!({"mediaType": octet, "size": config.len(), "digest": cd,
            "length": config.len(), "repository": repo, "url": blob_url(repo, &cd)}),
        ),
        (
            "push",
            "PUT",
            json!({"mediaType": octet, "size": layer.len(), "digest": ld,
            "length": layer.len(), "repository": repo, "url": blob_url(repo, &ld)}),
        ),
        (
            "push",
            "PUT",
            json!({"mediaType": oci, "size": manifest.len(), "digest": md,
            "length": manifest.len(), "repository": repo, "url": manifest_url, "tag": "v1"}),
        ),
        (
            "pull",
            "GET",
            json!({"mediaType": oci, "size": manifest.len(), "digest": md,
            "length": manifest.len(), "repository": repo, "url": manifest_url, "tag": "v1"}),
        ),
        (
            "pull",
            "GET",
            json!({"mediaType": octet, "size": layer.len(), "digest": ld,
            "length": layer.len(), "repository": repo, "url": blob_url(repo, &ld)}),
        ),
        (
            "mount",
            "POST",
            json!({"mediaType": octet, "size": layer.len(), "digest": ld,
            "length": layer.len(), "repository": other, "fromRepository": repo,
            "url": blob_url(other, &ld)}),
        ),
        ("delete", "DELETE", json!({"repository": repo, "tag": "v1"})),
        (
            "delete",
            "DELETE",
            json!({"repository": repo, "digest": md}),
        ),
        (
            "delete",
            "DELETE",
            json!({"repository": repo, "digest": cd}),
        ),
    ];
    let instance = events[0]["source"]["instanceID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(instance.len(), 36);
    for (i, ((action, method, target), e)) in want.iter().zip(&events).enumerate() {
        assert_eq!(e["action"], *action, "event {i}: {e:#}");
        assert_eq!(e["target"], *target, "event {i}: {e:#}");
        assert_eq!(e["request"]["method"], *method, "event {i}: {e:#}");
        assert_eq!(e["request"]["addr"], "127.0.0.1", "event {i}");
        assert_eq!(e["request"]["host"], host.as_str(), "event {i}");
        assert_eq!(e["request"]["id"].as_str().unwrap().len(), 36, "event {i}");
        assert!(e["request"]["useragent"].is_string(), "event {i}");
        assert_eq!(e["actor"], json!({"name": "alice"}), "event {i}");
        assert_eq!(
            e["source"],
            json!({"addr": host.as_str(), "instanceID": instance}),
            "event {i}"
        );
        let ts = e["timestamp"].as_str().unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.starts_with("20"),
            "{ts}"
        );
        let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "id",
                "timestamp",
                "action",
                "target",
                "request",
                "actor",
                "source"
            ])
        );
    }
    assert_eq!(ids(&events).len(), 9, "every id distinct");
    // The two deletions of one request share its request id.
    assert_eq!(events[6]["request"]["id"], events[7]["request"]["id"]);
    assert_ne!(events[5]["request"]["id"], events[6]["request"]["id"]);
    for p in receiver.posts() {
        assert_eq!(p.content_type, MEDIA_TYPE);
        assert_eq!(p.headers["authorization"], "Bearer receiver-t0ken");
        assert!(p.body["events"].is_array());
    }
}

#[tokio::test]
async fn ignored_actions_are_not_sent() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
    let root = tempfile::tempdir().unwrap();
    let server = OpsServer::start(
        root.path(),
        &["--notify", &receiver.url, "--notify-ignore-actions", "pull"],
    );
    let c = Client::http(&server.url);
    let d = c.push_blob("ignore/app", content::bytes(1, 100)).await;
    c.get(&format!("/v2/ignore/app/blobs/{d}"))
        .send()
        .await
        .expect(StatusCode::OK);
    c.push_blob("ignore/app", content::bytes(2, 100)).await;
    let events = receiver.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let actions: Vec<Value> = receiver
        .events()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(actions, [json!("push"), json!("push")], "{events:#?}");
    // Without credentials there is no actor name.
    assert_eq!(events[0]["actor"], json!({}));
}

/// A notice's request fields are the request's own: its user agent, the address and host it
/// came with, and (behind a proxy) the scheme the URL's base takes.
#[tokio::test]
async fn a_notice_carries_the_requests_user_agent_host_and_scheme() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
    let root = tempfile::tempdir().unwrap();
    let server = OpsServer::start(root.path(), &["--notify", &receiver.url]);
    let c = Client::http(&server.url);
    let d = c.push_blob("seen/app", content::bytes(3, 100)).await;
    let mut want = Vec::new();
    for (ua, host, proto) in [
        (
            "skopeo/1.9 (\"quoted\" \\ caf\u{e9})",
            "registry.example:5000",
            Some("https"),
        ),
        ("", "other.example", None),
        ("containerd/2.0", "registry.example", Some("http")),
    ] {
        let mut r = c
            .get(&format!("/v2/seen/app/blobs/{d}"))
            .header("host", host);
        if !ua.is_empty() {
            r = r.header("user-agent", ua);
        }
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        r.send().await.expect(StatusCode::OK);
        let base = format!("{}://{host}", proto.unwrap_or("http"));
        want.push((ua, host, format!("{base}/v2/seen/app/blobs/{d}")));
    }
    let events = receiver.wait_for(4, WAIT).await;
    let pulls: Vec<&Value> = events.iter().filter(|e| e["action"] == "pull").collect();
    assert_eq!(pulls.len(), 3, "{events:#?}");
    for (e, (ua, host, url)) in pulls.iter().zip(&want) {
        assert_eq!(e["request"]["useragent"], *ua, "{e:#}");
        assert_eq!(e["request"]["host"], *host, "{e:#}");
        assert_eq!(e["request"]["addr"], "127.0.0.1", "{e:#}");
        assert_eq!(e["target"]["url"], url.as_str(), "{e:#}");
    }
}

/// Eight clients at once, each pulling 60 times one after the other: each client's notices
/// come in the order of its requests (the server's threads queue them apart; a request sent
/// after another's answer has its notice after the other's).
#[tokio::test]
async fn a_clients_requests_are_notified_in_the_order_it_sent_them() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
    let root = tempfile::tempdir().unwrap();
    let server = OpsServer::start(root.path(), &["--notify", &receiver.url]);
    let c = Client::http(&server.url);
    let d = c.push_blob("order/app", content::bytes(5, 64)).await;
    let (clients, each) = (8, 60);
    let runs = (0..clients).map(|k| {
        let (c, d) = (Client::http(&server.url), d.clone());
        tokio::spawn(async move {
            for i in 0..each {
                c.get(&format!("/v2/order/app/blobs/{d}"))
                    .header("user-agent", format!("client-{k}/{i}"))
                    .send()
                    .await
                    .expect(StatusCode::OK);
            }
        })
    });
    for r in futures_util::future::join_all(runs).await {
        r.unwrap();
    }
    let events = receiver.wait_for(1 + clients * each, WAIT).await;
    let mut next = vec![0; clients];
    for e in events.iter().filter(|e| e["action"] == "pull") {
        let ua = e["request"]["useragent"].as_str().unwrap();
        let (k, i) = ua
            .strip_prefix("client-")
            .and_then(|s| s.split_once('/'))
            .unwrap();
        let (k, i): (usize, usize) = (k.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[k], "client {k}'s pull {i} came out of order");
        next[k] += 1;
    }
    assert_eq!(next, vec![each; clients]);
}

/// With `--base-url`, a notice's URL takes that base whatever the request's `Host`.
#[tokio::test]
async fn a_configured_base_url_makes_the_notices_urls() {
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
    let root = tempfile::tempdir().unwrap();
    let server = OpsServer::start(
        root.path(),
        &[
            "--notify",
            &receiver.url,
            "--base-url",
            "https://registry.example/",
        ],
    );
    let c = Client::http(&server.url);
    let d = c.push_blob("based/app", content::bytes(4, 100)).await;
    c.get(&format!("/v2/based/app/blobs/{d}"))
        .header("host", "elsewhere.example")
        .send()
        .await
        .expect(StatusCode::OK);
    let events = receiver.wait_for(2, WAIT).await;
    let want = format!("https://registry.example/v2/based/app/blobs/{d}");
    for e in &events {
        assert_eq!(e["target"]["url"], want.as_str(), "{e:#}");
    }
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_once_back() {
    let addr = free_addr();
    let url = format!("http://{addr}/events");
    let root = tempfile::tempdir().unwrap();
    let server = OpsServer::start(
        root.path(),
        &[
            "--notify",
            &url,
            "--notify-max-backoff",
            "1s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let c = Client::http(&server.url);
    let mut digests = BTreeSet::new();
    for i in 0..5 {
        digests.insert(c.push_blob("down/app", content::bytes(100 + i, 500)).await);
    }
    // Delivery fails (nothing listens) and is retried.
    let start = Instant::now();
    while server
        .scrape()
        .await
        .get("edge_registry_notification_retries_total{endpoint=\"0\"}")
        < 2.0
    {
        assert!(start.elapsed() < WAIT, "no retries counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let receiver = Receiver::start(addr, Answer::Ok).await;
    let events = receiver.wait_for(5, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events_after = receiver.events();
    assert_eq!(events_after.len(), 5, "{events:#?}");
    let got: BTreeSet<String> = events_after
        .iter()
        .map(|e| e["target"]["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, digests);
    let s = server.scrape().await;
    assert_eq!(
        s.get("edge_registry_notification_deliveries_total{endpoint=\"0\"}"),
        5.0
    );
    assert_eq!(
        s.get("edge_registry_notification_pending{endpoint=\"0\"}"),
        0.0
    );
    assert_eq!(
        s.get("edge_registry_notification_drops_total{endpoint=\"0\"}"),
        0.0
    );
}

#[tokio::test]
async fn a_flood_of_events_is_delivered_once_each_in_posts_of_at_most_100() {
    let addr = free_addr();
    let url = format!("http://{addr}/events");
    let root = tempfile::tempdir().unwrap();
    // A spool file of 250 events left by an earlier run: more than a POST carries.
    let spool = edge_registry::native::notify::spool_dir(root.path(), &url);
    std::fs::create_dir_all(&spool).unwrap();
    let seeded: String = (0..250)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("seeded-{i}"), "action": "push"})
            )
        })
        .collect();
    std::fs::write(spool.join("00000000000000000000-250.json"), seeded).unwrap();
    let server = OpsServer::start(
        root.path(),
        &["--notify", &url, "--notify-max-backoff", "1s"],
    );
    let c = Client::http(&server.url);
    let data = content::bytes(7, 300);
    let digest = c.push_blob("flood/app", data.clone()).await;
    // 400 pulls (a HEAD and a GET each: two pull events, as the reference sends), 50 at a
    // time, while the receiver is down: the spool batches them (a spool
    // file may hold more events than a POST may carry).
    let pulls = futures_util::stream::iter(0..400)
        .map(|_| {
            let (c, data) = (c.clone(), data.clone());
            async move { c.blob_intact("flood/app", &data).await }
        })
        .buffer_unordered(50)
        .collect::<Vec<()>>();
    pulls.await;
    let receiver = Receiver::start(addr, Answer::Ok).await;
    let events = receiver.wait_for(1051, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts = receiver.posts();
    assert_eq!(receiver.events().len(), 1051, "{} events", events.len());
    for p in &posts {
        let n = p.body["events"].as_array().unwrap().len();
        assert!((1..=100).contains(&n), "a POST carried {n} events");
    }
    let ids = ids(&receiver.events());
    assert_eq!(ids.len(), 1051, "every event once, each with its own id");
    let pulls = receiver
        .events()
        .iter()
        .filter(|e| e["action"] == "pull" && e["target"]["digest"] == digest.as_str())
        .count();
    assert_eq!(pulls, 800);
    assert!(posts.len() >= 11, "{} POSTs", posts.len());
    // The seeded events came first, in order, in slices of 100.
    let first: Vec<Value> = receiver.events()[..250].to_vec();
    for (i, e) in first.iter().enumerate() {
        assert_eq!(e["id"], json!(format!("seeded-{i}")));
    }
    let sizes: Vec<usize> = posts[..3]
        .iter()
        .map(|p| p.body["events"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[tokio::test]
async fn events_spooled_before_a_sigkill_are_delivered_after_the_restart() {
    let addr = free_addr();
    let url = format!("http://{addr}/events");
    let root = tempfile::tempdir().unwrap();
    let args = [
        "--notify",
        &url,
        "--notify-max-backoff",
        "1s",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let mut server = OpsServer::start(root.path(), &args);
    let c = Client::http(&server.url);
    let mut digests = BTreeSet::new();
    for i in 0..4 {
        digests.insert(c.push_blob("kill/app", content::bytes(200 + i, 300)).await);
    }
    // Wait until all four are in the spool, then crash.
    let start = Instant::now();
    while server
        .scrape()
        .await
        .get("edge_registry_notification_pending{endpoint=\"0\"}")
        < 4.0
    {
        assert!(start.elapsed() < WAIT, "events never spooled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    let receiver = Receiver::start(addr, Answer::Ok).await;
    let _server = OpsServer::start(root.path(), &args);
    let events = receiver.wait_for(4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = if receiver.events().len() > events.len() {
        receiver.events()
    } else {
        events
    };
    // At least once; repeats share their id.
    assert_eq!(ids(&events).len(), 4, "{events:#?}");
    let got: BTreeSet<String> = events
        .iter()
        .map(|e| e["target"]["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, digests);
}

#[tokio::test]
async fn a_hanging_receiver_does_not_slow_pushes() {
    let hanging = Receiver::start("127.0.0.1:0".parse().unwrap(), Answer::Hang).await;
    let (root_a, root_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with = OpsServer::start(
        root_a.path(),
        &["--notify", &hanging.url, "--notify-timeout", "60s"],
    );
    let without = OpsServer::start(root_b.path(), &[]);
    let (ca, cb) = (Client::http(&with.url), Client::http(&without.url));
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    let n = 40;
    for i in 0..n {
        let data = content::bytes(300 + i, 64 * 1024);
        let t = Instant::now();
        ca.push_blob("hang/app", data.clone()).await;
        ta += t.elapsed();
        let t = Instant::now();
        cb.push_blob("hang/app", data).await;
        tb += t.elapsed();
    }
    // The endpoint got the first POST and never answered it.
    assert!(hanging.posts().is_empty());
    println!(
        "{n} pushes of 64 KiB: {:.2} ms each with a hanging endpoint, {:.2} ms without",
        ta.as_secs_f64() * 1000.0 / n as f64,
        tb.as_secs_f64() * 1000.0 / n as f64
    );
}

/// On both adapters: natively a server of its own; on the Worker (scripts/test-worker-notify)
/// the one at `EDGE_REGISTRY_URL`, whose `NOTIFY_URLS` points at `EDGE_REGISTRY_NOTIFY_ADDR`
/// and `NOTIFY_SINGLE_URLS` at `EDGE_REGISTRY_NOTIFY_SINGLE_ADDR`. The receivers are down
/// while the registry works, and get every event once they are up (the Worker's Cloudflare
/// Queue, emulated by `wrangler dev`, retries them); the single-event one gets each event in a
/// POST of its own, with the reference registry 3.x's media type.
#[tokio::test]
async fn a_receiver_that_comes_up_late_gets_pushes_pulls_mounts_and_deletes() {
    let root = tempfile::tempdir().unwrap();
    let external = std::env::var("EDGE_REGISTRY_NOTIFY_ADDR").ok();
    let external_single = std::env::var("EDGE_REGISTRY_NOTIFY_SINGLE_ADDR").ok();
    let (addr, single_addr, _native, url) = match (&external, std::env::var("EDGE_REGISTRY_URL")) {
        (Some(a), Ok(url)) => (
            a.parse().unwrap(),
            external_single.map(|a| a.parse().unwrap()),
            None,
            url,
        ),
        _ => {
            let (addr, single_addr) = (free_addr(), free_addr());
            let events = format!("http://{addr}/events");
            let single = format!("http://{single_addr}/events");
            let s = OpsServer::start(
                root.path(),
                &[
                    "--notify",
                    &events,
                    "--notify-single",
                    &single,
                    "--notify-max-backoff",
                    "1s",
                    "--notify-header",
                    "Authorization: Bearer receiver-t0ken",
                ],
            );
            let url = s.url.clone();
            (addr, Some(single_addr), Some(s), url)
        }
    };
    let c = Client::http(&url);
    let repo = common::repo("late/app");
    let other = common::repo("late/other");
    let layer = content::fresh(700);
    let ld = c.push_blob(&repo, layer.clone()).await;
    let config = Bytes::from_static(br#"{"os":"linux"}"#);
    let cd = c.push_blob(&repo, config.clone()).await;
    let manifest = content::to_bytes(&content::image_of(&config, &[&layer]));
    let md = c.push_manifest(&repo, "late", &manifest).await;
    c.get(&format!("/v2/{repo}/manifests/late"))
        .send()
        .await
        .expect(StatusCode::OK);
    c.post(&format!(
        "/v2/{other}/blobs/uploads/?mount={ld}&from={repo}"
    ))
    .send()
    .await
    .expect(StatusCode::CREATED);
    c.delete(&format!("/v2/{repo}/manifests/{md}"))
        .send()
        .await
        .expect(StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let receiver = Receiver::start(addr, Answer::Ok).await;
    let single = match single_addr {
        Some(a) => Some(Receiver::start(a, Answer::Ok).await),
        None => None,
    };
    let want = 7;
    receiver.wait_for(want, Duration::from_secs(90)).await;
    if let Some(single) = &single {
        single.wait_for(want, Duration::from_secs(90)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = receiver.events();
    // At least once: repeats (a retry whose answer was lost) share their id.
    let mut seen = BTreeSet::new();
    let mut got: Vec<(String, String, String, String, String)> = events
        .iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap().to_string()))
        .map(|e| {
            let t = &e["target"];
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&e["action"]),
                s(&t["repository"]),
                s(&t["digest"]),
                s(&t["tag"]),
                s(&t["fromRepository"]),
            )
        })
        .collect();
    got.sort();
    let row = |a: &str, r: &str, d: &str, t: &str, f: &str| {
        (
            a.to_string(),
            r.to_string(),
            d.to_string(),
            t.to_string(),
            f.to_string(),
        )
    };
    let mut expected = vec![
        row("push", &repo, &ld, "", ""),
        row("push", &repo, &cd, "", ""),
        row("push", &repo, &md, "late", ""),
        row("pull", &repo, &md, "late", ""),
        row("mount", &other, &ld, "", &repo),
        row("delete", &repo, "", "late", ""),
        row("delete", &repo, &md, "", ""),
    ];
    expected.sort();
    assert_eq!(got, expected, "{events:#?}");
    for e in &events {
        assert_eq!(e["source"]["instanceID"].as_str().unwrap().len(), 36);
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(e["request"]["id"].as_str().unwrap().len(), 36);
    }
    for p in receiver.posts() {
        assert_eq!(p.content_type, MEDIA_TYPE);
        assert_eq!(p.headers["authorization"], "Bearer receiver-t0ken");
    }
    if let Some(single) = &single {
        // The same events (by id), one a POST.
        let ids_single = ids(&single.events());
        assert_eq!(ids_single, ids(&events), "{:#?}", single.events());
        for p in single.posts() {
            assert_eq!(p.content_type, MEDIA_TYPE_SINGLE);
            assert_eq!(p.headers["authorization"], "Bearer receiver-t0ken");
            assert_eq!(p.body["events"].as_array().unwrap().len(), 1);
        }
    }
}
