//! Test images built offline: OCI image layouts made with `umoci` from the host's static
//! busybox (`/bin/busybox`, Debian's `busybox-static`), plus helpers to run the container
//! tools. A missing tool makes the test fail, never skip.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use super::content::{sha256, OCI_INDEX};
use super::{block_on, Client, Response, Server};

/// The static busybox binary put into every test image.
pub const BUSYBOX: &str = "/bin/busybox";

/// Where a marker file is put in every test image; it holds the marker the image was made with.
pub const MARKER_PATH: &str = "etc/edge-registry-test";

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn describe(out: &Output) -> String {
    format!(
        "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` to its end and returns its output, whatever its exit status. Panics if the
/// program cannot be started (e.g. the tool is not installed).
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?}: {e} (is it installed? the tests need it)",
            cmd.get_program()
        )
    })
}

/// Runs `cmd` and panics, with its output, unless it exits 0.
pub fn run(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", describe(&out));
    out
}

/// Runs `cmd` and returns its standard output as text; panics unless it exits 0.
pub fn run_stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 stdout")
}

/// Runs `cmd`, which must fail; returns its standard error as text.
pub fn run_fails(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/...`).
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// Creates a new, empty layout at `dir`, which must not exist yet.
    pub fn init(dir: &Path) -> Layout {
        run(Command::new("umoci").arg("init").arg("--layout").arg(dir));
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Opens an existing layout (e.g. one written by skopeo).
    pub fn open(dir: &Path) -> Layout {
        assert!(
            dir.join("oci-layout").is_file(),
            "{} is not an OCI image layout",
            dir.display()
        );
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// `<layout>:<tag>`, as umoci wants an image.
    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.dir.display())
    }

    /// Adds an image tagged `tag` for `linux/<arch>`: one layer holding `/bin/busybox`,
    /// `/bin/sh -> busybox` and [`MARKER_PATH`] containing `marker` (so different markers give
    /// different layers and digests), with `Cmd` `/bin/sh -c "cat /etc/edge-registry-test"`.
    /// Returns the manifest digest.
    pub fn add_busybox(&self, tag: &str, arch: &str, marker: &str) -> String {
        let staging = tempfile::tempdir().expect("tempdir");
        let rootfs = staging.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
            .unwrap_or_else(|e| panic!("copy {BUSYBOX} (is busybox-static installed?): {e}"));
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        std::fs::write(rootfs.join(MARKER_PATH), marker).unwrap();

        let image = self.image(tag);
        run(Command::new("umoci").args(["new", "--image", &image]));
        run(Command::new("umoci")
            .args(["insert", "--image", &image])
            .arg(&rootfs)
            .arg("/"));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--os",
            "linux",
            "--architecture",
            arch,
            "--config.cmd",
            "/bin/sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "cat /etc/edge-registry-test",
        ]));
        // Drop the intermediate manifests and configs, so the layout holds only what its tags
        // reference and can be compared blob for blob with a copy.
        run(Command::new("umoci")
            .arg("gc")
            .arg("--layout")
            .arg(&self.dir));
        self.manifest_digest(tag)
    }

    /// Adds an OCI image index tagged `tag` over the images tagged `children`, each with its
    /// platform from its config. Returns the index digest.
    pub fn add_index(&self, tag: &str, children: &[&str]) -> String {
        let manifests: Vec<Value> = children
            .iter()
            .map(|child| {
                let d = self.descriptor(child);
                let config = self.config(child);
                json!({
                    "mediaType": d["mediaType"],
                    "digest": d["digest"],
                    "size": d["size"],
                    "platform": { "architecture": config["architecture"], "os": config["os"] },
                })
            })
            .collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap();
        let digest = sha256(&index);
        std::fs::write(self.blob_path(&digest), &index).unwrap();
        let mut top = self.index();
        top["manifests"].as_array_mut().unwrap().push(json!({
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": index.len(),
            "annotations": { REF_NAME: tag },
        }));
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&top).unwrap(),
        )
        .unwrap();
        digest
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).expect("index.json"))
            .expect("index.json is JSON")
    }

    /// The tags in `index.json`, each with its descriptor.
    pub fn tags(&self) -> BTreeMap<String, Value> {
        self.index()["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter_map(|d| {
                d["annotations"][REF_NAME]
                    .as_str()
                    .map(|t| (t.to_string(), d.clone()))
            })
            .collect()
    }

    /// The descriptor that `index.json` holds for `tag`.
    pub fn descriptor(&self, tag: &str) -> Value {
        self.tags()
            .remove(tag)
            .unwrap_or_else(|| panic!("no tag {tag} in {}", self.dir.display()))
    }

    /// The digest of the manifest (or index) tagged `tag`.
    pub fn manifest_digest(&self, tag: &str) -> String {
        self.descriptor(tag)["digest"]
            .as_str()
            .expect("digest")
            .to_string()
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir.join("blobs/sha256").join(hex)
    }

    /// The bytes of a blob, checked against its digest.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let data = std::fs::read(self.blob_path(digest))
            .unwrap_or_else(|e| panic!("blob {digest} in {}: {e}", self.dir.display()));
        assert_eq!(
            sha256(&data),
            digest,
            "blob content does not match its name"
        );
        data
    }

    /// The bytes of the manifest tagged `tag`.
    pub fn manifest_bytes(&self, tag: &str) -> Vec<u8> {
        self.blob(&self.manifest_digest(tag))
    }

    /// The manifest tagged `tag`, parsed.
    pub fn manifest(&self, tag: &str) -> Value {
        serde_json::from_slice(&self.manifest_bytes(tag)).expect("manifest is JSON")
    }

    /// The config digest of the image manifest tagged `tag`.
    pub fn config_digest(&self, tag: &str) -> String {
        self.manifest(tag)["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_string()
    }

    /// The config of the image manifest tagged `tag`, parsed.
    pub fn config(&self, tag: &str) -> Value {
        serde_json::from_slice(&self.blob(&self.config_digest(tag))).expect("config is JSON")
    }

    /// The layer digests of the image manifest tagged `tag`.
    pub fn layer_digests(&self, tag: &str) -> Vec<String> {
        self.manifest(tag)["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("layer digest").to_string())
            .collect()
    }

    /// Every blob in the layout, by digest, with its bytes.
    pub fn blobs(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.dir.join("blobs/sha256"))
            .expect("blobs/sha256")
            .map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                let digest = format!("sha256:{name}");
                let data = self.blob(&digest);
                (digest, data)
            })
            .collect()
    }
}

/// A GET of `path` from `server` accepting `accept`, for the tests that are not async.
pub fn get(server: &Server, path: &str, accept: &[&str]) -> Response {
    block_on(async {
        let mut r = Client::of(server).get(path);
        if !accept.is_empty() {
            r = r.header("Accept", accept.join(", "));
        }
        r.send().await
    })
}
