//! Upload sessions: opening one (bounded), reading its state (expiring it when stale), streaming
//! a request body into it, saving its state only if nobody saved it since it was read (the
//! compare-and-set that makes one of racing chunks land), claiming it to complete it (one of
//! racing final PUTs commits), completing, cancelling, expiring.
//!
//! A session's state is saved only after a chunk's bytes are durable, so it always describes a
//! prefix of the data that really is stored.

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::StatusCode;

use super::{keys, Result, Store};
use crate::body::Body;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, ErrorCode};
use crate::event::{Event, Events};
use crate::names::Name;
use crate::storage::{DirectPut, Freshness, SessionGuard, Storage};
use crate::upload::{new_upload_id, valid_upload_id, UploadState};

/// Bounds on sessions, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_sessions: usize,
    /// Seconds a session may go without a request.
    pub ttl: u64,
    pub max_blob_size: u64,
}

/// When a request happens, under which limits.
#[derive(Debug, Clone, Copy)]
pub struct At {
    /// Seconds since the Unix epoch.
    pub now: u64,
    pub limits: Limits,
}

/// A request body is written and hashed in pieces of at most this size (a read from the
/// socket natively hands over up to 4 MiB at once). Each piece goes to the writer before it is
/// hashed, so a backend that writes on another thread writes it meanwhile, and a request
/// ends about one piece's write after its last byte is hashed, not one read's.
const PIECE: usize = 512 * 1024;

/// The range header for a session holding `offset` bytes.
pub fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

pub fn too_large(max: u64) -> Error {
    Error::new(ErrorCode::SizeInvalid)
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_message(format!("blobs are limited to {max} bytes"))
}

fn unknown(id: &str) -> Error {
    Error::new(ErrorCode::BlobUploadUnknown).with_detail(serde_json::json!({ "id": id }))
}

/// 416 for a request that does not fit where the session is (the caller adds `Location`).
pub fn out_of_order(offset: u64, message: &str) -> Error {
    Error::new(ErrorCode::BlobUploadInvalid)
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_message(message.to_string())
        .with_header(header::RANGE, hv(&range_value(offset)))
}

fn digest_mismatch(expected: &Digest, actual: Option<&Digest>) -> Error {
    let mut detail = serde_json::json!({ "expected": expected.to_string() });
    if let Some(a) = actual {
        detail["actual"] = serde_json::Value::String(a.to_string());
    }
    Error::new(ErrorCode::DigestInvalid).with_detail(detail)
}

fn encode(state: &UploadState) -> Result<Bytes> {
    state
        .encode()
        .map(Bytes::from)
        .map_err(|e| Error::internal(format!("serialising an upload state: {e}")))
}

/// An error that leaves the rest of the request body unread: the connection must close.
fn closing(e: Error) -> Error {
    e.with_header(header::CONNECTION, HeaderValue::from_static("close"))
}

impl<S: Storage> Store<S> {
    /// Holds off other requests on session `id` (natively) until dropped.
    pub async fn lock_session(&self, id: &str) -> Box<dyn SessionGuard> {
        self.storage.lock_session(id).await
    }

