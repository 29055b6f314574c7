//! `/v2/<name>/manifests/<reference>`: GET and HEAD, PUT, DELETE.

use http::header;
use http::{Response, StatusCode};

use super::response::{
    content_length, empty, finish, header_str, response, Result, CONTENT_DIGEST, OCI_SUBJECT,
};
use super::{Ctx, Registry};
use crate::body::Body;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, ErrorCode};
use crate::manifest::Manifest;
use crate::names::{Name, Reference};
use crate::storage::Storage;

impl<S: Storage> Registry<S> {
    pub(super) async fn get_manifest(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        reference: &str,
        head: bool,
    ) -> Result<Response<Body>> {
        // A reference that is neither a tag nor a digest names nothing that can exist: it is
        // unknown (404), as clients and the conformance tests expect, not a bad request.
        let reference = Reference::parse(reference).map_err(|_| {
            Error::new(ErrorCode::ManifestUnknown)
                .with_detail(serde_json::json!({ "reference": reference }))
        })?;
        // A GET's bytes come with the lookup where the backend can (one round trip).
        let (found, body) = self.store.lookup(name, &reference, !head).await?;
        self.serve_manifest_with(cx, name, &reference, &found, head, body)
            .await
    }

    /// The answer for a manifest found in storage: its head, and for a GET its bytes (a pull).
    pub(crate) async fn serve_manifest(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        reference: &Reference,
        found: &crate::repo::manifests::Resolved,
        head: bool,
    ) -> Result<Response<Body>> {
        self.serve_manifest_with(cx, name, reference, found, head, None)
            .await
    }

    /// [`Registry::serve_manifest`] with the bytes [`crate::repo::Store::lookup`] may have
    /// read already.
    async fn serve_manifest_with(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        reference: &Reference,
        found: &crate::repo::manifests::Resolved,
        head: bool,
        prefetched: Option<Option<Body>>,
    ) -> Result<Response<Body>> {
        let b = response(StatusCode::OK)
            .header(header::CONTENT_TYPE, &found.record.media_type)
            .header(header::CONTENT_LENGTH, found.record.size)
            .header(header::ETAG, format!("\"{}\"", found.digest))
            .header(CONTENT_DIGEST, found.digest.to_string());
        if head {
            return Ok(finish(b, Body::Empty));
        }
        let body = self
            .store
            .read_manifest(name, reference, found, prefetched, &mut cx.events)
            .await?;
        self.store.note_pull(name, found, cx.now / 86_400).await;
        Ok(finish(b, body))
    }

    pub(super) async fn put_manifest(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        reference: &str,
    ) -> Result<Response<Body>> {
        let reference = Reference::parse(reference)?;
        let limit = self.settings.max_manifest_size;
        let too_large = || {
            Error::new(ErrorCode::SizeInvalid)
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                .with_message(format!("manifest larger than {limit} bytes"))
        };
        if content_length(cx.req)?.is_some_and(|l| l > limit as u64) {
            return Err(too_large());
        }
        let content_type = header_str(cx.req, header::CONTENT_TYPE).map(str::to_string);
        let body = std::mem::replace(cx.body, Body::Empty)
            .collect_limited(limit)
            .await
            .map_err(|_| {
                Error::new(ErrorCode::ManifestInvalid).with_message("request body ended early")
            })?
            .ok_or_else(too_large)?;
        let manifest = Manifest::parse(content_type.as_deref(), &body)?;
        let (digest, tag) = match &reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &body);
                if &actual != d {
                    return Err(Error::new(ErrorCode::DigestInvalid).with_detail(
                        serde_json::json!({ "expected": d.to_string(), "actual": actual.to_string() }),
                    ));
                }
                (actual, None)
            }
            Reference::Tag(t) => (Digest::of(Algorithm::Sha256, &body), Some(t)),
        };
        self.store
            .put_manifest(
                name,
                &digest,
                tag,
                &manifest,
                body,
                self.clock.now_ms(),
                &mut cx.events,
            )
            .await?;
        let mut b = response(StatusCode::CREATED)
            .header(header::LOCATION, self.urls.manifest(name, &digest))
            .header(CONTENT_DIGEST, digest.to_string())
            .header(header::CONTENT_LENGTH, 0);
        if let Some(subject) = &manifest.subject {
            b = b.header(OCI_SUBJECT, subject.to_string());
        }
        Ok(finish(b, Body::Empty))
    }

    pub(super) async fn delete_manifest(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        reference: &str,
    ) -> Result<Response<Body>> {
        match Reference::parse(reference)? {
            Reference::Tag(tag) => self.store.delete_tag(name, &tag, &mut cx.events).await?,
            Reference::Digest(d) => self.store.delete_manifest(name, &d, &mut cx.events).await?,
        }
        Ok(empty(StatusCode::ACCEPTED))
    }
}
