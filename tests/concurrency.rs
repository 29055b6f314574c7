//! Many clients at once on the same content: eight clients push the same blob (monolithic, each
//! in its own chunked session, and all in one shared session), the same manifest under one tag,
//! different manifests under one tag, and different tags of one repository. Every request
//! succeeds or gets a spec error code (never a 5xx), and what is stored afterwards is exactly
//! one consistent result. Each test runs in process (`name::in_process`) and over HTTP
//! (`name::http`, against a fresh native server, or `EDGE_REGISTRY_URL`).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::client::{content_range, with_digest};
use common::content::{self, image_of, sha256, to_bytes, MIB};
use common::{repo, Client, Target, Transport};
use http::StatusCode;
use tokio::sync::Barrier;

const CLIENTS: usize = 8;

/// An image manifest for a config and layers.
fn manifest_for(config: &Bytes, layers: &[&Bytes]) -> Bytes {
    let layers: Vec<&[u8]> = layers.iter().map(|l| l.as_ref()).collect();
    to_bytes(&image_of(config, &layers))
}

/// How many times `name` is in the catalog (following its pages, if any).
async fn in_catalog(c: &Client, name: &str) -> usize {
    c.catalog().await.iter().filter(|r| *r == name).count()
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

async fn eight_clients_push_the_same_blob_each_in_its_own_upload(t: Transport) {
    let s = Target::start(t);
    let api = s.client();
    let name = repo("same-blob");
    let data = content::fresh(3 * MIB + 12_345);
    // Half push it whole, half in sessions of their own, 1 MiB at a time.
    at_once(|i| {
        let (api, name, data) = (api.clone(), name.clone(), data.clone());
        async move {
            if i % 2 == 0 {
                api.push_blob(&name, data.clone()).await
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
                api.push_blob(&name, data.clone()).await
            }
        }
    })
    .await;
    api.blob_intact(&name, &data).await;
    assert_eq!(in_catalog(&api, &name).await, 1);
}
both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    eight_clients_push_the_same_blob_each_in_its_own_upload
);

