//! Many clients at once on the same content: eight clients push the same blob (monolithic, each
//! in its own chunked session, and all in one shared session), the same manifest under one tag,
//! different manifests under one tag, and different tags of one repository. Every request
//! succeeds or gets a spec error code (never a 5xx), and what is stored afterwards is exactly
//! one consistent result. Runs against a fresh native server, or `EDGE_REGISTRY_URL`.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{repo, sha256, Server};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Barrier;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const CLIENTS: usize = 8;
const MIB: usize = 1024 * 1024;

/// Pseudo-random bytes, different on every run (so a shared registry never holds them yet).
fn fresh_content(len: usize) -> Bytes {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).unwrap();
    let mut x = u64::from_le_bytes(seed) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// The status, headers and first error code of a response; a 5xx fails the test.
async fn outcome(what: &str, r: Response) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    assert!(!status.is_server_error(), "{what}: {status}: {text}");
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    if status.is_client_error() {
        assert!(
            !code.is_empty(),
            "{what}: {status} without an error code: {text}"
        );
    }
    (status, headers, code)
}

/// The offset an upload `Range: 0-<last>` header stands for (`0-0` for an empty session; no
/// session here ever holds exactly one byte).
fn range_offset(headers: &reqwest::header::HeaderMap) -> u64 {
    let range = headers["range"].to_str().unwrap();
    let last: u64 = range
        .strip_prefix("0-")
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("bad Range {range:?}"));
    if last == 0 {
        0
    } else {
        last + 1
    }
}

fn with_digest(loc: &str, d: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={d}")
}

#[derive(Clone)]
struct Api {
    c: Client,
    base: String,
}

