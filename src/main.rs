use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use edge_registry::auth::{Access, Mode, TokenKey};
use edge_registry::native::access::{htpasswd_line, random_secret, AccountFiles};
use edge_registry::native::{fs::FsStorage, now, server};
use edge_registry::{Config, Registry};

#[derive(Parser)]
#[command(
    name = "edge-registry",
    version,
    about = "An OCI Distribution v1.1 container registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry over HTTP, storing on local disk.
    Serve(Box<Serve>),
    /// Print an htpasswd line (bcrypt) for USER, reading the password from stdin's first line.
    HashPassword {
        user: String,
        /// bcrypt cost (4..=31); each step doubles the time a login check takes.
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
}

#[derive(clap::Args)]
struct Serve {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "EDGE_REGISTRY_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Folder the registry stores into.
    #[arg(long, env = "EDGE_REGISTRY_ROOT", default_value = "./registry-data")]
    root: PathBuf,
    /// Public base URL for Location and Link headers and the token realm (default:
    /// path-absolute URLs, and the realm from the request's Host).
    #[arg(long, env = "EDGE_REGISTRY_BASE_URL", default_value = "")]
    base_url: String,
    /// Who may do what: open, anonymous-pull, authenticated or read-only.
    #[arg(long, env = "EDGE_REGISTRY_AUTH", default_value = "open")]
    auth: Mode,
    /// Users, as an htpasswd file of bcrypt hashes (re-read when it changes).
    #[arg(long, env = "EDGE_REGISTRY_HTPASSWD")]
    htpasswd: Option<PathBuf>,
    /// Per-user grants: lines of `user pattern=actions ...` (re-read when it changes).
    #[arg(long, env = "EDGE_REGISTRY_GRANTS")]
    grants: Option<PathBuf>,
    /// File holding the key that signs tokens (at least 32 bytes); default: a random key per
    /// process, so tokens end with it.
    #[arg(long, env = "EDGE_REGISTRY_TOKEN_SECRET_FILE")]
    token_secret_file: Option<PathBuf>,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, env = "EDGE_REGISTRY_TOKEN_TTL", default_value_t = 300)]
    token_ttl: u64,
    /// Failed logins a client address may make per minute before it gets 429.
    #[arg(long, env = "EDGE_REGISTRY_MAX_LOGIN_FAILURES", default_value_t = 10)]
    max_login_failures: u32,
    /// Upload sessions open at once; past this, new ones get 429.
    #[arg(
        long,
        env = "EDGE_REGISTRY_MAX_UPLOAD_SESSIONS",
        default_value_t = 1000
    )]
    max_upload_sessions: usize,
    /// Seconds an upload session may go without a request before it expires and its data
    /// is removed.
    #[arg(long, env = "EDGE_REGISTRY_UPLOAD_TTL", default_value_t = 86400)]
    upload_ttl: u64,
    /// Largest blob accepted, in bytes.
    #[arg(long, env = "EDGE_REGISTRY_MAX_BLOB_SIZE", default_value_t = 32 << 30)]
    max_blob_size: u64,
    /// Seconds a request body may send nothing before the request is abandoned.
    #[arg(long, env = "EDGE_REGISTRY_BODY_TIMEOUT", default_value_t = 60)]
    body_timeout: u64,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    json_logs: bool,
}

fn fail(msg: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_string())
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword { user, cost } => {
            if user.is_empty() || user.contains(':') {
                return Err(fail("the user name must be non-empty and hold no ':'"));
            }
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(fail("no password on stdin"));
            }
            println!("{}", htpasswd_line(&user, password, cost)?);
            Ok(())
        }
        Command::Serve(s) => serve(*s),
    }
}

fn serve(s: Serve) -> std::io::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if s.json_logs {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let files = AccountFiles {
        htpasswd: s.htpasswd.clone(),
        grants: s.grants.clone(),
    };
    let accounts = files.load()?;
    if matches!(s.auth, Mode::AnonymousPull | Mode::Authenticated) && accounts.htpasswd.is_empty() {
        return Err(fail(format!(
            "--auth {:?} needs users: pass --htpasswd FILE",
            s.auth
        )));
    }
    let key = match &s.token_secret_file {
        // A file's trailing newline is not part of the secret.
        Some(p) => TokenKey::new(
            std::fs::read(p)
                .map_err(|e| fail(format!("{}: {e}", p.display())))?
                .trim_ascii(),
        ),
        None => TokenKey::new(&random_secret()),
    }
    .map_err(fail)?;
    let access = Arc::new(
        Access::new(s.auth, accounts, Some(key))
            .with_token_ttl(s.token_ttl)
            .with_max_failures(s.max_login_failures),
    );
    if s.auth == Mode::Open && !s.listen.ip().is_loopback() {
        tracing::warn!(listen = %s.listen, "open mode on a non-loopback address: anyone who can reach it may push and delete");
    }
    let storage = FsStorage::open(&s.root)?;
    let config = Config {
        base_url: s.base_url,
        now,
        access: access.clone(),
        max_upload_sessions: s.max_upload_sessions,
        upload_ttl: s.upload_ttl,
        max_blob_size: s.max_blob_size,
        ..Config::default()
    };
    let registry = Arc::new(Registry::new(storage, config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let root = s.root;
    let mode = s.auth;
    rt.block_on(async move {
        if files.htpasswd.is_some() || files.grants.is_some() {
            tokio::spawn(files.watch(access, Duration::from_secs(2)));
        }
        // Expire stale upload sessions now and then (and at start, after a crash).
        let sweeper = registry.clone();
        let every = Duration::from_secs((s.upload_ttl / 4).clamp(1, 600));
        tokio::spawn(async move {
            loop {
                if let Err(e) = sweeper.expire_uploads().await {
                    tracing::warn!(error = %e, "expiring upload sessions failed");
                }
                tokio::time::sleep(every).await;
            }
        });
        let listener = tokio::net::TcpListener::bind(s.listen).await?;
        let addr = listener.local_addr()?;
        // The first line on stdout names the address, for scripts and tests.
        println!("listening on http://{addr}");
        tracing::info!(%addr, root = %root.display(), ?mode, "edge-registry serving");
        let limits = server::Limits {
            body_timeout: Duration::from_secs(s.body_timeout.max(1)),
        };
        server::serve(listener, registry, limits, server::shutdown_signal()).await
    })
}
