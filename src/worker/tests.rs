//! The adapter's conversions against real JavaScript `Request`/`Response`/`ReadableStream`
//! objects. Run under Node with wasm-bindgen-test-runner: `scripts/test-wasm`.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, StatusCode};
use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;
use worker::{web_sys, ResponseBody};

use super::{from_core, native_body, take_native, to_core};
use crate::body::{Body, BoxError};
use crate::digest::{Algorithm, Digest};
use crate::registry::Registry;
use crate::settings::Settings;
use crate::storage::memory::MemoryStorage;

/// `len` bytes that do not repeat with any short period, so a dropped, doubled or reordered
/// chunk shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

async fn collect(body: Body) -> Vec<u8> {
    let mut stream = body.into_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("body chunk"));
    }
    out
}

/// A JavaScript `Request` as the runtime would hand it to the Worker.
fn js_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&JsValue>,
) -> worker::Request {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let h = web_sys::Headers::new().unwrap();
    for (name, value) in headers {
        h.append(name, value).unwrap();
    }
    init.set_headers(&h);
    if let Some(body) = body {
        init.set_body(body);
        if body.is_instance_of::<web_sys::ReadableStream>() {
            // Fetch requires this for a stream body.
            js_sys::Reflect::set(&init, &"duplex".into(), &"half".into()).unwrap();
        }
    }
    worker::Request::from(web_sys::Request::new_with_str_and_init(url, &init).unwrap())
}

/// A JavaScript `ReadableStream` that yields `chunks` one by one.
fn js_stream(chunks: &[&[u8]]) -> web_sys::ReadableStream {
    let chunks: Vec<Result<Vec<u8>, worker::Error>> =
        chunks.iter().map(|c| Ok(c.to_vec())).collect();
    let resp = worker::ResponseBuilder::new()
        .from_stream(futures_util::stream::iter(chunks))
        .unwrap();
    match resp.body() {
        ResponseBody::Stream(s) => s.clone(),
        other => panic!("expected a stream, got {other:?}"),
    }
}

fn web(resp: worker::Response) -> web_sys::Response {
    resp.into()
}

async fn js_bytes(resp: &web_sys::Response) -> Result<Vec<u8>, JsValue> {
    let buf = JsFuture::from(resp.array_buffer()?).await?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// Every header of a JavaScript response, as Fetch lists them: names lower-cased and sorted,
/// repeated names joined with ", ".
fn js_headers(resp: &web_sys::Response) -> Vec<(String, String)> {
    worker::Headers(resp.headers()).entries().collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

// --- to_core --------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn to_core_keeps_method_path_query_headers_and_body_bytes() {
    let data = pattern(300 * 1024 + 17, 1);
    let body: JsValue = Uint8Array::from(data.as_slice()).into();
    let len = data.len().to_string();
    let req = js_request(
        "PATCH",
        concat!(
            "https://registry.example/v2/my-org/caf\u{e9}%2Fx/blobs/uploads/a%20b",
            "?digest=sha256%3Aab&n=1&q=a b#frag"
        ),
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", &len),
            ("Content-Range", "0-307216"),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
            ("Accept", "application/json"),
            ("X-Empty", ""),
        ],
        Some(&body),
    );
    let core = to_core(&req).unwrap();
    assert_eq!(core.method(), Method::PATCH);
    // The path and query stay percent-encoded as the client sent them (what it did not encode,
    // the URL parser did); the fragment is not part of a request target.
    assert_eq!(
        core.uri().path(),
        "/v2/my-org/caf%C3%A9%2Fx/blobs/uploads/a%20b"
    );
    assert_eq!(core.uri().query(), Some("digest=sha256%3Aab&n=1&q=a%20b"));
    // The URI stays absolute: the token realm is built from its scheme and host.
    assert_eq!(
        core.uri().to_string(),
        "https://registry.example/v2/my-org/caf%C3%A9%2Fx/blobs/uploads/a%20b?digest=sha256%3Aab&n=1&q=a%20b"
    );
    assert_eq!(core.uri().scheme_str(), Some("https"));
    // No CF-Connecting-IP here: failed logins count under one shared key.
    assert_eq!(
        core.extensions()
            .get::<crate::auth::ClientAddr>()
            .map(|c| c.0.as_str()),
        Some("unknown")
    );

    let h = core.headers();
    assert_eq!(h.len(), 5, "{h:?}");
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["content-length"], len.as_str());
    assert_eq!(h["content-range"], "0-307216");
    // Fetch joins a repeated request header into one value.
    assert_eq!(
        h.get_all("accept").iter().collect::<Vec<_>>(),
        ["application/vnd.oci.image.manifest.v1+json, application/json"]
    );
    assert_eq!(h["x-empty"], "");

    // The body stays the runtime's stream, and reads back exactly.
    let body = core.into_body();
    assert!(matches!(body, Body::Native(_)), "{body:?}");
    assert_eq!(collect(body).await, data);
}

