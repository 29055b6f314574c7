//! The storage suite (`edge_registry::storage::suite`) on the in-memory and the filesystem
//! stores. The Worker runs the same suite on R2 (`scripts/test-worker-storage`).

use edge_registry::clock::Clock;
use edge_registry::native::{fs::FsStorage, SystemClock};

/// Seconds since the Unix epoch, as the stores record them.
fn now() -> u64 {
    SystemClock.now()
}
use edge_registry::storage::{memory::MemoryStorage, suite};

fn expect_all_passed(backend: &str, report: &suite::Report) {
    println!("{backend}:\n{report}");
    assert!(
        report.all_passed(),
        "{backend}: the storage suite failed:\n{report}"
    );
}

#[tokio::test]
async fn memory_store() {
    let s = MemoryStorage::with_clock(now);
    let report = suite::run(&s, now).await;
    expect_all_passed("memory", &report);
}

#[tokio::test]
async fn filesystem_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::open(dir.path()).unwrap();
    let report = suite::run(&s, now).await;
    expect_all_passed("filesystem", &report);
}

/// The suite keeps to its own keys and cleans up, so it can run on a store in use, and twice.
#[tokio::test]
async fn filesystem_store_twice_with_other_content() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::open(dir.path()).unwrap();
    use edge_registry::storage::Storage;
    let other = bytes::Bytes::from_static(b"someone else's");
    let d = edge_registry::digest::Digest::of(edge_registry::digest::Algorithm::Sha256, &other);
    s.blob_put(&d, other.clone()).await.unwrap();
    s.put("_catalog/x", other.clone()).await.unwrap();
    for round in ["first", "second"] {
        let report = suite::run(&s, now).await;
        expect_all_passed(round, &report);
    }
    assert_eq!(s.blob_size(&d).await.unwrap(), Some(other.len() as u64));
    assert_eq!(s.get("_catalog/x").await.unwrap(), Some(other));
}
