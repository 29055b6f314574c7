//! Notifications: the core's [`Event`]s as the reference registry's (distribution 2.x) event
//! envelope, which CI triggers, scanners and audit tools already parse. Pure and wasm-safe:
//! both adapters map events here and only deliver (natively a spool and an HTTP client, on
//! the Worker a Cloudflare Queue).
//!
//! The JSON is field for field the reference's (`notifications/event.go`): `id`, `timestamp`
//! (RFC 3339), `action` (`push`, `pull`, `delete`, `mount`), `target` {`mediaType`, `size`,
//! `digest`, `length`, `repository`, `fromRepository` (mounts), `url`, `tag`}, `request` {`id`,
//! `addr`, `host`, `method`, `useragent`}, `actor` {`name`}, `source` {`addr`, `instanceID`},
//! with the same fields left out when empty. Envelope: `{"events":[...]}`, media type
//! [`MEDIA_TYPE`].

use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::event::Event;
use crate::names::{Name, Tag};

/// The envelope's media type (the reference registry 2.x's).
pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The media type of the reference registry 3.x, which sends one event per POST (in the same
/// envelope and fields): what an endpoint given as [`Endpoint::single`] gets.
pub const MEDIA_TYPE_SINGLE: &str = "application/vnd.docker.distribution.events.v2+json";

/// The media type the reference gives blobs (layers and configs alike) in events.
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// The actions, as the reference names them.
pub const ACTIONS: &[&str] = &["push", "pull", "delete", "mount"];

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One event, as the reference registry sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub id: String,
    pub timestamp: String,
    pub action: String,
    pub target: Target,
    pub request: RequestRecord,
    pub actor: ActorRecord,
    pub source: SourceRecord,
}

/// What the event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// The same as `size` (the reference keeps it for older consumers).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub length: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// Where a mounted blob came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from_repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

/// The request that caused the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    pub method: String,
    pub useragent: String,
}

/// Who caused it: the authenticated user, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The registry instance that generated it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(
        rename = "instanceID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub instance_id: String,
}

/// What a POST carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub events: Vec<Notice>,
}

/// What the adapter knows of the request and the instance, for the events of one request.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub request: RequestRecord,
    /// The authenticated user ([`crate::Outcome::user`]).
    pub actor: Option<String>,
    pub source: SourceRecord,
    /// The registry's public base URL (`https://registry.example.com`), for `target.url`.
    pub base: String,
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// The same as [`Context`], borrowed: what [`write_lines`] reads, so that the native request
/// path copies no field into a string of its own to notify.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub id: &'a str,
    pub addr: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub useragent: &'a str,
    pub actor: Option<&'a str>,
    pub source: &'a SourceRecord,
    pub base: &'a str,
    pub now_ms: u64,
}

impl Context {
    /// This context, borrowed.
    pub fn view(&self) -> View<'_> {
        let r = &self.request;
        View {
            id: &r.id,
            addr: &r.addr,
            host: &r.host,
            method: &r.method,
            useragent: &r.useragent,
            actor: self.actor.as_deref(),
            source: &self.source,
            base: &self.base,
            now_ms: self.now_ms,
        }
    }
}

/// The reference's action for an event, or `None` for events it has no notification for.
/// Exhaustive, so every new [`Event`] must decide here.
pub fn action(e: &Event) -> Option<&'static str> {
    match e {
        Event::BlobPushed { .. } | Event::ManifestPushed { .. } => Some("push"),
        Event::BlobPulled { .. } | Event::ManifestPulled { .. } => Some("pull"),
        Event::BlobMounted { .. } => Some("mount"),
        Event::BlobDeleted { .. } | Event::ManifestDeleted { .. } | Event::TagDeleted { .. } => {
            Some("delete")
        }
        // What the collector and retention remove are deletes too; the adapter marks them with
        // the actor `gc` or `retention` and an empty `request`.
        Event::BlobCollected { .. }
        | Event::ManifestCollected { .. }
        | Event::TagExpired { .. } => Some("delete"),
        // A tag moving is part of the manifest push that moved it (its `tag`); an expired
        // upload session never became content.
        Event::TagMoved { .. } | Event::UploadExpired { .. } => None,
    }
}

