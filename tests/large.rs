//! Large pushes, pulled back and checked: a 1 GiB blob in 50 MiB PATCHes, a 300 MiB blob in a
//! single PATCH (as docker sends a layer), and 8 clients at once pushing 200 MiB blobs chunked,
//! then monolithic, then pulling them. Prints the server's peak RSS after each, which must stay
//! flat: bodies stream, nothing holds a whole blob. Runs against the native server, or
//! `EDGE_REGISTRY_URL` (with `EDGE_REGISTRY_PID` naming workerd for the RSS figure).
//!
//! The Worker run with the var `EXPOSE_MEMORY=1` reports its wasm memory (the isolate's
//! high-water mark) in the header `Edge-Registry-Wasm-Memory` of every response: each phase
//! then asserts it stays under [`WASM_LIMIT`], with 8 uploads in one isolate included.

mod common;

use common::client::Response;
use common::content::{self, MIB};
use common::{repo, Client, Server};
use edge_registry::digest::{Algorithm, Hasher};
use futures_util::StreamExt;
use http::StatusCode;

/// Pulls the blob `d` as a stream and checks its length and digest (never held whole).
async fn pull_and_check(c: &Client, name: &str, d: &str, len: u64) {
    let r = c
        .get(&format!("/v2/{name}/blobs/{d}"))
        .send_streaming()
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut n = 0u64;
    let mut stream = r.body;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(n, len);
    assert_eq!(h.finish().to_string(), d);
}

/// What the Worker's wasm memory must stay under, whatever the concurrency (issue #16).
const WASM_LIMIT: u64 = 32 * 1024 * 1024;
/// What the native server's peak RSS must stay under with 8 uploads of 200 MiB at once.
const NATIVE_RSS_LIMIT_KIB: u64 = 256 * 1024;

/// The Worker's wasm memory as the response reports it (`EXPOSE_MEMORY=1`), checked against
/// [`WASM_LIMIT`]; `None` from a server that does not report it.
fn wasm_memory(what: &str, r: &common::client::Response) -> Option<u64> {
    let bytes: u64 = r.header("edge-registry-wasm-memory")?.parse().unwrap();
    println!(
        "{what}: Worker wasm memory {:.1} MiB",
        bytes as f64 / MIB as f64
    );
    assert!(
        bytes < WASM_LIMIT,
        "{what}: the Worker's wasm memory grew to {bytes} bytes"
    );
    Some(bytes)
}

fn report(s: &Server, what: &str) {
    let peaks = s.peak_rss_kib();
    if peaks.is_empty() {
        println!("{what}: server peak RSS unknown (set EDGE_REGISTRY_PID)");
    }
    for (pid, kib) in peaks {
        println!("{what}: peak RSS of pid {pid}: {} MiB", kib / 1024);
    }
}

#[tokio::test]
async fn one_gib_in_50_mib_patches_and_300_mib_in_one_patch() {
    let s = Server::start();
    let c = Client::of(&s);
    let name = repo("large");
    let mib = MIB as u64;

    // 1 GiB in 50 MiB PATCHes with Content-Range.
    let (seed, len, chunk) = (1, 1024 * mib, 50 * mib);
    let d = content::digest(seed, len);
    let cpu = s.cpu_seconds();
    let started = std::time::Instant::now();
    let r = push_chunked(&c, &name, seed, len, chunk).await;
    wasm_memory("1 GiB in 50 MiB PATCHes", &r);
    report(&s, "1 GiB in 50 MiB PATCHes");
    if let (Some(before), Some(after)) = (cpu, s.cpu_seconds()) {
        println!(
            "1 GiB in 50 MiB PATCHes: {:.1} s wall, server CPU {:.1} s (all its processes)",
            started.elapsed().as_secs_f64(),
            after - before
        );
    }
    pull_and_check(&c, &name, &d, len).await;

    // 300 MiB in a single streamed PATCH.
    let (seed, len) = (2, 300 * mib);
    let d = content::digest(seed, len);
    let loc = c.start_upload(&name).await;
    let r = c
        .patch(&loc)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", len)
        .stream(content::stream(seed, 0, len))
        .send()
        .await;
    r.expect(StatusCode::ACCEPTED);
    let complete = common::client::with_digest(&r.location(), &d);
    let mut r = c.put(&complete).send().await;
    if proxy_dropped(&r) {
        // wrangler dev's proxy dropped the PUT on the way in (see `push_chunked`): it did
        // not reach the Worker, so it is sent once more and must complete the upload.
        eprintln!("300 MiB in one PATCH: wrangler dev's proxy dropped the PUT; sending it again");
        r = c.put(&complete).send().await;
    }
    r.expect(StatusCode::CREATED);
    wasm_memory("300 MiB in one PATCH", &r);
    report(&s, "300 MiB in one PATCH");
    pull_and_check(&c, &name, &d, len).await;
}

