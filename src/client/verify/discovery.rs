//! Checks of `/v2/`, the auth challenge, tags and the catalog (with pagination), referrers,
//! error bodies and deletes; and the clean-up at the end.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::pull::Fixture;
use super::{ensure, fail, random, skip, Check, Ctx, Keyword::*, Meta};
use crate::client::auth::Challenge;
use crate::digest::{Algorithm, Digest};
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};

const BASE: Meta = Meta {
    id: "base.v2",
    area: "base",
    section: "Determining Support (end-1)",
    keyword: MUST,
    title: "GET /v2/ answers 200 (with the credentials given)",
};
const CHALLENGE: Meta = Meta { id: "auth.challenge", area: "auth", section: "Determining Support (end-1); RFC 7235 §3.1, the token auth protocol", keyword: MUST, title: "a 401 carries a WWW-Authenticate challenge: Bearer with realm (and service), or Basic with realm" };
const UNAUTHORIZED_BODY: Meta = Meta {
    id: "auth.error-code",
    area: "auth",
    section: "Error Codes (code-11 UNAUTHORIZED)",
    keyword: MUST,
    title: "a 401 with a JSON body uses the error format with code UNAUTHORIZED",
};
const TAGS: Meta = Meta {
    id: "tags.list",
    area: "tags",
    section: "Listing Tags (end-8a)",
    keyword: MUST,
    title: "tags/list answers 200 {name, tags} with every tag, in lexical order",
};
const TAGS_N: Meta = Meta {
    id: "tags.n",
    area: "tags",
    section: "Listing Tags (end-8b)",
    keyword: MUST,
    title: "?n=2 returns 2 tags (or fewer with a Link header), the first in order",
};
const TAGS_LINK: Meta = Meta {
    id: "tags.link",
    area: "tags",
    section: "Listing Tags (end-8b)",
    keyword: MAY,
    title: "a page with more after it carries Link: <...>; rel=\"next\", which leads to the rest",
};
const TAGS_LAST: Meta = Meta {
    id: "tags.last",
    area: "tags",
    section: "Listing Tags (end-8b)",
    keyword: MUST,
    title: "?last=T returns the tags after T, T excluded",
};
const TAGS_N0: Meta = Meta {
    id: "tags.n-zero",
    area: "tags",
    section: "Listing Tags (end-8b)",
    keyword: MUST,
    title: "?n=0 returns an empty list and no Link",
};
const TAGS_UNKNOWN: Meta = Meta {
    id: "tags.unknown-repo",
    area: "tags",
    section: "Listing Tags (end-8a)",
    keyword: MUST,
    title: "tags/list of a repository that does not exist answers 404",
};
const CATALOG: Meta = Meta {
    id: "catalog.list",
    area: "catalog",
    section: "Listing Repositories (_catalog: MAY be implemented)",
    keyword: MAY,
    title: "_catalog lists the repository, and pages with ?n= and Link",
};
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
const ERROR_FORMAT: Meta = Meta {
    id: "errors.format",
    area: "errors",
    section: "Error Codes",
    keyword: MUST,
    title:
        "4xx JSON bodies are {errors: [{code, message, detail}]} with codes from the spec's table",
};
const BLOB_UNKNOWN_CODE: Meta = Meta {
    id: "errors.upload-unknown",
    area: "errors",
    section: "Pushing a blob in chunks (end-13); Error Codes (code-3)",
    keyword: MUST,
    title: "an unknown upload session answers 404",
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

const CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

pub async fn base(c: &Ctx) {
    if c.enabled("base") {
        let r = async {
            let r = c.req(Method::GET, "/v2/", &[], None).await?;
            ensure!(
                r.status == StatusCode::OK,
                "GET /v2/ answered {}",
                r.describe()
            );
            Ok(())
        }
        .await;
        c.record(BASE, r);
    }
    if c.enabled("auth") {
        // Without credentials.
        let anon = async {
            let url = c.reg.url(&format!("/v2/{}/tags/list", c.repo))?;
            let r = c
                .reg
                .http()
                .get(url)
                .send()
                .await
                .map_err(crate::client::Error::from)?;
            let status = r.status();
            let header = r
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = crate::client::registry::read_limited(r, 64 * 1024)
                .await
                .unwrap_or_default();
            Ok::<_, crate::client::Error>((status, header, body))
        }
        .await;
        let (status, header, body) = match anon {
            Ok(x) => x,
            Err(e) => {
                c.record(CHALLENGE, Err(fail(e)));
                return;
            }
        };
        if status != StatusCode::UNAUTHORIZED {
            let why = format!("anonymous requests are not challenged here ({status})");
            c.record(CHALLENGE, Err(skip(&why)));
            c.record(UNAUTHORIZED_BODY, Err(skip(&why)));
            return;
        }
        let r = (|| {
            let h = header.ok_or_else(|| fail("the 401 has no WWW-Authenticate"))?;
            let ch = Challenge::parse(&h)
                .ok_or_else(|| fail(format!("WWW-Authenticate {h:?} does not parse")))?;
            match ch.scheme.as_str() {
                "bearer" => {
                    let realm = ch.realm().ok_or_else(|| fail("Bearer without realm"))?;
                    ensure!(
                        reqwest::Url::parse(realm).is_ok(),
                        "realm {realm:?} is not an absolute URL"
                    );
                    ensure!(ch.params.contains_key("service"), "Bearer without service");
                    Ok(())
                }
                "basic" => {
                    ensure!(ch.realm().is_some(), "Basic without realm");
                    Ok(())
                }
                other => Err(fail(format!("scheme {other:?}"))),
            }
        })();
        c.record(CHALLENGE, r);
        let r = (|| {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return Err(skip(
                    "the 401's body is not JSON (the spec allows any format)",
                ));
            };
            ensure!(
                v["errors"][0]["code"].as_str() == Some("UNAUTHORIZED"),
                "code {:?}",
                v["errors"][0]["code"]
            );
            Ok(())
        })();
        c.record(UNAUTHORIZED_BODY, r);
    }
}

