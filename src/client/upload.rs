//! Blob uploads: skip what the registry has (HEAD), mount with `?mount=&from=`, one
//! `POST ?digest=` for a blob under one chunk, otherwise a session of PATCH chunks no larger
//! than the chunk size or the registry's `OCI-Chunk-Max-Length`, then `PUT ?digest=`.
//!
//! Resuming: a chunk that fails is resumed from the `Range` the session reports (bytes the
//! registry kept are not sent again); the session's URL and offset are saved in a small state
//! file after every chunk, so a copy killed and run again resumes the blob where the registry
//! has it. Every byte sent is hashed; the blob's last piece goes only if the whole matches
//! its digest, and the PUT that completes it only then.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::registry::{check, describe_error, push_scope, read_limited, short, Registry};
use super::stream::{body, hash_ahead, BlobRead, Failure};
use super::{Error, Result};
use crate::digest::{Algorithm, Digest, Hasher};

/// How blobs go up.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The largest chunk sent (smaller if the registry advertises a smaller maximum).
    pub chunk_size: u64,
    /// A repository to mount blobs from.
    pub mount_from: Option<String>,
    /// Where sessions are remembered for a later run (`None`: not remembered).
    pub state_dir: Option<PathBuf>,
}

/// What happened to a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The registry had it.
    Present,
    Mounted,
    /// Uploaded: the bytes sent, and the offset a saved session resumed from.
    Uploaded {
        bytes: u64,
        resumed_from: u64,
    },
}

/// A session saved between runs.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    location: String,
    offset: u64,
    /// The session's advertised chunk bounds (0: none).
    #[serde(default)]
    min: u64,
    #[serde(default)]
    max: u64,
}

/// How often one blob's session may fail before the copy gives up.
const MAX_FAILURES: u32 = 6;

fn state_path(dir: &Path, reg: &Registry, repo: &str, digest: &Digest) -> PathBuf {
    let key = Digest::of(
        Algorithm::Sha256,
        format!("{} {repo} {digest}", reg.base()).as_bytes(),
    );
    dir.join(format!("{}.json", key.hex()))
}

fn header_u64(resp: &Response, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The offset after a `Range: 0-N` header (N+1), or 0 without one.
fn range_end(resp: &Response) -> Option<u64> {
    let v = resp.headers().get("range")?.to_str().ok()?;
    let v = v.trim().trim_start_matches("bytes=");
    let (_, end) = v.split_once('-')?;
    end.trim().parse::<u64>().ok().map(|e| e + 1)
}

fn location(reg: &Registry, resp: &Response) -> Result<String> {
    let l = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::msg("the upload response has no Location"))?;
    Ok(reg.url(l)?.to_string())
}

fn with_digest(location: &str, digest: &Digest) -> Result<reqwest::Url> {
    let mut u = reqwest::Url::parse(location).map_err(|e| Error::msg(format!("{e}")))?;
    u.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    Ok(u)
}

/// One upload session.
struct Session {
    location: String,
    min: u64,
    max: u64,
}

impl Registry {
    /// Uploads the blob `digest` of `size` bytes read from `src` into `repo`. `progress` gets
    /// the offset reached.
    pub async fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        src: &dyn BlobRead,
        opts: &UploadOptions,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Sent> {
        let scope = match &opts.mount_from {
            Some(from) => format!("{} repository:{from}:pull", push_scope(repo)),
            None => push_scope(repo),
        };
        if self.head_blob(repo, digest, &scope).await?.is_some() {
            progress(size);
            return Ok(Sent::Present);
        }
        let state = opts
            .state_dir
            .as_ref()
            .map(|d| state_path(d, self, repo, digest));
        let mut session = None;
        if let Some(from) = &opts.mount_from {
            let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
            let resp = self
                .send(&scope, |c| {
                    c.post(self.url(&path).unwrap()).header(CONTENT_LENGTH, 0)
                })
                .await?;
            match resp.status() {
                StatusCode::CREATED => {
                    progress(size);
                    return Ok(Sent::Mounted);
                }
                StatusCode::ACCEPTED => session = Some(self.session_of(&resp)?),
                _ => {
                    check(resp, &format!("mount {} from {from}", short(digest))).await?;
                }
            }
        }
        let mut resumed_from = 0;
        if session.is_none() {
            if let Some(saved) = state.as_deref().and_then(load) {
                if let Ok(Some(offset)) = self.status(&scope, &saved.location).await {
                    if offset <= size {
                        resumed_from = offset;
                        session = Some(Session {
                            location: saved.location,
                            min: saved.min,
                            max: saved.max,
                        });
                    }
                }
            }
        }
        if session.is_none() && size < opts.chunk_size {
            match self
                .monolithic(repo, digest, size, src, &scope, progress.clone())
                .await?
            {
                None => {
                    return Ok(Sent::Uploaded {
                        bytes: size,
                        resumed_from: 0,
                    })
                }
                Some(s) => session = Some(s),
            }
        }
        let session = match session {
            Some(s) => s,
            None => self.open_session(repo, &scope).await?,
        };
        let sent = self
            .chunked(
                repo,
                session,
                resumed_from,
                digest,
                size,
                src,
                opts,
                state.as_deref(),
                &scope,
                progress,
            )
            .await;
        if let (Some(p), true) = (&state, sent.is_ok()) {
            let _ = std::fs::remove_file(p);
        }
        sent.map(|bytes| Sent::Uploaded {
            bytes,
            resumed_from,
        })
    }

