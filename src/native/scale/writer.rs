//! The upload side of the scale-out store: what a chunked upload keeps between requests (in
//! the session's `backend` field, so in its PostgreSQL row), and the writer that re-chunks
//! incoming bytes into equal S3 multipart parts plus a tail object, as the R2 store does.
//!
//! A writer holds at most one part being filled and one being uploaded (the next part fills
//! while the previous one travels), so an upload's memory is bounded by two parts whatever
//! the size of the request.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::{parts_object, ScaleStorage, MAX_PARTS, PART_SIZE};
use crate::storage::{StorageError, StorageResult, UploadWriter};

/// What a chunked upload keeps between requests.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct UploadBackend {
    /// The S3 multipart upload id (of `parts/<id>`), once the first full part is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) mp: Option<String>,
    /// The etags of the parts written, in order.
    #[serde(default)]
    pub(super) parts: Vec<String>,
    /// Bytes in the tail object.
    #[serde(default)]
    pub(super) tail: u64,
    /// The tail object's key. Each request writes a tail of its own, so a request that dies
    /// half-way never touches the tail the session's state names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tail_key: Option<String>,
}

impl UploadBackend {
    pub(super) fn decode(raw: Option<&str>) -> StorageResult<Self> {
        match raw {
            None => Ok(Self::default()),
            Some(s) => serde_json::from_str(s)
                .map_err(|e| StorageError(format!("corrupt upload backend state: {e}"))),
        }
    }

    pub(super) fn offset(&self) -> u64 {
        self.parts.len() as u64 * PART_SIZE as u64 + self.tail
    }
}

pub(super) struct ScaleWriter {
    store: ScaleStorage,
    id: String,
    state: UploadBackend,
    /// The part being filled, which starts with the old tail; `None` until the first byte.
    buffer: Option<BytesMut>,
    /// The part being uploaded, answering its etag.
    in_flight: Option<tokio::task::JoinHandle<StorageResult<String>>>,
}

impl ScaleWriter {
    pub(super) fn new(store: ScaleStorage, id: &str, state: UploadBackend) -> Self {
        ScaleWriter {
            store,
            id: id.to_string(),
            state,
            buffer: None,
            in_flight: None,
        }
    }

    /// Waits for the part in flight and records its etag.
    async fn settle(&mut self) -> StorageResult<()> {
        if let Some(handle) = self.in_flight.take() {
            let etag = handle
                .await
                .map_err(|e| StorageError(format!("an S3 part upload failed: {e}")))??;
            self.state.parts.push(etag);
        }
        Ok(())
    }

    /// Sends a full part (after the previous one landed).
    async fn send_part(&mut self, part: Bytes) -> StorageResult<()> {
        self.settle().await?;
        if self.state.parts.len() + 1 >= MAX_PARTS {
            return Err(StorageError("upload too large (10,000 S3 parts)".into()));
        }
        let key = parts_object(&self.id);
        let mp = match &self.state.mp {
            Some(mp) => mp.clone(),
            None => {
                let mp = self.store.s3.create_multipart(&key).await?;
                // Recorded before any part goes, so the upload can be aborted without its
                // session.
                self.store.note_multipart(&self.id, &mp).await?;
                self.state.mp = Some(mp.clone());
                mp
            }
        };
        let number = self.state.parts.len() as u16 + 1;
        let s3 = self.store.s3.clone();
        self.in_flight = Some(tokio::spawn(async move {
            s3.upload_part(&key, &mp, number, part).await
        }));
        Ok(())
    }
}

#[async_trait::async_trait]
impl UploadWriter for ScaleWriter {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        if self.buffer.is_none() {
            let mut buffer = BytesMut::with_capacity(PART_SIZE);
            if self.state.tail > 0 {
                buffer.extend_from_slice(&self.store.read_tail(&self.state).await?);
            }
            self.buffer = Some(buffer);
        }
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let buffer = self
                .buffer
                .as_mut()
                .ok_or_else(|| StorageError("writer has no buffer".into()))?;
            let take = (PART_SIZE - buffer.len()).min(rest.len());
            buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buffer.len() == PART_SIZE {
                let part = std::mem::replace(buffer, BytesMut::with_capacity(PART_SIZE));
                self.send_part(part.freeze()).await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> StorageResult<Option<String>> {
        self.settle().await?;
        if let Some(buffer) = self.buffer.take() {
            // Every byte of the old tail is in a part now or in this buffer: the buffer
            // becomes the new tail.
            self.state.tail = buffer.len() as u64;
            self.state.tail_key = None;
            if !buffer.is_empty() {
                let key = format!(
                    "data/{}/tail/{}-{}",
                    self.id,
                    self.state.parts.len() as u64 * PART_SIZE as u64,
                    crate::upload::new_upload_id()
                );
                self.store.s3.put(&key, buffer.freeze()).await?;
                self.state.tail_key = Some(key);
            }
        }
        serde_json::to_string(&self.state)
            .map(Some)
            .map_err(|e| StorageError(e.to_string()))
    }
}
