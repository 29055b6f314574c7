//! `edge-registry verify` against our server (native, or the Worker under `wrangler dev` with
//! `EDGE_REGISTRY_URL`), our server with access control, and Debian's `docker-registry` (the
//! reference registry 2.8.2): its output ends with the counts, the report files parse, and a
//! failed MUST check makes the exit status non-zero.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Options, Server, ALICE};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_edge-registry");

fn verify(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("verify")
        .args(args)
        .env_remove("EDGE_REGISTRY_CREDS")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The counts of the last line, `verify: N passed, M failed, K skipped`.
fn counts(o: &Output) -> (usize, usize, usize) {
    let out = stdout(o);
    let last = out.lines().last().unwrap_or_default().to_string();
    let nums: Vec<usize> = last
        .trim_start_matches("verify: ")
        .split(", ")
        .map(|p| {
            p.split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("last line {last:?}\n{out}"))
        })
        .collect();
    assert!(
        last.starts_with("verify: ") && nums.len() == 3,
        "last line {last:?}"
    );
    (nums[0], nums[1], nums[2])
}

fn report(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn outcome(r: &Value, id: &str) -> String {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no check {id}"))
}

#[test]
fn our_server_passes_every_check() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("r.json");
    let xml = tmp.path().join("r.xml");
    let o = verify(&[&s.url, "--report", json.to_str().unwrap()]);
    println!("{}", stdout(&o));
    let (passed, failed, _) = counts(&o);
    assert_eq!(failed, 0, "{}", stdout(&o));
    assert!(passed >= 40);
    assert!(o.status.success());
    let r = report(&json);
    assert_eq!(
        (r["failed"].as_u64(), r["must_failed"].as_bool()),
        (Some(0), Some(false))
    );
    for c in r["checks"].as_array().unwrap() {
        assert!(
            ["MUST", "SHOULD", "MAY"].contains(&c["keyword"].as_str().unwrap()),
            "{c}"
        );
        assert!(!c["section"].as_str().unwrap().is_empty());
    }
    // --only, --skip and a JUnit report.
    let o = verify(&[
        &s.url,
        "--only",
        "push,pull",
        "--skip",
        "pull",
        "--report",
        xml.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    let x = std::fs::read_to_string(&xml).unwrap();
    assert!(
        x.starts_with("<?xml")
            && x.contains("<testsuite name=\"push\"")
            && !x.contains("name=\"pull\""),
        "{x}"
    );
    let o = verify(&[&s.url, "--only", "nonsense"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown area"));
}

#[test]
fn with_access_control_and_a_token() {
    let accounts = tempfile::tempdir().unwrap();
    let s = Server::native_with_options(&Options::mode("authenticated"), accounts.path());
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("r.json");
    let creds = format!("{}:{}", ALICE.0, ALICE.1);
    let o = verify(&[
        &s.url,
        "--creds",
        &creds,
        "--report",
        json.to_str().unwrap(),
    ]);
    assert_eq!(counts(&o).1, 0, "{}", stdout(&o));
    let r = report(&json);
    assert_eq!(outcome(&r, "auth.challenge"), "pass");
    assert_eq!(outcome(&r, "auth.error-code"), "pass");
    // Without credentials it cannot push: it says so and fails.
    let o = verify(&[&s.url]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).to_string() + &stdout(&o);
    assert!(!err.contains("panicked"), "{err}");
}

struct Reference {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's docker-registry (distribution 2.8.2) on a free port, deletes enabled.
fn reference() -> Reference {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("config.yml");
    std::fs::write(
        &conf,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("/usr/bin/docker-registry (Debian's docker-registry package)");
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "docker-registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Reference {
        child,
        url,
        _dir: dir,
    }
}

#[test]
fn the_reference_registry() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("r.json");
    let o = verify(&[&r.url, "--report", json.to_str().unwrap()]);
    println!("{}", stdout(&o));
    let (passed, failed, _) = counts(&o);
    assert!(passed > 20, "{}", stdout(&o));
    let rep = report(&json);
    // What the reference does (README, "verify"): these follow from its code, not from ours.
    assert_eq!(outcome(&rep, "push.post-put"), "pass");
    assert_eq!(outcome(&rep, "push.chunked"), "pass");
    assert_eq!(outcome(&rep, "push.single-post"), "skip");
    assert_eq!(outcome(&rep, "referrers.list"), "skip");
    // A failed MUST check makes the exit status 1.
    assert_eq!(
        o.status.success(),
        failed == 0 || !rep["must_failed"].as_bool().unwrap()
    );
}
