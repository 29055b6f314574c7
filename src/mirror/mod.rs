//! The pull-through cache: repositories under a mirror's prefix (`docker.io/library/nginx`)
//! are served from an upstream registry (`library/nginx` at `registry-1.docker.io`), and what
//! is pulled is cached in storage, verified, as if it had been pushed (the same links, records
//! and tags, so the collector treats it alike).
//!
//! - [`config`]: the mirrors, their credentials and the tag TTL, parsed the same on both
//!   adapters;
//! - [`upstream`]: the [`Fetch`] trait the adapters provide, and the token protocol, redirects
//!   and rate limits on top of it;
//! - [`share`]: how concurrent misses of one blob share one upstream fetch (natively);
//! - `serve`: the handlers (manifests with the tag TTL and stale-on-error, blobs streamed to
//!   the client while they are hashed and stored, tags, referrers);
//! - `tee`: the stream that does that for a blob.
//!
//! Routing ([`Mirrors::route`]): a name under a prefix goes to that mirror; containerd's
//! `?ns=<host>` picks the mirror of that prefix (or upstream host); the default mirror takes
//! reads of names under no prefix that are not repositories of this registry. On a mirror
//! whose upstream is Docker Hub (or named by `--mirror-library`), a one-part name gets
//! `library/`.

pub mod challenge;
pub mod config;
mod serve;
pub mod share;
mod tee;
pub mod upstream;

use std::sync::Arc;

use crate::error::Error;
use crate::names::Name;
use crate::storage::locks::Locks;

pub use config::{Config, Credentials, Raw, Upstream};
pub use share::{Direct, Fill, Share, StartFill};
pub use upstream::{Fetch, RateLimit, UpstreamError};

/// The mirrors of a registry, with their upstream sessions. Shared by all requests.
pub struct Mirrors {
    config: Config,
    fetch: Arc<dyn Fetch>,
    share: Arc<dyn Share>,
    sessions: upstream::Sessions,
    /// One refresh of a manifest (by repository and reference) at a time in this process.
    locks: Locks,
}

/// Where a request for a repository goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The mirror's index in [`Config::upstreams`].
    pub index: usize,
    /// The repository's name upstream (`library/nginx`).
    pub upstream_name: String,
    /// The repository's name here (`docker.io/library/nginx`), where it is cached.
    pub local: Name,
    /// Reached through the default mirror (the name had no prefix).
    pub by_default: bool,
}

/// How a mirrored request was served, for the adapter's log and metrics (a response
/// extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From storage, without asking upstream (or after a HEAD found it unchanged).
    Hit,
    /// Fetched from upstream.
    Miss,
    /// From storage, past its TTL, because the upstream failed or its rate limit is low.
    Stale,
    /// The upstream failed and nothing was cached.
    Failed,
}

/// What a mirrored request did (a response extension): which mirror, how it was served, the
/// upstream's rate limit, and notes for the log (never a credential).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub mirror: String,
    pub served: Option<Served>,
    pub rate_limit: Option<RateLimit>,
    pub notes: Vec<String>,
}

impl Mirrors {
    /// Mirrors that fetch with `fetch`, each request on its own (see [`Mirrors::with_share`]).
    pub fn new(config: Config, fetch: Arc<dyn Fetch>) -> Mirrors {
        Mirrors {
            config,
            fetch,
            share: Arc::new(Direct),
            sessions: upstream::Sessions::default(),
            locks: Locks::default(),
        }
    }

