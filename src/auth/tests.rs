//! Tests of authentication, checks and challenges.

use super::accounts::tests::accounts;
use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn basic(user: &str, password: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
    h
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_executor_lite(f)
}

/// Polls a future that never waits on I/O (checks run inline) to completion.
fn futures_executor_lite<T>(f: impl std::future::Future<Output = T>) -> T {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn checks_by_mode_and_principal() {
    let realm = "http://r/token";
    let key = || Some(TokenKey::new(SECRET).unwrap());
    let anon = Principal::Anonymous;
    let bob = Principal::User("bob".into());
    let code = |r: Result<(), Error>| r.err().map(|e| e.code);
    let a = Access::new(Mode::AnonymousPull, accounts(), key());
    assert_eq!(
        code(a.check(&anon, Need::Repo("x", Action::Pull), realm)),
        None
    );
    assert_eq!(code(a.check(&anon, Need::Catalog, realm)), None);
    assert_eq!(
        code(a.check(&anon, Need::Base, realm)),
        Some(ErrorCode::Unauthorized)
    );
    let e = a
        .check(&anon, Need::Repo("x", Action::Push), realm)
        .unwrap_err();
    let challenge = e.headers[0].1.to_str().unwrap().to_string();
    assert!(
        challenge.contains("scope=\"repository:x:pull,push\""),
        "{challenge}"
    );
    assert_eq!(
        code(a.check(&bob, Need::Repo("team-b/a", Action::Push), realm)),
        None
    );
    assert_eq!(
        code(a.check(&bob, Need::Repo("team-a/a", Action::Push), realm)),
        Some(ErrorCode::Denied)
    );

    let ro = Access::new(Mode::ReadOnly, accounts(), key());
    let alice = Principal::User("alice".into());
    assert_eq!(
        code(ro.check(&alice, Need::Repo("x", Action::Push), realm)),
        Some(ErrorCode::Denied)
    );
    assert_eq!(code(ro.check(&anon, Need::Base, realm)), None);

    // Without a token key the challenge is Basic, and there is no token endpoint.
    let basic_only = Access::new(Mode::Authenticated, accounts(), None);
    let e = basic_only.check(&anon, Need::Catalog, realm).unwrap_err();
    assert_eq!(e.headers[0].1, "Basic realm=\"edge-registry\"");
    assert!(block(basic_only.issue_token(None, &[], "c", 0)).is_err());
}

#[test]
fn an_anonymous_token_without_the_scope_gets_insufficient_scope() {
    let a = Access::new(
        Mode::AnonymousPull,
        accounts(),
        Some(TokenKey::new(SECRET).unwrap()),
    );
    let v = block(a.issue_token(None, &["repository:x:pull,push".into()], "c", 0)).unwrap();
    let token = v["token"].as_str().unwrap();
    let p = block(a.authenticate(&bearer(token), "c", "r", 1000)).unwrap();
    let e = a.check(&p, Need::Repo("x", Action::Push), "r").unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    let challenge = e.headers[0].1.to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"repository:x:pull,push\""),
        "{challenge}"
    );
}

#[test]
fn authenticates_basic_and_bearer_and_limits_failures() {
    let a = Access::new(
        Mode::Authenticated,
        accounts(),
        Some(TokenKey::new(SECRET).unwrap()),
    )
    .with_max_failures(2);
    let auth =
        |h: &HeaderMap, client: &str, s: u64| block(a.authenticate(h, client, "r", s * 1000));
    let p = auth(&basic("alice", "a-pw"), "1.2.3.4", 100).unwrap();
    assert_eq!(p, Principal::User("alice".into()));
    assert_eq!(
        auth(&HeaderMap::new(), "c", 100).unwrap(),
        Principal::Anonymous
    );
    for _ in 0..2 {
        let e = auth(&basic("alice", "nope"), "5.6.7.8", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
    }
    // That user from that address now waits, even with the right password; others do not.
    let e = auth(&basic("alice", "a-pw"), "5.6.7.8", 130).unwrap_err();
    assert_eq!(e.code, ErrorCode::TooManyRequests);
    assert!(auth(&basic("alice", "a-pw"), "1.2.3.4", 130).is_ok());
    assert!(auth(&basic("bob", "b-pw"), "5.6.7.8", 130).is_ok());
    // A minute later it may try again.
    assert!(auth(&basic("alice", "a-pw"), "5.6.7.8", 161).is_ok());

    // Tokens: cut down to the grants, and accepted as Bearer.
    let v = block(a.issue_token(
        Some(("bob".into(), "b-pw".into())),
        &["repository:team-b/app:pull,push repository:team-a/app:pull,push".into()],
        "c",
        200_000,
    ))
    .unwrap();
    let token = v["token"].as_str().unwrap();
    let Principal::Token(claims) = auth(&bearer(token), "c", 201).unwrap() else {
        panic!("not a token principal");
    };
    assert_eq!(claims.sub, "bob");
    assert_eq!(
        claims.access,
        vec![Scope::parse("repository:team-b/app:pull,push").unwrap()]
    );
    assert!(auth(&bearer(token), "c", 200 + 300).is_err(), "expired");
    // Rotating the accounts drops remembered verifications and the removed users'
    // tokens at once.
    a.set_accounts(Accounts::default());
    assert!(auth(&basic("alice", "a-pw"), "1.2.3.4", 202).is_err());
    assert!(auth(&bearer(token), "c", 202).is_err());
}

#[test]
fn control_characters_and_non_ascii_headers_are_refused() {
    let a = Access::new(Mode::Authenticated, accounts(), None);
    let e = block(a.authenticate(&basic("alice", "a-pw\0"), "c", "r", 0)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap(),
    );
    assert_eq!(presented(&h), Presented::Malformed);
    let e = block(a.authenticate(&h, "c", "r", 0)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(!acceptable_credential("a\u{7f}", "x"));
    assert!(!acceptable_credential("a:b", "x"));
    assert!(acceptable_credential("alice", "pässwörd"));
}

#[test]
fn a_token_lives_its_whole_ttl() {
    let a = Access::new(
        Mode::AnonymousPull,
        accounts(),
        Some(TokenKey::new(SECRET).unwrap()),
    )
    .with_token_ttl(1);
    // Issued at 999 ms into a second, a 1 s token is still good 1 s later.
    let v = block(a.issue_token(None, &[], "c", 10_999)).unwrap();
    let token = v["token"].as_str().unwrap();
    assert!(block(a.authenticate(&bearer(token), "c", "r", 11_998)).is_ok());
}
