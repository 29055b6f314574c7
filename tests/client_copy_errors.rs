//! `edge-registry copy` on bad input: a corrupt tarball, a layout blob that does not match
//! its digest, a wrong password, no credentials, an unreachable host, a server that answers
//! garbage, bad references. Each gets one line on stderr and exit status 1, never a panic.

mod common;
#[path = "common/copy.rs"]
mod copy;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::content;
use common::{Client, Options, Server};
use copy::*;

#[test]
fn bad_input_gets_one_clear_line() {
    let server = Server::native();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let h = server.host();
    let l = busybox_layout(&t.join("layout"));

    // A corrupt tarball.
    std::fs::write(t.join("garbage.tar"), content::fresh(10_000)).unwrap();
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("docker-archive:{}", t.join("garbage.tar").display()),
            &format!("docker://{h}/bad/a:1"),
        ],
    );
    assert!(e.contains("docker-archive"), "{e}");
    // A truncated one (a valid start, cut short).
    let e = copy_fails(
        t,
        &[
            "--insecure",
            "docker-archive:/nonexistent.tar",
            &format!("docker://{h}/bad/a:1"),
        ],
    );
    assert!(e.contains("/nonexistent.tar"), "{e}");

    // A layout whose layer does not match its digest: refused, nothing tagged.
    let layer = l.layer_digests("amd")[0].clone();
    let p = l.blob_path(&layer);
    let mut data = std::fs::read(&p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("oci:{}:amd", l.dir.display()),
            &format!("docker://{h}/bad/layout:1"),
        ],
    );
    assert!(e.contains("corrupt"), "{e}");
    let got = common::block_on(
        Client::http(&server.url)
            .get("/v2/bad/layout/manifests/1")
            .send(),
    );
    assert_eq!(got.status, http::StatusCode::NOT_FOUND);
    let e = copy_fails(
        t,
        &[
            &format!("oci:{}:amd", l.dir.display()),
            &format!("oci:{}:x", t.join("copy").display()),
        ],
    );
    assert!(e.contains("corrupt"), "{e}");

    // A wrong password.
    let accounts = tempfile::tempdir().unwrap();
    let auth = Server::native_with_options(&Options::mode("authenticated"), accounts.path());
    let e = copy_fails(
        t,
        &[
            "--insecure",
            "--creds",
            "alice:wrong",
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{}/team/a:1", auth.host()),
        ],
    );
    assert!(
        e.contains("authentication failed") && !e.contains("wrong:"),
        "{e}"
    );
    let ok = copy_ok(
        t,
        &[
            "--insecure",
            "--creds",
            &format!("{}:{}", common::ALICE.0, common::ALICE.1),
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{}/team/a:1", auth.host()),
        ],
    );
    assert!(ok.contains("copied"), "{ok}");
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{}/team/a:1", auth.host()),
        ],
    );
    assert!(e.contains("needs credentials"), "{e}");

    // An unreachable host.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{closed}/x/a:1"),
        ],
    );
    assert!(e.contains(&closed.to_string()), "{e}");

    // A server that answers garbage (a bounded number of connections).
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = garbage.local_addr().unwrap();
    let serving = std::thread::spawn(move || {
        garbage.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < 50 && Instant::now() < until {
            match garbage.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let mut buf = [0u8; 4096];
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"garbage, not HTTP\r\n\r\n\x00\x01\x02");
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("oci:{}:arm", l.dir.display()),
            &format!("docker://{addr}/x/a:1"),
        ],
    );
    assert!(e.contains(&addr.to_string()), "{e}");
    let e = copy_fails(
        t,
        &[
            "--insecure",
            &format!("docker://{addr}/x/a:1"),
            &format!("oci:{}:x", t.join("g").display()),
        ],
    );
    assert!(e.contains(&addr.to_string()), "{e}");
    drop(serving);

    // Bad references and flags.
    for (args, want) in [
        (vec!["nope:x", "oci:/tmp/x:y"], "unknown transport"),
        (
            vec!["oci:/nonexistent-layout:t", "oci:/tmp/x:y"],
            "not an OCI image layout",
        ),
        (
            vec!["docker://h.example/UPPER:1", "oci:/tmp/x:y"],
            "not valid",
        ),
        (vec!["oci:/x:t", "docker-archive:/tmp/a.tar"], "source only"),
    ] {
        let e = copy_fails(t, &args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
}