#[wasm_bindgen_test]
async fn to_core_streamed_body_of_several_chunks() {
    let data = pattern(200_000, 2);
    let parts: Vec<&[u8]> = vec![&data[..1], &data[1..65_536], &[], &data[65_536..]];
    let stream: JsValue = js_stream(&parts).into();
    let req = js_request(
        "PUT",
        "https://registry.example/v2/a/blobs/uploads/x?digest=sha256:00",
        &[("Content-Type", "application/octet-stream")],
        Some(&stream),
    );
    let core = to_core(&req).unwrap();
    assert_eq!(core.method(), Method::PUT);
    assert_eq!(core.uri().query(), Some("digest=sha256:00"));
    // The same stream object the request was built with: nothing copied it.
    let body = take_native(core.into_body()).expect("native body");
    assert_eq!(JsValue::from(&body), stream);
    assert_eq!(collect(native_body(body)).await, data);
}

#[wasm_bindgen_test]
async fn to_core_without_a_body_is_empty() {
    for method in ["GET", "HEAD", "DELETE"] {
        let req = js_request(
            method,
            "https://registry.example/v2/",
            &[("Authorization", "Bearer t")],
            None,
        );
        let core = to_core(&req).unwrap();
        assert_eq!(core.method().as_str(), method);
        assert_eq!(core.uri().path(), "/v2/");
        assert_eq!(core.uri().query(), None);
        assert_eq!(core.headers()["authorization"], "Bearer t");
        assert!(matches!(core.body(), Body::Empty), "{method}");
    }
}

#[wasm_bindgen_test]
fn to_core_empty_query_and_bare_origin() {
    let core = to_core(&js_request("GET", "https://registry.example", &[], None)).unwrap();
    assert_eq!(core.uri().path(), "/");
    assert_eq!(core.uri().query(), None);
    assert!(core.headers().is_empty());
    let core = to_core(&js_request(
        "GET",
        "https://r.example/v2/_catalog?",
        &[],
        None,
    ))
    .unwrap();
    assert_eq!(core.uri().path(), "/v2/_catalog");
    assert_eq!(core.uri().query(), Some(""));
}

// --- from_core ------------------------------------------------------------------------------

#[wasm_bindgen_test]
async fn from_core_empty_body_keeps_status_and_headers() {
    // What a HEAD on a blob answers: a length but no body.
    let resp = http::Response::builder()
        .status(StatusCode::OK)
        .header("Content-Length", "1234")
        .header("Docker-Content-Digest", "sha256:abc")
        .header("Accept-Ranges", "bytes")
        .header("Link", "</v2/_catalog?last=b&n=2>; rel=\"next\"")
        .header("Link", "</v2/x>; rel=\"other\"")
        .body(Body::Empty)
        .unwrap();
    let out = from_core(resp).unwrap();
    assert_eq!(out.status_code(), 200);
    assert!(matches!(out.body(), ResponseBody::Empty));
    let js = web(out);
    assert_eq!(js.status(), 200);
    assert!(js.body().is_none());
    assert_eq!(
        js_headers(&js),
        pairs(&[
            ("accept-ranges", "bytes"),
            ("content-length", "1234"),
            ("docker-content-digest", "sha256:abc"),
            (
                "link",
                "</v2/_catalog?last=b&n=2>; rel=\"next\", </v2/x>; rel=\"other\""
            ),
        ])
    );
    assert_eq!(js_bytes(&js).await.unwrap(), b"");

    let resp = http::Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("Content-Length", "0")
        .header("Range", "0-99")
        .body(Body::Empty)
        .unwrap();
    let js = web(from_core(resp).unwrap());
    assert_eq!(js.status(), 204);
    assert_eq!(
        js_headers(&js),
        pairs(&[("content-length", "0"), ("range", "0-99")])
    );
}