/// Whether any of `events` makes a notice when the actions in `ignore` are left out (so that a
/// request whose events all go unnoticed costs nothing more).
pub fn any_notified(events: &[Event], ignore: &[String]) -> bool {
    events
        .iter()
        .filter_map(action)
        .any(|a| !ignore.iter().any(|i| i == a))
}

/// The notices for `events`, leaving out those whose action is in `ignore`. `new_id` gives
/// each its unique id.
pub fn notices(
    events: &[Event],
    cx: &Context,
    ignore: &[String],
    mut new_id: impl FnMut() -> String,
) -> Vec<Notice> {
    let timestamp = rfc3339(cx.now_ms);
    events
        .iter()
        .filter_map(|e| {
            let action = noticed(e, ignore)?;
            Some(Notice {
                id: new_id(),
                timestamp: timestamp.clone(),
                action: action.to_string(),
                target: target_ref(e, &cx.base).to_target(),
                request: cx.request.clone(),
                actor: ActorRecord {
                    name: cx.actor.clone().unwrap_or_default(),
                },
                source: cx.source.clone(),
            })
        })
        .collect()
}

/// The same notices as [`notices`], written straight into `out` as compact JSON, one a line,
/// without building them first (what the native server spools): what every event of the
/// request shares (`request`, `actor`, `source`, the timestamp) is written once, and no field
/// is copied into a string of its own. Returns how many it wrote.
pub fn write_lines<I: AsRef<str>>(
    events: &[Event],
    cx: &View<'_>,
    ignore: &[String],
    mut new_id: impl FnMut() -> I,
    out: &mut Vec<u8>,
) -> u64 {
    // Where the first notice's shared tail is in `out`, once written; the others copy it.
    let mut shared: Option<std::ops::Range<usize>> = None;
    let mut stamp = [0u8; 24];
    let mut written = 0;
    for e in events {
        let Some(action) = noticed(e, ignore) else {
            continue;
        };
        if shared.is_none() {
            write_rfc3339(cx.now_ms, &mut stamp);
        }
        let id = new_id();
        out.extend_from_slice(b"{\"id\":");
        json_str(out, id.as_ref());
        out.extend_from_slice(b",\"timestamp\":\"");
        out.extend_from_slice(&stamp);
        out.extend_from_slice(b"\",\"action\":\"");
        out.extend_from_slice(action.as_bytes());
        out.extend_from_slice(b"\",\"target\":");
        target_ref(e, cx.base).write_json(out);
        match &shared {
            Some(tail) => out.extend_from_within(tail.clone()),
            None => {
                // `,"request":{…},"actor":{…},"source":{…}}`: `Notice`'s fields, in its
                // order, empty ones left out as its derived form does.
                let start = out.len();
                out.extend_from_slice(b",\"request\":");
                JsonObject::new(out)
                    .field("id", cx.id)
                    .optional("addr", cx.addr)
                    .optional("host", cx.host)
                    .field("method", cx.method)
                    .field("useragent", cx.useragent)
                    .end();
                out.extend_from_slice(b",\"actor\":");
                JsonObject::new(out)
                    .optional("name", cx.actor.unwrap_or_default())
                    .end();
                out.extend_from_slice(b",\"source\":");
                JsonObject::new(out)
                    .optional("addr", &cx.source.addr)
                    .optional("instanceID", &cx.source.instance_id)
                    .end();
                out.push(b'}');
                shared = Some(start..out.len());
            }
        }
        // Compact JSON never holds a raw newline.
        out.push(b'\n');
        written += 1;
    }
    written
}

/// Whether JSON takes `s` as it is in a string: printable ASCII but `"` and `\`. Eight
/// bytes at a time (SWAR): a word has a byte below 0x20, at or above 0x7f, or equal to `"`
/// or `\` when one of these tests sets a byte's high bit. They may also set it in a byte
/// above one that truly matches (a borrow or a carry), never in a word without one.
fn plain(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let special = |w: &[u8]| {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        (x.wrapping_sub(ONES * 0x20) & !x)
            | (x | x.wrapping_add(ONES))
            | has_zero(x ^ (ONES * b'"' as u64))
            | has_zero(x ^ (ONES * b'\\' as u64))
    };
    if s.len() < 8 {
        return s
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    }
    let mut words = s.chunks_exact(8);
    let mut any = 0;
    for w in &mut words {
        any |= special(w);
    }
    // The rest: the last eight bytes, overlapping what was checked.
    if !words.remainder().is_empty() {
        any |= special(&s[s.len() - 8..]);
    }
    any & HIGH == 0
}

