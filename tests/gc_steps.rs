//! The incremental collector (`gc::steps`, what the Worker's cron trigger runs) in process,
//! over `MemoryStorage`: the same result as a one-shot collection of the same content, over
//! many small steps; a step that fails at any storage operation, then goes on; the lease.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use edge_registry::body::{Body, ByteStream};
use edge_registry::clock::{Clock, FixedClock};
use edge_registry::digest::Digest;
use edge_registry::gc::steps::{self, Status, LEASE, LEASE_MS};
use edge_registry::gc::{self, check, Options, Report};
use edge_registry::storage::memory::MemoryStorage;
use edge_registry::storage::{
    BlobPage, Freshness, Storage, StorageError, StorageResult, UploadData, UploadWriter,
};
use http::StatusCode;
use serde_json::json;

use common::client::Client;
use common::content::{descriptor, image_of, to_bytes, with};
use common::sha256;
use common::target::in_process_with;
use common::Options as TargetOptions;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const NOW_MS: u64 = 1_900_000_000_000;

async fn push(c: &Client, name: &str, reference: &str, config: &[u8], layers: &[&[u8]]) -> Bytes {
    c.push_blob(name, config.to_vec()).await;
    for l in layers {
        c.push_blob(name, l.to_vec()).await;
    }
    let body = to_bytes(&image_of(config, layers));
    c.push_manifest(name, reference, &body).await;
    body
}

fn signature(subject: &Bytes, sig: &[u8]) -> Bytes {
    to_bytes(&with(
        image_of(b"{}", &[sig]),
        json!({
            "artifactType": "application/vnd.example.signature",
            "subject": { "mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": subject.len() },
        }),
    ))
}

/// The same content every time: images sharing layers in two repositories, a deleted one, a
/// signature of a kept and of a deleted image, an untagged manifest, an index and its child,
/// a blob nothing references, `n` more images of which every other one is deleted.
async fn fill(storage: &MemoryStorage, n: usize) {
    let c = in_process_with(TargetOptions::open(), storage.clone()).client();
    let shared: &[u8] = b"shared layer";
    let a = push(&c, "gc/one", "a", b"config a", &[shared, b"layer a"]).await;
    let b = push(&c, "gc/one", "b", b"config b", &[shared, b"layer b"]).await;
    push(&c, "gc/two", "c", b"config c", &[shared, b"layer c"]).await;
    c.push_blob("gc/one", b"{}".to_vec()).await;
    for (subject, sig) in [(&a, b"sig a"), (&b, b"sig b")] {
        c.push_blob("gc/one", sig.to_vec()).await;
        let s = signature(subject, sig);
        c.push_manifest("gc/one", &sha256(&s), &s).await;
    }
    for d in [sha256(&b)] {
        c.delete(&format!("/v2/gc/one/manifests/{d}"))
            .send()
            .await
            .expect(StatusCode::ACCEPTED);
    }
    let untagged = to_bytes(&image_of(b"config u", &[b"layer u"]));
    push(&c, "gc/two", &sha256(&untagged), b"config u", &[b"layer u"]).await;
    let child = push(
        &c,
        "gc/two",
        &sha256(&to_bytes(&image_of(b"c2", &[b"l2"]))),
        b"c2",
        &[b"l2"],
    )
    .await;
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &child)],
    }));
    c.put_manifest("gc/two", "multi", OCI_INDEX, index)
        .await
        .expect(StatusCode::CREATED);
    c.push_blob("gc/two", b"nothing references me".to_vec())
        .await;
    for i in 0..n {
        let name = format!("gc/many{}", i % 3);
        let config = format!("config {i}");
        let layer = format!("layer {i}");
        let m = push(
            &c,
            &name,
            &format!("t{i}"),
            config.as_bytes(),
            &[shared, layer.as_bytes()],
        )
        .await;
        if i % 2 == 1 {
            c.delete(&format!("/v2/{name}/manifests/{}", sha256(&m)))
                .send()
                .await
                .expect(StatusCode::ACCEPTED);
        }
    }
}

/// Everything stored but the collector's own objects.
fn content(storage: &MemoryStorage) -> BTreeSet<String> {
    storage
        .stored_keys()
        .into_iter()
        .filter(|k| !k.starts_with("meta/_gc/"))
        .collect()
}

