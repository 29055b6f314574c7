//! Access control, sans-IO: who sent a request (Basic credentials checked against htpasswd
//! bcrypt hashes, or a Bearer token the registry signed), whether they may do what the request
//! needs, the spec's UNAUTHORIZED (with a `WWW-Authenticate` challenge), DENIED or
//! TOOMANYREQUESTS when not, and the tokens issued at `/token`.
//!
//! - [`policy`]: modes, actions, grants and scopes;
//! - [`accounts`]: the htpasswd and grants files;
//! - [`token`]: the HMAC-SHA256 tokens;
//! - [`throttle`]: failed-login limits and remembered logins, bounded.
//!
//! Secrets are compared in constant time by the crates made for it (bcrypt's verification,
//! HMAC's tag check). The bcrypt check itself is CPU-heavy on purpose: it runs through a
//! [`PasswordCheck`] the adapter provides (natively a bounded blocking pool), never on the
//! threads that serve requests.

pub mod accounts;
pub mod policy;
pub mod throttle;
pub mod token;

use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};

use crate::error::{Error, ErrorCode};

pub use accounts::{Accounts, Grants, Htpasswd};
pub use policy::{Action, Grant, Mode, Need, Scope};
pub use throttle::{verified_key, RetryAfter, Throttle};
pub use token::{bearer_challenge, Claims, TokenKey};

/// A bcrypt check to run: true when the password is right.
pub type Check = Box<dyn FnOnce() -> bool + Send>;

/// The password check's queue is full: the caller answers 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Where password checks run. Natively a bounded pool of blocking threads with a bounded queue,
/// so a flood of logins cannot stall other requests; on the Worker (one request per isolate
/// turn, and no threads) inline.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait PasswordCheck: Send + Sync {
    async fn run(&self, check: Check) -> Result<bool, Busy>;
}

/// Runs checks where they are asked for.
pub struct Inline;

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl PasswordCheck for Inline {
    async fn run(&self, check: Check) -> Result<bool, Busy> {
        Ok(check())
    }
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

impl Principal {
    /// The user behind the request, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Principal::User(u) => Some(u),
            Principal::Token(c) if !c.sub.is_empty() => Some(&c.sub),
            _ => None,
        }
    }
}

/// Whether a user name or password may be used: RFC 7617 forbids control characters, and a
/// user name cannot hold `:`.
pub fn acceptable_credential(user: &str, password: &str) -> bool {
    !user.is_empty()
        && !user.contains(':')
        && !user.chars().chain(password.chars()).any(char::is_control)
}

