//! `Manifest::parse`. Input: a `Content-Type` on the first line (empty for none), then the body.
//! An accepted manifest has one of the four media types and the shape of its kind; parsing it
//! again with its own media type as the header gives the same result; its referrer descriptor
//! survives a JSON round trip.

#![no_main]

use edge_registry::digest::{Algorithm, Digest};
use edge_registry::manifest::{
    Descriptor, Kind, Manifest, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let content_type = content_type.filter(|c| !c.is_empty());
    let Ok(m) = Manifest::parse(content_type, body) else {
        return;
    };

    match m.kind {
        Kind::Image => {
            assert!(m.media_type == OCI_MANIFEST || m.media_type == DOCKER_MANIFEST);
            assert!(!m.blobs.is_empty(), "an image has a config");
            assert!(m.manifests.is_empty());
            assert!(m.artifact_type.is_some());
        }
        Kind::Index => {
            assert!(m.media_type == OCI_INDEX || m.media_type == DOCKER_LIST);
            assert!(m.blobs.is_empty());
        }
    }
    for d in m.blobs.iter().chain(&m.manifests).chain(&m.subject) {
        assert_eq!(Digest::parse(&d.to_string()).ok().as_ref(), Some(d));
    }

    let again = Manifest::parse(Some(&m.media_type), body).expect("its own media type");
    assert_eq!(again.media_type, m.media_type);
    assert_eq!(again.kind, m.kind);
    assert_eq!(again.blobs, m.blobs);
    assert_eq!(again.manifests, m.manifests);
    assert_eq!(again.subject, m.subject);
    assert_eq!(again.artifact_type, m.artifact_type);

    let digest = Digest::of(Algorithm::Sha256, body);
    let desc = m.referrer_descriptor(&digest, body.len() as u64);
    assert_eq!(desc.digest, digest.to_string());
    let json = serde_json::to_vec(&desc).unwrap();
    let back: Descriptor = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, desc);
});