#[wasm_bindgen_test]
async fn from_core_full_body() {
    let data = pattern(256 * 1024 + 3, 3);
    let resp = http::Response::builder()
        .status(StatusCode::METHOD_NOT_ALLOWED)
        .header("Content-Type", "application/json")
        .header("Allow", "GET, HEAD")
        .header("Allow", "DELETE")
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .body(Body::Full(Bytes::from(data.clone())))
        .unwrap();
    let out = from_core(resp).unwrap();
    assert_eq!(out.status_code(), 405);
    let js = web(out);
    assert_eq!(js.status(), 405);
    assert_eq!(
        js_headers(&js),
        pairs(&[
            ("allow", "GET, HEAD, DELETE"),
            ("content-type", "application/json"),
            ("docker-distribution-api-version", "registry/2.0"),
        ])
    );
    assert_eq!(js_bytes(&js).await.unwrap(), data);
}

#[wasm_bindgen_test]
async fn from_core_stream_body_of_several_chunks() {
    let data = pattern(500_000, 4);
    let chunks: Vec<Result<Bytes, BoxError>> = [
        &data[..7],
        &data[7..7],
        &data[7..100_000],
        &data[100_000..400_001],
        &data[400_001..],
    ]
    .iter()
    .map(|c| Ok(Bytes::copy_from_slice(c)))
    .collect();
    let resp = http::Response::builder()
        .status(StatusCode::PARTIAL_CONTENT)
        .header("Content-Range", "bytes 0-499999/900000")
        .header("Content-Length", "500000")
        .header("Content-Type", "application/octet-stream")
        .body(Body::Stream(Box::pin(futures_util::stream::iter(chunks))))
        .unwrap();
    let out = from_core(resp).unwrap();
    assert_eq!(out.status_code(), 206);
    assert!(matches!(out.body(), ResponseBody::Stream(_)));
    let js = web(out);
    assert_eq!(js.status(), 206);
    assert_eq!(
        js_headers(&js),
        pairs(&[
            ("content-length", "500000"),
            ("content-range", "bytes 0-499999/900000"),
            ("content-type", "application/octet-stream"),
        ])
    );
    assert_eq!(js_bytes(&js).await.unwrap(), data);
}

#[wasm_bindgen_test]
async fn from_core_stream_error_fails_the_js_body() {
    let chunks: Vec<Result<Bytes, BoxError>> = vec![
        Ok(Bytes::from_static(b"partial")),
        Err("storage went away".into()),
    ];
    let resp = http::Response::builder()
        .body(Body::Stream(Box::pin(futures_util::stream::iter(chunks))))
        .unwrap();
    let js = web(from_core(resp).unwrap());
    assert_eq!(js.status(), 200);
    // A truncated body must not read as a complete one.
    assert!(js_bytes(&js).await.is_err());
}

#[wasm_bindgen_test]
async fn from_core_native_body_is_handed_over_as_is() {
    let mut data = pattern(300_000, 5);
    let expected = data.clone();
    let source = web_sys::Response::new_with_opt_u8_array(Some(&mut data)).unwrap();
    let stream = source.body().unwrap();
    let resp = http::Response::builder()
        .status(StatusCode::OK)
        .header("Content-Length", "300000")
        .header("Docker-Content-Digest", "sha256:def")
        .header("ETag", "\"sha256:def\"")
        .header("Cache-Control", "max-age=31536000")
        .header("Cache-Control", "immutable")
        .body(native_body(stream.clone()))
        .unwrap();
    let out = from_core(resp).unwrap();
    assert_eq!(out.status_code(), 200);
    match out.body() {
        ResponseBody::Stream(s) => assert_eq!(JsValue::from(s), JsValue::from(&stream)),
        other => panic!("expected the native stream, got {other:?}"),
    }
    let js = web(out);
    assert_eq!(
        js_headers(&js),
        pairs(&[
            ("cache-control", "max-age=31536000, immutable"),
            ("content-length", "300000"),
            ("docker-content-digest", "sha256:def"),
            ("etag", "\"sha256:def\""),
        ])
    );
    assert_eq!(js_bytes(&js).await.unwrap(), expected);
}

