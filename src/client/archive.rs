//! `docker save` / `podman save` tarballs (`docker-archive:FILE[:REF]`, `-` for stdin):
//! `manifest.json` lists each image's config and layer tars, which become a proper OCI image
//! manifest (the layers as they are in the tarball: `tar`, or `tar+gzip` / `tar+zstd` when
//! compressed). The tarball is read once, in order: a file's members are hashed where they
//! lie and read from there later; stdin's are spooled to temp files as they pass (the
//! manifest may come last), hashed on the way. Nothing is held in memory.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;

use super::registry::Manifest;
use super::source::{Descriptor, Source};
use super::stream::{BlobRead, FileRange};
use super::{Error, Result};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::manifest::OCI_MANIFEST;

/// One member of the tarball: where its bytes are, their digest and size.
#[derive(Debug, Clone)]
struct Member {
    file: PathBuf,
    start: u64,
    size: u64,
    digest: Digest,
    /// The first bytes (to tell gzip and zstd from plain tar).
    magic: [u8; 4],
}

pub struct Archive {
    members: HashMap<String, Member>,
    manifest: Manifest,
    tag: Option<String>,
    /// Spooled members of a tarball read from stdin, removed on drop.
    _spool: Option<tempfile::TempDir>,
}

/// A member's path as `manifest.json` names it: no `./`, no leading `/`.
fn clean(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// Hashes `r` while copying it to `out` (if given); returns the digest, size and magic.
fn hash_copy(
    r: &mut dyn Read,
    mut out: Option<&mut std::fs::File>,
) -> std::io::Result<(Digest, u64, [u8; 4])> {
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    let mut magic = [0u8; 4];
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        for (i, b) in buf[..k].iter().enumerate() {
            if (n as usize) + i < 4 {
                magic[n as usize + i] = *b;
            }
        }
        h.update(&buf[..k]);
        if let Some(o) = out.as_deref_mut() {
            std::io::Write::write_all(o, &buf[..k])?;
        }
        n += k as u64;
    }
    Ok((h.finish(), n, magic))
}

