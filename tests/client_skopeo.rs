//! Real-client tests: skopeo copies images built offline (OCI layouts made with umoci from
//! busybox) to the registry and back, lists tags and deletes manifests. skopeo reads no host
//! configuration: its policy, registries.conf, registries.d and auth file are temp files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::content::{sha256, OCI_INDEX, OCI_MANIFEST};
use common::image::{get, run, run_fails, run_stdout, Layout};
use common::Server;
use serde_json::Value;
use tempfile::TempDir;

/// skopeo with its own configuration in a temp folder, so nothing depends on /etc/containers.
struct Skopeo {
    conf: TempDir,
}

impl Skopeo {
    fn new() -> Skopeo {
        let conf = tempfile::tempdir().expect("tempdir");
        let p = conf.path();
        std::fs::write(
            p.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::write(
            p.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        std::fs::write(p.join("auth.json"), r#"{"auths":{}}"#).unwrap();
        std::fs::create_dir(p.join("registries.d")).unwrap();
        std::fs::create_dir(p.join("tmp")).unwrap();
        Skopeo { conf }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.conf.path().join(name)
    }

    /// `skopeo <global options> <subcommand>`.
    fn cmd(&self, subcommand: &str) -> Command {
        self.cmd_with(&[], subcommand)
    }

    /// `skopeo <global options> <extra global options> <subcommand>`.
    fn cmd_with(&self, globals: &[&str], subcommand: &str) -> Command {
        let mut c = Command::new("skopeo");
        c.arg("--policy")
            .arg(self.path("policy.json"))
            .arg("--registries.d")
            .arg(self.path("registries.d"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args(["--command-timeout", "120s"])
            .args(globals)
            .arg(subcommand)
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("TMPDIR", self.path("tmp"));
        c
    }

    /// `skopeo copy` between two image references; both may be plain-HTTP registries.
    fn copy(&self, extra: &[&str], src: &str, dest: &str) {
        run(self
            .cmd("copy")
            .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
            .args(extra)
            .args([src, dest]));
    }

    /// `skopeo inspect --raw`: the manifest bytes as served.
    fn raw(&self, reference: &str) -> Vec<u8> {
        run(self
            .cmd("inspect")
            .args(["--tls-verify=false", "--raw", reference]))
        .stdout
    }

    /// `skopeo <globals> inspect`, parsed.
    fn inspect(&self, globals: &[&str], reference: &str) -> Value {
        let out = run_stdout(
            self.cmd_with(globals, "inspect")
                .args(["--tls-verify=false", reference]),
        );
        serde_json::from_str(&out).expect("inspect prints JSON")
    }

    /// `skopeo inspect --raw` that must fail; returns its stderr.
    fn raw_fails(&self, reference: &str) -> String {
        run_fails(
            self.cmd("inspect")
                .args(["--tls-verify=false", "--raw", reference]),
        )
    }

    /// `skopeo list-tags`, parsed: (Repository, Tags).
    fn list_tags(&self, reference: &str) -> (String, Vec<String>) {
        let out = run_stdout(
            self.cmd("list-tags")
                .args(["--tls-verify=false", reference]),
        );
        let v: Value = serde_json::from_str(&out).expect("list-tags prints JSON");
        let tags = v["Tags"]
            .as_array()
            .unwrap_or_else(|| panic!("no Tags array in {out}"))
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        (v["Repository"].as_str().unwrap().to_string(), tags)
    }

    fn delete(&self, reference: &str) {
        run(self.cmd("delete").args(["--tls-verify=false", reference]));
    }
}

fn oci(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

/// Asserts that the registry serves `digest` in `repo` as the manifest bytes `expected`,
/// by tag and by digest, with the right digest header and media type.
fn assert_served_manifest(
    server: &Server,
    repo: &str,
    tag: &str,
    expected: &[u8],
    media_type: &str,
) {
    let digest = sha256(expected);
    for reference in [tag, digest.as_str()] {
        let url = format!("/v2/{repo}/manifests/{reference}");
        let r = get(server, &url, &[OCI_MANIFEST, OCI_INDEX]);
        assert_eq!(r.status, 200, "GET {url}");
        assert_eq!(r.body, expected, "GET {url}: manifest bytes differ");
        assert_eq!(
            r.header("docker-content-digest"),
            Some(&*digest),
            "GET {url}"
        );
        assert_eq!(r.header("content-type"), Some(media_type), "GET {url}");
    }
}

/// Asserts that the registry serves every blob in `digests` from `repo` as in `layout`.
fn assert_served_blobs(server: &Server, repo: &str, layout: &Layout, digests: &[String]) {
    for digest in digests {
        let url = format!("/v2/{repo}/blobs/{digest}");
        let r = get(server, &url, &[]);
        assert_eq!(r.status, 200, "GET {url}");
        assert!(
            r.body == layout.blob(digest),
            "GET {url}: blob bytes differ from the layout's"
        );
    }
}

#[test]
fn copy_oci_layout_to_registry_and_back_keeps_digests() {
    let server = Server::start();
    let host = server.host();
    let skopeo = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = Layout::init(&work.path().join("src"));
    let digest = src.add_busybox("v1", "amd64", "copy round trip");
    let repo = common::repo("skopeo/roundtrip");
    let remote = format!("docker://{host}/{repo}:v1");

    skopeo.copy(&[], &oci(&src.dir, "v1"), &remote);

    // The manifest went up byte for byte: same bytes, same digest, by tag and by digest.
    let raw = skopeo.raw(&remote);
    assert_eq!(sha256(&raw), digest, "manifest digest changed on push");
    assert_eq!(raw, src.manifest_bytes("v1"));
    assert_served_manifest(&server, &repo, "v1", &raw, OCI_MANIFEST);
    let mut blobs = src.layer_digests("v1");
    blobs.push(src.config_digest("v1"));
    assert_served_blobs(&server, &repo, &src, &blobs);

    let info = skopeo.inspect(&[], &remote);
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(
        info["Layers"],
        serde_json::to_value(src.layer_digests("v1")).unwrap()
    );
    assert_eq!(info["RepoTags"], serde_json::json!(["v1"]));

    // Back down, by tag, into a fresh layout: the same manifest and the same blobs.
    let back = work.path().join("back");
    skopeo.copy(&[], &remote, &oci(&back, "pulled"));
    let back = Layout::open(&back);
    assert_eq!(back.manifest_digest("pulled"), digest);
    assert_eq!(back.manifest_bytes("pulled"), src.manifest_bytes("v1"));
    assert_eq!(
        back.blobs(),
        src.blobs(),
        "blobs differ after the round trip"
    );

    // And by digest.
    let by_digest = work.path().join("by-digest");
    skopeo.copy(
        &[],
        &format!("docker://{host}/{repo}@{digest}"),
        &oci(&by_digest, "pinned"),
    );
    let by_digest = Layout::open(&by_digest);
    assert_eq!(by_digest.manifest_digest("pinned"), digest);
    assert_eq!(by_digest.blobs(), src.blobs());
}

#[test]
fn list_tags_shows_every_pushed_tag() {
    let server = Server::start();
    let host = server.host();
    let skopeo = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = Layout::init(&work.path().join("src"));
    let digest = src.add_busybox("v1", "amd64", "list tags");
    let repo = common::repo("skopeo/tags");

    // A repository nobody pushed to has no tags to list.
    let err = run_fails(
        skopeo
            .cmd("list-tags")
            .args(["--tls-verify=false", &format!("docker://{host}/{repo}")]),
    );
    assert!(err.contains("404"), "unexpected error: {err}");

    let tags = ["1.0", "1.0.1", "latest", "stable_2", "Z-last"];
    for tag in tags {
        skopeo.copy(
            &[],
            &oci(&src.dir, "v1"),
            &format!("docker://{host}/{repo}:{tag}"),
        );
    }
    let (name, mut listed) = skopeo.list_tags(&format!("docker://{host}/{repo}"));
    assert_eq!(name, format!("{host}/{repo}"));
    listed.sort();
    let mut expected: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);

    // Every tag names the same manifest.
    for tag in tags {
        let raw = skopeo.raw(&format!("docker://{host}/{repo}:{tag}"));
        assert_eq!(sha256(&raw), digest, "tag {tag}");
    }
}

#[test]
fn delete_removes_the_manifest_and_its_tags_only() {
    let server = Server::start();
    let host = server.host();
    let skopeo = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = Layout::init(&work.path().join("src"));
    let one = src.add_busybox("one", "amd64", "image one");
    let two = src.add_busybox("two", "amd64", "image two");
    assert_ne!(one, two);
    let repo = common::repo("skopeo/delete");
    let at = |tag: &str| format!("docker://{host}/{repo}:{tag}");

    skopeo.copy(&[], &oci(&src.dir, "one"), &at("a"));
    skopeo.copy(&[], &oci(&src.dir, "one"), &at("b"));
    skopeo.copy(&[], &oci(&src.dir, "two"), &at("c"));
    let (_, mut tags) = skopeo.list_tags(&format!("docker://{host}/{repo}"));
    tags.sort();
    assert_eq!(tags, ["a", "b", "c"]);

    // skopeo deletes by digest: it resolves the tag, then DELETEs /manifests/<digest>.
    skopeo.delete(&at("a"));

    for reference in [at("a"), at("b"), format!("docker://{host}/{repo}@{one}")] {
        let err = skopeo.raw_fails(&reference);
        assert!(
            err.contains("manifest unknown"),
            "{reference}: unexpected error: {err}"
        );
    }
    let url = format!("/v2/{repo}/manifests/{one}");
    let r = get(&server, &url, &[OCI_MANIFEST]);
    assert_eq!(r.status, 404, "GET {url} after delete");

    // Its tags went with it; the other image is untouched.
    let (_, tags) = skopeo.list_tags(&format!("docker://{host}/{repo}"));
    assert_eq!(tags, ["c"]);
    assert_eq!(sha256(&skopeo.raw(&at("c"))), two);
    let back = work.path().join("back");
    skopeo.copy(&[], &at("c"), &oci(&back, "c"));
    assert_eq!(Layout::open(&back).manifest_digest("c"), two);

    // Deleting again fails: there is nothing left to delete.
    let err = run_fails(skopeo.cmd("delete").args(["--tls-verify=false", &at("a")]));
    // skopeo resolves the tag first and, on 404, says the image "may not exist".
    assert!(err.contains("may not exist"), "unexpected error: {err}");

    // The deleted image can be pushed again.
    skopeo.copy(&[], &oci(&src.dir, "one"), &at("a"));
    assert_eq!(sha256(&skopeo.raw(&at("a"))), one);
}

#[test]
fn copy_all_keeps_a_multi_arch_index() {
    let server = Server::start();
    let host = server.host();
    let skopeo = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = Layout::init(&work.path().join("src"));
    let amd = src.add_busybox("amd", "amd64", "multi amd64");
    let arm = src.add_busybox("arm", "arm64", "multi arm64");
    let index = src.add_index("multi", &["amd", "arm"]);
    let repo = common::repo("skopeo/multi");
    let remote = format!("docker://{host}/{repo}:multi");

    skopeo.copy(&["--all"], &oci(&src.dir, "multi"), &remote);

    let raw = skopeo.raw(&remote);
    assert_eq!(sha256(&raw), index, "index digest changed on push");
    assert_eq!(raw, src.manifest_bytes("multi"));
    assert_served_manifest(&server, &repo, "multi", &raw, OCI_INDEX);
    for (tag, digest) in [("amd", &amd), ("arm", &arm)] {
        let child = skopeo.raw(&format!("docker://{host}/{repo}@{digest}"));
        assert_eq!(child, src.manifest_bytes(tag), "child {tag}");
        let mut blobs = src.layer_digests(tag);
        blobs.push(src.config_digest(tag));
        assert_served_blobs(&server, &repo, &src, &blobs);
    }

    // Platform selection through the index.
    let info = skopeo.inspect(&["--override-arch", "arm64"], &remote);
    assert_eq!(info["Architecture"], "arm64");
    assert_eq!(
        info["Layers"],
        serde_json::to_value(src.layer_digests("arm")).unwrap()
    );
    let arm_only = work.path().join("arm-only");
    run(skopeo
        .cmd_with(&["--override-arch", "arm64"], "copy")
        .args(["--src-tls-verify=false", &remote, &oci(&arm_only, "arm")]));
    assert_eq!(Layout::open(&arm_only).manifest_digest("arm"), arm);

    // The whole index back down: same index, same blobs.
    let back = work.path().join("back");
    skopeo.copy(&["--all"], &remote, &oci(&back, "multi"));
    let back = Layout::open(&back);
    assert_eq!(back.manifest_digest("multi"), index);
    assert_eq!(
        back.blobs(),
        src.blobs(),
        "blobs differ after the round trip"
    );
}

#[test]
fn copy_between_repositories_and_as_docker_schema2() {
    let server = Server::start();
    let host = server.host();
    let skopeo = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = Layout::init(&work.path().join("src"));
    let digest = src.add_busybox("v1", "amd64", "between repositories");
    let from = common::repo("skopeo/from");
    let to = common::repo("skopeo/to");
    let mut blobs = src.layer_digests("v1");
    blobs.push(src.config_digest("v1"));

    skopeo.copy(
        &[],
        &oci(&src.dir, "v1"),
        &format!("docker://{host}/{from}:v1"),
    );
    // Registry to registry: skopeo may mount the blobs across repositories.
    skopeo.copy(
        &[],
        &format!("docker://{host}/{from}:v1"),
        &format!("docker://{host}/{to}:copied"),
    );
    let raw = skopeo.raw(&format!("docker://{host}/{to}:copied"));
    assert_eq!(sha256(&raw), digest);
    assert_served_manifest(&server, &to, "copied", &raw, OCI_MANIFEST);
    assert_served_blobs(&server, &to, &src, &blobs);

    // Converted to a Docker schema 2 manifest on the way: the registry keeps that media type.
    let docker = format!("docker://{host}/{to}:docker");
    skopeo.copy(&["--format", "v2s2"], &oci(&src.dir, "v1"), &docker);
    let raw = skopeo.raw(&docker);
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let docker_type = "application/vnd.docker.distribution.manifest.v2+json";
    assert_eq!(manifest["mediaType"], docker_type);
    assert_eq!(
        manifest["config"]["digest"],
        src.config_digest("v1").as_str()
    );
    let url = format!("/v2/{to}/manifests/docker");
    let r = get(&server, &url, &[docker_type, OCI_MANIFEST]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, raw);
    assert_eq!(r.header("content-type"), Some(docker_type));
    assert_eq!(r.header("docker-content-digest"), Some(&*sha256(&raw)));

    // And it comes back down unchanged, into a `dir:` copy.
    let dir = work.path().join("dir");
    skopeo.copy(&[], &docker, &format!("dir:{}", dir.display()));
    assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), raw);
}

/// `skopeo login` to a registry that needs credentials (a Bearer challenge and the token
/// endpoint), then copies with the saved credentials; a wrong password, a push outside the
/// user's grants and anything after `skopeo logout` fail.
#[test]
fn authenticated_login_copy_and_logout() {
    let (server, _accounts) = common::auth_server("authenticated");
    let host = server.host();
    let skopeo = Skopeo::new();
    let login = |user: &str, password: &str| {
        let mut c = skopeo.cmd("login");
        c.args(["--tls-verify=false", "-u", user, "-p", password, &host]);
        c
    };
    let err = run_fails(&mut login(common::ALICE.0, "wrong-password")).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("invalid username/password"),
        "{err}"
    );
    run(&mut login(common::ALICE.0, common::ALICE.1));
    let auth: Value =
        serde_json::from_slice(&std::fs::read(skopeo.path("auth.json")).unwrap()).unwrap();
    assert!(auth["auths"][&host].is_object(), "{auth}");

    let work = tempfile::tempdir().unwrap();
    let src = Layout::init(&work.path().join("src"));
    let digest = src.add_busybox("v1", "amd64", "login");
    let repo = common::repo("team-a/login");
    let remote = format!("docker://{host}/{repo}:v1");
    skopeo.copy(&[], &oci(&src.dir, "v1"), &remote);
    assert_eq!(sha256(&skopeo.raw(&remote)), digest);

    // bob may push under team-b/ only.
    run(&mut login(common::BOB.0, common::BOB.1));
    let denied = run_fails(
        skopeo
            .cmd("copy")
            .args(["--dest-tls-verify=false", &oci(&src.dir, "v1")])
            .arg(format!("docker://{host}/{repo}:v2")),
    )
    .to_lowercase();
    assert!(
        denied.contains("denied") || denied.contains("forbidden"),
        "{denied}"
    );
    skopeo.copy(
        &[],
        &oci(&src.dir, "v1"),
        &format!("docker://{host}/{}:v1", common::repo("team-b/login")),
    );

    run(skopeo.cmd("logout").arg(&host));
    let err = run_fails(
        skopeo
            .cmd("inspect")
            .args(["--tls-verify=false", "--raw", &remote]),
    )
    .to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );
}
