//! Checks of `/v2/`, the auth challenge and error bodies; and the clean-up at the end.

use reqwest::{Method, StatusCode};

use super::{ensure, fail, random, skip, Ctx, Keyword::*, Meta};
use crate::client::auth::Challenge;
use crate::digest::{Algorithm, Digest};
use crate::manifest::OCI_MANIFEST;

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