#[wasm_bindgen_test]
fn from_core_drops_connection_and_non_ascii_headers_only() {
    // `Connection` is the runtime's to manage (the native server sets `close` on responses
    // whose request body was left unread). Values the http crate allows but that are not ASCII
    // (none the core sends) are skipped, not fatal.
    let resp = http::Response::builder()
        .header("X-Ok", "yes")
        .header("Connection", "close")
        .header("X-Latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap())
        .body(Body::Empty)
        .unwrap();
    let js = web(from_core(resp).unwrap());
    assert_eq!(js_headers(&js), pairs(&[("x-ok", "yes")]));
}

// --- native_body / take_native ----------------------------------------------------------------

#[wasm_bindgen_test]
async fn take_native_returns_other_bodies_unchanged() {
    match take_native(Body::Empty) {
        Err(Body::Empty) => {}
        other => panic!("{other:?}"),
    }
    match take_native(Body::Full(Bytes::from_static(b"full body"))) {
        Err(Body::Full(b)) => assert_eq!(b, "full body"),
        other => panic!("{other:?}"),
    }
    let chunks: Vec<Result<Bytes, BoxError>> =
        vec![Ok(Bytes::from_static(b"a")), Ok(Bytes::from_static(b"bc"))];
    match take_native(Body::Stream(Box::pin(futures_util::stream::iter(chunks)))) {
        Err(body @ Body::Stream(_)) => assert_eq!(collect(body).await, b"abc"),
        other => panic!("{other:?}"),
    }
}

#[wasm_bindgen_test]
async fn take_native_returns_the_same_stream() {
    let stream = js_stream(&[b"one", b"two"]);
    let body = native_body(stream.clone());
    let back = take_native(body).expect("native");
    assert_eq!(JsValue::from(&back), JsValue::from(&stream));
    // Read as the core would.
    assert_eq!(collect(native_body(back)).await, b"onetwo");
}

// --- the registry through the adapter ---------------------------------------------------------

async fn roundtrip(
    registry: &Registry<MemoryStorage>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&JsValue>,
) -> web_sys::Response {
    let req = js_request(
        method,
        &format!("https://registry.example{path}"),
        headers,
        body,
    );
    web(from_core(registry.handle(to_core(&req).unwrap()).await.response).unwrap())
}

fn js_header(resp: &web_sys::Response, name: &str) -> Option<String> {
    resp.headers().get(name).unwrap()
}

#[wasm_bindgen_test]
async fn registry_through_the_adapter() {
    let registry = Registry::new(MemoryStorage::new(), Settings::default());
    let name = "demo/app";

    // Monolithic upload, then HEAD, GET and a range.
    let data = pattern(300_000, 6);
    let d = Digest::of(Algorithm::Sha256, &data).to_string();
    let body: JsValue = Uint8Array::from(data.as_slice()).into();
    let len = data.len().to_string();
    let r = roundtrip(
        &registry,
        "POST",
        &format!("/v2/{name}/blobs/uploads/?digest={d}"),
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", &len),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        js_header(&r, "location").as_deref(),
        Some(format!("/v2/{name}/blobs/{d}").as_str())
    );
    assert_eq!(
        js_header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );

    let r = roundtrip(
        &registry,
        "HEAD",
        &format!("/v2/{name}/blobs/{d}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        js_header(&r, "content-length").as_deref(),
        Some(len.as_str())
    );
    assert_eq!(
        js_header(&r, "docker-content-digest").as_deref(),
        Some(d.as_str())
    );
    assert!(r.body().is_none());

    let r = roundtrip(
        &registry,
        "GET",
        &format!("/v2/{name}/blobs/{d}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(js_bytes(&r).await.unwrap(), data);

    let r = roundtrip(
        &registry,
        "GET",
        &format!("/v2/{name}/blobs/{d}"),
        &[("Range", "bytes=10-19")],
        None,
    )
    .await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        js_header(&r, "content-range").as_deref(),
        Some("bytes 10-19/300000")
    );
    assert_eq!(js_bytes(&r).await.unwrap(), &data[10..20]);

    // A chunked upload whose PATCH body is a stream of several chunks.
    let data = pattern(150_000, 7);
    let d = Digest::of(Algorithm::Sha256, &data).to_string();
    let r = roundtrip(
        &registry,
        "POST",
        &format!("/v2/{name}/blobs/uploads/"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 202);
    let loc = js_header(&r, "location").unwrap();
    let stream: JsValue = js_stream(&[&data[..1000], &data[1000..90_000], &data[90_000..]]).into();
    let r = roundtrip(&registry, "PATCH", &loc, &[], Some(&stream)).await;
    assert_eq!(r.status(), 202);
    assert_eq!(js_header(&r, "range").as_deref(), Some("0-149999"));
    let loc = js_header(&r, "location").unwrap();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = roundtrip(
        &registry,
        "PUT",
        &format!("{loc}{sep}digest={d}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = roundtrip(
        &registry,
        "GET",
        &format!("/v2/{name}/blobs/{d}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(js_bytes(&r).await.unwrap(), data);

    // An error comes back as the spec's JSON body.
    let missing = Digest::of(Algorithm::Sha256, b"missing").to_string();
    let r = roundtrip(
        &registry,
        "GET",
        &format!("/v2/{name}/blobs/{missing}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        js_header(&r, "content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&js_bytes(&r).await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");

    // A wrong method lists what is allowed.
    let r = roundtrip(&registry, "PUT", "/v2/", &[], None).await;
    assert_eq!(r.status(), 405);
    assert!(js_header(&r, "allow").is_some());
}

/// `obj[key]` as an array of JS values.
fn js_array(obj: &JsValue, key: &str) -> Vec<JsValue> {
    js_sys::Array::from(&js_sys::Reflect::get(obj, &key.into()).unwrap()).to_vec()
}

/// Each request writes one Workers Analytics Engine data point, laid out as the README's SQL
/// reads it: `index1` and `blob1` the operation, `blob2` the method, `blob3` the status, `blob4`
/// the mirror; `double1` the status, `double2`/`double3` the bytes in and out, `double4` the
/// milliseconds, `double5` the events, `double6` the failed logins, `double7`/`double8` the
/// upstream's rate limit (-1 when unknown). The dataset is a JavaScript object recording what
/// `writeDataPoint` is given (`wrangler dev` has no Analytics Engine to read back: its binding
/// is a mock that drops every point).
#[wasm_bindgen_test]
fn a_request_writes_one_data_point_laid_out_as_the_readme_reads_it() {
    use super::ops::{after, Answered, Seen};
    let dataset =
        js_sys::eval("({ points: [], writeDataPoint(p) { this.points.push(p); } })").unwrap();
    let env = js_sys::Object::new();
    js_sys::Reflect::set(&env, &"ANALYTICS".into(), &dataset).unwrap();
    let env: worker::Env = env.unchecked_into();
    // No event: the context's queue is not used.
    let ctx = worker::Context::new(js_sys::Object::new().unchecked_into());
    let seen = |method: &str, bytes_in: u64| Seen {
        record: crate::notify::RequestRecord {
            id: String::new(),
            addr: "203.0.113.9".into(),
            host: "registry.example".into(),
            method: method.into(),
            useragent: "docker/27".into(),
        },
        proto: Some("https".into()),
        path: "/v2/demo/app/manifests/v1".into(),
        bytes_in,
        start_ms: worker::Date::now().as_millis() as f64,
    };
    after(
        &env,
        &ctx,
        seen("PUT", 1234),
        Answered {
            op: "manifest.put",
            status: 401,
            bytes_out: 151,
            events: &[],
            user: None,
            failed_logins: 1,
            mirror: None,
        },
    );
    let report = crate::mirror::Report {
        mirror: "hub".into(),
        served: None,
        rate_limit: Some(crate::mirror::RateLimit {
            remaining: 97,
            limit: 100,
        }),
        notes: Vec::new(),
    };
    after(
        &env,
        &ctx,
        seen("GET", 0),
        Answered {
            op: "manifest.get",
            status: 200,
            bytes_out: 5678,
            events: &[],
            user: Some("alice"),
            failed_logins: 0,
            mirror: Some(&report),
        },
    );
    let points = js_array(&dataset, "points");
    assert_eq!(points.len(), 2, "one data point a request");
    let strings = |p: &JsValue, key: &str| -> Vec<String> {
        js_array(p, key)
            .iter()
            .map(|v| v.as_string().unwrap())
            .collect()
    };
    let numbers = |p: &JsValue| -> Vec<f64> {
        js_array(p, "doubles")
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (put, get) = (&points[0], &points[1]);
    assert_eq!(strings(put, "indexes"), ["manifest.put"]);
    assert_eq!(strings(put, "blobs"), ["manifest.put", "PUT", "401", ""]);
    let d = numbers(put);
    assert_eq!(d.len(), 8, "{d:?}");
    assert_eq!(
        [d[0], d[1], d[2], d[4], d[5], d[6], d[7]],
        [401.0, 1234.0, 151.0, 0.0, 1.0, -1.0, -1.0]
    );
    assert!((0.0..60_000.0).contains(&d[3]), "milliseconds {}", d[3]);
    assert_eq!(strings(get, "indexes"), ["manifest.get"]);
    assert_eq!(strings(get, "blobs"), ["manifest.get", "GET", "200", "hub"]);
    let d = numbers(get);
    assert_eq!(
        [d[0], d[1], d[2], d[4], d[5], d[6], d[7]],
        [200.0, 0.0, 5678.0, 0.0, 0.0, 97.0, 100.0]
    );
}
