//! Durability across restarts of the native server: an upload session resumes where it was,
//! and stored content and indexes are all still there.

mod common;

use common::content::OCI_MANIFEST;
use common::content::{self, descriptor, image_manifest, sha256, to_bytes, OCI_CONFIG};
use common::{repo, Client, Server};
use http::StatusCode;

#[tokio::test]
async fn upload_resumes_after_restart_and_content_survives() {
    let root = tempfile::tempdir().unwrap();
    let name = repo("restart");
    let data = content::bytes(4, 2_500_000);
    let d = sha256(&data);

    let mut s = Server::native_at(root.path());
    let c = Client::of(&s);
    let loc = c.start_upload(&name).await;
    let r = c
        .patch(&loc)
        .header("Content-Range", "0-999999")
        .body(data.slice(..1_000_000))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // A finished image, to check it survives too.
    let cfg = &b"{}"[..];
    c.push_blob(&name, cfg).await;
    let manifest = to_bytes(&image_manifest(descriptor(OCI_CONFIG, cfg), vec![]));
    let r = c
        .put_manifest(&name, "v1", OCI_MANIFEST, manifest.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    s.stop();
    let s = Server::native_at(root.path());
    let c = Client::of(&s);

    // The session is known, at the offset it had.
    let r = c.get(&loc).send().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), Some("0-999999"));
    let r = c
        .patch(&loc)
        .header("Content-Range", "1000000-1999999")
        .body(data.slice(1_000_000..2_000_000))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    drop(s);

    // Even after a crash (SIGKILL), the session resumes.
    let mut s = Server::native_at(root.path());
    let c = Client::of(&s);
    c.put(&format!("{loc}?digest={d}"))
        .body(data.slice(2_000_000..))
        .send()
        .await
        .expect(StatusCode::CREATED);
    let got = c.get(&format!("/v2/{name}/blobs/{d}")).send().await;
    assert_eq!(got.body, data);
    let m = c.get(&format!("/v2/{name}/manifests/v1")).send().await;
    assert_eq!(m.body, manifest);
    let tags = c.get(&format!("/v2/{name}/tags/list")).send().await.json();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    s.kill();
}

#[tokio::test]
async fn graceful_shutdown_on_sigterm() {
    let mut s = Server::native();
    let c = Client::of(&s);
    assert_eq!(c.get("/v2/").send().await.status, StatusCode::OK);
    assert!(s.is_running());
    s.stop();
    assert!(c.get("/v2/").try_send().await.is_err());
}
