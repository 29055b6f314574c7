//! Durability across restarts of the native server: an upload session resumes where it was,
//! and stored content and indexes are all still there.

mod common;

use common::{repo, sha256, Server};
use reqwest::{Client, StatusCode};

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).unwrap().to_str().unwrap().to_string()
}

#[tokio::test]
async fn upload_resumes_after_restart_and_content_survives() {
    let root = tempfile::tempdir().unwrap();
    let c = Client::new();
    let name = repo("restart");
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let d = sha256(&data);

    let mut s = Server::native_at(root.path());
    let r = c
        .post(format!("{}/v2/{name}/blobs/uploads/", s.url))
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location");
    let r = c
        .patch(format!("{}{loc}", s.url))
        .header("Content-Range", "0-999999")
        .body(data[..1_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A finished image, to check it survives too.
    let cfg = b"{}".to_vec();
    let cd = sha256(&cfg);
    let r = c
        .post(format!("{}/v2/{name}/blobs/uploads/?digest={cd}", s.url))
        .body(cfg.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[]}}"#
    );
    let r = c
        .put(format!("{}/v2/{name}/manifests/v1", s.url))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    s.stop();
    let s = Server::native_at(root.path());

    // The session is known, at the offset it had.
    let r = c.get(format!("{}{loc}", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-999999");
    let r = c
        .patch(format!("{}{loc}", s.url))
        .header("Content-Range", "1000000-1999999")
        .body(data[1_000_000..2_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    drop(s);

    // Even after a crash (SIGKILL), the session resumes.
    let mut s = Server::native_at(root.path());
    let r = c
        .put(format!("{}{loc}?digest={d}", s.url))
        .body(data[2_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let got = c
        .get(format!("{}/v2/{name}/blobs/{d}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    let m = c
        .get(format!("{}/v2/{name}/manifests/v1", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(m.text().await.unwrap(), manifest);
    let tags: serde_json::Value = c
        .get(format!("{}/v2/{name}/tags/list", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    s.kill();
}

#[tokio::test]
async fn graceful_shutdown_on_sigterm() {
    let mut s = Server::native();
    let c = Client::new();
    assert_eq!(
        c.get(format!("{}/v2/", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert!(s.is_running());
    s.stop();
    assert!(c.get(format!("{}/v2/", s.url)).send().await.is_err());
}
