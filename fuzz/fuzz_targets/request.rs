//! Whole requests through `Registry::handle` over memory storage: a short session of requests
//! with fuzzed methods, paths, queries, headers and bodies (whole, chunked, or failing half-way).
//!
//! The input is a readable script of up to eight requests separated by lines `===`:
//!
//! ```text
//! PATCH {upload}
//! Content-Range: {next}
//! x-fuzz-body: chunks 3
//!
//! <body bytes>
//! ===
//! PUT {upload}?digest={upload256}
//! ```
//!
//! A request is `METHOD TARGET`, header lines, an empty line and the body. Placeholders let a
//! session reach deep: `{upload}` is the path of the upload session last used, `{location}` the
//! last `Location` answered, `{d0}`..`{d9}` digests seen so far (of bodies sent, and answered),
//! `{body256}`/`{body512}` the digests of this body, `{upload256}`/`{upload512}` those of all
//! the session's bytes with this body, `{len}` its length, `{offset}` the bytes the session holds
//! and `{next}` this body's `Content-Range` in it. In a body only `{dN}` is replaced (to write
//! manifests that reference known blobs). `x-fuzz-body: chunks N` sends the body as a stream of
//! N-byte chunks, `x-fuzz-body: fail` as a stream that fails after it (the client went away).
//!
//! Every response: no panic, no 5xx, a `Content-Length` equal to the body, no body for `HEAD`,
//! errors in the spec's JSON. An upload's `Range` is the bytes the session was sent. Every `201`
//! with a digest: what it created reads back with that digest (and a completed upload is gone).

#![no_main]

mod common;

use bytes::Bytes;
use common::{get, put_tag, registry, send, Reg};
use edge_registry::body::BoxError;
use edge_registry::digest::{Algorithm, Digest};
use edge_registry::route::Route;
use edge_registry::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;

const MAX_REQUESTS: usize = 8;
const CONTENT_DIGEST: &str = "docker-content-digest";

/// What a session remembers between its requests.
struct Session {
    reg: Reg,
    digests: Vec<String>,
    location: Option<String>,
    /// The uploads this session opened: their id, repository and the bytes they were sent.
    uploads: Vec<(String, String, Vec<u8>)>,
    /// The one it used last.
    current: Option<usize>,
}

impl Session {
    fn learn(&mut self, d: String) {
        if !self.digests.contains(&d) {
            self.digests.push(d);
        }
    }

    fn learn_body(&mut self, data: &[u8]) {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            self.learn(Digest::of(alg, data).to_string());
        }
    }

    fn upload_data(&self) -> &[u8] {
        self.current.map_or(&[], |i| &self.uploads[i].2)
    }

    /// Replaces `{d0}`..`{d9}`.
    fn digests_in(&self, s: &str) -> String {
        let mut s = s.to_string();
        for i in 0..10 {
            let p = format!("{{d{i}}}");
            if s.contains(&p) {
                s = s.replace(&p, &self.digests[i % self.digests.len()]);
            }
        }
        s
    }

    /// Replaces every placeholder, for a request sending `body`.
    fn expand(&self, s: &str, body: &[u8]) -> String {
        if !s.contains('{') {
            return s.to_string();
        }
        let mut s = self.digests_in(s);
        let mut all = self.upload_data().to_vec();
        all.extend_from_slice(body);
        let offset = self.upload_data().len();
        let upload = match self.current {
            Some(i) => format!(
                "/v2/{}/blobs/uploads/{}",
                self.uploads[i].1, self.uploads[i].0
            ),
            None => "/v2/a/blobs/uploads/none".to_string(),
        };
        let values: [(&str, &dyn Fn() -> String); 9] = [
            ("{upload}", &|| upload.clone()),
            ("{location}", &|| self.location.clone().unwrap_or_default()),
            ("{body256}", &|| {
                Digest::of(Algorithm::Sha256, body).to_string()
            }),
            ("{body512}", &|| {
                Digest::of(Algorithm::Sha512, body).to_string()
            }),
            ("{upload256}", &|| {
                Digest::of(Algorithm::Sha256, &all).to_string()
            }),
            ("{upload512}", &|| {
                Digest::of(Algorithm::Sha512, &all).to_string()
            }),
            ("{len}", &|| body.len().to_string()),
            ("{offset}", &|| offset.to_string()),
            ("{next}", &|| {
                format!("{offset}-{}", (offset + body.len()).saturating_sub(1))
            }),
        ];
        for (p, v) in values {
            if s.contains(p) {
                s = s.replace(p, &v());
            }
        }
        s
    }
}

enum BodyKind {
    Whole,
    Chunks(usize),
    Fail,
}

