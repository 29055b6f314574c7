//! Routing: `matchit` finds the API area, then the repository path is parsed from the right,
//! because repository names contain `/` and may even hold words such as `blobs` or `manifests`.
//!
//! Then one table, [`OPERATIONS`], turns (route, method) into an [`Op`] and says what access
//! it needs. Dispatch, the authorization check and `Allow` all come from it, and every [`Op`]
//! has a stable name ([`Op::name`]) that adapters use as the log and metrics label.

use std::sync::OnceLock;

use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;

use crate::error::{Error, ErrorCode};
use crate::names::Name;

/// Where a request goes. Names are validated here; references, digests and upload ids are
/// validated by their handlers, which know which error code fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/_sizes`: each repository's size, for the web UI (not in the spec).
    Sizes,
    /// `/v2/<name>/tags/list`
    Tags(Name),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(Name, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(Name, String),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(Name),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(Name, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(Name, String),
    /// `/token`: the token endpoint of the token auth protocol.
    Token,
    /// `/healthz`: the process is up.
    Health,
    /// `/readyz`: storage is writable (and the adapter's own checks pass).
    Ready,
    /// Anything outside `/v2`: the web UI's static files, if an adapter serves them.
    Ui(String),
}

/// The kind of a [`Route`], without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Base,
    Catalog,
    Sizes,
    Tags,
    Manifest,
    Blob,
    UploadStart,
    Upload,
    Referrers,
    Token,
    Health,
    Ready,
    Ui,
}

/// What an operation needs of the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: the token endpoint, the health checks and the web UI's files.
    Nothing,
    /// The API version check (`/v2/`), which is also how clients log in.
    Base,
    /// The catalog (filtered to what the principal may pull).
    Catalog,
    Pull,
    Push,
    Delete,
}

/// The operations, without their parameters. Each has a stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Base,
    Catalog,
    Sizes,
    ListTags,
    GetManifest,
    HeadManifest,
    PutManifest,
    DeleteManifest,
    GetBlob,
    HeadBlob,
    DeleteBlob,
    StartUpload,
    UploadStatus,
    PatchUpload,
    PutUpload,
    CancelUpload,
    Referrers,
    Token,
    Health,
    Ready,
    Ui,
}

impl OpKind {
    /// The operation's stable name: the label of its log lines and metrics.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Base => "base",
            OpKind::Catalog => "catalog",
            OpKind::Sizes => "sizes",
            OpKind::ListTags => "tags.list",
            OpKind::GetManifest => "manifest.get",
            OpKind::HeadManifest => "manifest.head",
            OpKind::PutManifest => "manifest.put",
            OpKind::DeleteManifest => "manifest.delete",
            OpKind::GetBlob => "blob.get",
            OpKind::HeadBlob => "blob.head",
            OpKind::DeleteBlob => "blob.delete",
            OpKind::StartUpload => "upload.start",
            OpKind::UploadStatus => "upload.status",
            OpKind::PatchUpload => "upload.patch",
            OpKind::PutUpload => "upload.complete",
            OpKind::CancelUpload => "upload.cancel",
            OpKind::Referrers => "referrers.list",
            OpKind::Token => "token",
            OpKind::Health => "health",
            OpKind::Ready => "ready",
            OpKind::Ui => "ui",
        }
    }
}

/// The label of a response that no operation produced (an unknown path or method).
pub const NO_OP: &str = "none";

/// One row of the operation table.
#[derive(Debug, Clone)]
pub struct Row {
    pub route: RouteKind,
    pub method: Method,
    pub op: OpKind,
    pub needs: Needs,
}

const fn row(route: RouteKind, method: Method, op: OpKind, needs: Needs) -> Row {
    Row {
        route,
        method,
        op,
        needs,
    }
}

