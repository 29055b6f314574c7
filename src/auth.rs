//! Access control, sans-IO: the modes, permissions on repository-name patterns, the scopes of
//! the token protocol, and the short-lived Bearer tokens the registry signs itself (HMAC-SHA256).
//!
//! Secrets are compared in constant time by the crates made for it: bcrypt's verification, and
//! HMAC's tag check (`verify_slice`).
//!
//! [`Access`] puts them together for [`crate::Registry`]: it authenticates a request (Basic
//! credentials checked against htpasswd bcrypt hashes, or a Bearer token), decides whether the
//! principal may do what the request needs, answers with the spec's UNAUTHORIZED (plus a
//! `WWW-Authenticate` challenge), DENIED or TOOMANYREQUESTS, and issues tokens at `/token`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use http::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{Error, ErrorCode};

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

/// The `WWW-Authenticate` challenge pointing clients at the token endpoint.
pub fn bearer_challenge(realm: &str, service: &str, scope: Option<&Scope>) -> String {
    let mut c = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{}\"", s.to_header()));
    }
    c
}

/// Users and their bcrypt password hashes, in the htpasswd format the reference registry reads:
/// `user:$2y$10$...` lines; blank lines and `#` comments are skipped.
#[derive(Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl Htpasswd {
    /// Parses an htpasswd file. Errors name the line, never its content.
    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("htpasswd line {n}: not USER:HASH"))?;
            if user.is_empty() {
                return Err(format!("htpasswd line {n}: empty user name"));
            }
            let bcrypt = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p));
            if !bcrypt || hash.len() != 60 {
                return Err(format!(
                    "htpasswd line {n}: only bcrypt hashes are supported (htpasswd -B, or edge-registry hash-password)"
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. An unknown user costs a bcrypt check too, so the time
    /// taken does not tell which users exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                if let Some(any) = self.users.values().next() {
                    let _ = bcrypt::verify(password, any);
                }
                false
            }
        }
    }
}

/// Per-user permissions: lines of `user pattern=actions [pattern=actions ...]`, e.g.
/// `bob team-b/*=pull,push shared/*=pull`. A user without a line may do everything.
#[derive(Default)]
pub struct Grants(HashMap<String, Vec<Grant>>);

impl Grants {
    pub fn parse(text: &str) -> Result<Grants, String> {
        let mut out = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let user = words.next().unwrap_or_default();
            let grants = words
                .map(Grant::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("grants line {}: {e}", i + 1))?;
            out.insert(user.to_string(), grants);
        }
        Ok(Grants(out))
    }

    /// Whether `user` may do `action` on `repo`.
    pub fn allows(&self, user: &str, repo: &str, action: Action) -> bool {
        self.0
            .get(user)
            .is_none_or(|g| g.iter().any(|g| g.allows(repo, action)))
    }
}

/// The users and their grants; replaced whole when the files change.
#[derive(Default)]
pub struct Accounts {
    pub htpasswd: Htpasswd,
    pub grants: Grants,
}

/// The client's address, which adapters attach to a request as an extension: failed logins
/// are counted per address.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    /// A user whose Basic credentials were checked.
    User(String),
    /// A Bearer token the registry signed; `sub` is empty for an anonymous token.
    Token(Claims),
}

/// What a request needs.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// `/v2/`: the API version check, which is also how clients log in.
    Base,
    /// `/v2/_catalog`: its list is filtered to what the principal may pull.
    Catalog,
    Repo(&'a str, Action),
}

const FAILURE_WINDOW: u64 = 60;
const MAX_TRACKED: usize = 10_000;
const VERIFIED_TTL: u64 = 300;

/// Access control for one registry: the mode, the accounts, the token key, and what is
/// remembered between requests (failed logins per client, recently verified credentials).
pub struct Access {
    mode: Mode,
    accounts: RwLock<Arc<Accounts>>,
    token_key: Option<TokenKey>,
    token_ttl: u64,
    service: String,
    max_failures: u32,
    /// Failed logins per client: (count, start of the window).
    failures: Mutex<HashMap<String, (u32, u64)>>,
    /// SHA-256 of recently verified `user\0password`, with when that expires: bcrypt is slow
    /// on purpose, and clients using Basic credentials send them on every request.
    verified: Mutex<HashMap<[u8; 32], u64>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("mode", &self.mode)
            .field("token_auth", &self.token_key.is_some())
            .finish_non_exhaustive()
    }
}

