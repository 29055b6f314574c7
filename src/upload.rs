//! The upload state machine's persistent part: one session's repository, how many bytes it
//! holds, and the exact hash state of those bytes.
//!
//! A session moves `open -> (chunks appended)* -> completed | cancelled`. Its state is written
//! only after the bytes of a chunk are durable, so a crash at any point leaves the state
//! describing a prefix of the data that really is stored (anything past it is discarded on
//! the next append), and resuming never re-reads what was already received.

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Hasher};
use crate::names::Name;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadState {
    /// The repository the session was opened in.
    pub repo: String,
    /// Bytes received and stored.
    pub offset: u64,
    /// The hash algorithm of `hash`.
    pub alg: Algorithm,
    /// The hasher's saved state, hex-encoded.
    pub hash: String,
    /// When the session was opened, in seconds since the Unix epoch.
    pub created: u64,
    /// The storage backend's own state for this upload, if it keeps any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// When a request last added to the session (0: never since it was opened).
    #[serde(default)]
    pub updated: u64,
    /// A request has claimed the session to complete it. Only one request can claim it; a
    /// session left claimed (by a crash) is unknown to clients and waits for expiry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completing: bool,
    /// The version of the stored state this was read from (not stored): saving it again
    /// succeeds only if nobody saved it in between.
    #[serde(skip)]
    pub version: Option<String>,
}

impl UploadState {
    pub fn new(repo: &Name, alg: Algorithm, now: u64) -> Self {
        UploadState {
            repo: repo.as_str().to_string(),
            offset: 0,
            alg,
            hash: hex::encode(Hasher::new(alg).save()),
            created: now,
            backend: None,
            updated: now,
            completing: false,
            version: None,
        }
    }

    /// Whether the session has seen no request for `ttl` seconds at `now`.
    pub fn is_stale(&self, now: u64, ttl: u64) -> bool {
        now >= self.created.max(self.updated).saturating_add(ttl)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The hasher, restored to the state after `offset` bytes.
    pub fn hasher(&self) -> Option<Hasher> {
        Hasher::restore(self.alg, &hex::decode(&self.hash).ok()?)
    }

    pub fn set_hasher(&mut self, h: &Hasher) {
        self.alg = h.algorithm();
        self.hash = hex::encode(h.save());
    }

    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn decode(raw: &[u8]) -> Option<Self> {
        serde_json::from_slice(raw).ok()
    }
}

/// A fresh session id: a random UUID (version 4) in its usual text form.
pub fn new_upload_id() -> String {
    let mut b = [0u8; 16];
    // getrandom only fails when the platform has no entropy source at all.
    getrandom::fill(&mut b).expect("no entropy source");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Whether `id` has the form [`new_upload_id`] gives; anything else is unknown (and never
/// reaches storage, so it cannot name a path).
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let a = new_upload_id();
        assert!(valid_upload_id(&a), "{a}");
        assert_ne!(a, new_upload_id());
        for bad in [
            "",
            "../../etc",
            "0123",
            &a.to_uppercase(),
            &a.replace('-', "_"),
        ] {
            assert!(!valid_upload_id(bad), "{bad}");
        }
    }

    #[test]
    fn state_round_trips_with_hash() {
        let name = Name::parse("a/b").unwrap();
        let mut s = UploadState::new(&name, Algorithm::Sha256, 7);
        let mut h = s.hasher().unwrap();
        h.update(b"hello ");
        s.set_hasher(&h);
        s.offset = 6;
        let back = UploadState::decode(&s.encode().unwrap()).unwrap();
        let mut h2 = back.hasher().unwrap();
        h2.update(b"world");
        assert_eq!(
            h2.finish(),
            crate::digest::Digest::of(Algorithm::Sha256, b"hello world")
        );
        assert!(UploadState::decode(b"{}").is_none());
    }
}
