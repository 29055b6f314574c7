//! The mirrored operations: which requests go upstream, what is cached and when it is asked
//! again.
//!
//! - **Manifests by digest** are immutable: from storage, else fetched, verified, stored.
//! - **Manifests by tag** are served from storage within the tag TTL; after it, a HEAD asks
//!   the upstream (free against Docker Hub's rate limit): unchanged refreshes the time,
//!   changed fetches, verifies and stores the new manifest and moves the tag. An upstream that
//!   is down (unreachable, 5xx, 429), or a rate limit nearly spent, serves the cached tag
//!   stale; with nothing cached the answer is 503 with the upstream's status in `detail`.
//! - **Blobs** come from storage, else stream from upstream to the client while they are
//!   stored (`super::tee`), through the [`super::Share`] that lets concurrent misses share one
//!   fetch. A `Range` GET or a HEAD on a miss is passed through and not cached.
//! - **Tags** are the upstream's list, kept briefly; with the upstream down, the cached tags.
//! - **Referrers** come from the upstream's referrers API, else from what is cached.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use super::tee::tee;
use super::upstream::{Call, UpstreamError};
use super::{Fill, Mirrors, RateLimit, Report, Served, StartFill, Target};
use crate::body::{content_length, Body};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, ErrorCode};
use crate::manifest::{Manifest, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::names::{Name, Reference, Tag};
use crate::registry::listing::{paginated, pagination};
use crate::registry::response::{finish, json, query, response, CONTENT_DIGEST};
use crate::registry::{Ctx, Registry};
use crate::repo::keys;
use crate::repo::manifests::Resolved as Found;
use crate::route::{Op, Resolved};
use crate::storage::Storage;

/// Every manifest media type the mirror asks its upstreams for.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// How long the upstream's tag list is kept before it is asked again (seconds).
const TAG_LIST_TTL: u64 = 60;
/// The most pages of a tag list followed.
const TAG_LIST_PAGES: usize = 50;
/// The largest tag list or referrers index read from an upstream.
const MAX_LIST: usize = 4 * 1024 * 1024;

type Result<T> = std::result::Result<T, Error>;

/// The client's error for an upstream that failed: 404 (with `code`) when the upstream does
/// not have it or will not give it (401/403), else 503 with the upstream's status in `detail`.
fn upstream_error(e: &UpstreamError, code: ErrorCode, mut detail: serde_json::Value) -> Error {
    match e {
        UpstreamError::Status(s) if matches!(s.as_u16(), 401 | 403 | 404) => {
            if let (Some(d), Some(u)) = (detail.as_object_mut(), e.detail().as_object()) {
                d.extend(u.clone());
            }
            Error::new(code).with_detail(detail)
        }
        _ => Error::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "the upstream registry is unavailable",
            e.detail(),
        ),
    }
}

fn accept(value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static(value));
    h
}

impl Mirrors {
    /// Sends one request to a target's upstream.
    async fn send(
        &self,
        t: &Target,
        method: Method,
        path: String,
        headers: HeaderMap,
        now_ms: u64,
    ) -> std::result::Result<Response<Body>, UpstreamError> {
        self.sessions
            .send(
                &*self.fetch,
                Call {
                    index: t.index,
                    upstream: self.upstream(t),
                    method,
                    path,
                    repository: &t.upstream_name,
                    headers,
                    now_ms,
                },
            )
            .await
    }
}

/// A manifest fetched from upstream and verified.
struct Fetched {
    digest: Digest,
    manifest: Manifest,
    body: bytes::Bytes,
}

