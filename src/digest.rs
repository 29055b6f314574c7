//! Digests (`sha256:<hex>`, `sha512:<hex>`): parsing, formatting and incremental verification.
//!
//! [`Hasher`] hashes a body while it streams and can save its exact state between requests, so a
//! chunked upload never re-reads what it already received.

use sha2::digest::common::hazmat::SerializableState;
use sha2::Digest as _;

use crate::error::{Error, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// A content digest whose algorithm we support and whose encoded part is lowercase hex of the
/// right length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: Algorithm,
    hex: String,
}

/// Written and read as its text form, `algorithm:encoded`.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// Written and read as its name (`sha256`).
impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Algorithm::parse(&s).ok_or_else(|| serde::de::Error::custom("unsupported algorithm"))
    }
}

impl Digest {
    /// Parses `algorithm:encoded`, per the spec's digest grammar, restricted to the algorithms
    /// the spec registers (sha256, sha512), whose encoding is lowercase hex.
    pub fn parse(s: &str) -> Result<Digest, Error> {
        let invalid = || Error::new(ErrorCode::DigestInvalid).with_message("invalid digest");
        let (alg, hex) = s.split_once(':').ok_or_else(invalid)?;
        let alg = Algorithm::parse(alg).ok_or_else(|| {
            Error::new(ErrorCode::DigestInvalid).with_message("unsupported digest algorithm")
        })?;
        if hex.len() != alg.hex_len()
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(invalid());
        }
        Ok(Digest {
            alg,
            hex: hex.to_string(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `data`, computed at once (for small bodies such as manifests).
    pub fn of(alg: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(alg);
        h.update(data);
        h.finish()
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.alg.as_str(), self.hex)
    }
}

/// An incremental hash whose state can be saved and restored byte for byte.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Hasher {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { alg, hex }
    }

    /// The exact hash state (compression state, byte count and buffered tail), as bytes.
    pub fn save(&self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.serialize().to_vec(),
            Hasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// How many bytes this hasher has taken in.
    pub fn bytes_hashed(&self) -> u64 {
        hashed_len(self.algorithm(), &self.save()).unwrap_or(u64::MAX)
    }

    /// Restores a state written by [`Hasher::save`]. `None` when the bytes are not such a state,
    /// including one that claims to have hashed more than [`MAX_RESTORED_LEN`] bytes (sha2 takes
    /// any block count, and finishing from a huge one overflows its bit-length arithmetic).
    pub fn restore(alg: Algorithm, state: &[u8]) -> Option<Hasher> {
        let hasher = match alg {
            Algorithm::Sha256 => {
                let arr = state.try_into().ok()?;
                sha2::Sha256::deserialize(arr).ok().map(Hasher::Sha256)
            }
            Algorithm::Sha512 => {
                let arr = state.try_into().ok()?;
                sha2::Sha512::deserialize(arr).ok().map(Hasher::Sha512)
            }
        }?;
        (hashed_len(alg, state)? <= MAX_RESTORED_LEN).then_some(hasher)
    }
}

/// The most bytes a restored hash state may have hashed: far beyond any upload, and far enough
/// below SHA-256's limit (2^64 bits) that hashing on from such a state cannot overflow.
pub const MAX_RESTORED_LEN: u64 = 1 << 60;

/// How many bytes a saved state has hashed, read from sha2's serialisation: the compression
/// state (32 or 64 bytes), the count of compressed blocks (little-endian, a u64 for SHA-256 and
/// a u128 for SHA-512), then the buffered tail: its length (one byte) and its bytes.
fn hashed_len(alg: Algorithm, state: &[u8]) -> Option<u64> {
    let (count_at, count_len, block_len) = match alg {
        Algorithm::Sha256 => (32, 8, 64),
        Algorithm::Sha512 => (64, 16, 128),
    };
    let mut count = [0u8; 16];
    count[..count_len].copy_from_slice(state.get(count_at..count_at + count_len)?);
    let tail = *state.get(count_at + count_len)?;
    let len = u128::from_le_bytes(count)
        .checked_mul(block_len)?
        .checked_add(u128::from(tail))?;
    u64::try_from(len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_formats() {
        let d = Digest::parse(EMPTY256).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY256);
        assert_eq!(Digest::of(Algorithm::Sha256, b""), d);
        let d512 = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(Digest::parse(&d512.to_string()).unwrap(), d512);
        assert!(d512.hex().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../../../etc/passwd",
            ":e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let e = Digest::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::DigestInvalid, "{bad}");
        }
    }

    #[test]
    fn saved_state_resumes_exactly() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
            for split in [0, 1, 63, 64, 65, 127, 128, 129, 5000, 10_000] {
                let mut h = Hasher::new(alg);
                h.update(&data[..split]);
                let saved = h.save();
                let mut resumed = Hasher::restore(alg, &saved).unwrap();
                resumed.update(&data[split..]);
                assert_eq!(
                    resumed.finish(),
                    Digest::of(alg, &data),
                    "{alg:?} split {split}"
                );
            }
        }
        assert!(Hasher::restore(Algorithm::Sha256, b"short").is_none());
    }

    #[test]
    fn reads_the_length_of_a_saved_state() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for n in [0usize, 1, 63, 64, 65, 127, 128, 129, 1000] {
                let mut h = Hasher::new(alg);
                h.update(&vec![7; n]);
                assert_eq!(hashed_len(alg, &h.save()), Some(n as u64), "{alg:?} {n}");
                assert_eq!(h.bytes_hashed(), n as u64);
            }
        }
    }

    /// Found by fuzzing (fuzz target `hasher`): a saved state holding a huge block count
    /// restored, and finishing it panicked with "attempt to multiply with overflow" in sha2's
    /// `finalize_variable_core` (in builds with overflow checks; release builds wrapped silently
    /// to a wrong digest).
    #[test]
    fn refuses_a_state_with_an_impossible_length() {
        for (alg, count_at, count_len, block_len) in [
            (Algorithm::Sha256, 32, 8, 64),
            (Algorithm::Sha512, 64, 16, 128),
        ] {
            let mut state = Hasher::new(alg).save();
            let just_over = u128::from(MAX_RESTORED_LEN / block_len + 1);
            let most = u128::MAX >> (128 - 8 * count_len);
            for count in [just_over, u128::from(u64::MAX), most] {
                state[count_at..count_at + count_len]
                    .copy_from_slice(&count.to_le_bytes()[..count_len]);
                assert!(Hasher::restore(alg, &state).is_none(), "{alg:?} {count}");
            }
            // Right at the limit it restores, and hashing on and finishing works.
            let count = u128::from(MAX_RESTORED_LEN / block_len);
            state[count_at..count_at + count_len]
                .copy_from_slice(&count.to_le_bytes()[..count_len]);
            let mut h = Hasher::restore(alg, &state).expect("at the limit");
            h.update(&[1; 300]);
            let _ = h.finish();
        }
    }
}
