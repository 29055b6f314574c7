//! `Route::parse` on any path. A refusal is a client error; a route, written back as a path (its
//! last segment percent-encoded), parses to the same route; repository names are valid.

#![no_main]

use edge_registry::names::Name;
use edge_registry::route::Route;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let route = match Route::parse(path) {
        Ok(r) => r,
        Err(e) => {
            assert!(e.status.is_client_error(), "{path:?}: {e}");
            return;
        }
    };
    let again = match &route {
        Route::Ui(p) => format!("/{p}"),
        Route::Tags(n) => format!("/v2/{n}/tags/list"),
        Route::Manifest(n, r) => format!("/v2/{n}/manifests/{}", enc(r)),
        Route::Blob(n, d) => format!("/v2/{n}/blobs/{}", enc(d)),
        Route::UploadStart(n) => format!("/v2/{n}/blobs/uploads/"),
        Route::Upload(n, id) => {
            assert!(!id.is_empty());
            format!("/v2/{n}/blobs/uploads/{}", enc(id))
        }
        Route::Referrers(n, d) => format!("/v2/{n}/referrers/{}", enc(d)),
        // Fixed paths (`/v2/`, `/v2/_catalog`, ...): nothing to write back.
        _ => return,
    };
    match &route {
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::UploadStart(n)
        | Route::Upload(n, _)
        | Route::Referrers(n, _) => {
            assert_eq!(Name::parse(n.as_str()).as_ref().ok(), Some(n));
        }
        _ => {}
    }
    assert_eq!(
        Route::parse(&again).ok().as_ref(),
        Some(&route),
        "{path:?} -> {route:?} -> {again:?}"
    );
});
