//! The account files: users with bcrypt password hashes (htpasswd, the format the reference
//! registry reads) and per-user grants. Both are line files read by one loop that skips blank
//! lines and `#` comments; errors name the line, never its content.

use std::collections::HashMap;

use super::policy::{Action, Grant};

/// The meaningful lines of an account file, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Users and their bcrypt password hashes: `user:$2y$10$...` lines.
#[derive(Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl Htpasswd {
    /// Parses an htpasswd file. Errors name the line, never its content.
    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (n, line) in lines(text) {
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

    /// Whether `user` has a line.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
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
/// `bob team-b/*=pull,push shared/*=pull`, or `alice *=*` for everything. Once there are
/// grants (a grants file, or the Worker's GRANTS), a user without a line may do nothing;
/// without any ([`Grants::default`]) every user may do everything.
#[derive(Default)]
pub struct Grants {
    lines: HashMap<String, Vec<Grant>>,
    restricted: bool,
}

impl Grants {
    pub fn parse(text: &str) -> Result<Grants, String> {
        let mut out = HashMap::new();
        for (n, line) in lines(text) {
            let mut words = line.split_whitespace();
            let user = words.next().unwrap_or_default();
            let grants = words
                .map(Grant::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("grants line {n}: {e}"))?;
            out.insert(user.to_string(), grants);
        }
        Ok(Grants {
            lines: out,
            restricted: true,
        })
    }

    /// Whether `user` may do `action` on `repo`.
    pub fn allows(&self, user: &str, repo: &str, action: Action) -> bool {
        match self.lines.get(user) {
            Some(g) => g.iter().any(|g| g.allows(repo, action)),
            None => !self.restricted,
        }
    }
}

/// The users and their grants; replaced whole when the files change.
#[derive(Default)]
pub struct Accounts {
    pub htpasswd: Htpasswd,
    pub grants: Grants,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// alice (everything) and bob (team-b/ only), with cheap bcrypt hashes; carol has a
    /// password but no grants line.
    pub(crate) fn accounts() -> Accounts {
        let line = |u: &str, p: &str| {
            let parts = bcrypt::hash_with_salt(p, 4, [7u8; 16]).unwrap();
            format!("{u}:{}", parts.format_for_version(bcrypt::Version::TwoY))
        };
        Accounts {
            htpasswd: Htpasswd::parse(&format!(
                "# users\n{}\n\n{}\n{}\n",
                line("alice", "a-pw"),
                line("bob", "b-pw"),
                line("carol", "c-pw")
            ))
            .unwrap(),
            grants: Grants::parse("alice *=*\nbob team-b/*=pull,push\n").unwrap(),
        }
    }

    #[test]
    fn htpasswd_and_grants_files() {
        let a = accounts();
        assert_eq!(a.htpasswd.len(), 3);
        assert!(a.htpasswd.verify("alice", "a-pw"));
        assert!(!a.htpasswd.verify("alice", "b-pw"));
        assert!(!a.htpasswd.verify("carol", "a-pw"));
        assert!(a.grants.allows("alice", "x/y", Action::Delete));
        assert!(a.grants.allows("bob", "team-b/app", Action::Push));
        assert!(!a.grants.allows("bob", "team-a/app", Action::Pull));
        // With grants, no line means nothing; without any, everything.
        assert!(!a.grants.allows("carol", "x", Action::Pull));
        assert!(Grants::default().allows("carol", "x", Action::Delete));
        for bad in ["alice", ":$2y$04$", "alice:plaintext", "alice:{SHA}abc"] {
            let e = Htpasswd::parse(bad).err().unwrap();
            assert!(e.contains("line 1") && !e.contains("plaintext"), "{e}");
        }
        let e = Grants::parse("# c\n\nbob team-b/*=fly").err().unwrap();
        assert!(e.contains("line 3"), "{e}");
    }
}
