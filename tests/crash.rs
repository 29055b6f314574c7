//! Crash consistency of the native server: it is killed with SIGKILL in the middle of blob
//! uploads (monolithic and chunked, bodies streamed slowly so the kill lands mid-body), of
//! manifest PUTs and tag overwrites racing from several tasks, and of blob and manifest
//! deletes, at a random moment, several rounds in a row on the same storage folder.
//!
//! After each kill the storage folder is walked (nothing half-written under a final name:
//! every blob hashes to its name, every small object parses), and after each restart
//! everything the server acknowledged before the kill is checked over HTTP: acknowledged blobs
//! and manifests are intact, every tag resolves to a manifest whose digest matches its bytes,
//! the catalog agrees with the tags, and every interrupted upload session either resumes at an
//! offset consistent with what was acknowledged or is unknown (404 BLOB_UPLOAD_UNKNOWN).
//! No request may ever get a 5xx.
//!
//! The kill timing is random; the seed is printed, and `CRASH_SEED=<seed>` repeats a run.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::client::{content_range, with_digest};
use common::content::{self, image_of, sha256, to_bytes, trickle, with, MIB, OCI_MANIFEST};
use common::{repo, Client, Response, Server};
use edge_registry::digest::{Algorithm, Digest};
use http::StatusCode;
use serde_json::{json, Value};

// ---- randomness ---------------------------------------------------------------------------

/// xorshift64*: small, deterministic from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The test's generator: from `CRASH_SEED`, or random (and printed, to repeat the run).
    fn for_test(test: &str) -> Rng {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).unwrap();
                u64::from_le_bytes(b)
            });
        eprintln!("{test}: seed {seed} (CRASH_SEED={seed} repeats it)");
        Rng::new(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }

    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

// ---- HTTP helpers ---------------------------------------------------------------------------

/// Every tag of `name` resolves to an intact manifest; returns tag -> digest.
async fn check_tags(c: &Client, name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for tag in c.tags(name).await.unwrap_or_default() {
        let (_, d) = c
            .manifest(name, &tag)
            .await
            .unwrap_or_else(|| panic!("tag {tag} of {name} is listed but does not resolve"));
        // And the manifest is there by its digest too, with the same bytes.
        c.manifest(name, &d)
            .await
            .unwrap_or_else(|| panic!("manifest {d} of tag {tag} is gone by digest"));
        out.insert(tag, d);
    }
    out
}

/// An image manifest of `config` alone, with `annotations`.
fn manifest_for(config: &Bytes, annotations: Value) -> Bytes {
    to_bytes(&with(
        image_of(config, &[]),
        json!({ "annotations": annotations }),
    ))
}

// ---- the kill -------------------------------------------------------------------------------

/// Set just before the server is killed: a request that fails while it is clear is a bug.
#[derive(Clone, Default)]
struct Killed(Arc<AtomicBool>);

impl Killed {
    /// A request failed: fine once the server is being killed, a bug before.
    fn failed(&self, what: &str, e: String) {
        assert!(
            self.0.load(Ordering::SeqCst),
            "{what} failed while the server was up: {e:?}"
        );
    }
}

/// Lets the workload run for `delay`, kills the server with SIGKILL, waits for the workload's
/// tasks to notice, checks the storage folder as the crash left it, and starts the server
/// again on the same folder.
async fn crash_and_restart<T>(
    s: &mut Server,
    root: &Path,
    killed: &Killed,
    delay: Duration,
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    tokio::time::sleep(delay).await;
    killed.0.store(true, Ordering::SeqCst);
    s.kill();
    let mut out = Vec::new();
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("the workload did not stop after the kill");
        match r {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let orphans = check_storage(root, false);
    *s = Server::native_at(root);
    // Opening the store cleared what the crash left behind: temp files, and the data of
    // uploads that had no session (monolithic uploads in flight).
    let left = check_storage(root, true);
    eprintln!(
        "after the kill: {orphans} upload data files without a session, {left} after restart"
    );
    assert_eq!(left, 0, "upload data without a session survived a restart");
    out
}

// ---- the storage folder ---------------------------------------------------------------------

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                assert!(t.is_file(), "not a file: {}", e.path().display());
                out.push(e.path());
            }
        }
    }
    out
}

