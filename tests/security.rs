//! Regression tests for what an outside probe of the access control found (issue #11): each
//! fails without its fix. In process and over HTTP where the code is the core's; over HTTP
//! only where it is the native server's (the blocking pool, trusted proxies).

mod common;

use std::sync::Arc;

use common::{repo, Client, Options, Server, Target, Transport, ALICE, BOB};
use http::StatusCode;

/// A user whose password holds a NUL byte was remembered under the same key as another user
/// name (the part before the NUL glued on) with another password: that name then logged in.
/// Control characters are refused now, and the key cannot collide.
async fn a_nul_byte_in_a_password_logs_nobody_in(t: Transport) {
    let s = Target::fresh(t, Options::mode("authenticated").max_login_failures(1000));
    s.set_accounts(&[("alice", "a\0b"), BOB]);
    let c = s.client();
    // Wait for the accounts (re-read within 2 s over HTTP): bob's line is in the same file.
    let mut ready = false;
    for _ in 0..100 {
        let r = c.get("/v2/").basic_auth("alice", "a\0b").send().await;
        if r.status == StatusCode::UNAUTHORIZED
            && c.get("/v2/").basic_auth(BOB.0, BOB.1).send().await.status == StatusCode::OK
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "a password with a NUL byte must not log in");
    let r = c.get("/v2/").basic_auth("alice\0a", "b").send().await;
    r.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = c
        .post(&format!("/v2/{}/blobs/uploads/", repo("team-a/x")))
        .basic_auth("alice\0a", "b")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

// In process only: over HTTP the fixture users are made by `edge-registry hash-password`,
// which refuses such a password (checked below).
#[tokio::test]
async fn a_nul_byte_in_a_password_logs_nobody_in_in_process() {
    a_nul_byte_in_a_password_logs_nobody_in(Transport::InProcess).await
}

#[test]
fn hash_password_refuses_control_characters() {
    use std::io::Write;
    for (user, password) in [("alice", "a\u{1}b"), ("al\u{7f}ice", "pw"), ("a:b", "pw")] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge-registry"))
            .args(["hash-password", user, "--cost", "4"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{user:?} {password:?}");
        assert!(out.stdout.is_empty());
    }
}

/// Bursts of concurrent wrong passwords got more checks than the limit: the count was
/// checked, bcrypt ran, then the count went up. Attempts reserve their place first now.
async fn concurrent_wrong_passwords_never_pass_the_limit(t: Transport) {
    let s = Target::fresh(t, Options::mode("authenticated").max_login_failures(3));
    let c = s.client();
    let attempts = (0..24).map(|_| {
        let c = c.clone();
        tokio::spawn(async move {
            c.get("/v2/")
                .basic_auth("alice", "guess")
                .send()
                .await
                .status
        })
    });
    let mut checked = 0;
    for a in attempts {
        match a.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(checked, 3, "wrong passwords checked past a limit of 3");
}
both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    concurrent_wrong_passwords_never_pass_the_limit
);

/// A removed user's still-valid token listed every repository (no grants line meant all).
/// A token now holds only while its user exists, and without a grants line a user may do
/// nothing once there are grants.
async fn a_removed_users_token_ends_with_the_user(t: Transport) {
    let s = Target::fresh(t, Options::mode("authenticated"));
    let name = repo("team-b/app");
    let alice = s.user(ALICE);
    let r = alice
        .post(&format!(
            "/v2/{name}/blobs/uploads/?digest={}",
            common::sha256(b"x")
        ))
        .body("x")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let bob = s.user(BOB);
    let token = bob
        .token_string(&[&format!("repository:{name}:pull")])
        .await;
    let with_token = |path: String| s.client().get(&path).bearer_auth(&token).send();
    assert_eq!(
        with_token("/v2/_catalog".into()).await.status,
        StatusCode::OK
    );
    s.set_accounts(&[ALICE]);
    let mut gone = false;
    for _ in 0..100 {
        if bob.get("/v2/").send().await.status == StatusCode::UNAUTHORIZED {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "bob was never removed");
    let r = with_token("/v2/_catalog".into()).await;
    r.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = with_token(format!("/v2/{name}/tags/list")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
both_transports!(a_removed_users_token_ends_with_the_user);

/// A user with a password but no grants line, once there are grants, may do nothing.
async fn no_grants_line_means_nothing_once_there_are_grants(t: Transport) {
    // Polling while the files are re-read fails logins: allow them.
    let s = Target::fresh(t, Options::mode("authenticated").max_login_failures(1000));
    s.set_accounts(&[ALICE, BOB, ("carol", "carol-test-password")]);
    let carol = s.user(("carol", "carol-test-password"));
    let mut in_ = false;
    for _ in 0..100 {
        if carol.get("/v2/").send().await.status == StatusCode::OK {
            in_ = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(in_, "carol never got in");
    let r = carol
        .post(&format!("/v2/{}/blobs/uploads/", repo("x")))
        .send()
        .await;
    r.expect_error(StatusCode::FORBIDDEN, "DENIED");
    let r = carol.get("/v2/_catalog").send().await;
    assert_eq!(r.json()["repositories"], serde_json::json!([]));
}
both_transports!(no_grants_line_means_nothing_once_there_are_grants);

/// A non-ASCII `Authorization` header was read as no credentials: an anonymous request.
#[tokio::test]
async fn a_non_ascii_authorization_header_is_refused() {
    let raw = reqwest::header::HeaderValue::from_bytes(b"Basic \xe9t\xe9").unwrap();
    // Over HTTP (anonymous-pull: an anonymous pull would succeed).
    let s = Target::fresh(Transport::Http, Options::mode("anonymous-pull"));
    let url = s.server().unwrap().url.clone();
    let r = reqwest::Client::new()
        .get(format!("{url}/v2/_catalog"))
        .header("authorization", raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // In process, the same.
    let (reg, _) = common::target::core(Default::default(), &Options::mode("anonymous-pull"));
    let req = http::Request::get("/v2/_catalog")
        .header("authorization", raw)
        .body(edge_registry::Body::Empty)
        .unwrap();
    assert_eq!(
        reg.handle(req).await.response.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Behind a proxy every client shared the proxy's address, so a few wrong passwords locked
/// everyone out. With `--trusted-proxy` the address comes from the forwarding headers, and
/// failures count per user and address: one attacker locks out neither other addresses nor
/// other users.
#[tokio::test]
async fn behind_a_trusted_proxy_failures_count_per_client_and_user() {
    let dir = tempfile::tempdir().unwrap();
    common::write_accounts(dir.path(), &[ALICE, BOB]);
    let h = dir.path().join("htpasswd");
    let g = dir.path().join("grants");
    let args = |trusted: bool| {
        let mut a = vec![
            "--auth".to_string(),
            "authenticated".into(),
            "--htpasswd".into(),
            h.to_str().unwrap().into(),
            "--grants".into(),
            g.to_str().unwrap().into(),
            "--max-login-failures".into(),
            "2".into(),
        ];
        if trusted {
            a.extend(["--trusted-proxy".into(), "127.0.0.1/32".into()]);
        }
        a
    };
    let status = |c: &Client, who: (&str, &str), from: &str| {
        let req = c
            .get("/v2/")
            .basic_auth(who.0, who.1)
            .header("x-forwarded-for", from);
        async move { req.send().await.status }
    };
    let (attacker, other) = ("203.0.113.1", "203.0.113.2");

    let trusted_args = args(true);
    let s = Server::native_with(&trusted_args.iter().map(String::as_str).collect::<Vec<_>>());
    let c = Client::of(&s);
    for _ in 0..2 {
        assert_eq!(
            status(&c, ("alice", "guess"), attacker).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status(&c, ALICE, attacker).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&c, ALICE, other).await,
        StatusCode::OK,
        "another address"
    );
    assert_eq!(
        status(&c, BOB, attacker).await,
        StatusCode::OK,
        "another user"
    );

    // Not trusted: the header is the client's own word, and ignored.
    let plain_args = args(false);
    let s = Server::native_with(&plain_args.iter().map(String::as_str).collect::<Vec<_>>());
    let c = Client::of(&s);
    for _ in 0..2 {
        assert_eq!(
            status(&c, ("alice", "guess"), attacker).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status(&c, ALICE, other).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Logins run on a bounded pool natively: a flood of wrong passwords from many addresses is
/// answered (401 or 429), never queued without bound, and the registry keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_is_bounded_and_pulls_go_on() {
    let dir = tempfile::tempdir().unwrap();
    common::write_accounts(dir.path(), &[ALICE, BOB]);
    let h = dir.path().join("htpasswd");
    let s = Arc::new(Server::native_with(&[
        "--auth",
        "anonymous-pull",
        "--htpasswd",
        h.to_str().unwrap(),
        "--trusted-proxy",
        "127.0.0.1",
    ]));
    let c = Client::of(&s);
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.get("/v2/")
                    .basic_auth("alice", "wrong")
                    .header("x-forwarded-for", format!("198.51.100.{}", i % 250))
                    .send()
                    .await
                    .status
            })
        })
        .collect();
    // Pulls are answered while the flood runs.
    for _ in 0..20 {
        assert_eq!(c.get("/v2/_catalog").send().await.status, StatusCode::OK);
    }
    for f in flood {
        let status = f.await.unwrap();
        assert!(
            matches!(
                status,
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
            ),
            "{status}"
        );
    }
}
