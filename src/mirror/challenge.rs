//! The `WWW-Authenticate` challenge of the token protocol (Bearer) or of Basic-only
//! registries, and a token endpoint's answer: read by the mirror's upstream client (the core)
//! and by `edge-registry copy` / `verify` (the native client).

use std::collections::BTreeMap;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic`, lower case.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses `Scheme k="v", k2=v2` (RFC 7235 auth-params, quoted strings with escapes). Only
    /// the first challenge of the header is read.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, mut rest) = match header.split_once(' ') {
            Some((s, r)) => (s, r.trim()),
            None => (header, ""),
        };
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return None;
        }
        let mut params = BTreeMap::new();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key.trim().to_ascii_lowercase();
            if key.is_empty() || key.contains([' ', ',', '"']) {
                // The next challenge begins (`, Basic realm=...`): stop.
                break;
            }
            let after = after.trim_start();
            let (value, tail) = if let Some(q) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &q[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.insert(key, value);
            rest = tail.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    pub fn realm(&self) -> Option<&str> {
        self.params.get("realm").map(String::as_str)
    }
}

/// A token endpoint's answer: `token` or `access_token`.
pub fn token_from_json(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// A token endpoint's answer with its lifetime in seconds (`expires_in`), if it gives one.
pub fn token_with_expiry(body: &[u8]) -> Option<(String, Option<u64>)> {
    let token = token_from_json(body)?;
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some((token, v.get("expires_in").and_then(|e| e.as_u64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.realm(), Some("https://auth.example/token"));
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = Challenge::parse(r#"Basic realm="a \"b\"""#).unwrap();
        assert_eq!((c.scheme.as_str(), c.realm()), ("basic", Some("a \"b\"")));
        let c = Challenge::parse("Basic").unwrap();
        assert!(c.params.is_empty());
        assert!(Challenge::parse("").is_none());
        assert!(Challenge::parse(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn token_answers() {
        assert_eq!(
            token_with_expiry(br#"{"token":"t","expires_in":300}"#),
            Some(("t".to_string(), Some(300)))
        );
        assert_eq!(
            token_with_expiry(br#"{"access_token":"a"}"#),
            Some(("a".to_string(), None))
        );
        assert_eq!(token_with_expiry(br#"{"token":""}"#), None);
        assert_eq!(token_with_expiry(b"not json"), None);
    }
}