/// Walks the storage folder (see src/native/fs.rs for its layout) and checks that everything
/// under a final name is whole: blobs hash to their names, small objects parse and what they
/// refer to is stored. Returns the number of upload data files no session refers to.
fn check_storage(root: &Path, after_restart: bool) -> usize {
    let mut top: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        // Lock files (compare-and-set across processes, the collector's) hold no data.
        .filter(|n| n != "locks" && n != "gc.lock")
        .collect();
    top.sort();
    assert_eq!(top, ["blobs", "meta", "tmp", "uploads"], "storage root");

    // blobs/<alg>/<first two hex>/<hex>, each hashing to its name.
    let mut blobs: HashMap<String, u64> = HashMap::new();
    for path in files_under(&root.join("blobs")) {
        let rel: Vec<String> = path
            .strip_prefix(root.join("blobs"))
            .unwrap()
            .iter()
            .map(|c| c.to_str().unwrap().to_string())
            .collect();
        assert_eq!(rel.len(), 3, "blob path {}", path.display());
        let alg = Algorithm::parse(&rel[0]).unwrap_or_else(|| panic!("{}", path.display()));
        assert_eq!(rel[1], rel[2][..2], "blob folder {}", path.display());
        let data = std::fs::read(&path).unwrap();
        let actual = Digest::of(alg, &data);
        assert_eq!(
            actual.hex(),
            rel[2],
            "blob {} holds other bytes ({} bytes): half-written?",
            path.display(),
            data.len()
        );
        blobs.insert(format!("{}:{}", rel[0], rel[2]), data.len() as u64);
    }

    // meta/: the small objects.
    let meta = root.join("meta");
    let mut sessions: HashMap<String, u64> = HashMap::new();
    for path in files_under(&meta) {
        let key = path
            .strip_prefix(&meta)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let raw = std::fs::read(&path).unwrap();
        let parts: Vec<&str> = key.split('/').collect();
        if parts[0] == "_catalog" {
            assert_eq!(parts.len(), 2, "{key}");
            assert!(raw.is_empty(), "catalog entry {key} is not empty");
        } else if parts[0] == "_uploads" {
            assert_eq!(parts.len(), 2, "{key}");
            assert!(edge_registry::upload::valid_upload_id(parts[1]), "{key}");
            let state = edge_registry::upload::UploadState::decode(&raw)
                .unwrap_or_else(|| panic!("upload state {key} does not parse: {raw:?}"));
            assert!(state.hasher().is_some(), "upload state {key}: hash state");
            sessions.insert(parts[1].to_string(), state.offset);
        } else {
            assert_eq!(parts[0], "repositories", "unexpected small object {key}");
            let at = parts
                .iter()
                .position(|p| p.starts_with('_'))
                .unwrap_or_else(|| panic!("unexpected small object {key}"));
            let rest = &parts[at..];
            let blob = |alg: &str, hex: &str| blobs.get(&format!("{alg}:{hex}")).copied();
            match rest[0] {
                "_layers" => {
                    assert_eq!(rest.len(), 3, "{key}");
                    assert!(raw.is_empty(), "blob link {key} is not empty");
                    assert!(
                        blob(rest[1], rest[2]).is_some(),
                        "blob link {key} to a blob that is not stored"
                    );
                }
                "_manifests" => {
                    assert_eq!(rest.len(), 3, "{key}");
                    let v: Value = serde_json::from_slice(&raw)
                        .unwrap_or_else(|_| panic!("manifest record {key} does not parse"));
                    assert_eq!(v["mediaType"], json!(OCI_MANIFEST), "{key}");
                    assert_eq!(
                        blob(rest[1], rest[2]),
                        v["size"].as_u64(),
                        "manifest record {key}: its blob"
                    );
                }
                "_tags" => {
                    assert_eq!(rest.len(), 2, "{key}");
                    let d = std::str::from_utf8(&raw)
                        .ok()
                        .and_then(|s| Digest::parse(s).ok())
                        .unwrap_or_else(|| panic!("tag {key} holds {raw:?}"));
                    let record = meta
                        .join(parts[..at].join("/"))
                        .join("_manifests")
                        .join(d.algorithm().as_str())
                        .join(d.hex());
                    assert!(record.is_file(), "tag {key} points at a missing manifest");
                }
                "_referrers" => {
                    serde_json::from_slice::<Value>(&raw)
                        .unwrap_or_else(|_| panic!("referrer {key} does not parse"));
                }
                other => panic!("unexpected small object {key} ({other})"),
            }
        }
    }

    // uploads/<id>: the data of open sessions, at least as long as their recorded offset.
    let mut orphans = 0;
    for path in files_under(&root.join("uploads")) {
        let id = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(edge_registry::upload::valid_upload_id(&id), "{id}");
        let len = std::fs::metadata(&path).unwrap().len();
        match sessions.remove(&id) {
            Some(offset) => assert!(
                len >= offset,
                "upload {id} holds {len} bytes, its session says {offset}"
            ),
            // A monolithic upload in flight has no session; after a restart nothing can still
            // be writing it.
            None => orphans += 1,
        }
    }
    // A session with bytes but no data file: a crash came after its data became a blob and
    // before the session was ended. That is a state a crash may leave; what the server then
    // answers for the session is checked over HTTP.
    let _ = sessions;
    if after_restart {
        assert_eq!(
            std::fs::read_dir(root.join("tmp")).unwrap().count(),
            0,
            "tmp/"
        );
    }
    orphans
}

