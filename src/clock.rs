//! Time comes in from the platform: the core has no clock of its own (there is none in
//! `wasm32-unknown-unknown`, and tests want to set it).

use crate::body::MaybeSendSync;

/// The current time, as the adapter knows it.
pub trait Clock: MaybeSendSync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Whole seconds since the Unix epoch.
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// A clock that says what it is told: the default (time 0), and for tests.
#[derive(Debug, Default)]
pub struct FixedClock(pub std::sync::atomic::AtomicU64);

impl FixedClock {
    pub fn at_ms(ms: u64) -> FixedClock {
        FixedClock(ms.into())
    }

    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}
