//! OCI image layouts (`oci:DIR[:TAG]`): `oci-layout`, `index.json` (tags are the
//! `org.opencontainers.image.ref.name` annotation) and `blobs/<alg>/<hex>`. As a source its
//! blobs are read from their files; as a destination each blob is written to a temp file while
//! hashed, checked, and renamed into place, and `index.json` is replaced last.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::registry::{Manifest, MAX_MANIFEST};
use super::source::{Descriptor, Dest, Source};
use super::stream::{BlobRead, FileRange, PIECE};
use super::upload::Sent;
use super::{Error, Result};
use crate::digest::{Digest, Hasher};
use crate::manifest::OCI_INDEX;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join(d.algorithm().as_str()).join(d.hex())
}

fn read_index(dir: &Path) -> Result<Value> {
    let p = dir.join("index.json");
    let text = std::fs::read(&p).map_err(|e| Error::msg(format!("{}: {e}", p.display())))?;
    serde_json::from_slice(&text).map_err(|e| Error::msg(format!("{}: not JSON: {e}", p.display())))
}

pub struct LayoutSource {
    dir: PathBuf,
    tag: Option<String>,
    top: Descriptor,
}

impl LayoutSource {
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<LayoutSource> {
        if !dir.join("oci-layout").is_file() {
            return Err(Error::msg(format!(
                "{}: not an OCI image layout (no oci-layout file)",
                dir.display()
            )));
        }
        let index = read_index(dir)?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let chosen = match tag {
            Some(t) => entries
                .iter()
                .find(|d| d["annotations"][REF_NAME].as_str() == Some(t))
                .ok_or_else(|| Error::msg(format!("{}: no tag {t:?}", dir.display())))?,
            None if entries.len() == 1 => &entries[0],
            None => {
                return Err(Error::msg(format!(
                    "{}: holds {} images; name one as oci:DIR:TAG",
                    dir.display(),
                    entries.len()
                )))
            }
        };
        let top: Descriptor = serde_json::from_value(chosen.clone()).map_err(|e| {
            Error::msg(format!("{}/index.json: bad descriptor: {e}", dir.display()))
        })?;
        Ok(LayoutSource {
            dir: dir.to_path_buf(),
            tag: tag.map(str::to_string),
            top,
        })
    }

    fn read_manifest(&self, d: &Descriptor) -> Result<Manifest> {
        if d.size > MAX_MANIFEST as u64 {
            return Err(Error::msg(format!("manifest {} is over 4 MiB", d.digest)));
        }
        let p = blob_path(&self.dir, &d.digest);
        let bytes = std::fs::read(&p).map_err(|e| Error::msg(format!("{}: {e}", p.display())))?;
        let got = Digest::of(d.digest.algorithm(), &bytes);
        if got != d.digest {
            return Err(Error::msg(format!(
                "{}: the manifest's bytes hash to {got}, not its name",
                p.display()
            )));
        }
        let media = (!d.media_type.is_empty()).then_some(d.media_type.as_str());
        let mut m = Manifest::from_bytes(Bytes::from(bytes), media)?;
        m.digest = d.digest.clone();
        Ok(m)
    }
}

#[async_trait]
impl Source for LayoutSource {
    async fn top(&self) -> Result<Manifest> {
        self.read_manifest(&self.top)
    }

    async fn manifest(&self, d: &Descriptor) -> Result<Manifest> {
        self.read_manifest(d)
    }

    fn blob(&self, d: &Descriptor) -> Result<Arc<dyn BlobRead>> {
        let path = blob_path(&self.dir, &d.digest);
        if !path.is_file() {
            return Err(Error::msg(format!("{}: missing blob", path.display())));
        }
        Ok(Arc::new(FileRange {
            path,
            start: 0,
            len: d.size,
        }))
    }

    fn tag(&self) -> Option<String> {
        self.tag.clone()
    }
}

/// An OCI layout being written.
pub struct LayoutDest {
    dir: PathBuf,
}

impl LayoutDest {
    pub fn create(dir: &Path) -> Result<LayoutDest> {
        let io = |e: std::io::Error| Error::msg(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            std::fs::write(&marker, r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
        }
        if !dir.join("index.json").exists() {
            write_atomic(
                &dir.join("index.json"),
                &serde_json::to_vec(
                    &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
                )
                .unwrap_or_default(),
            )?;
        }
        Ok(LayoutDest {
            dir: dir.to_path_buf(),
        })
    }

    async fn write_blob(
        &self,
        d: &Digest,
        size: u64,
        src: &dyn BlobRead,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Sent> {
        let path = blob_path(&self.dir, d);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
            progress(size);
            return Ok(Sent::Present);
        }
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent)?;
        let tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&parent)?;
        let (std_file, tmp_path) = tmp.into_parts();
        let mut out = tokio::fs::File::from_std(std_file);
        let mut r = src.open(0).await?;
        let mut hasher = Hasher::new(d.algorithm());
        let mut buf = vec![0u8; PIECE];
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf).await?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > size {
                return Err(Error::msg(format!(
                    "blob {d} is longer than its {size} bytes"
                )));
            }
            hasher.update(&buf[..k]);
            out.write_all(&buf[..k]).await?;
            progress(n);
        }
        let got = hasher.finish();
        if &got != d || n != size {
            return Err(Error::msg(format!(
                "the source's {n} bytes for {d} hash to {got}: the source is corrupt"
            )));
        }
        out.sync_all().await?;
        tmp_path
            .persist(&path)
            .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
        Ok(Sent::Uploaded {
            bytes: size,
            resumed_from: 0,
        })
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
    Ok(())
}

#[async_trait]
impl Dest for LayoutDest {
    async fn put_blob(
        &self,
        d: &Descriptor,
        src: Arc<dyn BlobRead>,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Sent> {
        self.write_blob(&d.digest, d.size, src.as_ref(), progress.as_ref())
            .await
    }

    async fn put_manifest(&self, m: &Manifest, tag: Option<&str>) -> Result<()> {
        let path = blob_path(&self.dir, &m.digest);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))?;
        write_atomic(&path, &m.bytes)?;
        let Some(tag) = tag else { return Ok(()) };
        let mut index = read_index(&self.dir)?;
        let mut entries: Vec<Value> = index["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d["annotations"][REF_NAME].as_str() != Some(tag))
            .collect();
        entries.push(json!({
            "mediaType": m.media_type,
            "digest": m.digest,
            "size": m.bytes.len(),
            "annotations": { REF_NAME: tag },
        }));
        index["manifests"] = Value::Array(entries);
        write_atomic(
            &self.dir.join("index.json"),
            &serde_json::to_vec(&index).unwrap_or_default(),
        )
    }

    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }
}
