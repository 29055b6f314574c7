//! The spec's error codes as one typed enum, and the one JSON body they all use.
//!
//! Every failure the core answers with goes through [`Error`]: unknown routes and wrong methods
//! included, so a client never sees a plain-text body.

use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::body::Body;
use crate::storage::StorageError;

/// The error codes of the OCI Distribution Spec v1.1 (section "Error Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Not a spec code: the reference registry's code for a failure of the server itself (500).
    Unknown,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::TooManyRequests,
        ErrorCode::Unknown,
    ];

    /// The code as it appears in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The spec's default message for the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::BlobUploadInvalid => "blob upload invalid",
            ErrorCode::BlobUploadUnknown => "blob upload unknown to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::ManifestUnknown => "manifest unknown to registry",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::SizeInvalid => "provided length did not match content length",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::Unsupported => "the operation is unsupported",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::Unknown => "unknown error",
        }
    }

    /// The status the code answers with unless the caller says otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error answer: a spec code, a status, a message and optional detail and headers.
#[derive(Debug, Clone)]
pub struct Error {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the detail of a 5xx is shown to the client: never for a failure of the server
    /// itself ([`Error::internal`]), always for one a mirror's upstream caused.
    detail_public: bool,
}

impl Error {
    pub fn new(code: ErrorCode) -> Self {
        Error {
            code,
            status: code.status(),
            message: code.message().to_string(),
            detail: None,
            headers: Vec::new(),
            detail_public: false,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A failure of a mirror's upstream (503 and the like): the detail (the upstream's status)
    /// is for the client too.
    pub fn upstream(
        status: StatusCode,
        message: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        let mut e = Error::new(ErrorCode::Unknown)
            .with_status(status)
            .with_message(message)
            .with_detail(detail);
        e.detail_public = true;
        e
    }

    /// An internal failure of the storage backend: the one case that answers 500.
    /// The message given to the client is generic; the cause goes to the adapter's log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Error::new(ErrorCode::Unknown)
            .with_message("internal storage error")
            .with_detail(serde_json::Value::String(cause.to_string()))
    }

    /// What went wrong, for a log: the cause of an internal error, else the message.
    pub fn cause(&self) -> String {
        match &self.detail {
            Some(serde_json::Value::String(s)) if self.status.is_server_error() => s.clone(),
            _ => self.message.clone(),
        }
    }

    /// The JSON body: `{"errors":[{"code":..,"message":..,"detail":..}]}`.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Item<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            errors: [Item<'a>; 1],
        }
        // Internal errors never show their cause to the client.
        let detail = if self.status.is_server_error() && !self.detail_public {
            None
        } else {
            self.detail.as_ref()
        };
        serde_json::to_vec(&Body {
            errors: [Item {
                code: self.code.as_str(),
                message: &self.message,
                detail,
            }],
        })
        .unwrap_or_else(|_| {
            br#"{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}"#.to_vec()
        })
    }
}

/// Attached (as a response extension) to a 5xx response: what went wrong, for the adapter's
/// log. It never goes into the body.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl Error {
    /// The response for this error: its status, its headers and the spec's JSON body. A 5xx
    /// carries its cause as an [`InternalCause`] extension for the log.
    pub fn into_response(self) -> Response<Body> {
        let body = self.body();
        let mut resp = Response::new(Body::from(body.clone()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        for (k, v) in self.headers {
            h.append(k, v);
        }
        if self.status.is_server_error() {
            let cause = self
                .detail
                .as_ref()
                .map_or_else(|| self.message.clone(), |d| d.to_string());
            resp.extensions_mut().insert(InternalCause(cause));
        }
        resp
    }
}

/// A failure of the storage itself: 500 UNKNOWN, its cause for the log only; when the
/// storage's service is down, 503 (still UNKNOWN, with `Retry-After`).
impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        if e.is_unavailable() {
            return Error::internal(e)
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_message("storage unavailable: retry later")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Error::internal(e)
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Error::new(code)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_spec_json() {
        let e = Error::new(ErrorCode::BlobUnknown).with_detail(serde_json::json!({"digest": "x"}));
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "blob unknown to registry");
        assert_eq!(v["errors"][0]["detail"]["digest"], "x");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn every_code_has_a_distinct_name_and_a_client_or_auth_status() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for c in ErrorCode::ALL {
            assert_eq!(c.status().is_client_error(), c != ErrorCode::Unknown, "{c}");
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = Error::internal("/secret/path: permission denied");
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8(e.body()).unwrap();
        assert!(!body.contains("secret"), "{body}");
        let resp = Error::from(StorageError("/secret/path".into())).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp
            .extensions()
            .get::<InternalCause>()
            .unwrap()
            .0
            .contains("secret"));
        match resp.into_body() {
            Body::Full(b) => assert!(!String::from_utf8_lossy(&b).contains("secret")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unavailable_storage_is_503_json_without_its_cause() {
        let resp = Error::from(StorageError::unavailable("PostgreSQL at 10.0.0.5 refused"))
            .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        match resp.into_body() {
            Body::Full(b) => {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(v["errors"][0]["code"], "UNKNOWN");
                assert!(!String::from_utf8_lossy(&b).contains("10.0.0.5"));
            }
            other => panic!("{other:?}"),
        }
        assert!(!StorageError("unavailable".into()).is_unavailable());
    }
}
