//! Test harness: the registry under test, in process or as a real server speaking HTTP on
//! 127.0.0.1 ([`target`]), the one client the tests talk to it with ([`client`]), the content
//! they push ([`content`]), and test images for the container tools ([`image`]).
//!
//! Over HTTP, by default each test starts its own native server (`edge-registry serve`) on a
//! free port with a fresh storage folder, and stops it by its PID. With `EDGE_REGISTRY_URL`
//! set, tests run against that server instead (e.g. `wrangler dev`), and tests that must
//! restart the server skip nothing but use [`Server::native`] explicitly.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub mod client;
pub mod content;
pub mod engines;
pub mod image;
pub mod ops;
pub mod podman;
pub mod target;
pub mod upstream_proxy;

#[allow(unused_imports)]
pub use client::{block_on, Client, Response};
#[allow(unused_imports)]
pub use content::sha256;
#[allow(unused_imports)]
pub use target::{in_process, Options, Target, Transport};

/// One test per transport of the test body `async fn $name(t: Transport)`: `$name::in_process`
/// and `$name::http`. A `#[tokio::test(..)]` attribute before the name replaces the default.
#[macro_export]
macro_rules! both_transports {
    (#[$test:meta] $name:ident) => {
        mod $name {
            use $crate::common::Transport;

            #[$test]
            async fn in_process() {
                super::$name(Transport::InProcess).await
            }

            #[$test]
            async fn http() {
                super::$name(Transport::Http).await
            }
        }
    };
    ($name:ident) => {
        $crate::both_transports!(
            #[tokio::test]
            $name
        );
    };
}

/// Test fixtures only: the users every auth test (and the Worker run of them) knows.
pub const ALICE: (&str, &str) = ("alice", "alice-test-password");
pub const BOB: (&str, &str) = ("bob", "bob-test-password");
/// bob may push and pull under team-b/ and pull under shared/; alice may do everything.
pub const GRANTS: &str = "alice *=*\nbob team-b/*=pull,push shared/*=pull\n";

pub fn htpasswd_line(user: &str, password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
        .args(["hash-password", user, "--cost", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn write_accounts(dir: &Path, users: &[(&str, &str)]) {
    let lines: Vec<String> = users.iter().map(|(u, p)| htpasswd_line(u, p)).collect();
    std::fs::write(dir.join("htpasswd"), lines.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("grants"), GRANTS).unwrap();
}

/// A server in access `mode` with the fixture users, and the folder of their files: the
/// external server (`EDGE_REGISTRY_URL`) if `EDGE_REGISTRY_AUTH_MODE` names this mode, else a
/// fresh native one.
pub fn auth_server(mode: &'static str) -> (Server, tempfile::TempDir) {
    let accounts = tempfile::tempdir().expect("tempdir");
    let server = if external_auth_mode(mode) {
        Server::start()
    } else {
        Server::native_with_options(&Options::mode(mode), accounts.path())
    };
    (server, accounts)
}

/// Whether the external server (`EDGE_REGISTRY_URL`) runs in access `mode`, as
/// `EDGE_REGISTRY_AUTH_MODE` says.
pub fn external_auth_mode(mode: &str) -> bool {
    std::env::var("EDGE_REGISTRY_AUTH_MODE").is_ok_and(|m| m == mode)
}

pub struct Server {
    pub url: String,
    child: Option<Child>,
    /// The storage folder, when the server owns it.
    root: Option<tempfile::TempDir>,
}

impl Server {
    /// The server under test: `EDGE_REGISTRY_URL` if set, else a fresh native server.
    pub fn start() -> Server {
        match std::env::var("EDGE_REGISTRY_URL") {
            Ok(url) if !url.is_empty() => Server {
                url: url.trim_end_matches('/').to_string(),
                child: None,
                root: None,
            },
            _ => Server::native(),
        }
    }

    /// A handle on a server someone else runs (and stops).
    pub fn external(url: &str) -> Server {
        Server {
            url: url.trim_end_matches('/').to_string(),
            child: None,
            root: None,
        }
    }

    /// A fresh native server with its own storage folder.
    pub fn native() -> Server {
        let root = tempfile::tempdir().expect("tempdir");
        let mut s = Server::native_at(root.path());
        s.root = Some(root);
        s
    }

    /// A native server storing into `root` (which outlives it).
    pub fn native_at(root: &Path) -> Server {
        Server::native_at_with(root, &[])
    }

    /// A fresh native server with extra `serve` arguments (e.g. `--auth`).
    pub fn native_with(args: &[&str]) -> Server {
        let root = tempfile::tempdir().expect("tempdir");
        let mut s = Server::native_at_with(root.path(), args);
        s.root = Some(root);
        s
    }

    /// A fresh native server started with `options`; the account files go into `accounts`.
    pub fn native_with_options(options: &Options, accounts: &Path) -> Server {
        let root = tempfile::tempdir().expect("tempdir");
        let mut s = Server::native_at_with_options(root.path(), options, accounts);
        s.root = Some(root);
        s
    }

    /// A native server storing into `root`, started with `options`; the account files go
    /// into `accounts`.
    pub fn native_at_with_options(root: &Path, options: &Options, accounts: &Path) -> Server {
        let args = options.serve_args(accounts);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::native_at_with(root, &args)
    }

    /// A native server storing into `root`, with extra `serve` arguments.
    pub fn native_at_with(root: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start edge-registry");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            url,
            child: Some(child),
            root: None,
        }
    }

    /// The storage folder of a native server started by [`Server::native`].
    pub fn root(&self) -> Option<PathBuf> {
        self.root.as_ref().map(|r| r.path().to_path_buf())
    }

    /// `host:port` of the server, as container tools want it.
    pub fn host(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    }

    /// Whether this is a native server the test started (and so may stop or inspect).
    pub fn is_native(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server by its PID: SIGTERM, then waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let _ = child.wait();
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The PIDs of the processes serving: the native child, or those in `EDGE_REGISTRY_PID`
    /// (comma-separated, e.g. workerd's) for an external server.
    pub fn pids(&self) -> Vec<u32> {
        match &self.child {
            Some(c) => vec![c.id()],
            None => std::env::var("EDGE_REGISTRY_PID")
                .unwrap_or_default()
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect(),
        }
    }

    /// Peak resident memory (VmHWM) of each serving process so far, in KiB.
    pub fn peak_rss_kib(&self) -> Vec<(u32, u64)> {
        self.pids()
            .into_iter()
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
                Some((pid, kib))
            })
            .collect()
    }

    /// CPU time (user + system) used so far by the serving processes, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let mut total = 0.0;
        for pid in self.pids() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            total += ticks / 100.0;
        }
        Some(total)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => true,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A unique repository name per test, so tests can share one external server.
pub fn repo(prefix: &str) -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    format!("{prefix}-{}", hex::encode(b))
}
