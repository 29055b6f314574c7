//! A blob from upstream, streamed to the client while it is hashed and written into storage
//! (as an upload's data), and committed only when it hashes to the digest asked for. The last
//! chunk is held back until then: a blob that does not verify never reaches the client whole,
//! its response ends as a failed transfer, and nothing is kept.

use bytes::Bytes;
use futures_util::StreamExt;

use crate::body::{BoxError, ByteStream};
use crate::digest::{Digest, Hasher};
use crate::names::Name;
use crate::repo::Store;
use crate::storage::{Storage, UploadWriter};
use crate::upload::new_upload_id;

struct Tee<S> {
    store: Store<S>,
    name: Name,
    digest: Digest,
    size: Option<u64>,
    max: u64,
    upstream: ByteStream,
    id: String,
    writer: Option<Box<dyn UploadWriter>>,
    hasher: Option<Hasher>,
    received: u64,
    held: Option<Bytes>,
    /// Verified and stored: only the held chunk is left to give.
    stored: bool,
}

fn error(msg: impl Into<String>) -> BoxError {
    Box::new(std::io::Error::other(msg.into()))
}

impl<S: Storage> Tee<S> {
    /// Drops what was written; the stream then ends with `e`.
    async fn fail(&mut self, e: BoxError) -> BoxError {
        drop(self.writer.take());
        let _ = self.store.storage().upload_delete(&self.id, None).await;
        e
    }

    /// The next chunk for the client, `None` at the end (the blob stored), or the failure.
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        if self.stored {
            return self.held.take().map(Ok);
        }
        loop {
            if self.writer.is_none() {
                let w = self.store.storage().upload_writer(&self.id, 0, None).await;
                match w {
                    Ok(mut w) => {
                        if let Some(size) = self.size {
                            w.declared_length(size);
                        }
                        self.writer = Some(w);
                    }
                    Err(e) => return Some(Err(self.fail(error(e.0)).await)),
                }
            }
            match self.upstream.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    self.received += chunk.len() as u64;
                    if self.size.is_some_and(|s| self.received > s) || self.received > self.max {
                        let e = error("the upstream sent more than the blob's size");
                        return Some(Err(self.fail(e).await));
                    }
                    let written = match self.writer.as_mut() {
                        Some(w) => w.write(chunk.clone()).await,
                        None => Ok(()),
                    };
                    if let Err(e) = written {
                        return Some(Err(self.fail(error(e.0)).await));
                    }
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    if let Some(previous) = self.held.replace(chunk) {
                        return Some(Ok(previous));
                    }
                }
                Some(Err(e)) => return Some(Err(self.fail(e).await)),
                None => {
                    if let Err(e) = self.commit().await {
                        return Some(Err(self.fail(e).await));
                    }
                    self.stored = true;
                    return self.held.take().map(Ok);
                }
            }
        }
    }

    /// Verifies what arrived and stores it as the blob, linked into the repository.
    async fn commit(&mut self) -> Result<(), BoxError> {
        if self.size.is_some_and(|s| s != self.received) {
            return Err(error("the upstream's blob ended early"));
        }
        let actual = self.hasher.take().map(Hasher::finish);
        if actual.as_ref() != Some(&self.digest) {
            return Err(error(format!(
                "the upstream's blob does not match {}",
                self.digest
            )));
        }
        let backend = match self.writer.take() {
            Some(w) => w.finish().await.map_err(|e| error(e.0))?,
            None => None,
        };
        self.store
            .storage()
            .upload_commit(&self.id, &self.digest, self.received, backend.as_deref())
            .await
            .map_err(|e| error(e.0))?;
        let mut events = Vec::new();
        self.store
            .blob_stored(&self.name, &self.digest, self.received, &mut events)
            .await
            .map_err(|e| error(e.cause()))?;
        Ok(())
    }
}

/// The client's stream of `upstream`, a blob of `digest` for repository `name` (whose size
/// the upstream says is `size`), stored as it passes.
pub(crate) fn tee<S: Storage>(
    store: Store<S>,
    name: Name,
    digest: Digest,
    size: Option<u64>,
    max: u64,
    upstream: ByteStream,
) -> ByteStream {
    let tee = Tee {
        store,
        name,
        hasher: Some(Hasher::new(digest.algorithm())),
        digest,
        size,
        max,
        upstream,
        id: new_upload_id(),
        writer: None,
        received: 0,
        held: None,
        stored: false,
    };
    Box::pin(futures_util::stream::unfold(Some(tee), |tee| async move {
        let mut tee = tee?;
        match tee.next().await {
            Some(Ok(chunk)) => Some((Ok(chunk), Some(tee))),
            Some(Err(e)) => Some((Err(e), None)),
            None => None,
        }
    }))
}
