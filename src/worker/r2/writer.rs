//! The upload side of the R2 store: what a chunked upload keeps between requests, and the
//! writer that re-chunks incoming bytes into equal multipart parts plus a tail.
//!
//! When the core declares how long a request's body is (it nearly always can: a PATCH or PUT
//! has a `Content-Length`), the writer knows in advance how many whole parts the request
//! completes and how long the new tail is, so it streams every one of them to R2 as the bytes
//! arrive: each part (and the tail) is an R2 upload fed from a [`FixedLengthStream`] of its exact
//! length, the previous tail streamed from R2 ahead of the request's own bytes. No part is held
//! in memory, so an upload's memory is one piece of the body in flight, whatever the part
//! size and however many uploads an isolate serves at once. Without a declared length it falls
//! back to filling a part buffer and uploading it whole.
//!
//! One upload at a time per isolate ([`BUFFERED_UPLOADS`]) fills a part buffer even when its
//! length is declared: under `wrangler dev`, R2's emulation takes a part given whole for about
//! 10% less CPU than one streamed (README, "Worker limits"), so a lone push keeps that speed,
//! while the isolate's memory stays bounded (one part buffer, plus what each streaming upload
//! holds) however many uploads it serves.

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use worker::{Bucket, Data, FixedLengthStream};

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
    storage: R2Storage,
    id: String,
    state: UploadBackend,
    /// The tail the request starts from, not read yet: `(key, length)`.
    old_tail: Option<(String, u64)>,
    mode: Mode,
    /// The isolate's part buffer, while this upload holds it.
    slot: Option<BufferSlot>,
}

/// Uploads in an isolate that may fill a whole part in memory although their length is
/// declared (the others stream): bounded, so memory does not grow with concurrency.
const BUFFERED_UPLOADS: usize = 1;

