//! Real-client tests: podman (as root, no daemon, vfs storage in a temp folder) loads an image
//! built offline (an OCI layout made with umoci from busybox), pushes it to the registry,
//! forgets it, and pulls it back. podman reads no host configuration: containers.conf,
//! storage.conf, registries.conf, the signature policy and the auth file are temp files.

mod common;

use std::path::PathBuf;

use common::content::{sha256, OCI_MANIFEST};
use common::image::{get, run, run_fails, run_stdout, Layout, BUSYBOX, MARKER_PATH};
use common::podman::{last_line, Podman};
use common::Server;

/// Builds an image offline into `podman`'s folder and returns the layout.
fn build_image(podman: &Podman, marker: &str) -> Layout {
    let layout = Layout::init(&podman.path("layout"));
    layout.add_busybox("v1", "amd64", marker);
    layout
}

/// Checks that the pulled image's files are the ones built: busybox and the marker.
fn assert_image_files(podman: &Podman, image: &str, marker: &str) {
    let mount = last_line(&run_stdout(podman.cmd("image").args(["mount", image])));
    let mount = PathBuf::from(mount);
    let busybox = std::fs::read(mount.join("bin/busybox")).expect("busybox in the image");
    assert!(
        busybox == std::fs::read(BUSYBOX).unwrap(),
        "/bin/busybox differs"
    );
    assert_eq!(
        std::fs::read_link(mount.join("bin/sh")).unwrap(),
        PathBuf::from("busybox")
    );
    assert_eq!(
        std::fs::read_to_string(mount.join(MARKER_PATH)).unwrap(),
        marker
    );
    run(podman.cmd("image").args(["unmount", image]));
}