    /// How concurrent misses of one blob share a fetch.
    pub fn with_share(mut self, share: Arc<dyn Share>) -> Mirrors {
        self.share = share;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The mirror whose prefix `name` is under, if any (pushes there are refused).
    pub fn owner(&self, name: &Name) -> Option<&Upstream> {
        self.by_prefix(name.as_str())
            .map(|(i, _)| &self.config.upstreams[i])
    }

    /// The longest prefix `name` is under, and the rest of the name.
    fn by_prefix<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        self.config
            .upstreams
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                let rest = name.strip_prefix(u.prefix.as_str())?.strip_prefix('/')?;
                Some((i, u.prefix.len(), rest))
            })
            .max_by_key(|(_, len, _)| *len)
            .map(|(i, _, rest)| (i, rest))
    }

    /// Where a read of `name` goes: `None` for a repository of this registry. `ns` is
    /// containerd's `?ns=` parameter. `Err` when the cached name would be invalid (too long).
    pub fn route(&self, name: &Name, ns: Option<&str>) -> Option<Result<Target, Error>> {
        let ups = &self.config.upstreams;
        let by_ns = ns.and_then(|ns| {
            ups.iter()
                .position(|u| u.prefix == ns)
                .or_else(|| ups.iter().position(|u| u.url.host_str() == Some(ns)))
        });
        let (index, path, by_default) = if let Some(i) = by_ns {
            (i, name.as_str(), false)
        } else if let Some((i, rest)) = self.by_prefix(name.as_str()) {
            (i, rest, false)
        } else {
            (self.config.default?, name.as_str(), true)
        };
        let up = &ups[index];
        let upstream_name = if up.library && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        Some(
            Name::parse(&format!("{}/{upstream_name}", up.prefix)).map(|local| Target {
                index,
                upstream_name,
                local,
                by_default,
            }),
        )
    }

    /// The upstream of a target.
    pub fn upstream(&self, t: &Target) -> &Upstream {
        &self.config.upstreams[t.index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoFetch;

    #[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
    #[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
    impl Fetch for NoFetch {
        async fn fetch(
            &self,
            _req: http::Request<()>,
        ) -> Result<http::Response<crate::body::Body>, String> {
            Err("no network in unit tests".into())
        }
    }

    fn mirrors(default: Option<&str>) -> Mirrors {
        let config = Config::parse(&Raw {
            mirrors: vec![
                "docker.io=https://registry-1.docker.io",
                "ghcr.io=https://ghcr.io",
                "ghcr.io/team=https://team.example",
            ],
            default,
            ..Raw::default()
        })
        .unwrap();
        Mirrors::new(config, Arc::new(NoFetch))
    }

    fn route(m: &Mirrors, name: &str, ns: Option<&str>) -> Option<(String, String, bool)> {
        m.route(&Name::parse(name).unwrap(), ns).map(|t| {
            let t = t.unwrap();
            (t.upstream_name, t.local.as_str().to_string(), t.by_default)
        })
    }

    #[test]
    fn routing() {
        let m = mirrors(Some("docker.io"));
        let r = |n, ns| route(&m, n, ns);
        let t = |u: &str, l: &str, d| Some((u.to_string(), l.to_string(), d));
        // Prefixes, with library/ for Docker Hub only.
        assert_eq!(
            r("docker.io/library/nginx", None),
            t("library/nginx", "docker.io/library/nginx", false)
        );
        assert_eq!(
            r("docker.io/nginx", None),
            t("library/nginx", "docker.io/library/nginx", false)
        );
        assert_eq!(
            r("ghcr.io/owner/app", None),
            t("owner/app", "ghcr.io/owner/app", false)
        );
        assert_eq!(r("ghcr.io/app", None), t("app", "ghcr.io/app", false));
        // The longest prefix wins.
        assert_eq!(
            r("ghcr.io/team/app", None),
            t("app", "ghcr.io/team/app", false)
        );
        // The default mirror, as dockerd asks.
        assert_eq!(
            r("library/nginx", None),
            t("library/nginx", "docker.io/library/nginx", true)
        );
        assert_eq!(
            r("nginx", None),
            t("library/nginx", "docker.io/library/nginx", true)
        );
        // containerd's ?ns=, by prefix or by upstream host.
        assert_eq!(
            r("owner/app", Some("ghcr.io")),
            t("owner/app", "ghcr.io/owner/app", false)
        );
        assert_eq!(
            r("nginx", Some("registry-1.docker.io")),
            t("library/nginx", "docker.io/library/nginx", false)
        );
        // An unknown ns falls back to the other rules.
        assert_eq!(
            r("nginx", Some("quay.io")),
            t("library/nginx", "docker.io/library/nginx", true)
        );
        // Without a default mirror, names under no prefix are this registry's.
        let m = mirrors(None);
        assert_eq!(route(&m, "team/app", None), None);
        assert_eq!(route(&m, "docker.io", None), None);
        assert!(m.owner(&Name::parse("docker.io/x").unwrap()).is_some());
        assert!(m.owner(&Name::parse("team/x").unwrap()).is_none());
        // A name that would be too long once prefixed is invalid, not a panic.
        let long = format!("a/{}", "b".repeat(250));
        assert!(m
            .route(&Name::parse(&long).unwrap(), Some("ghcr.io"))
            .unwrap()
            .is_err());
    }
}