    fn session_of(&self, resp: &Response) -> Result<Session> {
        Ok(Session {
            location: location(self, resp)?,
            min: header_u64(resp, "oci-chunk-min-length").unwrap_or(0),
            max: header_u64(resp, "oci-chunk-max-length").unwrap_or(0),
        })
    }

    async fn open_session(&self, repo: &str, scope: &str) -> Result<Session> {
        let path = format!("/v2/{repo}/blobs/uploads/");
        let resp = self
            .send(scope, |c| {
                c.post(self.url(&path).unwrap()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            check(resp, &format!("POST {path}")).await?;
            return Err(Error::msg(format!("POST {path}: expected 202")));
        }
        self.session_of(&resp)
    }

    /// The offset a session has reached (`GET` on its URL), `None` if it is gone.
    async fn status(&self, scope: &str, location: &str) -> Result<Option<u64>> {
        let url = self.url(location)?;
        let resp = self.send(scope, |c| c.get(url.clone())).await?;
        if resp.status() == StatusCode::NO_CONTENT || resp.status().is_success() {
            return Ok(Some(range_end(&resp).unwrap_or(0)));
        }
        Ok(None)
    }

    /// One `POST ?digest=` with the whole blob. `None` when it is stored; a session when the
    /// registry opened one instead (it does not take one-request uploads, or a body this
    /// large).
    async fn monolithic(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        src: &dyn BlobRead,
        scope: &str,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Option<Session>> {
        self.authorize(scope).await?;
        let reader = Arc::new(tokio::sync::Mutex::new(src.open(0).await?));
        let hasher = Arc::new(Mutex::new(Hasher::new(digest.algorithm())));
        let failure: Failure = Arc::default();
        let stream = body(
            reader,
            size,
            hasher,
            Some(digest.clone()),
            failure.clone(),
            progress,
        );
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}"))?;
        let req = self
            .http()
            .post(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream));
        let resp = self.send_once(scope, req).await;
        let failed = failure.lock().unwrap().take();
        if let Some(e) = failed {
            return Err(e);
        }
        let resp = match resp {
            Ok(r) => r,
            // A proxy that refuses a body this large may close the connection before
            // answering (its 413 unread): go in chunks instead.
            Err(_) => return Ok(Some(self.open_session(repo, scope).await?)),
        };
        match resp.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.session_of(&resp)?)),
            StatusCode::PAYLOAD_TOO_LARGE => {
                // A proxy's limit (an HTML 413): go in chunks instead.
                Ok(Some(self.open_session(repo, scope).await?))
            }
            _ => {
                check(resp, &format!("upload {}", short(digest))).await?;
                Ok(None)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn chunked(
        &self,
        repo: &str,
        mut session: Session,
        start: u64,
        digest: &Digest,
        size: u64,
        src: &dyn BlobRead,
        opts: &UploadOptions,
        state: Option<&Path>,
        scope: &str,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<u64> {
        let mut chunk = opts.chunk_size.max(1);
        if session.max > 0 {
            chunk = chunk.min(session.max);
        }
        if session.min > chunk && (session.max == 0 || session.min <= session.max) {
            chunk = session.min;
        }
        // The hash of the bytes before `offset`.
        let mut hasher = Hasher::new(digest.algorithm());
        let mut offset = 0;
        let mut reader = src.open(0).await?;
        if start > 0 {
            hash_ahead(&mut reader, &mut hasher, start).await?;
            offset = start;
        }
        let reader = Arc::new(tokio::sync::Mutex::new(reader));
        let mut sent = 0u64;
        let mut failures = 0;
        progress(offset);
        while offset < size || size == 0 {
            let n = chunk.min(size - offset);
            let last = offset + n == size;
            let chunk_hash = Arc::new(Mutex::new(hasher.clone()));
            let failure: Failure = Arc::default();
            let base = offset;
            let p = progress.clone();
            let stream = body(
                reader.clone(),
                n,
                chunk_hash.clone(),
                last.then(|| digest.clone()),
                failure.clone(),
                Arc::new(move |k| p(base + k)),
            );
            self.authorize(scope).await?;
            let url = self.url(&session.location)?;
            let mut req = self
                .http()
                .patch(url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, n);
            if n > 0 {
                req = req.header(CONTENT_RANGE, format!("{}-{}", offset, offset + n - 1));
            }
            let resp = self
                .send_once(scope, req.body(reqwest::Body::wrap_stream(stream)))
                .await;
            let failed = failure.lock().unwrap().take();
            if let Some(e) = failed {
                self.cancel(scope, &session.location).await;
                if let Some(p) = state {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
            let problem = match resp {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    let reached = range_end(&r).unwrap_or(offset + n);
                    session.location = location(self, &r).unwrap_or(session.location);
                    if reached == offset + n {
                        hasher = chunk_hash.lock().unwrap().clone();
                        sent += n;
                        offset = reached;
                        failures = 0;
                        if let Some(p) = state {
                            save(p, &session, offset);
                        }
                        if size == 0 {
                            break;
                        }
                        continue;
                    }
                    format!("the registry kept {reached} bytes, not {}", offset + n)
                }
                Ok(r) => {
                    let status = r.status();
                    if status == StatusCode::UNAUTHORIZED {
                        self.forget_token(scope);
                    }
                    let html = r
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|t| t.contains("html"));
                    let body = read_limited(r, 64 * 1024).await.unwrap_or_default();
                    let d = describe_error(status, &body, html);
                    if status == StatusCode::PAYLOAD_TOO_LARGE
                        || status == StatusCode::NOT_FOUND
                        || status == StatusCode::FORBIDDEN
                        || (status.is_client_error()
                            && status != StatusCode::UNAUTHORIZED
                            && status != StatusCode::RANGE_NOT_SATISFIABLE
                            && status != StatusCode::REQUEST_TIMEOUT
                            && status != StatusCode::TOO_MANY_REQUESTS)
                    {
                        return Err(Error::msg(format!(
                            "upload {} chunk at {offset}: {d}",
                            short(digest)
                        )));
                    }
                    d
                }
                Err(e) => e.0,
            };
            failures += 1;
            if failures >= MAX_FAILURES {
                return Err(Error::msg(format!(
                    "upload {}: gave up after {failures} failed chunks: {problem}",
                    short(digest)
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200 * (1 << failures))).await;
            // Resume where the session says it is.
            let reached = match self.status(scope, &session.location).await {
                Ok(Some(r)) if r <= size => r,
                _ => {
                    return Err(Error::msg(format!(
                        "upload {}: the session is gone after a failed chunk ({problem})",
                        short(digest)
                    )))
                }
            };
            let (mut h, from) = if reached >= offset {
                (hasher.clone(), offset)
            } else {
                (Hasher::new(digest.algorithm()), 0)
            };
            let mut r = src.open(from).await?;
            hash_ahead(&mut r, &mut h, reached - from).await?;
            hasher = h;
            offset = reached;
            *reader.lock().await = r;
        }
        let got = hasher.finish();
        if &got != digest {
            self.cancel(scope, &session.location).await;
            return Err(Error::msg(format!(
                "the source's bytes for {digest} hash to {got}: the source is corrupt"
            )));
        }
        let url = with_digest(self.url(&session.location)?.as_ref(), digest)?;
        let resp = self
            .send(scope, |c| c.put(url.clone()).header(CONTENT_LENGTH, 0))
            .await
            .map_err(|e| e.context(format!("complete {}", short(digest))))?;
        // A PUT sent again after a 5xx whose first try did complete finds the session gone.
        if resp.status() == StatusCode::NOT_FOUND
            && self.head_blob(repo, digest, scope).await? == Some(size)
        {
            return Ok(sent);
        }
        check(resp, &format!("complete {}", short(digest))).await?;
        Ok(sent)
    }

    async fn cancel(&self, scope: &str, location: &str) {
        if let Ok(url) = self.url(location) {
            let _ = self.send(scope, |c| c.delete(url.clone())).await;
        }
    }
}

fn load(p: &Path) -> Option<Saved> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

fn save(p: &Path, session: &Session, offset: u64) {
    let saved = Saved {
        location: session.location.clone(),
        offset,
        min: session.min,
        max: session.max,
    };
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = p.with_extension("tmp");
    if std::fs::write(&tmp, serde_json::to_vec(&saved).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, p);
    }
}
