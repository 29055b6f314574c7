//! `edge-registry copy`: through a body-limit proxy (413 past 100 MB, as Cloudflare answers)
//! where `skopeo copy` of a 300 MiB layer fails and our chunked copy succeeds, from an OCI
//! layout and from a `docker save` tarball on stdin, pulled back by skopeo with the same
//! digests; resume after SIGKILL; registry to registry; peak RSS during a 1 GiB blob; bad
//! input. The destination is `EDGE_REGISTRY_URL` (the Worker under `wrangler dev`) when set,
//! else a native server.

mod common;
#[path = "common/copy.rs"]
mod copy;
#[path = "common/limit_proxy.rs"]
mod limit_proxy;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::content::{self, MIB, OCI_MANIFEST};
use common::image::Layout;
use common::{Client, Server};
use copy::*;
use limit_proxy::{Proxy, LIMIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_layer_through_a_100_mb_body_limit() {
    let server = Server::start();
    let proxy = Proxy::start(&server.url, LIMIT).await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let img = tokio::task::spawn_blocking({
        let d = tmp.path().join("layout");
        move || BigImage::make(&d, 300 * MIB as u64, false)
    })
    .await
    .unwrap();
    let repo = format!("big/{}", content::fresh_seed() % 1_000_000);
    let h = proxy.host();

    // skopeo sends the layer in one request: the proxy refuses it.
    let (tmp_path, oci, dst) = (
        tmp.path().to_path_buf(),
        img.oci(),
        format!("docker://{h}/{repo}/skopeo:1"),
    );
    let o = tokio::task::spawn_blocking(move || {
        skopeo(&tmp_path, &["copy", "--dest-tls-verify=false", &oci, &dst])
    })
    .await
    .unwrap();
    assert!(!o.status.success(), "skopeo copy got through: {}", show(&o));
    assert!(
        proxy
            .counters
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    println!(
        "skopeo copy through the proxy fails: {}",
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );

    // edge-registry copy from the layout goes in chunks.
    proxy.reset();
    let (hm, oci, dst) = (
        home.clone(),
        img.oci(),
        format!("docker://{h}/{repo}/oci:1"),
    );
    let out = tokio::task::spawn_blocking(move || copy_ok(&hm, &["--insecure", &oci, &dst]))
        .await
        .unwrap();
    println!("{out}");
    let largest = proxy
        .counters
        .largest
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(largest <= 64 * MIB as u64, "a request of {largest} bytes");
    let (tp, r) = (
        tmp.path().to_path_buf(),
        format!("docker://{h}/{repo}/oci:1"),
    );
    let (m, c, l) = tokio::task::spawn_blocking(move || pull_back(&tp, &r, "pulled-oci"))
        .await
        .unwrap();
    assert_eq!(
        (m, c, l),
        (
            img.manifest.clone(),
            img.config.clone(),
            vec![img.layer.clone()]
        )
    );

    // From a docker save tarball on stdin.
    let mut child = copy_cmd(
        &home,
        &[
            "--insecure",
            "docker-archive:-",
            &format!("docker://{h}/{repo}/archive:1"),
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let writer = img.save_into(&mut child);
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    writer.join().unwrap();
    assert!(o.status.success(), "copy from docker-archive: {}", show(&o));
    let (tp, r) = (
        tmp.path().to_path_buf(),
        format!("docker://{h}/{repo}/archive:1"),
    );
    let (_, c, l) = tokio::task::spawn_blocking(move || pull_back(&tp, &r, "pulled-archive"))
        .await
        .unwrap();
    assert_eq!((c, l), (img.config.clone(), vec![img.layer.clone()]));

    // Resume: killed in the middle of the layer, run again, it sends what is missing only.
    proxy.reset();
    let dst = format!("docker://{h}/{repo}/resume:1");
    let mut child = copy_cmd(
        &home,
        &[
            "--insecure",
            "--chunk-size",
            "16MiB",
            "--jobs",
            "1",
            &img.oci(),
            &dst,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    while proxy.forwarded() < 160 * MIB as u64 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it was killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the copy made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first = proxy.forwarded();
    proxy.reset();
    let (hm, oci, d2) = (home.clone(), img.oci(), dst.clone());
    let out = tokio::task::spawn_blocking(move || {
        copy_ok(&hm, &["--insecure", "--chunk-size", "16MiB", &oci, &d2])
    })
    .await
    .unwrap();
    let second = proxy.forwarded();
    println!("resume: {first} bytes sent before SIGKILL, {second} after; {out}");
    let total = std::fs::metadata(&img.layer_path).unwrap().len();
    assert!(
        second < first && second < total - 100 * MIB as u64,
        "sent {second} after {first}"
    );
    let (tp, r) = (tmp.path().to_path_buf(), dst);
    let (m, _, l) = tokio::task::spawn_blocking(move || pull_back(&tp, &r, "pulled-resume"))
        .await
        .unwrap();
    assert_eq!((m, l), (img.manifest.clone(), vec![img.layer.clone()]));
}

#[test]
fn peak_rss_during_a_1_gib_blob_stays_under_64_mib() {
    // The client's memory is measured: a native server takes the blob (under `wrangler dev`
    // the large tests measure the Worker's).
    let server = Server::native();
    let tmp = tempfile::tempdir().unwrap();
    let img = BigImage::make(&tmp.path().join("layout"), 1024 * MIB as u64, true);
    let dst = format!(
        "docker://{}/rss/{}:1",
        server.host(),
        content::fresh_seed() % 1_000_000
    );
    let mut child = copy_cmd(tmp.path(), &["--insecure", &img.oci(), &dst])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (st, peak) = watch_peak(&mut child);
    std::fs::remove_file(&img.layer_path).unwrap();
    assert!(st.success(), "copy failed");
    println!(
        "peak RSS of copy during a 1 GiB blob: {} KiB ({:.1} MiB)",
        peak,
        peak as f64 / 1024.0
    );
    assert!(peak > 0 && peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn registry_to_registry_indexes_and_platforms() {
    let src = Server::native();
    let dst = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let l = busybox_layout(&tmp.path().join("layout"));
    let n = content::fresh_seed() % 1_000_000;
    let (s, d) = (src.host(), dst.host());
    copy_ok(
        tmp.path(),
        &[
            "--insecure",
            "--all",
            &format!("oci:{}:multi", l.dir.display()),
            &format!("docker://{s}/src/app{n}:multi"),
        ],
    );
    // The whole index, registry to registry.
    copy_ok(
        tmp.path(),
        &[
            "--insecure",
            "--all",
            &format!("docker://{s}/src/app{n}:multi"),
            &format!("docker://{d}/dst/app{n}:all"),
        ],
    );
    let c = Client::http(&dst.url);
    let got = common::block_on(
        c.get(&format!("/v2/dst/app{n}/manifests/all"))
            .header("Accept", common::content::OCI_INDEX)
            .send(),
    );
    assert_eq!(
        got.header("docker-content-digest"),
        Some(l.manifest_digest("multi").as_str())
    );
    // One platform of it.
    copy_ok(
        tmp.path(),
        &[
            "--insecure",
            "--platform",
            "linux/arm64",
            &format!("docker://{s}/src/app{n}:multi"),
            &format!("docker://{d}/dst/app{n}:arm"),
        ],
    );
    let got = common::block_on(
        c.get(&format!("/v2/dst/app{n}/manifests/arm"))
            .header("Accept", OCI_MANIFEST)
            .send(),
    );
    assert_eq!(
        got.header("docker-content-digest"),
        Some(l.manifest_digest("arm").as_str())
    );
    // Into a layout, by digest.
    let out = tmp.path().join("out");
    copy_ok(
        tmp.path(),
        &[
            "--insecure",
            &format!("docker://{d}/dst/app{n}@{}", l.manifest_digest("arm")),
            &format!("oci:{}:arm", out.display()),
        ],
    );
    assert_eq!(
        Layout::open(&out).manifest_digest("arm"),
        l.manifest_digest("arm")
    );
    // No platform of this machine's in an index of others: a clear error.
    let e = copy_fails(
        tmp.path(),
        &[
            "--insecure",
            "--platform",
            "linux/s390x",
            &format!("docker://{s}/src/app{n}:multi"),
            &format!("docker://{d}/dst/app{n}:none"),
        ],
    );
    assert!(e.contains("no image for linux/s390x"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advertised_chunk_maximum_is_kept() {
    let plain = Server::native();
    let limited = Server::native_with(&["--max-chunk-length", "20000000"]);
    for (s, want) in [(&plain, None), (&limited, Some("20000000"))] {
        let r = Client::http(&s.url)
            .post("/v2/x/blobs/uploads/")
            .send()
            .await;
        assert_eq!(r.header("oci-chunk-max-length"), want);
    }
    let proxy = Proxy::start(&limited.url, 25_000_000).await;
    let tmp = tempfile::tempdir().unwrap();
    let img = BigImage::make(&tmp.path().join("layout"), 50 * MIB as u64, true);
    let (home, oci, dst) = (
        tmp.path().to_path_buf(),
        img.oci(),
        format!("docker://{}/max/app:1", proxy.host()),
    );
    tokio::task::spawn_blocking(move || copy_ok(&home, &["--insecure", &oci, &dst]))
        .await
        .unwrap();
    let largest = proxy
        .counters
        .largest
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest > 0 && largest <= 20_000_000,
        "largest request {largest}"
    );
}