/// Eight clients drive one upload session at once, each sending the chunk that starts where
/// the session says it ends, then all send the final PUT together. Losers of a race get 416
/// (or 404 once the session is complete); the blob ends up whole.
async fn eight_clients_race_on_one_upload_session(t: Transport) {
    let s = Target::start(t);
    let api = s.client();
    let name = repo("shared-session");
    let data = content::fresh(3 * MIB + 777);
    let d = sha256(&data);
    let chunk = 256 * 1024;
    let loc = api.start_upload(&name).await;

    let statuses = at_once(|_| {
        let (api, data, loc) = (api.clone(), data.clone(), loc.clone());
        async move {
            let mut seen = Vec::new();
            loop {
                let r = api.get(&loc).send().await;
                let (status, code) = r.status_code();
                assert_eq!(status, StatusCode::NO_CONTENT, "upload status: {code}");
                let offset = r.upload_offset() as usize;
                if offset == data.len() {
                    return seen;
                }
                let end = (offset + chunk).min(data.len());
                let r = api
                    .patch(&loc)
                    .header("Content-Range", content_range(offset, end - offset))
                    .body(data.slice(offset..end))
                    .send()
                    .await;
                let (status, code) = r.status_code();
                match status {
                    StatusCode::ACCEPTED => {
                        // The session holds at least this chunk (others may have added more).
                        assert!(r.upload_offset() as usize >= end);
                    }
                    StatusCode::RANGE_NOT_SATISFIABLE => {
                        assert_eq!(code, "BLOB_UPLOAD_INVALID");
                        assert!(r.header("range").is_some(), "416 without Range");
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
            let req = api.put(&with_digest(&loc, &d));
            // Most send an empty body of unknown length (chunked encoding), as a streaming
            // client does; two send `Content-Length: 0`.
            let req = if i < 2 {
                req
            } else {
                req.stream(Box::pin(futures_util::stream::empty()))
            };
            let r = req.send().await;
            let (status, code) = r.status_code();
            match status {
                StatusCode::CREATED => assert_eq!(r.header("docker-content-digest"), Some(&*d)),
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
    let r = api.get(&loc).send().await;
    r.expect_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}
both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    eight_clients_race_on_one_upload_session
);

async fn eight_clients_push_the_same_manifest_under_the_same_tag(t: Transport) {
    let s = Target::start(t);
    let api = s.client();
    let name = repo("same-manifest");
    let config = Bytes::from(format!(r#"{{"os":"linux","run":"{}"}}"#, name));
    let layer = content::fresh(300_000);
    let manifest = manifest_for(&config, &[&layer]);
    // Each pushes the whole image: both blobs, then the manifest by tag.
    let digests = at_once(|i| {
        let (api, name) = (api.clone(), name.clone());
        let (config, layer, manifest) = (config.clone(), layer.clone(), manifest.clone());
        async move {
            api.push_blob(&name, config.clone()).await;
            if i % 2 == 0 {
                api.push_blob(&name, layer.clone()).await;
            } else {
                api.push_chunked(&name, &layer, 100_000).await;
            }
            api.push_manifest(&name, "latest", &manifest).await
        }
    })
    .await;
    let d = sha256(&manifest);
    assert!(digests.iter().all(|x| *x == d));
    let (body, got) = api.manifest(&name, "latest").await.unwrap();
    assert_eq!((body, got), (manifest.clone(), d.clone()));
    let (body, _) = api.manifest(&name, &d).await.unwrap();
    assert_eq!(body, manifest);
    api.blob_intact(&name, &config).await;
    api.blob_intact(&name, &layer).await;
    assert_eq!(api.tags(&name).await.unwrap(), ["latest"]);
    assert_eq!(in_catalog(&api, &name).await, 1);
}
both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    eight_clients_push_the_same_manifest_under_the_same_tag
);

async fn eight_clients_push_different_manifests_to_the_same_tag(t: Transport) {
    let s = Target::start(t);
    let api = s.client();
    let name = repo("same-tag");
    let layer = content::fresh(200_000);
    api.push_blob(&name, layer.clone()).await;
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
                api.push_blob(&name, config.clone()).await;
                api.push_manifest(&name, "shared", &manifest).await
            }
        })
        .await;
        let (body, d) = api.manifest(&name, "shared").await.unwrap();
        assert!(
            images.iter().any(|(_, m)| *m == body),
            "the tag points at a manifest nobody pushed"
        );
        let (by_digest, _) = api.manifest(&name, &d).await.unwrap();
        assert_eq!(by_digest, body);
        assert_eq!(api.tags(&name).await.unwrap(), ["shared"]);
    }
    // Every one of them is stored by digest, whichever won the tag.
    for (config, manifest) in &images {
        let (body, _) = api.manifest(&name, &sha256(manifest)).await.unwrap();
        assert_eq!(body, *manifest);
        api.blob_intact(&name, config).await;
    }
    assert_eq!(in_catalog(&api, &name).await, 1);
}
both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    eight_clients_push_different_manifests_to_the_same_tag
);

async fn eight_clients_push_different_tags_of_one_repository(t: Transport) {
    let s = Target::start(t);
    let api = s.client();
    let name = format!("{}/app", repo("many-tags"));
    let images: Vec<(Bytes, Bytes, Bytes)> = (0..CLIENTS)
        .map(|i| {
            let config = Bytes::from(format!(r#"{{"os":"linux","tag":"v{i}"}}"#));
            let layer = content::fresh(50_000 + i * 1000);
            let manifest = manifest_for(&config, &[&layer]);
            (config, layer, manifest)
        })
        .collect();
    let digests = at_once(|i| {
        let (api, name, (config, layer, manifest)) = (api.clone(), name.clone(), images[i].clone());
        async move {
            api.push_blob(&name, config.clone()).await;
            if i % 2 == 0 {
                api.push_blob(&name, layer.clone()).await;
            } else {
                api.push_chunked(&name, &layer, 20_000).await;
            }
            api.push_manifest(&name, &format!("v{i}"), &manifest).await
        }
    })
    .await;
    let mut expected: Vec<String> = (0..CLIENTS).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(api.tags(&name).await.unwrap(), expected);
    for (i, (config, layer, manifest)) in images.iter().enumerate() {
        let (body, d) = api.manifest(&name, &format!("v{i}")).await.unwrap();
        assert_eq!(body, *manifest, "tag v{i}");
        assert_eq!(d, digests[i]);
        api.blob_intact(&name, config).await;
        api.blob_intact(&name, layer).await;
    }
    assert_eq!(in_catalog(&api, &name).await, 1);
}
both_transports!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    eight_clients_push_different_tags_of_one_repository
);
