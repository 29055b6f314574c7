//! podman as the tests drive it: as root, no daemon, vfs storage in a temp folder, and no host
//! configuration (containers.conf, storage.conf, registries.conf, the signature policy and the
//! auth file are temp files).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use super::image::{run_stdout, Layout};

/// podman with its own storage and configuration in a temp folder.
pub struct Podman {
    dir: TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        for sub in ["root", "runroot", "tmp", "imagetmp", "networks", "volumes"] {
            std::fs::create_dir(p.join(sub)).unwrap();
        }
        std::fs::write(
            p.join("containers.conf"),
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        std::fs::write(
            p.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                p.join("root").display(),
                p.join("runroot").display()
            ),
        )
        .unwrap();
        std::fs::write(
            p.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        std::fs::write(
            p.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::write(p.join("auth.json"), r#"{"auths":{}}"#).unwrap();
        Podman { dir }
    }

    /// Replaces registries.conf (by default: no unqualified search, no mirrors).
    pub fn set_registries_conf(&self, conf: &str) {
        std::fs::write(self.path("registries.conf"), conf).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `podman <global options> <subcommand>`.
    pub fn cmd(&self, subcommand: &str) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .arg("--network-config-dir")
            .arg(self.path("networks"))
            .arg("--volumepath")
            .arg(self.path("volumes"))
            .arg(subcommand)
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("TMPDIR", self.path("imagetmp"));
        c
    }

    /// A command that talks to registries or layouts: with our policy, over plain HTTP.
    pub fn transfer(&self, subcommand: &str) -> Command {
        let mut c = self.cmd(subcommand);
        c.arg("--signature-policy")
            .arg(self.path("policy.json"))
            .arg("--tls-verify=false");
        c
    }

    /// `podman image inspect`, parsed.
    pub fn inspect(&self, image: &str) -> Value {
        let out = run_stdout(self.cmd("image").args(["inspect", image]));
        let v: Value = serde_json::from_str(&out).expect("inspect prints JSON");
        v[0].clone()
    }

    /// The ids of all local images.
    pub fn image_ids(&self) -> Vec<String> {
        run_stdout(self.cmd("images").args(["--quiet", "--no-trunc"]))
            .lines()
            .map(|l| l.trim().trim_start_matches("sha256:").to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Loads the image tagged `tag` from `layout` (an OCI layout inside this podman's
    /// folder) into local storage; returns the image id podman printed.
    pub fn load_layout(&self, layout: &Layout, tag: &str) -> String {
        // podman names an image pulled from `oci:PATH` after PATH, which must then be a valid
        // (lower-case) repository name; temp folder names are mixed-case, so use a relative
        // path from the layout's parent.
        let parent = layout.dir.parent().unwrap();
        let name = layout.dir.file_name().unwrap().to_str().unwrap();
        let out = run_stdout(
            self.transfer("pull")
                .arg(format!("oci:{name}:{tag}"))
                .current_dir(parent),
        );
        last_line(&out)
    }
}

pub fn last_line(out: &str) -> String {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output: {out:?}"))
        .trim()
        .to_string()
}
