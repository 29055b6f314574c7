//! `parse_range` (a blob read's `Range` against a body size) and `parse_content_range` (an upload
//! chunk's `Content-Range`). Input: the header, optionally followed by a line with a body size
//! in decimal; it is also tried against a few fixed sizes. A partial range must lie within the
//! body, empty list elements must change nothing, and a chunk's range must be ordered with a
//! length that fits in a u64.

#![no_main]

use edge_registry::range::{parse_content_range, parse_range, ByteRange};
use libfuzzer_sys::fuzz_target;

const SIZES: [u64; 8] = [0, 1, 2, 10, 1000, 1 << 32, u64::MAX - 1, u64::MAX];

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (header, size) = match s.split_once('\n') {
        Some((h, n)) => (h, n.trim().parse::<u64>().ok()),
        None => (s, None),
    };

    for size in SIZES.into_iter().chain(size) {
        match parse_range(header, size) {
            ByteRange::Partial { start, end } => {
                assert!(start <= end, "{header:?} of {size}: {start}-{end}");
                assert!(end < size, "{header:?} of {size}: {start}-{end}");
            }
            ByteRange::Full => {}
            ByteRange::Unsatisfiable => {
                assert!(
                    header.trim().starts_with("bytes="),
                    "{header:?}: another unit is ignored, not refused"
                );
            }
        }
        match header.trim().strip_prefix("bytes=") {
            // Empty list elements are ignored (RFC 9110 §5.6.1).
            Some(spec) => assert_eq!(
                parse_range(&format!("bytes=, {spec} ,"), size),
                parse_range(header, size),
                "{header:?} of {size}"
            ),
            None => assert_eq!(parse_range(header, size), ByteRange::Full),
        }
    }

    if let Some((start, end)) = parse_content_range(header) {
        assert!(start <= end, "{header:?}: {start}-{end}");
        assert!((end - start).checked_add(1).is_some(), "{header:?}");
        // The canonical forms of the same range parse to it.
        for canonical in [
            format!("{start}-{end}"),
            format!("bytes={start}-{end}"),
            format!("bytes {start}-{end}/*"),
        ] {
            assert_eq!(parse_content_range(&canonical), Some((start, end)));
        }
    }
});
