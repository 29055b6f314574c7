//! The key layout of the small objects the domain keeps in [`crate::storage::Storage`].
//!
//! Names, tags and digests are validated before they get here, so every key segment is a safe
//! path component: names contain no `..` and no segment starting with `_`, so `_layers`,
//! `_tags` and friends cannot collide with a nested repository. Storage backends never look
//! inside these keys.

use crate::digest::Digest;
use crate::names::{Name, Tag};

/// The link that puts a blob into a repository.
pub fn blob_link(name: &Name, digest: &Digest) -> String {
    format!(
        "repositories/{name}/_layers/{}/{}",
        digest.algorithm().as_str(),
        digest.hex()
    )
}

/// The record of a manifest revision in a repository: its media type, size and subject.
pub fn manifest(name: &Name, digest: &Digest) -> String {
    format!(
        "{}/{}/{}",
        manifests_root(name),
        digest.algorithm().as_str(),
        digest.hex()
    )
}

/// The folder of a repository's manifest records: the record of `<alg>:<hex>` is
/// `<this>/<alg>/<hex>` (as [`crate::storage::Storage::lookup_manifest`] finds it).
pub fn manifests_root(name: &Name) -> String {
    format!("repositories/{name}/_manifests")
}

pub fn tags_dir(name: &Name) -> String {
    format!("repositories/{name}/_tags")
}

/// A tag: holds the digest it points to.
pub fn tag(name: &Name, tag: &Tag) -> String {
    format!("repositories/{name}/_tags/{tag}")
}

pub fn referrers_dir(name: &Name, subject: &Digest) -> String {
    format!(
        "repositories/{name}/_referrers/{}/{}",
        subject.algorithm().as_str(),
        subject.hex()
    )
}

/// One referrer of `subject`: holds its descriptor.
pub fn referrer(name: &Name, subject: &Digest, digest: &Digest) -> String {
    format!(
        "{}/{}-{}",
        referrers_dir(name, subject),
        digest.algorithm().as_str(),
        digest.hex()
    )
}

pub const CATALOG_DIR: &str = "_catalog";

/// The catalog entry of a repository. `/` is not a path separator here (`:` never appears
/// in a name), so the catalog is one flat list.
pub fn catalog_entry(name: &Name) -> String {
    format!("{CATALOG_DIR}/{}", name.as_str().replace('/', ":"))
}

/// Turns a catalog entry name back into the repository name.
pub fn catalog_name(entry: &str) -> String {
    entry.replace(':', "/")
}

pub const UPLOADS_DIR: &str = "_uploads";

/// The state of an upload session.
pub fn upload(id: &str) -> String {
    format!("{UPLOADS_DIR}/{id}")
}

/// The folder of a repository's manifest records of one algorithm (for the collector).
pub fn manifests_dir(name: &Name, alg: crate::digest::Algorithm) -> String {
    format!("{}/{}", manifests_root(name), alg.as_str())
}

/// The folder of a repository's blob links of one algorithm (for the collector).
pub fn links_dir(name: &Name, alg: crate::digest::Algorithm) -> String {
    format!("repositories/{name}/_layers/{}", alg.as_str())
}

/// When a mirror last checked a cached tag with its upstream (seconds since the epoch).
pub fn mirror_tag_checked(name: &Name, tag: &Tag) -> String {
    format!("repositories/{name}/_mirror/checked/{tag}")
}

/// A mirror's copy of its upstream's tag list, and when it was fetched.
pub fn mirror_tag_list(name: &Name) -> String {
    format!("repositories/{name}/_mirror/tags")
}
