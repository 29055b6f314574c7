//! Access control over real HTTP, in every mode: challenges, Basic credentials, the token
//! endpoint, per-repository grants, read-only, rate-limited failed logins, and credential
//! rotation.
//!
//! Each test starts a native server in its mode, with users made by `edge-registry
//! hash-password`. When `EDGE_REGISTRY_URL` is set and `EDGE_REGISTRY_AUTH_MODE` names the
//! test's mode, the test runs against that server instead (the Worker under `wrangler dev`,
//! started by `scripts/test` with the same users): run one mode's tests with
//! `cargo test --test auth <mode>_`.

mod common;

use std::process::Command;

use common::{repo, sha256, write_accounts, Server, ALICE, BOB};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Setup {
    server: Server,
    dir: tempfile::TempDir,
    c: Client,
}

/// A server in `mode`: the external one if it runs in that mode, else a native one.
fn setup(mode: &str) -> Setup {
    let (server, dir) = common::auth_server(mode);
    Setup {
        server,
        dir,
        c: Client::new(),
    }
}

/// A native server in `mode`, with extra `serve` arguments.
fn native_setup(mode: &str, extra: &[&str]) -> Setup {
    let (server, dir) = common::native_auth_server(mode, extra);
    Setup {
        server,
        dir,
        c: Client::new(),
    }
}

impl Setup {
    fn req(&self, m: Method, path: &str) -> RequestBuilder {
        self.c.request(m, format!("{}{}", self.server.url, path))
    }