impl Api {
    fn new(s: &Server) -> Api {
        Api {
            c: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.url.clone(),
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The whole blob in one `POST ...?digest=`.
    async fn push_monolithic(&self, name: &str, data: &Bytes) {
        let d = sha256(data);
        let r = self
            .c
            .post(self.at(&format!("/v2/{name}/blobs/uploads/?digest={d}")))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        let (status, headers, code) = outcome("monolithic upload", r).await;
        assert_eq!(status, StatusCode::CREATED, "monolithic upload: {code}");
        assert_eq!(headers["docker-content-digest"], d.as_str());
    }

    /// The blob in a session of its own: POST, PATCHes of `chunk` bytes, and a PUT with the
    /// last chunk.
    async fn push_chunked(&self, name: &str, data: &Bytes, chunk: usize) {
        let d = sha256(data);
        let r = self
            .c
            .post(self.at(&format!("/v2/{name}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        let (status, headers, _) = outcome("POST upload", r).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let mut loc = headers["location"].to_str().unwrap().to_string();
        let mut offset = 0;
        while data.len() - offset > chunk {
            let r = self
                .c
                .patch(self.at(&loc))
                .header(
                    "Content-Range",
                    format!("{}-{}", offset, offset + chunk - 1),
                )
                .body(data.slice(offset..offset + chunk))
                .send()
                .await
                .unwrap();
            let (status, headers, code) = outcome("PATCH", r).await;
            assert_eq!(status, StatusCode::ACCEPTED, "PATCH: {code}");
            offset += chunk;
            assert_eq!(range_offset(&headers), offset as u64);
            loc = headers["location"].to_str().unwrap().to_string();
        }
        let r = self
            .c
            .put(self.at(&with_digest(&loc, &d)))
            .header("Content-Range", format!("{}-{}", offset, data.len() - 1))
            .body(data.slice(offset..))
            .send()
            .await
            .unwrap();
        let (status, headers, code) = outcome("PUT upload", r).await;
        assert_eq!(status, StatusCode::CREATED, "PUT upload: {code}");
        assert_eq!(headers["docker-content-digest"], d.as_str());
    }

    async fn put_manifest(&self, name: &str, reference: &str, body: &Bytes) -> String {
        let r = self
            .c
            .put(self.at(&format!("/v2/{name}/manifests/{reference}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, headers, code) = outcome("manifest PUT", r).await;
        assert_eq!(status, StatusCode::CREATED, "manifest PUT: {code}");
        let d = headers["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(d, sha256(body));
        d
    }

    /// The blob is stored in `name` with exactly these bytes (GET, HEAD and a range).
    async fn blob_intact(&self, name: &str, data: &Bytes) {
        let d = sha256(data);
        let url = self.at(&format!("/v2/{name}/blobs/{d}"));
        let r = self.c.head(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "HEAD blob {d}");
        assert_eq!(header(&r, "content-length"), Some(data.len().to_string()));
        let r = self.c.get(&url).send().await.unwrap();
        let status = r.status();
        assert_eq!(
            status,
            StatusCode::OK,
            "GET blob {d} (HEAD said 200): {}",
            r.text().await.unwrap()
        );
        assert_eq!(header(&r, "docker-content-digest").as_deref(), Some(&*d));
        let got = r.bytes().await.unwrap();
        assert_eq!(got.len(), data.len(), "size of blob {d}");
        assert!(got == *data, "content of blob {d}");
        let end = data.len() - 1;
        let r = self
            .c
            .get(&url)
            .header("Range", format!("bytes={}-{end}", end / 2))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "range of blob {d}");
        assert!(r.bytes().await.unwrap() == data.slice(end / 2..));
    }

    /// GETs a manifest: its bytes and digest, the digest checked against the bytes.
    async fn manifest(&self, name: &str, reference: &str) -> (Bytes, String) {
        let r = self
            .c
            .get(self.at(&format!("/v2/{name}/manifests/{reference}")))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "manifest {reference} of {name}");
        assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_MANIFEST));
        let d = header(&r, "docker-content-digest").unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(sha256(&body), d, "manifest {reference} of {name}");
        (body, d)
    }

    async fn tags(&self, name: &str) -> Vec<String> {
        let r = self
            .c
            .get(self.at(&format!("/v2/{name}/tags/list")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["name"], json!(name));
        v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }

    /// How many times `name` is in the catalog (following its pages, if any).
    async fn in_catalog(&self, name: &str) -> usize {
        let mut count = 0;
        let mut next = Some("/v2/_catalog?n=1000".to_string());
        while let Some(path) = next.take() {
            let r = self.c.get(self.at(&path)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            next = header(&r, "link").map(|l| {
                let start = l.find('<').unwrap() + 1;
                let end = l.find('>').unwrap();
                let url = &l[start..end];
                // Path-absolute, or absolute: keep the path and query.
                url.find("/v2/").map_or(url, |i| &url[i..]).to_string()
            });
            let v: Value = r.json().await.unwrap();
            count += v["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r.as_str() == Some(name))
                .count();
        }
        count
    }
}

fn manifest_for(config: &Bytes, layers: &[&Bytes]) -> Bytes {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(l), "size": l.len()})
        })
        .collect();
    Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": config.len()},
            "layers": layers,
        }))
        .unwrap(),
    )
}

