//! Real-client test: oras-py (the PyPI `oras` package) pushes artifacts to the registry and
//! pulls them back, with monolithic and chunked uploads, an OCI 1.1 artifact with a subject
//! and the referrers API. The checks live in `tests/clients/oras_roundtrip.py`; this test
//! starts the server and runs the script with the project's virtualenv:
//!
//! ```sh
//! python3 -m venv .venv && .venv/bin/pip install -r tests/clients/requirements.txt
//! ```
//!
//! A missing `.venv` or `oras` package is a failure, never a skip.

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;

#[test]
fn oras_py_push_pull_roundtrip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = dir.join(".venv/bin/python");
    let script = dir.join("tests/clients/oras_roundtrip.py");
    assert!(
        python.exists(),
        "{} is missing: create it with `python3 -m venv .venv && \
         .venv/bin/pip install -r tests/clients/requirements.txt`",
        python.display()
    );

    let server = Server::start();
    // oras-py makes temp folders of its own and leaves them: keep them in one we remove.
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg(server.host());
    if server.url.starts_with("https://") {
        cmd.arg("--https");
    }
    let out = cmd
        .env("PYTHONUNBUFFERED", "1")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Shown by the test harness when the test fails (or with --nocapture).
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "oras_roundtrip.py against {} failed ({}): see its output above; last line: {}",
        server.url,
        out.status,
        stdout.lines().last().unwrap_or("")
    );
    assert!(
        stdout.contains("PASS:"),
        "oras_roundtrip.py exited 0 without reporting PASS"
    );
}