/// Every operation: its route, its method, and the access it needs.
pub const OPERATIONS: &[Row] = {
    use Needs as N;
    use OpKind as O;
    use RouteKind as R;
    &[
        row(R::Base, Method::GET, O::Base, N::Base),
        row(R::Base, Method::HEAD, O::Base, N::Base),
        row(R::Catalog, Method::GET, O::Catalog, N::Catalog),
        row(R::Catalog, Method::HEAD, O::Catalog, N::Catalog),
        row(R::Sizes, Method::GET, O::Sizes, N::Catalog),
        row(R::Tags, Method::GET, O::ListTags, N::Pull),
        row(R::Tags, Method::HEAD, O::ListTags, N::Pull),
        row(R::Manifest, Method::GET, O::GetManifest, N::Pull),
        row(R::Manifest, Method::HEAD, O::HeadManifest, N::Pull),
        row(R::Manifest, Method::PUT, O::PutManifest, N::Push),
        row(R::Manifest, Method::DELETE, O::DeleteManifest, N::Delete),
        row(R::Blob, Method::GET, O::GetBlob, N::Pull),
        row(R::Blob, Method::HEAD, O::HeadBlob, N::Pull),
        row(R::Blob, Method::DELETE, O::DeleteBlob, N::Delete),
        row(R::UploadStart, Method::POST, O::StartUpload, N::Push),
        // Every request of an upload session pushes, even asking for its status.
        row(R::Upload, Method::GET, O::UploadStatus, N::Push),
        row(R::Upload, Method::HEAD, O::UploadStatus, N::Push),
        row(R::Upload, Method::PATCH, O::PatchUpload, N::Push),
        row(R::Upload, Method::PUT, O::PutUpload, N::Push),
        row(R::Upload, Method::DELETE, O::CancelUpload, N::Push),
        row(R::Referrers, Method::GET, O::Referrers, N::Pull),
        row(R::Referrers, Method::HEAD, O::Referrers, N::Pull),
        row(R::Token, Method::GET, O::Token, N::Nothing),
        row(R::Token, Method::HEAD, O::Token, N::Nothing),
        row(R::Token, Method::POST, O::Token, N::Nothing),
        row(R::Health, Method::GET, O::Health, N::Nothing),
        row(R::Health, Method::HEAD, O::Health, N::Nothing),
        row(R::Ready, Method::GET, O::Ready, N::Nothing),
        row(R::Ready, Method::HEAD, O::Ready, N::Nothing),
        row(R::Ui, Method::GET, O::Ui, N::Nothing),
        row(R::Ui, Method::HEAD, O::Ui, N::Nothing),
    ]
};

/// An operation with its parameters, as parsed from a request. Names are validated; the
/// other parameters are validated by their handlers, which know which error code fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Base,
    Catalog,
    Sizes,
    ListTags {
        name: Name,
    },
    GetManifest {
        name: Name,
        reference: String,
        head: bool,
    },
    PutManifest {
        name: Name,
        reference: String,
    },
    DeleteManifest {
        name: Name,
        reference: String,
    },
    GetBlob {
        name: Name,
        digest: String,
        head: bool,
    },
    DeleteBlob {
        name: Name,
        digest: String,
    },
    StartUpload {
        name: Name,
    },
    UploadStatus {
        name: Name,
        id: String,
    },
    PatchUpload {
        name: Name,
        id: String,
    },
    PutUpload {
        name: Name,
        id: String,
    },
    CancelUpload {
        name: Name,
        id: String,
    },
    Referrers {
        name: Name,
        digest: String,
    },
    Token,
    Health,
    Ready,
    Ui {
        path: String,
    },
}

/// A request resolved against the table: the operation, its kind and what it needs.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub op: Op,
    pub kind: OpKind,
    pub needs: Needs,
}

