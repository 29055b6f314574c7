//! `/v2/<name>/blobs/<digest>`: GET and HEAD (with ranges), DELETE.

use http::header;
use http::{Response, StatusCode};

use super::response::{empty, finish, header_str, hv, response, Result, CONTENT_DIGEST};
use super::{Ctx, Registry};
use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Error, ErrorCode};
use crate::names::Name;
use crate::range::{parse_range, ByteRange};
use crate::storage::Storage;

fn blob_unknown(digest: &Digest) -> Error {
    Error::new(ErrorCode::BlobUnknown)
        .with_detail(serde_json::json!({ "digest": digest.to_string() }))
}

impl<S: Storage> Registry<S> {
    pub(crate) async fn get_blob(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        digest: &str,
        head: bool,
    ) -> Result<Response<Body>> {
        let digest = Digest::parse(digest)?;
        let size = self
            .store
            .blob_readable(name, &digest)
            .await?
            .ok_or_else(|| blob_unknown(&digest))?;
        let range = match header_str(cx.req, header::RANGE) {
            Some(r) => parse_range(r, size),
            None => ByteRange::Full,
        };
        let (status, start, len) = match range {
            ByteRange::Full => (StatusCode::OK, 0, size),
            ByteRange::Partial { start, end } => {
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            ByteRange::Unsatisfiable => {
                return Err(Error::new(ErrorCode::SizeInvalid)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_message("requested range not satisfiable")
                    .with_header(header::CONTENT_RANGE, hv(&format!("bytes */{size}"))));
            }
        };
        let mut b = response(status)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, format!("\"{digest}\""))
            .header(header::CACHE_CONTROL, "max-age=31536000")
            .header(CONTENT_DIGEST, digest.to_string());
        if status == StatusCode::PARTIAL_CONTENT {
            b = b.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", start, start + len - 1, size),
            );
        }
        if head {
            return Ok(finish(b, Body::Empty));
        }
        let body = self
            .store
            .read_blob(name, &digest, start, len, &mut cx.events)
            .await?
            .ok_or_else(|| blob_unknown(&digest))?;
        Ok(finish(b, body))
    }

    pub(super) async fn delete_blob(
        &self,
        cx: &mut Ctx<'_>,
        name: &Name,
        digest: &str,
    ) -> Result<Response<Body>> {
        let digest = Digest::parse(digest)?;
        self.store
            .unlink_blob(name, &digest, &mut cx.events)
            .await?;
        Ok(empty(StatusCode::ACCEPTED))
    }
}
