//! Fills a native store for the garbage collector's benchmark (scripts/bench.d/gc), straight
//! through the storage layer (no HTTP): `REPOS` repositories of `PER_REPO` image manifests,
//! each with a unique config, `OWN` unique layers and `SHARED` layers from a pool shared by
//! everyone, tagged; then the records of every `DELETE_EVERY`th manifest are deleted (as a
//! DELETE by digest does), which leaves their own blobs garbage.
//!
//!   cargo run --release --example gc_fill -- ROOT [MANIFESTS] [BLOBS]
//!
//! With the defaults (10,000 manifests, 100,000 blobs): 100 repositories of 100 manifests,
//! each manifest a config, 7 own layers and 2 of a pool of 10,000.

use std::sync::Arc;

use bytes::Bytes;
use edge_registry::digest::{Algorithm, Digest};
use edge_registry::names::{Name, Tag};
use edge_registry::native::fs::FsStorage;
use edge_registry::repo::{keys, ManifestRecord};
use edge_registry::storage::Storage;
use serde_json::json;

const OWN: usize = 7;
const SHARED: usize = 2;
const DELETE_EVERY: usize = 3;
const REPOS: usize = 100;
const CONCURRENCY: usize = 32;

fn blob(label: &str) -> (Digest, Bytes) {
    let data = Bytes::from(format!("{label} {}", "x".repeat(200)));
    (Digest::of(Algorithm::Sha256, &data), data)
}

fn desc(media_type: &str, d: &Digest, data: &Bytes) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": d.to_string(), "size": data.len() })
}

async fn put_blob(s: &FsStorage, name: &Name, d: &Digest, data: Bytes) {
    s.blob_put(d, data).await.unwrap();
    s.put(&keys::blob_link(name, d), Bytes::new())
        .await
        .unwrap();
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let root = args
        .next()
        .expect("usage: gc_fill ROOT [MANIFESTS] [BLOBS]");
    let manifests: usize = args.next().map_or(10_000, |a| a.parse().unwrap());
    let blobs: usize = args.next().map_or(100_000, |a| a.parse().unwrap());
    // manifests * (1 + 1 + OWN) + pool = blobs
    let pool = blobs.saturating_sub(manifests * (2 + OWN)).max(SHARED);
    let s = Arc::new(FsStorage::open(&root).unwrap());
    let per_repo = manifests.div_ceil(REPOS);
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..manifests {
        let (s, sem) = (s.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let name = Name::parse(&format!("bench/repo{}", i / per_repo)).unwrap();
            let (cd, config) = blob(&format!("config {i}"));
            put_blob(&s, &name, &cd, config.clone()).await;
            let mut layers = Vec::new();
            for l in 0..OWN {
                let (d, data) = blob(&format!("layer {i} {l}"));
                put_blob(&s, &name, &d, data.clone()).await;
                layers.push(desc(
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    &d,
                    &data,
                ));
            }
            for k in 0..SHARED {
                let (d, data) = blob(&format!("pool {}", (i * SHARED + k) % pool));
                put_blob(&s, &name, &d, data.clone()).await;
                layers.push(desc(
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    &d,
                    &data,
                ));
            }
            let m = Bytes::from(
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": desc("application/vnd.oci.image.config.v1+json", &cd, &config),
                    "layers": layers,
                }))
                .unwrap(),
            );
            let md = Digest::of(Algorithm::Sha256, &m);
            let record = ManifestRecord {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: m.len() as u64,
                subject: None,
                pushed: Some(0),
                pulled: None,
            };
            s.blob_put(&md, m).await.unwrap();
            if i % DELETE_EVERY != 0 {
                let raw = serde_json::to_vec(&record).unwrap();
                s.put(&keys::manifest(&name, &md), raw.into())
                    .await
                    .unwrap();
                let tag = Tag::parse(&format!("t{i}")).unwrap();
                s.put(&keys::tag(&name, &tag), Bytes::from(md.to_string()))
                    .await
                    .unwrap();
            }
            s.put(&keys::catalog_entry(&name), Bytes::new())
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "filled {root}: {manifests} manifests ({} deleted) in {REPOS} repositories, {} blobs",
        manifests.div_ceil(DELETE_EVERY),
        manifests * (2 + OWN) + pool.min(manifests * SHARED)
    );
}