impl Access {
    pub fn new(mode: Mode, accounts: Accounts, token_key: Option<TokenKey>) -> Access {
        Access {
            mode,
            accounts: RwLock::new(Arc::new(accounts)),
            token_key,
            token_ttl: 300,
            service: "edge-registry".into(),
            max_failures: 10,
            failures: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Everyone may do everything.
    pub fn open() -> Access {
        Access::new(Mode::Open, Accounts::default(), None)
    }

    /// Lifetime of the tokens issued, in seconds (default 300).
    pub fn with_token_ttl(mut self, seconds: u64) -> Access {
        self.token_ttl = seconds.max(1);
        self
    }

    /// Failed logins a client may make per minute before it gets 429 (default 10).
    pub fn with_max_failures(mut self, per_minute: u32) -> Access {
        self.max_failures = per_minute.max(1);
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Replaces users and grants (credential rotation). Remembered verifications are dropped,
    /// so a removed or changed password stops working at once.
    pub fn set_accounts(&self, accounts: Accounts) {
        *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(accounts);
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn accounts(&self) -> Arc<Accounts> {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks a user's password, counting failures per client: past the limit, every attempt
    /// (right or wrong) gets 429 until the minute is over.
    pub fn login(&self, user: &str, password: &str, client: &str, now: u64) -> Result<bool, Error> {
        {
            let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&(count, start)) = failures.get(client) {
                if count >= self.max_failures && now < start + FAILURE_WINDOW {
                    let wait = start + FAILURE_WINDOW - now;
                    return Err(Error::new(ErrorCode::TooManyRequests)
                        .with_message("too many failed logins; try again later")
                        .with_header(header::RETRY_AFTER, HeaderValue::from(wait)));
                }
            }
        }
        let mut h = sha2::Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.get(&key).is_some_and(|&exp| now < exp) {
                return Ok(true);
            }
        }
        if self.accounts().htpasswd.verify(user, password) {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= MAX_TRACKED {
                verified.retain(|_, exp| now < *exp);
                if verified.len() >= MAX_TRACKED {
                    verified.clear();
                }
            }
            verified.insert(key, now + VERIFIED_TTL);
            return Ok(true);
        }
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, start)| now < *start + FAILURE_WINDOW);
        }
        let entry = failures.entry(client.to_string()).or_insert((0, now));
        if now >= entry.1 + FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        Ok(false)
    }