/// Steps until the run is done; (its report, steps taken, the most operations in one step).
async fn run_steps<S: Storage + Clone>(
    storage: &S,
    opts: &Options,
    clock: &dyn Clock,
    budget: u64,
) -> (Report, u64, u64) {
    let mut most = 0;
    for n in 1..100_000 {
        let step = steps::step(storage, opts, clock, budget, Some(0))
            .await
            .unwrap();
        most = most.max(step.ops);
        match step.status {
            Status::Done(report) => return (report, n, most),
            Status::Working(_) => {}
            other => panic!("step {n}: {other:?}"),
        }
    }
    panic!("the collection did not finish");
}

fn sorted(r: &Report) -> Vec<String> {
    let mut v = r.removed.clone();
    v.sort();
    v
}

async fn same_as_one_shot(opts: Options, budget: u64) {
    let clock = FixedClock::at_ms(NOW_MS);
    let (one, inc) = (MemoryStorage::new(), MemoryStorage::new());
    fill(&one, 12).await;
    fill(&inc, 12).await;
    assert_eq!(content(&one), content(&inc));
    let native = gc::collect(&one, &opts, &clock).await.unwrap().report;
    let (report, n, most) = run_steps(&inc, &opts, &clock, budget).await;
    assert!(native.blobs_removed > 0);
    assert_eq!(sorted(&report), sorted(&native));
    for (a, b) in [
        (report.blobs_removed, native.blobs_removed),
        (report.manifests_removed, native.manifests_removed),
        (report.tags_removed, native.tags_removed),
        (report.bytes_reclaimed, native.bytes_reclaimed),
        (report.blobs_kept, native.blobs_kept),
        (report.bytes_kept, native.bytes_kept),
    ] {
        assert_eq!(a, b, "{report:?}\n{native:?}");
    }
    assert_eq!(content(&one), content(&inc), "what is left differs");
    assert!(check::problems(&inc).await.unwrap().is_empty());
    assert!(inc.get(steps::STATE).await.unwrap().is_none());
    println!(
        "budget {budget}: {n} steps, at most {most} operations in one; {} blobs removed",
        report.blobs_removed
    );
    if budget < 50 {
        assert!(n > 10, "{n} steps");
        // The budget holds but for the unit in hand (at most a listing and a few deletes).
        assert!(
            most <= budget + 12,
            "{most} operations in a step of budget {budget}"
        );
    }
}

#[tokio::test]
async fn small_steps_remove_what_a_one_shot_collection_removes() {
    let grace0 = Options {
        grace: 0,
        ..Options::default()
    };
    same_as_one_shot(grace0.clone(), 10).await;
    same_as_one_shot(grace0, 100_000).await;
}

#[tokio::test]
async fn small_steps_deleting_untagged_and_with_retention() {
    let opts = Options {
        grace: 0,
        delete_untagged: true,
        retention: gc::Retention::parse("gc/many* keep-last=2\n").unwrap(),
        ..Options::default()
    };
    same_as_one_shot(opts, 7).await;
}

#[tokio::test]
async fn a_step_held_off_by_the_lease_and_none_before_the_interval() {
    let clock = FixedClock::at_ms(NOW_MS);
    let s = MemoryStorage::new();
    fill(&s, 2).await;
    let opts = Options {
        grace: 0,
        ..Options::default()
    };
    s.put(LEASE, Bytes::from(format!("held other {}", NOW_MS + 1000)))
        .await
        .unwrap();
    let step = steps::step(&s, &opts, &clock, 100, Some(0)).await.unwrap();
    assert_eq!(step.status, Status::Busy);
    assert!(s.get(steps::STATE).await.unwrap().is_none());
    // Once it has expired, the lease is taken.
    clock.set_ms(NOW_MS + 1000);
    let (report, _, _) = run_steps(&s, &opts, &clock, 100).await;
    assert!(report.blobs_removed > 0);
    // Not again before the interval; no run without one.
    let step = steps::step(&s, &opts, &clock, 100, Some(3600))
        .await
        .unwrap();
    assert_eq!(step.status, Status::Idle);
    let step = steps::step(&s, &opts, &clock, 100, None).await.unwrap();
    assert_eq!(step.status, Status::Idle);
    clock.set_ms(NOW_MS + 3601 * 1000);
    let step = steps::step(&s, &opts, &clock, 100_000, Some(3600))
        .await
        .unwrap();
    assert!(matches!(step.status, Status::Done(_)), "{:?}", step.status);
}

/// A store whose one operation numbered `fail_at` fails (then it works again).
#[derive(Clone)]
struct Faulty {
    inner: MemoryStorage,
    left: std::sync::Arc<AtomicI64>,
}

