//! sha256 over a buffer in linear memory, exported for JavaScript without wasm-bindgen.

use sha2::{Digest, Sha256};

/// Allocates `len` bytes that the caller fills and passes to [`sha256`]; never freed.
#[no_mangle]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    let mut v = vec![0u8; len];
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// Hashes `len` bytes at `data` `rounds` times (each a full sha256) and writes the last digest
/// (32 bytes) at `out`.
///
/// # Safety
/// `data` must point at `len` readable bytes and `out` at 32 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sha256(data: *const u8, len: usize, rounds: u32, out: *mut u8) {
    let bytes = std::slice::from_raw_parts(data, len);
    let mut d = Sha256::digest(b"");
    for _ in 0..rounds {
        let mut h = Sha256::new();
        h.update(bytes);
        d = h.finalize();
    }
    std::ptr::copy_nonoverlapping(d.as_ptr(), out, 32);
}
