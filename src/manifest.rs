//! Manifest validation: media types, the descriptors a manifest references, its subject, and
//! the descriptor it becomes in a referrers list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, ErrorCode};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Layer media types whose content lives elsewhere and need not be in the registry.
const FOREIGN_LAYERS: [&str; 3] = [
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
];

/// An OCI content descriptor as it appears in manifests and in the referrers index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An image (or artifact) manifest: config plus layers.
    Image,
    /// An index or manifest list: a list of manifests.
    Index,
}

/// A manifest that passed validation.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub kind: Kind,
    /// `artifactType`, or for an image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    /// Blobs that must be in the repository: the config and the layers that are not foreign.
    pub blobs: Vec<Digest>,
    /// Manifests that must be in the repository (for an index).
    pub manifests: Vec<Digest>,
    pub subject: Option<Digest>,
    pub annotations: Option<BTreeMap<String, String>>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::ManifestInvalid).with_message(message)
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest, Error> {
    Digest::parse(&d.digest).map_err(|_| {
        invalid("manifest has a descriptor with an invalid digest")
            .with_detail(serde_json::json!({ "digest": d.digest }))
    })
}

/// The media type named by a `Content-Type` header, without parameters; `None` for none or a
/// generic JSON type that says nothing of the manifest.
fn header_media_type(content_type: Option<&str>) -> Option<String> {
    let ct = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    match ct.as_str() {
        "" | "application/json" | "application/octet-stream" | "text/plain" => None,
        _ => Some(ct),
    }
}

impl Manifest {
    /// Validates a manifest body sent with the given `Content-Type`.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, Error> {
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            invalid("manifest is not valid JSON").with_detail(serde_json::json!(e.to_string()))
        })?;
        let header = header_media_type(content_type);
        let media_type = match (header, raw.media_type.clone()) {
            (Some(h), Some(b)) if h != b => {
                return Err(invalid(format!(
                    "Content-Type {h} does not match the manifest's mediaType {b}"
                )))
            }
            (Some(h), _) => h,
            (None, Some(b)) => b,
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) => OCI_MANIFEST.to_string(),
        };
        let kind = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => Kind::Image,
            OCI_INDEX | DOCKER_LIST => Kind::Index,
            other if other.starts_with("application/vnd.docker.distribution.manifest.v1") => {
                return Err(invalid("Docker schema 1 manifests are not supported"))
            }
            other => return Err(invalid(format!("unsupported manifest media type {other}"))),
        };
        if raw.schema_version != Some(2) {
            return Err(invalid("schemaVersion must be 2"));
        }

        let mut blobs = Vec::new();
        let mut manifests = Vec::new();
        let mut artifact_type = raw.artifact_type.clone();
        match kind {
            Kind::Image => {
                if raw.manifests.is_some() {
                    return Err(invalid("an image manifest cannot list manifests"));
                }
                let config = raw
                    .config
                    .as_ref()
                    .ok_or_else(|| invalid("manifest has no config"))?;
                blobs.push(descriptor_digest(config)?);
                for layer in raw.layers.as_deref().unwrap_or_default() {
                    let digest = descriptor_digest(layer)?;
                    let foreign = FOREIGN_LAYERS.contains(&layer.media_type.as_str())
                        || layer.urls.as_ref().is_some_and(|u| !u.is_empty());
                    if !foreign {
                        blobs.push(digest);
                    }
                }
                if raw.layers.is_none() {
                    return Err(invalid("manifest has no layers"));
                }
                if artifact_type.is_none() {
                    artifact_type = Some(config.media_type.clone());
                }
            }
            Kind::Index => {
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(invalid("an index cannot have a config or layers"));
                }
                let list = raw
                    .manifests
                    .as_ref()
                    .ok_or_else(|| invalid("index has no manifests"))?;
                for m in list {
                    manifests.push(descriptor_digest(m)?);
                }
            }
        }
        let subject = raw.subject.as_ref().map(descriptor_digest).transpose()?;
        Ok(Manifest {
            media_type,
            kind,
            artifact_type,
            blobs,
            manifests,
            subject,
            annotations: raw.annotations,
        })
    }

    /// The descriptor this manifest is listed by in its subject's referrers.
    pub fn referrer_descriptor(&self, digest: &Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: digest.to_string(),
            size,
            artifact_type: self.artifact_type.clone(),
            annotations: self.annotations.clone().filter(|a| !a.is_empty()),
            urls: None,
            platform: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest() {
        let m = Manifest::parse(Some(OCI_MANIFEST), image("").as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::Image);
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(m.subject.is_none());
    }

    #[test]
    fn artifact_with_subject() {
        let body = image(&format!(
            r#","artifactType":"application/vnd.example.sbom","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1}},"annotations":{{"a":"b"}}"#
        ));
        let m = Manifest::parse(None, body.as_bytes()).unwrap();
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(m.subject.as_ref().unwrap().to_string(), D1);
        let d = m.referrer_descriptor(&Digest::parse(D2).unwrap(), 10);
        assert_eq!(d.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn index() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let m = Manifest::parse(Some(DOCKER_LIST), body.as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert!(m.artifact_type.is_none());
    }

    #[test]
    fn foreign_layers_are_not_required() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{D1}","size":1}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","size":1,"urls":["https://example.com/x"]}}]}}"#
        );
        let m = Manifest::parse(Some(DOCKER_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.blobs.len(), 1);
    }

    #[test]
    fn invalid_manifests() {
        let bad_digest = image("").replace(D2, "sha256:xyz");
        let cases: Vec<(Option<&str>, String)> = vec![
            (Some(OCI_MANIFEST), "not json".into()),
            (Some(OCI_MANIFEST), "[]".into()),
            (Some(OCI_MANIFEST), "{}".into()),
            (Some(DOCKER_MANIFEST), image("")),
            (
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                r#"{"schemaVersion":1}"#.into(),
            ),
            (Some("application/x-whatever"), image("")),
            (
                Some(OCI_MANIFEST),
                image("").replace("\"schemaVersion\":2", "\"schemaVersion\":3"),
            ),
            (Some(OCI_MANIFEST), bad_digest),
            (
                Some(OCI_MANIFEST),
                image("").replace("\"size\":3", "\"size\":-3"),
            ),
            (
                Some(OCI_INDEX),
                format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}"}}"#),
            ),
            (
                Some(OCI_MANIFEST),
                format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#),
            ),
        ];
        for (ct, body) in cases {
            let e = Manifest::parse(ct, body.as_bytes()).unwrap_err();
            assert_eq!(e.code, ErrorCode::ManifestInvalid, "{ct:?} {body}");
        }
    }
}