    /// Who sent a request, from its `Authorization` header. Bad credentials and bad tokens
    /// are refused here (401, or 429 past the failure limit); no header is [`Principal::Anonymous`].
    /// In open mode credentials are not looked at.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        client: &str,
        realm: &str,
        now: u64,
    ) -> Result<Principal, Error> {
        if self.mode == Mode::Open {
            return Ok(Principal::Anonymous);
        }
        match presented(headers) {
            Presented::Nothing => Ok(Principal::Anonymous),
            Presented::Basic(None) => Err(self
                .unauthorized(realm, None, None)
                .with_message("malformed Basic credentials")),
            Presented::Basic(Some((user, password))) => {
                if self.login(&user, &password, client, now)? {
                    return Ok(Principal::User(user));
                }
                Err(self
                    .unauthorized(realm, None, None)
                    .with_message("invalid username or password"))
            }
            Presented::Bearer(token) => self
                .token_key
                .as_ref()
                .and_then(|k| k.verify(&token, now))
                .map(Principal::Token)
                .ok_or_else(|| {
                    self.unauthorized(realm, None, Some("invalid_token"))
                        .with_message("invalid or expired token")
                }),
        }
    }

    /// Whether `p` may do `action` on `repo`.
    pub fn allows(&self, p: &Principal, repo: &str, action: Action) -> bool {
        if self.mode == Mode::ReadOnly && action != Action::Pull {
            return false;
        }
        action.anonymous_allowed(self.mode)
            || match p {
                Principal::Anonymous => false,
                Principal::User(u) => self.accounts().grants.allows(u, repo, action),
                Principal::Token(c) => c.allows(repo, action),
            }
    }

    /// Whether the catalog shows `repo` to `p`: what its user (a token's subject) may pull.
    pub fn can_list(&self, p: &Principal, repo: &str) -> bool {
        let user = match p {
            Principal::User(u) => u.as_str(),
            Principal::Token(c) if !c.sub.is_empty() => c.sub.as_str(),
            _ => return Action::Pull.anonymous_allowed(self.mode),
        };
        Action::Pull.anonymous_allowed(self.mode)
            || self.accounts().grants.allows(user, repo, Action::Pull)
    }

    /// Lets the request through, or says why not: 401 with a challenge when credentials (or a
    /// token with more scope) would help, 403 DENIED when they would not.
    pub fn check(&self, p: &Principal, need: Need<'_>, realm: &str) -> Result<(), Error> {
        if self.mode == Mode::Open {
            return Ok(());
        }
        let anonymous = match p {
            Principal::Anonymous => true,
            Principal::Token(c) => c.sub.is_empty(),
            Principal::User(_) => false,
        };
        let (repo, action) = match need {
            Need::Base if anonymous && self.mode != Mode::ReadOnly => {
                return Err(self.unauthorized(realm, None, None))
            }
            Need::Catalog if anonymous && !Action::Pull.anonymous_allowed(self.mode) => {
                return Err(self.unauthorized(realm, None, None))
            }
            Need::Base | Need::Catalog => return Ok(()),
            Need::Repo(repo, action) => (repo, action),
        };
        if self.allows(p, repo, action) {
            return Ok(());
        }
        if self.mode == Mode::ReadOnly {
            return Err(Error::new(ErrorCode::Denied).with_message("the registry is read-only"));
        }
        let scope = challenge_scope(repo, action);
        match p {
            _ if anonymous => Err(self.unauthorized(realm, Some(&scope), None)),
            Principal::Token(c) if self.accounts().grants.allows(&c.sub, repo, action) => {
                Err(self.unauthorized(realm, Some(&scope), Some("insufficient_scope")))
            }
            _ => Err(Error::new(ErrorCode::Denied)),
        }
    }

    /// 401 UNAUTHORIZED with the challenge: Bearer at the token endpoint when the registry
    /// signs tokens, Basic otherwise.
    pub fn unauthorized(&self, realm: &str, scope: Option<&Scope>, error: Option<&str>) -> Error {
        let challenge = match self.token_key {
            Some(_) => {
                let mut c = bearer_challenge(realm, &self.service, scope);
                if let Some(e) = error {
                    c.push_str(&format!(",error=\"{e}\""));
                }
                c
            }
            None => format!("Basic realm=\"{}\"", self.service),
        };
        Error::new(ErrorCode::Unauthorized).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"edge-registry\"")),
        )
    }

    /// 401 UNAUTHORIZED at the token endpoint, which takes Basic credentials.
    pub fn token_unauthorized(&self) -> Error {
        Error::new(ErrorCode::Unauthorized).with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&format!("Basic realm=\"{}\"", self.service))
                .unwrap_or_else(|_| HeaderValue::from_static("Basic")),
        )
    }

    /// The token endpoint: a token for the part of the requested `scopes` that the caller may
    /// have. `credentials` are the caller's user and password, if it sent any.
    pub fn issue_token(
        &self,
        credentials: Option<(String, String)>,
        scopes: &[String],
        client: &str,
        now: u64,
    ) -> Result<serde_json::Value, Error> {
        let key = self.token_key.as_ref().ok_or_else(|| {
            crate::route::not_found().with_message("this registry does not issue tokens")
        })?;
        let basic = || self.token_unauthorized();
        let principal = match credentials {
            Some((user, password)) => {
                if !self.login(&user, &password, client, now)? {
                    return Err(basic().with_message("invalid username or password"));
                }
                Principal::User(user)
            }
            None if self.mode == Mode::Authenticated => {
                return Err(basic().with_message("credentials required"))
            }
            None => Principal::Anonymous,
        };
        let mut access: Vec<Scope> = Vec::new();
        for requested in scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(Scope::parse)
        {
            let granted = Scope {
                actions: requested
                    .actions
                    .iter()
                    .copied()
                    .filter(|a| self.allows(&principal, &requested.name, *a))
                    .collect(),
                name: requested.name,
            };
            if granted.actions.is_empty() {
                continue;
            }
            match access.iter_mut().find(|s| s.name == granted.name) {
                Some(s) => {
                    for a in granted.actions {
                        if !s.actions.contains(&a) {
                            s.actions.push(a);
                        }
                    }
                }
                None => access.push(granted),
            }
        }
        let sub = match principal {
            Principal::User(u) => u,
            _ => String::new(),
        };
        let token = key.sign(&Claims {
            sub,
            access,
            iat: now,
            exp: now + self.token_ttl,
        });
        Ok(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": self.token_ttl,
        }))
    }
}

/// The scope a client should ask for: pushing needs pull too, as clients ask.
fn challenge_scope(repo: &str, action: Action) -> Scope {
    Scope {
        name: repo.to_string(),
        actions: match action {
            Action::Pull => vec![Action::Pull],
            Action::Push => vec![Action::Pull, Action::Push],
            Action::Delete => vec![Action::Delete],
        },
    }
}

/// What a request's `Authorization` header presents. A scheme other than Basic or Bearer
/// counts as nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    Nothing,
    /// Basic credentials: `None` when they do not decode to `user:password`.
    Basic(Option<(String, String)>),
    Bearer(String),
}