/// `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        // Printable ASCII but `"` and `\`: JSON takes it as it is (what nearly every field
        // holds: names, tags, digests, ids, hosts, media types).
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// `s` escaped as in a JSON string, without the quotes.
fn json_contents(out: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
    } else {
        let start = out.len();
        json_str(out, s);
        out.pop();
        out.remove(start);
    }
}

/// A JSON object written field by field.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObject<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn field(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        json_str(self.out, v);
        self
    }

    /// A field left out when empty.
    fn optional(self, k: &str, v: &str) -> Self {
        if v.is_empty() {
            self
        } else {
            self.field(k, v)
        }
    }

    fn number(mut self, k: &str, n: u64) -> Self {
        self.key(k);
        self.out.extend_from_slice(Digits([0; 20]).format(n));
        self
    }

    /// A field whose value the caller writes.
    fn with(mut self, k: &str, write: impl FnOnce(&mut Vec<u8>)) -> Self {
        self.key(k);
        write(self.out);
        self
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

/// The action `e` is notified as, unless it has none or it is in `ignore`.
fn noticed(e: &Event, ignore: &[String]) -> Option<&'static str> {
    let action = action(e)?;
    (!ignore.iter().any(|i| i == action)).then_some(action)
}

/// An event's target, borrowed from the event: the one mapping from events to targets, either
/// serialised as it is ([`write_lines`]) or made into a [`Target`].
#[derive(Default)]
struct TargetRef<'a> {
    media_type: &'a str,
    size: u64,
    digest: Option<&'a Digest>,
    repository: &'a str,
    from_repository: &'a str,
    /// The base URL and the path's kind (`blobs` or `manifests`), with `repository` and
    /// `digest` making up the rest.
    url: Option<(&'a str, &'static str)>,
    tag: &'a str,
}

impl TargetRef<'_> {
    fn to_target(&self) -> Target {
        Target {
            media_type: self.media_type.to_string(),
            size: self.size,
            digest: self.digest.map(ToString::to_string).unwrap_or_default(),
            // The reference keeps `length`, the same as `size`, for older consumers.
            length: self.size,
            repository: self.repository.to_string(),
            from_repository: self.from_repository.to_string(),
            url: match (self.url, self.digest) {
                (Some((base, kind)), Some(d)) => {
                    format!("{base}/v2/{}/{kind}/{d}", self.repository)
                }
                _ => String::new(),
            },
            tag: self.tag.to_string(),
        }
    }
}

impl TargetRef<'_> {
    /// Field for field what [`Target`]'s derived form writes, empty fields left out alike.
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = JsonObject::new(out).optional("mediaType", self.media_type);
        if self.size != 0 {
            o = o.number("size", self.size);
        }
        if let Some(d) = self.digest {
            o = o.with("digest", |out| write_digest(out, d));
        }
        if self.size != 0 {
            o = o.number("length", self.size);
        }
        o = o
            .optional("repository", self.repository)
            .optional("fromRepository", self.from_repository);
        if let (Some((base, kind)), Some(d)) = (self.url, self.digest) {
            o = o.with("url", |out| {
                // Only the base may hold what JSON escapes: a repository name (its grammar),
                // the kind and a digest never do, so the path is copied as it is.
                out.push(b'"');
                json_contents(out, base);
                for part in [
                    "/v2/",
                    self.repository,
                    "/",
                    kind,
                    "/",
                    d.algorithm().as_str(),
                ] {
                    out.extend_from_slice(part.as_bytes());
                }
                out.push(b':');
                out.extend_from_slice(d.hex().as_bytes());
                out.push(b'"');
            });
        }
        o.optional("tag", self.tag).end();
    }
}

/// A digest as a JSON string (an algorithm and hex digits: nothing to escape).
fn write_digest(out: &mut Vec<u8>, d: &Digest) {
    out.push(b'"');
    out.extend_from_slice(d.algorithm().as_str().as_bytes());
    out.push(b':');
    out.extend_from_slice(d.hex().as_bytes());
    out.push(b'"');
}

/// Decimal digits of a number, without `fmt`.
struct Digits([u8; 20]);

impl Digits {
    fn format(&mut self, mut n: u64) -> &[u8] {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return &self.0[i..];
            }
        }
    }
}

