//! The remembered-login key and the failed-login limiter. Any two distinct (user, password)
//! pairs get distinct keys, and a remembered pair is never taken for another. A script of login
//! attempts (user, address, time, right or wrong) never gets more wrong-password checks in a
//! window than the limits allow, per (user, address) and per address.

#![no_main]

use std::collections::HashMap;

use edge_registry::auth::throttle::{ADDRESS_FACTOR, FAILURE_WINDOW};
use edge_registry::auth::{verified_key, Throttle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two pairs from the input: split at the first two 0xff bytes (NULs and all stay in).
    let parts: Vec<&[u8]> = data.splitn(4, |b| *b == 0xff).collect();
    if parts.len() == 4 {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (a, b) = ((s(parts[0]), s(parts[1])), (s(parts[2]), s(parts[3])));
        if a != b {
            assert_ne!(verified_key(&a.0, &a.1), verified_key(&b.0, &b.1), "{a:?} {b:?}");
            let t = Throttle::new(3);
            t.remember(&a.0, &a.1, 0);
            assert!(t.remembered(&a.0, &a.1, 1));
            assert!(!t.remembered(&b.0, &b.1, 1), "{a:?} taken for {b:?}");
        }
    }

    // The input as a script: each 3 bytes are (user, address, step), the step's low bit
    // saying whether the password was right and the rest advancing the clock.
    let max = 1 + u32::from(data.first().copied().unwrap_or(0) % 4);
    let t = Throttle::new(max);
    let mut now = 0u64;
    // Wrong-password checks per (user, address) and per address, in the current window of
    // each (opened by a reservation once the last one is over).
    let mut pairs: HashMap<(u8, u8), (u64, u32)> = HashMap::new();
    let mut addresses: HashMap<u8, (u64, u32)> = HashMap::new();
    for op in data.chunks_exact(3).skip(1) {
        let (user, addr, step) = (op[0] % 4, op[1] % 4, op[2]);
        now += u64::from(step >> 1) % 20;
        let right = step & 1 == 1;
        let Ok(r) = t.reserve(&user.to_string(), &addr.to_string(), now) else {
            continue;
        };
        // A reservation opens a window where the last one is over, right or wrong.
        let windows = [
            (pairs.entry((user, addr)).or_insert((now, 0)), max),
            (addresses.entry(addr).or_insert((now, 0)), max * ADDRESS_FACTOR),
        ];
        for (entry, limit) in windows {
            if now >= entry.0 + FAILURE_WINDOW {
                *entry = (now, 0);
            }
            if !right {
                entry.1 += 1;
                assert!(entry.1 <= limit, "{} failures past a limit of {limit}", entry.1);
            }
        }
        if right {
            t.succeeded(r);
        }
    }
});