// ---- (a) uploads ----------------------------------------------------------------------------

/// What a client knows of one blob it tried to push.
#[derive(Debug, Clone)]
struct BlobPush {
    seed: u64,
    len: usize,
    /// 201 received.
    created: bool,
    /// For a chunked upload that was not completed: its session.
    session: Option<Session>,
}

/// What a client knows of its upload session.
#[derive(Debug, Clone)]
struct Session {
    location: String,
    /// The offset last acknowledged (by a 202, or the POST).
    acked: u64,
    /// The request in flight when the server died.
    in_flight: Option<Chunk>,
}

#[derive(Debug, Clone, Copy)]
struct Chunk {
    start: u64,
    len: u64,
    /// The final PUT (else a PATCH).
    is_put: bool,
}

impl BlobPush {
    /// A push of `len` bytes of the content of `seed`, not tried yet.
    fn new(seed: u64, len: usize) -> BlobPush {
        BlobPush {
            seed,
            len,
            created: false,
            session: None,
        }
    }

    fn data(&self) -> Bytes {
        content::bytes(self.seed, self.len)
    }
}

/// Pushes blobs in single slowly streamed POSTs until the server dies.
async fn monolithic_pusher(
    http: Client,
    name: String,
    mut rng: Rng,
    killed: Killed,
) -> Vec<BlobPush> {
    let mut pushed = Vec::new();
    loop {
        let small = rng.chance(3);
        let len = if small {
            rng.range(1, 100_000) as usize
        } else {
            rng.range(MIB as u64, 3 * MIB as u64) as usize
        };
        let mut push = BlobPush::new(rng.next(), len);
        let data = push.data();
        let d = sha256(&data);
        let mut req = http.post(&format!("/v2/{name}/blobs/uploads/?digest={d}"));
        req = if small {
            req.body(data)
        } else {
            let pause = Duration::from_millis(rng.range(1, 4));
            let body = trickle(data, 64 * 1024, pause);
            // Declared length or chunked encoding.
            if rng.chance(2) {
                req.header("Content-Length", len).stream(body)
            } else {
                req.stream(body)
            }
        };
        match req.try_send().await {
            Ok(r) => {
                r.expect_digest(StatusCode::CREATED, &d);
                push.created = true;
                pushed.push(push);
            }
            Err(e) => {
                killed.failed("monolithic upload", e);
                pushed.push(push);
                return pushed;
            }
        }
    }
}

/// Pushes blobs as chunked sessions (1 MiB PATCHes streamed slowly, then a PUT with or
/// without the last chunk) until the server dies.
async fn chunked_pusher(http: Client, name: String, mut rng: Rng, killed: Killed) -> Vec<BlobPush> {
    let mut pushed = Vec::new();
    loop {
        let len = rng.range(MIB as u64 + 1, 3 * MIB as u64 + MIB as u64 / 2) as usize;
        let mut push = BlobPush::new(rng.next(), len);
        let data = push.data();
        let d = sha256(&data);
        let r = match http
            .post(&format!("/v2/{name}/blobs/uploads/"))
            .try_send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                killed.failed("POST upload", e);
                return pushed;
            }
        };
        r.expect(StatusCode::ACCEPTED);
        let loc = r.location();
        let last_in_put = rng.chance(2);
        let pause = Duration::from_millis(rng.range(1, 4));
        let mut offset = 0u64;
        push.session = Some(Session {
            location: loc.clone(),
            acked: 0,
            in_flight: None,
        });
        loop {
            let rest = len as u64 - offset;
            let is_put = rest <= MIB as u64 && (last_in_put || rest == 0);
            // The whole rest of the blob is never more than one chunk by then; without the
            // last chunk the PUT is empty.
            let this = rest.min(MIB as u64);
            if let Some(s) = push.session.as_mut() {
                s.in_flight = Some(Chunk {
                    start: offset,
                    len: this,
                    is_put,
                });
            }
            let chunk = data.slice(offset as usize..(offset + this) as usize);
            let req = if is_put {
                http.put(&with_digest(&loc, &d))
            } else {
                http.patch(&loc)
            };
            let req = if this == 0 {
                req
            } else {
                req.header(
                    "Content-Range",
                    content_range(offset as usize, this as usize),
                )
                .header("Content-Length", this)
                .stream(trickle(chunk, 64 * 1024, pause))
            };
            let r = match req.try_send().await {
                Ok(r) => r,
                Err(e) => {
                    killed.failed("chunk", e);
                    pushed.push(push);
                    return pushed;
                }
            };
            if is_put {
                r.expect_digest(StatusCode::CREATED, &d);
                push.created = true;
                push.session = None;
                pushed.push(push);
                break;
            }
            r.expect(StatusCode::ACCEPTED);
            offset += this;
            assert_eq!(r.upload_offset(), offset);
            push.session = Some(Session {
                location: r.location(),
                acked: offset,
                in_flight: None,
            });
        }
    }
}

