//! `edge-registry copy`: through a body-limit proxy (413 past 100 MB, as Cloudflare answers)
//! where `skopeo copy` of a 300 MiB layer fails and our chunked copy succeeds, from an OCI
//! layout and from a `docker save` tarball on stdin, pulled back by skopeo with the same
//! digests; resume after SIGKILL; registry to registry; peak RSS during a 1 GiB blob; bad
//! input. The destination is `EDGE_REGISTRY_URL` (the Worker under `wrangler dev`) when set,
//! else a native server.

mod common;
#[path = "common/limit_proxy.rs"]
mod limit_proxy;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::content::{self, sha256, MIB, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use common::image::Layout;
use common::{Client, Options, Server};
use limit_proxy::{Proxy, LIMIT};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_edge-registry");

/// `edge-registry copy` with its state, auth files and temp files in `home`.
fn copy_cmd(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("copy")
        .args(args)
        .env("HOME", home)
        .env("EDGE_REGISTRY_STATE_DIR", home.join("state"))
        .env("TMPDIR", home)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .env_remove("EDGE_REGISTRY_CREDS");
    c
}

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn copy_ok(home: &Path, args: &[&str]) -> String {
    let o = copy_cmd(home, args).output().unwrap();
    assert!(o.status.success(), "copy {args:?} failed: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy that must fail with one clear line on stderr and no panic; returns the line.
fn copy_fails(home: &Path, args: &[&str]) -> String {
    let o = copy_cmd(home, args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(o.status.code(), Some(1), "copy {args:?}: {}", show(&o));
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("edge-registry copy: "), "{err}");
    err
}

/// skopeo with its own configuration, plain HTTP both ways.
fn skopeo(tmp: &Path, args: &[&str]) -> Output {
    let conf = tmp.join("skopeo");
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
    Command::new("skopeo")
        .arg("--policy")
        .arg(conf.join("policy.json"))
        .arg("--tmpdir")
        .arg(conf.join("tmp"))
        .args(["--command-timeout", "300s"])
        .args(args)
        .env("CONTAINERS_REGISTRIES_CONF", conf.join("registries.conf"))
        .env("REGISTRY_AUTH_FILE", conf.join("auth.json"))
        .env("TMPDIR", conf.join("tmp"))
        .output()
        .expect("skopeo (is it installed?)")
}

/// Deterministic content as a reader, made a piece at a time.
struct Gen {
    seed: u64,
    at: u64,
    len: u64,
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len - self.at).min(MIB as u64) as usize;
        buf[..n].copy_from_slice(&content::range(self.seed, self.at, n));
        self.at += n as u64;
        Ok(n)
    }
}

fn file_digest(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap();
    let mut h = edge_registry::digest::Hasher::new(edge_registry::digest::Algorithm::Sha256);
    let mut buf = vec![0u8; MIB];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finish().to_string()
}

/// An OCI layout (tag `t`) of one image whose layer is a tar holding `size` bytes of content,
/// or, with `raw`, just those bytes.
struct BigImage {
    dir: PathBuf,
    layer: String,
    layer_path: PathBuf,
    config: String,
    config_bytes: Vec<u8>,
    manifest: String,
}

impl BigImage {
    fn make(dir: &Path, size: u64, raw: bool) -> BigImage {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let tmp = blobs.join("layer.partial");
        let seed = content::fresh_seed();
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
            if raw {
                std::io::copy(
                    &mut Gen {
                        seed,
                        at: 0,
                        len: size,
                    },
                    &mut f,
                )
                .unwrap();
            } else {
                let mut b = tar::Builder::new(&mut f);
                let mut h = tar::Header::new_gnu();
                h.set_size(size);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(
                    &mut h,
                    "big.bin",
                    Gen {
                        seed,
                        at: 0,
                        len: size,
                    },
                )
                .unwrap();
                b.finish().unwrap();
            }
            f.flush().unwrap();
        }
        let layer = file_digest(&tmp);
        let layer_path = blobs.join(layer.trim_start_matches("sha256:"));
        std::fs::rename(&tmp, &layer_path).unwrap();
        let layer_size = std::fs::metadata(&layer_path).unwrap().len();
        let config_bytes = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/big.bin"]}, "rootfs": {"type": "layers", "diff_ids": [layer]}}))
        .unwrap();
        let config = sha256(&config_bytes);
        std::fs::write(
            blobs.join(config.trim_start_matches("sha256:")),
            &config_bytes,
        )
        .unwrap();
        let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_bytes.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": layer_size}]}))
        .unwrap();
        let manifest = sha256(&m);
        std::fs::write(blobs.join(manifest.trim_start_matches("sha256:")), &m).unwrap();
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": manifest, "size": m.len(),
             "annotations": {"org.opencontainers.image.ref.name": "t"}}]}))
            .unwrap(),
        )
        .unwrap();
        BigImage {
            dir: dir.to_path_buf(),
            layer,
            layer_path,
            config,
            config_bytes,
            manifest,
        }
    }

    fn oci(&self) -> String {
        format!("oci:{}:t", self.dir.display())
    }

    /// Streams this image as a `docker save` tarball (manifest.json last, as docker writes
    /// it) into `child`'s stdin.
    fn save_into(&self, child: &mut Child) -> std::thread::JoinHandle<()> {
        let stdin = child.stdin.take().unwrap();
        let (layer_path, config_bytes) = (self.layer_path.clone(), self.config_bytes.clone());
        let (lhex, chex) = (
            self.layer.trim_start_matches("sha256:").to_string(),
            self.config.trim_start_matches("sha256:").to_string(),
        );
        std::thread::spawn(move || {
            let mut b = tar::Builder::new(stdin);
            let mut f = std::fs::File::open(&layer_path).unwrap();
            b.append_file(format!("{lhex}/layer.tar"), &mut f).unwrap();
            let mut add = |name: &str, data: &[u8]| {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, name, data).unwrap();
            };
            add(&format!("{chex}.json"), &config_bytes);
            let manifest = serde_json::to_vec(&json!([{"Config": format!("{chex}.json"),
                "RepoTags": ["big:1"], "Layers": [format!("{lhex}/layer.tar")]}]))
            .unwrap();
            add("manifest.json", &manifest);
            b.into_inner().unwrap().flush().unwrap();
        })
    }
}

