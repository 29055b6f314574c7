//! The filesystem store's upload writer: appends a request's pieces to the upload's file,
//! writing each batch while the core hashes the next.

use super::*;

/// Appends to an upload's data file on the blocking pool, at most one write in flight. The
/// core hands over each piece of a request body before it hashes it: an idle disk starts on it
/// at once, so it is written while it is hashed, and the end of a request waits for little
/// more than its last piece; while a write is in flight, pieces gather into the next batch.
pub(super) struct FsWriter {
    /// The file, and the upload's lock, which travel with the write in flight.
    pub(super) file: Option<(File, UploadLock)>,
    pub(super) in_flight: Option<tokio::task::JoinHandle<io::Result<(File, UploadLock)>>>,
    pub(super) pending: Vec<Bytes>,
    pub(super) pending_len: usize,
}

impl FsWriter {
    /// Waits for the write in flight, if any, and takes the file back.
    async fn settle(&mut self) -> StorageResult<()> {
        if let Some(handle) = self.in_flight.take() {
            let file = handle
                .await
                .map_err(|e| StorageError(format!("storage task failed: {e}")))??;
            self.file = Some(file);
        }
        Ok(())
    }

    async fn flush(&mut self) -> StorageResult<()> {
        self.settle().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let (mut file, lock) = self
            .file
            .take()
            .ok_or_else(|| StorageError("writer already failed".into()))?;
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                file.write_all(chunk)?;
            }
            Ok((file, lock))
        }));
        Ok(())
    }
}

#[async_trait::async_trait]
impl UploadWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        // An idle disk gets the bytes at once (they are then written while the caller hashes
        // them); a busy one gets them as a batch once its write is done.
        let idle = self.in_flight.as_ref().is_none_or(|h| h.is_finished());
        if (idle && self.pending_len >= WRITE_EAGER) || self.pending_len >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> StorageResult<Option<String>> {
        self.settle().await?;
        let (mut file, lock) = self
            .file
            .take()
            .ok_or_else(|| StorageError("writer already failed".into()))?;
        let batch = std::mem::take(&mut self.pending);
        // The last batch and the sync in one trip to the blocking pool. Only once this has
        // returned are the bytes durable, and may the session's state say so.
        blocking(move || {
            for chunk in &batch {
                file.write_all(chunk)?;
            }
            file.sync_data()
        })
        .await?;
        drop(lock);
        Ok(None)
    }
}
