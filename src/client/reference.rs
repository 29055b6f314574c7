//! Image references in skopeo's transport syntax: `docker://HOST/REPO[:TAG|@DIGEST]` (with an
//! optional `http://` or `https://` after `docker://`), `oci:DIR[:TAG]` and
//! `docker-archive:FILE[:REF]`.

use std::path::PathBuf;

use super::{Error, Result};
use crate::digest::Digest;

/// A registry's address: its scheme and `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `host[:port]`, as written.
    pub authority: String,
    /// `Some(false)` for an explicit `http://`, `Some(true)` for `https://`, `None` when not
    /// said (HTTPS, or plain HTTP under `--insecure`).
    pub tls: Option<bool>,
}

impl Host {
    /// Parses `[http://|https://]host[:port]`.
    pub fn parse(s: &str) -> Result<Host> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Some(false), r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Some(true), r)
        } else {
            (None, s)
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty()
            || authority.contains('/')
            || !authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c))
        {
            return Err(Error::msg(format!("{s:?} is not a registry host[:port]")));
        }
        Ok(Host {
            authority: authority.to_string(),
            tls,
        })
    }

    /// The name auth files key credentials by.
    pub fn auth_key(&self) -> &str {
        if self.authority == "registry-1.docker.io" {
            "docker.io"
        } else {
            &self.authority
        }
    }
}

/// What a `docker://` reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    Tag(String),
    Digest(Digest),
    /// No tag or digest was given.
    None,
}

/// `docker://HOST/REPO[:TAG|@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub host: Host,
    pub repo: String,
    pub tag: Tag,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Docker(Remote),
    Oci {
        dir: PathBuf,
        tag: Option<String>,
    },
    /// `path` is `-` for stdin; `image` is `name:tag` or `@N` (the N-th image, from 0).
    Archive {
        path: String,
        image: Option<String>,
    },
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn valid_repo(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        })
}

impl Remote {
    /// Parses what follows `docker://`. A first component without a `.` or `:` (and not
    /// `localhost`) is a Docker Hub name, as docker reads it.
    pub fn parse(s: &str) -> Result<Remote> {
        let bad = |why: &str| Error::msg(format!("docker://{s}: {why}"));
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            ("http://", r)
        } else if let Some(r) = s.strip_prefix("https://") {
            ("https://", r)
        } else {
            ("", s)
        };
        let rest = rest.trim_start_matches('/');
        let (host, path) = match rest.split_once('/') {
            Some((h, p)) if !scheme.is_empty() || h.contains(['.', ':']) || h == "localhost" => {
                (h.to_string(), p.to_string())
            }
            _ if !scheme.is_empty() => return Err(bad("no repository after the host")),
            _ => {
                let p = if rest.contains('/') {
                    rest.to_string()
                } else {
                    format!("library/{rest}")
                };
                ("registry-1.docker.io".to_string(), p)
            }
        };
        let host = Host::parse(&format!("{scheme}{host}"))?;
        let (repo, tag) = if let Some((r, d)) = path.split_once('@') {
            let d = Digest::parse(d).map_err(|_| bad("the digest is not valid"))?;
            (r.to_string(), Tag::Digest(d))
        } else {
            match path.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => {
                    if !valid_tag(t) {
                        return Err(bad("the tag is not valid"));
                    }
                    (r.to_string(), Tag::Tag(t.to_string()))
                }
                _ => (path.clone(), Tag::None),
            }
        };
        if !valid_repo(&repo) {
            return Err(bad(
                "the repository name is not valid (lower case, digits, . _ - and /)",
            ));
        }
        Ok(Remote { host, repo, tag })
    }
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef> {
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(ImageRef::Docker(Remote::parse(rest)?));
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_last_colon(rest);
            if dir.is_empty() {
                return Err(Error::msg(format!("{s}: no directory")));
            }
            if let Some(t) = &tag {
                if !valid_tag(t) {
                    return Err(Error::msg(format!("{s}: the tag {t:?} is not valid")));
                }
            }
            return Ok(ImageRef::Oci {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            // `FILE:name:tag` or `FILE:@N`: the file is everything before the first ':'.
            let (path, image) = match rest.split_once(':') {
                Some((p, i)) => (p.to_string(), Some(i.to_string()).filter(|i| !i.is_empty())),
                None => (rest.to_string(), None),
            };
            if path.is_empty() {
                return Err(Error::msg(format!("{s}: no file (use - for stdin)")));
            }
            return Ok(ImageRef::Archive { path, image });
        }
        Err(Error::msg(format!(
            "{s}: unknown transport (use docker://, oci: or docker-archive:)"
        )))
    }
}

/// `dir:tag` → (`dir`, `tag`), when what follows the last ':' looks like a tag.
fn split_last_colon(s: &str) -> (String, Option<String>) {
    match s.rsplit_once(':') {
        Some((d, t)) if !t.contains('/') && !d.is_empty() => (d.to_string(), Some(t.to_string())),
        _ => (s.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_transports() {
        let r = ImageRef::parse("docker://127.0.0.1:5000/a/b:1").unwrap();
        let ImageRef::Docker(r) = r else { panic!() };
        assert_eq!(r.host.authority, "127.0.0.1:5000");
        assert_eq!(r.host.tls, None);
        assert_eq!((r.repo.as_str(), r.tag), ("a/b", Tag::Tag("1".into())));
        let ImageRef::Docker(r) = ImageRef::parse("docker://http://localhost:5000/x").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.host.tls, r.repo.as_str(), r.tag),
            (Some(false), "x", Tag::None)
        );
        let ImageRef::Docker(r) = ImageRef::parse("docker://alpine:3").unwrap() else {
            panic!()
        };
        assert_eq!(r.host.authority, "registry-1.docker.io");
        assert_eq!(r.repo, "library/alpine");
        let d = format!("sha256:{}", "a".repeat(64));
        let ImageRef::Docker(r) = ImageRef::parse(&format!("docker://h.io/x@{d}")).unwrap() else {
            panic!()
        };
        assert_eq!(r.tag, Tag::Digest(Digest::parse(&d).unwrap()));
        assert_eq!(
            ImageRef::parse("oci:/tmp/l:v1").unwrap(),
            ImageRef::Oci {
                dir: "/tmp/l".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/tmp/l").unwrap(),
            ImageRef::Oci {
                dir: "/tmp/l".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageRef::parse("docker-archive:-").unwrap(),
            ImageRef::Archive {
                path: "-".into(),
                image: None
            }
        );
        assert_eq!(
            ImageRef::parse("docker-archive:a.tar:app:1").unwrap(),
            ImageRef::Archive {
                path: "a.tar".into(),
                image: Some("app:1".into())
            }
        );
        for bad in [
            "docker://h.io/UPPER:1",
            "docker://h.io/x:bad tag",
            "ftp://x",
            "oci:",
            "docker://http://h",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