fn target_ref<'a>(e: &'a Event, base: &'a str) -> TargetRef<'a> {
    let blob = |repo: &'a Name, digest: &'a Digest, size: u64| TargetRef {
        media_type: BLOB_MEDIA_TYPE,
        size,
        digest: Some(digest),
        repository: repo.as_str(),
        url: Some((base, "blobs")),
        ..TargetRef::default()
    };
    match e {
        Event::BlobPushed { repo, digest, size } | Event::BlobPulled { repo, digest, size } => {
            blob(repo, digest, *size)
        }
        Event::BlobMounted {
            repo,
            from,
            digest,
            size,
        } => TargetRef {
            from_repository: from.as_str(),
            ..blob(repo, digest, *size)
        },
        Event::ManifestPushed {
            repo,
            digest,
            media_type,
            size,
            tag,
        }
        | Event::ManifestPulled {
            repo,
            digest,
            media_type,
            size,
            tag,
        } => TargetRef {
            media_type,
            size: *size,
            digest: Some(digest),
            repository: repo.as_str(),
            url: Some((base, "manifests")),
            tag: tag.as_ref().map_or("", Tag::as_str),
            ..TargetRef::default()
        },
        // Deletions carry what the reference's do: the repository and the digest, or the tag.
        Event::BlobDeleted { repo, digest }
        | Event::ManifestDeleted { repo, digest }
        | Event::ManifestCollected { repo, digest } => TargetRef {
            repository: repo.as_str(),
            digest: Some(digest),
            ..TargetRef::default()
        },
        // A collected blob is gone from every repository at once: no repository.
        Event::BlobCollected { digest, size } => TargetRef {
            media_type: BLOB_MEDIA_TYPE,
            digest: Some(digest),
            size: *size,
            ..TargetRef::default()
        },
        Event::TagDeleted { repo, tag, .. } | Event::TagExpired { repo, tag, .. } => TargetRef {
            repository: repo.as_str(),
            tag: tag.as_str(),
            ..TargetRef::default()
        },
        Event::TagMoved { repo, .. } => TargetRef {
            repository: repo.as_str(),
            ..TargetRef::default()
        },
        Event::UploadExpired { repo, .. } => TargetRef {
            repository: repo,
            ..TargetRef::default()
        },
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC: `2024-05-06T07:08:09.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let mut b = [0u8; 24];
    write_rfc3339(ms, &mut b);
    // ASCII digits and separators only.
    String::from_utf8_lossy(&b).into_owned()
}

/// [`rfc3339`] into a buffer, without `fmt` (it is in every notice).
fn write_rfc3339(ms: u64, out: &mut [u8; 24]) {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u64;
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 3, ms % 1000);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = c;
    }
}

/// The public base URL for `target.url`: the configured one, else the scheme (as a proxy
/// reports it in `X-Forwarded-Proto`) and the request's `Host`.
pub fn public_base(base_url: &str, host: Option<&str>, proto: Option<&str>) -> String {
    if !base_url.is_empty() {
        return base_url.trim_end_matches('/').to_string();
    }
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_graphic() && !"\"\\/<>".contains(*c))
            .collect()
    };
    format!(
        "{}://{}",
        clean(proto.unwrap_or("http")),
        clean(host.unwrap_or("localhost"))
    )
}

/// Where notifications go and what they leave out, from settings: the native flags
/// (`--notify`, `--notify-header`, `--notify-ignore-actions`) or the Worker's vars
/// (`NOTIFY_URLS`, the secret `NOTIFY_HEADERS`, `NOTIFY_IGNORE_ACTIONS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub urls: Vec<Endpoint>,
    /// Sent with every POST (e.g. `Authorization`): secrets, never logged.
    pub headers: Vec<(String, String)>,
    /// Actions not sent (e.g. `pull`).
    pub ignore: Vec<String>,
}

/// One notification endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// One event per POST with [`MEDIA_TYPE_SINGLE`], as the reference registry 3.x sends
    /// (`--notify-single`, `NOTIFY_SINGLE_URLS`); else batches with [`MEDIA_TYPE`].
    pub single: bool,
}

impl Endpoint {
    /// The `Content-Type` of its POSTs.
    pub fn media_type(&self) -> &'static str {
        if self.single {
            MEDIA_TYPE_SINGLE
        } else {
            MEDIA_TYPE
        }
    }
}

