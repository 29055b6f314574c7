//! The pagination parameters `n` and `last`, parsed inside `Registry`, end to end: GET
//! `/v2/_catalog?<query>` or `/v2/<repo>/tags/list?<query>` on a registry holding a few
//! repositories and tags. Input: one byte choosing the list, then the query (bytes a URI cannot
//! hold are percent-encoded). Never a 5xx; a bad `n` is a 400; a page is exactly the entries
//! after `last`, at most `n` of them, and its `Link` leads through the rest of the list.

#![no_main]

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use common::{get, put_tag, registry, Reg};
use edge_registry::registry::MAX_PAGE;
use http::{header, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;

const TAGS: [(&str, &[&str]); 4] = [
    ("a", &["latest"]),
    ("a/b", &["1", "latest", "v1"]),
    (
        "library/alpine",
        &[
            "3", "3.20", "Latest", "_x", "edge", "latest", "v1", "v1.0", "v1.0-rc",
        ],
    ),
    ("z0", &["A", "a"]),
];

fn seeded() -> &'static Reg {
    static REG: OnceLock<Reg> = OnceLock::new();
    REG.get_or_init(|| {
        let reg = registry();
        for (repo, tags) in TAGS {
            for tag in tags {
                put_tag(&reg, repo, tag);
            }
        }
        reg
    })
}

/// Keeps the bytes a URI query may hold as they are (so `%`, `&`, `=` and `+` keep their
/// meaning), percent-encodes the rest.
fn to_query(raw: &[u8]) -> String {
    let mut q = String::new();
    for &b in raw {
        if b.is_ascii_graphic()
            && !matches!(
                b,
                b'#' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    q
}

/// The parameters as the registry reads them: the last of each name wins.
fn params(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn list(v: &serde_json::Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, raw)) = data.split_first() else {
        return;
    };
    let reg = seeded();
    let (path, field, all): (String, &str, Option<Vec<String>>) = match which % 6 {
        0 | 1 => {
            let mut repos: Vec<String> = TAGS.iter().map(|(r, _)| r.to_string()).collect();
            repos.sort();
            ("/v2/_catalog".into(), "repositories", Some(repos))
        }
        5 => ("/v2/nope/tags/list".into(), "tags", None),
        i => {
            let (repo, tags) = TAGS[i as usize - 1];
            let mut tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            tags.sort();
            (format!("/v2/{repo}/tags/list"), "tags", Some(tags))
        }
    };
    let query = to_query(raw);
    let uri = format!("{path}?{query}");
    let Ok(parsed) = uri.parse::<Uri>() else {
        return;
    };
    let p = params(parsed.query().unwrap_or(""));
    let n = match p.get("n").map(|v| v.parse::<usize>()) {
        None => None,
        Some(Ok(n)) => Some(n.min(MAX_PAGE)),
        Some(Err(_)) => {
            assert_eq!(get(reg, &uri).status, StatusCode::BAD_REQUEST, "{uri}");
            return;
        }
    };
    let last = p.get("last").cloned();

    let answer = get(reg, &uri);
    let Some(all) = all else {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        return;
    };
    assert_eq!(answer.status, StatusCode::OK, "{uri}");

    // The page: the entries after `last`, at most `n` of them.
    let rest: Vec<String> = all
        .iter()
        .filter(|e| last.as_ref().is_none_or(|l| e.as_str() > l.as_str()))
        .cloned()
        .collect();
    let want: Vec<String> = rest.iter().take(n.unwrap_or(usize::MAX)).cloned().collect();
    let got = list(&answer.json(), field);
    assert_eq!(got, want, "{uri}");

    // A `Link` exactly when more follow (and the page is not empty); following the links walks
    // through the rest of the list.
    let more = n.is_some_and(|n| n > 0 && rest.len() > n);
    let mut seen = got;
    let mut link = answer.header(header::LINK).map(str::to_string);
    assert_eq!(link.is_some(), more, "{uri}: Link {link:?}");
    while let Some(l) = link {
        let next = l
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(u, _)| u.to_string())
            .unwrap_or_else(|| panic!("{uri}: Link {l:?}"));
        let a = get(reg, &next);
        assert_eq!(a.status, StatusCode::OK, "{next}");
        let page = list(&a.json(), field);
        assert!(!page.is_empty() && page.len() <= n.unwrap(), "{next}");
        seen.extend(page);
        link = a.header(header::LINK).map(str::to_string);
    }
    // (`n=0` asks for an empty page, with no link to more.)
    if n != Some(0) {
        assert_eq!(seen, rest, "{uri}");
    }
});