thread_local! {
    /// Part buffers taken (wasm runs one thread per isolate).
    static BUFFERS_TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One of the isolate's [`BUFFERED_UPLOADS`], given back when dropped.
struct BufferSlot;

impl BufferSlot {
    fn take() -> Option<BufferSlot> {
        BUFFERS_TAKEN.with(|n| {
            (n.get() < BUFFERED_UPLOADS).then(|| {
                n.set(n.get() + 1);
                BufferSlot
            })
        })
    }
}

impl Drop for BufferSlot {
    fn drop(&mut self) {
        BUFFERS_TAKEN.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

enum Mode {
    /// No declared length yet, nothing written.
    Unknown,
    /// The request's length is known: parts and tail are streamed.
    Streaming(Streaming),
    /// No declared length: a part is filled in memory, then uploaded.
    Buffered(Vec<u8>),
}

/// The most bytes an upload gathers before handing them to its R2 stream (see
/// `Streaming::gathered`): bounded memory per upload (this, plus one batch in flight), and
/// few crossings into JavaScript.
const COALESCE: usize = 1024 * 1024;

struct Streaming {
    /// Whole parts this request still has to start.
    parts_to_start: u64,
    /// The length of the tail this request leaves, until its upload starts (0: none).
    tail_len: u64,
    /// The length of the tail this request leaves.
    tail_total: u64,
    /// The bytes the request declared.
    declared: u64,
    /// Where bytes go now, and how many more it takes.
    sink: Option<(mpsc::Sender<worker::Result<Vec<u8>>>, u64)>,
    /// Bytes gathered for the sink, sent once [`COALESCE`] bytes (or the sink's last) are here:
    /// a request body arrives in pieces of a few KiB, and every piece handed to the stream
    /// crosses into JavaScript and R2 on its own.
    gathered: Vec<u8>,
    /// Uploads started, in order, with where their result arrives.
    started: Vec<(Target, oneshot::Receiver<worker::Result<String>>)>,
}

/// What a streamed upload becomes.
enum Target {
    Part,
    Tail(String),
}

impl R2Writer {
    pub(super) fn new(storage: R2Storage, id: &str, state: UploadBackend) -> Self {
        let old_tail = (state.tail > 0).then(|| (state.tail_object(id), state.tail));
        R2Writer {
            storage,
            id: id.to_string(),
            state,
            old_tail,
            mode: Mode::Unknown,
            slot: None,
        }
    }

    /// The multipart upload of this session, created with its first part.
    async fn multipart(&mut self) -> StorageResult<worker::MultipartUpload> {
        let bucket = &self.storage.bucket;
        match &self.state.mp {
            Some(mp) => bucket
                .resume_multipart_upload(self.state.parts_object(&self.id), mp)
                .map_err(err),
            None => {
                let key = parts_key(&self.id);
                let upload = bucket
                    .create_multipart_upload(&key)
                    .execute()
                    .await
                    .map_err(err)?;
                self.state.mp = Some(upload.upload_id().await);
                self.state.key = Some(key);
                Ok(upload)
            }
        }
    }

    fn check_parts(&self, more: u64) -> StorageResult<()> {
        if self.state.parts.len() as u64 + more >= MAX_PARTS as u64 {
            return Err(err("upload too large for R2 (10,000 parts)"));
        }
        Ok(())
    }

    /// A stream of the old tail's bytes, once: it goes ahead of the request's first bytes.
    async fn take_old_tail(&mut self) -> StorageResult<Option<(worker::ByteStream, u64)>> {
        let Some((key, len)) = self.old_tail.take() else {
            return Ok(None);
        };
        let obj = self
            .storage
            .bucket
            .get(&key)
            .execute()
            .await
            .map_err(err)?
            .ok_or_else(|| err("upload tail is missing"))?;
        let body = obj.body().ok_or_else(|| err("upload tail is missing"))?;
        Ok(Some((body.stream().map_err(err)?, len)))
    }

    /// Starts the next streamed upload (a part, else the tail) and makes it the sink.
    async fn open_sink(&mut self) -> StorageResult<()> {
        let Mode::Streaming(st) = &self.mode else {
            return Err(err("not streaming"));
        };
        let (len, part) = if st.parts_to_start > 0 {
            (PART_SIZE as u64, true)
        } else {
            (st.tail_len, false)
        };
        if len == 0 {
            return Err(err("body longer than declared"));
        }
        let prefix = self.take_old_tail().await?;
        let request_bytes = len - prefix.as_ref().map_or(0, |(_, l)| *l);
        let (tx, rx) = mpsc::channel::<worker::Result<Vec<u8>>>(1);
        let input: futures_util::stream::LocalBoxStream<'static, worker::Result<Vec<u8>>> =
            match prefix {
                Some((tail, _)) => Box::pin(tail.chain(rx)),
                None => Box::pin(rx),
            };
        let data = Data::Stream(FixedLengthStream::wrap(input, len));
        let (done_tx, done_rx) = oneshot::channel();
        let target = if part {
            let number = self.state.parts.len() as u16 + 1 + self.started_parts() as u16;
            let upload = self.multipart().await?;
            wasm_bindgen_futures::spawn_local(async move {
                let r = upload.upload_part(number, data).await.map(|p| p.etag());
                let _ = done_tx.send(r);
            });
            Target::Part
        } else {
            let name = format!(
                "{}-{}",
                self.state.offset() + self.declared_total(),
                crate::upload::new_upload_id()
            );
            let key = tail_key(&self.id, &name);
            let bucket: Bucket = self.storage.bucket.clone();
            let k = key.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let r = bucket.put(k, data).execute().await.map(|_| String::new());
                let _ = done_tx.send(r);
            });
            Target::Tail(key)
        };
        let Mode::Streaming(st) = &mut self.mode else {
            return Err(err("not streaming"));
        };
        if part {
            st.parts_to_start -= 1;
        } else {
            st.tail_len = 0;
        }
        st.started.push((target, done_rx));
        st.sink = Some((tx, request_bytes));
        Ok(())
    }

    fn started_parts(&self) -> usize {
        match &self.mode {
            Mode::Streaming(st) => st
                .started
                .iter()
                .filter(|(t, _)| matches!(t, Target::Part))
                .count(),
            _ => 0,
        }
    }

    /// The bytes this request adds, declared (streaming only).
    fn declared_total(&self) -> u64 {
        match &self.mode {
            Mode::Streaming(st) => st.declared,
            _ => 0,
        }
    }

    async fn write_streaming(&mut self, mut chunk: Bytes) -> StorageResult<()> {
        while !chunk.is_empty() {
            let open = matches!(&self.mode, Mode::Streaming(st) if st.sink.is_some());
            if !open {
                self.open_sink().await?;
            }
            let Mode::Streaming(st) = &mut self.mode else {
                return Err(err("not streaming"));
            };
            let Some((tx, left)) = st.sink.as_mut() else {
                return Err(err("no sink"));
            };
            let piece = chunk.split_to(chunk.len().min(*left as usize));
            *left -= piece.len() as u64;
            let closed = *left == 0;
            st.gathered.extend_from_slice(&piece);
            if st.gathered.len() < COALESCE && !closed {
                continue;
            }
            let batch = std::mem::replace(&mut st.gathered, Vec::with_capacity(COALESCE));
            let sent = tx.send(Ok(batch)).await;
            if closed {
                st.sink = None;
            }
            if sent.is_err() {
                // The upload ended early: its own error says why.
                let (_, rx) = st.started.pop().ok_or_else(|| err("no upload"))?;
                return Err(match rx.await {
                    Ok(Err(e)) => err(e),
                    _ => err("an R2 upload ended early"),
                });
            }
        }
        Ok(())
    }

    /// Uploads the full buffer as the next part (the fallback without a declared length).
    async fn upload_buffered_part(&mut self, part: Vec<u8>) -> StorageResult<()> {
        self.check_parts(1)?;
        let number = self.state.parts.len() as u16 + 1;
        let upload = self.multipart().await?;
        let uploaded = upload.upload_part(number, part).await.map_err(err)?;
        self.state.parts.push(uploaded.etag());
        Ok(())
    }

    /// The buffer of the fallback, holding the old tail to begin with.
    async fn buffer(&mut self) -> StorageResult<&mut Vec<u8>> {
        if matches!(self.mode, Mode::Unknown) {
            let mut buffer = Vec::with_capacity(PART_SIZE);
            if let Some((key, _)) = self.old_tail.take() {
                let tail = self
                    .storage
                    .read_all(&key)
                    .await?
                    .ok_or_else(|| err("upload tail is missing"))?;
                buffer.extend_from_slice(&tail);
            }
            self.mode = Mode::Buffered(buffer);
        }
        match &mut self.mode {
            Mode::Buffered(b) => Ok(b),
            _ => Err(err("not buffered")),
        }
    }
}

#[async_trait::async_trait(?Send)]
impl UploadWriter for R2Writer {
    fn declared_length(&mut self, len: u64) {
        if !matches!(self.mode, Mode::Unknown) {
            return;
        }
        // A part or more to come, and the isolate's part buffer free: fill it, as without a
        // declared length.
        if self.state.tail + len >= PART_SIZE as u64 {
            self.slot = BufferSlot::take();
            if self.slot.is_some() {
                return;
            }
        }
        let total = self.state.tail + len;
        self.mode = Mode::Streaming(Streaming {
            parts_to_start: total / PART_SIZE as u64,
            tail_len: if len == 0 {
                0
            } else {
                total % PART_SIZE as u64
            },
            tail_total: if len == 0 {
                0
            } else {
                total % PART_SIZE as u64
            },
            declared: len,
            sink: None,
            started: Vec::new(),
            gathered: Vec::new(),
        });
    }

    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        if let Mode::Streaming(st) = &self.mode {
            self.check_parts(st.parts_to_start)?;
            return self.write_streaming(chunk).await;
        }
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let buffer = self.buffer().await?;
            if buffer.capacity() == 0 {
                buffer.reserve_exact(PART_SIZE);
            }
            let take = (PART_SIZE - buffer.len()).min(rest.len());
            buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buffer.len() == PART_SIZE {
                // The part's memory is free again once it is copied out to R2, before the next
                // one is gathered: one part's worth at a time.
                let part = std::mem::take(buffer);
                self.upload_buffered_part(part).await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> StorageResult<Option<String>> {
        match std::mem::replace(&mut self.mode, Mode::Unknown) {
            // Nothing written: the state stays as it is.
            Mode::Unknown => {}
            Mode::Streaming(st) => {
                if st.sink.is_some() || st.parts_to_start > 0 || st.tail_len > 0 {
                    return Err(err("body shorter than declared"));
                }
                if st.declared == 0 {
                    // Nothing came: the state stays as it is.
                    return serde_json::to_string(&self.state).map(Some).map_err(err);
                }
                // The old tail went into the first upload; the new one replaces it.
                self.state.tail = 0;
                self.state.tail_key = None;
                for (target, rx) in st.started {
                    let r = rx
                        .await
                        .map_err(|_| err("an R2 upload was dropped"))?
                        .map_err(err)?;
                    match target {
                        Target::Part => self.state.parts.push(r),
                        Target::Tail(key) => self.state.tail_key = Some(key),
                    }
                }
                if self.state.tail_key.is_some() {
                    self.state.tail = st.tail_total;
                }
                debug_assert_eq!(self.state.tail, st.tail_total);
            }
            Mode::Buffered(buffer) => {
                self.state.tail = buffer.len() as u64;
                self.state.tail_key = None;
                if !buffer.is_empty() {
                    let name =
                        format!("{}-{}", self.state.offset(), crate::upload::new_upload_id());
                    let key = tail_key(&self.id, &name);
                    self.state.tail_key = Some(key.clone());
                    self.storage
                        .bucket
                        .put(key, buffer)
                        .execute()
                        .await
                        .map_err(err)?;
                }
            }
        }
        serde_json::to_string(&self.state).map(Some).map_err(err)
    }
}
