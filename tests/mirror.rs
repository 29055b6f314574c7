//! The pull-through cache (issue #13), natively, against local upstreams (no internet):
//!
//! - our own server in `authenticated` mode with a token key (Docker Hub's token flow), behind
//!   a proxy that counts requests, sends blob GETs with a 307 to a second port (a CDN) and
//!   fails on demand (`common::upstream_proxy`);
//! - Debian's `docker-registry` (distribution 2.8.2) with htpasswd (Basic only).
//!
//! Images are built offline (umoci + busybox) and put upstream with skopeo; skopeo and
//! oci-client pull them through the mirror. Also: the tag TTL, an upstream that is down, a
//! corrupt blob, bad manifests, routing (prefixes, the default mirror with `library/`,
//! containerd's `?ns=`), pushes refused, 8 clients sharing one fetch of a 100 MiB blob, the
//! memory of a 1 GiB pull-through, and bad settings refused at start.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::content::{self, sha256, MIB};
use common::image::{run, run_stdout, Layout};
use common::ops::{free_addr, Scrape};
use common::podman::{last_line, Podman};
use common::upstream_proxy::{Mode, UpstreamProxy};
use common::{write_accounts, Client, Server, ALICE};
use edge_registry::digest::{Algorithm, Hasher};
use futures_util::StreamExt;
use http::StatusCode;

const TTL: u64 = 4;

/// Our server as an upstream: `authenticated`, the fixture users, a token key.
fn token_upstream(dir: &Path) -> Server {
    write_accounts(dir, &[ALICE]);
    std::fs::write(
        dir.join("token-secret"),
        "0123456789abcdef0123456789abcdef-mirror",
    )
    .unwrap();
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    Server::native_with(&[
        "--auth",
        "authenticated",
        "--htpasswd",
        &p("htpasswd"),
        "--token-secret-file",
        &p("token-secret"),
    ])
}

/// The mirror: a native server with `args`.
fn mirror(args: &[String]) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::native_with(&args)
}

fn basic_header((user, password): (&str, &str)) -> String {
    common::client::basic(user, password)
}

/// skopeo with a permissive policy, over plain HTTP.
fn skopeo(dir: &Path) -> Command {
    let policy = dir.join("policy.json");
    if !policy.exists() {
        std::fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
    }
    let mut c = Command::new("skopeo");
    c.arg("--policy")
        .arg(&policy)
        .args(["--command-timeout", "120s"])
        .env("TMPDIR", dir)
        .env("REGISTRY_AUTH_FILE", dir.join("auth.json"));
    c
}

fn copy_all(dir: &Path, src: &str, dest: &str, creds: Option<&str>) {
    let mut c = skopeo(dir);
    c.args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ]);
    if let Some(creds) = creds {
        c.args(["--dest-creds", creds]);
    }
    run(c.arg(src).arg(dest));
}

/// `GET` of a blob through `c`, streamed and hashed: its length and digest, or the error.
async fn pull_blob(c: &Client, name: &str, d: &str) -> Result<(u64, String), String> {
    let r = c
        .get(&format!("/v2/{name}/blobs/{d}"))
        .send_streaming()
        .await?;
    if r.status != StatusCode::OK {
        return Err(format!("status {}", r.status));
    }
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut n = 0u64;
    let mut body = r.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((n, h.finish().to_string()))
}

/// The mirror's metrics, scraped from `--metrics-listen addr`.
async fn scrape_metrics(addr: std::net::SocketAddr) -> Scrape {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Scrape::parse(&text)
}

