//! The registry's settings: one type, one table of names and defaults. The native server reads
//! them from flags and `EDGE_REGISTRY_*` variables, the Worker from its vars; both hand this
//! module a lookup and get the same [`Settings`], checked the same way.

use crate::auth::Mode;

/// One setting: its Worker var, its native flag (the environment variable is
/// `EDGE_REGISTRY_` and the flag in upper snake case), its default and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub var: &'static str,
    pub flag: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every setting. Durations are written `90s`, `10m`, `1h`, `7d` (a bare number is seconds).
pub const SETTINGS: &[Setting] = &[
    Setting {
        var: "BASE_URL",
        flag: "base-url",
        default: "",
        help: "Public base URL for Location and Link headers and the token realm (default: path-absolute URLs, and the realm from the request's Host)",
    },
    Setting {
        var: "AUTH_MODE",
        flag: "auth",
        default: "open",
        help: "Who may do what: open, anonymous-pull, authenticated or read-only (the Worker's default is authenticated)",
    },
    Setting {
        var: "TOKEN_TTL",
        flag: "token-ttl",
        default: "300",
        help: "Lifetime of issued tokens (a duration)",
    },
    Setting {
        var: "MAX_LOGIN_FAILURES",
        flag: "max-login-failures",
        default: "10",
        help: "Failed logins a user may make from one address per minute before it gets 429 (an address may make 5 times as many)",
    },
    Setting {
        var: "MAX_UPLOAD_SESSIONS",
        flag: "max-upload-sessions",
        default: "1000",
        help: "Upload sessions open at once; past this, new ones get 429",
    },
    Setting {
        var: "UPLOAD_TTL",
        flag: "upload-ttl",
        default: "24h",
        help: "How long an upload session may go without a request before it expires and its data is removed (a duration)",
    },
    Setting {
        var: "MAX_BLOB_SIZE",
        flag: "max-blob-size",
        default: "34359738368",
        help: "Largest blob accepted, in bytes",
    },
    Setting {
        var: "BODY_TIMEOUT",
        flag: "body-timeout",
        default: "60",
        help: "How long a request body may send nothing before the request is abandoned (a duration; native)",
    },
    Setting {
        var: "MAX_CHUNK_LENGTH",
        flag: "max-chunk-length",
        default: "0",
        help: "Chunk size advertised as OCI-Chunk-Max-Length on the upload POST, in bytes, for clients behind a body limit (0: not advertised; the Worker's default is 95000000, under Cloudflare's 100 MB); larger chunks are still accepted",
    },
    Setting {
        var: "CATALOG_CACHE_TTL",
        flag: "catalog-cache-ttl",
        default: "60",
        help: "How long the catalog may be served from a cache (a duration; 0 turns it off; the Worker's KV)",
    },
    Setting {
        var: "GC_GRACE",
        flag: "gc-grace",
        default: "1h",
        help: "Garbage collection: nothing stored or pushed more recently than this is collected (a duration)",
    },
    Setting {
        var: "GC_DELETE_UNTAGGED",
        flag: "gc-delete-untagged",
        default: "false",
        help: "Garbage collection: let untagged manifests go too, unless something live references them (true or false)",
    },
];

/// The settings, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub base_url: String,
    pub auth_mode: Mode,
    /// Seconds.
    pub token_ttl: u64,
    pub max_login_failures: u32,
    pub max_upload_sessions: usize,
    /// Seconds.
    pub upload_ttl: u64,
    pub max_blob_size: u64,
    /// Seconds.
    pub body_timeout: u64,
    /// Seconds.
    pub catalog_cache_ttl: u64,
    /// Advertised in `OCI-Chunk-Max-Length` when not 0.
    pub max_chunk_length: u64,
    /// Seconds.
    pub gc_grace: u64,
    pub gc_delete_untagged: bool,
    /// Largest manifest accepted; larger ones get 413 (not a setting: the spec's 4 MiB).
    pub max_manifest_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_lookup(|_| None).expect("the defaults parse")
    }
}

/// Parses a duration: `90s`, `10m`, `1h`, `7d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration (like 90s, 10m, 1h or 7d)");
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

/// Parses `true` or `false` (also `yes`/`no`, `1`/`0`, `on`/`off`).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))
}

