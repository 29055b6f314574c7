//! The headers the API uses, reading the request's, and building responses.

use std::collections::HashMap;

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::Body;
use crate::digest::Digest;
use crate::error::{Error, ErrorCode};

pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");
pub const CHUNK_MAX_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-max-length");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
pub const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

pub type Result<T> = std::result::Result<T, Error>;

/// A header value from text that may hold anything.
pub fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

pub fn response(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

/// The builder's response with `body`; a builder that went wrong (it cannot, with the header
/// values built here) answers a bare 500 rather than panicking.
pub fn finish(builder: http::response::Builder, body: Body) -> Response<Body> {
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response<Body> {
    finish(
        response(status).header(header::CONTENT_LENGTH, 0),
        Body::Empty,
    )
}

/// A JSON response.
pub fn json(
    status: StatusCode,
    content_type: &str,
    value: &impl Serialize,
) -> Result<Response<Body>> {
    let body = serde_json::to_vec(value)
        .map_err(|e| Error::internal(format!("serialising a response: {e}")))?;
    Ok(finish(
        response(status)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len()),
        Body::from(body),
    ))
}

/// The query's parameters (the last of a repeated one wins).
pub fn query(req: &Parts) -> HashMap<String, String> {
    req.uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub fn header_str(req: &Parts, name: HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn content_length(req: &Parts) -> Result<Option<u64>> {
    match req.headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::new(ErrorCode::SizeInvalid).with_message("invalid Content-Length")
            }),
    }
}

/// The `digest` query parameter.
pub fn digest_param(value: Option<&String>) -> Result<Digest> {
    let v = value.ok_or_else(|| {
        Error::new(ErrorCode::DigestInvalid).with_message("digest parameter missing")
    })?;
    Digest::parse(v)
}
