//! Push checks: POST then PUT, single POST, chunks (and their order, status and minimum),
//! cancelling, mounts, sha512 and a wrong digest.

use bytes::Bytes;
use reqwest::{Method, StatusCode};

use super::{ensure, fail, random, skip, with_query, Check, Ctx, Keyword::*, Meta};
use crate::digest::{Algorithm, Digest};

const POST_PUT: Meta = Meta { id: "push.post-put", area: "push", section: "Pushing blobs / POST then PUT (end-4a, end-6)", keyword: MUST, title: "POST opens a session (202 + Location), PUT ?digest= with the blob completes it (201 + Location)" };
const SINGLE_POST: Meta = Meta { id: "push.single-post", area: "push", section: "Pushing blobs / Single POST (end-4b)", keyword: MAY, title: "POST ?digest= with the blob stores it in one request (201 + Location); if unsupported, 202 + Location" };
const CHUNKED: Meta = Meta { id: "push.chunked", area: "push", section: "Pushing a blob in chunks (end-5, end-6)", keyword: MUST, title: "PATCH chunks answer 202 with Location and Range 0-<end>; PUT ?digest= closes the session (201)" };
const CHUNK_MIN: Meta = Meta {
    id: "push.chunk-min-length",
    area: "push",
    section: "Pushing a blob in chunks",
    keyword: SHOULD,
    title: "OCI-Chunk-Min-Length on the POST, if present, is a size in bytes",
};
const OUT_OF_ORDER: Meta = Meta {
    id: "push.out-of-order",
    area: "push",
    section: "Pushing a blob in chunks (end-5)",
    keyword: MUST,
    title: "a chunk that does not start at the end of the last one gets 416",
};
const STATUS: Meta = Meta {
    id: "push.upload-status",
    area: "push",
    section: "Pushing a blob in chunks (end-13)",
    keyword: MUST,
    title: "GET on an upload answers 204 with Location and Range 0-<end>",
};
const LAST_IN_PUT: Meta = Meta {
    id: "push.last-chunk-in-put",
    area: "push",
    section: "Pushing a blob in chunks (end-6)",
    keyword: MUST,
    title: "the final chunk may come in the closing PUT",
};
const DIGEST_MISMATCH: Meta = Meta {
    id: "push.digest-mismatch",
    area: "push",
    section: "Pushing blobs; Error Codes (code-4 DIGEST_INVALID)",
    keyword: MUST,
    title:
        "a PUT whose digest does not match the bytes is refused (4xx), and the blob is not stored",
};
const CANCEL: Meta = Meta {
    id: "push.cancel",
    area: "push",
    section: "Cancel a blob upload (end-14)",
    keyword: SHOULD,
    title: "DELETE on an upload answers 204, and the session is gone (404)",
};
const MOUNT: Meta = Meta {
    id: "push.mount",
    area: "push",
    section: "Mounting a blob from another repository (end-11)",
    keyword: MAY,
    title: "POST ?mount=&from= mounts a blob of another repository (201 + Location)",
};
const MOUNT_FALLBACK: Meta = Meta {
    id: "push.mount-fallback",
    area: "push",
    section: "Mounting a blob from another repository (end-11)",
    keyword: SHOULD,
    title: "a mount that cannot be done opens an upload session instead (202)",
};
const SHA512: Meta = Meta {
    id: "push.sha512",
    area: "push",
    section: "Pushing blobs; OCI Image Spec, Digests (sha512 is registered)",
    keyword: MAY,
    title: "a blob pushed with a sha512 digest is stored and served under it",
};
const HEAD_AFTER: Meta = Meta {
    id: "push.head-after-push",
    area: "push",
    section: "Checking if content exists (end-2)",
    keyword: MUST,
    title: "a pushed blob answers HEAD with 200, Content-Length and Docker-Content-Digest",
};

async fn open(c: &Ctx) -> Result<(String, Option<String>), super::Verdict> {
    let r = c
        .req(
            Method::POST,
            &c.path("blobs/uploads/"),
            &[("content-length", "0")],
            None,
        )
        .await?;
    ensure!(
        r.status == StatusCode::ACCEPTED,
        "POST blobs/uploads/ answered {}",
        r.describe()
    );
    let loc = r
        .header("location")
        .ok_or_else(|| fail("the 202 has no Location"))?;
    Ok((
        c.reg.url(loc)?.to_string(),
        r.header("oci-chunk-min-length").map(str::to_string),
    ))
}