impl Faulty {
    fn tick(&self) -> StorageResult<()> {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 0 {
            return Err(StorageError("injected failure".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Storage for Faulty {
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>> {
        self.tick()?;
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Bytes) -> StorageResult<()> {
        self.tick()?;
        self.inner.put(key, value).await
    }
    async fn get_versioned(&self, key: &str) -> StorageResult<Option<(Bytes, String)>> {
        self.tick()?;
        self.inner.get_versioned(key).await
    }
    async fn put_if(&self, key: &str, value: Bytes, version: &str) -> StorageResult<bool> {
        self.tick()?;
        self.inner.put_if(key, value, version).await
    }
    async fn put_new(&self, key: &str, value: Bytes) -> StorageResult<bool> {
        self.tick()?;
        self.inner.put_new(key, value).await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.tick()?;
        self.inner.delete(key).await
    }
    async fn list(&self, dir: &str, fresh: Freshness) -> StorageResult<Vec<String>> {
        self.tick()?;
        self.inner.list(dir, fresh).await
    }
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        self.tick()?;
        self.inner.blob_size(digest).await
    }
    async fn blob_read(
        &self,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> StorageResult<Option<Body>> {
        self.tick()?;
        self.inner.blob_read(digest, start, len).await
    }
    async fn blob_put(&self, digest: &Digest, data: Bytes) -> StorageResult<()> {
        self.tick()?;
        self.inner.blob_put(digest, data).await
    }
    async fn list_blobs(&self, cursor: Option<&str>, limit: usize) -> StorageResult<BlobPage> {
        self.tick()?;
        self.inner.list_blobs(cursor, limit).await
    }
    async fn blob_delete(&self, digest: &Digest) -> StorageResult<()> {
        self.tick()?;
        self.inner.blob_delete(digest).await
    }
    async fn upload_writer(
        &self,
        id: &str,
        offset: u64,
        backend: Option<&str>,
    ) -> StorageResult<Box<dyn UploadWriter>> {
        self.inner.upload_writer(id, offset, backend).await
    }
    async fn upload_read(
        &self,
        id: &str,
        len: u64,
        backend: Option<&str>,
    ) -> StorageResult<ByteStream> {
        self.inner.upload_read(id, len, backend).await
    }
    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        size: u64,
        backend: Option<&str>,
    ) -> StorageResult<()> {
        self.inner.upload_commit(id, digest, size, backend).await
    }
    async fn upload_delete(&self, id: &str, backend: Option<&str>) -> StorageResult<()> {
        self.inner.upload_delete(id, backend).await
    }
    async fn list_upload_data(&self) -> StorageResult<Vec<UploadData>> {
        self.inner.list_upload_data().await
    }
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n
}

#[tokio::test]
async fn steps_that_fail_at_random_operations_still_end_as_a_one_shot_collection() {
    let clock = FixedClock::at_ms(NOW_MS);
    let opts = Options {
        grace: 0,
        delete_untagged: true,
        ..Options::default()
    };
    for round in 0..8 {
        let (one, inc) = (MemoryStorage::new(), MemoryStorage::new());
        fill(&one, 10).await;
        fill(&inc, 10).await;
        let native = gc::collect(&one, &opts, &clock).await.unwrap().report;
        let faulty = Faulty {
            inner: inc.clone(),
            left: std::sync::Arc::new(AtomicI64::new(-1)),
        };
        let (mut failures, mut steps_taken) = (0, 0);
        let mut t = NOW_MS;
        let report = loop {
            steps_taken += 1;
            assert!(steps_taken < 10_000, "the collection did not finish");
            // Most steps fail at some operation within their budget.
            faulty.left.store(random_below(30) as i64, Ordering::SeqCst);
            match steps::step(&faulty, &opts, &clock, 20, Some(0)).await {
                Ok(step) => match step.status {
                    Status::Done(report) => break report,
                    Status::Working(_) => {}
                    Status::Busy => {
                        // The failure hit the lease's release: it expires.
                        t += LEASE_MS + 1;
                        clock.set_ms(t);
                    }
                    Status::Idle => panic!("idle in the middle of a run"),
                },
                Err(_) => failures += 1,
            }
        };
        faulty.left.store(-1, Ordering::SeqCst);
        // The counts of a step that died are not in the report; what is left is what counts.
        assert_eq!(
            content(&one),
            content(&inc),
            "round {round}: what is left differs"
        );
        assert!(check::problems(&inc).await.unwrap().is_empty());
        assert!(report.blobs_removed <= native.blobs_removed);
        println!("round {round}: {steps_taken} steps, {failures} failed");
        assert!(failures > 0);
    }
}
