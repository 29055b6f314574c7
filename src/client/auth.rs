//! Credentials and challenges: `--creds USER:PASS`, the docker/podman auth files, and the
//! `WWW-Authenticate` challenge of the token protocol (Bearer) or of Basic-only registries.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;

pub use crate::mirror::challenge::{token_from_json, Challenge};

use super::{Error, Result};

/// A user and password. Never printed: `Debug` shows the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.user)
    }
}

impl Credentials {
    /// `USER:PASS`, as `--creds` takes it.
    pub fn parse(s: &str) -> Result<Credentials> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                user: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(Error::msg("--creds takes USER:PASSWORD")),
        }
    }

    /// The value of an `Authorization: Basic` header.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The auth files looked at, in order: `--authfile`, `$REGISTRY_AUTH_FILE`,
/// `${XDG_RUNTIME_DIR}/containers/auth.json`, `$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`.
pub fn auth_files(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        out.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        out.push(PathBuf::from(d).join("containers/auth.json"));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        out.push(PathBuf::from(d).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME") {
        out.push(PathBuf::from(h).join(".docker/config.json"));
    }
    out
}

/// `host` as auth files key it: no scheme, no path (`https://index.docker.io/v1/` is
/// docker.io).
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// The credentials an auth file holds for `host` (`{"auths": {"host": {"auth": base64}}}`).
/// An explicit file that cannot be read or parsed is an error; the default ones are skipped.
pub fn from_auth_files(host: &str, explicit: Option<&Path>) -> Result<Option<Credentials>> {
    for file in auth_files(explicit) {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if explicit.is_some() => {
                return Err(Error::msg(format!("{}: {e}", file.display())))
            }
            Err(_) => continue,
        };
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) if explicit.is_some() => {
                return Err(Error::msg(format!("{}: not JSON: {e}", file.display())))
            }
            Err(_) => continue,
        };
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        for (key, entry) in auths {
            if normalize_key(key) != host {
                continue;
            }
            if let Some(c) = entry
                .get("auth")
                .and_then(|a| a.as_str())
                .and_then(decode_auth)
            {
                return Ok(Some(c));
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|u| u.as_str()),
                entry.get("password").and_then(|p| p.as_str()),
            ) {
                return Ok(Some(Credentials {
                    user: u.to_string(),
                    password: p.to_string(),
                }));
            }
        }
    }
    Ok(None)
}

fn decode_auth(b64: &str) -> Option<Credentials> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    Credentials::parse(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        std::fs::write(
            &f,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{b64}"}},"h:5000":{{"auth":"{b64}"}}}}}}"#),
        )
        .unwrap();
        let c = from_auth_files("docker.io", Some(&f)).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("u", "p:w"));
        assert!(from_auth_files("h:5000", Some(&f)).unwrap().is_some());
        assert!(from_auth_files("other", Some(&f)).unwrap().is_none());
        assert!(!format!("{c:?}").contains("p:w"));
        assert!(from_auth_files("x", Some(&dir.path().join("missing"))).is_err());
    }
}