impl Settings {
    /// Parses every setting from `lookup(var)`; a missing or empty value takes the default.
    /// An error names the setting and what is wrong, never ignores it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        Self::from_lookup_with_defaults(lookup, &[])
    }

    /// As [`Settings::from_lookup`], with some defaults replaced (`(var, default)`), for an
    /// adapter whose defaults differ (the Worker is `authenticated` unless told otherwise).
    pub fn from_lookup_with_defaults(
        lookup: impl Fn(&str) -> Option<String>,
        defaults: &[(&str, &str)],
    ) -> Result<Settings, String> {
        let get = |var: &str| -> String {
            lookup(var)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| {
                    defaults
                        .iter()
                        .find(|(v, _)| *v == var)
                        .map(|(_, d)| d.to_string())
                })
                .or_else(|| {
                    SETTINGS
                        .iter()
                        .find(|s| s.var == var)
                        .map(|s| s.default.to_string())
                })
                .unwrap_or_default()
        };
        fn named<T>(var: &str, r: Result<T, String>) -> Result<T, String> {
            r.map_err(|e| format!("{var}: {e}"))
        }
        Ok(Settings {
            base_url: get("BASE_URL").trim().trim_end_matches('/').to_string(),
            auth_mode: named("AUTH_MODE", get("AUTH_MODE").trim().parse())?,
            token_ttl: named("TOKEN_TTL", parse_duration(&get("TOKEN_TTL")))?.max(1),
            max_login_failures: named("MAX_LOGIN_FAILURES", number(&get("MAX_LOGIN_FAILURES")))?,
            max_upload_sessions: named("MAX_UPLOAD_SESSIONS", number(&get("MAX_UPLOAD_SESSIONS")))?,
            upload_ttl: named("UPLOAD_TTL", parse_duration(&get("UPLOAD_TTL")))?,
            max_blob_size: named("MAX_BLOB_SIZE", number(&get("MAX_BLOB_SIZE")))?,
            body_timeout: named("BODY_TIMEOUT", parse_duration(&get("BODY_TIMEOUT")))?.max(1),
            catalog_cache_ttl: named(
                "CATALOG_CACHE_TTL",
                parse_duration(&get("CATALOG_CACHE_TTL")),
            )?,
            max_chunk_length: named("MAX_CHUNK_LENGTH", number(&get("MAX_CHUNK_LENGTH")))?,
            gc_grace: named("GC_GRACE", parse_duration(&get("GC_GRACE")))?,
            gc_delete_untagged: named(
                "GC_DELETE_UNTAGGED",
                parse_bool(&get("GC_DELETE_UNTAGGED")),
            )?,
            max_manifest_size: 4 * 1024 * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, want) in [
            ("90s", 90),
            ("10m", 600),
            ("1h", 3600),
            ("7d", 604_800),
            ("42", 42),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for bad in ["", "h", "1w", "-1s", "1.5h", "1 h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_overrides_and_errors() {
        let d = Settings::default();
        assert_eq!(d.auth_mode, Mode::Open);
        assert_eq!(d.upload_ttl, 86_400);
        assert_eq!(d.max_upload_sessions, 1000);
        assert_eq!(d.max_blob_size, 32 << 30);
        let worker =
            Settings::from_lookup_with_defaults(|_| None, &[("AUTH_MODE", "authenticated")])
                .unwrap();
        assert_eq!(worker.auth_mode, Mode::Authenticated);
        assert_eq!(d.max_chunk_length, 0);
        let s = Settings::from_lookup(|v| (v == "UPLOAD_TTL").then(|| "2h".to_string())).unwrap();
        assert_eq!(s.upload_ttl, 7200);
        let e =
            Settings::from_lookup(|v| (v == "UPLOAD_TTL").then(|| "soon".to_string())).unwrap_err();
        assert!(e.starts_with("UPLOAD_TTL: "), "{e}");
        let e = Settings::from_lookup(|v| (v == "AUTH_MODE").then(|| "everyone".to_string()))
            .unwrap_err();
        assert!(e.starts_with("AUTH_MODE: "), "{e}");
        // Every setting has a distinct var and flag.
        let mut vars: Vec<_> = SETTINGS.iter().map(|s| s.var).collect();
        let mut flags: Vec<_> = SETTINGS.iter().map(|s| s.flag).collect();
        vars.sort();
        vars.dedup();
        flags.sort();
        flags.dedup();
        assert_eq!((vars.len(), flags.len()), (SETTINGS.len(), SETTINGS.len()));
    }
}
