//! `Hasher::restore` (the saved hash state of an upload session) and `UploadState::decode` (the
//! session record that holds it). A restored state must save back to the same bytes, and hashing
//! on from it, finishing included, must never panic; a state saved at any point must resume to
//! the digest of the whole.

#![no_main]

use edge_registry::digest::{Algorithm, Digest, Hasher, MAX_RESTORED_LEN};
use edge_registry::upload::UploadState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        // The input as a saved state.
        if let Some(h) = Hasher::restore(alg, data) {
            assert_eq!(h.algorithm(), alg);
            assert_eq!(h.save(), data);
            let (a, b) = data.split_at(data.len() / 2);
            let mut once = h.clone();
            once.update(a);
            once.update(b);
            let mut twice = h;
            twice.update(a);
            // A state restores again unless the bytes hashed on took it past the limit.
            match Hasher::restore(alg, &twice.save()) {
                Some(mut twice) => {
                    twice.update(b);
                    assert_eq!(once.finish(), twice.finish());
                }
                None => assert!(twice.bytes_hashed() > MAX_RESTORED_LEN),
            }
        }

        // The input as data, saved and restored at a split point it picks.
        let split = data
            .first()
            .map_or(0, |&b| b as usize * 7 % (data.len() + 1));
        let mut h = Hasher::new(alg);
        h.update(&data[..split]);
        let mut resumed = Hasher::restore(alg, &h.save()).expect("a saved state restores");
        resumed.update(&data[split..]);
        assert_eq!(resumed.finish(), Digest::of(alg, data));
    }

    // The input as an upload session record.
    if let Some(state) = UploadState::decode(data) {
        let encoded = state.encode().expect("a state serialises");
        let again = UploadState::decode(&encoded).expect("an encoded state decodes");
        assert_eq!(again.encode().expect("a state serialises"), encoded);
        if let Some(mut h) = state.hasher() {
            assert_eq!(h.algorithm(), state.algorithm());
            h.update(b"more");
            let _ = h.finish();
        }
    }
});
