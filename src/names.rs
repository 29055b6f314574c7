//! Repository names, tags and manifest references, per the spec's grammar.

use crate::digest::Digest;
use crate::error::{Error, ErrorCode};

/// Longest repository name we accept (the reference registry's limit).
pub const MAX_NAME_LEN: usize = 255;

/// A validated repository name, e.g. `library/alpine`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates a whole name: `/`-separated components, each
    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most 255 characters in all.
    pub fn parse(s: &str) -> Result<Name, Error> {
        Name::from_components(s.split('/'))
    }

    /// Validates the name from its path segments (already percent-decoded). A segment that
    /// decoded to something containing `/` is rejected, so `%2F` cannot forge components.
    pub fn from_components<'a>(parts: impl IntoIterator<Item = &'a str>) -> Result<Name, Error> {
        let mut name = String::new();
        for (i, part) in parts.into_iter().enumerate() {
            if !is_component(part) {
                return Err(name_invalid(part));
            }
            if i > 0 {
                name.push('/');
            }
            name.push_str(part);
            if name.len() > MAX_NAME_LEN {
                return Err(Error::new(ErrorCode::NameInvalid).with_message(format!(
                    "repository name longer than {MAX_NAME_LEN} characters"
                )));
            }
        }
        if name.is_empty() {
            return Err(name_invalid(""));
        }
        Ok(Name(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn name_invalid(part: &str) -> Error {
    Error::new(ErrorCode::NameInvalid)
        .with_message("invalid repository name")
        .with_detail(serde_json::json!({ "component": part }))
}

fn is_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or one or more "-", always followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, Error> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(Error::new(ErrorCode::ManifestInvalid)
                .with_message("invalid tag")
                .with_detail(serde_json::json!({ "tag": s })))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// A reference with a `:` is a digest (tags cannot hold one); anything else is a tag.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/alpine",
            "a/b/c/d/e",
            "my-repo",
            "my--repo",
            "a.b",
            "a_b",
            "a__b",
            "0",
            "x9/y-1.z__w",
        ] {
            assert_eq!(Name::parse(ok).unwrap().as_str(), ok);
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a_-b",
            "..",
            ".",
            "a/../b",
            "a b",
            "a%2fb",
            "_a",
            "a:b",
            long.as_str(),
        ] {
            assert_eq!(
                Name::parse(bad).unwrap_err().code,
                ErrorCode::NameInvalid,
                "{bad:?}"
            );
        }
        assert!(Name::parse(&"a".repeat(255)).is_ok());
        assert!(Name::from_components(["a/b"]).is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", &"t".repeat(129), "é"] {
            assert_eq!(
                Tag::parse(bad).unwrap_err().code,
                ErrorCode::ManifestInvalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn references() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(Reference::parse(d), Ok(Reference::Digest(_))));
        assert_eq!(
            Reference::parse("sha256:zz").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
    }
}