/// The digest of `len` bytes of `seed`, computed on a blocking thread: hashing 200 MiB takes
/// seconds, and the clients pushing at once (one task) must keep their connections going
/// meanwhile.
async fn digest_aside(seed: u64, len: u64) -> String {
    tokio::task::spawn_blocking(move || content::digest(seed, len))
        .await
        .unwrap()
}

/// Pushes `len` bytes of `seed` in PATCHes of `chunk` (one PATCH when `chunk >= len`) and
/// completes the upload; returns the last response.
///
/// Under `wrangler dev`, several large requests at once in its one isolate can make its local
/// proxy drop a request on the way in and answer 503 "Your worker restarted mid-request" (the
/// Worker did not restart: the proxy chain's 5 s connection timeouts fire while the isolate is
/// busy; workers-sdk issue #14641). The proxy says to send it again, as a resilient client
/// does: the upload's status (`GET` on the session) says where to go on from. Each such resend
/// is counted in [`PROXY_RESENDS`] and printed; the native server never answers that.
async fn push_chunked(c: &Client, name: &str, seed: u64, len: u64, chunk: u64) -> Response {
    let d = digest_aside(seed, len).await;
    let mut loc = start_upload(c, name).await;
    let mut offset = 0;
    while offset < len {
        let this = chunk.min(len - offset);
        let r = c
            .patch(&loc)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", this)
            .header("Content-Range", format!("{}-{}", offset, offset + this - 1))
            .stream(content::stream(seed, offset, this))
            .try_send()
            .await;
        // Against the Worker, the proxy may also drop the connection itself (timed out or
        // reset, the same cause); natively that fails the test.
        let r = match r {
            Ok(r) => (!proxy_dropped(&r)).then_some(r),
            Err(e) if std::env::var_os("EDGE_REGISTRY_URL").is_some() => {
                eprintln!("PATCH at {offset}: the proxy dropped the connection ({e}); resuming");
                PROXY_RESENDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
            Err(e) => panic!("PATCH at {offset}: {e}"),
        };
        let Some(r) = r else {
            // Where the session stands now (the dropped PATCH may have been taken or not).
            let status = c.get(&loc).send().await;
            status.expect(StatusCode::NO_CONTENT);
            offset = status
                .header("range")
                .and_then(|r| r.rsplit('-').next()?.parse::<u64>().ok())
                .map_or(0, |end| end + 1);
            loc = status.location();
            continue;
        };
        r.expect(StatusCode::ACCEPTED);
        loc = r.location();
        offset += this;
    }
    let mut r = c.put(&common::client::with_digest(&loc, &d)).send().await;
    if proxy_dropped(&r) {
        r = c.put(&common::client::with_digest(&loc, &d)).send().await;
    }
    r.expect(StatusCode::CREATED);
    r
}

/// Requests wrangler dev's proxy dropped and the tests sent again (see [`push_chunked`]).
static PROXY_RESENDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether wrangler dev's proxy answered instead of the Worker (counted).
fn proxy_dropped(r: &Response) -> bool {
    let dropped = std::env::var_os("EDGE_REGISTRY_URL").is_some()
        && r.status == StatusCode::SERVICE_UNAVAILABLE
        && r.text().contains("restarted mid-request");
    if dropped {
        PROXY_RESENDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    dropped
}

/// Starts an upload session, sending the POST again if wrangler dev's proxy dropped it.
async fn start_upload(c: &Client, name: &str) -> String {
    for _ in 0..5 {
        let r = c.post(&format!("/v2/{name}/blobs/uploads/")).send().await;
        if !proxy_dropped(&r) {
            r.expect(StatusCode::ACCEPTED);
            return r.location();
        }
    }
    panic!("POST {name}: wrangler dev's proxy dropped it 5 times");
}

/// Pushes `len` bytes of `seed` in one POST + PUT with the whole body (a new session when
/// wrangler dev's proxy drops the PUT, as for [`push_chunked`]).
async fn push_monolithic(c: &Client, name: &str, seed: u64, len: u64) -> Response {
    let d = digest_aside(seed, len).await;
    for _ in 0..5 {
        let loc = start_upload(c, name).await;
        let r = c
            .put(&common::client::with_digest(&loc, &d))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len)
            .stream(content::stream(seed, 0, len))
            .send()
            .await;
        if proxy_dropped(&r) {
            continue;
        }
        r.expect(StatusCode::CREATED);
        return r;
    }
    panic!("PUT {name}: wrangler dev's proxy dropped it 5 times");
}

/// The largest wasm memory any of `responses` reports, checked; `None` natively.
fn wasm_high_water(what: &str, responses: &[Response]) -> Option<u64> {
    responses.iter().filter_map(|r| wasm_memory(what, r)).max()
}

/// Natively the server's peak RSS must stay under [`NATIVE_RSS_LIMIT_KIB`].
fn check_native_rss(s: &Server, what: &str) {
    report(s, what);
    if std::env::var_os("EDGE_REGISTRY_URL").is_none() {
        for (pid, kib) in s.peak_rss_kib() {
            assert!(
                kib < NATIVE_RSS_LIMIT_KIB,
                "{what}: the server (pid {pid}) reached {kib} KiB"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_at_once_push_and_pull_200_mib_each() {
    // How many at once: 8, unless EDGE_REGISTRY_LARGE_CLIENTS says otherwise.
    let clients: u64 = std::env::var("EDGE_REGISTRY_LARGE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let s = Server::start();
    let c = Client::of(&s);
    let name = repo("large-concurrent");
    let mib = MIB as u64;
    let len = 200 * mib;

    // 8 chunked pushes in 50 MiB PATCHes, at once (one isolate under `wrangler dev`).
    let pushes = (0..clients).map(|i| push_chunked(&c, &name, 100 + i, len, 50 * mib));
    let done = futures_util::future::join_all(pushes).await;
    wasm_high_water("8 chunked pushes of 200 MiB at once", &done);
    check_native_rss(&s, "8 chunked pushes of 200 MiB at once");

    // 8 monolithic pushes (POST, then PUT with the whole body), at once.
    let pushes = (0..clients).map(|i| push_monolithic(&c, &name, 200 + i, len));
    let done = futures_util::future::join_all(pushes).await;
    wasm_high_water("8 monolithic pushes of 200 MiB at once", &done);
    check_native_rss(&s, "8 monolithic pushes of 200 MiB at once");

    // 8 pulls of what the chunked pushes stored, at once, each checked as it streams.
    let pulls = (0..clients).map(|i| {
        let (c, name) = (c.clone(), name.clone());
        async move {
            let d = digest_aside(100 + i, len).await;
            pull_and_check(&c, &name, &d, len).await;
        }
    });
    futures_util::future::join_all(pulls).await;
    let r = c.get("/v2/").send().await;
    wasm_memory("8 pulls of 200 MiB at once", &r);
    check_native_rss(&s, "8 pulls of 200 MiB at once");
    println!(
        "requests dropped by wrangler dev's proxy and sent again: {}",
        PROXY_RESENDS.load(std::sync::atomic::Ordering::Relaxed)
    );
}
