//! Pull and manifest checks, on a fixture image pushed once: GET and HEAD of manifests and
//! blobs, ranges, unknown content, the manifest media types, exact bytes, size limits,
//! missing blobs and invalid manifests.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{ensure, fail, random, skip, Check, Ctx, Keyword::*, Meta};
use crate::digest::{Algorithm, Digest};
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// Bytes and their digest.
pub type Content = (Vec<u8>, Digest);

/// An image pushed for the pull checks: its manifest (tag `v1`), a layer, and the bytes.
pub struct Fixture {
    pub manifest: Option<Content>,
    pub layer: Option<Content>,
    pub error: String,
}

impl Fixture {
    pub async fn make(c: &Ctx) -> Fixture {
        let go = async {
            let layer = random(4096);
            let ld = c.push_blob(&layer).await?;
            let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [ld]}})).unwrap_or_default();
            let cd = c.push_blob(&config).await?;
            // Not canonical JSON (spaces, key order): stored bytes must come back as sent.
            let m = format!(
                "{{ \"schemaVersion\": 2, \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"size\": {}, \"digest\": \"{cd}\"}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar\", \"digest\": \"{ld}\", \"size\": {}}}] }}",
                config.len(),
                layer.len()
            )
            .into_bytes();
            let r = c.put_manifest("v1", OCI_MANIFEST, &m).await?;
            if r.status != StatusCode::CREATED {
                return Err(super::Error::msg(format!(
                    "PUT manifest v1 answered {}",
                    r.describe()
                )));
            }
            let md = Digest::of(Algorithm::Sha256, &m);
            Ok::<_, super::Error>(((m, md), (layer, ld)))
        };
        match go.await {
            Ok((m, l)) => Fixture {
                manifest: Some(m),
                layer: Some(l),
                error: String::new(),
            },
            Err(e) => Fixture {
                manifest: None,
                layer: None,
                error: e.0,
            },
        }
    }

    pub fn need(&self) -> Result<(&Content, &Content), super::Verdict> {
        match (&self.manifest, &self.layer) {
            (Some(m), Some(l)) => Ok((m, l)),
            _ => Err(fail(format!(
                "the test image could not be pushed: {}",
                self.error
            ))),
        }
    }
}

const MANIFEST_GET: Meta = Meta {
    id: "pull.manifest-by-tag",
    area: "pull",
    section: "Pulling manifests (end-3)",
    keyword: MUST,
    title: "GET a manifest by tag: 200, Content-Type of the pushed type, the bytes as pushed",
};
const MANIFEST_DIGEST_HEADER: Meta = Meta {
    id: "pull.manifest-digest-header",
    area: "pull",
    section: "Pulling manifests (end-3)",
    keyword: SHOULD,
    title: "a manifest GET carries Docker-Content-Digest, the digest of its bytes",
};
const MANIFEST_BY_DIGEST: Meta = Meta {
    id: "pull.manifest-by-digest",
    area: "pull",
    section: "Pulling manifests (end-3)",
    keyword: MUST,
    title: "GET a manifest by digest: 200 with the same bytes",
};
const MANIFEST_HEAD: Meta = Meta {
    id: "pull.manifest-head",
    area: "pull",
    section: "Checking if content exists (end-3)",
    keyword: MUST,
    title: "HEAD a manifest: 200, Content-Length, Docker-Content-Digest, no body",
};
const MANIFEST_UNKNOWN: Meta = Meta {
    id: "pull.manifest-unknown",
    area: "pull",
    section: "Pulling manifests (end-3)",
    keyword: MUST,
    title: "an unknown tag or digest answers 404",
};
const BLOB_GET: Meta = Meta {
    id: "pull.blob-get",
    area: "pull",
    section: "Pulling blobs (end-2)",
    keyword: MUST,
    title: "GET a blob: 200, its bytes, Docker-Content-Digest",
};
const BLOB_HEAD: Meta = Meta {
    id: "pull.blob-head",
    area: "pull",
    section: "Checking if content exists (end-2)",
    keyword: MUST,
    title: "HEAD a blob: 200 with Content-Length",
};
const BLOB_UNKNOWN: Meta = Meta {
    id: "pull.blob-unknown",
    area: "pull",
    section: "Pulling blobs (end-2)",
    keyword: MUST,
    title: "an unknown blob answers 404 (GET and HEAD)",
};
const RANGE: Meta = Meta {
    id: "pull.range",
    area: "pull",
    section: "Range request support",
    keyword: SHOULD,
    title: "GET with Range: bytes=a-b answers 206 with those bytes",
};