fn tags_of(r: &super::Resp) -> Option<Vec<String>> {
    Some(
        r.json()?["tags"]
            .as_array()?
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
    )
}

/// The URL a `Link: <url>; rel="next"` header names.
fn next_link(r: &super::Resp) -> Option<String> {
    let l = r.header("link")?;
    if !l.contains("rel=\"next\"") && !l.contains("rel=next") {
        return None;
    }
    Some(l.split('<').nth(1)?.split('>').next()?.to_string())
}

pub async fn listing(c: &Ctx, f: &Fixture) {
    let setup = async {
        let ((m, _), _) = f.need()?;
        for t in ["b", "a", "c"] {
            let r = c.put_manifest(t, OCI_MANIFEST, m).await?;
            ensure!(
                r.status == StatusCode::CREATED,
                "PUT tag {t}: {}",
                r.describe()
            );
        }
        Ok(())
    }
    .await;
    if c.enabled("tags") {
        let r = async {
            setup.as_ref().map_err(|e| match e {
                super::Verdict::Fail(m) | super::Verdict::Skip(m) => fail(m),
            })?;
            let r = c.req(Method::GET, &c.path("tags/list"), &[], None).await?;
            ensure!(r.status == StatusCode::OK, "answered {}", r.describe());
            let v = r.json().ok_or_else(|| fail("not JSON"))?;
            ensure!(v["name"].as_str() == Some(&c.repo), "name {:?}", v["name"]);
            let tags = tags_of(&r).ok_or_else(|| fail("no tags array"))?;
            for t in ["a", "b", "c", "v1"] {
                ensure!(tags.iter().any(|x| x == t), "tag {t} missing from {tags:?}");
            }
            let mut sorted = tags.clone();
            sorted.sort();
            ensure!(sorted == tags, "not in lexical order: {tags:?}");
            Ok(())
        }
        .await;
        c.record(TAGS, r);
        let mut first_page = None;
        let r = async {
            let r = c
                .req(
                    Method::GET,
                    &format!("{}?n=2", c.path("tags/list")),
                    &[],
                    None,
                )
                .await?;
            ensure!(r.status == StatusCode::OK, "answered {}", r.describe());
            let tags = tags_of(&r).ok_or_else(|| fail("no tags array"))?;
            ensure!(
                tags == ["a", "b"] || (tags.len() < 2 && next_link(&r).is_some()),
                "?n=2 gave {tags:?}"
            );
            first_page = Some(r);
            Ok(())
        }
        .await;
        c.record(TAGS_N, r);
        let r = async {
            let Some(p) = &first_page else {
                return Err(fail("no first page"));
            };
            let Some(next) = next_link(p) else {
                return Err(skip("no Link header on a page with more after it"));
            };
            let r = c.req(Method::GET, &next, &[], None).await?;
            ensure!(
                r.status == StatusCode::OK,
                "the Link answered {}",
                r.describe()
            );
            let tags = tags_of(&r).ok_or_else(|| fail("no tags array"))?;
            ensure!(
                tags.first().map(String::as_str) == Some("c"),
                "the next page starts {tags:?}"
            );
            Ok(())
        }
        .await;
        c.record(TAGS_LINK, r);
        let r = async {
            let r = c
                .req(
                    Method::GET,
                    &format!("{}?last=b", c.path("tags/list")),
                    &[],
                    None,
                )
                .await?;
            ensure!(r.status == StatusCode::OK, "answered {}", r.describe());
            let tags = tags_of(&r).ok_or_else(|| fail("no tags array"))?;
            ensure!(
                tags.first().map(String::as_str) == Some("c")
                    && !tags.iter().any(|t| t == "a" || t == "b"),
                "?last=b gave {tags:?}"
            );
            Ok(())
        }
        .await;
        c.record(TAGS_LAST, r);
        let r = async {
            let r = c
                .req(
                    Method::GET,
                    &format!("{}?n=0", c.path("tags/list")),
                    &[],
                    None,
                )
                .await?;
            ensure!(r.status == StatusCode::OK, "answered {}", r.describe());
            let tags = tags_of(&r).unwrap_or_default();
            ensure!(tags.is_empty(), "?n=0 gave {tags:?}");
            ensure!(r.header("link").is_none(), "?n=0 has a Link header");
            Ok(())
        }
        .await;
        c.record(TAGS_N0, r);
        let r = async {
            let other = format!("{}-none", c.repo);
            let r = c
                .reg
                .request(
                    Method::GET,
                    &format!("/v2/{other}/tags/list"),
                    &crate::client::registry::pull_scope(&other),
                    Default::default(),
                    None,
                )
                .await?;
            ensure!(
                r.status() == StatusCode::NOT_FOUND,
                "answered {}",
                r.status()
            );
            Ok(())
        }
        .await;
        c.record(TAGS_UNKNOWN, r);
    }
    if c.enabled("catalog") {
        let r = async {
            let r = c.req(Method::GET, "/v2/_catalog?n=1000", &[], None).await?;
            if matches!(
                r.status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) || r.error_code().as_deref() == Some("UNSUPPORTED")
            {
                return Err(skip(format!("not implemented ({})", r.describe())));
            }
            ensure!(r.status == StatusCode::OK, "answered {}", r.describe());
            let repos: Vec<String> = r
                .json()
                .and_then(|v| {
                    v["repositories"].as_array().map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                })
                .ok_or_else(|| fail("no repositories array"))?;
            let mut seen = repos.iter().any(|x| x == &c.repo);
            let mut next = next_link(&r);
            let mut pages = 0;
            while !seen && pages < 20 {
                let Some(n) = next.take() else { break };
                let p = c.req(Method::GET, &n, &[], None).await?;
                let more: Vec<String> = p
                    .json()
                    .and_then(|v| {
                        v["repositories"].as_array().map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                    })
                    .unwrap_or_default();
                seen = more.iter().any(|x| x == &c.repo);
                next = next_link(&p);
                pages += 1;
            }
            ensure!(seen, "the catalog does not list {}", c.repo);
            let one = c.req(Method::GET, "/v2/_catalog?n=1", &[], None).await?;
            let n = one
                .json()
                .and_then(|v| v["repositories"].as_array().map(Vec::len));
            ensure!(n == Some(1), "?n=1 gave {n:?} repositories");
            ensure!(
                next_link(&one).is_some() || repos.len() <= 1,
                "?n=1 has no Link header although more repositories exist"
            );
            Ok(())
        }
        .await;
        c.record(CATALOG, r);
    }
}

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

