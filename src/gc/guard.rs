//! The small objects the collector and the request path share, and the request path's side of
//! the safety protocol (the argument is in [`super`]).
//!
//! - `_gc/active`: `active <generation>` while a collection may have markers out, `idle
//!   <generation>` after; absent means idle, generation 0. Only the collector writes it.
//! - `_gc/condemned/<alg>/<hex>`: one marker per condemned blob, `<state> <generation>`, where
//!   the state is `condemned`, `revived` or `deleting`. The collector creates it (`condemned`)
//!   and moves it to `deleting` by compare-and-set; a request moves `condemned` to `revived`
//!   by compare-and-set; nothing else ever writes it. The generation in the content makes every
//!   run's markers distinct, so a version (a content hash on disk, an etag on R2) never comes
//!   back.

use bytes::Bytes;

use crate::digest::{Algorithm, Digest};
use crate::storage::{Storage, StorageResult};

/// Where the collector says whether a collection is under way.
pub const ACTIVE: &str = "_gc/active";
/// The folder of the markers.
pub const MARKERS: &str = "_gc/condemned";
/// Where the last run's summary is kept.
pub const LAST_RUN: &str = "_gc/last-run";

/// The marker of a condemned blob.
pub fn marker(digest: &Digest) -> String {
    format!("{MARKERS}/{}/{}", digest.algorithm().as_str(), digest.hex())
}

/// The marker folders, one per algorithm.
pub fn marker_dirs() -> [(Algorithm, String); 2] {
    [Algorithm::Sha256, Algorithm::Sha512].map(|a| (a, format!("{MARKERS}/{}", a.as_str())))
}

/// What `_gc/active` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub active: bool,
    pub generation: u64,
}

impl Flag {
    pub fn parse(raw: Option<&[u8]>) -> Flag {
        let Some(raw) = raw else {
            return Flag {
                active: false,
                generation: 0,
            };
        };
        let text = std::str::from_utf8(raw).unwrap_or("");
        let (state, generation) = text.split_once(' ').unwrap_or(("", ""));
        let generation = generation.trim().parse::<u64>();
        Flag {
            // Anything unreadable counts as active: the careful path.
            active: state != "idle" || generation.is_err(),
            generation: generation.unwrap_or(0),
        }
    }

    pub fn encode(&self) -> Bytes {
        let state = if self.active { "active" } else { "idle" };
        Bytes::from(format!("{state} {}", self.generation))
    }
}

/// Reads `_gc/active`.
pub async fn flag<S: Storage + ?Sized>(storage: &S) -> StorageResult<Flag> {
    Ok(Flag::parse(storage.get(ACTIVE).await?.as_deref()))
}

/// A marker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Condemned,
    Revived,
    Deleting,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Condemned => "condemned",
            State::Revived => "revived",
            State::Deleting => "deleting",
        }
    }
}

/// A marker's content.
pub fn encode(state: State, generation: u64) -> Bytes {
    Bytes::from(format!("{} {generation}", state.as_str()))
}

/// Parses a marker; an unreadable one counts as `deleting` (the careful reading for a request,
/// and the collector finishes it).
pub fn parse(raw: &[u8]) -> (State, u64) {
    let text = std::str::from_utf8(raw).unwrap_or("");
    let (state, generation) = text.split_once(' ').unwrap_or(("deleting", "0"));
    let state = match state {
        "condemned" => State::Condemned,
        "revived" => State::Revived,
        _ => State::Deleting,
    };
    (state, generation.trim().parse().unwrap_or(0))
}

/// What a request found of a blob's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No marker: the blob is not condemned now (it may have been collected already).
    None,
    /// It was condemned and is revived now (by this request or another): it stays.
    Kept,
    /// It is being deleted: treat it as unknown.
    Going,
}

/// Revives the blob's marker if it is `condemned` (compare-and-set; a lost race re-reads).
/// Each lost race means the marker moved on (the collector makes at most two moves), so this
/// ends after a few reads.
pub async fn revive<S: Storage + ?Sized>(storage: &S, digest: &Digest) -> StorageResult<Found> {
    let key = marker(digest);
    loop {
        let Some((raw, version)) = storage.get_versioned(&key).await? else {
            return Ok(Found::None);
        };
        match parse(&raw) {
            (State::Deleting, _) => return Ok(Found::Going),
            (State::Revived, _) => return Ok(Found::Kept),
            (State::Condemned, generation) => {
                let revived = encode(State::Revived, generation);
                if storage.put_if(&key, revived, &version).await? {
                    return Ok(Found::Kept);
                }
            }
        }
    }
}

/// The request path's check after it wrote what makes its references live (a manifest
/// record): `before` is the flag read before it checked that the references exist. Returns
/// the first reference that is gone or going, if any.
///
/// When the flag is idle and unchanged, no collection began between the two reads, so nothing
/// was deleted in between, and any later collection's re-mark sees the record. Otherwise each
/// reference's marker is revived, and one without a marker is checked to still be stored.
pub async fn protect<S: Storage + ?Sized>(
    storage: &S,
    before: Flag,
    refs: &[Digest],
) -> StorageResult<Option<Digest>> {
    let after = flag(storage).await?;
    if !before.active && after == before {
        return Ok(None);
    }
    for d in refs {
        match revive(storage, d).await? {
            Found::Kept => {}
            Found::Going => return Ok(Some(d.clone())),
            Found::None => {
                if storage.blob_size(d).await?.is_none() {
                    return Ok(Some(d.clone()));
                }
            }
        }
    }
    Ok(None)
}

/// For reads (blob HEAD and GET, mount): while a collection is under way, revives the blob if
/// it is condemned; `false` when it is being deleted (answer as if it were unknown).
pub async fn still_there<S: Storage + ?Sized>(storage: &S, digest: &Digest) -> StorageResult<bool> {
    if !flag(storage).await?.active {
        return Ok(true);
    }
    Ok(revive(storage, digest).await? != Found::Going)
}
