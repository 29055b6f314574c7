//! Large pushes, pulled back and checked: a 1 GiB blob in 50 MiB PATCHes, and a 300 MiB blob
//! in a single PATCH (as docker sends a layer). Prints the server's peak RSS after each, which
//! must stay flat: bodies stream, nothing holds a whole blob. Runs against the native server,
//! or `EDGE_REGISTRY_URL` (with `EDGE_REGISTRY_PID` naming workerd for the RSS figure).

mod common;

use common::{repo, Server};
use edge_registry::digest::{Algorithm, Hasher};
use futures_util::StreamExt;
use reqwest::{Body, Client, StatusCode};

const MIB: u64 = 1024 * 1024;

/// Deterministic pseudo-random bytes, generated piece by piece (never held whole).
fn piece(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

const PIECE: u64 = MIB;

/// A streaming request body of `len` bytes starting at `offset` of the blob `seed`.
fn body(seed: u64, offset: u64, len: u64) -> Body {
    assert_eq!(offset % PIECE, 0);
    let first = offset / PIECE;
    let count = len.div_ceil(PIECE);
    let stream = futures_util::stream::iter(0..count).map(move |i| {
        let this = PIECE.min(len - i * PIECE) as usize;
        Ok::<_, std::io::Error>(piece(seed, first + i, this))
    });
    Body::wrap_stream(stream)
}

fn digest(seed: u64, len: u64) -> String {
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut i = 0;
    while i * PIECE < len {
        h.update(&piece(seed, i, PIECE.min(len - i * PIECE) as usize));
        i += 1;
    }
    h.finish().to_string()
}

async fn pull_and_check(c: &Client, s: &Server, name: &str, d: &str, len: u64) {
    let r = c
        .get(format!("{}/v2/{name}/blobs/{d}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut n = 0u64;
    let mut stream = r.bytes_stream();
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
    let c = Client::new();
    let name = repo("large");

    // 1 GiB in 50 MiB PATCHes with Content-Range.
    let (seed, len, chunk) = (1, 1024 * MIB, 50 * MIB);
    let d = digest(seed, len);
    let cpu = s.cpu_seconds();
    let started = std::time::Instant::now();
    let r = c
        .post(format!("{}/v2/{name}/blobs/uploads/", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut loc = r.headers()["location"].to_str().unwrap().to_string();
    let mut offset = 0;
    while offset < len {
        let this = chunk.min(len - offset);
        let r = c
            .patch(format!("{}{loc}", s.url))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", this)
            .header("Content-Range", format!("{}-{}", offset, offset + this - 1))
            .body(body(seed, offset, this))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "{}",
            r.text().await.unwrap()
        );
        loc = r.headers()["location"].to_str().unwrap().to_string();
        offset += this;
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{}{loc}{sep}digest={d}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    report(&s, "1 GiB in 50 MiB PATCHes");
    if let (Some(before), Some(after)) = (cpu, s.cpu_seconds()) {
        println!(
            "1 GiB in 50 MiB PATCHes: {:.1} s wall, server CPU {:.1} s (all its processes)",
            started.elapsed().as_secs_f64(),
            after - before
        );
    }
    pull_and_check(&c, &s, &name, &d, len).await;

    // 300 MiB in a single streamed PATCH.
    let (seed, len) = (2, 300 * MIB);
    let d = digest(seed, len);
    let r = c
        .post(format!("{}/v2/{name}/blobs/uploads/", s.url))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(format!("{}{loc}", s.url))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", len)
        .body(body(seed, 0, len))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{}{loc}{sep}digest={d}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    report(&s, "300 MiB in one PATCH");
    pull_and_check(&c, &s, &name, &d, len).await;
}