pub async fn errors(c: &Ctx) {
    let r = async {
        let unknown = Digest::of(Algorithm::Sha256, &random(32));
        let mut problems = Vec::new();
        for (m, p) in [
            (Method::GET, c.path(&format!("manifests/{unknown}"))),
            (Method::GET, c.path(&format!("blobs/{unknown}"))),
            (Method::PUT, c.path("manifests/bad")),
        ] {
            let r = c
                .req(
                    m.clone(),
                    &p,
                    &[("content-type", OCI_MANIFEST)],
                    if m == Method::PUT {
                        Some(bytes::Bytes::from_static(b"[]"))
                    } else {
                        None
                    },
                )
                .await?;
            if !r.status.is_client_error() {
                problems.push(format!("{m} {p}: {}", r.status));
                continue;
            }
            let Some(v) = r.json() else { continue };
            let Some(errs) = v["errors"].as_array() else {
                problems.push(format!("{m} {p}: a JSON body without errors"));
                continue;
            };
            for e in errs {
                let code = e["code"].as_str().unwrap_or("");
                if !CODES.contains(&code) {
                    problems.push(format!("{m} {p}: code {code:?} is not in the spec's table"));
                }
            }
        }
        ensure!(problems.is_empty(), "{}", problems.join("; "));
        Ok(())
    }
    .await;
    c.record(ERROR_FORMAT, r);
    let r = async {
        let r = c
            .req(
                Method::GET,
                &c.path("blobs/uploads/00000000-0000-0000-0000-000000000000"),
                &[],
                None,
            )
            .await?;
        ensure!(
            r.status == StatusCode::NOT_FOUND,
            "answered {}",
            r.describe()
        );
        Ok(())
    }
    .await;
    c.record(BLOB_UNKNOWN_CODE, r);
}

fn disabled(r: &super::Resp) -> bool {
    matches!(
        r.status,
        StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED
    ) || r.error_code().as_deref() == Some("UNSUPPORTED")
}

pub async fn delete(c: &Ctx, f: &Fixture) -> () {
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

/// Deletes what the checks pushed, where the registry allows (failures are ignored).
pub async fn clean_up(c: &Ctx) {
    let manifests: Vec<Digest> = c.pushed_manifests.lock().unwrap().drain(..).rev().collect();
    for d in manifests {
        let _ = c
            .req(
                Method::DELETE,
                &c.path(&format!("manifests/{d}")),
                &[],
                None,
            )
            .await;
    }
    let blobs: Vec<Digest> = c.pushed_blobs.lock().unwrap().drain(..).collect();
    for d in blobs {
        let _ = c
            .req(Method::DELETE, &c.path(&format!("blobs/{d}")), &[], None)
            .await;
    }
}

#[allow(dead_code)]
fn _check(_: Check) {}