/// After a restart: what was acknowledged is intact, the rest absent or intact, and each
/// interrupted session resumes consistently (and is then completed) or is unknown. Returns the
/// pushes now known to be stored, and how many sessions resumed and were unknown.
async fn verify_blob_pushes(
    http: &Client,
    name: &str,
    pushes: Vec<BlobPush>,
) -> (Vec<BlobPush>, usize, usize) {
    let (mut stored, mut resumed, mut unknown) = (Vec::new(), 0, 0);
    for p in pushes {
        let data = p.data();
        if p.created {
            http.blob_intact(name, &data).await;
            stored.push(p);
            continue;
        }
        let Some(Session {
            location: loc,
            acked,
            in_flight,
        }) = p.session.clone()
        else {
            http.blob_absent_or_intact(name, &data).await;
            continue;
        };
        let r = http.get(&loc).send().await;
        if r.status != StatusCode::NO_CONTENT {
            assert_eq!(
                r.status_code(),
                (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into()),
                "status of session {loc}"
            );
            // Only completing the session may end it; its blob is then there, or (if the
            // crash came before it was linked) not.
            assert!(
                in_flight.is_some_and(|c| c.is_put),
                "session {loc} is gone though it was never completed ({in_flight:?})"
            );
            unknown += 1;
            http.blob_absent_or_intact(name, &data).await;
            continue;
        }
        let offset = r.upload_offset();
        let mut allowed = vec![acked];
        if let Some(c) = in_flight {
            assert_eq!(c.start, acked);
            allowed.push(acked + c.len);
        }
        assert!(
            allowed.contains(&offset),
            "session {loc} resumes at {offset}; acknowledged {acked}, in flight {in_flight:?}"
        );
        resumed += 1;
        finish_session(http, &r.location(), offset, &data).await;
        http.blob_intact(name, &data).await;
        stored.push(BlobPush {
            created: true,
            session: None,
            ..p
        });
    }
    (stored, resumed, unknown)
}

/// Completes a session that holds `offset` bytes of `data`: the rest in one PATCH, then the
/// PUT.
async fn finish_session(http: &Client, loc: &str, offset: u64, data: &Bytes) {
    let mut loc = loc.to_string();
    if offset < data.len() as u64 {
        let r = http
            .patch(&loc)
            .header(
                "Content-Range",
                format!("{}-{}", offset, data.len() as u64 - 1),
            )
            .body(data.slice(offset as usize..))
            .send()
            .await;
        assert_eq!(
            r.status,
            StatusCode::ACCEPTED,
            "resuming {loc} at {offset}: {}",
            r.text()
        );
        loc = r.location();
    }
    let r = http.put(&with_digest(&loc, &sha256(data))).send().await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "completing {loc}: {}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_blob_uploads() {
    let mut rng = Rng::for_test("sigkill_during_blob_uploads");
    let root = tempfile::tempdir().unwrap();
    let name = repo("crash-upload");
    let mut s = Server::native_at(root.path());
    let mut stored: Vec<BlobPush> = Vec::new();
    for round in 0..5 {
        let http = Client::of(&s);
        let killed = Killed::default();
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (http, name, rng, killed) =
                (http.clone(), name.clone(), rng.fork(), killed.clone());
            tasks.push(if i < 2 {
                tokio::spawn(monolithic_pusher(http, name, rng, killed))
            } else {
                tokio::spawn(chunked_pusher(http, name, rng, killed))
            });
        }
        let delay = Duration::from_millis(rng.range(100, 1500));
        let pushes: Vec<BlobPush> = crash_and_restart(&mut s, root.path(), &killed, delay, tasks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let http = Client::of(&s);
        let (n, acked) = (pushes.len(), pushes.iter().filter(|p| p.created).count());
        let (now_stored, resumed, unknown) = verify_blob_pushes(&http, &name, pushes).await;
        eprintln!(
            "round {round}: killed after {delay:?}: {n} pushes, {acked} acknowledged, \
             sessions resumed {resumed}, unknown {unknown}"
        );
        // Everything stored in earlier rounds is still intact.
        for p in &stored {
            http.blob_intact(&name, &p.data()).await;
        }
        stored.extend(now_stored);
        if !stored.is_empty() {
            assert!(http.catalog().await.contains(&name));
        }
    }
    eprintln!("{} blobs stored in all", stored.len());
    s.stop();
    check_storage(root.path(), true);
}

