//! `edge-registry verify URL`: checks a registry from the outside against the OCI Distribution
//! Spec v1.1 (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md), push
//! and pull. Each check names the spec's section and its keyword (MUST, SHOULD, MAY); a check
//! whose feature the registry turns off is skipped with the reason. Every request has a time
//! limit and reads a bounded body.

pub mod report;

mod discovery;
mod listing;
mod pull;
mod push;
mod referrers;

use std::sync::Mutex;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::reference::Host;
use super::registry::{push_scope, read_limited, Options, Registry};
use super::{Error, Result};
use crate::digest::{Algorithm, Digest};
use crate::manifest::OCI_MANIFEST;

/// The spec's requirement levels (RFC 2119).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Keyword {
    MUST,
    SHOULD,
    MAY,
}

/// One check: what it is, where the spec says so.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Meta {
    pub id: &'static str,
    pub area: &'static str,
    /// The spec's section (heading) and, where it has one, the API table's endpoint id.
    pub section: &'static str,
    pub keyword: Keyword,
    pub title: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Why a check did not pass.
pub enum Verdict {
    Fail(String),
    Skip(String),
}

impl From<Error> for Verdict {
    fn from(e: Error) -> Verdict {
        Verdict::Fail(e.0)
    }
}

pub type Check = std::result::Result<(), Verdict>;

pub fn fail(m: impl std::fmt::Display) -> Verdict {
    Verdict::Fail(m.to_string())
}

pub fn skip(m: impl std::fmt::Display) -> Verdict {
    Verdict::Skip(m.to_string())
}

/// `Err(fail(..))` unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err($crate::client::verify::fail(format!($($msg)*)));
        }
    };
}
pub(crate) use ensure;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub repo: Option<String>,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub keep: bool,
}

/// The areas, in the order they run.
pub const AREAS: &[&str] = &[
    "base",
    "auth",
    "push",
    "pull",
    "manifests",
    "tags",
    "catalog",
    "referrers",
    "errors",
    "delete",
];

/// A response read whole (bounded).
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The first error code of a spec error body.
    pub fn error_code(&self) -> Option<String> {
        self.json()?["errors"][0]["code"]
            .as_str()
            .map(str::to_string)
    }

    /// `status` and, for an error, its code: for messages.
    pub fn describe(&self) -> String {
        match self.error_code() {
            Some(c) => format!("{} {c}", self.status.as_u16()),
            None => self.status.as_u16().to_string(),
        }
    }
}

/// The state the checks share.
pub struct Ctx {
    pub reg: Registry,
    pub repo: String,
    pub results: Mutex<Vec<CheckResult>>,
    cfg: Config,
    /// What was pushed (manifest digests, then blob digests), to delete at the end.
    pub pushed_manifests: Mutex<Vec<Digest>>,
    pub pushed_blobs: Mutex<Vec<Digest>>,
}

impl Ctx {
    pub fn enabled(&self, area: &str) -> bool {
        (self.cfg.only.is_empty() || self.cfg.only.iter().any(|a| a == area))
            && !self.cfg.skip.iter().any(|a| a == area)
    }

    pub fn record(&self, meta: Meta, result: Check) {
        let outcome = match result {
            Ok(()) => Outcome::Pass,
            Err(Verdict::Fail(m)) => Outcome::Fail(m),
            Err(Verdict::Skip(m)) => Outcome::Skip(m),
        };
        self.results
            .lock()
            .unwrap()
            .push(CheckResult { meta, outcome });
    }

