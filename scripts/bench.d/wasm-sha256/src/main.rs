//! Native sha256 speed of the same crate (SHA-NI when the CPU has it): hashes a 16 MiB buffer
//! until `MIB` MiB (argument, default 1024) are done; prints MB/s (10^6 bytes).

use sha2::{Digest, Sha256};
use std::time::Instant;

fn main() {
    let total_mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let buf: Vec<u8> = (0..16usize << 20).map(|i| (i * 2654435761) as u8).collect();
    let rounds = total_mib.div_ceil(16).max(1);
    let t = Instant::now();
    let mut last = [0u8; 32];
    for _ in 0..rounds {
        last.copy_from_slice(&Sha256::digest(&buf));
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(last);
    println!("{:.0}", (rounds * buf.len()) as f64 / secs / 1e6);
}
