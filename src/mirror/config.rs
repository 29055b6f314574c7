//! The mirrors' configuration, the same on both adapters: `--mirror PREFIX=URL` (repeatable;
//! the Worker's `MIRRORS`, space-separated), `--default-mirror PREFIX` (`DEFAULT_MIRROR`),
//! `--mirror-library PREFIX` (`MIRROR_LIBRARY`), `--mirror-credentials FILE` (the secret
//! `MIRROR_CREDENTIALS`: lines of `PREFIX USER PASSWORD`) and `--mirror-tag-ttl`
//! (`MIRROR_TAG_TTL`). Everything is checked at start; an error names what is wrong and never
//! quotes a password.

use std::fmt;

use url::Url;

use crate::names::Name;

/// Docker Hub's hosts: a mirror of one of them (or with the prefix `docker.io`) maps one-part
/// names to `library/`.
const DOCKER_HUB_HOSTS: [&str; 3] = ["registry-1.docker.io", "index.docker.io", "docker.io"];

/// The default time a cached tag is served without asking upstream.
pub const DEFAULT_TAG_TTL: u64 = 300;

/// A user and password for an upstream. Never printed.
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
    /// The value of an `Authorization: Basic` header.
    pub fn basic(&self) -> String {
        use base64::Engine;
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// One upstream registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The repository prefix it is served under (`docker.io`).
    pub prefix: String,
    /// Its base URL (`https://registry-1.docker.io/`), without credentials, query or path.
    pub url: Url,
    /// Whether one-part names get `library/` (Docker Hub).
    pub library: bool,
    pub credentials: Option<Credentials>,
}

impl Upstream {
    /// The URL as written for people (no trailing `/`).
    pub fn display_url(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }
}

/// Every mirror, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub upstreams: Vec<Upstream>,
    /// The index of the mirror that serves names without a prefix.
    pub default: Option<usize>,
    /// Seconds a cached tag is served without asking upstream.
    pub tag_ttl: u64,
}

/// The raw values, as the adapter read them.
#[derive(Debug, Clone, Default)]
pub struct Raw<'a> {
    /// `PREFIX=URL` each.
    pub mirrors: Vec<&'a str>,
    pub default: Option<&'a str>,
    pub library: Vec<&'a str>,
    /// The credentials file's text.
    pub credentials: Option<&'a str>,
    pub tag_ttl: Option<&'a str>,
}

impl Config {
    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// Parses and checks the raw values. Errors name the option (by its native flag; the
    /// Worker's var has the same name in upper snake case).
    pub fn parse(raw: &Raw<'_>) -> Result<Config, String> {
        let mut upstreams: Vec<Upstream> = Vec::new();
        for m in raw
            .mirrors
            .iter()
            .map(|m| m.trim())
            .filter(|m| !m.is_empty())
        {
            let (prefix, url) = m
                .split_once('=')
                .ok_or_else(|| format!("--mirror {m:?}: expected PREFIX=URL"))?;
            let prefix = prefix.trim();
            if Name::parse(prefix).is_err() {
                return Err(format!(
                    "--mirror {m:?}: the prefix {prefix:?} is not a repository name (lower case, like docker.io or ghcr.io)"
                ));
            }
            if upstreams.iter().any(|u| u.prefix == prefix) {
                return Err(format!("--mirror: the prefix {prefix:?} is given twice"));
            }
            let url = parse_url(url.trim()).map_err(|e| format!("--mirror {prefix}=…: {e}"))?;
            let hub = prefix == "docker.io"
                || url
                    .host_str()
                    .is_some_and(|h| DOCKER_HUB_HOSTS.contains(&h));
            upstreams.push(Upstream {
                prefix: prefix.to_string(),
                url,
                library: hub,
                credentials: None,
            });
        }
        let find = |upstreams: &[Upstream], option: &str, p: &str| -> Result<usize, String> {
            upstreams
                .iter()
                .position(|u| u.prefix == p)
                .ok_or_else(|| format!("{option} {p:?}: no --mirror has that prefix"))
        };
        let default = match raw.default.map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) => Some(find(&upstreams, "--default-mirror", d)?),
            None => None,
        };
        for p in raw
            .library
            .iter()
            .flat_map(|l| l.split([' ', ',']))
            .filter(|p| !p.is_empty())
        {
            let i = find(&upstreams, "--mirror-library", p)?;
            upstreams[i].library = true;
        }
        if let Some(text) = raw.credentials {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let bad = || {
                    format!(
                        "--mirror-credentials line {}: expected PREFIX USER PASSWORD",
                        n + 1
                    )
                };
                let mut fields = line.splitn(3, char::is_whitespace);
                let (Some(prefix), Some(user), Some(password)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(bad());
                };
                let password = password.trim();
                if user.is_empty() || password.is_empty() || user.contains(':') {
                    return Err(bad());
                }
                if password.chars().any(char::is_control) || user.chars().any(char::is_control) {
                    return Err(format!(
                        "--mirror-credentials line {}: control characters",
                        n + 1
                    ));
                }
                let i = upstreams
                    .iter()
                    .position(|u| u.prefix == prefix)
                    .ok_or_else(|| {
                        format!(
                            "--mirror-credentials line {}: no --mirror has the prefix {prefix:?}",
                            n + 1
                        )
                    })?;
                if upstreams[i].credentials.is_some() {
                    return Err(format!(
                        "--mirror-credentials line {}: a second line for {prefix:?}",
                        n + 1
                    ));
                }
                upstreams[i].credentials = Some(Credentials {
                    user: user.to_string(),
                    password: password.to_string(),
                });
            }
        }
        let tag_ttl = match raw.tag_ttl.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => {
                crate::settings::parse_duration(t).map_err(|e| format!("--mirror-tag-ttl: {e}"))?
            }
            None => DEFAULT_TAG_TTL,
        };
        Ok(Config {
            upstreams,
            default,
            tag_ttl,
        })
    }
}

