//! Tags (with `n`, `last` and `Link`) and the catalog.

use reqwest::{Method, StatusCode};

use super::pull::Fixture;
use super::{ensure, fail, skip, Ctx, Keyword::*, Meta};
use crate::manifest::OCI_MANIFEST;

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
pub fn next_link(r: &super::Resp) -> Option<String> {
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
