//! Access control in every mode: challenges, Basic credentials, the token endpoint,
//! per-repository grants, read-only, rate-limited failed logins, and credential rotation.
//!
//! Each test runs in process (`name::in_process`, a registry in its mode with the fixture
//! users) and over HTTP (`name::http`, a native server in its mode, with users made by
//! `edge-registry hash-password`). When `EDGE_REGISTRY_URL` is set and
//! `EDGE_REGISTRY_AUTH_MODE` names the test's mode, the HTTP test runs against that server
//! instead (the Worker under `wrangler dev`, started by `scripts/test` with the same users):
//! run one mode's tests with `cargo test --test auth <mode>_`.

mod common;

use std::process::Command;

use common::content::{descriptor, image_manifest, sha256, to_bytes, OCI_CONFIG, OCI_MANIFEST};
use common::{external_auth_mode, repo, Client, Options, Response, Target, Transport, ALICE, BOB};
use http::StatusCode;

/// The client of `who` (Basic credentials), or an anonymous one.
fn as_who(s: &Target, who: Option<(&str, &str)>) -> Client {
    match who {
        Some(user) => s.user(user),
        None => s.client(),
    }
}

/// Pushes a small image with `c`'s credentials; returns the status of the config push if it
/// failed, else of the manifest PUT, and the manifest digest.
async fn push(c: &Client, name: &str, tag: &str) -> (StatusCode, String) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","n":"{name}:{tag}"}}"#);
    let cd = sha256(config.as_bytes());
    let r = c
        .post(&format!("/v2/{name}/blobs/uploads/?digest={cd}"))
        .body(config.clone())
        .send()
        .await;
    if r.status != StatusCode::CREATED {
        return (r.status, String::new());
    }
    let body = to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, config.as_bytes()),
        vec![],
    ));
    let r = c.put_manifest(name, tag, OCI_MANIFEST, body.clone()).await;
    (r.status, sha256(&body))
}

/// `WWW-Authenticate`, or "".
fn challenge(r: &Response) -> &str {
    r.header("www-authenticate").unwrap_or_default()
}

async fn open_mode_needs_no_credentials_and_ignores_bad_ones(t: Transport) {
    let s = Target::auth(t, "open");
    let c = s.client();
    let name = repo("open/app");
    assert_eq!(push(&c, &name, "v1").await.0, StatusCode::CREATED);
    let r = c.get("/v2/").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c
        .get(&format!("/v2/{name}/manifests/v1"))
        .basic_auth("nobody", "wrong")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c.delete(&format!("/v2/{name}/manifests/v1")).send().await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}
both_transports!(open_mode_needs_no_credentials_and_ignores_bad_ones);