    /// A request on `path` (or a full URL) with the push scope of the repository.
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Resp> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| Error::msg(e.to_string()))?,
                HeaderValue::from_str(v).map_err(|e| Error::msg(e.to_string()))?,
            );
        }
        let scope = format!("{} repository:{}:delete", push_scope(&self.repo), self.repo);
        let resp = self.reg.request(method, path, &scope, h, body).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = read_limited(resp, 40 << 20).await?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    /// `/v2/<repo>/<rest>`.
    pub fn path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.repo)
    }

    /// Pushes `data` as a blob with POST + PUT; its digest.
    pub async fn push_blob(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(Algorithm::Sha256, data);
        let r = self
            .req(
                Method::POST,
                &self.path("blobs/uploads/"),
                &[("content-length", "0")],
                None,
            )
            .await?;
        if r.status != StatusCode::ACCEPTED {
            return Err(Error::msg(format!("POST blobs/uploads/: {}", r.describe())));
        }
        let loc = r
            .header("location")
            .ok_or_else(|| Error::msg("no Location"))?
            .to_string();
        let url = with_query(&self.reg.url(&loc)?, "digest", &d.to_string());
        let r = self
            .req(
                Method::PUT,
                &url,
                &[("content-type", "application/octet-stream")],
                Some(Bytes::copy_from_slice(data)),
            )
            .await?;
        if r.status != StatusCode::CREATED {
            return Err(Error::msg(format!("PUT upload: {}", r.describe())));
        }
        self.pushed_blobs.lock().unwrap().push(d.clone());
        Ok(d)
    }

    /// PUTs a manifest under `reference`; the response.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<Resp> {
        let r = self
            .req(
                Method::PUT,
                &self.path(&format!("manifests/{reference}")),
                &[("content-type", media_type)],
                Some(Bytes::copy_from_slice(body)),
            )
            .await?;
        if r.status == StatusCode::CREATED {
            self.pushed_manifests
                .lock()
                .unwrap()
                .push(Digest::of(Algorithm::Sha256, body));
        }
        Ok(r)
    }

    /// A small image: a config and one layer pushed, and its manifest's bytes (not pushed).
    pub async fn image(&self, marker: &str) -> Result<Vec<u8>> {
        let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "marker": marker});
        let config = serde_json::to_vec(&config).unwrap_or_default();
        let layer = random(1024);
        let cd = self.push_blob(&config).await?;
        let ld = self.push_blob(&layer).await?;
        Ok(serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
        }))
        .unwrap_or_default())
    }
}

/// `url` with `key=value` added to its query.
pub fn with_query(url: &reqwest::Url, key: &str, value: &str) -> String {
    let mut u = url.clone();
    u.query_pairs_mut().append_pair(key, value);
    u.to_string()
}

/// `n` random bytes.
pub fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let _ = getrandom::fill(&mut v);
    v
}

/// Runs every enabled check against the registry at `host`.
pub async fn run(host: &Host, opts: &Options, cfg: &Config) -> Result<Vec<CheckResult>> {
    for a in cfg.only.iter().chain(&cfg.skip) {
        if !AREAS.contains(&a.as_str()) {
            return Err(Error::msg(format!(
                "unknown area {a:?} (areas: {})",
                AREAS.join(", ")
            )));
        }
    }
    let reg = Registry::connect(host, opts).await?;
    let repo = cfg
        .repo
        .clone()
        .unwrap_or_else(|| format!("verify/{}", hex::encode(random(4))));
    let c = Ctx {
        reg,
        repo,
        results: Mutex::new(Vec::new()),
        cfg: cfg.clone(),
        pushed_manifests: Mutex::default(),
        pushed_blobs: Mutex::default(),
    };
    // Is it a registry at all? Everything else depends on it.
    let base = c
        .req(Method::GET, "/v2/", &[], None)
        .await
        .map_err(|e| e.context(format!("{}v2/", c.reg.base())))?;
    if !base.status.is_success() && base.status != StatusCode::UNAUTHORIZED {
        return Err(Error::msg(format!(
            "{}v2/ answered {}: not an OCI registry (or the credentials are refused)",
            c.reg.base(),
            base.status
        )));
    }
    if c.enabled("base") || c.enabled("auth") {
        discovery::base(&c).await;
    }
    if c.enabled("push") {
        push::run(&c).await;
    }
    let fixture = pull::Fixture::make(&c).await;
    if c.enabled("pull") {
        pull::pull(&c, &fixture).await;
    }
    if c.enabled("manifests") {
        pull::manifests(&c, &fixture).await;
    }
    if c.enabled("tags") || c.enabled("catalog") {
        listing::listing(&c, &fixture).await;
    }
    if c.enabled("referrers") {
        referrers::referrers(&c, &fixture).await;
    }
    if c.enabled("errors") {
        discovery::errors(&c).await;
    }
    if c.enabled("delete") {
        referrers::delete(&c, &fixture).await;
    }
    if !cfg.keep {
        discovery::clean_up(&c).await;
    }
    Ok(c.results.into_inner().unwrap())
}