    /// Pushes a small image as `who` (Basic credentials, or none); returns each response's
    /// status in order, stopping at the first failure, and the manifest digest.
    async fn push(&self, who: Option<(&str, &str)>, name: &str, tag: &str) -> (StatusCode, String) {
        let auth = |b: RequestBuilder| match who {
            Some((u, p)) => b.basic_auth(u, Some(p)),
            None => b,
        };
        let config = format!(r#"{{"architecture":"amd64","os":"linux","n":"{name}:{tag}"}}"#);
        let cd = sha256(config.as_bytes());
        let r = auth(self.req(
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/?digest={cd}"),
        ))
        .body(config.clone())
        .send()
        .await
        .unwrap();
        if r.status() != StatusCode::CREATED {
            return (r.status(), String::new());
        }
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [],
        });
        let body = serde_json::to_vec(&m).unwrap();
        let r = auth(self.req(Method::PUT, &format!("/v2/{name}/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        (r.status(), sha256(&body))
    }

    async fn token(&self, who: Option<(&str, &str)>, scopes: &[&str]) -> reqwest::Response {
        let q: Vec<(&str, &str)> = std::iter::once(("service", "edge-registry"))
            .chain(scopes.iter().map(|s| ("scope", *s)))
            .collect();
        let mut b = self.req(Method::GET, "/token").query(&q);
        if let Some((u, p)) = who {
            b = b.basic_auth(u, Some(p));
        }
        b.send().await.unwrap()
    }

    async fn token_string(&self, who: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let r = self.token(who, scopes).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["token"], v["access_token"]);
        assert!(v["expires_in"].as_u64().unwrap() > 0);
        v["token"].as_str().unwrap().to_string()
    }
}

async fn code_of(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let v: Value = r.json().await.expect("a JSON error body");
    (
        status,
        v["errors"][0]["code"].as_str().unwrap_or("").to_string(),
    )
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn open_mode_needs_no_credentials_and_ignores_bad_ones() {
    let s = setup("open");
    let name = repo("open/app");
    assert_eq!(s.push(None, &name, "v1").await.0, StatusCode::CREATED);
    let r = s.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::GET, &format!("/v2/{name}/manifests/v1"))
        .basic_auth("nobody", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::DELETE, &format!("/v2/{name}/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn anonymous_pull_mode_lets_anyone_pull_and_only_users_push() {
    let s = setup("anonymous-pull");
    let name = repo("anon/app");

    // /v2/ is where clients log in: it challenges without credentials, in this mode too.
    let r = s.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert!(c.starts_with("Bearer realm=\"http"), "{c}");
    assert!(c.contains("/token\",service=\"edge-registry\""), "{c}");
    assert_eq!(code_of(r).await.1, "UNAUTHORIZED");

    // Pushing anonymously: 401 with a challenge naming the scope to ask for.
    let (status, _) = s.push(None, &name, "v1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = s
        .req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert!(challenge(&r).contains(&format!("scope=\"repository:{name}:pull,push\"")));

    // Wrong password: 401 UNAUTHORIZED, and the password is nowhere in the answer.
    let r = s
        .req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
        .basic_auth("alice", Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let text = r.text().await.unwrap();
    assert!(text.contains("UNAUTHORIZED") && !text.contains("not-the-password"));

    // alice pushes with Basic credentials; anyone pulls.
    let (status, digest) = s.push(Some(ALICE), &name, "v1").await;
    assert_eq!(status, StatusCode::CREATED);
    let r = s
        .req(Method::GET, &format!("/v2/{name}/manifests/v1"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    let r = s.req(Method::GET, "/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::GET, &format!("/v2/{name}/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Deleting anonymously is refused.
    let r = s
        .req(Method::DELETE, &format!("/v2/{name}/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(r).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into())
    );

    // An anonymous token carries pull only, whatever it asked for.
    let scope = format!("repository:{name}:pull,push");
    let anon = s.token_string(None, &[&scope]).await;
    let r = s
        .req(Method::GET, &format!("/v2/{name}/manifests/v1"))
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // alice's token pushes.
    let t = s.token_string(Some(ALICE), &[&scope]).await;
    let r = s
        .req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn authenticated_mode_refuses_strangers_but_serves_the_ui() {
    let s = setup("authenticated");
    let name = repo("team-a/app");
    for path in [
        "/v2/".to_string(),
        "/v2/_catalog".to_string(),
        format!("/v2/{name}/tags/list"),
        format!("/v2/{name}/manifests/latest"),
        format!("/v2/{name}/blobs/sha256:{}", "0".repeat(64)),
    ] {
        let r = s.req(Method::GET, &path).send().await.unwrap();
        assert!(challenge(&r).starts_with("Bearer "), "{path}");
        assert_eq!(
            code_of(r).await,
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()),
            "{path}"
        );
    }
    let r = s.req(Method::HEAD, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The UI's files hold no data: they load without credentials, then log in.
    let r = s.req(Method::GET, "/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // No anonymous tokens in this mode.
    let r = s.token(None, &[&format!("repository:{name}:pull")]).await;
    assert_eq!(code_of(r).await.0, StatusCode::UNAUTHORIZED);

    let (status, digest) = s.push(Some(ALICE), &name, "v1").await;
    assert_eq!(status, StatusCode::CREATED);
    let r = s
        .req(Method::GET, "/v2/")
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::GET, &format!("/v2/{name}/manifests/{digest}"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A token with an empty scope logs in (/v2/), as `docker login` does.
    let t = s.token_string(Some(ALICE), &[]).await;
    let r = s
        .req(Method::GET, "/v2/")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The OAuth2 password grant, as containerd's clients try first.
    let r = s
        .req(Method::POST, "/token")
        .form(&[
            ("grant_type", "password"),
            ("username", ALICE.0),
            ("password", ALICE.1),
            ("service", "edge-registry"),
            ("scope", &format!("repository:{name}:pull")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let t = v["access_token"].as_str().unwrap();
    let r = s
        .req(Method::GET, &format!("/v2/{name}/tags/list"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A tampered token is refused.
    let forged = format!("{}x", t);
    let r = s
        .req(Method::GET, &format!("/v2/{name}/tags/list"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert!(challenge(&r).contains("error=\"invalid_token\""));
    assert_eq!(code_of(r).await.1, "UNAUTHORIZED");
    // A token does not reach past its scope: pull on this repository, nothing else.
    let r = s
        .req(Method::DELETE, &format!("/v2/{name}/manifests/{digest}"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert!(challenge(&r).contains("insufficient_scope"));
    assert_eq!(code_of(r).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn authenticated_mode_grants_per_repository_prefix() {
    let s = setup("authenticated");
    let mine = repo("team-b/app");
    let theirs = repo("team-a/app");
    let shared = repo("shared/base");
    assert_eq!(
        s.push(Some(ALICE), &theirs, "v1").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.push(Some(ALICE), &shared, "v1").await.0,
        StatusCode::CREATED
    );

    // bob pushes under team-b/, pulls shared/, and is denied the rest: 403 DENIED.
    assert_eq!(s.push(Some(BOB), &mine, "v1").await.0, StatusCode::CREATED);
    let (status, _) = s.push(Some(BOB), &theirs, "v2").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = s
        .req(Method::POST, &format!("/v2/{shared}/blobs/uploads/"))
        .basic_auth(BOB.0, Some(BOB.1))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (StatusCode::FORBIDDEN, "DENIED".into()));
    let r = s
        .req(Method::GET, &format!("/v2/{shared}/tags/list"))
        .basic_auth(BOB.0, Some(BOB.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::GET, &format!("/v2/{theirs}/tags/list"))
        .basic_auth(BOB.0, Some(BOB.1))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (StatusCode::FORBIDDEN, "DENIED".into()));
    let r = s
        .req(Method::DELETE, &format!("/v2/{mine}/manifests/v1"))
        .basic_auth(BOB.0, Some(BOB.1))
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await.0, StatusCode::FORBIDDEN);

    // The catalog shows bob what he may pull, and alice everything.
    let list = |who: (&'static str, &'static str)| {
        let r = s
            .req(Method::GET, "/v2/_catalog?n=10000")
            .basic_auth(who.0, Some(who.1));
        async move {
            let v: Value = r.send().await.unwrap().json().await.unwrap();
            v["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let bobs = list(BOB).await;
    assert!(bobs.contains(&mine) && bobs.contains(&shared), "{bobs:?}");
    assert!(!bobs.contains(&theirs), "{bobs:?}");
    assert!(bobs
        .iter()
        .all(|r| r.starts_with("team-b/") || r.starts_with("shared/")));
    let alices = list(ALICE).await;
    assert!(alices.contains(&theirs) && alices.contains(&mine));

    // Tokens are cut down to the grants: bob asks for push on team-a and gets nothing there.
    let t = s
        .token_string(
            Some(BOB),
            &[
                &format!("repository:{theirs}:pull,push"),
                &format!("repository:{mine}:pull,push"),
            ],
        )
        .await;
    let r = s
        .req(Method::POST, &format!("/v2/{theirs}/blobs/uploads/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(r).await, (StatusCode::FORBIDDEN, "DENIED".into()));
    let r = s
        .req(Method::POST, &format!("/v2/{mine}/blobs/uploads/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Mounting from a repository bob may not pull does not mount: it opens a session.
    let cd = {
        let r = s
            .req(Method::GET, &format!("/v2/{theirs}/manifests/v1"))
            .basic_auth(ALICE.0, Some(ALICE.1))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        let m: Value = r.json().await.unwrap();
        m["config"]["digest"].as_str().unwrap().to_string()
    };
    let r = s
        .req(
            Method::POST,
            &format!("/v2/{mine}/blobs/uploads/?mount={cd}&from={theirs}"),
        )
        .basic_auth(BOB.0, Some(BOB.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(
            Method::POST,
            &format!("/v2/{mine}/blobs/uploads/?mount={cd}&from={theirs}"),
        )
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn authenticated_mode_tokens_expire() {
    let s = native_setup("authenticated", &["--token-ttl", "1"]);
    let t = s.token_string(Some(ALICE), &[]).await;
    let r = s
        .req(Method::GET, "/v2/")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = s
        .req(Method::GET, "/v2/")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert!(challenge(&r).contains("invalid_token"));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn read_only_mode_serves_pulls_and_denies_every_write() {
    // Content first, in open mode, then the same storage read-only.
    let name = repo("ro/app");
    let (seeded, digest) =
        if std::env::var("EDGE_REGISTRY_AUTH_MODE").is_ok_and(|m| m == "read-only") {
            (None, String::new())
        } else {
            let root = tempfile::tempdir().unwrap();
            let mut open = Server::native_at(root.path());
            let s = Setup {
                server: Server::external(&open.url),
                dir: tempfile::tempdir().unwrap(),
                c: Client::new(),
            };
            let (status, digest) = s.push(None, &name, "v1").await;
            assert_eq!(status, StatusCode::CREATED);
            open.stop();
            (Some(root), digest)
        };
    let s = match &seeded {
        Some(root) => {
            let dir = tempfile::tempdir().unwrap();
            write_accounts(dir.path(), &[ALICE, BOB]);
            let h = dir.path().join("htpasswd");
            let server = Server::native_at_with(
                root.path(),
                &["--auth", "read-only", "--htpasswd", h.to_str().unwrap()],
            );
            Setup {
                server,
                dir,
                c: Client::new(),
            }
        }
        None => setup("read-only"),
    };
    let r = s.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.req(Method::GET, "/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::GET, &format!("/v2/{name}/manifests/v1"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    if seeded.is_some() {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    } else {
        // Pulling is allowed: the answer is about the manifest, not about access.
        assert_eq!(
            code_of(r).await,
            (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
        );
    }
    for who in [None, Some(ALICE)] {
        let (status, _) = s.push(who, &name, "v2").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let mut b = s.req(Method::DELETE, &format!("/v2/{name}/manifests/v1"));
        if let Some((u, p)) = who {
            b = b.basic_auth(u, Some(p));
        }
        let r = b.send().await.unwrap();
        assert_eq!(code_of(r).await, (StatusCode::FORBIDDEN, "DENIED".into()));
    }
    let r = s
        .req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let (status, code) = code_of(r).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    drop(s.dir);
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_client() {
    // Always a server of its own: the limit would lock out other tests sharing one.
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[ALICE, BOB]);
    let h = dir.path().join("htpasswd");
    let server = Server::native_with(&[
        "--auth",
        "authenticated",
        "--htpasswd",
        h.to_str().unwrap(),
        "--max-login-failures",
        "3",
    ]);
    let s = Setup {
        server,
        dir,
        c: Client::new(),
    };
    for _ in 0..3 {
        let r = s
            .req(Method::GET, "/v2/")
            .basic_auth("alice", Some("guess"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits, on the API and at the token endpoint.
    let r = s
        .req(Method::GET, "/v2/")
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(
        code_of(r).await,
        (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS".into())
    );
    let r = s.token(Some(ALICE), &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn credentials_rotate_without_a_restart() {
    // Native: the Worker reads its users from secrets, which change with a new deployment.
    // Polling with the new password fails until the file is re-read: allow those failures.
    let s = native_setup("authenticated", &["--max-login-failures", "1000"]);
    let ok = |who: (&'static str, &'static str)| {
        let b = s.req(Method::GET, "/v2/").basic_auth(who.0, Some(who.1));
        async move { b.send().await.unwrap().status() }
    };
    assert_eq!(ok(ALICE).await, StatusCode::OK);
    // alice gets a new password; the old one stops working once the file is re-read.
    let rotated = ("alice", "alice-rotated-password");
    write_accounts(s.dir.path(), &[rotated, BOB]);
    let mut switched = false;
    for _ in 0..100 {
        if ok(rotated).await == StatusCode::OK {
            switched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(switched, "the new password never worked");
    assert_eq!(ok(ALICE).await, StatusCode::UNAUTHORIZED);
    assert_eq!(ok(BOB).await, StatusCode::OK);
}

#[test]
fn hash_password_writes_bcrypt_htpasswd_lines() {
    let line = common::htpasswd_line("carol", "secret words");
    let (user, hash) = line.split_once(':').unwrap();
    assert_eq!(user, "carol");
    assert!(hash.starts_with("$2y$04$") && hash.len() == 60, "{hash}");
    let out = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
        .args([
            "serve",
            "--auth",
            "authenticated",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "authenticated mode without users must not start"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--htpasswd"));
}