const PUT_TYPES: Meta = Meta { id: "manifests.media-types", area: "manifests", section: "Pushing Manifests (end-7)", keyword: SHOULD, title: "OCI index, Docker schema 2 manifest and manifest list are stored and served with their type" };
const PUT_BY_DIGEST: Meta = Meta {
    id: "manifests.put-by-digest",
    area: "manifests",
    section: "Pushing Manifests (end-7)",
    keyword: MUST,
    title: "PUT a manifest by digest: 201, Location, Docker-Content-Digest equal to it",
};
const PUT_HEADERS: Meta = Meta {
    id: "manifests.put-headers",
    area: "manifests",
    section: "Pushing Manifests (end-7)",
    keyword: MUST,
    title: "PUT a manifest by tag: 201 with Location and Docker-Content-Digest",
};
const SUBJECT_FIRST: Meta = Meta {
    id: "manifests.subject-missing",
    area: "manifests",
    section: "Push",
    keyword: MUST,
    title: "a manifest whose subject does not exist yet is accepted",
};
const BLOB_UNKNOWN_PUT: Meta = Meta {
    id: "manifests.blob-unknown",
    area: "manifests",
    section: "Push",
    keyword: MUST,
    title: "a manifest naming a missing blob is accepted, or refused with MANIFEST_BLOB_UNKNOWN",
};
const TOO_LARGE: Meta = Meta {
    id: "manifests.size-limit",
    area: "manifests",
    section: "Pushing Manifests (end-7)",
    keyword: SHOULD,
    title: "a manifest over the registry's limit (here 4 MiB + 1) gets 413",
};
const INVALID: Meta = Meta {
    id: "manifests.invalid",
    area: "manifests",
    section: "Error Codes (code-6 MANIFEST_INVALID)",
    keyword: MUST,
    title: "a body that is not a manifest is refused with 400 (MANIFEST_INVALID)",
};