/// Access control for one registry: the mode, the accounts, the token key, and what is
/// remembered between requests (failed logins, recently verified credentials).
pub struct Access {
    mode: Mode,
    accounts: RwLock<Arc<Accounts>>,
    token_key: Option<TokenKey>,
    /// Lifetime of issued tokens, in milliseconds.
    token_ttl_ms: u64,
    service: String,
    throttle: Throttle,
    checker: Arc<dyn PasswordCheck>,
    /// Logins refused for a wrong user or password, for metrics.
    failed_logins: std::sync::atomic::AtomicU64,
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
            token_ttl_ms: 300_000,
            service: "edge-registry".into(),
            throttle: Throttle::new(10),
            checker: Arc::new(Inline),
            failed_logins: Default::default(),
        }
    }

    /// Everyone may do everything.
    pub fn open() -> Access {
        Access::new(Mode::Open, Accounts::default(), None)
    }

    /// Lifetime of the tokens issued, in seconds (default 300).
    pub fn with_token_ttl(mut self, seconds: u64) -> Access {
        self.token_ttl_ms = seconds.max(1).saturating_mul(1000);
        self
    }

    /// Failed logins a user may make per minute from one address before it gets 429
    /// (default 10); an address may make [`throttle::ADDRESS_FACTOR`] times as many.
    pub fn with_max_failures(mut self, per_minute: u32) -> Access {
        self.throttle = Throttle::new(per_minute);
        self
    }

    /// Where password checks run (default: inline).
    pub fn with_password_check(mut self, checker: Arc<dyn PasswordCheck>) -> Access {
        self.checker = checker;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Replaces users and grants (credential rotation). Remembered verifications are dropped,
    /// so a removed or changed password stops working at once, and so do the tokens of a
    /// removed user.
    pub fn set_accounts(&self, accounts: Accounts) {
        *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(accounts);
        self.throttle.forget_verified();
    }

    fn accounts(&self) -> Arc<Accounts> {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks a user's password at `now_ms`. Each attempt first reserves its place in the
    /// failure counts; past the limit every attempt, right or wrong, gets 429 until the window
    /// is over. A password check the pool cannot take now gets 429 too.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        client: &str,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let now = now_ms / 1000;
        let reservation = self.throttle.reserve(user, client, now).map_err(|r| {
            Error::new(ErrorCode::TooManyRequests)
                .with_message("too many failed logins; try again later")
                .with_header(header::RETRY_AFTER, HeaderValue::from(r.0.max(1)))
        })?;
        if !acceptable_credential(user, password) {
            self.count_failed_login();
            return Ok(false);
        }
        if self.throttle.remembered(user, password, now) {
            self.throttle.succeeded(reservation);
            return Ok(true);
        }
        let accounts = self.accounts();
        let (u, p) = (user.to_string(), password.to_string());
        let ok = self
            .checker
            .run(Box::new(move || accounts.htpasswd.verify(&u, &p)))
            .await
            .map_err(|Busy| {
                Error::new(ErrorCode::TooManyRequests)
                    .with_message("too many logins in progress; try again shortly")
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            })?;
        if ok {
            self.throttle.succeeded(reservation);
            self.throttle.remember(user, password, now);
        } else {
            self.count_failed_login();
        }
        Ok(ok)
    }

    fn count_failed_login(&self) {
        self.failed_logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many logins were refused for a wrong user or password since the start.
    pub fn failed_logins(&self) -> u64 {
        self.failed_logins
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Who sent a request, from its `Authorization` header. Bad credentials and bad tokens
    /// are refused here (401, or 429 past the failure limit); no header is [`Principal::Anonymous`].
    /// In open mode credentials are not looked at.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client: &str,
        realm: &str,
        now_ms: u64,
    ) -> Result<Principal, Error> {
        if self.mode == Mode::Open {
            return Ok(Principal::Anonymous);
        }
        match presented(headers) {
            Presented::Nothing => Ok(Principal::Anonymous),
            Presented::Malformed => Err(self
                .unauthorized(realm, None, None)
                .with_message("malformed Authorization header")),
            Presented::Basic(None) => Err(self
                .unauthorized(realm, None, None)
                .with_message("malformed Basic credentials")),
            Presented::Basic(Some((user, password))) => {
                if self.login(&user, &password, client, now_ms).await? {
                    return Ok(Principal::User(user));
                }
                Err(self
                    .unauthorized(realm, None, None)
                    .with_message("invalid username or password"))
            }
            Presented::Bearer(token) => self
                .token_key
                .as_ref()
                .and_then(|k| k.verify(&token, now_ms / 1000))
                // A token is only as good as its user's current standing: a removed user's
                // tokens end with the user.
                .filter(|c| c.sub.is_empty() || self.accounts().htpasswd.contains(&c.sub))
                .map(Principal::Token)
                .ok_or_else(|| {
                    self.unauthorized(realm, None, Some("invalid_token"))
                        .with_message("invalid or expired token")
                }),
        }
    }

    /// Whether `p` may do `action` on `repo`, by the mode, the user's current grants and, for
    /// a token, its scopes too.
    pub fn allows(&self, p: &Principal, repo: &str, action: Action) -> bool {
        if self.mode == Mode::ReadOnly && action != Action::Pull {
            return false;
        }
        if action.anonymous_allowed(self.mode) {
            return true;
        }
        let user_may = |u: &str| self.accounts().grants.allows(u, repo, action);
        match p {
            Principal::Anonymous => false,
            Principal::User(u) => user_may(u),
            Principal::Token(c) => c.allows(repo, action) && (c.sub.is_empty() || user_may(&c.sub)),
        }
    }

    /// Whether the catalog shows `repo` to `p`: what its user (a token's subject) may pull.
    pub fn can_list(&self, p: &Principal, repo: &str) -> bool {
        Action::Pull.anonymous_allowed(self.mode)
            || p.user()
                .is_some_and(|u| self.accounts().grants.allows(u, repo, Action::Pull))
    }

    /// Lets the request through, or says why not: 401 with a challenge when credentials (or a
    /// token with more scope) would help, 403 DENIED when they would not.
    pub fn check(&self, p: &Principal, need: Need<'_>, realm: &str) -> Result<(), Error> {
        if self.mode == Mode::Open {
            return Ok(());
        }
        let anonymous = p.user().is_none();
        let (repo, action) = match need {
            Need::Nothing => return Ok(()),
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
        let scope = Scope::for_challenge(repo, action);
        match p {
            Principal::Anonymous => Err(self.unauthorized(realm, Some(&scope), None)),
            // A token without the scope: another token (or credentials, for an anonymous one)
            // may have it. The token spec's `insufficient_scope` tells the client so.
            Principal::Token(c)
                if c.sub.is_empty() || self.accounts().grants.allows(&c.sub, repo, action) =>
            {
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
    pub async fn issue_token(
        &self,
        credentials: Option<(String, String)>,
        scopes: &[String],
        client: &str,
        now_ms: u64,
    ) -> Result<serde_json::Value, Error> {
        let key = self.token_key.as_ref().ok_or_else(|| {
            crate::route::not_found().with_message("this registry does not issue tokens")
        })?;
        let basic = || self.token_unauthorized();
        let principal = match credentials {
            Some((user, password)) => {
                if !self.login(&user, &password, client, now_ms).await? {
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
            let granted = requested.granted(|repo, a| self.allows(&principal, repo, a));
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
        let sub = principal.user().unwrap_or_default().to_string();
        // Whole seconds, rounded up: a token never expires before its TTL is over.
        let exp = (now_ms + self.token_ttl_ms).div_ceil(1000);
        let token = key
            .sign(&Claims {
                sub,
                access,
                iat: now_ms / 1000,
                exp,
            })
            .map_err(Error::internal)?;
        Ok(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": self.token_ttl_ms / 1000,
        }))
    }
}

/// What a request's `Authorization` header presents. A scheme other than Basic or Bearer
/// counts as nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    Nothing,
    /// A header that is not visible ASCII: never read as no credentials.
    Malformed,
    /// Basic credentials: `None` when they do not decode to `user:password`.
    Basic(Option<(String, String)>),
    Bearer(String),
}

pub fn presented(headers: &HeaderMap) -> Presented {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Presented::Nothing;
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
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
mod tests;
