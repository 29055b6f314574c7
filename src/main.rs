use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgMatches, Parser, Subcommand};
use edge_registry::auth::{acceptable_credential, Access, Mode, TokenKey};
use edge_registry::native::access::{htpasswd_line, random_secret, AccountFiles};
use edge_registry::native::gc::Collector;
use edge_registry::native::metrics::Metrics;
use edge_registry::native::ops::{self, Ops, OpsArgs};
use edge_registry::native::scale::{NativeStorage, ScaleOptions, ScaleStorage};
use edge_registry::native::{fs::FsStorage, server, BlockingPasswordCheck, SystemClock};
use edge_registry::settings::{Settings, SETTINGS};
use edge_registry::Registry;

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
    /// Collect garbage once: blobs and manifests nothing live references (also while a server
    /// runs on the same root).
    Gc(edge_registry::native::gc::GcArgs),
    /// Print an htpasswd line (bcrypt) for USER, reading the password from stdin's first line.
    HashPassword {
        user: String,
        /// bcrypt cost (4..=31); each step doubles the time a login check takes.
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// Copy an image between registries, OCI layouts and `docker save` tarballs, in chunks
    /// small enough for any proxy's body limit, resuming where a previous run stopped.
    Copy(Box<edge_registry::client::cli::CopyArgs>),
    /// Check a registry against the OCI Distribution Spec v1.1.
    Verify(Box<edge_registry::client::cli::VerifyArgs>),
}

#[derive(clap::Args)]
struct Serve {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "EDGE_REGISTRY_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Folder the registry stores into.
    #[arg(long, env = "EDGE_REGISTRY_ROOT", default_value = "./registry-data")]
    root: PathBuf,
    /// Users, as an htpasswd file of bcrypt hashes (re-read when it changes).
    #[arg(long, env = "EDGE_REGISTRY_HTPASSWD")]
    htpasswd: Option<PathBuf>,
    /// Per-user grants: lines of `user pattern=actions ...` (re-read when it changes). With a
    /// grants file, a user without a line may do nothing.
    #[arg(long, env = "EDGE_REGISTRY_GRANTS")]
    grants: Option<PathBuf>,
    /// File holding the key that signs tokens (at least 32 bytes); default: a random key per
    /// process, so tokens end with it.
    #[arg(long, env = "EDGE_REGISTRY_TOKEN_SECRET_FILE")]
    token_secret_file: Option<PathBuf>,
    /// A proxy (address or CIDR) whose Forwarded / X-Forwarded-For headers name the client;
    /// repeat for more.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    json_logs: bool,
    #[command(flatten)]
    gc: edge_registry::native::gc::ServeGc,
    #[command(flatten)]
    scale: ScaleArgs,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    mirror: edge_registry::native::mirror::MirrorArgs,
}

/// Scale out: state shared by any number of instances (see README "Scale out").
#[derive(clap::Args)]
struct ScaleArgs {
    /// Keep metadata in PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DATABASE) instead of
    /// under --root; needs --blobs.
    #[arg(
        long,
        env = "EDGE_REGISTRY_METADATA",
        requires = "blobs",
        hide_env_values = true
    )]
    metadata: Option<String>,
    /// Keep blobs in S3-compatible storage: s3://BUCKET?endpoint=URL&region=REGION; needs
    /// --metadata. Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or
    /// --blobs-credentials.
    #[arg(long, env = "EDGE_REGISTRY_BLOBS", requires = "metadata")]
    blobs: Option<String>,
    /// An AWS shared-credentials file (`[default]` aws_access_key_id, aws_secret_access_key)
    /// for --blobs.
    #[arg(long, env = "EDGE_REGISTRY_BLOBS_CREDENTIALS")]
    blobs_credentials: Option<PathBuf>,
    /// The most PostgreSQL connections each of the instance's two pools (statements, upload
    /// session locks) opens.
    #[arg(long, env = "EDGE_REGISTRY_METADATA_POOL", default_value_t = 16)]
    metadata_pool: usize,
}