pub async fn pull(c: &Ctx, f: &Fixture) {
    let r = async {
        let ((m, md), _) = f.need()?;
        let r = c
            .req(
                Method::GET,
                &c.path("manifests/v1"),
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await?;
        ensure!(r.status == StatusCode::OK, "GET answered {}", r.describe());
        ensure!(
            r.header("content-type")
                .map(|t| t.split(';').next().unwrap_or(t).trim())
                == Some(OCI_MANIFEST),
            "Content-Type {:?}",
            r.header("content-type")
        );
        ensure!(
            r.body.as_ref() == m.as_slice(),
            "the bytes differ from those pushed"
        );
        let dh = r.header("docker-content-digest").map(str::to_string);
        c.record(
            MANIFEST_DIGEST_HEADER,
            if dh.as_deref() == Some(&md.to_string()) {
                Ok(())
            } else {
                Err(fail(format!("Docker-Content-Digest {dh:?}")))
            },
        );
        Ok(())
    }
    .await;
    c.record(MANIFEST_GET, r);
    let r = async {
        let ((m, md), _) = f.need()?;
        let r = c
            .req(
                Method::GET,
                &c.path(&format!("manifests/{md}")),
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await?;
        ensure!(
            r.status == StatusCode::OK && r.body.as_ref() == m.as_slice(),
            "GET by digest answered {} ({} bytes)",
            r.describe(),
            r.body.len()
        );
        Ok(())
    }
    .await;
    c.record(MANIFEST_BY_DIGEST, r);
    let r = async {
        let ((m, md), _) = f.need()?;
        let r = c
            .req(
                Method::HEAD,
                &c.path("manifests/v1"),
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await?;
        ensure!(r.status == StatusCode::OK, "HEAD answered {}", r.describe());
        ensure!(
            r.header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                == Some(m.len()),
            "Content-Length {:?}, not {}",
            r.header("content-length"),
            m.len()
        );
        ensure!(
            r.header("docker-content-digest") == Some(&md.to_string()),
            "Docker-Content-Digest {:?}",
            r.header("docker-content-digest")
        );
        ensure!(r.body.is_empty(), "HEAD has a body");
        Ok(())
    }
    .await;
    c.record(MANIFEST_HEAD, r);
    let r = async {
        let unknown = Digest::of(Algorithm::Sha256, &random(32));
        for reference in ["no-such-tag".to_string(), unknown.to_string()] {
            let r = c
                .req(
                    Method::GET,
                    &c.path(&format!("manifests/{reference}")),
                    &[("accept", OCI_MANIFEST)],
                    None,
                )
                .await?;
            ensure!(
                r.status == StatusCode::NOT_FOUND,
                "GET manifests/{reference} answered {}",
                r.describe()
            );
        }
        Ok(())
    }
    .await;
    c.record(MANIFEST_UNKNOWN, r);
    let r = async {
        let (_, (l, ld)) = f.need()?;
        let r = c
            .req(Method::GET, &c.path(&format!("blobs/{ld}")), &[], None)
            .await?;
        ensure!(
            r.status == StatusCode::OK && r.body.as_ref() == l.as_slice(),
            "GET answered {} ({} bytes)",
            r.describe(),
            r.body.len()
        );
        ensure!(
            r.header("docker-content-digest") == Some(&ld.to_string()),
            "Docker-Content-Digest {:?}",
            r.header("docker-content-digest")
        );
        Ok(())
    }
    .await;
    c.record(BLOB_GET, r);
    let r = async {
        let (_, (l, ld)) = f.need()?;
        let r = c
            .req(Method::HEAD, &c.path(&format!("blobs/{ld}")), &[], None)
            .await?;
        ensure!(r.status == StatusCode::OK, "HEAD answered {}", r.describe());
        ensure!(
            r.header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                == Some(l.len()),
            "Content-Length {:?}",
            r.header("content-length")
        );
        Ok(())
    }
    .await;
    c.record(BLOB_HEAD, r);
    let r = async {
        let unknown = Digest::of(Algorithm::Sha256, &random(32));
        for m in [Method::GET, Method::HEAD] {
            let r = c
                .req(m.clone(), &c.path(&format!("blobs/{unknown}")), &[], None)
                .await?;
            ensure!(
                r.status == StatusCode::NOT_FOUND,
                "{m} of an unknown blob answered {}",
                r.describe()
            );
        }
        Ok(())
    }
    .await;
    c.record(BLOB_UNKNOWN, r);
    let r = async {
        let (_, (l, ld)) = f.need()?;
        let r = c
            .req(
                Method::GET,
                &c.path(&format!("blobs/{ld}")),
                &[("range", "bytes=100-199")],
                None,
            )
            .await?;
        if r.status == StatusCode::OK {
            return Err(fail("Range was ignored (200 with the whole blob)"));
        }
        ensure!(
            r.status == StatusCode::PARTIAL_CONTENT,
            "answered {}",
            r.describe()
        );
        ensure!(r.body.as_ref() == &l[100..200], "the 206 holds other bytes");
        Ok(())
    }
    .await;
    c.record(RANGE, r);
}

pub async fn manifests(c: &Ctx, f: &Fixture) {
    let r = async {
        let ((m, md), _) = f.need()?;
        let r = c.put_manifest("v1", OCI_MANIFEST, m).await?;
        ensure!(
            r.status == StatusCode::CREATED,
            "PUT answered {}",
            r.describe()
        );
        ensure!(r.header("location").is_some(), "the 201 has no Location");
        ensure!(
            r.header("docker-content-digest") == Some(&md.to_string()),
            "Docker-Content-Digest {:?}",
            r.header("docker-content-digest")
        );
        Ok(())
    }
    .await;
    c.record(PUT_HEADERS, r);
    let r = async {
        let ((m, md), _) = f.need()?;
        let r = c.put_manifest(&md.to_string(), OCI_MANIFEST, m).await?;
        ensure!(
            r.status == StatusCode::CREATED,
            "PUT by digest answered {}",
            r.describe()
        );
        ensure!(r.header("location").is_some(), "the 201 has no Location");
        ensure!(
            r.header("docker-content-digest") == Some(&md.to_string()),
            "Docker-Content-Digest {:?}",
            r.header("docker-content-digest")
        );
        Ok(())
    }
    .await;
    c.record(PUT_BY_DIGEST, r);
    let r = media_types(c, f).await;
    c.record(PUT_TYPES, r);
    let r = async {
        let missing = Digest::of(Algorithm::Sha256, &random(32));
        let img = c.image("subject-first").await?;
        let mut v: serde_json::Value =
            serde_json::from_slice(&img).map_err(|e| fail(e.to_string()))?;
        v["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": missing, "size": 123});
        let body = serde_json::to_vec(&v).unwrap_or_default();
        let d = Digest::of(Algorithm::Sha256, &body);
        let r = c.put_manifest(&d.to_string(), OCI_MANIFEST, &body).await?;
        ensure!(r.status == StatusCode::CREATED, "answered {}", r.describe());
        Ok(())
    }
    .await;
    c.record(SUBJECT_FIRST, r);
    let r = async {
        let missing = Digest::of(Algorithm::Sha256, &random(32));
        let config = c.push_blob(b"{}").await?;
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 10}]})).unwrap_or_default();
        let r = c.put_manifest("missing-blob", OCI_MANIFEST, &body).await?;
        if r.status == StatusCode::CREATED {
            return Err(skip("accepted: this registry does not check a manifest's blobs (the spec allows it)"));
        }
        ensure!(r.status.is_client_error() && r.error_code().as_deref() == Some("MANIFEST_BLOB_UNKNOWN"), "refused with {} (the spec says MANIFEST_BLOB_UNKNOWN)", r.describe());
        Ok(())
    }
    .await;
    c.record(BLOB_UNKNOWN_PUT, r);
    let r = async {
        let (_, (_, ld)) = f.need()?;
        let config = c.push_blob(b"{}").await?;
        let mut body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": 4096}],
            "annotations": {"padding": ""}})).unwrap_or_default();
        // Pad the annotation up to 4 MiB + 1 bytes.
        let pad = (4 << 20) + 1 - body.len();
        let at = body.len() - 3;
        body.splice(at..at, std::iter::repeat_n(b'x', pad));
        let r = c.put_manifest("too-large", OCI_MANIFEST, &body).await?;
        if r.status == StatusCode::CREATED {
            return Err(skip("accepted: this registry takes manifests over 4 MiB"));
        }
        ensure!(r.status == StatusCode::PAYLOAD_TOO_LARGE, "refused with {} (the spec says 413)", r.describe());
        Ok(())
    }
    .await;
    c.record(TOO_LARGE, r);
    let r = async {
        let r = c
            .put_manifest("invalid", OCI_MANIFEST, b"{ this is not json")
            .await?;
        ensure!(
            r.status == StatusCode::BAD_REQUEST,
            "answered {}",
            r.describe()
        );
        ensure!(
            r.error_code().as_deref() == Some("MANIFEST_INVALID"),
            "answered {} (expected MANIFEST_INVALID)",
            r.describe()
        );
        Ok(())
    }
    .await;
    c.record(INVALID, r);
}

