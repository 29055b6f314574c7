//! Access control for the native server: users from an htpasswd file and grants from a grants
//! file, both read again when they change (credential rotation without a restart).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::auth::{Access, Accounts, Grants, Htpasswd};

/// The files the accounts come from.
#[derive(Debug, Clone, Default)]
pub struct AccountFiles {
    pub htpasswd: Option<PathBuf>,
    pub grants: Option<PathBuf>,
}

fn read(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn invalid(path: &Path, e: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

impl AccountFiles {
    /// Reads both files. Errors name the file and line, never a hash.
    pub fn load(&self) -> std::io::Result<Accounts> {
        let mut accounts = Accounts::default();
        if let Some(p) = &self.htpasswd {
            accounts.htpasswd = Htpasswd::parse(&read(p)?).map_err(|e| invalid(p, e))?;
        }
        if let Some(p) = &self.grants {
            accounts.grants = Grants::parse(&read(p)?).map_err(|e| invalid(p, e))?;
        }
        Ok(accounts)
    }

    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        [&self.htpasswd, &self.grants]
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(p.as_ref()?).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }

    /// Polls the files every `every` and swaps in new accounts when they change. A file that
    /// no longer parses is reported and the accounts in use are kept.
    pub async fn watch(self, access: Arc<Access>, every: Duration) {
        self.watch_reporting(access, every, Arc::default()).await
    }

    /// As [`AccountFiles::watch`], keeping `parsed` up to date: whether the files parsed when
    /// last read (for `/readyz`).
    pub async fn watch_reporting(
        self,
        access: Arc<Access>,
        every: Duration,
        parsed: Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::sync::atomic::Ordering;
        parsed.store(true, Ordering::Relaxed);
        let mut last = self.stamp();
        loop {
            tokio::time::sleep(every).await;
            let now = self.stamp();
            if now == last {
                continue;
            }
            last = now;
            match self.load() {
                Ok(accounts) => {
                    parsed.store(true, Ordering::Relaxed);
                    let users = accounts.htpasswd.len();
                    access.set_accounts(accounts);
                    tracing::info!(users, "accounts reloaded");
                }
                Err(e) => {
                    parsed.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "accounts not reloaded; keeping the old ones")
                }
            }
        }
    }
}

/// 32 random bytes: a token key for this process (tokens end when it does).
pub fn random_secret() -> Vec<u8> {
    let mut b = vec![0u8; 32];
    getrandom::fill(&mut b).expect("no entropy source");
    b
}

/// An htpasswd line for `user` with a bcrypt hash of `password` (`$2y$`, as `htpasswd -B`).
pub fn htpasswd_line(user: &str, password: &str, cost: u32) -> std::io::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let parts = bcrypt::hash_with_salt(password, cost, salt)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!(
        "{user}:{}",
        parts.format_for_version(bcrypt::Version::TwoY)
    ))
}