impl Resolved {
    /// The repository the operation acts on, if any.
    pub fn repository(&self) -> Option<&Name> {
        match &self.op {
            Op::ListTags { name }
            | Op::GetManifest { name, .. }
            | Op::PutManifest { name, .. }
            | Op::DeleteManifest { name, .. }
            | Op::GetBlob { name, .. }
            | Op::DeleteBlob { name, .. }
            | Op::StartUpload { name }
            | Op::UploadStatus { name, .. }
            | Op::PatchUpload { name, .. }
            | Op::PutUpload { name, .. }
            | Op::CancelUpload { name, .. }
            | Op::Referrers { name, .. } => Some(name),
            Op::Base
            | Op::Catalog
            | Op::Sizes
            | Op::Token
            | Op::Health
            | Op::Ready
            | Op::Ui { .. } => None,
        }
    }
}

/// The methods a route takes, as an `Allow` header value, from the table.
pub fn allow(route: RouteKind) -> String {
    OPERATIONS
        .iter()
        .filter(|r| r.route == route)
        .map(|r| r.method.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves a request's method and path against [`OPERATIONS`]: 404 for a path that names no
/// endpoint, 405 (with `Allow`) for a method the route does not take.
pub fn resolve(method: &Method, path: &str) -> Result<Resolved, Error> {
    let route = Route::parse(path)?;
    let kind = route.kind();
    let Some(row) = OPERATIONS
        .iter()
        .find(|r| r.route == kind && r.method == *method)
    else {
        let allow = allow(kind);
        return Err(Error::new(ErrorCode::Unsupported)
            .with_message("method not allowed")
            .with_header(
                header::ALLOW,
                HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("GET")),
            ));
    };
    let head = *method == Method::HEAD;
    let op = match (row.op, route) {
        (OpKind::Base, _) => Op::Base,
        (OpKind::Catalog, _) => Op::Catalog,
        (OpKind::Sizes, _) => Op::Sizes,
        (OpKind::ListTags, Route::Tags(name)) => Op::ListTags { name },
        (OpKind::GetManifest | OpKind::HeadManifest, Route::Manifest(name, reference)) => {
            Op::GetManifest {
                name,
                reference,
                head,
            }
        }
        (OpKind::PutManifest, Route::Manifest(name, reference)) => {
            Op::PutManifest { name, reference }
        }
        (OpKind::DeleteManifest, Route::Manifest(name, reference)) => {
            Op::DeleteManifest { name, reference }
        }
        (OpKind::GetBlob | OpKind::HeadBlob, Route::Blob(name, digest)) => {
            Op::GetBlob { name, digest, head }
        }
        (OpKind::DeleteBlob, Route::Blob(name, digest)) => Op::DeleteBlob { name, digest },
        (OpKind::StartUpload, Route::UploadStart(name)) => Op::StartUpload { name },
        (OpKind::UploadStatus, Route::Upload(name, id)) => Op::UploadStatus { name, id },
        (OpKind::PatchUpload, Route::Upload(name, id)) => Op::PatchUpload { name, id },
        (OpKind::PutUpload, Route::Upload(name, id)) => Op::PutUpload { name, id },
        (OpKind::CancelUpload, Route::Upload(name, id)) => Op::CancelUpload { name, id },
        (OpKind::Referrers, Route::Referrers(name, digest)) => Op::Referrers { name, digest },
        (OpKind::Token, _) => Op::Token,
        (OpKind::Health, _) => Op::Health,
        (OpKind::Ready, _) => Op::Ready,
        (OpKind::Ui, Route::Ui(path)) => Op::Ui { path },
        // The table pairs each kind with its own route only.
        _ => return Err(not_found()),
    };
    Ok(Resolved {
        op,
        kind: row.op,
        needs: row.needs,
    })
}

#[derive(Clone, Copy)]
enum Area {
    Base,
    Catalog,
    Sizes,
    Repository,
    Token,
    Health,
    Ready,
    Ui,
}

fn router() -> &'static matchit::Router<Area> {
    static ROUTER: OnceLock<matchit::Router<Area>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut r = matchit::Router::new();
        r.insert("/v2", Area::Base).expect("static route");
        r.insert("/v2/", Area::Base).expect("static route");
        r.insert("/v2/_catalog", Area::Catalog)
            .expect("static route");
        r.insert("/v2/_sizes", Area::Sizes).expect("static route");
        r.insert("/v2/{*rest}", Area::Repository)
            .expect("static route");
        r.insert("/token", Area::Token).expect("static route");
        r.insert("/healthz", Area::Health).expect("static route");
        r.insert("/readyz", Area::Ready).expect("static route");
        r.insert("/", Area::Ui).expect("static route");
        r.insert("/{*path}", Area::Ui).expect("static route");
        r
    })
}

