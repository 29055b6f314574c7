//! The `copy` and `verify` subcommands' arguments, and running them: one line on stderr and
//! exit status 1 on failure, never a panic.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::auth::Credentials;
use super::copy::{copy, CopyOptions, Platform};
use super::reference::{Host, ImageRef};
use super::registry::Options;
use super::upload::UploadOptions;
use super::verify;
use super::{Error, Result};

/// `64MiB`, `1G`, `500000`: bytes.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 64MiB)"))?;
    let f: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => return Err(format!("{s:?} is not a size (like 64MiB)")),
    };
    match n.checked_mul(f) {
        Some(0) | None => Err(format!("{s:?} is not a usable size")),
        Some(v) => Ok(v),
    }
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source: docker://HOST/REPO:TAG|@DIGEST, oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG|:@N] (FILE - is stdin).
    pub src: String,
    /// Destination: docker://HOST/REPO[:TAG] or oci:DIR:TAG.
    pub dst: String,
    /// Largest chunk sent (smaller if the registry advertises OCI-Chunk-Max-Length).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Blobs uploaded at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Mount blobs from this repository of the destination registry where it has them.
    #[arg(long, value_name = "REPO")]
    pub mount_from: Option<String>,
    /// Copy every platform of an index (and the index).
    #[arg(long)]
    pub all: bool,
    /// The platform to copy from an index (default: this machine's), OS/ARCH[/VARIANT].
    #[arg(long)]
    pub platform: Option<String>,
    /// No progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// Allow plain HTTP and unverified certificates.
    #[arg(long)]
    pub insecure: bool,
    /// The destination registry's USER:PASSWORD.
    #[arg(
        long,
        alias = "dest-creds",
        env = "EDGE_REGISTRY_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,
    /// The source registry's USER:PASSWORD.
    #[arg(long, env = "EDGE_REGISTRY_SRC_CREDS", hide_env_values = true)]
    pub src_creds: Option<String>,
    /// An auth file (docker's config.json or containers' auth.json) instead of the usual ones.
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// Where upload sessions are remembered so that a copy run again resumes them (default:
    /// $XDG_STATE_HOME/edge-registry/uploads, or ~/.local/state/edge-registry/uploads).
    #[arg(long, env = "EDGE_REGISTRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The registry: http://HOST:PORT or https://HOST.
    pub url: String,
    /// Repository to push into (default: verify/<random>).
    #[arg(long)]
    pub repo: Option<String>,
    /// USER:PASSWORD.
    #[arg(long, env = "EDGE_REGISTRY_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Only these areas (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Not these areas (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Write a report: FILE.json, or FILE.xml (JUnit).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Keep what was pushed (by default it is deleted where the registry allows).
    #[arg(long)]
    pub keep: bool,
    /// Allow unverified certificates.
    #[arg(long)]
    pub insecure: bool,
    /// Each request's time limit.
    #[arg(long, default_value = "30s", value_parser = crate::settings::parse_duration)]
    pub timeout: u64,
}

fn default_state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("edge-registry/uploads"))
}

fn creds(s: &Option<String>) -> Result<Option<Credentials>> {
    s.as_deref().map(Credentials::parse).transpose()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::from)
}

async fn run_copy(a: CopyArgs) -> Result<String> {
    let src = ImageRef::parse(&a.src)?;
    let dst = ImageRef::parse(&a.dst)?;
    let platform = a.platform.as_deref().map(Platform::parse).transpose()?;
    let base = Options {
        insecure: a.insecure,
        authfile: a.authfile.clone(),
        ..Options::default()
    };
    let opts = CopyOptions {
        src: Options {
            creds: creds(&a.src_creds)?,
            ..base.clone()
        },
        dst: Options {
            creds: creds(&a.creds)?,
            ..base
        },
        upload: UploadOptions {
            chunk_size: a.chunk_size,
            mount_from: a.mount_from,
            state_dir: a.state_dir.or_else(default_state_dir),
        },
        jobs: a.jobs,
        all: a.all,
        platform,
        quiet: a.quiet,
    };
    let s = copy(&src, &dst, &opts).await?;
    let sent = s.blobs - s.present - s.mounted;
    Ok(format!(
        "copied {} to {}: {} blobs ({sent} sent, {} already there, {} mounted), {} bytes sent, {} manifests",
        s.digest, a.dst, s.blobs, s.present, s.mounted, s.bytes_sent, s.manifests
    ))
}

/// `edge-registry copy`: the exit code.
pub fn copy_main(a: CopyArgs) -> i32 {
    let quiet = a.quiet;
    let result = runtime().and_then(|rt| rt.block_on(run_copy(a)));
    match result {
        Ok(line) => {
            if !quiet {
                println!("{line}");
            }
            0
        }
        Err(e) => {
            eprintln!("edge-registry copy: {}", super::one_line(&e.0));
            1
        }
    }
}

/// `edge-registry verify`: the exit code (1 when a MUST check failed or it could not run).
pub fn verify_main(a: VerifyArgs) -> i32 {
    let run = async {
        let host = Host::parse(&a.url)?;
        let opts = Options {
            creds: creds(&a.creds)?,
            insecure: a.insecure || host.tls == Some(false),
            timeout: Some(Duration::from_secs(a.timeout.max(1))),
            ..Options::default()
        };
        let cfg = verify::Config {
            repo: a.repo.clone(),
            only: a.only.clone(),
            skip: a.skip.clone(),
            keep: a.keep,
        };
        verify::run(&host, &opts, &cfg).await
    };
    let result = runtime().and_then(|rt| rt.block_on(run));
    match result {
        Ok(results) => {
            print!("{}", verify::report::table(&results));
            if let Some(p) = &a.report {
                if let Err(e) = verify::report::write(p, &a.url, &results) {
                    eprintln!("edge-registry verify: {}: {e}", p.display());
                    return 1;
                }
            }
            let (passed, failed, skipped) = verify::report::counts(&results);
            println!("verify: {passed} passed, {failed} failed, {skipped} skipped");
            i32::from(verify::report::must_failed(&results))
        }
        Err(e) => {
            eprintln!("edge-registry verify: {}", super::one_line(&e.0));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("95000000"), Ok(95_000_000));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        for bad in ["", "0", "x", "1.5M", "99999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
