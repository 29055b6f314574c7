//! What access control remembers between requests, bounded whatever the traffic: failed logins
//! (to slow down password guessing) and recently verified credentials (bcrypt is slow on
//! purpose, and clients using Basic credentials send them with every request).
//!
//! Failures are counted per client address and per (user, address): a user's own limit stops
//! guessing at one account, and the address's larger limit stops spraying many accounts, while
//! one attacker cannot lock a user out from everywhere (no count is per user alone). A login
//! attempt reserves its place in both counts *before* the password is checked, atomically, so
//! concurrent attempts can never get more checks than the limit; a right password gives the
//! reservation back.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use sha2::Digest as _;

/// Seconds a window of failure counting lasts.
pub const FAILURE_WINDOW: u64 = 60;
/// How many failures an address may have per window, as a multiple of a user's limit there.
pub const ADDRESS_FACTOR: u32 = 5;
/// Entries each table holds at most; past that the oldest are forgotten first.
pub const MAX_TRACKED: usize = 10_000;
/// Seconds verified credentials are remembered.
pub const VERIFIED_TTL: u64 = 300;

/// A table of at most [`MAX_TRACKED`] entries, each with the time it stops mattering.
struct Bounded<K, V> {
    map: HashMap<K, (V, u64)>,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new() -> Self {
        Bounded {
            map: HashMap::new(),
        }
    }

    /// Makes room for one more entry at `now`: drops what has expired and, if the table is
    /// still full, the entry that expires first.
    fn make_room(&mut self, now: u64) {
        if self.map.len() < MAX_TRACKED {
            return;
        }
        self.map.retain(|_, (_, until)| now < *until);
        while self.map.len() >= MAX_TRACKED {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.map.remove(&oldest);
        }
    }

