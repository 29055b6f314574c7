//! The native adapter: filesystem storage and a hyper + tokio server. It only converts
//! requests, responses, streams and settings, and provides the platform (the clock, a pool for
//! password checks); all registry logic is in the core.

pub mod access;
pub mod fs;
pub mod server;

use std::sync::Arc;

use tokio::sync::Semaphore;

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

/// Password checks (bcrypt) on tokio's blocking threads, `running` at a time, with at most
/// `queued` more waiting; past that a login gets 429 at once. The threads that serve requests
/// never run bcrypt, so a login flood cannot slow pulls down.
pub struct BlockingPasswordCheck {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
}

impl BlockingPasswordCheck {
    pub fn new(running: usize, queued: usize) -> Self {
        let running = running.max(1);
        BlockingPasswordCheck {
            running: Arc::new(Semaphore::new(running)),
            admitted: Arc::new(Semaphore::new(running + queued)),
        }
    }

    /// One check per core at a time, and 32 per core waiting.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, 32 * cores)
    }
}

#[async_trait::async_trait]
impl PasswordCheck for BlockingPasswordCheck {
    async fn run(&self, check: Check) -> Result<bool, Busy> {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(check).await.map_err(|_| Busy)
    }
}