// ---- (b) manifest PUTs and tag overwrites ---------------------------------------------------

/// One manifest PUT a client tried.
#[derive(Debug, Clone)]
struct ManifestPut {
    repo: String,
    /// The tag, or `None` for a PUT by digest.
    tag: Option<String>,
    body: Bytes,
    digest: String,
    config: Bytes,
    /// The order of the request's start and of its 201, on one clock for all clients.
    start: u64,
    end: Option<u64>,
}

type Log = Arc<Mutex<Vec<ManifestPut>>>;

const TAGS: [&str; 3] = ["t0", "t1", "t2"];

/// Pushes a config blob and a manifest for it, by tag or by digest and then by tag, over and
/// over, until the server dies. Every PUT is logged before it is sent.
async fn manifest_pusher(
    http: Client,
    repos: Vec<String>,
    mut rng: Rng,
    killed: Killed,
    clock: Arc<AtomicU64>,
    log: Log,
    task: usize,
) {
    for i in 0.. {
        let repo = repos[rng.range(0, repos.len() as u64) as usize].clone();
        let config = Bytes::from(
            serde_json::to_vec(&json!({"task": task, "i": i, "nonce": rng.next()})).unwrap(),
        );
        if let Err(e) = http.try_push_blob(&repo, config.clone()).await {
            return killed.failed("config push", e);
        }
        let body = manifest_for(
            &config,
            json!({"task": task.to_string(), "i": i.to_string()}),
        );
        let digest = sha256(&body);
        let mut refs: Vec<Option<String>> = Vec::new();
        if rng.chance(3) {
            refs.push(None);
        }
        refs.push(Some(
            TAGS[rng.range(0, TAGS.len() as u64) as usize].to_string(),
        ));
        for tag in refs {
            let index = {
                let mut log = log.lock().unwrap();
                log.push(ManifestPut {
                    repo: repo.clone(),
                    tag: tag.clone(),
                    body: body.clone(),
                    digest: digest.clone(),
                    config: config.clone(),
                    start: clock.fetch_add(1, Ordering::SeqCst),
                    end: None,
                });
                log.len() - 1
            };
            let reference = tag.clone().unwrap_or_else(|| digest.clone());
            match http.try_push_manifest(&repo, &reference, &body).await {
                Ok(_) => {
                    log.lock().unwrap()[index].end = Some(clock.fetch_add(1, Ordering::SeqCst))
                }
                Err(e) => return killed.failed("manifest PUT", e),
            }
        }
    }
}

