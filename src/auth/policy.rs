//! Who may do what: the access modes, the actions (spelled once), grants on repository-name
//! patterns, and the scopes of the token protocol.

use serde::{Deserialize, Serialize};

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

impl Mode {
    const NAMES: [(Mode, &'static str); 4] = [
        (Mode::Open, "open"),
        (Mode::AnonymousPull, "anonymous-pull"),
        (Mode::Authenticated, "authenticated"),
        (Mode::ReadOnly, "read-only"),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("open", |(_, n)| n)
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Mode::NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| *m)
            .ok_or_else(|| {
                format!("unknown mode {s:?} (open, anonymous-pull, authenticated, read-only)")
            })
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

    /// The action's name in scopes, grants and challenges.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
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

/// `pull,push`, or `*` for every action.
pub(crate) fn parse_actions(s: &str) -> Option<Vec<Action>> {
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

    /// The part of this scope for which `allowed` says yes.
    pub fn granted(&self, allowed: impl Fn(&str, Action) -> bool) -> Scope {
        Scope {
            name: self.name.clone(),
            actions: self
                .actions
                .iter()
                .copied()
                .filter(|a| allowed(&self.name, *a))
                .collect(),
        }
    }

    /// The scope written back, as in a challenge: `repository:a/b:pull,push`.
    pub fn to_header(&self) -> String {
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        format!("repository:{}:{}", self.name, actions.join(","))
    }

    /// The scope a client should ask for to do `action`: pushing needs pull too, as clients ask.
    pub fn for_challenge(repo: &str, action: Action) -> Scope {
        Scope {
            name: repo.to_string(),
            actions: match action {
                Action::Pull => vec![Action::Pull],
                Action::Push => vec![Action::Pull, Action::Push],
                Action::Delete => vec![Action::Delete],
            },
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Nothing: the token endpoint and the web UI's files.
    Nothing,
    /// `/v2/`: the API version check, which is also how clients log in.
    Base,
    /// `/v2/_catalog`: its list is filtered to what the principal may pull.
    Catalog,
    Repo(&'a str, Action),
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for (mode, name) in Mode::NAMES {
            assert_eq!(mode.as_str(), name);
        }
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
        let grant = Grant::parse("team-a/*=pull").unwrap();
        assert_eq!(
            s.granted(|r, a| grant.allows(r, a)).actions,
            vec![Action::Pull]
        );
        for bad in [
            "registry:catalog:*",
            "repository:Bad:pull",
            "repository:a:fly",
            "repository:a",
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad}");
        }
    }
}