/// The error for a path that names no endpoint.
pub fn not_found() -> Error {
    Error::new(ErrorCode::Unsupported)
        .with_status(StatusCode::NOT_FOUND)
        .with_message("no such endpoint")
}

impl Route {
    pub fn kind(&self) -> RouteKind {
        match self {
            Route::Base => RouteKind::Base,
            Route::Catalog => RouteKind::Catalog,
            Route::Sizes => RouteKind::Sizes,
            Route::Tags(_) => RouteKind::Tags,
            Route::Manifest(..) => RouteKind::Manifest,
            Route::Blob(..) => RouteKind::Blob,
            Route::UploadStart(_) => RouteKind::UploadStart,
            Route::Upload(..) => RouteKind::Upload,
            Route::Referrers(..) => RouteKind::Referrers,
            Route::Token => RouteKind::Token,
            Route::Health => RouteKind::Health,
            Route::Ready => RouteKind::Ready,
            Route::Ui(_) => RouteKind::Ui,
        }
    }

    /// Parses the path of a request (without its query).
    pub fn parse(path: &str) -> Result<Route, Error> {
        let matched = router().at(path).map_err(|_| not_found())?;
        match matched.value {
            Area::Base => Ok(Route::Base),
            Area::Catalog => Ok(Route::Catalog),
            Area::Sizes => Ok(Route::Sizes),
            Area::Token => Ok(Route::Token),
            Area::Health => Ok(Route::Health),
            Area::Ready => Ok(Route::Ready),
            Area::Ui => Ok(Route::Ui(
                matched.params.get("path").unwrap_or("").to_string(),
            )),
            Area::Repository => {
                let rest = matched.params.get("rest").unwrap_or("");
                parse_repository_path(rest)
            }
        }
    }
}

