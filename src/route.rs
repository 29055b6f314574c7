//! Routing: `matchit` finds the API area, then the repository path is parsed from the right,
//! because repository names contain `/` and may even hold words such as `blobs` or `manifests`.

use std::sync::OnceLock;

use http::StatusCode;
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
    /// Anything outside `/v2`: the web UI's static files, if an adapter serves them.
    Ui(String),
}

#[derive(Clone, Copy)]
enum Area {
    Base,
    Catalog,
    Repository,
    Token,
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
        r.insert("/v2/{*rest}", Area::Repository)
            .expect("static route");
        r.insert("/token", Area::Token).expect("static route");
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
    /// Parses the path of a request (without its query).
    pub fn parse(path: &str) -> Result<Route, Error> {
        let matched = router().at(path).map_err(|_| not_found())?;
        match matched.value {
            Area::Base => Ok(Route::Base),
            Area::Catalog => Ok(Route::Catalog),
            Area::Token => Ok(Route::Token),
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
            ("/", Route::Ui(String::new())),
            ("/app.js", Route::Ui("app.js".into())),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path).unwrap(), want, "{path}");
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