async fn anonymous_pull_mode_lets_anyone_pull_and_only_users_push(t: Transport) {
    let s = Target::auth(t, "anonymous-pull");
    let c = s.client();
    let name = repo("anon/app");
    let uploads = format!("/v2/{name}/blobs/uploads/");

    // /v2/ is where clients log in: it challenges without credentials, in this mode too.
    let r = c.get("/v2/").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let ch = challenge(&r);
    assert!(ch.starts_with("Bearer realm=\"http"), "{ch}");
    assert!(ch.contains("/token\",service=\"edge-registry\""), "{ch}");
    assert_eq!(r.status_code().1, "UNAUTHORIZED");

    // Pushing anonymously: 401 with a challenge naming the scope to ask for.
    let (status, _) = push(&c, &name, "v1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = c.post(&uploads).send().await;
    assert!(challenge(&r).contains(&format!("scope=\"repository:{name}:pull,push\"")));

    // Wrong password: 401 UNAUTHORIZED, and the password is nowhere in the answer.
    let r = c
        .post(&uploads)
        .basic_auth("alice", "not-the-password")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let text = r.text();
    assert!(text.contains("UNAUTHORIZED") && !text.contains("not-the-password"));

    // alice pushes with Basic credentials; anyone pulls.
    let (status, digest) = push(&s.user(ALICE), &name, "v1").await;
    assert_eq!(status, StatusCode::CREATED);
    let r = c
        .get(&format!("/v2/{name}/manifests/v1"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(sha256(&r.body), digest);
    let r = c.get("/v2/_catalog").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c.get(&format!("/v2/{name}/tags/list")).send().await;
    assert_eq!(r.status, StatusCode::OK);

    // Deleting anonymously is refused.
    let r = c
        .delete(&format!("/v2/{name}/manifests/{digest}"))
        .send()
        .await;
    r.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // An anonymous token carries pull only, whatever it asked for.
    let scope = format!("repository:{name}:pull,push");
    let anon = c.token_string(&[&scope]).await;
    let r = c
        .get(&format!("/v2/{name}/manifests/v1"))
        .bearer_auth(&anon)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c.post(&uploads).bearer_auth(&anon).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A token that lacks the scope says so, as the token spec asks: credentials would help.
    let ch = challenge(&r);
    assert!(ch.contains("error=\"insufficient_scope\""), "{ch}");
    assert!(
        ch.contains(&format!("scope=\"repository:{name}:pull,push\"")),
        "{ch}"
    );

    // alice's token pushes.
    let token = s.user(ALICE).token_string(&[&scope]).await;
    let r = c.post(&uploads).bearer_auth(&token).send().await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}
both_transports!(anonymous_pull_mode_lets_anyone_pull_and_only_users_push);

async fn authenticated_mode_refuses_strangers_but_serves_the_ui(t: Transport) {
    let s = Target::auth(t, "authenticated");
    let c = s.client();
    let alice = s.user(ALICE);
    let name = repo("team-a/app");
    for path in [
        "/v2/".to_string(),
        "/v2/_catalog".to_string(),
        format!("/v2/{name}/tags/list"),
        format!("/v2/{name}/manifests/latest"),
        format!("/v2/{name}/blobs/sha256:{}", "0".repeat(64)),
    ] {
        let r = c.get(&path).send().await;
        assert!(challenge(&r).starts_with("Bearer "), "{path}");
        assert_eq!(
            r.status_code(),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()),
            "{path}"
        );
    }
    let r = c.head("/v2/").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The UI's files hold no data: they load without credentials, then log in.
    let r = c.get("/").send().await;
    assert_eq!(r.status, StatusCode::OK);
    // No anonymous tokens in this mode.
    let r = c.token(&[&format!("repository:{name}:pull")]).await;
    assert_eq!(r.status_code().0, StatusCode::UNAUTHORIZED);

    let (status, digest) = push(&alice, &name, "v1").await;
    assert_eq!(status, StatusCode::CREATED);
    let r = alice.get("/v2/").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let r = alice
        .get(&format!("/v2/{name}/manifests/{digest}"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // A token with an empty scope logs in (/v2/), as `docker login` does.
    let token = alice.token_string(&[]).await;
    let r = c.get("/v2/").bearer_auth(&token).send().await;
    assert_eq!(r.status, StatusCode::OK);
    // The OAuth2 password grant, as containerd's clients try first.
    let scope = format!("repository:{name}:pull");
    let r = c
        .post("/token")
        .form(&[
            ("grant_type", "password"),
            ("username", ALICE.0),
            ("password", ALICE.1),
            ("service", "edge-registry"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let tags = format!("/v2/{name}/tags/list");
    let r = c.get(&tags).bearer_auth(&token).send().await;
    assert_eq!(r.status, StatusCode::OK);
    // A tampered token is refused.
    let forged = format!("{token}x");
    let r = c.get(&tags).bearer_auth(&forged).send().await;
    assert!(challenge(&r).contains("error=\"invalid_token\""));
    assert_eq!(r.status_code().1, "UNAUTHORIZED");
    // A token does not reach past its scope: pull on this repository, nothing else.
    let r = c
        .delete(&format!("/v2/{name}/manifests/{digest}"))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(challenge(&r).contains("insufficient_scope"));
    assert_eq!(r.status_code().0, StatusCode::UNAUTHORIZED);
}
both_transports!(authenticated_mode_refuses_strangers_but_serves_the_ui);

/// The repositories of the catalog's first page of 10,000, as `c` sees them.
async fn catalog_of(c: &Client) -> Vec<String> {
    let r = c.get("/v2/_catalog?n=10000").send().await;
    r.json()["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

async fn authenticated_mode_grants_per_repository_prefix(t: Transport) {
    let s = Target::auth(t, "authenticated");
    let (alice, bob) = (s.user(ALICE), s.user(BOB));
    let mine = repo("team-b/app");
    let theirs = repo("team-a/app");
    let shared = repo("shared/base");
    assert_eq!(push(&alice, &theirs, "v1").await.0, StatusCode::CREATED);
    assert_eq!(push(&alice, &shared, "v1").await.0, StatusCode::CREATED);

    // bob pushes under team-b/, pulls shared/, and is denied the rest: 403 DENIED.
    assert_eq!(push(&bob, &mine, "v1").await.0, StatusCode::CREATED);
    let (status, _) = push(&bob, &theirs, "v2").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = bob
        .post(&format!("/v2/{shared}/blobs/uploads/"))
        .send()
        .await;
    r.expect_error(StatusCode::FORBIDDEN, "DENIED");
    let r = bob.get(&format!("/v2/{shared}/tags/list")).send().await;
    assert_eq!(r.status, StatusCode::OK);
    let r = bob.get(&format!("/v2/{theirs}/tags/list")).send().await;
    r.expect_error(StatusCode::FORBIDDEN, "DENIED");
    let r = bob.delete(&format!("/v2/{mine}/manifests/v1")).send().await;
    assert_eq!(r.status_code().0, StatusCode::FORBIDDEN);

    // The catalog shows bob what he may pull, and alice everything.
    let bobs = catalog_of(&bob).await;
    assert!(bobs.contains(&mine) && bobs.contains(&shared), "{bobs:?}");
    assert!(!bobs.contains(&theirs), "{bobs:?}");
    assert!(bobs
        .iter()
        .all(|r| r.starts_with("team-b/") || r.starts_with("shared/")));
    let alices = catalog_of(&alice).await;
    assert!(alices.contains(&theirs) && alices.contains(&mine));

    // Tokens are cut down to the grants: bob asks for push on team-a and gets nothing there.
    let token = bob
        .token_string(&[
            &format!("repository:{theirs}:pull,push"),
            &format!("repository:{mine}:pull,push"),
        ])
        .await;
    let c = s.client();
    let r = c
        .post(&format!("/v2/{theirs}/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .await;
    r.expect_error(StatusCode::FORBIDDEN, "DENIED");
    let r = c
        .post(&format!("/v2/{mine}/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // Mounting from a repository bob may not pull does not mount: it opens a session.
    let cd = {
        let r = alice
            .get(&format!("/v2/{theirs}/manifests/v1"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await;
        r.json()["config"]["digest"].as_str().unwrap().to_string()
    };
    let mount = format!("/v2/{mine}/blobs/uploads/?mount={cd}&from={theirs}");
    let r = bob.post(&mount).send().await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = alice.post(&mount).send().await;
    assert_eq!(r.status, StatusCode::CREATED);
}
both_transports!(authenticated_mode_grants_per_repository_prefix);

async fn authenticated_mode_tokens_expire(t: Transport) {
    let s = Target::fresh(t, Options::mode("authenticated").token_ttl(1));
    let c = s.client();
    let token = s.user(ALICE).token_string(&[]).await;
    let r = c.get("/v2/").bearer_auth(&token).send().await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = c.get("/v2/").bearer_auth(&token).send().await;
    assert!(challenge(&r).contains("invalid_token"));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
both_transports!(authenticated_mode_tokens_expire);

async fn read_only_mode_serves_pulls_and_denies_every_write(t: Transport) {
    // Content first, in open mode, then the same storage read-only.
    let name = repo("ro/app");
    let (s, seeded) = if t == Transport::Http && external_auth_mode("read-only") {
        (Target::auth(t, "read-only"), None)
    } else {
        let open = Target::fresh(t, Options::open());
        let (status, digest) = push(&open.client(), &name, "v1").await;
        assert_eq!(status, StatusCode::CREATED);
        let read_only = Options::mode("read-only").without_grants();
        (open.reopen(read_only), Some(digest))
    };
    let c = s.client();
    let r = c.get("/v2/").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c.get("/v2/_catalog").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c
        .get(&format!("/v2/{name}/manifests/v1"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await;
    if let Some(digest) = seeded {
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(sha256(&r.body), digest);
    } else {
        // Pulling is allowed: the answer is about the manifest, not about access.
        r.expect_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    }
    for who in [None, Some(ALICE)] {
        let c = as_who(&s, who);
        let (status, _) = push(&c, &name, "v2").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let r = c.delete(&format!("/v2/{name}/manifests/v1")).send().await;
        r.expect_error(StatusCode::FORBIDDEN, "DENIED");
    }
    let r = c.post(&format!("/v2/{name}/blobs/uploads/")).send().await;
    r.expect_error(StatusCode::FORBIDDEN, "DENIED");
}
both_transports!(read_only_mode_serves_pulls_and_denies_every_write);

async fn failed_logins_are_rate_limited_per_client(t: Transport) {
    // Always a registry of its own: the limit would lock out other tests sharing one.
    let options = Options::mode("authenticated")
        .without_grants()
        .max_login_failures(3);
    let s = Target::fresh(t, options);
    let c = s.client();
    for _ in 0..3 {
        let r = c.get("/v2/").basic_auth("alice", "guess").send().await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password waits, on the API and at the token endpoint.
    let r = s.user(ALICE).get("/v2/").send().await;
    assert!(r.header("retry-after").is_some());
    r.expect_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    let r = s.user(ALICE).token(&[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}
both_transports!(failed_logins_are_rate_limited_per_client);

async fn credentials_rotate_without_a_restart(t: Transport) {
    // Not on the Worker: it reads its users from secrets, which change with a new deployment.
    // Over HTTP, polling with the new password fails until the file is re-read: allow those
    // failures.
    let s = Target::fresh(t, Options::mode("authenticated").max_login_failures(1000));
    let ok = |who: (&'static str, &'static str)| {
        let req = s.user(who).get("/v2/");
        async move { req.send().await.status }
    };
    assert_eq!(ok(ALICE).await, StatusCode::OK);
    // alice gets a new password; the old one stops working once the registry has it.
    let rotated = ("alice", "alice-rotated-password");
    s.set_accounts(&[rotated, BOB]);
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
both_transports!(credentials_rotate_without_a_restart);

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
