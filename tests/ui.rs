//! The web UI (`www/`) in a real browser: pushes two images (several tags each, one an OCI
//! index with two platforms, one with signature and SBOM referrers) over HTTP, then runs
//! `node --test tests/ui/`, which drives Debian's `chromium` with `playwright-core` against the
//! server and checks what a person would see. `UI_SCREENSHOTS=1` also saves
//! `docs/screenshots/*.png`.
//!
//! Needs `chromium` (`apt-get install chromium`), `node` and `node_modules` (`npm install`);
//! a missing one fails the test, with what to install.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::content::OCI_MANIFEST;
use common::content::{self, descriptor, sha256, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST};
use common::content::{OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER_GZIP as OCI_LAYER};
use common::{repo, Client, Server};
use http::StatusCode;
use serde_json::{json, Value};
const SBOM_TYPE: &str = "application/spdx+json";
const SIGNATURE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

const CHROMIUM: &str = "/usr/bin/chromium";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file in `www/` is embedded and served with a fitting content type: the UI needs
/// nothing else (the Worker serves the same embedded files).
#[test]
fn every_www_file_is_embedded() {
    let www = crate_dir().join("www");
    let mut files = Vec::new();
    collect(&www, &www, &mut files);
    assert!(files.iter().any(|f| f == "index.html"), "www/index.html");
    for rel in &files {
        let asset = edge_registry::ui::asset(rel).unwrap_or_else(|| {
            panic!("www/{rel} is not registered in src/ui.rs (add it to the match)")
        });
        let on_disk = std::fs::read(www.join(rel)).unwrap();
        assert_eq!(
            asset.bytes,
            &on_disk[..],
            "www/{rel}: embedded bytes differ"
        );
        let ext = rel.rsplit('.').next().unwrap_or("");
        let want = match ext {
            "html" => "text/html",
            "js" | "mjs" => "text/javascript",
            "css" => "text/css",
            "svg" => "image/svg+xml",
            "png" => "image/png",
            "json" => "application/json",
            other => panic!("www/{rel}: no expected content type for .{other}"),
        };
        assert!(
            asset.content_type.starts_with(want),
            "www/{rel}: content type {} (want {want})",
            asset.content_type
        );
    }
    let index = edge_registry::ui::asset("").expect("the index page at /");
    assert_eq!(
        index.bytes,
        &std::fs::read(www.join("index.html")).unwrap()[..]
    );
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            out.push(rel.replace('\\', "/"));
        }
    }
}

// ---- pushing the fixtures ---------------------------------------------------------------------

/// Pushes the fixtures through a client.
struct Push {
    c: Client,
}

impl Push {
    /// Pushes a blob; returns its descriptor.
    async fn blob(&self, name: &str, media_type: &str, data: &[u8]) -> Value {
        self.c.push_blob(name, data.to_vec()).await;
        descriptor(media_type, data)
    }

    /// PUTs a manifest by tag or digest; returns its descriptor.
    async fn manifest(&self, name: &str, reference: Option<&str>, m: &Value) -> Value {
        let body = serde_json::to_vec_pretty(m).unwrap();
        let media_type = m["mediaType"].as_str().unwrap();
        let d = sha256(&body);
        let reference = reference.unwrap_or(&d);
        self.c
            .put_manifest(name, reference, media_type, body.clone())
            .await
            .expect(StatusCode::CREATED);
        descriptor(media_type, &body)
    }

