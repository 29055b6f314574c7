//! Access control, sans-IO: the modes, permissions on repository-name patterns, the scopes of
//! the token protocol, and the short-lived Bearer tokens the registry signs itself (HMAC-SHA256).
//!
//! This is the groundwork of issue #5: these pieces are tested here, and not yet wired into
//! [`crate::Registry`] (every request is still allowed).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Who may do what without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Anyone may do anything (the native default, on 127.0.0.1).
    Open,
    /// Anyone may pull; pushing and deleting need credentials.
    AnonymousPull,
    /// Everything needs credentials.
    Authenticated,
    /// Anyone may pull; nobody may push or delete.
    ReadOnly,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Mode::Open),
            "anonymous-pull" => Ok(Mode::AnonymousPull),
            "authenticated" => Ok(Mode::Authenticated),
            "read-only" => Ok(Mode::ReadOnly),
            other => Err(format!(
                "unknown mode {other:?} (open, anonymous-pull, authenticated, read-only)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }

    /// The action a request method needs: reads pull, DELETE deletes, anything else pushes.
    pub fn of_method(method: &http::Method) -> Action {
        match *method {
            http::Method::GET | http::Method::HEAD => Action::Pull,
            http::Method::DELETE => Action::Delete,
            _ => Action::Push,
        }
    }

    /// Whether `mode` lets anonymous clients do this.
    pub fn anonymous_allowed(self, mode: Mode) -> bool {
        match mode {
            Mode::Open => true,
            Mode::AnonymousPull | Mode::ReadOnly => self == Action::Pull,
            Mode::Authenticated => false,
        }
    }
}

/// Actions on the repositories whose names match a pattern: `*` (all), `team-a/*` (everything
/// under `team-a/`), or an exact name. Written `team-a/*=pull,push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pattern: String,
    actions: Vec<Action>,
}

impl Grant {
    pub fn parse(s: &str) -> Result<Grant, String> {
        let (pattern, actions) = s
            .split_once('=')
            .ok_or_else(|| format!("grant {s:?} is not PATTERN=ACTIONS"))?;
        let actions =
            parse_actions(actions).ok_or_else(|| format!("grant {s:?}: unknown action"))?;
        if pattern.is_empty() {
            return Err(format!("grant {s:?} has no pattern"));
        }
        Ok(Grant {
            pattern: pattern.to_string(),
            actions,
        })
    }

    pub fn matches(&self, repo: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some("") => true,
            Some(prefix) if prefix.ends_with('/') => repo.starts_with(prefix),
            _ => self.pattern == repo,
        }
    }

    pub fn allows(&self, repo: &str, action: Action) -> bool {
        self.matches(repo) && self.actions.contains(&action)
    }
}

/// `pull,push`, or `*` for every action.
fn parse_actions(s: &str) -> Option<Vec<Action>> {
    if s == "*" {
        return Some(Action::ALL.to_vec());
    }
    let mut out = Vec::new();
    for a in s.split(',').filter(|a| !a.is_empty()) {
        let a = Action::parse(a)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Some(out)
}

/// A scope of the token protocol: `repository:<name>:<actions>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub name: String,
    pub actions: Vec<Action>,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        let rest = s.strip_prefix("repository:")?;
        // Names cannot hold `:`, so the last `:` ends the name.
        let (name, actions) = rest.rsplit_once(':')?;
        crate::names::Name::parse(name).ok()?;
        Some(Scope {
            name: name.to_string(),
            actions: parse_actions(actions)?,
        })
    }

    /// The part of this scope that `grants` allow.
    pub fn granted(&self, grants: &[Grant]) -> Scope {
        Scope {
            name: self.name.clone(),
            actions: self
                .actions
                .iter()
                .copied()
                .filter(|a| grants.iter().any(|g| g.allows(&self.name, *a)))
                .collect(),
        }
    }

    /// The scope written back, as in a challenge: `repository:a/b:pull,push`.
    pub fn to_header(&self) -> String {
        let actions: Vec<&str> = self
            .actions
            .iter()
            .map(|a| match a {
                Action::Pull => "pull",
                Action::Push => "push",
                Action::Delete => "delete",
            })
            .collect();
        format!("repository:{}:{}", self.name, actions.join(","))
    }
}

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user it was issued to.
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

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.0.clone();
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{tag}")
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

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn modes_and_anonymous_access() {
        let m = |s: &str| s.parse::<Mode>().unwrap();
        assert!(Action::Push.anonymous_allowed(m("open")));
        assert!(Action::Pull.anonymous_allowed(m("anonymous-pull")));
        assert!(!Action::Push.anonymous_allowed(m("anonymous-pull")));
        assert!(!Action::Pull.anonymous_allowed(m("authenticated")));
        assert!(Action::Pull.anonymous_allowed(m("read-only")));
        assert!(!Action::Delete.anonymous_allowed(m("read-only")));
        assert!("everyone".parse::<Mode>().is_err());
        assert_eq!(Action::of_method(&http::Method::HEAD), Action::Pull);
        assert_eq!(Action::of_method(&http::Method::PATCH), Action::Push);
        assert_eq!(Action::of_method(&http::Method::DELETE), Action::Delete);
    }

    #[test]
    fn grants_match_prefixes_exact_names_and_all() {
        let team = Grant::parse("team-a/*=pull,push").unwrap();
        assert!(team.allows("team-a/app", Action::Push));
        assert!(team.allows("team-a/x/y", Action::Pull));
        assert!(!team.allows("team-a/app", Action::Delete));
        assert!(
            !team.allows("team-ab/app", Action::Pull),
            "a prefix stops at the slash"
        );
        assert!(!team.allows("team-a", Action::Pull));
        let exact = Grant::parse("tools/cli=pull").unwrap();
        assert!(exact.allows("tools/cli", Action::Pull));
        assert!(!exact.allows("tools/cli2", Action::Pull));
        let all = Grant::parse("*=*").unwrap();
        assert!(all.allows("anything/at/all", Action::Delete));
        for bad in ["team-a/*", "=pull", "x=fly", ""] {
            assert!(Grant::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes() {
        let s = Scope::parse("repository:team-a/app:pull,push").unwrap();
        assert_eq!(s.name, "team-a/app");
        assert_eq!(s.actions, vec![Action::Pull, Action::Push]);
        assert_eq!(s.to_header(), "repository:team-a/app:pull,push");
        let grants = [Grant::parse("team-a/*=pull").unwrap()];
        assert_eq!(s.granted(&grants).actions, vec![Action::Pull]);
        for bad in [
            "registry:catalog:*",
            "repository:Bad:pull",
            "repository:a:fly",
            "repository:a",
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering_expiry_and_other_keys() {
        let key = TokenKey::new(SECRET).unwrap();
        let claims = Claims {
            sub: "alice".into(),
            access: vec![Scope::parse("repository:a/b:pull,push").unwrap()],
            iat: 1000,
            exp: 1300,
        };
        let token = key.sign(&claims);
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
    fn constant_time_comparison_and_challenge() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
        let scope = Scope::parse("repository:a:pull").unwrap();
        assert_eq!(
            bearer_challenge("https://r.example/token", "edge-registry", Some(&scope)),
            "Bearer realm=\"https://r.example/token\",service=\"edge-registry\",scope=\"repository:a:pull\""
        );
    }
}
