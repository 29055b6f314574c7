//! What the tests push: seeded pseudo-random bytes (whole, as a range, or as a stream made
//! piece by piece), digests, media types and the manifest builders.

use std::time::Duration;

use bytes::Bytes;
use edge_registry::body::{BoxError, ByteStream};
use edge_registry::digest::{Algorithm, Digest, Hasher};
use serde_json::{json, Value};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub const MIB: usize = 1024 * 1024;

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, data).to_string()
}

/// `sha512:<hex>` of `data`.
pub fn sha512(data: &[u8]) -> String {
    Digest::of(Algorithm::Sha512, data).to_string()
}

// ---- seeded bytes -------------------------------------------------------------------------

/// The 8-byte word `i` of the content of `seed` (splitmix64 of the pair): any part of the
/// content can be made on its own, without what comes before it.
fn word(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes `start..start + len` of the content of `seed`: deterministic, incompressible-looking.
pub fn range(seed: u64, start: u64, len: usize) -> Vec<u8> {
    let skip = (start % 8) as usize;
    let first = start / 8;
    let mut out = vec![0u8; (skip + len).div_ceil(8) * 8];
    for (i, w) in out.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&word(seed, first + i as u64).to_le_bytes());
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

/// The first `len` bytes of the content of `seed`.
pub fn bytes(seed: u64, len: usize) -> Bytes {
    Bytes::from(range(seed, 0, len))
}

/// A random seed: content no registry (a shared one included) holds yet.
pub fn fresh_seed() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// `len` bytes of content different on every run.
pub fn fresh(len: usize) -> Bytes {
    bytes(fresh_seed(), len)
}

/// How much of a [`stream`] is made at a time.
const PIECE: u64 = MIB as u64;

/// Bytes `start..start + len` of the content of `seed` as a stream, made a piece at a time
/// (never held whole).
pub fn stream(seed: u64, start: u64, len: u64) -> ByteStream {
    Box::pin(futures_util::stream::iter((0..len.div_ceil(PIECE)).map(
        move |i| {
            let at = i * PIECE;
            let this = PIECE.min(len - at) as usize;
            Ok::<_, BoxError>(Bytes::from(range(seed, start + at, this)))
        },
    )))
}

/// The sha256 digest of the first `len` bytes of the content of `seed`, made a piece at a time.
pub fn digest(seed: u64, len: u64) -> String {
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut at = 0;
    while at < len {
        let this = PIECE.min(len - at);
        h.update(&range(seed, at, this as usize));
        at += this;
    }
    h.finish().to_string()
}

/// A body that trickles `data` out `piece` bytes at a time with `pause` between pieces (so
/// that a kill lands in the middle of it).
pub fn trickle(data: Bytes, piece: usize, pause: Duration) -> ByteStream {
    Box::pin(futures_util::stream::unfold(0usize, move |at| {
        let data = data.clone();
        async move {
            if at >= data.len() {
                return None;
            }
            if at > 0 {
                tokio::time::sleep(pause).await;
            }
            let end = (at + piece).min(data.len());
            Some((Ok::<_, BoxError>(data.slice(at..end)), end))
        }
    }))
}

// ---- manifests ----------------------------------------------------------------------------

/// `{"mediaType","digest","size"}`.
pub fn descriptor_of(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// The descriptor of `data`.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    descriptor_of(media_type, &sha256(data), data.len())
}

/// An OCI image manifest of a config and layers, given as descriptors.
pub fn image_manifest(config: Value, layers: Vec<Value>) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    })
}

/// An OCI image manifest of a config and tar layers, given as their bytes.
pub fn image_of(config: &[u8], layers: &[&[u8]]) -> Value {
    image_manifest(
        descriptor(OCI_CONFIG, config),
        layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect(),
    )
}

/// `v` with the keys of `extra` added (or replaced).
pub fn with(mut v: Value, extra: Value) -> Value {
    if let (Some(m), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            m.insert(k.clone(), x.clone());
        }
    }
    v
}

/// The JSON bytes of `v`.
pub fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap())
}
