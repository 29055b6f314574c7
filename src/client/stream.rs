//! Streams of blob bytes: a [`BlobRead`] opens a blob at any offset (a file, a range of a
//! tarball, a registry's GET with `Range`); [`body`] turns part of one into a request body
//! that hashes what it sends and, at the blob's end, refuses to send the last piece unless the
//! whole hashes to the expected digest; [`verified`] does the same for a download.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Error, Result};
use crate::digest::{Digest, Hasher};

/// Bytes read from a blob.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// A blob that can be read from any offset, as often as needed.
#[async_trait]
pub trait BlobRead: Send + Sync {
    async fn open(&self, offset: u64) -> Result<Reader>;
}

/// How much is read at a time.
pub const PIECE: usize = 256 * 1024;

/// Reads `n` bytes of `r` into `hasher` (to bring a hash state up to an offset).
pub async fn hash_ahead(r: &mut Reader, hasher: &mut Hasher, mut n: u64) -> Result<()> {
    let mut buf = vec![0u8; PIECE];
    while n > 0 {
        let want = (n as usize).min(PIECE);
        let got = r.read(&mut buf[..want]).await?;
        if got == 0 {
            return Err(Error::msg("the source ended before the blob's size"));
        }
        hasher.update(&buf[..got]);
        n -= got as u64;
    }
    Ok(())
}

/// Where a body reports trouble of its own (the source's bytes not matching the digest), so
/// the caller reports that and not the transport's "error sending request".
pub type Failure = Arc<Mutex<Option<Error>>>;

/// The stream of a request body: `n` bytes of `reader`, hashed into `hasher`. If `expect` is
/// given, these are the blob's last bytes: the hash is checked before the last piece goes, and
/// a mismatch ends the body with an error (the server never gets the whole blob). `sent` is
/// called with the bytes handed on so far.
pub fn body(
    reader: Arc<tokio::sync::Mutex<Reader>>,
    n: u64,
    hasher: Arc<Mutex<Hasher>>,
    expect: Option<Digest>,
    failure: Failure,
    sent: Arc<dyn Fn(u64) + Send + Sync>,
) -> impl Stream<Item = std::result::Result<Bytes, Error>> + Send + 'static {
    struct St {
        reader: Arc<tokio::sync::Mutex<Reader>>,
        left: u64,
        done: u64,
        hasher: Arc<Mutex<Hasher>>,
        expect: Option<Digest>,
        failure: Failure,
        sent: Arc<dyn Fn(u64) + Send + Sync>,
    }
    let st = St {
        reader,
        left: n,
        done: 0,
        hasher,
        expect,
        failure,
        sent,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        if st.left == 0 {
            return None;
        }
        let want = (st.left as usize).min(PIECE);
        let mut buf = BytesMut::with_capacity(want);
        let read = {
            let mut r = st.reader.lock().await;
            let mut got = 0;
            let mut res = Ok(());
            while got < want {
                match (&mut *r).take((want - got) as u64).read_buf(&mut buf).await {
                    Ok(0) => {
                        res = Err(Error::msg("the source ended before the blob's size"));
                        break;
                    }
                    Ok(k) => got += k,
                    Err(e) => {
                        res = Err(Error::msg(format!("reading the source: {e}")));
                        break;
                    }
                }
            }
            res
        };
        if let Err(e) = read {
            *st.failure.lock().unwrap() = Some(e.clone());
            st.left = 0;
            return Some((Err(e), st));
        }
        st.hasher.lock().unwrap().update(&buf);
        st.left -= buf.len() as u64;
        if st.left == 0 {
            if let Some(want) = &st.expect {
                let got = st.hasher.lock().unwrap().clone().finish();
                if &got != want {
                    let e = Error::msg(format!(
                        "the source's bytes for {want} hash to {got}: the source is corrupt"
                    ));
                    *st.failure.lock().unwrap() = Some(e.clone());
                    return Some((Err(e), st));
                }
            }
        }
        st.done += buf.len() as u64;
        (st.sent)(st.done);
        Some((Ok(buf.freeze()), st))
    })
}

/// A stream of a blob's bytes whose last piece comes only if the whole hashes to `digest`
/// and is `size` bytes long (when given); otherwise it ends with an error.
pub fn verified<S, E>(
    inner: S,
    digest: Digest,
    size: Option<u64>,
) -> Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    struct St<S> {
        inner: Pin<Box<S>>,
        held: Option<Bytes>,
        hasher: Hasher,
        len: u64,
        digest: Digest,
        size: Option<u64>,
        finished: bool,
    }
    let st = St {
        inner: Box::pin(inner),
        held: None,
        hasher: Hasher::new(digest.algorithm()),
        len: 0,
        digest,
        size,
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(st, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            match st.inner.next().await {
                Some(Ok(b)) => {
                    st.hasher.update(&b);
                    st.len += b.len() as u64;
                    if st.size.is_some_and(|s| st.len > s) {
                        st.finished = true;
                        let e = format!(
                            "blob {} is longer than its {} bytes",
                            st.digest,
                            st.size.unwrap_or(0)
                        );
                        return Some((Err(Error::msg(e)), st));
                    }
                    if b.is_empty() {
                        continue;
                    }
                    if let Some(prev) = st.held.replace(b) {
                        return Some((Ok(prev), st));
                    }
                }
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((
                        Err(Error::msg(format!("reading blob {}: {e}", st.digest))),
                        st,
                    ));
                }
                None => {
                    st.finished = true;
                    let got = st.hasher.clone().finish();
                    if got != st.digest {
                        let e = format!("blob {} arrived with digest {got}", st.digest);
                        return Some((Err(Error::msg(e)), st));
                    }
                    if st.size.is_some_and(|s| s != st.len) {
                        let e = format!(
                            "blob {} arrived with {} bytes, not {}",
                            st.digest,
                            st.len,
                            st.size.unwrap_or(0)
                        );
                        return Some((Err(Error::msg(e)), st));
                    }
                    return st.held.take().map(|b| (Ok(b), st));
                }
            }
        }
    }))
}

/// A reader over a stream of bytes.
pub fn reader_of<S, E>(s: S) -> Reader
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display,
{
    let s = s.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    Box::new(tokio_util::io::StreamReader::new(s))
}

/// A blob in a file, from `start`, `len` bytes long (a file of its own, or a member of a
/// tarball).
pub struct FileRange {
    pub path: std::path::PathBuf,
    pub start: u64,
    pub len: u64,
}

#[async_trait]
impl BlobRead for FileRange {
    async fn open(&self, offset: u64) -> Result<Reader> {
        use tokio::io::AsyncSeekExt;
        let mut f = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| Error::msg(format!("{}: {e}", self.path.display())))?;
        f.seek(std::io::SeekFrom::Start(self.start + offset))
            .await?;
        Ok(Box::new(f.take(self.len.saturating_sub(offset))))
    }
}