/// After a restart: acknowledged manifests are intact by digest; each tag resolves to an
/// intact manifest that is one of those PUT to it that no acknowledged later PUT overwrote;
/// catalog and tags agree. Returns the tags' values, for the next round.
async fn verify_manifest_puts(
    http: &Client,
    repos: &[String],
    log: &[ManifestPut],
) -> BTreeMap<(String, String), String> {
    for p in log {
        match http.manifest(&p.repo, &p.digest).await {
            Some((body, _)) => assert_eq!(body, p.body, "manifest {} of {}", p.digest, p.repo),
            None => assert!(
                p.end.is_none(),
                "acknowledged manifest {} of {} is gone",
                p.digest,
                p.repo
            ),
        }
        if p.end.is_some() {
            http.blob_intact(&p.repo, &p.config).await;
        }
    }
    let catalog = http.catalog().await;
    let mut values = BTreeMap::new();
    for repo in repos {
        let acked = log.iter().any(|p| &p.repo == repo && p.end.is_some());
        let listed = catalog.iter().filter(|r| *r == repo).count();
        assert!(listed <= 1, "{repo} is in the catalog {listed} times");
        if acked {
            assert_eq!(listed, 1, "{repo} has content but is not in the catalog");
        }
        let tags = check_tags(http, repo).await;
        if listed == 0 {
            assert!(tags.is_empty(), "{repo} has tags but is not in the catalog");
        }
        for tag in TAGS {
            let puts: Vec<&ManifestPut> = log
                .iter()
                .filter(|p| &p.repo == repo && p.tag.as_deref() == Some(tag))
                .collect();
            let Some(d) = tags.get(tag) else {
                assert!(
                    puts.iter().all(|p| p.end.is_none()),
                    "tag {tag} of {repo} was acknowledged but is not listed"
                );
                continue;
            };
            // The tag's manifest was PUT to it, and no acknowledged PUT that started after that
            // one ended has overwritten it.
            let candidates: Vec<&&ManifestPut> = puts.iter().filter(|p| &p.digest == d).collect();
            assert!(
                !candidates.is_empty(),
                "tag {tag} of {repo} points at {d}, never PUT to it"
            );
            let valid = candidates.iter().any(|a| {
                let a_end = a.end.unwrap_or(u64::MAX);
                !puts.iter().any(|b| b.end.is_some() && b.start > a_end)
            });
            assert!(
                valid,
                "tag {tag} of {repo} points at {d}, which a later acknowledged PUT replaced"
            );
            values.insert((repo.clone(), tag.to_string()), d.clone());
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_manifest_puts_and_tag_overwrites() {
    let mut rng = Rng::for_test("sigkill_during_manifest_puts_and_tag_overwrites");
    let root = tempfile::tempdir().unwrap();
    let repos = vec![repo("crash-tags"), format!("{}/nested", repo("crash-tags"))];
    let mut s = Server::native_at(root.path());
    let clock = Arc::new(AtomicU64::new(1));
    // What verification found, which later rounds must keep unless they overwrite it.
    let mut known: Vec<ManifestPut> = Vec::new();
    for round in 0..5 {
        let http = Client::of(&s);
        let killed = Killed::default();
        let log: Log = Arc::default();
        let tasks: Vec<_> = (0..4)
            .map(|task| {
                tokio::spawn(manifest_pusher(
                    http.clone(),
                    repos.clone(),
                    rng.fork(),
                    killed.clone(),
                    clock.clone(),
                    log.clone(),
                    round * 10 + task,
                ))
            })
            .collect();
        let delay = Duration::from_millis(rng.range(100, 1200));
        crash_and_restart(&mut s, root.path(), &killed, delay, tasks).await;
        let http = Client::of(&s);
        let this_round = log.lock().unwrap().clone();
        let mut all = known.clone();
        all.extend(this_round.iter().cloned());
        let values = verify_manifest_puts(&http, &repos, &all).await;
        for repo in &repos {
            let tags = http.tags(repo).await.unwrap_or_default();
            assert!(
                tags.iter().all(|t| TAGS.contains(&t.as_str())),
                "tags of {repo}: {tags:?}"
            );
        }
        eprintln!(
            "round {round}: killed after {delay:?}: {} PUTs, {} acknowledged, tags {values:?}",
            this_round.len(),
            this_round.iter().filter(|p| p.end.is_some()).count()
        );
        // Keep what is now known to be stored: acknowledged PUTs (as by digest) and, as one
        // acknowledged PUT each, the tags' current values.
        known = all
            .into_iter()
            .filter(|p| p.end.is_some())
            .map(|p| ManifestPut { tag: None, ..p })
            .collect();
        let now = clock.fetch_add(1, Ordering::SeqCst);
        for ((repo, tag), d) in values {
            let p = known
                .iter()
                .chain(this_round.iter())
                .find(|p| p.repo == repo && p.digest == d)
                .unwrap()
                .clone();
            known.push(ManifestPut {
                tag: Some(tag),
                start: now,
                end: Some(now),
                ..p
            });
        }
    }
    s.stop();
    check_storage(root.path(), true);
}

// ---- (c) deletes ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    NotTried,
    InFlight,
    Done,
}

/// Runs `op` on each item in turn until the server dies; returns each item's outcome.
async fn each_until_killed<T, F, Fut>(
    items: Vec<T>,
    killed: Killed,
    what: &str,
    op: F,
) -> Vec<Outcome>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<Response, String>>,
{
    let mut out = vec![Outcome::NotTried; items.len()];
    for (i, item) in items.into_iter().enumerate() {
        out[i] = Outcome::InFlight;
        match op(item).await {
            Ok(r) => {
                assert_eq!(r.status, StatusCode::ACCEPTED, "{what}: {}", r.text());
                out[i] = Outcome::Done;
            }
            Err(e) => {
                killed.failed(what, e);
                return out;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_deletes() {
    let mut rng = Rng::for_test("sigkill_during_deletes");
    let root = tempfile::tempdir().unwrap();
    let mut s = Server::native_at(root.path());
    const BLOBS: usize = 96;
    const MANIFESTS: usize = 12;
    for round in 0..5 {
        let name = repo("crash-delete");
        let http = Client::of(&s);

        // Content to delete: blobs, manifests deleted by digest (each with three tags), and
        // manifests one of whose two tags is deleted.
        let blobs: Vec<Bytes> = (0..BLOBS)
            .map(|_| {
                let len = rng.range(1, 20_000) as usize;
                content::bytes(rng.next(), len)
            })
            .collect();
        let mut pushes = Vec::new();
        for chunk in blobs.chunks(BLOBS / 4) {
            let (http, name, chunk) = (http.clone(), name.clone(), chunk.to_vec());
            pushes.push(tokio::spawn(async move {
                for b in chunk {
                    http.push_blob(&name, b).await;
                }
            }));
        }
        let mut manifests = Vec::new();
        for i in 0..2 * MANIFESTS {
            let config = Bytes::from(format!(r#"{{"round":{round},"i":{i}}}"#));
            let body = manifest_for(&config, json!({"i": i.to_string()}));
            manifests.push((config, body));
        }
        let mut tagged = Vec::new();
        for (i, (config, body)) in manifests.iter().enumerate() {
            let (http, name, config, body) =
                (http.clone(), name.clone(), config.clone(), body.clone());
            tagged.push(tokio::spawn(async move {
                http.push_blob(&name, config).await;
                let tags = if i < MANIFESTS {
                    vec![format!("d{i}a"), format!("d{i}b"), format!("d{i}c")]
                } else {
                    vec![format!("x{i}"), format!("y{i}")]
                };
                for t in tags {
                    http.push_manifest(&name, &t, &body).await;
                }
            }));
        }
        for t in pushes.into_iter().chain(tagged) {
            t.await.unwrap();
        }

        // Delete, from three clients at once, while a fourth pushes new tags.
        let killed = Killed::default();
        let mut order: Vec<usize> = (0..BLOBS).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.range(0, i as u64 + 1) as usize);
        }
        let blob_digests: Vec<String> = order.iter().map(|&i| sha256(&blobs[i])).collect();
        let by_digest: Vec<String> = (0..MANIFESTS).map(|i| sha256(&manifests[i].1)).collect();
        let by_tag: Vec<String> = (MANIFESTS..2 * MANIFESTS)
            .map(|i| format!("x{i}"))
            .collect();
        let mut deleter = |kind: &'static str, targets: Vec<String>| {
            let (http, name, killed) = (http.clone(), name.clone(), killed.clone());
            // Staggered, so that the kill lands in the middle of each kind of delete in some
            // round or other.
            let wait = Duration::from_millis(rng.range(0, 30));
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                each_until_killed(targets, killed, "DELETE", |t| {
                    http.delete(&format!("/v2/{name}/{kind}/{t}")).try_send()
                })
                .await
            })
        };
        let tasks = vec![
            deleter("blobs", blob_digests.clone()),
            deleter("manifests", by_digest.clone()),
            deleter("manifests", by_tag.clone()),
        ];
        let log: Log = Arc::default();
        let pusher = tokio::spawn(manifest_pusher(
            http.clone(),
            vec![name.clone()],
            rng.fork(),
            killed.clone(),
            Arc::new(AtomicU64::new(1)),
            log.clone(),
            round,
        ));
        let delay = Duration::from_millis(rng.range(1, 60));
        let mut outcomes = crash_and_restart(&mut s, root.path(), &killed, delay, tasks).await;
        tokio::time::timeout(Duration::from_secs(60), pusher)
            .await
            .unwrap()
            .unwrap();
        let (tags_out, digests_out, blobs_out) = (
            outcomes.pop().unwrap(),
            outcomes.pop().unwrap(),
            outcomes.pop().unwrap(),
        );
        let http = Client::of(&s);

        for (d, o) in blob_digests.iter().zip(&blobs_out) {
            let data = &blobs[order[blob_digests.iter().position(|x| x == d).unwrap()]];
            match o {
                Outcome::Done => http.blob_absent(&name, d).await,
                Outcome::InFlight => http.blob_absent_or_intact(&name, data).await,
                Outcome::NotTried => http.blob_intact(&name, data).await,
            }
        }
        // Every tag left resolves to an intact manifest (and is the one it was given).
        let tags = check_tags(&http, &name).await;
        for (i, (d, o)) in by_digest.iter().zip(&digests_out).enumerate() {
            let present = http.manifest(&name, d).await.is_some();
            let left: Vec<_> = ["a", "b", "c"]
                .iter()
                .filter_map(|s| tags.get(&format!("d{i}{s}")))
                .collect();
            assert!(
                left.iter().all(|t| *t == d),
                "tags of manifest {i}: {left:?}"
            );
            match o {
                Outcome::Done => {
                    assert!(!present, "deleted manifest {d} is still there");
                    assert!(left.is_empty(), "tags of deleted manifest {d} remain");
                }
                Outcome::InFlight => {
                    // Tags go first: a manifest gone has no tags left.
                    assert!(present || left.is_empty(), "tags of deleted manifest {d}");
                }
                Outcome::NotTried => {
                    assert!(present && left.len() == 3, "manifest {d} untouched")
                }
            }
            http.blob_intact(&name, &manifests[i].0).await;
        }
        for (k, (t, o)) in by_tag.iter().zip(&tags_out).enumerate() {
            let i = MANIFESTS + k;
            let d = sha256(&manifests[i].1);
            let (body, _) = http
                .manifest(&name, &d)
                .await
                .expect("manifest of a deleted tag");
            assert_eq!(body, manifests[i].1);
            assert_eq!(tags.get(&format!("y{i}")), Some(&d));
            match (o, tags.get(t)) {
                (Outcome::Done, Some(_)) => panic!("deleted tag {t} is still listed"),
                (Outcome::NotTried, None) => panic!("tag {t} is gone"),
                (_, Some(v)) => assert_eq!(v, &d),
                _ => {}
            }
        }
        // The pusher's tags are all of the form t<n>; the checks of (b) hold for them.
        let log = log.lock().unwrap().clone();
        verify_manifest_puts(&http, std::slice::from_ref(&name), &log).await;
        assert!(http.catalog().await.contains(&name));
        let done = |v: &[Outcome]| v.iter().filter(|o| **o == Outcome::Done).count();
        eprintln!(
            "round {round}: killed after {delay:?}: deleted {} blobs, {} manifests, {} tags",
            done(&blobs_out),
            done(&digests_out),
            done(&tags_out)
        );
    }
    s.stop();
    check_storage(root.path(), true);
}

// ---- a crash between completing an upload and ending its session ----------------------------

/// The state a SIGKILL leaves when it lands inside a final `PUT ...?digest=` that carried the
/// last chunk, after the upload's data became the blob and before the session was ended: the
/// session still records the offset before that chunk, its data file is gone. Reproduced on
/// disk exactly (that window is too short to hit reliably with a real kill). The client's
/// retry of the PUT must then succeed, or the session be unknown; never a 5xx.
#[tokio::test]
async fn crash_between_upload_commit_and_session_end() {
    let root = tempfile::tempdir().unwrap();
    let name = repo("crash-commit");
    let data = content::bytes(7, MIB + 300_000);
    let d = sha256(&data);
    let mut s = Server::native_at(root.path());
    let http = Client::of(&s);
    let r = http
        .post(&format!("/v2/{name}/blobs/uploads/"))
        .send()
        .await;
    let loc = r.location();
    let id = r.header("docker-upload-uuid").unwrap().to_string();
    let r = http
        .patch(&loc)
        .header("Content-Range", content_range(0, MIB))
        .body(data.slice(..MIB))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    s.stop();

    // What `PUT <loc>?digest=<d>` with the last chunk does before the crash: the chunk is
    // appended to the upload's data, the session is claimed for completion (its state marked
    // `completing`, so that no other request completes it), and the data is renamed into place
    // as the blob.
    let state_path = root.path().join("meta/_uploads").join(&id);
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["completing"] = Value::Bool(true);
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let upload = root.path().join("uploads").join(&id);
    std::fs::write(&upload, &data).unwrap();
    let hex = d.strip_prefix("sha256:").unwrap();
    let blob = root.path().join("blobs/sha256").join(&hex[..2]).join(hex);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::rename(&upload, &blob).unwrap();
    check_storage(root.path(), false);

    let s = Server::native_at(root.path());
    let http = Client::of(&s);
    let r = http.get(&loc).send().await;
    if r.status == StatusCode::NO_CONTENT {
        assert_eq!(r.upload_offset(), MIB as u64);
        // The client retries its PUT with the last chunk.
        let r = http
            .put(&with_digest(&loc, &d))
            .header("Content-Range", content_range(MIB, data.len() - MIB))
            .body(data.slice(MIB..))
            .send()
            .await;
        let (status, code) = r.status_code();
        assert!(
            status == StatusCode::CREATED
                || (status == StatusCode::NOT_FOUND && code == "BLOB_UPLOAD_UNKNOWN"),
            "retried PUT: {status} {code}"
        );
    } else {
        r.expect_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    }
    // Either way the blob can be pushed (again) and is intact.
    http.push_blob(&name, data.clone()).await;
    http.blob_intact(&name, &data).await;
}
