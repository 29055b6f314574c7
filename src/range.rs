//! `Range` (blob reads) and `Content-Range` (upload chunks) headers.

/// What a `Range` header asks of a body of a known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Serve the whole body (no header, or several ranges, which we may ignore).
    Full,
    /// Serve bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// Answer 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Parses a `Range` header against a body of `size` bytes. A malformed byte range gets
/// `Unsatisfiable` (as the Go reference registry answers); a unit other than `bytes` is ignored
/// (RFC 9110 §14.2), and so are several ranges: both get `Full`. Empty list elements are
/// skipped, as RFC 9110 §5.6.1 requires of a recipient (`bytes=0-9,` is the range `0-9`).
pub fn parse_range(header: &str, size: u64) -> ByteRange {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    let mut ranges = spec
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .peekable();
    let Some(one) = ranges.next() else {
        return ByteRange::Unsatisfiable;
    };
    if ranges.peek().is_some() {
        // Several ranges would need multipart/byteranges; RFC 9110 lets us send it all.
        return if parse_one(one).is_some() && ranges.all(|r| parse_one(r).is_some()) {
            ByteRange::Full
        } else {
            ByteRange::Unsatisfiable
        };
    }
    let Some((first, last)) = parse_one(one) else {
        return ByteRange::Unsatisfiable;
    };
    match (first, last) {
        (Some(start), end) => {
            if start >= size {
                return ByteRange::Unsatisfiable;
            }
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            ByteRange::Partial { start, end }
        }
        (None, Some(suffix)) => {
            if suffix == 0 || size == 0 {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Partial {
                start: size.saturating_sub(suffix),
                end: size - 1,
            }
        }
        (None, None) => ByteRange::Unsatisfiable,
    }
}

/// `a-b`, `a-` or `-n`; `None` when malformed.
fn parse_one(s: &str) -> Option<(Option<u64>, Option<u64>)> {
    let (a, b) = s.split_once('-')?;
    let num = |x: &str| -> Option<Option<u64>> {
        if x.is_empty() {
            Some(None)
        } else if x.bytes().all(|c| c.is_ascii_digit()) {
            x.parse().ok().map(Some)
        } else {
            None
        }
    };
    let (a, b) = (num(a)?, num(b)?);
    match (a, b) {
        (None, None) => None,
        (Some(a), Some(b)) if a > b => None,
        other => Some(other),
    }
}

/// Parses an upload chunk's `Content-Range`: the spec's `<start>-<end>` (inclusive), also
/// accepting the `bytes ` / `bytes=` prefixes and `/<total>` suffix some clients send.
pub fn parse_content_range(header: &str) -> Option<(u64, u64)> {
    let s = header.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split_once('/').map_or(s, |(r, _)| r);
    match parse_one(s.trim())? {
        // The chunk's length, end - start + 1, must fit in a u64.
        (Some(a), Some(b)) if b - a < u64::MAX => Some((a, b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ByteRange::*;

    #[test]
    fn ranges() {
        let cases = [
            ("bytes=0-0", 10, Partial { start: 0, end: 0 }),
            ("bytes=0-9", 10, Partial { start: 0, end: 9 }),
            ("bytes=2-100", 10, Partial { start: 2, end: 9 }),
            ("bytes=5-", 10, Partial { start: 5, end: 9 }),
            ("bytes=-3", 10, Partial { start: 7, end: 9 }),
            ("bytes=-30", 10, Partial { start: 0, end: 9 }),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-20", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=5-2", 10, Unsatisfiable),
            ("bytes=a-b", 10, Unsatisfiable),
            ("bytes=-", 10, Unsatisfiable),
            ("items=0-1", 10, Full),
            ("bytes=0-1,3-4", 10, Full),
            ("bytes=0-1,x", 10, Unsatisfiable),
            ("bytes=99999999999999999999999-", 10, Unsatisfiable),
            ("bytes=+1-2", 10, Unsatisfiable),
            ("bytes=", 10, Unsatisfiable),
            ("bytes=,", 10, Unsatisfiable),
        ];
        for (h, size, want) in cases {
            assert_eq!(parse_range(h, size), want, "{h} of {size}");
        }
    }

    /// Found by fuzzing (fuzz target `range`): an empty list element, which RFC 9110 §5.6.1 says
    /// a recipient must ignore, made a valid range unsatisfiable (`bytes=500-,` got a 416).
    #[test]
    fn empty_list_elements_are_ignored() {
        let cases = [
            (
                "bytes=500-,",
                1000,
                Partial {
                    start: 500,
                    end: 999,
                },
            ),
            ("bytes=, 0-9", 1000, Partial { start: 0, end: 9 }),
            (
                "bytes=,,-5,",
                1000,
                Partial {
                    start: 995,
                    end: 999,
                },
            ),
            ("bytes=0-1,,3-4", 1000, Full),
            ("bytes=0-1, ,x", 1000, Unsatisfiable),
            ("bytes=5-,", 5, Unsatisfiable),
        ];
        for (h, size, want) in cases {
            assert_eq!(parse_range(h, size), want, "{h} of {size}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes=100-199"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        for bad in [
            "",
            "-",
            "5-",
            "-5",
            "9-1",
            "a-b",
            "1-2-3",
            "0x1-2",
            " - ",
            "0-18446744073709551615",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