    /// An image: a config with `created` and one descriptor per layer. Returns (manifest
    /// descriptor, config descriptor, layer descriptors).
    #[allow(clippy::too_many_arguments)]
    async fn image(
        &self,
        name: &str,
        tags: &[&str],
        docker: bool,
        arch: &str,
        created: &str,
        layers: &[Vec<u8>],
        version: &str,
    ) -> (Value, Value, Vec<Value>) {
        let (manifest_type, config_type, layer_type) = if docker {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        } else {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        };
        let mut layer_descs = Vec::new();
        for l in layers {
            layer_descs.push(self.blob(name, layer_type, l).await);
        }
        let (os, architecture, variant) = match arch.split('/').collect::<Vec<_>>()[..] {
            [a, v] => ("linux", a, Some(v)),
            _ => ("linux", arch, None),
        };
        let mut config = json!({
            "created": created,
            "author": "edge-registry UI test",
            "architecture": architecture,
            "os": os,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", format!("APP_VERSION={version}")],
                "Entrypoint": ["/app/server"],
                "Cmd": ["--listen", ":8080"],
                "WorkingDir": "/app",
                "ExposedPorts": { "8080/tcp": {} },
                "Labels": {
                    "org.opencontainers.image.version": version,
                    "org.opencontainers.image.source": "https://example.com/demo/app",
                },
            },
            "rootfs": { "type": "layers", "diff_ids": layer_descs.iter().map(|d| d["digest"].clone()).collect::<Vec<_>>() },
            "history": [
                { "created": "2024-01-05T10:00:00Z", "created_by": "ADD rootfs.tar.gz / # buildkit", "comment": "buildkit.dockerfile.v0" },
                { "created": created, "created_by": "ENV APP_VERSION=".to_string() + version, "empty_layer": true },
                { "created": created, "created_by": "COPY server /app/server # buildkit", "comment": "buildkit.dockerfile.v0" },
            ],
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_desc = self.blob(name, config_type, &config_bytes).await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_desc,
            "layers": layer_descs,
        });
        let mut desc = Value::Null;
        if tags.is_empty() {
            desc = self.manifest(name, None, &m).await;
        }
        for t in tags {
            desc = self.manifest(name, Some(t), &m).await;
        }
        (desc, config_desc, layer_descs)
    }

    /// An artifact (empty config, one blob) whose `subject` is `subject`, pushed by digest.
    async fn referrer(
        &self,
        name: &str,
        subject: &Value,
        artifact_type: &str,
        blob: &[u8],
        created: &str,
    ) -> Value {
        let empty = self.blob(name, OCI_EMPTY, b"{}").await;
        let layer = self.blob(name, artifact_type, blob).await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty,
            "layers": [layer],
            "subject": subject,
            "annotations": {
                "org.opencontainers.image.created": created,
                "dev.edge-registry.test": "ui",
            },
        });
        let mut d = self.manifest(name, None, &m).await;
        d["artifactType"] = json!(artifact_type);
        d["totalSize"] = json!(2 + blob.len());
        d
    }
}

fn total(config: &Value, layers: &[Value]) -> u64 {
    config["size"].as_u64().unwrap()
        + layers
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>()
}