impl<S: Storage> Registry<S> {
    /// Answers the request if it is a mirror's: reads of a mirrored repository, and the
    /// refusal of writes under a mirror's prefix. `None`: not a mirror's, answered as usual.
    pub(crate) async fn mirror_dispatch(
        &self,
        m: &Arc<Mirrors>,
        r: &Resolved,
        cx: &mut Ctx<'_>,
    ) -> Option<Response<Body>> {
        let name = r.repository()?.clone();
        let write = matches!(
            r.op,
            Op::PutManifest { .. }
                | Op::DeleteManifest { .. }
                | Op::DeleteBlob { .. }
                | Op::StartUpload { .. }
                | Op::UploadStatus { .. }
                | Op::PatchUpload { .. }
                | Op::PutUpload { .. }
                | Op::CancelUpload { .. }
        );
        if write {
            let up = m.owner(&name)?;
            let e = Error::new(ErrorCode::Unsupported).with_message(format!(
                "{name} is in a mirror of {}: it cannot be pushed to or deleted from",
                up.display_url()
            ));
            return Some(e.into_response());
        }
        let ns = query(cx.req).get("ns").cloned();
        let target = match m.route(&name, ns.as_deref())? {
            Ok(t) => t,
            Err(e) => return Some(e.into_response()),
        };
        if target.by_default {
            // The default mirror takes only names this registry has no repository of.
            match self.store.repository_exists(&name).await {
                Ok(true) => return None,
                Ok(false) => {}
                Err(e) => return Some(e.into_response()),
            }
        }
        let mut report = Report {
            mirror: m.upstream(&target).prefix.clone(),
            ..Report::default()
        };
        let result = match &r.op {
            Op::GetManifest {
                reference, head, ..
            } => {
                self.mirror_manifest(m, &target, reference, *head, cx, &mut report)
                    .await
            }
            Op::GetBlob { digest, head, .. } => {
                self.mirror_blob(m, &target, digest, *head, cx, &mut report)
                    .await
            }
            Op::ListTags { .. } => self.mirror_tags(m, &target, &name, cx, &mut report).await,
            Op::Referrers { digest, .. } => {
                self.mirror_referrers(m, &target, digest, cx, &mut report)
                    .await
            }
            _ => return None,
        };
        report.rate_limit = m.sessions.rate_limit(target.index);
        if let Some(rl) = report.rate_limit.filter(RateLimit::is_low) {
            report.notes.push(format!(
                "upstream rate limit low: {} of {} left",
                rl.remaining, rl.limit
            ));
        }
        let mut resp = result.unwrap_or_else(|e| {
            if e.status.is_server_error() && report.served.is_none() {
                report.served = Some(Served::Failed);
            }
            e.into_response()
        });
        resp.extensions_mut().insert(report);
        Some(resp)
    }

    // ---- manifests ------------------------------------------------------------------------

