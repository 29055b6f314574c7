//! What happened: the domain layer emits an [`Event`] for every change it makes and every
//! pull it serves, and [`crate::Registry::handle`] returns them with the response, as quinn's
//! `poll()` hands out what a connection did. The adapter forwards them (to notifications and
//! metrics); the core never sends anything anywhere itself.

use crate::digest::Digest;
use crate::names::{Name, Tag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A blob was stored and linked into a repository by an upload.
    BlobPushed {
        repo: Name,
        digest: Digest,
        size: u64,
    },
    /// A blob was linked into a repository from another one, copying nothing.
    BlobMounted {
        repo: Name,
        from: Name,
        digest: Digest,
        size: u64,
    },
    /// A blob's bytes were served (a GET, whole or a range).
    BlobPulled {
        repo: Name,
        digest: Digest,
        size: u64,
    },
    /// A blob was unlinked from a repository.
    BlobDeleted { repo: Name, digest: Digest },
    /// A manifest was stored, by tag or by digest.
    ManifestPushed {
        repo: Name,
        digest: Digest,
        media_type: String,
        size: u64,
        tag: Option<Tag>,
    },
    /// A manifest's bytes were served (a GET).
    ManifestPulled {
        repo: Name,
        digest: Digest,
        media_type: String,
        size: u64,
        tag: Option<Tag>,
    },
    /// A manifest was removed from a repository (with the tags that pointed at it).
    ManifestDeleted { repo: Name, digest: Digest },
    /// A tag now points at `digest` (`previous`: where it pointed before, if anywhere).
    TagMoved {
        repo: Name,
        tag: Tag,
        digest: Digest,
        previous: Option<Digest>,
    },
    /// A tag was removed; `digest` is where it pointed.
    TagDeleted {
        repo: Name,
        tag: Tag,
        digest: Digest,
    },
    /// An idle upload session expired and its data was removed.
    UploadExpired { id: String, repo: String },
    /// The garbage collector removed a blob's bytes (and its links into repositories).
    BlobCollected { digest: Digest, size: u64 },
    /// The garbage collector removed a manifest from a repository.
    ManifestCollected { repo: Name, digest: Digest },
    /// A retention rule removed a tag; `digest` is where it pointed.
    TagExpired {
        repo: Name,
        tag: Tag,
        digest: Digest,
    },
}

impl Event {
    /// A stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Event::BlobPushed { .. } => "blob.pushed",
            Event::BlobMounted { .. } => "blob.mounted",
            Event::BlobPulled { .. } => "blob.pulled",
            Event::BlobDeleted { .. } => "blob.deleted",
            Event::ManifestPushed { .. } => "manifest.pushed",
            Event::ManifestPulled { .. } => "manifest.pulled",
            Event::ManifestDeleted { .. } => "manifest.deleted",
            Event::TagMoved { .. } => "tag.moved",
            Event::TagDeleted { .. } => "tag.deleted",
            Event::UploadExpired { .. } => "upload.expired",
            Event::BlobCollected { .. } => "gc.blob.removed",
            Event::ManifestCollected { .. } => "gc.manifest.removed",
            Event::TagExpired { .. } => "gc.tag.expired",
        }
    }
}

/// Where domain operations put their events.
pub type Events = Vec<Event>;
