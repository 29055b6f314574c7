//! What the `edge-registry copy` tests share: running `copy` (and skopeo) with their state in
//! a temp folder, and test images (a layout with one big generated layer, streamed as a
//! `docker save` tarball too; a small busybox layout with an index).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use super::common::content::{self, sha256, MIB, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use super::common::image::Layout;
use serde_json::json;

pub const BIN: &str = env!("CARGO_BIN_EXE_edge-registry");

/// `edge-registry copy` with its state, auth files and temp files in `home`.
pub fn copy_cmd(home: &Path, args: &[&str]) -> Command {
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

pub fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn copy_ok(home: &Path, args: &[&str]) -> String {
    let o = copy_cmd(home, args).output().unwrap();
    assert!(o.status.success(), "copy {args:?} failed: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy that must fail with one clear line on stderr and no panic; returns the line.
pub fn copy_fails(home: &Path, args: &[&str]) -> String {
    let o = copy_cmd(home, args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(o.status.code(), Some(1), "copy {args:?}: {}", show(&o));
    assert!(!err.contains("panicked"), "{err}");
    // Progress lines may come first; the error is one line, the last.
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("edge-registry copy: "))
        .collect();
    assert_eq!(errors.len(), 1, "not one error line: {err}");
    assert!(err.lines().last() == Some(errors[0]), "{err}");
    errors[0].to_string()
}

/// skopeo with its own configuration, plain HTTP both ways.
pub fn skopeo(tmp: &Path, args: &[&str]) -> Output {
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
pub struct BigImage {
    pub dir: PathBuf,
    pub layer: String,
    pub layer_path: PathBuf,
    pub config: String,
    pub config_bytes: Vec<u8>,
    pub manifest: String,
}

impl BigImage {
    pub fn make(dir: &Path, size: u64, raw: bool) -> BigImage {
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

    pub fn oci(&self) -> String {
        format!("oci:{}:t", self.dir.display())
    }

    /// Streams this image as a `docker save` tarball (manifest.json last, as docker writes
    /// it) into `child`'s stdin.
    pub fn save_into(&self, child: &mut Child) -> std::thread::JoinHandle<()> {
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
pub fn pull_back(tmp: &Path, reference: &str, name: &str) -> (String, String, Vec<String>) {
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

/// The peak RSS (VmHWM) of `child` until it exits, in KiB.
pub fn watch_peak(child: &mut Child) -> (std::process::ExitStatus, u64) {
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

/// A small busybox image (tag `a`) and a two-platform index over it (tag `multi`).
pub fn busybox_layout(dir: &Path) -> Layout {
    let l = Layout::init(dir);
    l.add_busybox("amd", "amd64", "amd64 image");
    l.add_busybox("arm", "arm64", "arm64 image");
    l.add_index("multi", &["amd", "arm"]);
    l
}
