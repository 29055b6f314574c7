//! `GET /v2/_sizes` (the web UI's sizes) in process: each repository's unique and shared
//! bytes from its manifests' descriptors, the total counting each blob once, after a push and
//! a delete, and only what the caller may pull.

mod common;

use edge_registry::storage::memory::MemoryStorage;
use http::StatusCode;
use serde_json::Value;

use common::content::{image_of, to_bytes};
use common::target::in_process_with;
use common::{sha256, Options};

fn repo<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v}"))
}

#[tokio::test]
async fn sizes_count_unique_and_shared_bytes_and_each_blob_once() {
    let storage = MemoryStorage::new();
    let c = in_process_with(Options::open(), storage.clone()).client();
    let shared = vec![7u8; 1000];
    let (a, b) = (vec![1u8; 300], vec![2u8; 50]);
    for (name, own, config) in [
        ("s/one", &a, b"config one".as_ref()),
        ("s/two", &b, b"config 2".as_ref()),
    ] {
        c.push_blob(name, config.to_vec()).await;
        c.push_blob(name, shared.clone()).await;
        c.push_blob(name, own.clone()).await;
        let m = to_bytes(&image_of(config, &[&shared, own]));
        c.push_manifest(name, "v1", &m).await;
    }
    let m1 = to_bytes(&image_of(b"config one", &[&shared, &a]));
    let m2 = to_bytes(&image_of(b"config 2", &[&shared, &b]));
    let r = c.get("/v2/_sizes").send().await;
    r.expect(StatusCode::OK);
    let v = r.json();
    let one = repo(&v, "s/one");
    assert_eq!(one["unique"], m1.len() as u64 + 10 + 300, "{v}");
    assert_eq!(one["shared"], 1000);
    assert_eq!(one["manifests"], 1);
    assert_eq!(one["delete"], true);
    let two = repo(&v, "s/two");
    assert_eq!(two["unique"], m2.len() as u64 + 8 + 50);
    assert_eq!(two["shared"], 1000);
    assert_eq!(
        v["total"],
        (m1.len() + m2.len()) as u64 + 10 + 300 + 8 + 50 + 1000
    );
    assert_eq!(v["blobs"], 7);
    assert_eq!(v["partial"], false);

    // A second image in s/one reusing its own layer; then s/two's image goes: the shared layer
    // is s/one's alone.
    let m3 = to_bytes(&image_of(b"config one", &[&a]));
    c.push_manifest("s/one", "v2", &m3).await;
    c.delete(&format!("/v2/s/two/manifests/{}", sha256(&m2)))
        .send()
        .await
        .expect(StatusCode::ACCEPTED);
    let v = c.get("/v2/_sizes").send().await.json();
    let one = repo(&v, "s/one");
    assert_eq!(one["manifests"], 2);
    assert_eq!(
        one["unique"],
        (m1.len() + m3.len()) as u64 + 10 + 300 + 1000
    );
    assert_eq!(one["shared"], 0);
    let two = repo(&v, "s/two");
    assert_eq!(
        (two["unique"].as_u64(), two["manifests"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(v["total"], (m1.len() + m3.len()) as u64 + 10 + 300 + 1000);
    // The cache of what each manifest references is the collector's to ignore: nothing is
    // dangling.
    assert!(edge_registry::gc::check::problems(&storage)
        .await
        .unwrap()
        .is_empty());
}
