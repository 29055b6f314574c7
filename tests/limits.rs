//! Limits over real HTTP: the bound on open upload sessions, the expiry of idle sessions (and
//! the removal of their data), the largest blob, and a request body that stops sending.
//!
//! Each test starts a native server with small limits. When `EDGE_REGISTRY_URL` is set and
//! `EDGE_REGISTRY_LIMITS=1`, the tests that the Worker can run use that server instead, which
//! `scripts/test` starts with the same limits (MAX_UPLOAD_SESSIONS 3, UPLOAD_TTL 3,
//! MAX_BLOB_SIZE 1048576) and `--test-scheduled`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::client::with_digest;
use common::{repo, sha256, Client, Server};
use http::StatusCode;

const LIMITS: [&str; 6] = [
    "--max-upload-sessions",
    "3",
    "--upload-ttl",
    "3",
    "--max-blob-size",
    "1048576",
];

fn external() -> bool {
    std::env::var("EDGE_REGISTRY_LIMITS").is_ok_and(|v| v == "1")
        && std::env::var("EDGE_REGISTRY_URL").is_ok_and(|u| !u.is_empty())
}

/// The server with the limits above: the external one if it has them, else a native one.
fn server() -> Server {
    if external() {
        Server::start()
    } else {
        Server::native_with(&LIMITS)
    }
}

/// Opens an upload session in `name` (the answer is the caller's to check).
async fn open_session(c: &Client, name: &str) -> common::Response {
    c.post(&format!("/v2/{name}/blobs/uploads/")).send().await
}

/// The bound is global: on a shared server the tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn open_upload_sessions_are_bounded() {
    let _one = SERIAL.lock().await;
    let s = server();
    let c = Client::of(&s);
    let name = repo("limits/sessions");
    if external() {
        // Sessions left by an earlier test on the shared server expire first (the TTL is
        // 3 s, counted in whole seconds).
        tokio::time::sleep(Duration::from_millis(4100)).await;
    }
    let mut open = Vec::new();
    for _ in 0..3 {
        let r = open_session(&c, &name).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        open.push(r.location());
    }
    let r = open_session(&c, &name).await;
    assert!(r.header("retry-after").is_some());
    r.expect_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    // A monolithic upload opens no session: it still works at the bound.
    let data = b"monolithic at the bound";
    let r = c
        .post(&format!(
            "/v2/{name}/blobs/uploads/?digest={}",
            sha256(data)
        ))
        .body(&data[..])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Cancelling one makes room.
    let r = c.delete(&open[0]).send().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = open_session(&c, &name).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let extra = r.location();
    for l in open.iter().skip(1).chain([&extra]) {
        c.delete(l).send().await;
    }
}

#[tokio::test]
async fn idle_sessions_expire_and_their_data_goes() {
    let _one = SERIAL.lock().await;
    let s = server();
    let c = Client::of(&s);
    let name = repo("limits/expiry");
    let r = open_session(&c, &name).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let session = r.location();
    let r = c
        .patch(&session)
        .header("Content-Range", "0-9")
        .body(vec![7u8; 10])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let quiet = open_session(&c, &name).await;
    let quiet = quiet.location();

    // Activity keeps a session alive: 1 s, a chunk, 1 s more (the clock counts whole seconds,
    // so 3 s of TTL are at least 2).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = c
        .patch(&session)
        .header("Content-Range", "10-19")
        .body(vec![8u8; 10])
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = c.get(&session).send().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), Some("0-19"));

    // Idle past the TTL: the sweep (periodic natively, the cron trigger on the Worker) removes
    // the quiet one without a request touching it.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    if external() {
        let r = c.get("/__scheduled?cron=17+*+*+*+*").send().await;
        assert!(r.status.is_success(), "{}", r.status);
    } else {
        let root = s.root().unwrap();
        let id = quiet.rsplit('/').next().unwrap().split('?').next().unwrap();
        let mut gone = false;
        for _ in 0..50 {
            let left = walk(&root).into_iter().any(|p| p.contains(id));
            if !left {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "the idle session {id} is still stored");
    }
    for l in [&session, &quiet] {
        let r = c.get(l).send().await;
        r.expect_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    }
    if !external() {
        let root = s.root().unwrap();
        let left: Vec<String> = walk(&root)
            .into_iter()
            .filter(|p| p.contains("upload"))
            .collect();
        assert!(left.is_empty(), "upload files left: {left:?}");
    }
}

/// Every file under `root`, as paths relative to it.
fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn blobs_are_bounded_in_size() {
    let _one = SERIAL.lock().await;
    let s = server();
    let c = Client::of(&s);
    let name = repo("limits/size");
    let big = vec![1u8; 1048577];
    let r = c
        .post(&format!(
            "/v2/{name}/blobs/uploads/?digest={}",
            sha256(&big)
        ))
        .body(big.clone())
        .send()
        .await;
    r.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    // In chunks: the chunk that crosses the limit is refused, the session stays usable.
    let r = open_session(&c, &name).await;
    let session = r.location();
    let half = 524288;
    let r = c
        .patch(&session)
        .header("Content-Range", format!("0-{}", half - 1))
        .body(big[..half].to_vec())
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = c
        .patch(&session)
        .header("Content-Range", format!("{half}-{}", big.len() - 1))
        .body(big[half..].to_vec())
        .send()
        .await;
    r.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    let exact = &big[..1048576];
    let r = c
        .put(&with_digest(&session, &sha256(exact)))
        .header("Content-Range", format!("{half}-{}", exact.len() - 1))
        .body(exact[half..].to_vec())
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = c
        .head(&format!("/v2/{name}/blobs/{}", sha256(exact)))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_stops_sending_is_abandoned() {
    // Native: workerd's proxy holds the connection on its own terms.
    let s = Server::native_with(&["--body-timeout", "1"]);
    let name = repo("limits/stall");
    let addr = s.host();
    let mut t = TcpStream::connect(&addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let digest = sha256(&[0u8; 100]);
    write!(
        t,
        "POST /v2/{name}/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\n"
    )
    .unwrap();
    t.write_all(&[0u8; 10]).unwrap();
    // ...and nothing more. The server answers, and closes, instead of waiting forever.
    let mut answer = Vec::new();
    let _ = t.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    // Nothing of it was stored.
    let r = Client::of(&s)
        .get(&format!("/v2/{name}/blobs/{digest}"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
