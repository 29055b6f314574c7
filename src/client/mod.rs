//! The client side (native only): a registry HTTP client ([`registry`]) that speaks the token
//! protocol, Basic-only registries, the docker/podman auth files, digest-checked streaming
//! reads and chunked, resumable uploads; image sources and destinations ([`source`], [`layout`],
//! [`archive`]); and the two commands built on them, `edge-registry copy` ([`copy`]) and
//! `edge-registry verify` ([`verify`]).
//!
//! [`registry::Registry`] is the reusable part: anything that talks to an upstream registry
//! (a pull-through cache, say) builds one from a [`reference::Host`] and [`registry::Options`].

pub mod archive;
pub mod auth;
pub mod cli;
pub mod copy;
pub mod layout;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod source;
pub mod stream;
pub mod upload;
pub mod verify;

use std::fmt;

/// A client error: one line that says what failed, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn msg(m: impl fmt::Display) -> Error {
        Error(m.to_string())
    }

    /// This error with `what` in front: `what: error`.
    pub fn context(self, what: impl fmt::Display) -> Error {
        Error(format!("{what}: {}", self.0))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error(e.to_string())
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Error {
        Error(describe_reqwest(&e))
    }
}

/// A reqwest error as one line: its own text and its causes (where "error sending request"
/// alone says nothing), without the URL's query (an upload's `_state`, say).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut out = e.without_url_ref().to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            let mut bare = url.clone();
            bare.set_query(None);
            text = text.replace(url.as_str(), bare.as_str());
        }
        text
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `s` as one printable line: control characters (a tarball's garbage, a server's) become `?`,
/// replacement characters are dropped, and it ends after 400 characters.
pub fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| *c != char::REPLACEMENT_CHARACTER)
        .map(|c| if c.is_control() { '?' } else { c })
        .take(400)
        .collect();
    if s.chars().count() > 400 {
        out.push('…');
    }
    out
}

/// Shorthand for `Err(Error::msg(format!(...)))`.
#[macro_export]
#[doc(hidden)]
macro_rules! client_bail {
    ($($t:tt)*) => { return Err($crate::client::Error::msg(format!($($t)*))) };
}
