//! The one place that builds the URLs the registry hands out in `Location` and `Link` headers.
//!
//! URLs are path-absolute (`/v2/...`) unless a public base URL is configured, so they stay
//! right behind any proxy that keeps the path.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::digest::Digest;
use crate::names::Name;

/// Characters left as they are in a query value: the unreserved set.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, Default)]
pub struct Urls {
    /// E.g. `https://registry.example.com`, without a trailing slash; empty for relative URLs.
    base: String,
}

impl Urls {
    pub fn new(base: &str) -> Urls {
        Urls {
            base: base.trim_end_matches('/').to_string(),
        }
    }

    pub fn blob(&self, name: &Name, digest: &Digest) -> String {
        format!("{}/v2/{}/blobs/{}", self.base, name, digest)
    }

    pub fn manifest(&self, name: &Name, digest: &Digest) -> String {
        format!("{}/v2/{}/manifests/{}", self.base, name, digest)
    }

    pub fn upload(&self, name: &Name, id: &str) -> String {
        format!("{}/v2/{}/blobs/uploads/{}", self.base, name, id)
    }

    /// `Link` header value for the next page of a tag list.
    pub fn tags_next(&self, name: &Name, n: usize, last: &str) -> String {
        self.next_link(&format!("/v2/{name}/tags/list"), n, last)
    }

    /// `Link` header value for the next page of the catalog.
    pub fn catalog_next(&self, n: usize, last: &str) -> String {
        self.next_link("/v2/_catalog", n, last)
    }

    fn next_link(&self, path: &str, n: usize, last: &str) -> String {
        format!(
            "<{}{}?n={}&last={}>; rel=\"next\"",
            self.base,
            path,
            n,
            utf8_percent_encode(last, QUERY_VALUE)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_urls() {
        let name = Name::parse("a/b").unwrap();
        let d = Digest::of(crate::digest::Algorithm::Sha256, b"");
        let rel = Urls::default();
        assert_eq!(rel.blob(&name, &d), format!("/v2/a/b/blobs/{d}"));
        assert_eq!(rel.manifest(&name, &d), format!("/v2/a/b/manifests/{d}"));
        assert_eq!(rel.upload(&name, "u-1"), "/v2/a/b/blobs/uploads/u-1");
        assert_eq!(
            rel.tags_next(&name, 2, "v1.0"),
            "</v2/a/b/tags/list?n=2&last=v1.0>; rel=\"next\""
        );
        let abs = Urls::new("https://r.example/");
        assert_eq!(
            abs.catalog_next(10, "x/y"),
            "<https://r.example/v2/_catalog?n=10&last=x%2Fy>; rel=\"next\""
        );
    }
}