/// skopeo pulls `reference` into a layout; its manifest, config and layer digests.
fn pull_back(tmp: &Path, reference: &str, name: &str) -> (String, String, Vec<String>) {
    let dir = tmp.join(name);
    let o = skopeo(
        tmp,
        &[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            reference,
            &format!("oci:{}:x", dir.display()),
        ],
    );
    assert!(o.status.success(), "skopeo pull: {}", show(&o));
    let l = Layout::open(&dir);
    (
        l.manifest_digest("x"),
        l.config_digest("x"),
        l.layer_digests("x"),
    )
}

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

/// The peak RSS (VmHWM) of `child` until it exits, in KiB.
fn watch_peak(child: &mut Child) -> (std::process::ExitStatus, u64) {
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(kib) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st, peak);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn peak_rss_during_a_1_gib_blob_stays_under_64_mib() {
    let server = Server::start();
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

/// A small busybox image (tag `a`) and a two-platform index over it (tag `multi`).
fn busybox_layout(dir: &Path) -> Layout {
    let l = Layout::init(dir);
    l.add_busybox("amd", "amd64", "amd64 image");
    l.add_busybox("arm", "arm64", "arm64 image");
    l.add_index("multi", &["amd", "arm"]);
    l
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

#[test]
fn bad_input_gets_one_clear_line() {
    let server = Server::native();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let h = server.host();
    let l = busybox_layout(&t.join("layout"));

    // A corrupt tarball.
    std::fs::write(t.join("garbage.tar"), content::fresh(10_000)).unwrap();
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("docker-archive:{}", t.join("garbage.tar").display()),
            &format!("docker://{h}/bad/a:1"),
        ],
    );
    assert!(e.contains("docker-archive"), "{e}");
    // A truncated one (a valid start, cut short).
    let e = copy_fails(
        t,
        &[
            "--insecure",
            "docker-archive:/nonexistent.tar",
            &format!("docker://{h}/bad/a:1"),
        ],
    );
    assert!(e.contains("/nonexistent.tar"), "{e}");

    // A layout whose layer does not match its digest: refused, nothing tagged.
    let layer = l.layer_digests("amd")[0].clone();
    let p = l.blob_path(&layer);
    let mut data = std::fs::read(&p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("oci:{}:amd", l.dir.display()),
            &format!("docker://{h}/bad/layout:1"),
        ],
    );
    assert!(e.contains("corrupt"), "{e}");
    let got = common::block_on(
        Client::http(&server.url)
            .get("/v2/bad/layout/manifests/1")
            .send(),
    );
    assert_eq!(got.status, http::StatusCode::NOT_FOUND);
    let e = copy_fails(
        t,
        &[
            &format!("oci:{}:amd", l.dir.display()),
            &format!("oci:{}:x", t.join("copy").display()),
        ],
    );
    assert!(e.contains("corrupt"), "{e}");

    // A wrong password.
    let accounts = tempfile::tempdir().unwrap();
    let auth = Server::native_with_options(&Options::mode("authenticated"), accounts.path());
    let e = copy_fails(
        t,
        &[
            "--insecure",
            "--creds",
            "alice:wrong",
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{}/team/a:1", auth.host()),
        ],
    );
    assert!(
        e.contains("authentication failed") && !e.contains("wrong:"),
        "{e}"
    );
    let ok = copy_ok(
        t,
        &[
            "--insecure",
            "--creds",
            &format!("{}:{}", common::ALICE.0, common::ALICE.1),
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{}/team/a:1", auth.host()),
        ],
    );
    assert!(ok.contains("copied"), "{ok}");
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{}/team/a:1", auth.host()),
        ],
    );
    assert!(e.contains("needs credentials"), "{e}");

    // An unreachable host.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{closed}/x/a:1"),
        ],
    );
    assert!(e.contains(&closed.to_string()), "{e}");

    // A server that answers garbage (a bounded number of connections).
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = garbage.local_addr().unwrap();
    let serving = std::thread::spawn(move || {
        garbage.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < 50 && Instant::now() < until {
            match garbage.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let mut buf = [0u8; 4096];
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"garbage, not HTTP\r\n\r\n\x00\x01\x02");
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{addr}/x/a:1"),
        ],
    );
    assert!(e.contains(&addr.to_string()), "{e}");
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("docker://{addr}/x/a:1"),
            &format!("oci:{}:x", t.join("g").display()),
        ],
    );
    assert!(e.contains(&addr.to_string()), "{e}");
    drop(serving);

    // Bad references and flags.
    for (args, want) in [
        (vec!["nope:x", "oci:/tmp/x:y"], "unknown transport"),
        (
            vec!["oci:/nonexistent-layout:t", "oci:/tmp/x:y"],
            "not an OCI image layout",
        ),
        (
            vec!["docker://h.example/UPPER:1", "oci:/tmp/x:y"],
            "not valid",
        ),
        (vec!["oci:/x:t", "docker-archive:/tmp/a.tar"], "source only"),
    ] {
        let e = copy_fails(t, &args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
}