/// Pushes both repositories; returns what the browser test expects to see.
async fn push_fixtures(server: &Server) -> Value {
    let p = Push {
        c: Client::of(server),
    };
    // Fixed names on a fresh server (stable screenshots); unique ones on a shared server.
    let (webapp, cli) = if server.is_native() {
        ("demo/webapp".to_string(), "tools/cli".to_string())
    } else {
        (repo("demo/webapp"), repo("tools/cli"))
    };

    // demo/webapp: three OCI images sharing a base layer; `latest` is 1.1.0.
    let base = content::range(1, 0, 2_811_392);
    let versions = [
        ("1.0.0", "2024-02-01T08:15:00Z", 412_331, vec!["1.0.0"]),
        (
            "1.1.0",
            "2024-03-14T09:26:53Z",
            418_907,
            vec!["1.1.0", "latest"],
        ),
        (
            "2.0.0-rc1",
            "2024-05-20T16:40:12Z",
            530_114,
            vec!["2.0.0-rc1"],
        ),
    ];
    let mut webapp_images = Vec::new();
    for (i, (version, created, app_size, tags)) in versions.iter().enumerate() {
        let app = content::range(10 + i as u64, 0, *app_size);
        let (desc, config, layers) = p
            .image(
                &webapp,
                tags,
                false,
                "amd64",
                created,
                &[base.clone(), app],
                version,
            )
            .await;
        webapp_images.push((version, created, desc, config, layers));
    }
    let (_, created, subject, config, layers) = &webapp_images[1];
    let subject_desc =
        json!({ "mediaType": OCI_MANIFEST, "digest": subject["digest"], "size": subject["size"] });
    let sbom = serde_json::to_vec(&json!({
        "spdxVersion": "SPDX-2.3",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "demo/webapp:1.1.0",
        "packages": [{ "name": "server", "versionInfo": "1.1.0", "SPDXID": "SPDXRef-server" }],
    }))
    .unwrap();
    let signature = serde_json::to_vec(&json!({
        "mediaType": SIGNATURE_TYPE,
        "verificationMaterial": { "publicKey": { "hint": "dGVzdA==" } },
        "messageSignature": { "messageDigest": { "algorithm": "SHA2_256", "digest": subject["digest"] }, "signature": "MEUCIQ==" },
    }))
    .unwrap();
    let sbom_ref = p
        .referrer(
            &webapp,
            &subject_desc,
            SBOM_TYPE,
            &sbom,
            "2024-03-14T09:30:00Z",
        )
        .await;
    let sig_ref = p
        .referrer(
            &webapp,
            &subject_desc,
            SIGNATURE_TYPE,
            &signature,
            "2024-03-14T09:31:00Z",
        )
        .await;

    // tools/cli: an OCI index for linux/amd64 and linux/arm64/v8 (3.2.1, 3.2, latest), and an
    // older single-platform Docker schema 2 image (2.9.0).
    let mut children = Vec::new();
    for (i, arch) in ["amd64", "arm64/v8"].iter().enumerate() {
        let layer = content::range(20 + i as u64, 0, 1_234_567 - i * 54_563);
        let (desc, config, layers) = p
            .image(
                &cli,
                &[],
                false,
                arch,
                "2024-04-02T12:00:00Z",
                &[layer],
                "3.2.1",
            )
            .await;
        let (a, v) = arch
            .split_once('/')
            .map_or((*arch, None), |(a, v)| (a, Some(v)));
        let mut platform = json!({ "os": "linux", "architecture": a });
        if let Some(v) = v {
            platform["variant"] = json!(v);
        }
        children.push((
            desc,
            platform,
            total(&config, &layers),
            format!("linux/{arch}"),
        ));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(d, platform, _, _)| json!({
            "mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"], "platform": platform,
        })).collect::<Vec<_>>(),
        "annotations": { "org.opencontainers.image.created": "2024-04-02T12:00:00Z" },
    });
    let mut index_desc = Value::Null;
    for tag in ["3.2.1", "3.2", "latest"] {
        index_desc = p.manifest(&cli, Some(tag), &index).await;
    }
    let legacy_layer = content::range(30, 0, 987_654);
    let (legacy, legacy_config, legacy_layers) = p
        .image(
            &cli,
            &["2.9.0"],
            true,
            "amd64",
            "2023-11-30T18:05:00Z",
            &[legacy_layer],
            "2.9.0",
        )
        .await;

    // Every blob the webapp repository holds, once: what its size must add up to.
    let mut stored: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut keep = |d: &Value| {
        stored.insert(
            d["digest"].as_str().unwrap().to_string(),
            d["size"].as_u64().unwrap(),
        );
    };
    for (_, _, desc, config, layers) in &webapp_images {
        keep(desc);
        keep(config);
        layers.iter().for_each(&mut keep);
    }
    keep(&sbom_ref);
    keep(&sig_ref);
    keep(&descriptor(OCI_EMPTY, b"{}"));
    keep(&descriptor(SBOM_TYPE, &sbom));
    keep(&descriptor(SIGNATURE_TYPE, &signature));
    let webapp_stored: u64 = stored.values().sum();

    json!({
        "native": server.is_native(),
        "webapp": {
            "name": webapp,
            "tags": ["1.0.0", "1.1.0", "2.0.0-rc1", "latest"],
            "tag": "1.1.0",
            "digest": subject["digest"],
            "mediaType": OCI_MANIFEST,
            "size": total(config, layers),
            "created": created,
            "platform": "linux/amd64",
            "config": config,
            "layers": layers,
            "referrers": [sbom_ref, sig_ref],
            "stored": webapp_stored,
            "others": webapp_images.iter().map(|(v, _, d, c, l)| json!({
                "version": v, "digest": d["digest"], "size": total(c, l),
            })).collect::<Vec<_>>(),
        },
        "cli": {
            "name": cli,
            "tags": ["2.9.0", "3.2", "3.2.1", "latest"],
            "tag": "3.2",
            "digest": index_desc["digest"],
            "mediaType": OCI_INDEX,
            "platforms": children.iter().map(|c| c.3.clone()).collect::<Vec<_>>(),
            "children": children.iter().map(|(d, _, size, platform)| json!({
                "digest": d["digest"], "size": size, "platform": platform,
            })).collect::<Vec<_>>(),
            "docker": {
                "tag": "2.9.0",
                "digest": legacy["digest"],
                "mediaType": DOCKER_MANIFEST,
                "size": total(&legacy_config, &legacy_layers),
            },
        },
    })
}

