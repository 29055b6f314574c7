//! `/v2/_catalog` and `/v2/<name>/tags/list`: sorted lists a page at a time, with the `n` and
//! `last` parameters and a `Link` to the next page, by one helper.

use std::collections::HashMap;

use http::header;
use http::{Response, StatusCode};

use super::response::{hv, json, query, Result};
use super::{Ctx, Registry};
use crate::body::Body;
use crate::error::{Error, ErrorCode};
use crate::names::Name;
use crate::storage::Storage;

/// Largest page a client may ask for with `n`.
pub const MAX_PAGE: usize = 10_000;

/// The `n` and `last` pagination parameters.
pub(crate) fn pagination(q: &HashMap<String, String>) -> Result<(Option<usize>, Option<String>)> {
    let n = match q.get("n") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| {
                    Error::new(ErrorCode::Unsupported)
                        .with_status(StatusCode::BAD_REQUEST)
                        .with_message("invalid pagination parameter n")
                })?
                .min(MAX_PAGE),
        ),
    };
    Ok((n, q.get("last").cloned()))
}

/// One page of a sorted list: the entries after `last`, at most `n` of them, and whether more
/// follow.
fn page(sorted: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let start = match last {
        Some(l) => sorted.partition_point(|s| s.as_str() <= l),
        None => 0,
    };
    let mut rest: Vec<String> = sorted.into_iter().skip(start).collect();
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            (rest, n > 0)
        }
        _ => (rest, false),
    }
}

/// Answers one page of `sorted` as `{key: [...], extra...}`, with a `Link` built by `next`
/// (from `n` and the page's last entry) when more follow.
pub(crate) fn paginated(
    cx: &Ctx<'_>,
    sorted: Vec<String>,
    key: &str,
    mut value: serde_json::Value,
    next: impl Fn(usize, &str) -> String,
) -> Result<Response<Body>> {
    let (n, last) = pagination(&query(cx.req))?;
    let (items, more) = page(sorted, n, last.as_deref());
    let link = match (more, n, items.last()) {
        (true, Some(n), Some(l)) => Some(next(n, l)),
        _ => None,
    };
    value[key] = serde_json::json!(items);
    let mut resp = json(StatusCode::OK, "application/json", &value)?;
    if let Some(link) = link {
        resp.headers_mut().insert(header::LINK, hv(&link));
    }
    Ok(resp)
}

impl<S: Storage> Registry<S> {
    pub(super) async fn catalog(&self, cx: &mut Ctx<'_>) -> Result<Response<Body>> {
        let names: Vec<String> = self
            .store
            .repositories()
            .await?
            .into_iter()
            .filter(|name| self.access.can_list(&cx.principal, name))
            .collect();
        // With mirrors, their prefixes and upstreams (the web UI marks their repositories).
        let extra = match &self.mirrors {
            Some(m) => serde_json::json!({ "mirrors": m
                .config()
                .upstreams
                .iter()
                .map(|u| (u.prefix.clone(), serde_json::Value::String(u.display_url())))
                .collect::<serde_json::Map<_, _>>() }),
            None => serde_json::json!({}),
        };
        paginated(cx, names, "repositories", extra, |n, l| {
            self.urls.catalog_next(n, l)
        })
    }

    pub(super) async fn tags(&self, cx: &mut Ctx<'_>, name: &Name) -> Result<Response<Body>> {
        // Parameters are checked before anything is read.
        pagination(&query(cx.req))?;
        if !self.store.repository_exists(name).await? {
            return Err(Error::new(ErrorCode::NameUnknown)
                .with_detail(serde_json::json!({ "name": name.as_str() })));
        }
        let tags = self.store.tags(name).await?;
        paginated(
            cx,
            tags,
            "tags",
            serde_json::json!({ "name": name.as_str() }),
            |n, l| self.urls.tags_next(name, n, l),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let v: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(page(v.clone(), None, None), (v.clone(), false));
        assert_eq!(
            page(v.clone(), Some(2), None),
            (vec!["a".into(), "b".into()], true)
        );
        assert_eq!(
            page(v.clone(), Some(2), Some("b")),
            (vec!["c".into(), "d".into()], false)
        );
        assert_eq!(page(v.clone(), Some(0), None), (vec![], false));
        assert_eq!(
            page(v.clone(), Some(10), Some("bb")),
            (vec!["c".into(), "d".into()], false)
        );
        assert_eq!(page(v.clone(), None, Some("z")), (vec![], false));
        assert!(!page(v, Some(4), None).1);
    }
}
