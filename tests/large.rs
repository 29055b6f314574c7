//! Large pushes, pulled back and checked: a 1 GiB blob in 50 MiB PATCHes, and a 300 MiB blob
//! in a single PATCH (as docker sends a layer). Prints the server's peak RSS after each, which
//! must stay flat: bodies stream, nothing holds a whole blob. Runs against the native server,
//! or `EDGE_REGISTRY_URL` (with `EDGE_REGISTRY_PID` naming workerd for the RSS figure).

mod common;

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
    let mut loc = c.start_upload(&name).await;
    let mut offset = 0;
    while offset < len {
        let this = chunk.min(len - offset);
        let r = c
            .patch(&loc)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", this)
            .header("Content-Range", format!("{}-{}", offset, offset + this - 1))
            .stream(content::stream(seed, offset, this))
            .send()
            .await;
        r.expect(StatusCode::ACCEPTED);
        loc = r.location();
        offset += this;
    }
    c.put(&common::client::with_digest(&loc, &d))
        .send()
        .await
        .expect(StatusCode::CREATED);
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
    if r.status == StatusCode::SERVICE_UNAVAILABLE && r.text().contains("restarted mid-request") {
        // Under `wrangler dev` the workerd isolate restarts after a 300 MiB request body, and
        // wrangler's proxy answers the next request with this 503 without passing it on (it
        // says to send it again). Seen with this commit's Worker and with the previous one
        // (a6cecba) alike; what the isolate runs out of is issue #16's to find. The PUT did not
        // reach the Worker, so it is sent once more and must complete the upload.
        eprintln!("300 MiB in one PATCH: the runtime restarted after it; sending the PUT again");
        r = c.put(&complete).send().await;
    }
    r.expect(StatusCode::CREATED);
    report(&s, "300 MiB in one PATCH");
    pull_and_check(&c, &name, &d, len).await;
}