/// Runs `f(i)` for eight clients, released together.
async fn at_once<T, F, Fut>(f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            let fut = f(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_push_the_same_blob_each_in_its_own_upload() {
    let s = Server::start();
    let api = Api::new(&s);
    let name = repo("same-blob");
    let data = fresh_content(3 * MIB + 12_345);
    // Half push it whole, half in sessions of their own, 1 MiB at a time.
    at_once(|i| {
        let (api, name, data) = (api.clone(), name.clone(), data.clone());
        async move {
            if i % 2 == 0 {
                api.push_monolithic(&name, &data).await
            } else {
                api.push_chunked(&name, &data, MIB).await
            }
        }
    })
    .await;
    api.blob_intact(&name, &data).await;

    // Once stored, pushing it again is just as fine, from everyone at once.
    at_once(|i| {
        let (api, name, data) = (api.clone(), name.clone(), data.clone());
        async move {
            if i % 2 == 0 {
                api.push_chunked(&name, &data, 2 * MIB).await
            } else {
                api.push_monolithic(&name, &data).await
            }
        }
    })
    .await;
    api.blob_intact(&name, &data).await;
    assert_eq!(api.in_catalog(&name).await, 1);
}

/// Eight clients drive one upload session at once, each sending the chunk that starts where
/// the session says it ends, then all send the final PUT together. Losers of a race get 416
/// (or 404 once the session is complete); the blob ends up whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_race_on_one_upload_session() {
    let s = Server::start();
    let api = Api::new(&s);
    let name = repo("shared-session");
    let data = fresh_content(3 * MIB + 777);
    let d = sha256(&data);
    let chunk = 256 * 1024;
    let r = api
        .c
        .post(api.at(&format!("/v2/{name}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = header(&r, "location").unwrap();

    let statuses = at_once(|_| {
        let (api, data, loc) = (api.clone(), data.clone(), loc.clone());
        async move {
            let mut seen = Vec::new();
            loop {
                let r = api.c.get(api.at(&loc)).send().await.unwrap();
                let (status, headers, code) = outcome("upload status", r).await;
                assert_eq!(status, StatusCode::NO_CONTENT, "upload status: {code}");
                let offset = range_offset(&headers) as usize;
                if offset == data.len() {
                    return seen;
                }
                let end = (offset + chunk).min(data.len());
                let r = api
                    .c
                    .patch(api.at(&loc))
                    .header("Content-Range", format!("{}-{}", offset, end - 1))
                    .body(data.slice(offset..end))
                    .send()
                    .await
                    .unwrap();
                let (status, headers, code) = outcome("racing PATCH", r).await;
                match status {
                    StatusCode::ACCEPTED => {
                        // The session holds at least this chunk (others may have added more).
                        assert!(range_offset(&headers) as usize >= end);
                    }
                    StatusCode::RANGE_NOT_SATISFIABLE => {
                        assert_eq!(code, "BLOB_UPLOAD_INVALID");
                        assert!(headers.contains_key("range"), "416 without Range");
                    }
                    other => panic!("racing PATCH: {other} {code}"),
                }
                seen.push(status);
            }
        }
    })
    .await;
    let accepted = statuses
        .iter()
        .flatten()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    assert!(accepted >= data.len() / chunk, "{accepted} chunks accepted");

    // Everyone completes it at once.
    let done = at_once(|i| {
        let (api, loc, d) = (api.clone(), loc.clone(), d.clone());
        async move {
            let req = api.c.put(api.at(&with_digest(&loc, &d)));
            // Most send an empty body of unknown length (chunked encoding), as a streaming
            // client does; two send `Content-Length: 0`.
            let req = if i < 2 {
                req
            } else {
                let empty = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
                req.body(reqwest::Body::wrap_stream(empty))
            };
            let r = req.send().await.unwrap();
            let (status, headers, code) = outcome("racing PUT", r).await;
            match status {
                StatusCode::CREATED => assert_eq!(headers["docker-content-digest"], d.as_str()),
                StatusCode::NOT_FOUND => assert_eq!(code, "BLOB_UPLOAD_UNKNOWN"),
                StatusCode::RANGE_NOT_SATISFIABLE => assert_eq!(code, "BLOB_UPLOAD_INVALID"),
                other => panic!("racing PUT: {other} {code}"),
            }
            status
        }
    })
    .await;
    eprintln!("final PUTs: {done:?}");
    assert!(
        done.contains(&StatusCode::CREATED),
        "nobody completed the upload: {done:?}"
    );
    api.blob_intact(&name, &data).await;
    let r = api.c.get(api.at(&loc)).send().await.unwrap();
    let (status, _, code) = outcome("status of the completed session", r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_push_the_same_manifest_under_the_same_tag() {
    let s = Server::start();
    let api = Api::new(&s);
    let name = repo("same-manifest");
    let config = Bytes::from(format!(r#"{{"os":"linux","run":"{}"}}"#, name));
    let layer = fresh_content(300_000);
    let manifest = manifest_for(&config, &[&layer]);
    // Each pushes the whole image: both blobs, then the manifest by tag.
    let digests = at_once(|i| {
        let (api, name) = (api.clone(), name.clone());
        let (config, layer, manifest) = (config.clone(), layer.clone(), manifest.clone());
        async move {
            api.push_monolithic(&name, &config).await;
            if i % 2 == 0 {
                api.push_monolithic(&name, &layer).await;
            } else {
                api.push_chunked(&name, &layer, 100_000).await;
            }
            api.put_manifest(&name, "latest", &manifest).await
        }
    })
    .await;
    let d = sha256(&manifest);
    assert!(digests.iter().all(|x| *x == d));
    let (body, got) = api.manifest(&name, "latest").await;
    assert_eq!((body, got), (manifest.clone(), d.clone()));
    let (body, _) = api.manifest(&name, &d).await;
    assert_eq!(body, manifest);
    api.blob_intact(&name, &config).await;
    api.blob_intact(&name, &layer).await;
    assert_eq!(api.tags(&name).await, ["latest"]);
    assert_eq!(api.in_catalog(&name).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_push_different_manifests_to_the_same_tag() {
    let s = Server::start();
    let api = Api::new(&s);
    let name = repo("same-tag");
    let layer = fresh_content(200_000);
    api.push_monolithic(&name, &layer).await;
    let images: Vec<(Bytes, Bytes)> = (0..CLIENTS)
        .map(|i| {
            let config = Bytes::from(format!(r#"{{"os":"linux","client":{i}}}"#));
            let manifest = manifest_for(&config, &[&layer]);
            (config, manifest)
        })
        .collect();
    // Each pushes its own config and its own manifest, to the same tag, at once; and then
    // once more, so the second round overwrites a tag that exists.
    for _ in 0..2 {
        let images = images.clone();
        at_once(|i| {
            let (api, name, (config, manifest)) = (api.clone(), name.clone(), images[i].clone());
            async move {
                api.push_monolithic(&name, &config).await;
                api.put_manifest(&name, "shared", &manifest).await
            }
        })
        .await;
        let (body, d) = api.manifest(&name, "shared").await;
        assert!(
            images.iter().any(|(_, m)| *m == body),
            "the tag points at a manifest nobody pushed"
        );
        let (by_digest, _) = api.manifest(&name, &d).await;
        assert_eq!(by_digest, body);
        assert_eq!(api.tags(&name).await, ["shared"]);
    }
    // Every one of them is stored by digest, whichever won the tag.
    for (config, manifest) in &images {
        let (body, _) = api.manifest(&name, &sha256(manifest)).await;
        assert_eq!(body, *manifest);
        api.blob_intact(&name, config).await;
    }
    assert_eq!(api.in_catalog(&name).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_push_different_tags_of_one_repository() {
    let s = Server::start();
    let api = Api::new(&s);
    let name = format!("{}/app", repo("many-tags"));
    let images: Vec<(Bytes, Bytes, Bytes)> = (0..CLIENTS)
        .map(|i| {
            let config = Bytes::from(format!(r#"{{"os":"linux","tag":"v{i}"}}"#));
            let layer = fresh_content(50_000 + i * 1000);
            let manifest = manifest_for(&config, &[&layer]);
            (config, layer, manifest)
        })
        .collect();
    let digests = at_once(|i| {
        let (api, name, (config, layer, manifest)) = (api.clone(), name.clone(), images[i].clone());
        async move {
            api.push_monolithic(&name, &config).await;
            if i % 2 == 0 {
                api.push_monolithic(&name, &layer).await;
            } else {
                api.push_chunked(&name, &layer, 20_000).await;
            }
            api.put_manifest(&name, &format!("v{i}"), &manifest).await
        }
    })
    .await;
    let mut expected: Vec<String> = (0..CLIENTS).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(api.tags(&name).await, expected);
    for (i, (config, layer, manifest)) in images.iter().enumerate() {
        let (body, d) = api.manifest(&name, &format!("v{i}")).await;
        assert_eq!(body, *manifest, "tag v{i}");
        assert_eq!(d, digests[i]);
        api.blob_intact(&name, config).await;
        api.blob_intact(&name, layer).await;
    }
    assert_eq!(api.in_catalog(&name).await, 1);
}
