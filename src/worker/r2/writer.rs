//! The upload side of the R2 store: what a chunked upload keeps between requests, and the
//! writer that re-chunks incoming bytes into equal multipart parts plus a tail.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{err, parts_key, tail_key, R2Storage, MAX_PARTS, PART_SIZE};
use crate::storage::{StorageResult, UploadWriter};

/// What a chunked upload keeps between requests (in the session's `backend` field).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct UploadBackend {
    /// The R2 multipart upload id, once the first full part is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) mp: Option<String>,
    /// The key of the multipart upload (absent in sessions from before `parts/<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) key: Option<String>,
    /// The etags of the parts written, in order.
    #[serde(default)]
    pub(super) parts: Vec<String>,
    /// Bytes in the tail object.
    #[serde(default)]
    pub(super) tail: u64,
    /// The tail object's key. Each request writes a tail of its own, so a request that loses a
    /// race on the session never overwrites the tail that the session's state names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tail_key: Option<String>,
}

impl UploadBackend {
    pub(super) fn decode(raw: Option<&str>) -> StorageResult<Self> {
        match raw {
            None => Ok(Self::default()),
            Some(s) => serde_json::from_str(s).map_err(err),
        }
    }

    pub(super) fn offset(&self) -> u64 {
        self.parts.len() as u64 * PART_SIZE as u64 + self.tail
    }

    /// The key of the current tail object.
    pub(super) fn tail_object(&self, id: &str) -> String {
        self.tail_key
            .clone()
            .unwrap_or_else(|| tail_key(id, &self.offset().to_string()))
    }

    /// The key of the multipart upload.
    pub(super) fn parts_object(&self, id: &str) -> String {
        self.key
            .clone()
            .unwrap_or_else(|| format!("data/{id}/parts"))
    }
}

/// Re-chunks an upload's incoming bytes into equal R2 parts, keeping the rest as its tail.
pub(super) struct R2Writer {
    pub(super) storage: R2Storage,
    pub(super) id: String,
    pub(super) state: UploadBackend,
    pub(super) buffer: Vec<u8>,
}

impl R2Writer {
    /// Uploads the full buffer as the next part. The buffer keeps one fixed capacity, so
    /// memory stays flat (about two parts) whatever the size of the blob or of the requests.
    pub(super) async fn upload_part(&mut self) -> StorageResult<()> {
        if self.state.parts.len() + 1 >= MAX_PARTS {
            return Err(err("upload too large for R2 (10,000 parts)"));
        }
        let bucket = &self.storage.bucket;
        let upload = match &self.state.mp {
            Some(mp) => bucket
                .resume_multipart_upload(self.state.parts_object(&self.id), mp)
                .map_err(err)?,
            None => {
                let key = parts_key(&self.id);
                let upload = bucket
                    .create_multipart_upload(&key)
                    .execute()
                    .await
                    .map_err(err)?;
                self.state.mp = Some(upload.upload_id().await);
                self.state.key = Some(key);
                upload
            }
        };
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_SIZE));
        let number = self.state.parts.len() as u16 + 1;
        let uploaded = upload.upload_part(number, part).await.map_err(err)?;
        self.state.parts.push(uploaded.etag());
        Ok(())
    }
}

#[async_trait::async_trait(?Send)]
impl UploadWriter for R2Writer {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let take = (PART_SIZE - self.buffer.len()).min(rest.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buffer.len() == PART_SIZE {
                self.upload_part().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> StorageResult<Option<String>> {
        self.state.tail = self.buffer.len() as u64;
        self.state.tail_key = None;
        if !self.buffer.is_empty() {
            let name = format!("{}-{}", self.state.offset(), crate::upload::new_upload_id());
            let key = tail_key(&self.id, &name);
            self.state.tail_key = Some(key.clone());
            let data = std::mem::take(&mut self.buffer);
            self.storage
                .bucket
                .put(key, data)
                .execute()
                .await
                .map_err(err)?;
        }
        serde_json::to_string(&self.state).map(Some).map_err(err)
    }
}
