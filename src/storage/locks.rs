//! Locks per id (an upload, a session, a key) for the stores that serialise work on one of
//! them within a process: the in-memory and the filesystem stores. An id's entry exists only
//! while someone holds or waits for its lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A set of per-id locks.
#[derive(Clone, Default)]
pub struct Locks(Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>);

/// A held lock. Dropping it releases the lock and, when nobody else holds or waits for it,
/// removes its entry.
pub struct Held {
    guard: Option<OwnedMutexGuard<()>>,
    locks: Locks,
    id: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.id);
        }
    }
}

impl Locks {
    /// Waits for the lock of `id`.
    pub async fn lock(&self, id: &str) -> Held {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id.to_string()).or_default().clone()
        };
        Held {
            guard: Some(lock.lock_owned().await),
            locks: self.clone(),
            id: id.to_string(),
        }
    }

    /// How many ids have an entry (held or waited for).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_entries_go_when_free() {
        futures_executor_block(async {
            let locks = Locks::default();
            let a = locks.lock("x").await;
            let b = locks.lock("y").await;
            assert_eq!(locks.len(), 2);
            drop(a);
            assert_eq!(locks.len(), 1);
            drop(b);
            assert!(locks.is_empty());
        });
    }

    fn futures_executor_block(f: impl std::future::Future<Output = ()>) {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        while f.as_mut().poll(&mut cx) == Poll::Pending {}
    }
}