// ---- the browser test -------------------------------------------------------------------------

fn require_browser_tools() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the UI test drives Debian's chromium (apt-get install -y chromium)"
    );
    assert!(
        crate_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "node_modules/playwright-core is missing: run `npm install` in {}",
        crate_dir().display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node` is not on PATH: the UI test runs `node --test tests/ui/` ({node:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_in_a_real_browser() {
    require_browser_tools();
    let server = Server::start();
    // A second, fresh server for the empty state ("no repositories yet").
    let empty = Server::native();
    let fixture = push_fixtures(&server).await;

    let mut cmd = tokio::process::Command::new("node");
    cmd.args(["--test", "tests/ui/ui.test.mjs"])
        .current_dir(crate_dir())
        .env("REGISTRY_URL", &server.url)
        .env("REGISTRY_EMPTY_URL", &empty.url)
        .env("UI_FIXTURE", fixture.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("node --test tests/ui/ took more than 5 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- node --test tests/ui/: stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "node --test tests/ui/ failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

// ---- the UI in each access mode ---------------------------------------------------------------

/// Pushes one small image as alice (Basic credentials) into `repo`, tag `v1`.
async fn push_as_alice(server: &Server, repo: &str) {
    let p = Push {
        c: Client::of(server).basic(common::ALICE),
    };
    p.image(
        repo,
        &["v1"],
        false,
        "amd64",
        "2024-06-01T08:00:00Z",
        &[b"a layer of the access-mode test".to_vec()],
        "1.0.0",
    )
    .await;
}

/// Runs tests/ui/auth.test.mjs for one mode against `server`, where alice pushed `repo`.
async fn run_auth_ui(mode: &str, server: &Server, repo: &str) {
    require_browser_tools();
    let fixture = json!({
        "mode": mode,
        "repo": repo,
        "user": common::ALICE.0,
        "password": common::ALICE.1,
    });
    let mut cmd = tokio::process::Command::new("node");
    cmd.args(["--test", "tests/ui/auth.test.mjs"])
        .current_dir(crate_dir())
        .env("REGISTRY_URL", &server.url)
        .env("UI_AUTH_FIXTURE", fixture.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("node --test tests/ui/auth.test.mjs took more than 3 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {mode}: stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "the UI in {mode} mode failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_mode_ui_signs_in_and_out() {
    let (server, _accounts) = common::auth_server("authenticated");
    let name = repo("team-a/ui");
    push_as_alice(&server, &name).await;
    run_auth_ui("authenticated", &server, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_pull_mode_ui_browses_anonymously_and_signs_in() {
    let (server, _accounts) = common::auth_server("anonymous-pull");
    let name = repo("team-a/ui");
    push_as_alice(&server, &name).await;
    run_auth_ui("anonymous-pull", &server, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_ui_browses_without_signing_in() {
    // Content first, in open mode, then the same storage read-only (the Worker's read-only
    // run has no content, and the test checks what it can: browsing needs no sign-in).
    let name = repo("team-a/ui");
    let external = std::env::var("EDGE_REGISTRY_AUTH_MODE").is_ok_and(|m| m == "read-only");
    let root = tempfile::tempdir().unwrap();
    let server = if external {
        Server::start()
    } else {
        let mut open = Server::native_at(root.path());
        push_as_alice(&open, &name).await;
        open.stop();
        Server::native_at_with(root.path(), &["--auth", "read-only"])
    };
    let shown = if external { "" } else { name.as_str() };
    run_auth_ui("read-only", &server, shown).await;
}