/// An upstream's URL: `http` or `https`, a host, nothing else (no credentials: they go in the
/// credentials file; no path, query or fragment).
fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?}: the URL must be http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?}: the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL holds credentials: put them in --mirror-credentials instead".to_string(),
        );
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{s:?}: the URL must be the registry's root (no path, query or fragment)"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(mirrors: &[&str]) -> Result<Config, String> {
        Config::parse(&Raw {
            mirrors: mirrors.to_vec(),
            ..Raw::default()
        })
    }

    #[test]
    fn mirrors_default_library_and_ttl() {
        let c = Config::parse(&Raw {
            mirrors: vec![
                "docker.io=https://registry-1.docker.io",
                "ghcr.io=https://ghcr.io/",
                "local=http://127.0.0.1:5000",
            ],
            default: Some("docker.io"),
            library: vec!["local"],
            credentials: Some("# comment\n\nghcr.io bob s3cret with spaces\n"),
            tag_ttl: Some("10m"),
        })
        .unwrap();
        assert_eq!(c.upstreams.len(), 3);
        assert_eq!(c.default, Some(0));
        assert_eq!(c.tag_ttl, 600);
        assert!(c.upstreams[0].library && !c.upstreams[1].library && c.upstreams[2].library);
        let creds = c.upstreams[1].credentials.as_ref().unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.password.as_str()),
            ("bob", "s3cret with spaces")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.upstreams[1].display_url(), "https://ghcr.io");
        assert_eq!(parse(&[]).unwrap().tag_ttl, DEFAULT_TAG_TTL);
        // Docker Hub by host, under another prefix.
        assert!(parse(&["hub=https://index.docker.io"]).unwrap().upstreams[0].library);
    }

    #[test]
    fn bad_values_are_refused_with_a_clear_message() {
        for (mirrors, want) in [
            (vec!["docker.io"], "PREFIX=URL"),
            (vec!["Docker=https://x"], "not a repository name"),
            (vec!["a=ftp://x"], "http:// or https://"),
            (vec!["a=not a url"], "not a URL"),
            (vec!["a=https://u:p@x"], "credentials"),
            (vec!["a=https://x/v2/"], "root"),
            (vec!["a=https://x", "a=https://y"], "twice"),
        ] {
            let e = parse(&mirrors).unwrap_err();
            assert!(e.contains(want), "{mirrors:?}: {e}");
            assert!(!e.contains(":p@"), "{e}");
        }
        let m = vec!["a=https://x"];
        let with = |raw: Raw<'static>| Config::parse(&raw).unwrap_err();
        let e = with(Raw {
            mirrors: m.clone(),
            default: Some("b"),
            ..Raw::default()
        });
        assert!(e.starts_with("--default-mirror"), "{e}");
        let e = with(Raw {
            mirrors: m.clone(),
            library: vec!["b"],
            ..Raw::default()
        });
        assert!(e.starts_with("--mirror-library"), "{e}");
        for creds in ["a bob", "b bob pw", "a bob pw\na bob pw2", "a b:c pw"] {
            let e = with(Raw {
                mirrors: m.clone(),
                credentials: Some(creds),
                ..Raw::default()
            });
            assert!(e.starts_with("--mirror-credentials line"), "{e}");
            assert!(!e.contains("pw"), "{e}");
        }
        let e = with(Raw {
            mirrors: m,
            tag_ttl: Some("soon"),
            ..Raw::default()
        });
        assert!(e.starts_with("--mirror-tag-ttl"), "{e}");
    }
}
