//! The short-lived Bearer tokens the registry signs itself: `base64url(claims JSON)` and its
//! HMAC-SHA256, checked in constant time (`verify_slice`) before anything in them is trusted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use super::policy::{Action, Scope};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user it was issued to; empty for an anonymous token.
    pub sub: String,
    pub access: Vec<Scope>,
    /// Issued at and expires at, in seconds since the Unix epoch.
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    pub fn allows(&self, repo: &str, action: Action) -> bool {
        self.access
            .iter()
            .any(|s| s.name == repo && s.actions.contains(&action))
    }
}

/// The registry's token key. Tokens are `base64url(claims JSON).base64url(HMAC-SHA256)`.
pub struct TokenKey(HmacSha256);

impl TokenKey {
    /// A key from a secret of at least 32 bytes.
    pub fn new(secret: &[u8]) -> Result<TokenKey, String> {
        if secret.len() < 32 {
            return Err("the token secret must be at least 32 bytes".into());
        }
        HmacSha256::new_from_slice(secret)
            .map(TokenKey)
            .map_err(|e| e.to_string())
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, serde_json::Error> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let mut mac = self.0.clone();
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(format!("{payload}.{tag}"))
    }

    /// The claims of a token this key signed and that has not expired at `now`. The signature
    /// is checked in constant time, before anything in the token is trusted.
    pub fn verify(&self, token: &str, now: u64) -> Option<Claims> {
        let (payload, tag) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.0.clone();
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (now < claims.exp).then_some(claims)
    }
}

/// The `WWW-Authenticate` challenge pointing clients at the token endpoint.
pub fn bearer_challenge(realm: &str, service: &str, scope: Option<&Scope>) -> String {
    let mut c = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{}\"", s.to_header()));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_round_trip_and_refuse_tampering_expiry_and_other_keys() {
        let key = TokenKey::new(SECRET).unwrap();
        let claims = Claims {
            sub: "alice".into(),
            access: vec![Scope::parse("repository:a/b:pull,push").unwrap()],
            iat: 1000,
            exp: 1300,
        };
        let token = key.sign(&claims).unwrap();
        assert_eq!(key.verify(&token, 1299), Some(claims.clone()));
        assert!(key.verify(&token, 1300).is_none(), "expired");
        let got = key.verify(&token, 1100).unwrap();
        assert!(got.allows("a/b", Action::Push));
        assert!(!got.allows("a/b", Action::Delete));
        assert!(!got.allows("a/c", Action::Pull));

        // A forged payload with the old signature.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = Claims {
            exp: u64::MAX,
            ..claims.clone()
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(key.verify(&format!("{payload}.{tag}"), 1100).is_none());
        let other = TokenKey::new(b"another secret that is 32 bytes!").unwrap();
        assert!(other.verify(&token, 1100).is_none());
        for junk in ["", ".", "x.y", "not a token", &token.replace('.', "")] {
            assert!(key.verify(junk, 1100).is_none(), "{junk}");
        }
        assert!(TokenKey::new(b"short").is_err());
    }

    #[test]
    fn challenge() {
        let scope = Scope::parse("repository:a:pull").unwrap();
        assert_eq!(
            bearer_challenge("https://r.example/token", "edge-registry", Some(&scope)),
            "Bearer realm=\"https://r.example/token\",service=\"edge-registry\",scope=\"repository:a:pull\""
        );
    }
}