fn request(s: &mut Session, raw: &[u8]) {
    let (head, body) = match raw.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&raw[..i], &raw[i + 2..]),
        None => (raw, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    // `{dN}` in a body: a manifest referencing what the session has seen.
    let body: Vec<u8> = match std::str::from_utf8(body) {
        Ok(b) if b.contains("{d") => s.digests_in(b).into_bytes(),
        _ => body.to_vec(),
    };
    let target = s.expand(target.trim(), &body);

    let mut kind = BodyKind::Whole;
    let mut req = Request::builder()
        .method(method.clone())
        .uri(target.as_str());
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = s.expand(value.trim(), &body);
        if name.eq_ignore_ascii_case("x-fuzz-body") {
            kind = match value.split_once(' ') {
                Some(("chunks", n)) => BodyKind::Chunks(n.parse().unwrap_or(1).max(1)),
                _ if value == "fail" => BodyKind::Fail,
                _ => BodyKind::Whole,
            };
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            req = req.header(n, v);
        }
    }
    let sent = match kind {
        BodyKind::Whole if body.is_empty() => Body::Empty,
        BodyKind::Whole => Body::from(body.clone()),
        BodyKind::Chunks(n) => {
            let items: Vec<Result<Bytes, BoxError>> = body
                .chunks(n)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Body::Stream(Box::pin(futures::stream::iter(items)))
        }
        BodyKind::Fail => {
            let items: Vec<Result<Bytes, BoxError>> = vec![
                Ok(Bytes::from(body.clone())),
                Err("connection reset".into()),
            ];
            Body::Stream(Box::pin(futures::stream::iter(items)))
        }
    };
    let Ok(req) = req.body(sent) else {
        return; // not a valid URI
    };

    // Whether this is a request of an upload session, and which one, as the router sees it.
    let route = Route::parse(req.uri().path()).ok();
    let uploading = matches!(route, Some(Route::UploadStart(_) | Route::Upload(..)));
    let addressed = match &route {
        Some(Route::Upload(_, id)) => s.uploads.iter().position(|u| &u.0 == id),
        _ => None,
    };
    let answer = send(&s.reg, req);
    if trace() {
        eprintln!(
            "{method} {target} -> {} {:?}",
            answer.status, answer.headers
        );
    }
    s.learn_body(&body);
    if let Some(d) = answer.header(CONTENT_DIGEST) {
        s.learn(d.to_string());
    }
    if let Some(l) = answer.header(header::LOCATION) {
        s.location = Some(l.to_string());
    }

    if uploading && answer.status == StatusCode::ACCEPTED {
        let l = answer
            .header(header::LOCATION)
            .expect("an upload has a Location");
        let rest = l.strip_prefix("/v2/").expect("a path-absolute Location");
        let (repo, id) = rest.split_once("/blobs/uploads/").expect("an upload URL");
        let i = if method == Method::POST {
            assert!(!s.uploads.iter().any(|u| u.0 == id), "a new session id");
            s.uploads
                .push((id.to_string(), repo.to_string(), Vec::new()));
            Some(s.uploads.len() - 1)
        } else {
            addressed
        };
        if let Some(i) = i {
            assert_eq!(
                (s.uploads[i].0.as_str(), s.uploads[i].1.as_str()),
                (id, repo)
            );
            if method == Method::PATCH {
                s.uploads[i].2.extend_from_slice(&body);
            }
            let range = answer.header(header::RANGE).expect("an upload has a Range");
            let want = format!("0-{}", (s.uploads[i].2.len() as u64).saturating_sub(1));
            assert_eq!(range, want, "{method} {target}");
            s.current = Some(i);
        }
    }

    if answer.status == StatusCode::CREATED {
        // What was created reads back, with the digest it was created as.
        let location = answer.header(header::LOCATION).expect("a Location");
        let digest = answer.header(CONTENT_DIGEST).expect("a digest");
        let digest = Digest::parse(digest).expect("a valid digest");
        let back = get(&s.reg, location);
        assert_eq!(back.status, StatusCode::OK, "{location}");
        assert_eq!(
            Digest::of(digest.algorithm(), &back.body),
            digest,
            "{location}"
        );
        if method == Method::PUT && uploading {
            if let Some(i) = addressed {
                // A completed upload is gone.
                let (id, repo, _) = s.uploads.remove(i);
                s.current = None;
                let gone = get(&s.reg, &format!("/v2/{repo}/blobs/uploads/{id}"));
                assert_eq!(gone.status, StatusCode::NOT_FOUND);
            }
        }
    }
}

/// Whether to print each request and its answer (`FUZZ_TRACE=1`, to see what an input does).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

/// Splits the input at lines `===`.
fn requests(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(5).position(|w| w == b"\n===\n") {
            Some(i) => {
                rest = Some(&r[i + 5..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let reg = registry();
    put_tag(&reg, "a", "latest");
    let mut s = Session {
        reg,
        digests: Vec::new(),
        location: None,
        uploads: Vec::new(),
        current: None,
    };
    s.learn_body(b"");
    s.learn_body(common::EMPTY_INDEX.as_bytes());
    for raw in requests(data).take(MAX_REQUESTS) {
        request(&mut s, raw);
    }
});