#[test]
fn push_rmi_pull_round_trip() {
    let server = Server::start();
    let host = server.host();
    let podman = Podman::new();
    let marker = "podman round trip";
    let layout = build_image(&podman, marker);
    let config = layout.config_digest("v1");
    let repo = common::repo("podman/roundtrip");
    let image = format!("{host}/{repo}:v1");

    let id = podman.load_layout(&layout, "v1");
    assert_eq!(
        format!("sha256:{id}"),
        config,
        "image id is the config digest"
    );
    run(podman.cmd("tag").args([&id, &image]));

    // Push, recording the digest of the manifest podman wrote.
    let digestfile = podman.path("digest");
    run(podman
        .transfer("push")
        .arg("--digestfile")
        .arg(&digestfile)
        .args([&image, &format!("docker://{image}")]));
    let pushed = std::fs::read_to_string(&digestfile).unwrap();
    let pushed = pushed.trim();
    assert!(pushed.starts_with("sha256:"), "digest file: {pushed:?}");

    // The registry serves that manifest under the tag, for the same config and layers.
    let url = format!("/v2/{repo}/manifests/v1");
    let r = get(&server, &url, &[OCI_MANIFEST]);
    assert_eq!(r.status, 200, "GET {url}");
    assert_eq!(r.header("docker-content-digest"), Some(pushed));
    assert_eq!(sha256(&r.body), pushed);
    let manifest = r.json();
    assert_eq!(manifest["config"]["digest"], config.as_str());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    for digest in [config.clone(), layers[0]["digest"].as_str().unwrap().into()] {
        let url = format!("/v2/{repo}/blobs/{digest}");
        let r = get(&server, &url, &[]);
        assert_eq!(r.status, 200, "GET {url}");
        assert_eq!(sha256(&r.body), digest, "GET {url}");
    }

    // Forget the image locally...
    run(podman.cmd("rmi").args(["--all", "--force"]));
    assert!(podman.image_ids().is_empty(), "images left after rmi");
    run_fails(podman.cmd("image").args(["exists", &image]));

    // ...and pull it back from the registry: same image id, same manifest digest.
    let out = run_stdout(podman.transfer("pull").arg(&image));
    assert_eq!(last_line(&out), id);
    assert_eq!(podman.image_ids(), std::slice::from_ref(&id));
    let info = podman.inspect(&image);
    assert_eq!(info["Id"], id.as_str());
    assert_eq!(info["Digest"], pushed);
    let repo_digest = format!("{host}/{repo}@{pushed}");
    assert!(
        info["RepoDigests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == repo_digest.as_str()),
        "RepoDigests {} lacks {repo_digest}",
        info["RepoDigests"]
    );
    assert_eq!(
        info["RootFS"]["Layers"],
        layout.config("v1")["rootfs"]["diff_ids"]
    );
    assert_image_files(&podman, &image, marker);
}

#[test]
fn pull_by_digest_second_tag_and_missing_tag() {
    let server = Server::start();
    let host = server.host();
    let podman = Podman::new();
    let marker = "podman by digest";
    let layout = build_image(&podman, marker);
    let repo = common::repo("podman/digest");
    let image = format!("{host}/{repo}:first");

    let id = podman.load_layout(&layout, "v1");
    run(podman.cmd("tag").args([&id, &image]));
    let digestfile = podman.path("digest");
    run(podman
        .transfer("push")
        .arg("--digestfile")
        .arg(&digestfile)
        .arg(&image));
    let pushed = std::fs::read_to_string(&digestfile)
        .unwrap()
        .trim()
        .to_string();

    // A second tag for the same image: the blobs are already there.
    let second = format!("{host}/{repo}:second");
    run(podman.cmd("tag").args([&id, &second]));
    run(podman.transfer("push").arg(&second));
    let out = run_stdout(
        podman
            .cmd("search")
            .args(["--tls-verify=false", "--list-tags"])
            .arg(format!("{host}/{repo}")),
    );
    // A table: "NAME  TAG" and then one "<host>/<repo>  <tag>" line per tag.
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let heading: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(heading, ["NAME", "TAG"], "search output: {out}");
    let name = format!("{host}/{repo}");
    let mut tags: Vec<&str> = lines
        .map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [n, tag] if n == name => tag,
            _ => panic!("unexpected search line {l:?} in {out}"),
        })
        .collect();
    tags.sort();
    assert_eq!(tags, ["first", "second"]);
    let r = get(
        &server,
        &format!("/v2/{repo}/manifests/second"),
        &[OCI_MANIFEST],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(&*pushed));

    run(podman.cmd("rmi").args(["--all", "--force"]));
    assert!(podman.image_ids().is_empty(), "images left after rmi");

    // Pull by digest.
    let pinned = format!("{host}/{repo}@{pushed}");
    let out = run_stdout(podman.transfer("pull").arg(&pinned));
    assert_eq!(last_line(&out), id);
    let info = podman.inspect(&pinned);
    assert_eq!(info["Id"], id.as_str());
    assert_eq!(info["Digest"], pushed.as_str());
    assert_image_files(&podman, &pinned, marker);

    // A tag that was never pushed is reported as unknown.
    let err = run_fails(
        podman
            .transfer("pull")
            .arg(format!("{host}/{repo}:never-pushed")),
    );
    assert!(err.contains("manifest unknown"), "unexpected error: {err}");
}

/// `podman login` to a registry that needs credentials, then push and pull with them; a wrong
/// password fails, and so does a pull after `podman logout`.
#[test]
fn authenticated_login_push_pull_logout() {
    let (server, _accounts) = common::auth_server("authenticated");
    let host = server.host();
    let podman = Podman::new();
    let login = |user: &str, password: &str| {
        let mut c = podman.cmd("login");
        c.args(["--tls-verify=false", "-u", user, "-p", password, &host]);
        c
    };
    let err = run_fails(&mut login(common::ALICE.0, "wrong-password")).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("invalid username/password"),
        "{err}"
    );
    run(&mut login(common::ALICE.0, common::ALICE.1));

    let marker = "podman login";
    let layout = build_image(&podman, marker);
    let id = podman.load_layout(&layout, "v1");
    let image = format!("{host}/{}:v1", common::repo("team-a/login"));
    run(podman.cmd("tag").args([&id, &image]));
    run(podman
        .transfer("push")
        .args([&image, &format!("docker://{image}")]));
    run(podman.cmd("rmi").args(["--all", "--force"]));
    let out = run_stdout(podman.transfer("pull").arg(&image));
    assert_eq!(last_line(&out), id);
    assert_image_files(&podman, &image, marker);

    run(podman.cmd("logout").arg(&host));
    run(podman.cmd("rmi").args(["--all", "--force"]));
    let err = run_fails(podman.transfer("pull").arg(&image)).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );
}