fn manifest_digest(r: &common::Response) -> String {
    r.header("docker-content-digest")
        .unwrap_or_default()
        .to_string()
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

async fn get_manifest(c: &Client, name: &str, reference: &str) -> common::Response {
    c.get(&format!("/v2/{name}/manifests/{reference}"))
        .header("Accept", ACCEPT)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_upstream_behind_a_cdn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let upstream = token_upstream(dir);
    let proxy = UpstreamProxy::start(&upstream.url, Some(basic_header(ALICE))).await;
    // Docker Hub's rate-limit headers, with manifests.
    proxy.set_rate_limit(Some((76, 100)));
    std::fs::write(
        dir.join("mirror-credentials"),
        format!("up.test {} {}\n", ALICE.0, ALICE.1),
    )
    .unwrap();
    let metrics = free_addr();
    let m = mirror(&[
        "--metrics-listen".into(),
        metrics.to_string(),
        "--mirror".into(),
        format!("up.test={}", proxy.url),
        "--mirror-credentials".into(),
        dir.join("mirror-credentials").to_str().unwrap().into(),
        "--mirror-tag-ttl".into(),
        format!("{TTL}s"),
    ]);
    let mc = Client::of(&m);
    let creds = format!("{}:{}", ALICE.0, ALICE.1);

    // Upstream: an image for two architectures and their index, put there with skopeo.
    let layout = Layout::init(&dir.join("layout"));
    let amd64 = layout.add_busybox("v1", "amd64", "one");
    let arm64 = layout.add_busybox("arm", "arm64", "two");
    let index = layout.add_index("multi", &["v1", "arm"]);
    let up = upstream.host();
    for tag in ["v1", "multi"] {
        copy_all(
            dir,
            &format!("oci:{}:{tag}", layout.dir.display()),
            &format!("docker://{up}/lib/app:{tag}"),
            Some(&creds),
        );
    }

    // podman pulls through the mirror as the README's registries.conf sets it up: by tag (the
    // index, resolved to linux/amd64) and by digest. `up.example` itself does not resolve.
    let podman = Podman::new();
    podman.set_registries_conf(&format!(
        "unqualified-search-registries = []\n\n[[registry]]\nprefix = \"up.example\"\nlocation = \"up.example\"\n\n[[registry.mirror]]\nlocation = \"{}/up.test\"\ninsecure = true\n",
        m.host()
    ));
    let out = run_stdout(podman.transfer("pull").arg("up.example/lib/app:multi"));
    let id = last_line(&out);
    assert_eq!(format!("sha256:{id}"), layout.config_digest("v1"));
    let out = run_stdout(
        podman
            .transfer("pull")
            .arg(format!("up.example/lib/app@{amd64}")),
    );
    assert_eq!(last_line(&out), id);
    assert!(proxy.blob_gets() > 0, "podman's pull went upstream");

    // skopeo pulls the index through the mirror, by tag, and gets the same digests.
    let out = dir.join("pulled");
    copy_all(
        dir,
        &format!("docker://{}/up.test/lib/app:multi", m.host()),
        &format!("oci:{}:multi", out.display()),
        None,
    );
    let pulled = Layout::open(&out);
    assert_eq!(pulled.manifest_digest("multi"), index);
    for d in [&amd64, &arm64] {
        assert!(pulled.blob_path(d).exists(), "{d} pulled");
    }
    // Blob GETs went to the CDN (307), and our credentials did not.
    let seen = proxy.seen();
    let cdn: Vec<_> = seen.iter().filter(|s| s.cdn).collect();
    assert!(!cdn.is_empty(), "no blob went through the CDN: {seen:?}");
    assert!(
        cdn.iter().all(|s| !s.authorized),
        "credentials sent to the CDN"
    );
    // The upstream's token realm is its own address (not the proxy's): the manifest requests
    // show the token.
    assert!(
        seen.iter()
            .any(|s| !s.cdn && s.path.contains("/manifests/") && s.authorized),
        "no authorized manifest request: {seen:?}"
    );
    let first_blob_gets = proxy.blob_gets();
    // The upstream's rate limit, in the metrics.
    let scrape = scrape_metrics(metrics).await;
    let rl = |s: &Scrape, which: &str| {
        s.get(&format!(
            "edge_registry_mirror_upstream_ratelimit_{which}{{mirror=\"up.test\"}}"
        ))
    };
    assert_eq!(
        (rl(&scrape, "remaining"), rl(&scrape, "limit")),
        (76.0, 100.0),
        "{}",
        scrape.text
    );
    println!(
        "first pull: {first_blob_gets} upstream blob GETs, {} requests",
        seen.len()
    );

    // A second pull (by digest too) makes no upstream request at all within the TTL.
    proxy.reset();
    let again = dir.join("again");
    copy_all(
        dir,
        &format!("docker://{}/up.test/lib/app:multi", m.host()),
        &format!("oci:{}:multi", again.display()),
        None,
    );
    copy_all(
        dir,
        &format!("docker://{}/up.test/lib/app@{amd64}", m.host()),
        &format!("oci:{}:bydigest", again.display()),
        None,
    );
    assert_eq!(Layout::open(&again).manifest_digest("multi"), index);
    assert_eq!(proxy.blob_gets(), 0, "{:?}", proxy.seen());
    assert_eq!(proxy.count("GET", "/manifests/"), 0, "{:?}", proxy.seen());

    // oci-client, by tag (it resolves the index to linux/amd64) and by digest.
    {
        use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
        use oci_client::secrets::RegistryAuth;
        let oc = oci_client::Client::try_from(ClientConfig {
            protocol: ClientProtocol::Http,
            platform_resolver: Some(Box::new(linux_amd64_resolver)),
            ..Default::default()
        })
        .unwrap();
        let by_tag =
            oci_client::Reference::with_tag(m.host(), "up.test/lib/app".into(), "multi".into());
        let (_, d) = oc
            .pull_image_manifest(&by_tag, &RegistryAuth::Anonymous)
            .await
            .unwrap();
        assert_eq!(d, amd64);
        let by_digest =
            oci_client::Reference::with_digest(m.host(), "up.test/lib/app".into(), arm64.clone());
        let image = oc
            .pull(
                &by_digest,
                &RegistryAuth::Anonymous,
                vec![
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    "application/vnd.oci.image.layer.v1.tar",
                ],
            )
            .await
            .unwrap();
        assert_eq!(image.digest.as_deref(), Some(arm64.as_str()));
        for l in &image.layers {
            assert_eq!(layout.blob(&l.sha256_digest()), l.data.to_vec());
        }
    }
    assert_eq!(proxy.blob_gets(), 0, "oci-client's pulls were cached");

    // Past the TTL a tag costs one HEAD upstream, and no GET.
    tokio::time::sleep(Duration::from_secs(TTL + 1)).await;
    proxy.reset();
    let r = get_manifest(&mc, "up.test/lib/app", "multi").await;
    r.expect(StatusCode::OK);
    assert_eq!(manifest_digest(&r), index);
    let heads = proxy.count("HEAD", "/manifests/multi");
    assert_eq!(heads, 1, "{:?}", proxy.seen());
    assert_eq!(proxy.count("GET", "/manifests/"), 0, "{:?}", proxy.seen());

    // The tag moves upstream: the mirror shows it after the TTL, not before.
    let r = get_manifest(&mc, "up.test/lib/app", "v1").await;
    assert_eq!(manifest_digest(&r), amd64);
    let upc = Client::of(&upstream).basic(ALICE);
    let (_, moved) = upc
        .push_image("lib/app", "v1", b"moved", serde_json::json!({}))
        .await;
    let r = get_manifest(&mc, "up.test/lib/app", "v1").await;
    assert_eq!(manifest_digest(&r), amd64, "moved before the TTL");
    tokio::time::sleep(Duration::from_secs(TTL + 1)).await;
    let r = get_manifest(&mc, "up.test/lib/app", "v1").await;
    r.expect(StatusCode::OK);
    assert_eq!(manifest_digest(&r), moved, "not moved after the TTL");
    assert_eq!(sha256(&r.body), moved);

    // A rate limit nearly spent (a tenth left): a cached tag past its TTL (`multi`) is served
    // without asking upstream; the metrics show the budget.
    proxy.set_rate_limit(Some((5, 100)));
    get_manifest(&mc, "up.test/lib/app", "never-pushed")
        .await
        .expect_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    proxy.reset();
    let r = get_manifest(&mc, "up.test/lib/app", "multi").await;
    r.expect(StatusCode::OK);
    assert_eq!(manifest_digest(&r), index);
    assert_eq!(proxy.seen().len(), 0, "{:?}", proxy.seen());
    let scrape = scrape_metrics(metrics).await;
    assert_eq!(
        (rl(&scrape, "remaining"), rl(&scrape, "limit")),
        (5.0, 100.0)
    );
    // Back to plenty (seen on the next upstream answer).
    proxy.set_rate_limit(Some((76, 100)));
    get_manifest(&mc, "up.test/lib/app", "never-pushed")
        .await
        .expect_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");

    // Tags, referrers, the catalog.
    // (the upstream's list: `arm` was only in the layout)
    let tags = mc.tags("up.test/lib/app").await.unwrap();
    assert_eq!(tags, ["multi", "v1"]);
    let r = mc
        .get(&format!("/v2/up.test/lib/app/referrers/{amd64}"))
        .send()
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    assert!(mc.catalog().await.contains(&"up.test/lib/app".to_string()));

    // Pushes, deletes and mounts into the mirror are refused.
    let r = mc
        .put_manifest(
            "up.test/lib/app",
            "new",
            content::OCI_MANIFEST,
            r.body.clone(),
        )
        .await;
    r.expect_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    mc.post("/v2/up.test/lib/app/blobs/uploads/")
        .send()
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    mc.delete(&format!("/v2/up.test/lib/app/manifests/{amd64}"))
        .send()
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");

    // The upstream goes down: cached tags and blobs still pull (stale), an uncached tag is
    // 503 with the upstream's status.
    tokio::time::sleep(Duration::from_secs(TTL + 1)).await;
    for (mode, detail) in [
        (Mode::Drop, serde_json::json!({"upstream": "unreachable"})),
        (
            Mode::Unavailable,
            serde_json::json!({"upstream_status": 503}),
        ),
        (Mode::TooMany, serde_json::json!({"upstream_status": 429})),
    ] {
        proxy.set_mode(mode);
        let r = get_manifest(&mc, "up.test/lib/app", "multi").await;
        r.expect(StatusCode::OK);
        assert_eq!(manifest_digest(&r), index, "{mode:?}");
        let r = get_manifest(&mc, "up.test/lib/app", "never-pushed").await;
        r.expect(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.json()["errors"][0]["detail"], detail, "{mode:?}");
        let cfg = layout.config_digest("arm");
        let got = pull_blob(&mc, "up.test/lib/app", &cfg).await.unwrap();
        assert_eq!(got.1, cfg, "{mode:?}");
    }
    let stale = dir.join("stale");
    copy_all(
        dir,
        &format!("docker://{}/up.test/lib/app:multi", m.host()),
        &format!("oci:{}:multi", stale.display()),
        None,
    );
    assert_eq!(Layout::open(&stale).manifest_digest("multi"), index);
    proxy.set_mode(Mode::Pass);

    // A corrupt blob upstream: not cached, the pull fails; once fixed, it works.
    let layer = content::fresh(3 * MIB);
    let (_, _) = upc
        .push_image("lib/app", "corrupt", &layer, serde_json::json!({}))
        .await;
    let ld = sha256(&layer);
    proxy.set_mode(Mode::FlipByte);
    proxy.reset();
    let failed = pull_blob(&mc, "up.test/lib/app", &ld).await;
    assert!(
        failed.is_err() || failed.as_ref().unwrap().1 != ld,
        "{failed:?}"
    );
    assert!(
        failed.is_err(),
        "a corrupt blob must fail the transfer: {failed:?}"
    );
    proxy.set_mode(Mode::Pass);
    let ok = pull_blob(&mc, "up.test/lib/app", &ld).await.unwrap();
    assert_eq!(ok, (layer.len() as u64, ld.clone()));
    assert_eq!(proxy.blob_gets(), 2, "fetched again after the failure");
    let ok = pull_blob(&mc, "up.test/lib/app", &ld).await.unwrap();
    assert_eq!(ok.1, ld);
    assert_eq!(proxy.blob_gets(), 2, "cached once it verified");

    // A Range GET on a miss is passed through (by way of the CDN) and not cached: the whole
    // blob is fetched when it is asked for.
    let ranged = content::fresh(MIB);
    let rd = upc.push_blob("lib/app", ranged.clone()).await;
    proxy.reset();
    let r = mc
        .get(&format!("/v2/up.test/lib/app/blobs/{rd}"))
        .header("Range", "bytes=100-199")
        .send()
        .await;
    r.expect(StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], &ranged[100..200]);
    assert_eq!(proxy.blob_gets(), 1, "{:?}", proxy.seen());
    let ok = pull_blob(&mc, "up.test/lib/app", &rd).await.unwrap();
    assert_eq!(ok, (ranged.len() as u64, rd.clone()));
    assert_eq!(
        proxy.blob_gets(),
        2,
        "the range was cached: {:?}",
        proxy.seen()
    );

    // Bad manifests upstream: a digest not asked for, a wrong Content-Type, over 4 MiB.
    // Each is refused and nothing is cached.
    let (_, good) = upc
        .push_image(
            "lib/app",
            "bad",
            &content::fresh(1024),
            serde_json::json!({}),
        )
        .await;
    for mode in [Mode::WrongDigest, Mode::WrongType, Mode::Oversize] {
        proxy.set_mode(mode);
        let r = get_manifest(&mc, "up.test/lib/app", "bad").await;
        r.expect(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.json()["errors"][0]["detail"]["upstream"],
            "invalid",
            "{mode:?}: {}",
            r.text()
        );
        let r = get_manifest(&mc, "up.test/lib/app", &good).await;
        r.expect(StatusCode::SERVICE_UNAVAILABLE);
    }
    proxy.set_mode(Mode::Unavailable);
    get_manifest(&mc, "up.test/lib/app", &good)
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    proxy.set_mode(Mode::Pass);
    let r = get_manifest(&mc, "up.test/lib/app", "bad").await;
    r.expect(StatusCode::OK);
    assert_eq!(manifest_digest(&r), good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn basic_upstream_two_mirrors_and_routing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Debian's docker-registry with htpasswd (Basic only).
    write_accounts(dir, &[ALICE]);
    let reference = reference_registry(dir);
    // And our token upstream.
    let token_dir = dir.join("token");
    std::fs::create_dir(&token_dir).unwrap();
    let upstream = token_upstream(&token_dir);
    std::fs::write(
        dir.join("mirror-credentials"),
        format!(
            "docker.io {u} {p}\nup.test {u} {p}\n",
            u = ALICE.0,
            p = ALICE.1
        ),
    )
    .unwrap();
    let m = mirror(&[
        "--mirror".into(),
        format!("docker.io={}", reference.1),
        "--mirror".into(),
        format!("up.test={}", upstream.url),
        "--default-mirror".into(),
        "docker.io".into(),
        "--mirror-credentials".into(),
        dir.join("mirror-credentials").to_str().unwrap().into(),
    ]);
    let mc = Client::of(&m);

    // docker-registry gets library/busybox with skopeo.
    let layout = Layout::init(&dir.join("layout"));
    let d = layout.add_busybox("latest", "amd64", "hub");
    let creds = format!("{}:{}", ALICE.0, ALICE.1);
    let hub = reference.1.trim_start_matches("http://").to_string();
    copy_all(
        dir,
        &format!("oci:{}:latest", layout.dir.display()),
        &format!("docker://{hub}/library/busybox:latest"),
        Some(&creds),
    );
    // Our token upstream gets another image.
    let upc = Client::of(&upstream).basic(ALICE);
    let (_, other) = upc
        .push_image("team/tool", "1.0", b"tool layer", serde_json::json!({}))
        .await;

    // The default mirror, as dockerd asks, with library/ for one-part names.
    for (path, query) in [
        ("busybox", ""),
        ("library/busybox", ""),
        ("library/busybox", "?ns=docker.io"),
        ("docker.io/busybox", ""),
        ("docker.io/library/busybox", ""),
    ] {
        let r = mc
            .get(&format!("/v2/{path}/manifests/latest{query}"))
            .header("Accept", ACCEPT)
            .send()
            .await;
        r.expect(StatusCode::OK);
        assert_eq!(manifest_digest(&r), d, "{path}{query}");
    }
    // containerd's ?ns= picks the mirror of that prefix.
    let r = mc
        .get("/v2/team/tool/manifests/1.0?ns=up.test")
        .header("Accept", ACCEPT)
        .send()
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(manifest_digest(&r), other);
    // Prefix routing to the second upstream.
    let r = get_manifest(&mc, "up.test/team/tool", "1.0").await;
    assert_eq!(manifest_digest(&r), other);
    // A pull with skopeo through the default mirror's prefix.
    copy_all(
        dir,
        &format!("docker://{}/docker.io/library/busybox:latest", m.host()),
        &format!("oci:{}:latest", dir.join("out").display()),
        None,
    );
    assert_eq!(Layout::open(&dir.join("out")).manifest_digest("latest"), d);
    // Blobs by the unprefixed name.
    let cfg = layout.config_digest("latest");
    assert_eq!(pull_blob(&mc, "busybox", &cfg).await.unwrap().1, cfg);

    // The catalog lists what was cached.
    let catalog = mc.catalog().await;
    for name in ["docker.io/library/busybox", "up.test/team/tool"] {
        assert!(catalog.contains(&name.to_string()), "{catalog:?}");
    }
    // With the mirrors' upstreams, for the web UI to mark their repositories.
    let v = mc.get("/v2/_catalog").send().await.json();
    assert_eq!(v["mirrors"]["docker.io"], reference.1.as_str());
    assert_eq!(v["mirrors"]["up.test"], upstream.url.as_str());
    // A repository of this registry, under no prefix, is pushed and pulled as today, even
    // with a default mirror.
    let (_, mine) = mc
        .push_image("mine/app", "v1", b"local layer", serde_json::json!({}))
        .await;
    let r = get_manifest(&mc, "mine/app", "v1").await;
    assert_eq!(manifest_digest(&r), mine);
    // Unknown upstream repositories are 404.
    get_manifest(&mc, "docker.io/library/nothing", "latest")
        .await
        .expect_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
}

/// Debian's docker-registry with htpasswd on a free port: (the process, its URL).
fn reference_registry(dir: &Path) -> (ChildGuard, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("registry.yml");
    std::fs::write(
        &conf,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nauth:\n  htpasswd:\n    realm: test\n    path: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry-data").display(),
            dir.join("htpasswd").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("/usr/bin/docker-registry (Debian's docker-registry package)");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "docker-registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (ChildGuard(child), format!("http://127.0.0.1:{port}"))
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_blobs_stream_flat_and_concurrent_misses_share_one_fetch() {
    let upstream = Server::native();
    let proxy = UpstreamProxy::start(&upstream.url, None).await;
    proxy.set_redirect(false);
    let m = mirror(&["--mirror".into(), format!("up.test={}", proxy.url)]);
    let (uc, mc) = (Client::of(&upstream), Client::of(&m));
    let mib = MIB as u64;

    // 1 GiB through the mirror: the mirror's peak RSS stays under 64 MiB.
    let (seed, len) = (content::fresh_seed(), 1024 * mib);
    let d = content::digest(seed, len);
    uc.post(&format!("/v2/big/blobs/uploads/?digest={d}"))
        .header("Content-Length", len)
        .stream(content::stream(seed, 0, len))
        .send()
        .await
        .expect(StatusCode::CREATED);
    let started = Instant::now();
    let got = pull_blob(&mc, "up.test/big", &d).await.unwrap();
    assert_eq!(got, (len, d.clone()));
    let rss = m.peak_rss_kib()[0].1;
    println!(
        "1 GiB pulled through the mirror in {:.1} s; the mirror's peak RSS {} MiB",
        started.elapsed().as_secs_f64(),
        rss / 1024
    );
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    // Cached: the second pull makes no upstream GET.
    proxy.reset();
    assert_eq!(pull_blob(&mc, "up.test/big", &d).await.unwrap().1, d);
    assert_eq!(proxy.blob_gets(), 0);

    // 8 clients pull the same missing 100 MiB blob at once: one upstream fetch.
    let (seed, len) = (content::fresh_seed(), 100 * mib);
    let d = content::digest(seed, len);
    uc.post(&format!("/v2/shared/blobs/uploads/?digest={d}"))
        .header("Content-Length", len)
        .stream(content::stream(seed, 0, len))
        .send()
        .await
        .expect(StatusCode::CREATED);
    proxy.reset();
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let (mc, d) = (mc.clone(), d.clone());
            tokio::spawn(async move { pull_blob(&mc, "up.test/shared", &d).await })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.await.unwrap().unwrap(), (len, d.clone()));
    }
    assert_eq!(proxy.blob_gets(), 1, "{:?}", proxy.seen());
    // The spool files go once their readers are done.
    let spool = m.root().unwrap().join("mirror-spool");
    let started = Instant::now();
    while std::fs::read_dir(&spool).unwrap().count() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "spool files left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn bad_mirror_settings_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    std::fs::write(&creds, "up.test onlyuser\n").unwrap();
    let creds = creds.to_str().unwrap();
    for (args, want) in [
        (vec!["--mirror", "up.test"], "PREFIX=URL"),
        (vec!["--mirror", "up.test=ftp://x"], "http:// or https://"),
        (vec!["--mirror", "Up=https://x"], "not a repository name"),
        (
            vec!["--mirror", "up.test=https://u:secret@x"],
            "credentials",
        ),
        (
            vec!["--mirror", "up.test=https://x", "--mirror-tag-ttl", "soon"],
            "--mirror-tag-ttl",
        ),
        (
            vec!["--mirror", "up.test=https://x", "--default-mirror", "other"],
            "--default-mirror",
        ),
        (
            vec![
                "--mirror",
                "up.test=https://x",
                "--mirror-credentials",
                creds,
            ],
            "line 1",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(tmp.path().join("root"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("secret"), "{args:?}: {err}");
    }
}

/// Where [`pulls_through_either_adapter`] runs: a native mirror in front of a native token
/// upstream it starts, or (from `scripts/test-worker-mirror`) the Worker under `wrangler dev`
/// as the mirror (`EDGE_REGISTRY_MIRROR_URL`, its mirror `up.test` set to
/// `EDGE_REGISTRY_MIRROR_UPSTREAM` with the fixture user's credentials and a 4 s tag TTL), the
/// upstream's process being `EDGE_REGISTRY_MIRROR_UPSTREAM_PID`.
struct Setup {
    mirror: Server,
    upstream: Server,
    upstream_pid: Option<String>,
    _dir: tempfile::TempDir,
}

fn setup_either() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    if let (Ok(m), Ok(u)) = (
        std::env::var("EDGE_REGISTRY_MIRROR_URL"),
        std::env::var("EDGE_REGISTRY_MIRROR_UPSTREAM"),
    ) {
        return Setup {
            mirror: Server::external(&m),
            upstream: Server::external(&u),
            upstream_pid: std::env::var("EDGE_REGISTRY_MIRROR_UPSTREAM_PID").ok(),
            _dir: dir,
        };
    }
    let upstream = token_upstream(dir.path());
    std::fs::write(
        dir.path().join("mirror-credentials"),
        format!("up.test {} {}\n", ALICE.0, ALICE.1),
    )
    .unwrap();
    let mirror = mirror(&[
        "--mirror".into(),
        format!("up.test={}", upstream.url),
        "--mirror-credentials".into(),
        dir.path()
            .join("mirror-credentials")
            .to_str()
            .unwrap()
            .into(),
        "--mirror-tag-ttl".into(),
        format!("{TTL}s"),
    ]);
    Setup {
        mirror,
        upstream,
        upstream_pid: None,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulls_through_either_adapter() {
    let mut s = setup_either();
    let (uc, mc) = (Client::of(&s.upstream).basic(ALICE), Client::of(&s.mirror));
    let name = common::repo("either");
    let big = content::fresh(20 * MIB);
    let bd = uc.push_blob(&name, big.clone()).await;
    let (manifest, d) = uc
        .push_image(&name, "v1", &content::fresh(MIB), serde_json::json!({}))
        .await;
    let local = format!("up.test/{name}");

    // By tag, by digest, the blobs (one of 20 MiB), the tags.
    let r = get_manifest(&mc, &local, "v1").await;
    r.expect(StatusCode::OK);
    assert_eq!(
        (manifest_digest(&r), r.body.clone()),
        (d.clone(), manifest.clone())
    );
    let r = get_manifest(&mc, &local, &d).await;
    assert_eq!(r.body, manifest);
    let v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    for l in v["layers"].as_array().unwrap().iter().chain([&v["config"]]) {
        let ld = l["digest"].as_str().unwrap();
        assert_eq!(pull_blob(&mc, &local, ld).await.unwrap().1, ld);
    }
    assert_eq!(
        pull_blob(&mc, &local, &bd).await.unwrap(),
        (big.len() as u64, bd.clone())
    );
    // A range of a cached blob.
    let r = mc
        .get(&format!("/v2/{local}/blobs/{bd}"))
        .header("Range", "bytes=10-19")
        .send()
        .await;
    r.expect(StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], &big[10..20]);
    assert_eq!(mc.tags(&local).await.unwrap(), vec!["v1".to_string()]);
    mc.post(&format!("/v2/{local}/blobs/uploads/"))
        .send()
        .await
        .expect_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");

    // The upstream stops: after the TTL the cached tag is served stale, the blobs still pull,
    // and what was never cached is 503.
    match &s.upstream_pid {
        Some(pid) => {
            run(Command::new("kill").args(["-TERM", pid]));
        }
        None => s.upstream.stop(),
    }
    tokio::time::sleep(Duration::from_secs(TTL + 1)).await;
    let r = get_manifest(&mc, &local, "v1").await;
    r.expect(StatusCode::OK);
    assert_eq!(manifest_digest(&r), d);
    assert_eq!(pull_blob(&mc, &local, &bd).await.unwrap().1, bd);
    let r = get_manifest(&mc, &local, "v2").await;
    r.expect(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["errors"][0]["detail"]["upstream"], "unreachable");
}