    /// The cached manifest a reference names, if any.
    async fn cached(&self, name: &Name, reference: &Reference) -> Result<Option<Found>> {
        match self.store.resolve(name, reference).await {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.code == ErrorCode::ManifestUnknown => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether a cached tag was checked with its upstream within the TTL.
    async fn fresh(&self, m: &Mirrors, name: &Name, tag: &Tag, now: u64) -> Result<bool> {
        let checked = self
            .store
            .storage()
            .get(&keys::mirror_tag_checked(name, tag))
            .await?
            .and_then(|raw| std::str::from_utf8(&raw).ok()?.trim().parse::<u64>().ok());
        Ok(checked.is_some_and(|c| now < c.saturating_add(m.config().tag_ttl)))
    }

    /// Whether a cached manifest may be served without asking upstream: by digest always, by
    /// tag within the TTL.
    async fn usable(
        &self,
        m: &Mirrors,
        name: &Name,
        reference: &Reference,
        found: &Option<Found>,
        now: u64,
    ) -> Result<bool> {
        Ok(match (reference, found) {
            (_, None) => false,
            (Reference::Digest(_), Some(_)) => true,
            (Reference::Tag(tag), Some(_)) => self.fresh(m, name, tag, now).await?,
        })
    }

    async fn touch(&self, name: &Name, tag: &Tag, now: u64) -> Result<()> {
        self.store
            .storage()
            .put(
                &keys::mirror_tag_checked(name, tag),
                bytes::Bytes::from(now.to_string()),
            )
            .await?;
        Ok(())
    }

    async fn mirror_manifest(
        &self,
        m: &Arc<Mirrors>,
        t: &Target,
        reference: &str,
        head: bool,
        cx: &mut Ctx<'_>,
        report: &mut Report,
    ) -> Result<Response<Body>> {
        let reference = Reference::parse(reference).map_err(|_| {
            Error::new(ErrorCode::ManifestUnknown)
                .with_detail(serde_json::json!({ "reference": reference }))
        })?;
        let name = &t.local;
        let now = cx.now;
        let found = self.cached(name, &reference).await?;
        if self.usable(m, name, &reference, &found, now).await? {
            report.served = Some(Served::Hit);
            let found = found.expect("fresh implies found");
            return self
                .serve_manifest(cx, name, &reference, &found, head)
                .await;
        }
        // One refresh of this reference at a time: the others wait, then find it fresh.
        let _flight = m.locks.lock(&format!("{name}:{reference}")).await;
        let found = self.cached(name, &reference).await?;
        if self.usable(m, name, &reference, &found, now).await? {
            report.served = Some(Served::Hit);
            let found = found.expect("fresh implies found");
            return self
                .serve_manifest(cx, name, &reference, &found, head)
                .await;
        }
        if let (Some(cached), Reference::Tag(tag)) = (&found, &reference) {
            if let Some(rl) = m.sessions.rate_limit(t.index).filter(RateLimit::is_low) {
                report.served = Some(Served::Stale);
                report.notes.push(format!(
                    "serving {name}:{tag} past its TTL: the upstream's rate limit is low ({} of {} left)",
                    rl.remaining, rl.limit
                ));
                return self
                    .serve_manifest(cx, name, &reference, cached, head)
                    .await;
            }
            let path = format!("/v2/{}/manifests/{tag}", t.upstream_name);
            let asked = m
                .send(
                    t,
                    Method::HEAD,
                    path,
                    accept(MANIFEST_ACCEPT),
                    self.clock.now_ms(),
                )
                .await;
            let outcome = match asked {
                Ok(resp) if resp.status() == StatusCode::OK => Ok(resp
                    .headers()
                    .get(CONTENT_DIGEST)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| Digest::parse(v.trim()).ok())),
                Ok(resp) => Err(UpstreamError::Status(resp.status())),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Some(d)) if d == cached.digest => {
                    self.touch(name, tag, now).await?;
                    report.served = Some(Served::Hit);
                    return self
                        .serve_manifest(cx, name, &reference, cached, head)
                        .await;
                }
                // Moved (or no digest said): fetched below.
                Ok(_) => {}
                Err(e) if e.is_outage() => {
                    report.served = Some(Served::Stale);
                    report
                        .notes
                        .push(format!("serving {name}:{tag} stale: the upstream is {e}"));
                    return self
                        .serve_manifest(cx, name, &reference, cached, head)
                        .await;
                }
                Err(e) => {
                    return Err(upstream_error(
                        &e,
                        ErrorCode::ManifestUnknown,
                        serde_json::json!({ "reference": reference.to_string() }),
                    ))
                }
            }
        }
        match self.fetch_manifest(m, t, &reference).await {
            Ok(fetched) => {
                let tag = match &reference {
                    Reference::Tag(tag) => Some(tag),
                    Reference::Digest(_) => None,
                };
                self.store
                    .put_mirrored_manifest(
                        name,
                        &fetched.digest,
                        tag,
                        &fetched.manifest,
                        fetched.body,
                        self.clock.now_ms(),
                        &mut Vec::new(),
                    )
                    .await?;
                if let Some(tag) = tag {
                    self.touch(name, tag, now).await?;
                }
                report.served = Some(Served::Miss);
                let stored = self
                    .cached(name, &Reference::Digest(fetched.digest.clone()))
                    .await?
                    .ok_or_else(|| Error::internal("a mirrored manifest vanished"))?;
                self.serve_manifest(cx, name, &reference, &stored, head)
                    .await
            }
            Err(e) => {
                report
                    .notes
                    .push(format!("{name}:{reference} from upstream: {e}"));
                if let Some(cached) = found.filter(|_| e.is_outage()) {
                    report.served = Some(Served::Stale);
                    return self
                        .serve_manifest(cx, name, &reference, &cached, head)
                        .await;
                }
                Err(upstream_error(
                    &e,
                    ErrorCode::ManifestUnknown,
                    serde_json::json!({ "reference": reference.to_string() }),
                ))
            }
        }
    }

