//! `/v2/<name>/blobs/uploads/`: POST (open a session, upload in one request, or mount), and
//! `/v2/<name>/blobs/uploads/<id>`: PATCH (a chunk), PUT (complete), GET (status), DELETE.

use http::header;
use http::{Response, StatusCode};

use super::response::{
    content_length, digest_param, empty, finish, header_str, hv, query, response, Result,
    CHUNK_MAX_LENGTH, CHUNK_MIN_LENGTH, CONTENT_DIGEST, UPLOAD_UUID,
};
use super::{Ctx, Registry};
use crate::auth::Action;
use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Error, ErrorCode};
use crate::names::Name;
use crate::range::parse_content_range;
use crate::repo::uploads::{out_of_order, range_value};
use crate::storage::Storage;
use crate::upload::UploadState;

impl<S: Storage> Registry<S> {
    fn upload_response(
        &self,
        status: StatusCode,
        name: &Name,
        id: &str,
        offset: u64,
    ) -> http::response::Builder {
        response(status)
            .header(header::LOCATION, self.urls.upload(name, id))
            .header(header::RANGE, range_value(offset))
            .header(UPLOAD_UUID, id)
            .header(header::CONTENT_LENGTH, 0)
    }

    /// A 416 from the domain names the session too, so the client can resume.
    fn with_session(&self, e: Error, name: &Name, id: &str) -> Error {
        if e.status != StatusCode::RANGE_NOT_SATISFIABLE {
            return e;
        }
        e.with_header(header::LOCATION, hv(&self.urls.upload(name, id)))
            .with_header(UPLOAD_UUID, hv(id))
    }

    fn blob_created(&self, name: &Name, digest: &Digest) -> Response<Body> {
        finish(
            response(StatusCode::CREATED)
                .header(header::LOCATION, self.urls.blob(name, digest))
                .header(CONTENT_DIGEST, digest.to_string())
                .header(header::CONTENT_LENGTH, 0),
            Body::Empty,
        )
    }

    pub(super) async fn start_upload(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
    ) -> Result<Response<Body>> {
        let q = query(cx.req);
        if let Some(mount) = q.get("mount") {
            let digest = Digest::parse(mount)?;
            // Mounting from another repository needs pull access there.
            let from = q
                .get("from")
                .filter(|from| self.access.allows(&cx.principal, from, Action::Pull));
            if let Some(from) = from {
                let from = Name::parse(from)?;
                if self
                    .store
                    .mount_blob(name, &from, &digest, &mut cx.events)
                    .await?
                {
                    return Ok(self.blob_created(name, &digest));
                }
            }
            // Not mountable: fall through to an ordinary session, as the spec says.
        } else if q.contains_key("digest") {
            // Monolithic upload: the whole blob in this one request.
            let digest = digest_param(q.get("digest"))?;
            let expected = content_length(cx.req)?;
            self.store
                .put_monolithic(
                    name,
                    &digest,
                    expected,
                    cx.body,
                    self.at(cx),
                    &mut cx.events,
                )
                .await?;
            return Ok(self.blob_created(name, &digest));
        }
        let id = self
            .store
            .open_session(name, self.at(cx), &mut cx.events)
            .await?;
        let mut resp = self
            .upload_response(StatusCode::ACCEPTED, name, &id, 0)
            .header(CHUNK_MIN_LENGTH, self.chunk_min_length);
        if self.settings.max_chunk_length > 0 {
            // Advisory, for clients behind a body limit: larger chunks are still accepted.
            resp = resp.header(CHUNK_MAX_LENGTH, self.settings.max_chunk_length);
        }
        Ok(finish(resp, Body::Empty))
    }

    async fn session(&self, cx: &mut Ctx<'_>, name: &Name, id: &str) -> Result<UploadState> {
        let at = self.at(cx);
        self.store.session(name, id, at, &mut cx.events).await
    }

    /// Checks a chunk's `Content-Range` against the session; returns the chunk's length.
    fn chunk_length(&self, cx: &Ctx<'_>, state: &UploadState) -> Result<Option<u64>> {
        let length = content_length(cx.req)?;
        let Some(cr) = header_str(cx.req, header::CONTENT_RANGE) else {
            return Ok(length);
        };
        let wrong_place =
            || out_of_order(state.offset, "chunk does not start where the upload ends");
        let (start, end) = parse_content_range(cr).ok_or_else(wrong_place)?;
        if start != state.offset {
            return Err(wrong_place());
        }
        let chunk = end - start + 1;
        if length.is_some_and(|l| l != chunk) {
            return Err(Error::new(ErrorCode::SizeInvalid)
                .with_message("Content-Length does not match Content-Range"));
        }
        Ok(Some(chunk))
    }

    pub(super) async fn patch_upload(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        id: &str,
    ) -> Result<Response<Body>> {
        let _session = self.store.lock_session(id).await;
        let result = async {
            let mut state = self.session(cx, name, id).await?;
            let expected = self.chunk_length(cx, &state)?;
            self.store
                .receive(&mut state, id, cx.body, expected, self.at(cx))
                .await?;
            self.store
                .save_session(name, id, &state, self.at(cx))
                .await?;
            Ok(state.offset)
        }
        .await;
        let offset = result.map_err(|e| self.with_session(e, name, id))?;
        Ok(finish(
            self.upload_response(StatusCode::ACCEPTED, name, id, offset),
            Body::Empty,
        ))
    }

    pub(super) async fn put_upload(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        id: &str,
    ) -> Result<Response<Body>> {
        let _session = self.store.lock_session(id).await;
        let result = async {
            let mut state = self.session(cx, name, id).await?;
            let digest = digest_param(query(cx.req).get("digest"))?;
            let expected = self.chunk_length(cx, &state)?;
            if expected != Some(0) {
                self.store
                    .receive(&mut state, id, cx.body, expected, self.at(cx))
                    .await?;
            }
            self.store
                .complete(name, id, state, &digest, self.at(cx), &mut cx.events)
                .await?;
            Ok(digest)
        }
        .await;
        let digest = result.map_err(|e| self.with_session(e, name, id))?;
        Ok(self.blob_created(name, &digest))
    }

    pub(super) async fn upload_status(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        id: &str,
    ) -> Result<Response<Body>> {
        let state = self.session(cx, name, id).await?;
        Ok(finish(
            self.upload_response(StatusCode::NO_CONTENT, name, id, state.offset),
            Body::Empty,
        ))
    }

    pub(super) async fn cancel_upload(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        id: &str,
    ) -> Result<Response<Body>> {
        let _session = self.store.lock_session(id).await;
        let state = self.session(cx, name, id).await?;
        self.store.cancel(id, &state).await?;
        Ok(empty(StatusCode::NO_CONTENT))
    }
}
