//! The engines the scale-out store runs on, started for a test on 127.0.0.1 and free ports:
//! PostgreSQL (`initdb` + `pg_ctl` in a temp folder, as the `postgres` user when the tests run
//! as root, since PostgreSQL refuses root) and Garage (one node, `--single-node
//! --default-bucket`, or a 3-node cluster). Each is stopped by its PID when dropped.
//!
//! `scripts/test` installs both (PostgreSQL with apt, Garage with `cargo install`).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Server;

/// A free TCP port on 127.0.0.1 (free when asked; the engine binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL tool: on PATH, else in the Debian package's folder.
fn pg_tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: install postgresql (scripts/test does)"))
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root.
fn pg_command(tool: &str) -> Command {
    let path = pg_tool(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

pub const PG_PASSWORD: &str = "scale-test-password";

/// A PostgreSQL server of its own.
pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = std::env::temp_dir().join(format!("edge-registry-pg-{}", random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pwfile"), PG_PASSWORD).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success(), "chown of the PostgreSQL folder");
        }
        let out = pg_command("initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "-A", "scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", dir.join("pwfile").display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Postgres {
            port: free_port(),
            dir,
        };
        pg.resume();
        pg
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Starts it (again), waiting until it accepts connections.
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops it (fast: connections are cut, as when it goes down).
    pub fn stop(&self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `garage` binary: on PATH or in cargo's bin folder.
fn garage_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .collect();
    if let Ok(home) = std::env::var("CARGO_HOME") {
        dirs.push(Path::new(&home).join("bin"));
    }
    if let Ok(home) = std::env::var("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("garage"))
        .find(|p| p.is_file())
        .expect("garage not found: scripts/test installs it (cargo install garage)")
}

pub const BUCKET: &str = "registry";

/// One Garage node.
pub struct GarageNode {
    child: Option<Child>,
    pub s3_port: u16,
    pub rpc_port: u16,
    config: PathBuf,
}

impl GarageNode {
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GarageNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Garage cluster on loopback (one node or three), with one bucket and one key.
pub struct Garage {
    pub nodes: Vec<GarageNode>,
    pub key: String,
    pub secret: String,
    dir: tempfile::TempDir,
}

fn garage_config(dir: &Path, n: usize, s3: u16, rpc: u16, secret: &str, factor: usize) -> PathBuf {
    let node = dir.join(format!("node{n}"));
    std::fs::create_dir_all(&node).unwrap();
    let config = format!(
        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = {factor}
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
"#,
        meta = node.join("meta").display(),
        data = node.join("data").display(),
    );
    let path = node.join("garage.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn spawn_garage(config: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(garage_bin())
        .arg("-c")
        .arg(config)
        .arg("server")
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start garage")
}

fn garage_cli(config: &Path, args: &[&str]) -> String {
    let out = Command::new(garage_bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "garage {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Retries `f` for up to `limit`.
fn retry<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

impl Garage {
    /// One node, `--single-node --default-bucket`.
    pub fn single() -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let (key, secret) = (format!("GK{}", random_hex(12)), random_hex(32));
        let (s3, rpc) = (free_port(), free_port());
        let config = garage_config(dir.path(), 0, s3, rpc, &random_hex(32), 1);
        let child = spawn_garage(
            &config,
            &["--single-node", "--default-bucket"],
            &[
                ("GARAGE_DEFAULT_ACCESS_KEY", &key),
                ("GARAGE_DEFAULT_SECRET_KEY", &secret),
                ("GARAGE_DEFAULT_BUCKET", BUCKET),
            ],
            &dir.path().join("node0.log"),
        );
        let g = Garage {
            nodes: vec![GarageNode {
                child: Some(child),
                s3_port: s3,
                rpc_port: rpc,
                config,
            }],
            key,
            secret,
            dir,
        };
        g.wait_ready(0);
        g
    }

    /// Three nodes, replication factor 3, one bucket and key made with the CLI.
    pub fn cluster() -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let rpc_secret = random_hex(32);
        let mut nodes = Vec::new();
        for n in 0..3 {
            let (s3, rpc) = (free_port(), free_port());
            let config = garage_config(dir.path(), n, s3, rpc, &rpc_secret, 3);
            let child = spawn_garage(&config, &[], &[], &dir.path().join(format!("node{n}.log")));
            nodes.push(GarageNode {
                child: Some(child),
                s3_port: s3,
                rpc_port: rpc,
                config,
            });
        }
        let first = nodes[0].config.clone();
        // Each node's id, then connect them and give each a role.
        let ids: Vec<String> = nodes
            .iter()
            .map(|n| {
                retry(Duration::from_secs(30), "garage node id", || {
                    let out = Command::new(garage_bin())
                        .arg("-c")
                        .arg(&n.config)
                        .args(["node", "id", "-q"])
                        .output()
                        .map_err(|e| e.to_string())?;
                    if !out.status.success() {
                        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
                })
            })
            .collect();
        for id in &ids[1..] {
            garage_cli(&first, &["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap();
            garage_cli(
                &first,
                &[
                    "layout",
                    "assign",
                    "-z",
                    &format!("dc{i}"),
                    "-c",
                    "1G",
                    &short[..16],
                ],
            );
        }
        garage_cli(&first, &["layout", "apply", "--version", "1"]);
        garage_cli(&first, &["bucket", "create", BUCKET]);
        let out = garage_cli(&first, &["key", "create", "registry-key"]);
        let field = |name: &str| {
            out.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == name).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name} in {out}"))
        };
        let (key, secret) = (field("Key ID"), field("Secret key"));
        garage_cli(
            &first,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", &key,
            ],
        );
        let g = Garage {
            nodes,
            key,
            secret,
            dir,
        };
        for n in 0..3 {
            g.wait_ready(n);
        }
        g
    }

    /// The `--blobs` URL through node `n`.
    pub fn blobs_url(&self, n: usize) -> String {
        format!(
            "s3://{BUCKET}?endpoint=http://127.0.0.1:{}&region=garage",
            self.nodes[n].s3_port
        )
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }

    /// Waits until node `n` serves the bucket with the key (on a thread of its own, so it may
    /// be called from async tests too).
    fn wait_ready(&self, n: usize) {
        let url = edge_registry::native::scale::s3::S3Url::parse(&self.blobs_url(n)).unwrap();
        let s3 =
            edge_registry::native::scale::s3::S3::with_keys(&url, &self.key, &self.secret).unwrap();
        let log = self.dir.path().join(format!("node{n}.log"));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            retry(Duration::from_secs(60), "garage ready", || {
                rt.block_on(s3.check()).map_err(|e| {
                    format!(
                        "{e}; log: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
            });
        })
        .join()
        .unwrap();
    }
}

/// A registry instance on PostgreSQL and Garage (node `node`), with extra `serve` arguments.
pub fn instance(pg: &Postgres, garage: &Garage, node: usize, args: &[&str]) -> Server {
    let root = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root.path())
        .args(["--metadata", &pg.url(), "--blobs", &garage.blobs_url(node)])
        .args(args)
        .envs(garage.env())
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
        root: Some(root),
    }
}