/// The core's settings table as flags (`--upload-ttl`) and variables
/// (`EDGE_REGISTRY_UPLOAD_TTL`), with the table's defaults.
struct SettingsArgs(HashMap<&'static str, String>);

impl clap::FromArgMatches for SettingsArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(SettingsArgs(
            SETTINGS
                .iter()
                .filter_map(|s| Some((s.var, m.get_one::<String>(s.var)?.clone())))
                .collect(),
        ))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for SettingsArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        SETTINGS.iter().fold(cmd, |cmd, s| {
            let env: &'static str = Box::leak(
                format!("EDGE_REGISTRY_{}", s.flag.replace('-', "_").to_uppercase())
                    .into_boxed_str(),
            );
            let arg = Arg::new(s.var)
                .long(s.flag)
                .env(env)
                .help(s.help)
                .default_value(s.default);
            // A switch (`--gc-delete-untagged`) may be given without a value.
            let arg = if matches!(s.default, "true" | "false") {
                arg.num_args(0..=1).default_missing_value("true")
            } else {
                arg
            };
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

fn fail(msg: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_string())
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword { user, cost } => {
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(fail("no password on stdin"));
            }
            if !acceptable_credential(&user, password) {
                return Err(fail(
                    "the user name must be non-empty and hold no ':', and neither it nor the password may hold control characters",
                ));
            }
            println!("{}", htpasswd_line(&user, password, cost)?);
            Ok(())
        }
        Command::Serve(s) => serve(*s),
        Command::Copy(a) => std::process::exit(edge_registry::client::cli::copy_main(*a)),
        Command::Verify(a) => std::process::exit(edge_registry::client::cli::verify_main(*a)),
        Command::Gc(args) => edge_registry::native::gc::run(args),
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
    let settings = Settings::from_lookup(|var| s.settings.0.get(var).cloned()).map_err(|e| {
        // Name the flag the user wrote, not the Worker's var.
        match e.split_once(": ").and_then(|(var, rest)| {
            let setting = SETTINGS.iter().find(|x| x.var == var)?;
            Some(format!("--{}: {rest}", setting.flag))
        }) {
            Some(m) => fail(m),
            None => fail(e),
        }
    })?;
    let trusted_proxies =
        server::TrustedProxies::parse(s.trusted_proxies.iter().map(String::as_str))
            .map_err(fail)?;
    let files = AccountFiles {
        htpasswd: s.htpasswd.clone(),
        grants: s.grants.clone(),
    };
    let accounts = files.load()?;
    let mode = settings.auth_mode;
    if matches!(mode, Mode::AnonymousPull | Mode::Authenticated) && accounts.htpasswd.is_empty() {
        return Err(fail(format!(
            "--auth {} needs users: pass --htpasswd FILE",
            mode.as_str()
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
        Access::new(mode, accounts, Some(key))
            .with_token_ttl(settings.token_ttl)
            .with_max_failures(settings.max_login_failures)
            .with_password_check(Arc::new(BlockingPasswordCheck::for_this_machine())),
    );
    if mode == Mode::Open && !s.listen.ip().is_loopback() {
        tracing::warn!(listen = %s.listen, "open mode on a non-loopback address: anyone who can reach it may push and delete");
    }
    let gc_options = edge_registry::native::gc::serve_options(&settings, &s.gc)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (storage, gc_storage) = match (&s.scale.metadata, &s.scale.blobs) {
        (Some(metadata), Some(blobs)) => {
            let options = ScaleOptions {
                metadata: metadata.clone(),
                blobs: blobs.clone(),
                credentials_file: s.scale.blobs_credentials.clone(),
                pool_size: s.scale.metadata_pool,
            };
            let scale = rt.block_on(ScaleStorage::open(&options)).map_err(fail)?;
            let collector = Collector::Scale(Box::new(scale.clone()));
            (NativeStorage::Scale(Box::new(scale)), collector)
        }
        _ => {
            let fs = FsStorage::open(&s.root)?;
            (NativeStorage::Fs(fs.clone()), Collector::Fs(fs))
        }
    };
    let shared = matches!(gc_storage, Collector::Scale(_));
    let mirrors = s.mirror.build(&s.root).map_err(fail)?;
    let limits = server::Limits {
        body_timeout: Duration::from_secs(settings.body_timeout),
        trusted_proxies,
    };
    let sweep_every = Duration::from_secs((settings.upload_ttl / 4).clamp(1, 600));
    let notify_options = s.ops.notify_options(&settings.base_url).map_err(fail)?;
    let metrics = s.ops.metrics_listen.map(|_| Arc::new(Metrics::new()));
    if let Some(m) = &metrics {
        m.watch_failed_logins(access.clone());
    }
    let accounts_parsed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut registry = Registry::new(storage, settings);
    if let Some(m) = mirrors {
        registry = registry.with_mirrors(m);
    }
    let registry = Arc::new(
        registry
            .with_access(access.clone())
            .with_clock(Arc::new(SystemClock))
            .with_readiness(ops::readiness(accounts_parsed.clone())),
    );
    let root = s.root;
    rt.block_on(async move {
        if files.htpasswd.is_some() || files.grants.is_some() {
            tokio::spawn(files.watch_reporting(access, Duration::from_secs(2), accounts_parsed));
        }
        // Upload data a crash left without a session, before serving (not on shared
        // storage, where other instances' requests are under way: the sweep takes it).
        match if shared { Ok(0) } else { registry.recover().await } {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed upload data left by a crash"),
            Err(e) => tracing::warn!(error = %e.cause(), "recovering upload data failed"),
        }
        // Expire stale upload sessions now and then (and at start, after a crash).
        // The first sweep runs before serving, so the open-sessions gauge starts right.
        let sweeper = registry.clone();
        let sweep_metrics = metrics.clone();
        let sweep = move || {
            let (sweeper, m) = (sweeper.clone(), sweep_metrics.clone());
            async move {
                match sweeper.expire_uploads().await {
                    Ok((open, events)) => {
                        if let Some(m) = &m {
                            m.set_upload_sessions(open);
                            m.events(&events);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e.cause(), "expiring upload sessions failed"),
                }
            }
        };
        sweep().await;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(sweep_every).await;
                sweep().await;
            }
        });
        let metrics_listener = match s.ops.metrics_listen {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(s.listen).await?;
        let addr = listener.local_addr()?;
        let ops = Ops::start(&root, notify_options, metrics.clone(), addr)?;
        if let Some(every) = s.gc.gc_interval {
            // Each run's removals go out as `delete` notifications from the actor `gc` (or
            // `retention`, for tags a rule removed), and into the metrics.
            let (notifier, gc_metrics) = (ops.notifier.clone(), metrics.clone());
            let on_run: edge_registry::native::gc::OnRun = Box::new(move |report, events| {
                if let Some(m) = &gc_metrics {
                    m.gc_run(report.bytes_reclaimed);
                    m.set_storage(report.bytes_kept, report.blobs_kept);
                    m.events(events);
                }
                if let Some(n) = &notifier {
                    let now = edge_registry::clock::Clock::now_ms(&SystemClock);
                    let (expired, collected): (Vec<_>, Vec<_>) = events
                        .iter()
                        .cloned()
                        .partition(|e| matches!(e, edge_registry::event::Event::TagExpired { .. }));
                    for (actor, events) in [("retention", expired), ("gc", collected)] {
                        n.publish(&events, &Default::default(), Some(actor), now);
                    }
                }
            });
            edge_registry::native::gc::spawn_periodic(gc_storage, every, gc_options, on_run);
        }
        // The first line on stdout names the address, for scripts and tests; the metrics
        // address follows in the same write.
        let mut lines = format!("listening on http://{addr}\n");
        if let (Some(l), Some(m)) = (metrics_listener, metrics) {
            let maddr = l.local_addr()?;
            lines.push_str(&format!("metrics on http://{maddr}/metrics\n"));
            tracing::info!(%maddr, "metrics at /metrics");
            tokio::spawn(edge_registry::native::metrics::serve(
                l,
                m,
                std::future::pending(),
            ));
        }
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(lines.as_bytes())?;
            out.flush()?;
        }
        tracing::info!(%addr, root = %root.display(), mode = mode.as_str(), "edge-registry serving");
        server::serve_with(listener, registry, limits, ops, server::shutdown_signal()).await
    })
}