async fn post_put(c: &Ctx) -> Check {
    let data = random(2048);
    let d = Digest::of(Algorithm::Sha256, &data);
    let (loc, _) = open(c).await?;
    let r = c
        .req(
            Method::PUT,
            &with_query(&c.reg.url(&loc)?, "digest", &d.to_string()),
            &[("content-type", "application/octet-stream")],
            Some(Bytes::from(data)),
        )
        .await?;
    ensure!(
        r.status == StatusCode::CREATED,
        "PUT answered {}",
        r.describe()
    );
    ensure!(r.header("location").is_some(), "the 201 has no Location");
    c.pushed_blobs.lock().unwrap().push(d.clone());
    head_after(c, &d, 2048).await
}

async fn head_after(c: &Ctx, d: &Digest, len: u64) -> Check {
    let r = c
        .req(Method::HEAD, &c.path(&format!("blobs/{d}")), &[], None)
        .await?;
    let result = (|| {
        ensure!(r.status == StatusCode::OK, "HEAD answered {}", r.describe());
        let cl = r
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        ensure!(cl == Some(len), "Content-Length {cl:?}, not {len}");
        ensure!(
            r.header("docker-content-digest") == Some(&d.to_string()),
            "Docker-Content-Digest {:?}",
            r.header("docker-content-digest")
        );
        Ok(())
    })();
    c.record(HEAD_AFTER, result);
    Ok(())
}

async fn single_post(c: &Ctx) -> Check {
    let data = random(1500);
    let d = Digest::of(Algorithm::Sha256, &data);
    let r = c
        .req(
            Method::POST,
            &format!("{}?digest={d}", c.path("blobs/uploads/")),
            &[("content-type", "application/octet-stream")],
            Some(Bytes::from(data)),
        )
        .await?;
    match r.status {
        StatusCode::CREATED => {
            ensure!(r.header("location").is_some(), "the 201 has no Location");
            c.pushed_blobs.lock().unwrap().push(d);
            Ok(())
        }
        StatusCode::ACCEPTED => {
            ensure!(r.header("location").is_some(), "the 202 has no Location");
            if let Some(l) = r.header("location") {
                let _ = c.req(Method::DELETE, l, &[], None).await;
            }
            Err(skip(
                "not supported: the registry answered 202 and opened a session, as the spec allows",
            ))
        }
        _ => Err(fail(format!("POST ?digest= answered {}", r.describe()))),
    }
}

fn range_end(r: &super::Resp) -> Option<u64> {
    let v = r.header("range")?.trim_start_matches("bytes=");
    v.split_once('-')?.1.trim().parse().ok()
}

async fn chunked(c: &Ctx) -> Check {
    let (loc, min) = open(c).await?;
    let min_ok = match &min {
        None => Ok(()),
        Some(m) if m.trim().parse::<u64>().is_ok() => Ok(()),
        Some(m) => Err(fail(format!("OCI-Chunk-Min-Length {m:?} is not a number"))),
    };
    c.record(CHUNK_MIN, min_ok);
    // Chunks of the advertised minimum (at least 64 KiB, at most 16 MiB), then a short one.
    let chunk = min
        .and_then(|m| m.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .clamp(64 * 1024, 16 << 20);
    let data = random(chunk * 2 + 1000);
    let d = Digest::of(Algorithm::Sha256, &data);
    let mut loc = loc;
    let mut offset = 0usize;
    let mut first = true;
    for piece in [&data[..chunk], &data[chunk..2 * chunk], &data[2 * chunk..]] {
        let range = format!("{}-{}", offset, offset + piece.len() - 1);
        let r = c
            .req(
                Method::PATCH,
                &loc,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-range", &range),
                ],
                Some(Bytes::copy_from_slice(piece)),
            )
            .await?;
        ensure!(
            r.status == StatusCode::ACCEPTED,
            "PATCH {range} answered {}",
            r.describe()
        );
        let end = range_end(&r);
        ensure!(
            end == Some((offset + piece.len() - 1) as u64),
            "PATCH {range}: Range {:?}",
            r.header("range")
        );
        loc = c
            .reg
            .url(
                r.header("location")
                    .ok_or_else(|| fail("a PATCH's 202 has no Location"))?,
            )?
            .to_string();
        offset += piece.len();
        if first {
            first = false;
            // The status of the session, and an out-of-order chunk.
            let s = c.req(Method::GET, &loc, &[], None).await?;
            let st = (|| {
                ensure!(
                    s.status == StatusCode::NO_CONTENT,
                    "GET answered {}",
                    s.describe()
                );
                ensure!(s.header("location").is_some(), "no Location");
                ensure!(
                    range_end(&s) == Some(offset as u64 - 1),
                    "Range {:?}, not 0-{}",
                    s.header("range"),
                    offset - 1
                );
                Ok(())
            })();
            c.record(STATUS, st);
        }
    }
    let r = c
        .req(
            Method::PUT,
            &with_query(&c.reg.url(&loc)?, "digest", &d.to_string()),
            &[],
            None,
        )
        .await?;
    ensure!(
        r.status == StatusCode::CREATED,
        "the closing PUT answered {}",
        r.describe()
    );
    ensure!(r.header("location").is_some(), "the 201 has no Location");
    c.pushed_blobs.lock().unwrap().push(d.clone());
    let got = c
        .req(Method::GET, &c.path(&format!("blobs/{d}")), &[], None)
        .await?;
    ensure!(
        got.status == StatusCode::OK && got.body.as_ref() == data.as_slice(),
        "the blob reads back as {} with other bytes",
        got.describe()
    );
    Ok(())
}

