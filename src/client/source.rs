//! Where images come from and go to: the [`Source`] and [`Dest`] traits, and both for a
//! registry (`docker://`). OCI layouts are in [`super::layout`], `docker save` tarballs in
//! [`super::archive`].

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::reference::{Remote, Tag};
use super::registry::{Manifest, Options, Registry};
use super::stream::{reader_of, BlobRead, Reader};
use super::upload::{Sent, UploadOptions};
use super::{Error, Result};
use crate::digest::Digest;

/// A content descriptor, as manifests list them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// A layer kept elsewhere (`urls`): its bytes are not copied.
    pub fn is_foreign(&self) -> bool {
        self.urls.as_ref().is_some_and(|u| !u.is_empty())
    }
}

/// The blobs an image manifest references (config, then layers), foreign layers left out.
pub fn blobs_of(m: &Manifest) -> Result<Vec<Descriptor>> {
    let v = m.json()?;
    let mut out = Vec::new();
    if let Some(c) = v.get("config") {
        out.push(parse_descriptor(c, &m.digest)?);
    }
    for l in v["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let d = parse_descriptor(l, &m.digest)?;
        if !d.is_foreign() {
            out.push(d);
        }
    }
    Ok(out)
}

/// The manifests an index lists.
pub fn children_of(m: &Manifest) -> Result<Vec<Descriptor>> {
    let v = m.json()?;
    v["manifests"]
        .as_array()
        .ok_or_else(|| Error::msg(format!("index {} lists no manifests", m.digest)))?
        .iter()
        .map(|d| parse_descriptor(d, &m.digest))
        .collect()
}

fn parse_descriptor(v: &serde_json::Value, of: &Digest) -> Result<Descriptor> {
    serde_json::from_value(v.clone())
        .map_err(|e| Error::msg(format!("manifest {of} has a bad descriptor: {e}")))
}

/// Where an image comes from.
#[async_trait]
pub trait Source: Send + Sync {
    /// The manifest or index the reference names.
    async fn top(&self) -> Result<Manifest>;
    /// A manifest an index lists.
    async fn manifest(&self, d: &Descriptor) -> Result<Manifest>;
    /// A blob's bytes.
    fn blob(&self, d: &Descriptor) -> Result<Arc<dyn BlobRead>>;
    /// The tag the reference names, if any (the default for the destination's).
    fn tag(&self) -> Option<String>;
}

/// Where an image goes.
#[async_trait]
pub trait Dest: Send + Sync {
    async fn put_blob(
        &self,
        d: &Descriptor,
        src: Arc<dyn BlobRead>,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Sent>;
    /// Stores a manifest by digest, or under `tag`.
    async fn put_manifest(&self, m: &Manifest, tag: Option<&str>) -> Result<()>;
    /// What a summary calls it.
    fn describe(&self) -> String;
}

// ---- a registry -----------------------------------------------------------------------------

pub struct RegistrySource {
    reg: Registry,
    remote: Remote,
}

impl RegistrySource {
    pub async fn open(remote: &Remote, opts: &Options) -> Result<RegistrySource> {
        Ok(RegistrySource {
            reg: Registry::connect(&remote.host, opts).await?,
            remote: remote.clone(),
        })
    }
}

struct RegistryBlob {
    reg: Registry,
    repo: String,
    digest: Digest,
}

#[async_trait]
impl BlobRead for RegistryBlob {
    async fn open(&self, offset: u64) -> Result<Reader> {
        let resp = self.reg.get_blob(&self.repo, &self.digest, offset).await?;
        let partial = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        let mut r = reader_of(resp.bytes_stream());
        if offset > 0 && !partial {
            // The registry sent the whole blob: skip to the offset.
            let skipped =
                tokio::io::copy(&mut (&mut r).take(offset), &mut tokio::io::sink()).await?;
            if skipped != offset {
                return Err(Error::msg(format!(
                    "blob {} is shorter than {offset}",
                    self.digest
                )));
            }
        }
        Ok(r)
    }
}

#[async_trait]
impl Source for RegistrySource {
    async fn top(&self) -> Result<Manifest> {
        let reference = match &self.remote.tag {
            Tag::Tag(t) => t.clone(),
            Tag::Digest(d) => d.to_string(),
            Tag::None => "latest".to_string(),
        };
        self.reg.get_manifest(&self.remote.repo, &reference).await
    }

    async fn manifest(&self, d: &Descriptor) -> Result<Manifest> {
        self.reg
            .get_manifest(&self.remote.repo, &d.digest.to_string())
            .await
    }

    fn blob(&self, d: &Descriptor) -> Result<Arc<dyn BlobRead>> {
        Ok(Arc::new(RegistryBlob {
            reg: self.reg.clone(),
            repo: self.remote.repo.clone(),
            digest: d.digest.clone(),
        }))
    }

    fn tag(&self) -> Option<String> {
        match &self.remote.tag {
            Tag::Tag(t) => Some(t.clone()),
            _ => None,
        }
    }
}

pub struct RegistryDest {
    pub reg: Registry,
    pub repo: String,
    pub upload: UploadOptions,
}

impl RegistryDest {
    pub async fn open(
        remote: &Remote,
        opts: &Options,
        upload: UploadOptions,
    ) -> Result<RegistryDest> {
        Ok(RegistryDest {
            reg: Registry::connect(&remote.host, opts).await?,
            repo: remote.repo.clone(),
            upload,
        })
    }
}

#[async_trait]
impl Dest for RegistryDest {
    async fn put_blob(
        &self,
        d: &Descriptor,
        src: Arc<dyn BlobRead>,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Sent> {
        self.reg
            .upload_blob(
                &self.repo,
                &d.digest,
                d.size,
                src.as_ref(),
                &self.upload,
                progress,
            )
            .await
    }

    async fn put_manifest(&self, m: &Manifest, tag: Option<&str>) -> Result<()> {
        let reference = tag.map_or_else(|| m.digest.to_string(), str::to_string);
        self.reg.put_manifest(&self.repo, &reference, m).await
    }

    fn describe(&self) -> String {
        format!("{}{}", self.reg.base(), self.repo)
    }
}
