//! `Name::parse`, `Tag::parse`, `Reference::parse` and `Digest::parse`, all on the same string:
//! none may panic, and whatever parses re-serialises to exactly its input and keeps the grammar's
//! promises (which the storage key layout relies on).

#![no_main]

use edge_registry::digest::{Algorithm, Digest};
use edge_registry::names::{Name, Reference, Tag, MAX_NAME_LEN};
use edge_registry::repo::keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    let digest = Digest::parse(s);
    if let Ok(d) = &digest {
        assert_eq!(d.to_string(), s);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
        assert!(d
            .hex()
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert_eq!(
            Algorithm::parse(d.algorithm().as_str()),
            Some(d.algorithm())
        );
    }

    if let Ok(n) = Name::parse(s) {
        assert_eq!(n.as_str(), s);
        assert_eq!(n.to_string(), s);
        assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN);
        for c in s.split('/') {
            // What makes names safe as storage path segments.
            assert!(!c.is_empty(), "{s:?}");
            assert!(c != "." && c != "..", "{s:?}");
            assert!(!c.starts_with(['_', '.', '-']), "{s:?}");
        }
        assert!(s
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/')));
        assert_eq!(Name::from_components(s.split('/')).unwrap(), n);
        // The catalog stores names with `/` as `:`; that must come back as the same name.
        let entry = keys::catalog_entry(&n);
        let entry = entry.strip_prefix("_catalog/").unwrap();
        assert!(!entry.contains('/'));
        assert_eq!(keys::catalog_name(entry), s);
    } else {
        assert!(Name::from_components(s.split('/')).is_err(), "{s:?}");
    }

    let tag = Tag::parse(s);
    if let Ok(t) = &tag {
        assert_eq!(t.as_str(), s);
        assert!(!s.is_empty() && s.len() <= 128);
        assert!(s.is_ascii() && !s.contains([':', '/']));
        assert!(!s.starts_with(['.', '-']));
    }

    match Reference::parse(s) {
        Ok(r) => {
            assert_eq!(r.to_string(), s);
            match r {
                Reference::Tag(t) => assert_eq!(Some(&t), tag.as_ref().ok()),
                Reference::Digest(d) => assert_eq!(Some(&d), digest.as_ref().ok()),
            }
        }
        Err(_) => assert!(tag.is_err() && digest.is_err(), "{s:?}"),
    }
});
