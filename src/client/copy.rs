//! `edge-registry copy SRC DST`: every blob first (up to `--jobs` at once), then the manifests,
//! children before the index, the tag last. A failure anywhere stops the copy before anything
//! is tagged.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};

use super::archive::Archive;
use super::layout::{LayoutDest, LayoutSource};
use super::progress::Progress;
use super::reference::{ImageRef, Tag};
use super::registry::{short, Manifest, Options};
use super::source::{
    blobs_of, children_of, Descriptor, Dest, RegistryDest, RegistrySource, Source,
};
use super::upload::{Sent, UploadOptions};
use super::{Error, Result};

/// A platform, `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: parts.get(2).map(|v| v.to_string()),
            }),
            _ => Err(Error::msg(format!(
                "--platform {s:?}: use OS/ARCH[/VARIANT]"
            ))),
        }
    }

    /// This machine's, as images name it.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: None,
        }
    }

    fn matches(&self, p: &serde_json::Value) -> bool {
        p["os"].as_str() == Some(&self.os)
            && p["architecture"].as_str() == Some(&self.arch)
            && self
                .variant
                .as_deref()
                .is_none_or(|v| p["variant"].as_str() == Some(v))
    }
}

fn describe_platform(p: &serde_json::Value) -> String {
    let mut s = format!(
        "{}/{}",
        p["os"].as_str().unwrap_or("?"),
        p["architecture"].as_str().unwrap_or("?")
    );
    if let Some(v) = p["variant"].as_str() {
        s.push('/');
        s.push_str(v);
    }
    s
}

pub struct CopyOptions {
    pub src: Options,
    pub dst: Options,
    pub upload: UploadOptions,
    pub jobs: usize,
    pub all: bool,
    pub platform: Option<Platform>,
    pub quiet: bool,
}

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub blobs: usize,
    pub present: usize,
    pub mounted: usize,
    pub bytes_sent: u64,
    pub manifests: usize,
    pub digest: String,
}

async fn open_source(r: &ImageRef, opts: &Options) -> Result<Box<dyn Source>> {
    Ok(match r {
        ImageRef::Docker(remote) => Box::new(RegistrySource::open(remote, opts).await?),
        ImageRef::Oci { dir, tag } => Box::new(LayoutSource::open(dir, tag.as_deref())?),
        ImageRef::Archive { path, image } => {
            let (path, image) = (path.clone(), image.clone());
            Box::new(
                tokio::task::spawn_blocking(move || Archive::open(&path, image.as_deref()))
                    .await
                    .map_err(|e| Error::msg(format!("reading the archive: {e}")))??,
            )
        }
    })
}

/// Copies the image `src` names to `dst`.
pub async fn copy(src: &ImageRef, dst: &ImageRef, opts: &CopyOptions) -> Result<Summary> {
    // The destination first: a wrong destination fails before a tarball is read.
    let (dest, dst_tag): (Box<dyn Dest>, Option<Tag>) = match dst {
        ImageRef::Docker(remote) => (
            Box::new(RegistryDest::open(remote, &opts.dst, opts.upload.clone()).await?),
            Some(remote.tag.clone()),
        ),
        ImageRef::Oci { dir, tag } => (
            Box::new(LayoutDest::create(dir)?),
            Some(tag.clone().map_or(Tag::None, Tag::Tag)),
        ),
        ImageRef::Archive { .. } => {
            return Err(Error::msg(
                "docker-archive: is a source only (copy to docker:// or oci:)",
            ))
        }
    };
    let source = open_source(src, &opts.src).await?;
    let top = source.top().await?;

    // What to copy: images (manifest and blobs), and the index over them with --all.
    let mut images: Vec<Manifest> = Vec::new();
    let mut index: Option<Manifest> = None;
    if top.is_index() {
        let children = children_of(&top)?;
        if opts.all {
            for c in &children {
                let m = source.manifest(c).await?;
                if m.is_index() {
                    return Err(Error::msg(format!(
                        "index {} lists another index: not supported",
                        top.digest
                    )));
                }
                images.push(m);
            }
            index = Some(top);
        } else {
            let want = opts.platform.clone().unwrap_or_else(Platform::host);
            let chosen = children
                .iter()
                .find(|c| c.platform.as_ref().is_some_and(|p| want.matches(p)))
                .ok_or_else(|| {
                    let have: Vec<String> = children
                        .iter()
                        .filter_map(|c| c.platform.as_ref().map(describe_platform))
                        .collect();
                    Error::msg(format!(
                        "no image for {}/{} in the index (it has {}); use --platform or --all",
                        want.os,
                        want.arch,
                        have.join(", ")
                    ))
                })?;
            images.push(source.manifest(chosen).await?);
        }
    } else {
        images.push(top);
    }

    let mut blobs: BTreeMap<String, Descriptor> = BTreeMap::new();
    for m in &images {
        for b in blobs_of(m)? {
            blobs.entry(b.digest.to_string()).or_insert(b);
        }
    }
    let total = blobs.values().map(|b| b.size).sum();
    let progress = Progress::new(opts.quiet, total);
    let dest: Arc<dyn Dest> = Arc::from(dest);
    let jobs = opts.jobs.max(1);
    let work = blobs.into_values().map(|d| {
        let dest = dest.clone();
        let src = source.blob(&d);
        let bar = progress.blob(&d.digest, d.size);
        async move {
            let src = src?;
            match dest.put_blob(&d, src, bar.callback()).await {
                Ok(sent) => {
                    bar.done(&sent);
                    Ok(sent)
                }
                Err(e) => {
                    bar.failed();
                    Err(e.context(format!("blob {}", short(&d.digest))))
                }
            }
        }
    });
    let results: Vec<Sent> = stream::iter(work)
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    progress.finish();

    let mut summary = Summary {
        blobs: results.len(),
        ..Summary::default()
    };
    for r in results {
        match r {
            Sent::Present => summary.present += 1,
            Sent::Mounted => summary.mounted += 1,
            Sent::Uploaded { bytes, .. } => summary.bytes_sent += bytes,
        }
    }

    // Manifests: children by digest, then the top one under the tag.
    let top = index.clone().unwrap_or_else(|| images[0].clone());
    let tag = match dst_tag {
        Some(Tag::Tag(t)) => Some(t),
        Some(Tag::Digest(d)) => {
            if d != top.digest {
                return Err(Error::msg(format!(
                    "the destination names {d}, but the image is {}",
                    top.digest
                )));
            }
            None
        }
        _ => Some(source.tag().unwrap_or_else(|| "latest".to_string())),
    };
    if index.is_some() {
        for m in &images {
            dest.put_manifest(m, None).await?;
            summary.manifests += 1;
        }
    }
    dest.put_manifest(&top, tag.as_deref()).await?;
    summary.manifests += 1;
    summary.digest = top.digest.to_string();
    Ok(summary)
}