async fn media_types(c: &Ctx, f: &Fixture) -> Check {
    let ((m, md), (_, ld)) = f.need()?;
    let config = c
        .push_blob(b"{\"architecture\":\"arm64\",\"os\":\"linux\"}")
        .await?;
    let docker = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 37},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": 4096}]})).unwrap_or_default();
    let dd = Digest::of(Algorithm::Sha256, &docker);
    let list = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": dd, "size": docker.len(), "platform": {"architecture": "arm64", "os": "linux"}}]})).unwrap_or_default();
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}]})).unwrap_or_default();
    let mut failed = Vec::new();
    for (tag, t, body) in [
        ("docker-v2", DOCKER_MANIFEST, &docker),
        ("docker-list", DOCKER_LIST, &list),
        ("oci-index", OCI_INDEX, &index),
    ] {
        let r = c.put_manifest(tag, t, body).await?;
        if r.status != StatusCode::CREATED {
            failed.push(format!("{t}: PUT answered {}", r.describe()));
            continue;
        }
        let g = c
            .req(
                Method::GET,
                &c.path(&format!("manifests/{tag}")),
                &[("accept", t)],
                None,
            )
            .await?;
        let ct = g
            .header("content-type")
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        if g.status != StatusCode::OK
            || ct.as_deref() != Some(t)
            || g.body.as_ref() != body.as_slice()
        {
            failed.push(format!(
                "{t}: GET answered {} with Content-Type {ct:?}",
                g.describe()
            ));
        }
    }
    ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(())
}
