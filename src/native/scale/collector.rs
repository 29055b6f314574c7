//! One collector at a time across instances: a session-level advisory lock in PostgreSQL,
//! taken with `pg_try_advisory_lock` on a connection of the collector's own, and held for the
//! whole run. Every statement of the run goes through that same connection (the store the
//! lock hands out is pinned to it), so a collector whose lock is gone can change nothing:
//! the lock lives exactly as long as the session, and when the session ends (the run is over,
//! the instance is killed or loses PostgreSQL, PostgreSQL restarts or terminates it) so do
//! both the lock and the collector's ability to write. PostgreSQL releases the lock of a
//! killed instance as soon as its socket closes; no lease has to expire.

use std::sync::Arc;
use std::time::Duration;

use super::pg::{bounded, Dedicated, Pinned};
use super::ScaleStorage;
use crate::storage::StorageResult;

/// The advisory lock key of the collector ("edgereg" 2; migrations use 1).
pub const COLLECTOR_LOCK: i64 = 0x6564_6765_7265_6702;

/// How often a collector that waits for the lock tries again.
const WAIT_POLL: Duration = Duration::from_secs(1);

/// The collector's lock, held while this lives; [`CollectorLock::storage`] is the store to
/// collect through.
pub struct CollectorLock {
    store: ScaleStorage,
    conn: Pinned,
}

impl CollectorLock {
    /// The store whose every statement runs on the session holding the lock.
    pub fn storage(&self) -> &ScaleStorage {
        &self.store
    }

    /// Releases the lock (by closing its connection).
    pub async fn release(self) {
        self.conn.lock().await.take();
    }
}

impl Drop for CollectorLock {
    fn drop(&mut self) {
        // Closing the connection releases the lock. If a statement still holds it (a run
        // dropped mid-way), the connection closes when the last user lets go of it.
        if let Ok(mut conn) = self.conn.try_lock() {
            conn.take();
        }
    }
}

impl ScaleStorage {
    /// Takes the collector's lock unless another instance (or process) holds it.
    pub async fn try_lock_collector(&self) -> StorageResult<Option<CollectorLock>> {
        // Dedicated first: however this ends from here on (an error, the future dropped),
        // the connection is closed rather than pooled, so no lock leaks into a pool.
        let conn: Pinned = Arc::new(tokio::sync::Mutex::new(Some(Dedicated::new(
            self.db.lock_client().await?,
        ))));
        let store = ScaleStorage {
            db: self.db.pinned_to(conn.clone()),
            s3: self.s3.clone(),
        };
        let got: bool = {
            let c = store.db.client().await?;
            store.db.count();
            bounded(c.query_one("SELECT pg_try_advisory_lock($1)", &[&COLLECTOR_LOCK]))
                .await?
                .get(0)
        };
        if !got {
            // Nothing is held on it: back to the pool.
            if let Some(d) = conn.lock().await.take() {
                d.give_back();
            }
            return Ok(None);
        }
        Ok(Some(CollectorLock { store, conn }))
    }

    /// Waits for the collector's lock.
    pub async fn lock_collector(&self) -> StorageResult<CollectorLock> {
        let mut told = false;
        loop {
            if let Some(lock) = self.try_lock_collector().await? {
                return Ok(lock);
            }
            if !told {
                tracing::info!("waiting for the collection under way on another instance");
                told = true;
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}