/// An out-of-order chunk, on a session of its own (a registry that takes it may leave the
/// session unusable).
async fn out_of_order(c: &Ctx) -> Check {
    let (loc, _) = open(c).await?;
    let r = c
        .req(
            Method::PATCH,
            &loc,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", "0-999"),
            ],
            Some(Bytes::from(random(1000))),
        )
        .await?;
    ensure!(
        r.status == StatusCode::ACCEPTED,
        "the first PATCH answered {}",
        r.describe()
    );
    let loc = c.reg.url(r.header("location").unwrap_or(&loc))?.to_string();
    let o = c
        .req(
            Method::PATCH,
            &loc,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", "1010-1019"),
            ],
            Some(Bytes::from(vec![0u8; 10])),
        )
        .await?;
    let _ = c.req(Method::DELETE, &loc, &[], None).await;
    ensure!(
        o.status == StatusCode::RANGE_NOT_SATISFIABLE,
        "a chunk at 1010 after 1000 bytes answered {}",
        o.describe()
    );
    Ok(())
}

async fn last_in_put(c: &Ctx) -> Check {
    let data = random(3000);
    let d = Digest::of(Algorithm::Sha256, &data);
    let (loc, _) = open(c).await?;
    let r = c
        .req(
            Method::PATCH,
            &loc,
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", "0-1999"),
            ],
            Some(Bytes::copy_from_slice(&data[..2000])),
        )
        .await?;
    ensure!(
        r.status == StatusCode::ACCEPTED,
        "PATCH answered {}",
        r.describe()
    );
    let loc = c.reg.url(r.header("location").unwrap_or(&loc))?;
    let r = c
        .req(
            Method::PUT,
            &with_query(&loc, "digest", &d.to_string()),
            &[
                ("content-type", "application/octet-stream"),
                ("content-range", "2000-2999"),
            ],
            Some(Bytes::copy_from_slice(&data[2000..])),
        )
        .await?;
    ensure!(
        r.status == StatusCode::CREATED,
        "PUT with the last chunk answered {}",
        r.describe()
    );
    c.pushed_blobs.lock().unwrap().push(d);
    Ok(())
}

async fn digest_mismatch(c: &Ctx) -> Check {
    let data = random(1000);
    let wrong = Digest::of(Algorithm::Sha256, b"something else");
    let (loc, _) = open(c).await?;
    let r = c
        .req(
            Method::PUT,
            &with_query(&c.reg.url(&loc)?, "digest", &wrong.to_string()),
            &[("content-type", "application/octet-stream")],
            Some(Bytes::from(data)),
        )
        .await?;
    ensure!(
        r.status.is_client_error(),
        "a wrong digest answered {}",
        r.describe()
    );
    let code = r.error_code();
    ensure!(
        r.status == StatusCode::BAD_REQUEST && code.as_deref() == Some("DIGEST_INVALID"),
        "answered {} (expected 400 DIGEST_INVALID)",
        r.describe()
    );
    let h = c
        .req(Method::HEAD, &c.path(&format!("blobs/{wrong}")), &[], None)
        .await?;
    ensure!(
        h.status == StatusCode::NOT_FOUND,
        "the blob exists afterwards ({})",
        h.status
    );
    Ok(())
}

