//! Referrers (the list, `OCI-Subject`, the `artifactType` filter) and deletes.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::pull::Fixture;
use super::{ensure, fail, random, skip, Ctx, Keyword::*, Meta};
use crate::digest::{Algorithm, Digest};
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};

const REFERRERS: Meta = Meta { id: "referrers.list", area: "referrers", section: "Listing Referrers (end-12a)", keyword: MUST, title: "referrers of a manifest: 200, an OCI index listing each referrer with artifactType and annotations" };
const OCI_SUBJECT: Meta = Meta {
    id: "referrers.oci-subject",
    area: "referrers",
    section: "Pushing a manifest with a subject field",
    keyword: MUST,
    title: "a registry with the referrers API answers a push with a subject with OCI-Subject",
};
const REFERRERS_FILTER: Meta = Meta {
    id: "referrers.filter",
    area: "referrers",
    section: "Listing Referrers (end-12b)",
    keyword: SHOULD,
    title: "?artifactType= filters, and says so with OCI-Filters-Applied: artifactType",
};
const REFERRERS_EMPTY: Meta = Meta {
    id: "referrers.empty",
    area: "referrers",
    section: "Listing Referrers (end-12a)",
    keyword: MUST,
    title: "referrers of a digest with none: 200 and an empty index (never 404)",
};
const REFERRERS_BAD: Meta = Meta {
    id: "referrers.bad-digest",
    area: "referrers",
    section: "Listing Referrers (end-12a)",
    keyword: MUST,
    title: "referrers of an invalid digest answers 400",
};
const DELETE_TAG: Meta = Meta {
    id: "delete.tag",
    area: "delete",
    section: "Deleting tags (end-9)",
    keyword: MUST,
    title: "DELETE of a tag answers 202 and the tag is gone (or 400/405 when disabled)",
};
const DELETE_MANIFEST: Meta = Meta {
    id: "delete.manifest",
    area: "delete",
    section: "Deleting Manifests (end-9)",
    keyword: MUST,
    title: "DELETE of a manifest by digest answers 202 and it is gone (or 400/405 when disabled)",
};
const DELETE_BLOB: Meta = Meta {
    id: "delete.blob",
    area: "delete",
    section: "Deleting Blobs (end-10)",
    keyword: MUST,
    title:
        "DELETE of a blob answers 202 and it is gone; an unknown one 404 (or 400/405 when disabled)",
};

pub async fn referrers(c: &Ctx, f: &Fixture) {
    let sbom = "application/vnd.example.sbom.v1";
    let sig = "application/vnd.example.signature.v1";
    let pushed = async {
        let ((m, md), _) = f.need()?;
        let empty = c.push_blob(b"{}").await?;
        let mut out = Vec::new();
        for (t, note) in [(sbom, "sbom"), (sig, "sig")] {
            let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": t,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
                "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
                "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()},
                "annotations": {"org.example.note": note}})).unwrap_or_default();
            let d = Digest::of(Algorithm::Sha256, &body);
            let r = c.put_manifest(&d.to_string(), OCI_MANIFEST, &body).await?;
            ensure!(r.status == StatusCode::CREATED, "PUT of a referrer answered {}", r.describe());
            out.push((d, r.header("oci-subject").map(str::to_string)));
        }
        Ok((md.clone(), out))
    }
    .await;
    let (md, refs) = match pushed {
        Ok(x) => x,
        Err(e) => {
            c.record(REFERRERS, Err(e));
            return;
        }
    };
    let first = c
        .req(Method::GET, &c.path(&format!("referrers/{md}")), &[], None)
        .await;
    let supported = matches!(&first, Ok(r) if r.status != StatusCode::NOT_FOUND);
    if !supported {
        let why = "no referrers API (404): clients fall back to the referrers tag schema";
        for m in [
            REFERRERS,
            OCI_SUBJECT,
            REFERRERS_FILTER,
            REFERRERS_EMPTY,
            REFERRERS_BAD,
        ] {
            c.record(m, Err(skip(why)));
        }
        return;
    }
    let r = async {
        let r = first.map_err(super::Verdict::from)?;
        ensure!(r.status == StatusCode::OK, "answered {}", r.describe());
        ensure!(
            r.header("content-type")
                .map(|t| t.split(';').next().unwrap_or(t).trim())
                == Some(OCI_INDEX),
            "Content-Type {:?}",
            r.header("content-type")
        );
        let v = r.json().ok_or_else(|| fail("not JSON"))?;
        let list = v["manifests"]
            .as_array()
            .ok_or_else(|| fail("no manifests array"))?;
        for (d, _) in &refs {
            let e = list
                .iter()
                .find(|e| e["digest"].as_str() == Some(&d.to_string()))
                .ok_or_else(|| fail(format!("{d} is not listed")))?;
            ensure!(
                e["artifactType"].is_string(),
                "{d} is listed without artifactType"
            );
            ensure!(
                e["annotations"]["org.example.note"].is_string(),
                "{d} is listed without its annotations"
            );
        }
        Ok(())
    }
    .await;
    c.record(REFERRERS, r);
    let r = if refs
        .iter()
        .all(|(_, s)| s.as_deref() == Some(&md.to_string()))
    {
        Ok(())
    } else {
        Err(fail(format!(
            "OCI-Subject headers: {:?}",
            refs.iter().map(|r| r.1.clone()).collect::<Vec<_>>()
        )))
    };
    c.record(OCI_SUBJECT, r);
    let r = async {
        let r = c
            .req(
                Method::GET,
                &format!(
                    "{}?artifactType={}",
                    c.path(&format!("referrers/{md}")),
                    sbom
                ),
                &[],
                None,
            )
            .await?;
        ensure!(r.status == StatusCode::OK, "answered {}", r.describe());
        let v = r.json().ok_or_else(|| fail("not JSON"))?;
        let n = v["manifests"].as_array().map(Vec::len).unwrap_or(0);
        if r.header("oci-filters-applied").is_none() {
            return Err(skip(format!(
                "the filter is not applied (no OCI-Filters-Applied; {n} listed)"
            )));
        }
        ensure!(
            r.header("oci-filters-applied") == Some("artifactType"),
            "OCI-Filters-Applied {:?}",
            r.header("oci-filters-applied")
        );
        ensure!(
            n == 1 && v["manifests"][0]["artifactType"].as_str() == Some(sbom),
            "the filtered list has {n} entries"
        );
        Ok(())
    }
    .await;
    c.record(REFERRERS_FILTER, r);
    let r = async {
        let none = Digest::of(Algorithm::Sha256, &random(32));
        let r = c
            .req(
                Method::GET,
                &c.path(&format!("referrers/{none}")),
                &[],
                None,
            )
            .await?;
        ensure!(r.status == StatusCode::OK, "answered {}", r.describe());
        let n = r
            .json()
            .and_then(|v| v["manifests"].as_array().map(Vec::len));
        ensure!(n == Some(0), "the list has {n:?} entries");
        Ok(())
    }
    .await;
    c.record(REFERRERS_EMPTY, r);
    let r = async {
        let r = c
            .req(
                Method::GET,
                &c.path("referrers/sha256:not-a-digest"),
                &[],
                None,
            )
            .await?;
        ensure!(
            r.status == StatusCode::BAD_REQUEST,
            "answered {}",
            r.describe()
        );
        Ok(())
    }
    .await;
    c.record(REFERRERS_BAD, r);
}