fn parse_repository_path(rest: &str) -> Result<Route, Error> {
    let segments = rest
        .split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| Error::new(ErrorCode::NameInvalid).with_message("path is not UTF-8"))
        })
        .collect::<Result<Vec<String>, Error>>()?;
    let n = segments.len();
    let seg = |i: usize| segments[i].as_str();
    let name = |end: usize| Name::from_components(segments[..end].iter().map(String::as_str));

    if n >= 4 && seg(n - 3) == "blobs" && seg(n - 2) == "uploads" {
        let id = seg(n - 1);
        return if id.is_empty() {
            Ok(Route::UploadStart(name(n - 3)?))
        } else {
            Ok(Route::Upload(name(n - 3)?, id.to_string()))
        };
    }
    if n >= 3 && seg(n - 2) == "blobs" && seg(n - 1) == "uploads" {
        return Ok(Route::UploadStart(name(n - 2)?));
    }
    if n >= 3 {
        let last = seg(n - 1).to_string();
        match seg(n - 2) {
            "blobs" => return Ok(Route::Blob(name(n - 2)?, last)),
            "manifests" => return Ok(Route::Manifest(name(n - 2)?, last)),
            "referrers" => return Ok(Route::Referrers(name(n - 2)?, last)),
            "tags" if last == "list" => return Ok(Route::Tags(name(n - 2)?)),
            _ => {}
        }
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn routes() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases = [
            ("/v2/", Route::Base),
            ("/v2", Route::Base),
            ("/v2/_catalog", Route::Catalog),
            ("/v2/a/tags/list", Route::Tags(name("a"))),
            (
                "/v2/a/b/c/manifests/latest",
                Route::Manifest(name("a/b/c"), "latest".into()),
            ),
            (
                &format!("/v2/a/blobs/{d}"),
                Route::Blob(name("a"), d.into()),
            ),
            (
                &format!("/v2/a/blobs/sha256%3A{}", &d[7..]),
                Route::Blob(name("a"), d.into()),
            ),
            ("/v2/a/blobs/uploads/", Route::UploadStart(name("a"))),
            ("/v2/a/blobs/uploads", Route::UploadStart(name("a"))),
            (
                "/v2/a/blobs/uploads/xyz",
                Route::Upload(name("a"), "xyz".into()),
            ),
            (
                &format!("/v2/x/referrers/{d}"),
                Route::Referrers(name("x"), d.into()),
            ),
            // Names may contain the words the API uses.
            (
                "/v2/blobs/manifests/manifests/t",
                Route::Manifest(name("blobs/manifests"), "t".into()),
            ),
            ("/v2/tags/list/tags/list", Route::Tags(name("tags/list"))),
            (
                "/v2/a/blobs/uploads/blobs/uploads/",
                Route::UploadStart(name("a/blobs/uploads")),
            ),
            ("/healthz", Route::Health),
            ("/readyz", Route::Ready),
            ("/", Route::Ui(String::new())),
            ("/app.js", Route::Ui("app.js".into())),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn the_table_gives_ops_allow_and_needs() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = resolve(&Method::HEAD, &format!("/v2/a/blobs/{d}")).unwrap();
        assert_eq!(r.kind.name(), "blob.head");
        assert_eq!(r.needs, Needs::Pull);
        assert!(matches!(r.op, Op::GetBlob { head: true, .. }));
        let r = resolve(&Method::GET, "/v2/a/blobs/uploads/x").unwrap();
        assert_eq!((r.kind, r.needs), (OpKind::UploadStatus, Needs::Push));
        assert_eq!(allow(RouteKind::Base), "GET, HEAD");
        assert_eq!(allow(RouteKind::Manifest), "GET, HEAD, PUT, DELETE");
        assert_eq!(allow(RouteKind::Upload), "GET, HEAD, PATCH, PUT, DELETE");
        assert_eq!(allow(RouteKind::UploadStart), "POST");
        assert_eq!(allow(RouteKind::Token), "GET, HEAD, POST");
        let e = resolve(&Method::POST, "/v2/").unwrap_err();
        assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.headers[0].1, "GET, HEAD");
        // Every row's op pairs with its route, and names are distinct per kind.
        for row in OPERATIONS {
            let mut names: Vec<_> = OPERATIONS
                .iter()
                .filter(|r| r.op == row.op)
                .map(|r| r.route)
                .collect();
            names.dedup();
            assert_eq!(names, [row.route], "{:?}", row.op);
        }
    }

    #[test]
    fn rejects() {
        for (path, code, status) in [
            ("/v2/a/unknown/x", ErrorCode::Unsupported, 404),
            ("/v2/a", ErrorCode::Unsupported, 404),
            ("/v2/manifests/latest", ErrorCode::Unsupported, 404),
            ("/v2/A/manifests/latest", ErrorCode::NameInvalid, 400),
            ("/v2/../manifests/latest", ErrorCode::NameInvalid, 400),
            ("/v2/a/%2e%2e/manifests/latest", ErrorCode::NameInvalid, 400),
            ("/v2/a%2Fb/manifests/latest", ErrorCode::NameInvalid, 400),
            ("/v2/a/%ff/manifests/latest", ErrorCode::NameInvalid, 400),
            ("/v2//a/manifests/latest", ErrorCode::NameInvalid, 400),
        ] {
            let e = Route::parse(path).unwrap_err();
            assert_eq!((e.code, e.status.as_u16()), (code, status), "{path}");
        }
    }
}
