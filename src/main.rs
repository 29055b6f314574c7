use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
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
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "EDGE_REGISTRY_LISTEN", default_value = "127.0.0.1:5000")]
        listen: SocketAddr,
        /// Folder the registry stores into.
        #[arg(long, env = "EDGE_REGISTRY_ROOT", default_value = "./registry-data")]
        root: PathBuf,
        /// Public base URL for Location and Link headers (default: path-absolute URLs).
        #[arg(long, env = "EDGE_REGISTRY_BASE_URL", default_value = "")]
        base_url: String,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            root,
            base_url,
            json_logs,
        } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let fmt = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_target(false)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
            if json_logs {
                fmt.json().init();
            } else {
                fmt.init();
            }
            let storage = FsStorage::open(&root)?;
            let config = Config {
                base_url,
                now,
                ..Config::default()
            };
            let registry = Arc::new(Registry::new(storage, config));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                let addr = listener.local_addr()?;
                // The first line on stdout names the address, for scripts and tests.
                println!("listening on http://{addr}");
                tracing::info!(%addr, root = %root.display(), "edge-registry serving");
                server::serve(listener, registry, server::shutdown_signal()).await
            })
        }
    }
}