    fn live(&self, key: &K, now: u64) -> Option<&V> {
        self.map
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(v, _)| v)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Failure counts: per address, and per (user, address).
struct Counts {
    addresses: Bounded<String, u32>,
    users: Bounded<(String, String), u32>,
}

/// A login attempt's place in the failure counts. [`Throttle::succeeded`] gives it back.
#[must_use]
pub struct Reservation {
    address: String,
    user: String,
}

/// Why an attempt may not be made now: seconds until it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

pub struct Throttle {
    max_failures: u32,
    counts: Mutex<Counts>,
    /// A key for each recently verified (user, password), with the user and when it expires.
    verified: Mutex<Bounded<[u8; 32], String>>,
}

/// The key a verified (user, password) is remembered under: both parts length-prefixed, so no
/// two distinct pairs can share it (`alice` + `a\0b` and `alice\0a` + `b` do not).
pub fn verified_key(user: &str, password: &str) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for part in [user, password] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

impl Throttle {
    pub fn new(max_failures: u32) -> Throttle {
        Throttle {
            max_failures: max_failures.max(1),
            counts: Mutex::new(Counts {
                addresses: Bounded::new(),
                users: Bounded::new(),
            }),
            verified: Mutex::new(Bounded::new()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Every update is one map operation: a poisoned lock is still consistent.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a login attempt by `user` from `address` at `now` (seconds): counts it as a
    /// failure until [`Throttle::succeeded`] says otherwise. Refused when either count is at
    /// its limit for the current window.
    pub fn reserve(&self, user: &str, address: &str, now: u64) -> Result<Reservation, RetryAfter> {
        let mut c = self.counts();
        let user_key = (user.to_string(), address.to_string());
        let limits = [
            (
                c.addresses.map.get(address).copied(),
                self.max_failures.saturating_mul(ADDRESS_FACTOR),
            ),
            (c.users.map.get(&user_key).copied(), self.max_failures),
        ];
        for (entry, limit) in limits {
            if let Some((count, until)) = entry {
                if now < until && count >= limit {
                    return Err(RetryAfter(until - now));
                }
            }
        }
        bump(&mut c.addresses, address.to_string(), now);
        bump(&mut c.users, user_key, now);
        Ok(Reservation {
            address: address.to_string(),
            user: user.to_string(),
        })
    }

    /// The attempt was a right password: it does not count as a failure.
    pub fn succeeded(&self, r: Reservation) {
        let mut c = self.counts();
        if let Some((n, _)) = c.addresses.map.get_mut(&r.address) {
            *n = n.saturating_sub(1);
        }
        if let Some((n, _)) = c.users.map.get_mut(&(r.user, r.address)) {
            *n = n.saturating_sub(1);
        }
    }

    /// Whether `user` with `password` was verified within [`VERIFIED_TTL`] seconds.
    pub fn remembered(&self, user: &str, password: &str, now: u64) -> bool {
        let v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        v.live(&verified_key(user, password), now)
            .is_some_and(|u| u == user)
    }

    pub fn remember(&self, user: &str, password: &str, now: u64) {
        let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        v.make_room(now);
        v.map.insert(
            verified_key(user, password),
            (user.to_string(), now + VERIFIED_TTL),
        );
    }

    /// Forgets every verified credential (the accounts changed).
    pub fn forget_verified(&self) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .clear();
    }

    /// Entries held: (addresses, user-address pairs, verified credentials).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let c = self.counts();
        let v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        (c.addresses.len(), c.users.len(), v.len())
    }
}

/// Counts one more failure under `key`, in a fresh window if the last one is over.
fn bump<K: Hash + Eq + Clone>(t: &mut Bounded<K, u32>, key: K, now: u64) {
    if t.map.get(&key).is_none_or(|(_, until)| now >= *until) {
        t.make_room(now);
        t.map.insert(key, (1, now + FAILURE_WINDOW));
    } else if let Some((n, _)) = t.map.get_mut(&key) {
        *n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_credentials_never_share_a_remembered_entry() {
        assert_ne!(verified_key("alice", "a\0b"), verified_key("alice\0a", "b"));
        assert_ne!(verified_key("ab", "c"), verified_key("a", "bc"));
        let t = Throttle::new(3);
        t.remember("alice", "a\0b", 0);
        assert!(t.remembered("alice", "a\0b", 1));
        assert!(!t.remembered("alice\0a", "b", 1));
        assert!(!t.remembered("alice", "a\0b", VERIFIED_TTL), "expired");
    }

    #[test]
    fn reservations_hold_the_limit_and_successes_give_them_back() {
        let t = Throttle::new(3);
        for _ in 0..3 {
            let _ = t.reserve("u", "a", 10).unwrap();
        }
        assert_eq!(t.reserve("u", "a", 10).err(), Some(RetryAfter(60)));
        // Another user from the same address, and the same user from elsewhere, still may.
        let r = t.reserve("v", "a", 10).unwrap();
        t.succeeded(r);
        let _ = t.reserve("u", "b", 10).unwrap();
        // A success refunds its reservation.
        let t = Throttle::new(2);
        for _ in 0..10 {
            let r = t.reserve("u", "a", 0).unwrap();
            t.succeeded(r);
        }
        // The window ends.
        for _ in 0..2 {
            let _ = t.reserve("u", "a", 0).unwrap();
        }
        assert!(t.reserve("u", "a", 59).is_err());
        assert!(t.reserve("u", "a", 60).is_ok());
    }

    #[test]
    fn an_address_spraying_users_hits_its_own_limit() {
        let t = Throttle::new(2);
        let mut allowed = 0;
        for i in 0..100 {
            if t.reserve(&format!("user{i}"), "a", 0).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 2 * ADDRESS_FACTOR);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let t = std::sync::Arc::new(Throttle::new(3));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || t.reserve("u", "a", 0).is_ok())
            })
            .collect();
        let ok = handles
            .into_iter()
            .filter(|_| true)
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(ok, 3);
    }

    #[test]
    fn tables_stay_bounded() {
        let t = Throttle::new(1);
        for i in 0..(MAX_TRACKED + 500) {
            let _ = t.reserve("u", &format!("10.0.{}.{}", i / 256, i % 256), 5);
            t.remember(&format!("user{i}"), "pw", 5);
        }
        let (a, u, v) = t.sizes();
        assert!(
            a <= MAX_TRACKED && u <= MAX_TRACKED && v <= MAX_TRACKED,
            "{a} {u} {v}"
        );
    }
}