impl Archive {
    /// Reads the tarball at `path` (`-`: stdin) and builds the manifest of the image `image`
    /// names (`name:tag` or `@N`; the only image when `None`). Blocking: run it off the
    /// runtime's threads.
    pub fn open(path: &str, image: Option<&str>) -> Result<Archive> {
        let what = if path == "-" {
            "stdin".to_string()
        } else {
            path.to_string()
        };
        let fail = |e: &dyn std::fmt::Display| Error::msg(format!("docker-archive {what}: {e}"));
        let mut members = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let spool = if path == "-" {
            let dir = tempfile::Builder::new()
                .prefix("edge-registry-archive-")
                .tempdir()?;
            let stdin = std::io::stdin();
            let mut ar = tar::Archive::new(stdin.lock());
            let mut i = 0;
            for entry in ar.entries().map_err(|e| fail(&e))? {
                let mut entry = entry.map_err(|e| fail(&format!("not a readable tarball: {e}")))?;
                let name = clean(&entry.path().map_err(|e| fail(&e))?);
                let kind = entry.header().entry_type();
                if kind.is_symlink() || kind.is_hard_link() {
                    if let Ok(Some(target)) = entry.link_name() {
                        links.push((name, link_target(&entry, &target, kind.is_symlink())));
                    }
                    continue;
                }
                if !kind.is_file() {
                    continue;
                }
                let file = dir.path().join(i.to_string());
                i += 1;
                let mut out = std::fs::File::create(&file)?;
                let (digest, size, magic) = hash_copy(&mut entry, Some(&mut out))
                    .map_err(|e| fail(&format!("not a readable tarball: {e}")))?;
                members.insert(
                    name,
                    Member {
                        file,
                        start: 0,
                        size,
                        digest,
                        magic,
                    },
                );
            }
            Some(dir)
        } else {
            let mut f = std::fs::File::open(path).map_err(|e| fail(&e))?;
            let mut ar = tar::Archive::new(&mut f);
            let mut found = Vec::new();
            for entry in ar.entries().map_err(|e| fail(&e))? {
                let mut entry = entry.map_err(|e| fail(&format!("not a readable tarball: {e}")))?;
                let name = clean(&entry.path().map_err(|e| fail(&e))?);
                let kind = entry.header().entry_type();
                if kind.is_symlink() || kind.is_hard_link() {
                    if let Ok(Some(target)) = entry.link_name() {
                        links.push((name, link_target(&entry, &target, kind.is_symlink())));
                    }
                    continue;
                }
                if !kind.is_file() {
                    continue;
                }
                let start = entry.raw_file_position();
                let (digest, size, magic) = hash_copy(&mut entry, None)
                    .map_err(|e| fail(&format!("not a readable tarball: {e}")))?;
                found.push((
                    name,
                    Member {
                        file: PathBuf::from(path),
                        start,
                        size,
                        digest,
                        magic,
                    },
                ));
            }
            members.extend(found);
            None
        };
        for (name, target) in links {
            if let Some(m) = members.get(&target).cloned() {
                members.insert(name, m);
            }
        }
        let manifest_json = members
            .get("manifest.json")
            .ok_or_else(|| fail(&"no manifest.json: not a docker save tarball"))?;
        let list = read_member(manifest_json, 1 << 20).map_err(|e| fail(&e))?;
        let list: Vec<serde_json::Value> = serde_json::from_slice(&list)
            .map_err(|e| fail(&format!("manifest.json is not a list of images: {e}")))?;
        let (chosen, tag) = choose(&list, image).map_err(|e| fail(&e))?;
        let entry = &list[chosen];
        let member = |name: &str| -> Result<Member> {
            members
                .get(&clean(Path::new(name)))
                .cloned()
                .ok_or_else(|| {
                    fail(&format!(
                        "manifest.json names {name}, which is not in the tarball"
                    ))
                })
        };
        let config_name = entry["Config"]
            .as_str()
            .ok_or_else(|| fail(&"manifest.json: an image without Config"))?;
        let config = member(config_name)?;
        let mut layers = Vec::new();
        for l in entry["Layers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let name = l
                .as_str()
                .ok_or_else(|| fail(&"manifest.json: a layer that is not a path"))?;
            let m = member(name)?;
            let media = match m.magic {
                [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
                [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/vnd.oci.image.layer.v1.tar",
            };
            layers.push(json!({"mediaType": media, "digest": m.digest, "size": m.size}));
        }
        if layers.is_empty() {
            return Err(fail(&"the image has no layers"));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config.digest,
                "size": config.size,
            },
            "layers": layers,
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
        let manifest = Manifest::from_bytes(bytes, Some(OCI_MANIFEST))?;
        let by_digest = members
            .into_values()
            .map(|m| (m.digest.to_string(), m))
            .collect();
        Ok(Archive {
            members: by_digest,
            manifest,
            tag,
            _spool: spool,
        })
    }
}

/// A link's target as a member name: a symlink is relative to the link's folder.
fn link_target<R: Read>(entry: &tar::Entry<'_, R>, target: &Path, symlink: bool) -> String {
    if !symlink || target.is_absolute() {
        return clean(target);
    }
    let base = entry
        .path()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    clean(&base.join(target))
}

fn read_member(m: &Member, limit: u64) -> Result<Vec<u8>> {
    if m.size > limit {
        return Err(Error::msg("manifest.json is too large"));
    }
    let mut f = std::fs::File::open(&m.file)?;
    f.seek(SeekFrom::Start(m.start))?;
    let mut out = Vec::new();
    f.take(m.size).read_to_end(&mut out)?;
    Ok(out)
}

/// Which image of `manifest.json`: `@N`, a `RepoTags` entry, or the only one.
fn choose(list: &[serde_json::Value], image: Option<&str>) -> Result<(usize, Option<String>)> {
    let tags = |i: usize| -> Vec<String> {
        list[i]["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let tag_of = |t: &str| {
        t.rsplit_once(':')
            .map(|(_, t)| t.to_string())
            .filter(|t| !t.contains('/'))
    };
    match image {
        Some(i) if i.starts_with('@') => {
            let n: usize = i[1..]
                .parse()
                .map_err(|_| Error::msg(format!("{i}: not @N")))?;
            if n >= list.len() {
                return Err(Error::msg(format!(
                    "{i}: the tarball holds {} images",
                    list.len()
                )));
            }
            Ok((n, tags(n).first().and_then(|t| tag_of(t))))
        }
        Some(want) => {
            for i in 0..list.len() {
                for t in tags(i) {
                    let short = t
                        .trim_start_matches("docker.io/")
                        .trim_start_matches("library/")
                        .to_string();
                    if t == want || short == want || short == want.trim_start_matches("library/") {
                        return Ok((i, tag_of(want)));
                    }
                }
            }
            Err(Error::msg(format!("no image {want} in the tarball")))
        }
        None if list.len() == 1 => Ok((0, tags(0).first().and_then(|t| tag_of(t)))),
        None if list.is_empty() => Err(Error::msg("manifest.json lists no images")),
        None => Err(Error::msg(format!(
            "the tarball holds {} images: name one as docker-archive:FILE:NAME:TAG or :@N",
            list.len()
        ))),
    }
}

#[async_trait]
impl Source for Archive {
    async fn top(&self) -> Result<Manifest> {
        Ok(self.manifest.clone())
    }

    async fn manifest(&self, d: &Descriptor) -> Result<Manifest> {
        Err(Error::msg(format!(
            "no manifest {} in a docker archive",
            d.digest
        )))
    }

    fn blob(&self, d: &Descriptor) -> Result<Arc<dyn BlobRead>> {
        let m = self
            .members
            .get(&d.digest.to_string())
            .ok_or_else(|| Error::msg(format!("no blob {} in the tarball", d.digest)))?;
        Ok(Arc::new(FileRange {
            path: m.file.clone(),
            start: m.start,
            len: m.size,
        }))
    }

    fn tag(&self) -> Option<String> {
        self.tag.clone()
    }
}