fn disabled(r: &super::Resp) -> bool {
    matches!(
        r.status,
        StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED
    ) || r.error_code().as_deref() == Some("UNSUPPORTED")
}

pub async fn delete(c: &Ctx, f: &Fixture) {
    let r = async {
        let ((m, _), _) = f.need()?;
        let r = c.put_manifest("to-delete", OCI_MANIFEST, m).await?;
        ensure!(
            r.status == StatusCode::CREATED,
            "PUT answered {}",
            r.describe()
        );
        let r = c
            .req(Method::DELETE, &c.path("manifests/to-delete"), &[], None)
            .await?;
        if disabled(&r) {
            return Err(skip(format!("tag deletion is disabled ({})", r.describe())));
        }
        ensure!(
            r.status == StatusCode::ACCEPTED,
            "DELETE answered {}",
            r.describe()
        );
        let g = c
            .req(
                Method::GET,
                &c.path("manifests/to-delete"),
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await?;
        ensure!(
            g.status == StatusCode::NOT_FOUND,
            "the tag still answers {}",
            g.describe()
        );
        Ok(())
    }
    .await;
    c.record(DELETE_TAG, r);
    let r = async {
        let img = c.image("delete-me").await?;
        let d = Digest::of(Algorithm::Sha256, &img);
        let r = c.put_manifest("delete-me", OCI_MANIFEST, &img).await?;
        ensure!(
            r.status == StatusCode::CREATED,
            "PUT answered {}",
            r.describe()
        );
        let r = c
            .req(
                Method::DELETE,
                &c.path(&format!("manifests/{d}")),
                &[],
                None,
            )
            .await?;
        if disabled(&r) {
            return Err(skip(format!(
                "manifest deletion is disabled ({})",
                r.describe()
            )));
        }
        ensure!(
            r.status == StatusCode::ACCEPTED,
            "DELETE answered {}",
            r.describe()
        );
        for reference in [d.to_string(), "delete-me".to_string()] {
            let g = c
                .req(
                    Method::GET,
                    &c.path(&format!("manifests/{reference}")),
                    &[("accept", OCI_MANIFEST)],
                    None,
                )
                .await?;
            ensure!(
                g.status == StatusCode::NOT_FOUND,
                "manifests/{reference} still answers {}",
                g.describe()
            );
        }
        c.pushed_manifests.lock().unwrap().retain(|x| x != &d);
        Ok(())
    }
    .await;
    c.record(DELETE_MANIFEST, r);
    let r = async {
        let d = c.push_blob(&random(512)).await?;
        let r = c
            .req(Method::DELETE, &c.path(&format!("blobs/{d}")), &[], None)
            .await?;
        if disabled(&r) {
            return Err(skip(format!(
                "blob deletion is disabled ({})",
                r.describe()
            )));
        }
        ensure!(
            r.status == StatusCode::ACCEPTED,
            "DELETE answered {}",
            r.describe()
        );
        let g = c
            .req(Method::GET, &c.path(&format!("blobs/{d}")), &[], None)
            .await?;
        ensure!(
            g.status == StatusCode::NOT_FOUND,
            "the blob still answers {}",
            g.describe()
        );
        let again = c
            .req(Method::DELETE, &c.path(&format!("blobs/{d}")), &[], None)
            .await?;
        ensure!(
            again.status == StatusCode::NOT_FOUND,
            "a second DELETE answered {}",
            again.describe()
        );
        c.pushed_blobs.lock().unwrap().retain(|x| x != &d);
        Ok(())
    }
    .await;
    c.record(DELETE_BLOB, r);
}
