//! The native adapter: filesystem storage and a hyper + tokio server. It only converts
//! requests, responses, streams and settings, and provides the platform (the clock, a pool for
//! password checks); all registry logic is in the core.

pub mod access;
pub mod fs;
pub mod gc;
pub mod metrics;
pub mod mirror;
pub mod notify;
pub mod ops;
pub mod scale;
pub mod server;
pub mod sharded;
pub mod spool;

use std::sync::Arc;

use crate::auth::{Busy, Check, PasswordCheck};
use crate::clock::Clock;

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Password checks (bcrypt) on threads of their own, `threads` at a time, with at most
/// `queued` more waiting; past that a login gets 429 at once. The threads run at the lowest
/// priority (nice 19), so a flood of logins takes only the CPU that requests leave over: the
/// threads that serve requests never run bcrypt, and never wait for it.
pub struct BlockingPasswordCheck {
    jobs: std::sync::mpsc::SyncSender<(Check, tokio::sync::oneshot::Sender<bool>)>,
}

impl BlockingPasswordCheck {
    pub fn new(threads: usize, queued: usize) -> Self {
        let (jobs, rx) =
            std::sync::mpsc::sync_channel::<(Check, tokio::sync::oneshot::Sender<bool>)>(queued);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || {
                    lowest_priority();
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((check, reply)) = job else { return };
                        let _ = reply.send(check());
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start a password-check thread");
            }
        }
        BlockingPasswordCheck { jobs }
    }

    /// One thread per core, and 32 checks per core waiting.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, 32 * cores)
    }
}

/// Makes the calling thread the last to get the CPU (Linux: nice 19 for this thread alone).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

#[async_trait::async_trait]
impl PasswordCheck for BlockingPasswordCheck {
    async fn run(&self, check: Check) -> Result<bool, Busy> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.try_send((check, reply)).map_err(|_| Busy)?;
        answer.await.map_err(|_| Busy)
    }
}