    /// GETs a manifest upstream and verifies it: at most 4 MiB, a manifest media type that
    /// matches its `Content-Type`, and the digest asked for (or, by tag, the one the
    /// upstream's `Docker-Content-Digest` says).
    async fn fetch_manifest(
        &self,
        m: &Mirrors,
        t: &Target,
        reference: &Reference,
    ) -> std::result::Result<Fetched, UpstreamError> {
        let path = format!("/v2/{}/manifests/{reference}", t.upstream_name);
        let resp = m
            .send(
                t,
                Method::GET,
                path,
                accept(MANIFEST_ACCEPT),
                self.clock.now_ms(),
            )
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(UpstreamError::Status(resp.status()));
        }
        let limit = self.settings.max_manifest_size;
        let too_large = || UpstreamError::Invalid(format!("a manifest larger than {limit} bytes"));
        if content_length(resp.headers()).is_some_and(|l| l > limit as u64) {
            return Err(too_large());
        }
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let said = resp
            .headers()
            .get(CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .map(|v| Digest::parse(v.trim()));
        let body = resp
            .into_body()
            .collect_limited(limit)
            .await
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?
            .ok_or_else(too_large)?;
        let manifest = Manifest::parse(content_type.as_deref(), &body)
            .map_err(|e| UpstreamError::Invalid(format!("not a valid manifest: {}", e.message)))?;
        if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]
            .contains(&manifest.media_type.as_str())
        {
            return Err(UpstreamError::Invalid(format!(
                "a manifest of type {}",
                manifest.media_type
            )));
        }
        let said = match said {
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => {
                return Err(UpstreamError::Invalid(
                    "an invalid Docker-Content-Digest".into(),
                ))
            }
            None => None,
        };
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => said.clone(),
        };
        let alg = expected
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(alg, &body);
        for want in [expected, said].into_iter().flatten() {
            if want.algorithm() == alg && want != digest {
                return Err(UpstreamError::Invalid(format!(
                    "the manifest is {digest}, not {want}"
                )));
            }
        }
        Ok(Fetched {
            digest,
            manifest,
            body,
        })
    }

    // ---- blobs ----------------------------------------------------------------------------

    async fn mirror_blob(
        &self,
        m: &Arc<Mirrors>,
        t: &Target,
        digest_text: &str,
        head: bool,
        cx: &mut Ctx<'_>,
        report: &mut Report,
    ) -> Result<Response<Body>> {
        let digest = Digest::parse(digest_text)?;
        let name = &t.local;
        let detail = || serde_json::json!({ "digest": digest.to_string() });
        if self.store.blob_readable(name, &digest).await?.is_some() {
            report.served = Some(Served::Hit);
            return self.get_blob(cx, name, digest_text, head).await;
        }
        let path = format!("/v2/{}/blobs/{digest}", t.upstream_name);
        let now_ms = self.clock.now_ms();
        // Stored already (pushed, or cached for another repository): linked here once the
        // upstream says this repository has it, without fetching it again.
        if let Some(size) = self.store.storage().blob_size(&digest).await? {
            let asked = m
                .send(t, Method::HEAD, path.clone(), HeaderMap::new(), now_ms)
                .await;
            match asked {
                Ok(resp) if resp.status() == StatusCode::OK => {
                    self.store
                        .blob_stored(name, &digest, size, &mut Vec::new())
                        .await?;
                    report.served = Some(Served::Hit);
                    return self.get_blob(cx, name, digest_text, head).await;
                }
                Ok(resp) => {
                    return Err(upstream_error(
                        &UpstreamError::Status(resp.status()),
                        ErrorCode::BlobUnknown,
                        detail(),
                    ))
                }
                Err(e) => return Err(upstream_error(&e, ErrorCode::BlobUnknown, detail())),
            }
        }
        let range = cx.req.headers.get(header::RANGE).cloned();
        if head || range.is_some() {
            // Passed through, not cached.
            let mut h = HeaderMap::new();
            if let Some(r) = range {
                h.insert(header::RANGE, r);
            }
            let method = if head { Method::HEAD } else { Method::GET };
            let resp = m
                .send(t, method, path, h, now_ms)
                .await
                .map_err(|e| upstream_error(&e, ErrorCode::BlobUnknown, detail()))?;
            let status = resp.status();
            if status == StatusCode::RANGE_NOT_SATISFIABLE {
                let mut e = Error::new(ErrorCode::SizeInvalid)
                    .with_status(status)
                    .with_message("requested range not satisfiable");
                if let Some(cr) = resp.headers().get(header::CONTENT_RANGE) {
                    e = e.with_header(header::CONTENT_RANGE, cr.clone());
                }
                return Err(e);
            }
            if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
                return Err(upstream_error(
                    &UpstreamError::Status(status),
                    ErrorCode::BlobUnknown,
                    detail(),
                ));
            }
            report.served = Some(Served::Miss);
            let mut b = response(status)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::ACCEPT_RANGES, "bytes")
                .header(CONTENT_DIGEST, digest.to_string());
            for h in [header::CONTENT_LENGTH, header::CONTENT_RANGE] {
                if let Some(v) = resp.headers().get(&h) {
                    b = b.header(h, v.clone());
                }
            }
            let body = if head {
                Body::Empty
            } else {
                Body::Stream(resp.into_body().into_stream())
            };
            return Ok(finish(b, body));
        }
        let start: StartFill = {
            let (m, t) = (m.clone(), t.clone());
            let (store, digest) = (self.store.clone(), digest.clone());
            let max = self.settings.max_blob_size;
            Box::new(move || {
                Box::pin(async move {
                    let detail = serde_json::json!({ "digest": digest.to_string() });
                    let path = format!("/v2/{}/blobs/{digest}", t.upstream_name);
                    let resp = m
                        .send(&t, Method::GET, path, HeaderMap::new(), now_ms)
                        .await
                        .map_err(|e| upstream_error(&e, ErrorCode::BlobUnknown, detail.clone()))?;
                    if resp.status() != StatusCode::OK {
                        let e = UpstreamError::Status(resp.status());
                        return Err(upstream_error(&e, ErrorCode::BlobUnknown, detail));
                    }
                    let size = content_length(resp.headers());
                    if size.is_some_and(|s| s > max) {
                        return Err(crate::repo::uploads::too_large(max));
                    }
                    let upstream = resp.into_body().into_stream();
                    Ok(Fill {
                        size,
                        body: tee(store, t.local, digest, size, max, upstream),
                    })
                })
            })
        };
        let fill = m.share.share(format!("{name}@{digest}"), start).await?;
        report.served = Some(Served::Miss);
        cx.events.push(crate::event::Event::BlobPulled {
            repo: name.clone(),
            digest: digest.clone(),
            size: fill.size.unwrap_or(0),
        });
        let mut b = response(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, format!("\"{digest}\""))
            .header(CONTENT_DIGEST, digest.to_string());
        if let Some(size) = fill.size {
            b = b.header(header::CONTENT_LENGTH, size);
        }
        Ok(finish(b, Body::Stream(fill.body)))
    }

    // ---- tags and referrers ---------------------------------------------------------------

    async fn mirror_tags(
        &self,
        m: &Arc<Mirrors>,
        t: &Target,
        asked: &Name,
        cx: &mut Ctx<'_>,
        report: &mut Report,
    ) -> Result<Response<Body>> {
        pagination(&query(cx.req))?;
        let key = keys::mirror_tag_list(&t.local);
        let now = cx.now;
        let kept = self
            .store
            .storage()
            .get(&key)
            .await?
            .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
            .and_then(|v| {
                let fetched = v["fetched"].as_u64()?;
                let tags: Vec<String> = serde_json::from_value(v["tags"].clone()).ok()?;
                Some((fetched, tags))
            })
            .filter(|(fetched, _)| now < fetched.saturating_add(TAG_LIST_TTL));
        let tags = match kept {
            Some((_, tags)) => {
                report.served = Some(Served::Hit);
                tags
            }
            None => match self.fetch_tags(m, t).await {
                Ok(tags) => {
                    let v = serde_json::json!({ "fetched": now, "tags": tags });
                    self.store
                        .storage()
                        .put(&key, bytes::Bytes::from(v.to_string()))
                        .await?;
                    report.served = Some(Served::Miss);
                    tags
                }
                Err(e) if e.is_outage() => {
                    report.notes.push(format!(
                        "listing the cached tags of {}: the upstream is {e}",
                        t.local
                    ));
                    if !self.store.repository_exists(&t.local).await? {
                        return Err(upstream_error(
                            &e,
                            ErrorCode::NameUnknown,
                            serde_json::json!({ "name": asked.as_str() }),
                        ));
                    }
                    report.served = Some(Served::Stale);
                    self.store.tags(&t.local).await?
                }
                Err(e) => {
                    return Err(upstream_error(
                        &e,
                        ErrorCode::NameUnknown,
                        serde_json::json!({ "name": asked.as_str() }),
                    ))
                }
            },
        };
        paginated(
            cx,
            tags,
            "tags",
            serde_json::json!({ "name": asked.as_str() }),
            |n, l| self.urls.tags_next(asked, n, l),
        )
    }

    /// The upstream's whole tag list, sorted (following its `Link` pages).
    async fn fetch_tags(
        &self,
        m: &Mirrors,
        t: &Target,
    ) -> std::result::Result<Vec<String>, UpstreamError> {
        let mut tags = Vec::new();
        let mut path = format!("/v2/{}/tags/list", t.upstream_name);
        for _ in 0..TAG_LIST_PAGES {
            let resp = m
                .send(
                    t,
                    Method::GET,
                    path.clone(),
                    accept("application/json"),
                    self.clock.now_ms(),
                )
                .await?;
            if resp.status() != StatusCode::OK {
                return Err(UpstreamError::Status(resp.status()));
            }
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| Some(l.split_once('<')?.1.split_once('>')?.0.to_string()));
            let body = resp
                .into_body()
                .collect_limited(MAX_LIST)
                .await
                .map_err(|e| UpstreamError::Unreachable(e.to_string()))?
                .ok_or_else(|| UpstreamError::Invalid("a tag list over 4 MiB".into()))?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| UpstreamError::Invalid("a tag list that is not JSON".into()))?;
            if let Some(list) = v["tags"].as_array() {
                tags.extend(
                    list.iter()
                        .filter_map(|t| t.as_str())
                        .filter(|t| Tag::parse(t).is_ok())
                        .map(str::to_string),
                );
            }
            match next {
                // Only a path on the same upstream (the client's own Link is built by us).
                Some(n) if n.starts_with("/v2/") => path = n,
                _ => break,
            }
        }
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    async fn mirror_referrers(
        &self,
        m: &Arc<Mirrors>,
        t: &Target,
        digest_text: &str,
        cx: &mut Ctx<'_>,
        report: &mut Report,
    ) -> Result<Response<Body>> {
        let subject = Digest::parse(digest_text)?;
        let q = query(cx.req);
        let filter = q.get("artifactType").cloned();
        let path = format!("/v2/{}/referrers/{subject}", t.upstream_name);
        let asked = m
            .send(t, Method::GET, path, accept(OCI_INDEX), self.clock.now_ms())
            .await;
        let upstream = match asked {
            Ok(resp) if resp.status() == StatusCode::OK => resp
                .into_body()
                .collect_limited(MAX_LIST)
                .await
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("manifests")?.as_array().cloned()),
            Ok(_) => None,
            Err(e) => {
                report.notes.push(format!("referrers from upstream: {e}"));
                None
            }
        };
        let Some(mut manifests) = upstream else {
            // No referrers API upstream (or it is down): what is cached here.
            report.served = Some(Served::Hit);
            return self.referrers(cx, &t.local, digest_text).await;
        };
        report.served = Some(Served::Miss);
        if let Some(f) = &filter {
            manifests.retain(|d| d["artifactType"].as_str() == Some(f.as_str()));
        }
        let mut resp = json(
            StatusCode::OK,
            OCI_INDEX,
            &serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }),
        )?;
        if filter.is_some() {
            resp.headers_mut().insert(
                crate::registry::response::OCI_FILTERS_APPLIED,
                HeaderValue::from_static("artifactType"),
            );
        }
        Ok(resp)
    }
}
