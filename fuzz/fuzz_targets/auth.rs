//! `Scope::parse`, `Grant::parse`, `TokenKey::verify`, `Htpasswd::parse`, `Grants::parse` and
//! `basic_credentials`, all on the same input. A scope written
//! back parses to itself and names a valid repository. A token is tried as it is, and as a claims
//! payload signed with the key (so the claims parser behind the signature check is reached too):
//! it verifies exactly when its claims parse and have not expired, and any other last character
//! of its signature is refused.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edge_registry::auth::{
    basic_credentials, Action, Claims, Grant, Grants, Htpasswd, Scope, TokenKey,
};
use edge_registry::names::Name;
use hmac::{KeyInit, Mac};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzzing secret, at least 32 bytes long";
const NOWS: [u64; 4] = [0, 1, 1_700_000_000, u64::MAX];

fn sign(payload: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(payload.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::new(SECRET).unwrap();

    // The input as a signed claims payload.
    let payload = URL_SAFE_NO_PAD.encode(data);
    let tag = sign(&payload);
    let token = format!("{payload}.{tag}");
    let claims = serde_json::from_slice::<Claims>(data).ok();
    for now in NOWS {
        let want = claims.clone().filter(|c| now < c.exp);
        assert_eq!(key.verify(&token, now), want);
    }
    if let Some(c) = &claims {
        let resigned = key.sign(c).expect("claims serialise");
        assert_eq!(key.verify(&resigned, 0), (0 < c.exp).then(|| c.clone()));
    }
    let last = tag.chars().last().unwrap();
    for other in ['A', 'B', 'g', '_'] {
        if other != last {
            let forged = format!("{payload}.{}{other}", &tag[..tag.len() - 1]);
            assert_eq!(key.verify(&forged, 0), None, "{forged}");
        }
    }

    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    // The input as a token: forging a signature by chance is not expected.
    for now in NOWS {
        if let Some(c) = key.verify(s, now) {
            assert!(now < c.exp);
        }
    }

    if let Some(scope) = Scope::parse(s) {
        assert!(Name::parse(&scope.name).is_ok(), "{s:?}");
        let mut dedup = scope.actions.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), scope.actions.len());
        assert_eq!(
            Scope::parse(&scope.to_header()),
            Some(scope.clone()),
            "{s:?}"
        );
        assert!(scope.granted(|_, _| false).actions.is_empty());
        let all = Grant::parse("*=*").unwrap();
        assert_eq!(scope.granted(|r, a| all.allows(r, a)), scope);
    }

    if let Ok(grant) = Grant::parse(s) {
        let (pattern, _) = s.split_once('=').unwrap();
        for repo in [pattern, "a", "a/b", "", s] {
            for action in Action::ALL {
                if grant.allows(repo, action) {
                    assert!(grant.matches(repo));
                }
            }
        }
        // Every pattern matches itself (a prefix pattern `a/*` as a name under `a/`).
        assert!(grant.matches(pattern), "{s:?}");
    }

    // The account files and Basic credentials: never a panic; errors name a line, never
    // quote it.
    match Htpasswd::parse(s) {
        Ok(h) => assert!(h.len() <= s.lines().count()),
        Err(e) => assert!(e.starts_with("htpasswd line "), "{e}"),
    }
    if let Ok(g) = Grants::parse(s) {
        for action in Action::ALL {
            let _ = g.allows("alice", "a/b", action);
        }
    }
    if let Some((user, password)) = basic_credentials(s) {
        assert!(!user.contains(':'));
        let _ = password;
    }
});