    /// Opens a session in `name`; 429 when `limits.max_sessions` are open (after expiring
    /// stale ones).
    pub async fn open_session(&self, name: &Name, at: At, events: &mut Events) -> Result<String> {
        let max = at.limits.max_sessions;
        let open = self
            .storage
            .list(keys::UPLOADS_DIR, Freshness::Current)
            .await?
            .len();
        if open >= max && self.expire_uploads(at.now, at.limits.ttl, events).await? >= max {
            return Err(Error::new(ErrorCode::TooManyRequests)
                .with_message(format!(
                    "{max} upload sessions are open: finish or cancel some, or wait for them to expire"
                ))
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("60")));
        }
        let id = new_upload_id();
        let state = UploadState::new(name, Algorithm::Sha256, at.now);
        self.storage
            .put(&keys::upload(&id), encode(&state)?)
            .await?;
        Ok(id)
    }

    /// The state of session `id` of `name`, with the version it was read at; unknown
    /// (BLOB_UPLOAD_UNKNOWN) when there is none, it belongs elsewhere, it is being completed,
    /// or it has gone stale (then it is expired here).
    pub async fn session(
        &self,
        name: &Name,
        id: &str,
        at: At,
        events: &mut Events,
    ) -> Result<UploadState> {
        if !valid_upload_id(id) {
            return Err(unknown(id));
        }
        let (raw, version) = self
            .storage
            .get_versioned(&keys::upload(id))
            .await?
            .ok_or_else(|| unknown(id))?;
        let mut state = UploadState::decode(&raw).ok_or_else(|| unknown(id))?;
        if state.repo != name.as_str() || state.completing {
            return Err(unknown(id));
        }
        if state.is_stale(at.now, at.limits.ttl) {
            self.expire_session(id, &state, events).await;
            return Err(unknown(id));
        }
        state.version = Some(version);
        Ok(state)
    }

    /// Saves a session's state read by [`Store::session`] if nobody saved it since; a request
    /// that lost such a race gets 416 with the session's current range (or 404 if it is gone).
    pub async fn save_session(
        &self,
        name: &Name,
        id: &str,
        state: &UploadState,
        at: At,
    ) -> Result<()> {
        let key = keys::upload(id);
        let value = encode(state)?;
        let Some(version) = &state.version else {
            return Ok(self.storage.put(&key, value).await?);
        };
        if self.storage.put_if(&key, value, version).await? {
            return Ok(());
        }
        let current = self.session(name, id, at, &mut Events::new()).await?;
        Err(out_of_order(
            current.offset,
            "the upload was changed by another request",
        ))
    }

    /// Streams a request body into the session, hashing it on the way, and advances the state
    /// (not saved yet) once the bytes are durable. `expected` is the body's declared length.
    pub async fn receive(
        &self,
        state: &mut UploadState,
        id: &str,
        body: &mut Body,
        expected: Option<u64>,
        at: At,
    ) -> Result<()> {
        let max = at.limits.max_blob_size;
        if expected.is_some_and(|e| state.offset.saturating_add(e) > max) {
            return Err(too_large(max));
        }
        let mut hasher = state
            .hasher()
            .ok_or_else(|| Error::internal("corrupt upload state"))?;
        let mut writer = self
            .storage
            .upload_writer(id, state.offset, state.backend.as_deref())
            .await?;
        if let Some(len) = expected {
            writer.declared_length(len);
        }
        let mut stream = std::mem::replace(body, Body::Empty).into_stream();
        let mut n: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                closing(
                    Error::new(ErrorCode::BlobUploadInvalid)
                        .with_message("request body ended early"),
                )
            })?;
            n += chunk.len() as u64;
            if state.offset + n > max {
                return Err(closing(too_large(max)));
            }
            if expected.is_some_and(|e| n > e) {
                return Err(closing(
                    Error::new(ErrorCode::SizeInvalid).with_message("body longer than declared"),
                ));
            }
            let mut rest = chunk;
            while !rest.is_empty() {
                let piece = rest.split_to(rest.len().min(PIECE));
                writer
                    .write(piece.clone())
                    .await
                    .map_err(|e| closing(e.into()))?;
                hasher.update(&piece);
            }
        }
        if expected.is_some_and(|e| n != e) {
            return Err(
                Error::new(ErrorCode::SizeInvalid).with_message("body shorter than declared")
            );
        }
        state.backend = writer.finish().await?;
        state.offset += n;
        state.updated = at.now;
        state.set_hasher(&hasher);
        Ok(())
    }

    /// Verifies a finished session against `digest` and turns it into a blob of `name`:
    /// claims the session first (of racing final PUTs exactly one commits, and a crash from
    /// there on leaves a session clients see as unknown, never one whose data already became
    /// the blob), commits the data, links the blob, and ends the session.
    pub async fn complete(
        &self,
        name: &Name,
        id: &str,
        state: UploadState,
        digest: &Digest,
        at: At,
        events: &mut Events,
    ) -> Result<()> {
        let backend = state.backend.as_deref();
        let actual = if state.offset == 0 {
            // Nothing was received (and an empty upload may have written no data at all).
            Hasher::new(digest.algorithm()).finish()
        } else if state.algorithm() == digest.algorithm() {
            state
                .hasher()
                .ok_or_else(|| Error::internal("corrupt upload state"))?
                .finish()
        } else {
            // The session hashed with another algorithm: hash the stored bytes once more.
            let mut h = Hasher::new(digest.algorithm());
            let mut s = self.storage.upload_read(id, state.offset, backend).await?;
            while let Some(chunk) = s.next().await {
                h.update(&chunk.map_err(|e| Error::internal(e.to_string()))?);
            }
            h.finish()
        };
        if &actual != digest {
            let _ = self.storage.upload_delete(id, backend).await;
            let _ = self.storage.delete(&keys::upload(id)).await;
            return Err(digest_mismatch(digest, Some(&actual)));
        }
        if state.version.is_some() {
            let claimed = UploadState {
                completing: true,
                ..state.clone()
            };
            self.save_session(name, id, &claimed, at).await?;
        }
        self.storage
            .upload_commit(id, digest, state.offset, backend)
            .await?;
        self.blob_stored(name, digest, state.offset, events).await?;
        self.storage.delete(&keys::upload(id)).await?;
        Ok(())
    }

    /// Stores a whole blob sent in one request (`POST ?digest=`): straight into the blob
    /// store when the backend verifies the digest itself, else through a session that is never
    /// saved.
    pub async fn put_monolithic(
        &self,
        name: &Name,
        digest: &Digest,
        expected: Option<u64>,
        body: &mut Body,
        at: At,
        events: &mut Events,
    ) -> Result<()> {
        if expected.is_some_and(|size| size > at.limits.max_blob_size) {
            return Err(too_large(at.limits.max_blob_size));
        }
        if let Some(size) = expected {
            let taken = std::mem::replace(body, Body::Empty);
            match self.storage.blob_put_direct(digest, size, taken).await? {
                DirectPut::Stored => return self.blob_stored(name, digest, size, events).await,
                DirectPut::Mismatch => return Err(digest_mismatch(digest, None)),
                DirectPut::Declined(b) => *body = b,
            }
        }
        let id = new_upload_id();
        let mut state = UploadState::new(name, digest.algorithm(), at.now);
        if let Err(e) = self.receive(&mut state, &id, body, expected, at).await {
            let _ = self
                .storage
                .upload_delete(&id, state.backend.as_deref())
                .await;
            return Err(e);
        }
        self.complete(name, &id, state, digest, at, events).await
    }

    /// Ends a session and removes its data.
    pub async fn cancel(&self, id: &str, state: &UploadState) -> Result<()> {
        self.storage.delete(&keys::upload(id)).await?;
        self.storage
            .upload_delete(id, state.backend.as_deref())
            .await?;
        Ok(())
    }

    /// Removes a session and its data (best effort: what is left expires again later).
    async fn expire_session(&self, id: &str, state: &UploadState, events: &mut Events) {
        let _ = self
            .storage
            .upload_delete(id, state.backend.as_deref())
            .await;
        if self.storage.delete(&keys::upload(id)).await.is_ok() {
            events.push(Event::UploadExpired {
                id: id.to_string(),
                repo: state.repo.clone(),
            });
        }
    }

    /// Removes upload data that no session owns and that nothing has written for `idle`
    /// seconds: a crash during a monolithic upload (which saves no session) or between a
    /// cancel's two deletes leaves such data, and nothing could ever complete or delete it.
    /// With nothing in flight (at start) `idle` may be 0; while requests run, a monolithic
    /// upload's data has no session either, so only data idle longer than any request may be
    /// taken. Returns how many were removed.
    pub async fn sweep_orphan_data(&self, now: u64, idle: u64) -> Result<usize> {
        let mut removed = 0;
        for data in self.storage.list_upload_data().await? {
            if now < data.modified.saturating_add(idle) || !valid_upload_id(&data.id) {
                continue;
            }
            let _session = self.storage.lock_session(&data.id).await;
            if self.storage.get(&keys::upload(&data.id)).await?.is_none() {
                self.storage.upload_delete(&data.id, None).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes every session that has seen no request for `ttl` seconds at `now` (and any whose
    /// state no longer parses), and upload data no session owns that has been idle as long.
    /// Returns how many sessions remain open.
    pub async fn expire_uploads(&self, now: u64, ttl: u64, events: &mut Events) -> Result<usize> {
        self.sweep_orphan_data(now, ttl).await?;
        let mut open = 0;
        for id in self
            .storage
            .list(keys::UPLOADS_DIR, Freshness::Current)
            .await?
        {
            // Natively this waits for a request working on the session, which then has
            // refreshed its activity time.
            let _session = self.storage.lock_session(&id).await;
            let Some(raw) = self.storage.get(&keys::upload(&id)).await? else {
                continue;
            };
            match UploadState::decode(&raw) {
                Some(state) if !state.is_stale(now, ttl) => open += 1,
                Some(state) => self.expire_session(&id, &state, events).await,
                None => {
                    let _ = self.storage.delete(&keys::upload(&id)).await;
                }
            }
        }
        Ok(open)
    }
}