async fn cancel(c: &Ctx) -> Check {
    let (loc, _) = open(c).await?;
    let r = c
        .req(Method::DELETE, &loc, &[("content-length", "0")], None)
        .await?;
    ensure!(
        r.status == StatusCode::NO_CONTENT,
        "DELETE answered {}",
        r.describe()
    );
    let s = c.req(Method::GET, &loc, &[], None).await?;
    ensure!(
        s.status == StatusCode::NOT_FOUND,
        "the cancelled session answers {}",
        s.describe()
    );
    Ok(())
}

async fn mount(c: &Ctx) -> Check {
    let data = random(1200);
    let d = c.push_blob(&data).await?;
    let other = format!("{}-mount", c.repo);
    let path = format!("/v2/{other}/blobs/uploads/?mount={d}&from={}", c.repo);
    let scope = format!(
        "repository:{other}:pull,push,delete repository:{}:pull",
        c.repo
    );
    let r = c
        .reg
        .request(Method::POST, &path, &scope, Default::default(), None)
        .await?;
    match r.status() {
        StatusCode::CREATED => {
            ensure!(
                r.headers().get("location").is_some(),
                "the 201 has no Location"
            );
            let _ = c
                .reg
                .request(
                    Method::DELETE,
                    &format!("/v2/{other}/blobs/{d}"),
                    &scope,
                    Default::default(),
                    None,
                )
                .await;
            Ok(())
        }
        StatusCode::ACCEPTED => Err(skip(
            "not supported: the registry opened a session instead (202), as the spec allows",
        )),
        s => Err(fail(format!("mount answered {s}"))),
    }
}

async fn mount_fallback(c: &Ctx) -> Check {
    let unknown = Digest::of(Algorithm::Sha256, &random(64));
    let path = format!(
        "{}?mount={unknown}&from={}-nowhere",
        c.path("blobs/uploads/"),
        c.repo
    );
    let r = c
        .req(Method::POST, &path, &[("content-length", "0")], None)
        .await?;
    ensure!(
        r.status == StatusCode::ACCEPTED,
        "a mount of an unknown blob answered {}",
        r.describe()
    );
    if let Some(l) = r.header("location") {
        let _ = c.req(Method::DELETE, l, &[], None).await;
    }
    Ok(())
}

async fn sha512(c: &Ctx) -> Check {
    let data = random(1024);
    let d = Digest::of(Algorithm::Sha512, &data);
    let (loc, _) = open(c).await?;
    let r = c
        .req(
            Method::PUT,
            &with_query(&c.reg.url(&loc)?, "digest", &d.to_string()),
            &[("content-type", "application/octet-stream")],
            Some(Bytes::copy_from_slice(&data)),
        )
        .await?;
    if r.status.is_client_error() {
        return Err(skip(format!("not supported ({})", r.describe())));
    }
    ensure!(
        r.status == StatusCode::CREATED,
        "PUT with a sha512 digest answered {}",
        r.describe()
    );
    c.pushed_blobs.lock().unwrap().push(d.clone());
    let g = c
        .req(Method::GET, &c.path(&format!("blobs/{d}")), &[], None)
        .await?;
    ensure!(
        g.status == StatusCode::OK && g.body.as_ref() == data.as_slice(),
        "GET by the sha512 digest answered {}",
        g.describe()
    );
    Ok(())
}

pub async fn run(c: &Ctx) {
    let r = post_put(c).await;
    c.record(POST_PUT, r);
    let r = single_post(c).await;
    c.record(SINGLE_POST, r);
    let r = chunked(c).await;
    c.record(CHUNKED, r);
    let r = out_of_order(c).await;
    c.record(OUT_OF_ORDER, r);
    let r = last_in_put(c).await;
    c.record(LAST_IN_PUT, r);
    let r = digest_mismatch(c).await;
    c.record(DIGEST_MISMATCH, r);
    let r = cancel(c).await;
    c.record(CANCEL, r);
    let r = mount(c).await;
    c.record(MOUNT, r);
    let r = mount_fallback(c).await;
    c.record(MOUNT_FALLBACK, r);
    let r = sha512(c).await;
    c.record(SHA512, r);
}