fn endpoint_url(u: &str) -> Result<String, String> {
    let uri: http::Uri = u.parse().map_err(|_| format!("{u:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(u.to_string()),
        _ => Err(format!("{u:?} is not an http:// or https:// URL")),
    }
}

impl Config {
    /// From lists of URLs (batched, then single-event ones), `Name: value` header lines and
    /// actions, each checked: an error names what is wrong, never a header's value.
    pub fn parse<'a>(
        urls: impl IntoIterator<Item = &'a str>,
        single: impl IntoIterator<Item = &'a str>,
        headers: impl IntoIterator<Item = &'a str>,
        ignore: impl IntoIterator<Item = &'a str>,
    ) -> Result<Config, String> {
        let tagged = urls
            .into_iter()
            .map(|u| (u, false))
            .chain(single.into_iter().map(|u| (u, true)));
        let urls = tagged
            .map(|(u, single)| (u.trim(), single))
            .filter(|(u, _)| !u.is_empty())
            .map(|(u, single)| {
                Ok(Endpoint {
                    url: endpoint_url(u)?,
                    single,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let headers = headers
            .into_iter()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                let (name, value) = h
                    .split_once(':')
                    .ok_or("a header must be written 'Name: value'")?;
                let (name, value) = (name.trim(), value.trim());
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{name:?} is not a header name"))?;
                HeaderValue::from_str(value)
                    .map_err(|_| format!("the value of header {name:?} is not valid"))?;
                Ok((name.to_string(), value.to_string()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let ignore = ignore
            .into_iter()
            .flat_map(|s| s.split([',', ' ']))
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.is_empty())
            .map(|a| {
                if ACTIONS.contains(&a.as_str()) {
                    Ok(a)
                } else {
                    Err(format!(
                        "{a:?} is not an action (push, pull, delete, mount)"
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            urls,
            headers,
            ignore,
        })
    }

    /// From the Worker's vars: URLs (batched, then single-event ones) separated by commas or
    /// whitespace, header lines separated by newlines, actions by commas.
    pub fn from_vars(
        urls: &str,
        single: &str,
        headers: &str,
        ignore: &str,
    ) -> Result<Config, String> {
        const SEPS: [char; 4] = [',', ' ', '\n', '\t'];
        Config::parse(
            urls.split(SEPS),
            single.split(SEPS),
            headers.lines(),
            std::iter::once(ignore),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::names::Tag;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_715_000_000_123), "2024-05-06T12:53:20.123Z");
    }

    #[test]
    fn collector_and_retention_removals_are_deletes() {
        let d = Digest::parse(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        .unwrap();
        let repo = Name::parse("a/b").unwrap();
        let cx = Context {
            actor: Some("gc".into()),
            base: "https://reg".into(),
            ..Context::default()
        };
        let events = [
            Event::BlobCollected {
                digest: d.clone(),
                size: 7,
            },
            Event::ManifestCollected {
                repo: repo.clone(),
                digest: d.clone(),
            },
            Event::TagExpired {
                repo: repo.clone(),
                tag: Tag::parse("old").unwrap(),
                digest: d.clone(),
            },
        ];
        let n = notices(&events, &cx, &[], || "id".into());
        assert_eq!(n.len(), 3);
        assert!(n
            .iter()
            .all(|n| n.action == "delete" && n.actor.name == "gc"));
        assert_eq!(
            (
                n[0].target.digest.as_str(),
                n[0].target.size,
                n[0].target.repository.as_str()
            ),
            (d.to_string().as_str(), 7, "")
        );
        assert_eq!(n[1].target.repository, "a/b");
        assert_eq!(n[1].target.digest, d.to_string());
        assert_eq!(
            (n[2].target.repository.as_str(), n[2].target.tag.as_str()),
            ("a/b", "old")
        );
        // Leaving out deletes leaves them all out.
        assert!(notices(&events, &cx, &["delete".into()], || "id".into()).is_empty());
        assert!(any_notified(&events, &[]));
        assert!(!any_notified(&events, &["delete".into()]));
        assert!(!any_notified(&[], &[]));
    }

    /// The escape check agrees with its definition, byte by byte, whatever the length.
    #[test]
    fn plain_is_printable_ascii_but_quote_and_backslash() {
        let naive = |s: &[u8]| {
            s.iter()
                .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        };
        let mut cases: Vec<Vec<u8>> = vec![vec![], b"sha256:abc".to_vec()];
        // Every byte value at the ends and the middle of strings around the 8-byte word.
        for len in [1, 2, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 47] {
            for at in [0, len / 2, len - 1] {
                for b in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    cases.push(v);
                }
            }
        }
        for c in &cases {
            assert_eq!(plain(c), naive(c), "{c:?}");
        }
    }

    /// The spooled lines the native server writes are byte for byte the notices' JSON, for
    /// every kind of event, with and without an actor, ignoring an action or not.
    #[test]
    fn written_lines_are_the_notices() {
        let d = Digest::parse(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        .unwrap();
        let (repo, from) = (Name::parse("a/b").unwrap(), Name::parse("c").unwrap());
        let tag = Tag::parse("v1").unwrap();
        let mt = "application/vnd.oci.image.manifest.v1+json".to_string();
        let events = [
            Event::BlobPushed {
                repo: repo.clone(),
                digest: d.clone(),
                size: 9,
            },
            Event::BlobMounted {
                repo: repo.clone(),
                from,
                digest: d.clone(),
                size: 9,
            },
            Event::BlobPulled {
                repo: repo.clone(),
                digest: d.clone(),
                size: 9,
            },
            Event::BlobDeleted {
                repo: repo.clone(),
                digest: d.clone(),
            },
            Event::ManifestPushed {
                repo: repo.clone(),
                digest: d.clone(),
                media_type: mt.clone(),
                size: 5,
                tag: Some(tag.clone()),
            },
            Event::ManifestPulled {
                repo: repo.clone(),
                digest: d.clone(),
                media_type: mt,
                size: 5,
                tag: None,
            },
            Event::ManifestDeleted {
                repo: repo.clone(),
                digest: d.clone(),
            },
            Event::TagMoved {
                repo: repo.clone(),
                tag: tag.clone(),
                digest: d.clone(),
                previous: None,
            },
            Event::TagDeleted {
                repo: repo.clone(),
                tag: tag.clone(),
                digest: d.clone(),
            },
            Event::UploadExpired {
                id: "u".into(),
                repo: "a/b".into(),
            },
            Event::BlobCollected {
                digest: d.clone(),
                size: 9,
            },
            Event::ManifestCollected {
                repo: repo.clone(),
                digest: d.clone(),
            },
            Event::TagExpired {
                repo,
                tag,
                digest: d,
            },
        ];
        let request = RequestRecord {
            id: "r\"1".into(),
            addr: "::1".into(),
            host: "reg".into(),
            method: "GET".into(),
            useragent: "ua/1 \\ \u{e9}".into(),
        };
        let bases = ["https://reg", "https://r\"\u{e9}\n/x", ""];
        for (i, actor) in [None, Some("alice".to_string()), Some("b\u{0}b".into())]
            .into_iter()
            .enumerate()
        {
            for ignore in [vec![], vec!["pull".to_string()], vec!["delete".to_string()]] {
                let cx = Context {
                    request: request.clone(),
                    actor: actor.clone(),
                    source: SourceRecord {
                        addr: "h:1".into(),
                        instance_id: "i".into(),
                    },
                    base: bases[i].into(),
                    now_ms: 1_715_000_000_123,
                };
                let mut n = 0;
                let want: Vec<u8> = notices(&events, &cx, &ignore, || {
                    n += 1;
                    format!("id{n}")
                })
                .iter()
                .flat_map(|n| {
                    let mut line = serde_json::to_vec(n).unwrap();
                    line.push(b'\n');
                    line
                })
                .collect();
                let (mut n, mut got) = (0, b"before\n".to_vec());
                let count = write_lines(
                    &events,
                    &cx.view(),
                    &ignore,
                    || {
                        n += 1;
                        format!("id{n}")
                    },
                    &mut got,
                );
                assert_eq!(
                    String::from_utf8_lossy(&got[7..]),
                    String::from_utf8_lossy(&want)
                );
                assert_eq!(count as usize, want.iter().filter(|b| **b == b'\n').count());
            }
        }
    }

    #[test]
    fn events_map_to_the_reference_fields() {
        let d = Digest::parse(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        .unwrap();
        let repo = Name::parse("a/b").unwrap();
        let cx = Context {
            request: RequestRecord {
                id: "r1".into(),
                addr: "127.0.0.1".into(),
                host: "reg:5000".into(),
                method: "PUT".into(),
                useragent: "ua".into(),
            },
            actor: Some("alice".into()),
            source: SourceRecord {
                addr: "host:5000".into(),
                instance_id: "i1".into(),
            },
            base: public_base("", Some("reg:5000"), None),
            now_ms: 1000,
        };
        let events = [
            Event::ManifestPushed {
                repo: repo.clone(),
                digest: d.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 7,
                tag: Some(Tag::parse("v1").unwrap()),
            },
            Event::TagMoved {
                repo: repo.clone(),
                tag: Tag::parse("v1").unwrap(),
                digest: d.clone(),
                previous: None,
            },
            Event::BlobMounted {
                repo: repo.clone(),
                from: Name::parse("c").unwrap(),
                digest: d.clone(),
                size: 3,
            },
            Event::BlobPulled {
                repo: repo.clone(),
                digest: d.clone(),
                size: 3,
            },
        ];
        let mut n = 0;
        let all = notices(&events, &cx, &[], || {
            n += 1;
            format!("id{n}")
        });
        let json = serde_json::to_value(Envelope { events: all }).unwrap();
        let want = serde_json::json!({"events": [
            {"id": "id1", "timestamp": "1970-01-01T00:00:01.000Z", "action": "push",
             "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 7,
                        "digest": d.to_string(), "length": 7, "repository": "a/b",
                        "url": format!("http://reg:5000/v2/a/b/manifests/{d}"), "tag": "v1"},
             "request": {"id": "r1", "addr": "127.0.0.1", "host": "reg:5000", "method": "PUT",
                         "useragent": "ua"},
             "actor": {"name": "alice"},
             "source": {"addr": "host:5000", "instanceID": "i1"}},
            {"id": "id2", "timestamp": "1970-01-01T00:00:01.000Z", "action": "mount",
             "target": {"mediaType": "application/octet-stream", "size": 3,
                        "digest": d.to_string(), "length": 3, "repository": "a/b",
                        "fromRepository": "c",
                        "url": format!("http://reg:5000/v2/a/b/blobs/{d}")},
             "request": {"id": "r1", "addr": "127.0.0.1", "host": "reg:5000", "method": "PUT",
                         "useragent": "ua"},
             "actor": {"name": "alice"},
             "source": {"addr": "host:5000", "instanceID": "i1"}},
            {"id": "id3", "timestamp": "1970-01-01T00:00:01.000Z", "action": "pull",
             "target": {"mediaType": "application/octet-stream", "size": 3,
                        "digest": d.to_string(), "length": 3, "repository": "a/b",
                        "url": format!("http://reg:5000/v2/a/b/blobs/{d}")},
             "request": {"id": "r1", "addr": "127.0.0.1", "host": "reg:5000", "method": "PUT",
                         "useragent": "ua"},
             "actor": {"name": "alice"},
             "source": {"addr": "host:5000", "instanceID": "i1"}},
        ]});
        assert_eq!(json, want);
        let pulls_ignored = notices(&events, &cx, &["pull".into()], String::new);
        assert_eq!(pulls_ignored.len(), 2);
    }

    #[test]
    fn config() {
        let c = Config::from_vars(
            "http://a/x, https://b:8443/y",
            "http://c/z",
            "Authorization: Bearer s3cret\nX-Other: 1",
            "pull",
        )
        .unwrap();
        let urls: Vec<(&str, bool)> = c.urls.iter().map(|e| (&e.url[..], e.single)).collect();
        assert_eq!(
            urls,
            [
                ("http://a/x", false),
                ("https://b:8443/y", false),
                ("http://c/z", true)
            ]
        );
        assert_eq!(c.urls[2].media_type(), MEDIA_TYPE_SINGLE);
        assert_eq!(
            c.headers[0],
            ("Authorization".into(), "Bearer s3cret".into())
        );
        assert_eq!(c.ignore, ["pull"]);
        assert!(Config::from_vars("ftp://a", "", "", "").is_err());
        assert!(Config::from_vars("", "ftp://a", "", "").is_err());
        assert!(Config::from_vars("", "", "", "fetch").is_err());
        let e = Config::from_vars("", "", "Bad Name: s3cret", "").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        let e = Config::from_vars("", "", "X: s3cret\u{7f}", "").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