pub fn presented(headers: &HeaderMap) -> Presented {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Presented::Nothing;
    };
    let value = value.to_str().unwrap_or_default();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        Presented::Basic(basic_credentials(rest))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Presented::Bearer(rest.trim().to_string())
    } else {
        Presented::Nothing
    }
}

/// User and password from the base64 part of a Basic `Authorization` header.
pub fn basic_credentials(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
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
    fn challenge() {
        let scope = Scope::parse("repository:a:pull").unwrap();
        assert_eq!(
            bearer_challenge("https://r.example/token", "edge-registry", Some(&scope)),
            "Bearer realm=\"https://r.example/token\",service=\"edge-registry\",scope=\"repository:a:pull\""
        );
    }

    /// alice (no grants line: everything) and bob (team-b/ only), with cheap bcrypt hashes.
    fn accounts() -> Accounts {
        let line = |u: &str, p: &str| {
            let parts = bcrypt::hash_with_salt(p, 4, [7u8; 16]).unwrap();
            format!("{u}:{}", parts.format_for_version(bcrypt::Version::TwoY))
        };
        Accounts {
            htpasswd: Htpasswd::parse(&format!(
                "# users\n{}\n\n{}\n",
                line("alice", "a-pw"),
                line("bob", "b-pw")
            ))
            .unwrap(),
            grants: Grants::parse("bob team-b/*=pull,push\n").unwrap(),
        }
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        h
    }

    #[test]
    fn htpasswd_and_grants_files() {
        let a = accounts();
        assert_eq!(a.htpasswd.len(), 2);
        assert!(a.htpasswd.verify("alice", "a-pw"));
        assert!(!a.htpasswd.verify("alice", "b-pw"));
        assert!(!a.htpasswd.verify("carol", "a-pw"));
        assert!(a.grants.allows("alice", "x/y", Action::Delete));
        assert!(a.grants.allows("bob", "team-b/app", Action::Push));
        assert!(!a.grants.allows("bob", "team-a/app", Action::Pull));
        for bad in ["alice", ":$2y$04$", "alice:plaintext", "alice:{SHA}abc"] {
            let e = Htpasswd::parse(bad).err().unwrap();
            assert!(e.contains("line 1") && !e.contains("plaintext"), "{e}");
        }
        assert!(Grants::parse("bob team-b/*=fly").is_err());
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
        assert!(basic_only.issue_token(None, &[], "c", 0).is_err());
    }

    #[test]
    fn authenticates_basic_and_bearer_and_limits_failures() {
        let a = Access::new(
            Mode::Authenticated,
            accounts(),
            Some(TokenKey::new(SECRET).unwrap()),
        )
        .with_max_failures(2);
        let p = a
            .authenticate(&basic("alice", "a-pw"), "1.2.3.4", "r", 100)
            .unwrap();
        assert_eq!(p, Principal::User("alice".into()));
        assert_eq!(
            a.authenticate(&HeaderMap::new(), "c", "r", 100).unwrap(),
            Principal::Anonymous
        );
        for _ in 0..2 {
            let e = a
                .authenticate(&basic("alice", "nope"), "5.6.7.8", "r", 100)
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized);
        }
        // That client now waits, even with the right password; others do not.
        let e = a
            .authenticate(&basic("alice", "a-pw"), "5.6.7.8", "r", 130)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TooManyRequests);
        assert!(a
            .authenticate(&basic("alice", "a-pw"), "1.2.3.4", "r", 130)
            .is_ok());
        // A minute later it may try again.
        assert!(a
            .authenticate(&basic("alice", "a-pw"), "5.6.7.8", "r", 161)
            .is_ok());

        // Tokens: cut down to the grants, and accepted as Bearer.
        let v = a
            .issue_token(
                Some(("bob".into(), "b-pw".into())),
                &["repository:team-b/app:pull,push repository:team-a/app:pull,push".into()],
                "c",
                200,
            )
            .unwrap();
        let token = v["token"].as_str().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let Principal::Token(claims) = a.authenticate(&h, "c", "r", 201).unwrap() else {
            panic!("not a token principal");
        };
        assert_eq!(claims.sub, "bob");
        assert_eq!(
            claims.access,
            vec![Scope::parse("repository:team-b/app:pull,push").unwrap()]
        );
        assert!(a.authenticate(&h, "c", "r", 200 + 300).is_err(), "expired");
        // Rotating the accounts drops remembered verifications at once.
        a.set_accounts(Accounts::default());
        assert!(a
            .authenticate(&basic("alice", "a-pw"), "1.2.3.4", "r", 202)
            .is_err());
    }
}
