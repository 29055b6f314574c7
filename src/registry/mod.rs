//! The registry: turns one HTTP request into one HTTP response and the [`Event`]s of what it
//! did, on any [`Storage`]. It knows nothing of tokio, hyper, files or Cloudflare: time comes
//! in through a [`Clock`], password checks through a [`crate::auth::PasswordCheck`], storage
//! through [`Storage`].
//!
//! A request goes: [`route::resolve`] (the operation table) → authentication and the access
//! check the table asks for → the operation's handler, one file per API area ([`blobs`],
//! [`uploads`], [`manifests`], [`referrers`], [`listing`], [`token`]), which parses the rest,
//! calls the domain layer ([`Store`]) and builds the response.

mod blobs;
pub(crate) mod listing;
mod manifests;
mod referrers;
pub mod response;
mod sizes;
mod token;
mod uploads;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};

use crate::auth::{Access, Action, ClientAddr, Need, Principal};
use crate::body::Body;
use crate::clock::{Clock, FixedClock};
use crate::error::Error;
use crate::event::{Event, Events};
use crate::health::{self, Readiness};
use crate::mirror::Mirrors;
use crate::repo::uploads::{At, Limits};
use crate::repo::Store;
use crate::route::{self, not_found, Needs, Op, Resolved, NO_OP};
use crate::settings::Settings;
use crate::storage::Storage;
use crate::urls::Urls;

pub use listing::MAX_PAGE;
use response::{finish, header_str, json, response, Result, API_VERSION, FORWARDED_PROTO};

/// How much of a refused request's body is read before answering (see [`Registry::handle`]).
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// The stable name of the operation that produced a response, attached to it as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpName(pub &'static str);

/// What one request produced: the response to send, and the events to forward.
#[derive(Debug)]
pub struct Outcome {
    pub response: Response<Body>,
    /// What the request changed or served, in order.
    pub events: Vec<Event>,
    /// The operation's stable name ([`route::OpKind::name`]), or [`NO_OP`].
    pub op: &'static str,
    /// The user who sent it, if one authenticated.
    pub user: Option<String>,
}

/// One request as its handler sees it.
pub(crate) struct Ctx<'a> {
    pub req: &'a Parts,
    pub body: &'a mut Body,
    pub principal: Principal,
    pub events: Events,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

pub struct Registry<S> {
    pub(crate) store: Store<S>,
    pub(crate) settings: Settings,
    access: Arc<Access>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) urls: Urls,
    chunk_min_length: u64,
    readiness: Readiness,
    /// The pull-through cache, if any mirror is configured.
    pub(crate) mirrors: Option<Arc<Mirrors>>,
}

/// The client's address as the adapter gave it, for counting failed logins.
fn client(req: &Parts) -> &str {
    req.extensions
        .get::<ClientAddr>()
        .map_or("unknown", |c| c.0.as_str())
}

impl<S: Storage> Registry<S> {
    /// A registry over `storage`, open to everyone, at time 0 until given a clock.
    pub fn new(storage: S, settings: Settings) -> Self {
        let urls = Urls::new(&settings.base_url);
        Registry {
            store: Store::new(storage),
            settings,
            access: Arc::new(Access::open()),
            clock: Arc::new(FixedClock::default()),
            urls,
            chunk_min_length: 1024 * 1024,
            readiness: Readiness::default(),
            mirrors: None,
        }
    }

    /// Serves the mirrors' repositories from their upstreams (see [`crate::mirror`]).
    pub fn with_mirrors(mut self, mirrors: Arc<Mirrors>) -> Self {
        self.mirrors = Some(mirrors).filter(|m| !m.config().is_empty());
        self
    }

    pub fn mirrors(&self) -> Option<&Arc<Mirrors>> {
        self.mirrors.as_ref()
    }

    /// How `/readyz` probes storage, and the adapter's timer and checks for it.
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Who may do what.
    pub fn with_access(mut self, access: Arc<Access>) -> Self {
        self.access = access;
        self
    }

    /// Where the time comes from.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The chunk size advertised in `OCI-Chunk-Min-Length` (default 1 MiB).
    /// Declares that no garbage collector ever runs on this storage, so reads and pushes skip
    /// the collector's protocol (one storage read per blob HEAD/GET, two per manifest PUT).
    pub fn without_collector(mut self) -> Self {
        self.store = self.store.without_collector();
        self
    }

    pub fn with_chunk_min_length(mut self, bytes: u64) -> Self {
        self.chunk_min_length = bytes;
        self
    }

    pub fn storage(&self) -> &S {
        self.store.storage()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// The request's time and the upload limits, for the upload domain.
    fn at(&self, cx: &Ctx<'_>) -> At {
        At {
            now: cx.now,
            limits: Limits {
                max_sessions: self.settings.max_upload_sessions,
                ttl: self.settings.upload_ttl,
                max_blob_size: self.settings.max_blob_size,
            },
        }
    }

    /// Answers one request. Never fails: errors become the spec's JSON error responses.
    pub async fn handle(&self, req: Request<Body>) -> Outcome {
        let head = req.method() == Method::HEAD;
        let (parts, mut body) = req.into_parts();
        let resolved = route::resolve(&parts.method, parts.uri.path());
        let op = resolved.as_ref().map_or(NO_OP, |r| r.kind.name());
        let mut cx = Ctx {
            req: &parts,
            body: &mut body,
            principal: Principal::Anonymous,
            events: Events::new(),
            now: self.clock.now(),
        };
        let result = match resolved {
            Ok(r) => self.dispatch(r, &mut cx).await,
            Err(e) => Err(e),
        };
        let mut resp = result.unwrap_or_else(Error::into_response);
        let user = cx.principal.user().map(str::to_string);
        let events = std::mem::take(&mut cx.events);
        if !matches!(body, Body::Empty) {
            // The handler left the body unread (a refused request, a body on a GET). A client
            // still sending it would see a reset instead of our answer, and the connection
            // could not carry another request: read (and drop) a modest amount of it. A client
            // that waits for `100 Continue` has sent nothing yet, and is spared.
            let waiting = parts
                .headers
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            let drained =
                !waiting && matches!(body.collect_limited(DRAIN_LIMIT).await, Ok(Some(_)));
            if !drained {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        if head {
            *resp.body_mut() = Body::Empty;
        }
        resp.headers_mut()
            .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        resp.extensions_mut().insert(OpName(op));
        Outcome {
            response: resp,
            events,
            op,
            user,
        }
    }

    /// Where clients fetch tokens: `<base URL>/token`, or, without a configured base URL, the
    /// URL this request reached (its scheme, as a proxy reports it, and its host).
    fn token_realm(&self, req: &Parts) -> String {
        if !self.settings.base_url.is_empty() {
            return format!("{}/token", self.settings.base_url);
        }
        let host = header_str(req, header::HOST)
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        let scheme = header_str(req, FORWARDED_PROTO)
            .or_else(|| req.uri.scheme_str())
            .unwrap_or("http");
        let clean = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                .collect()
        };
        format!("{}://{}/token", clean(scheme), clean(host))
    }

    /// Authenticates the request and checks it may do what its operation needs.
    async fn authorize(&self, r: &Resolved, cx: &mut Ctx<'_>) -> Result<()> {
        let realm = self.token_realm(cx.req);
        cx.principal = self
            .access
            .authenticate(&cx.req.headers, client(cx.req), &realm, self.clock.now_ms())
            .await?;
        let repo = r.repository().map(|n| n.as_str()).unwrap_or_default();
        let need = match r.needs {
            Needs::Nothing => Need::Nothing,
            Needs::Base => Need::Base,
            Needs::Catalog => Need::Catalog,
            Needs::Pull => Need::Repo(repo, Action::Pull),
            Needs::Push => Need::Repo(repo, Action::Push),
            Needs::Delete => Need::Repo(repo, Action::Delete),
        };
        self.access.check(&cx.principal, need, &realm)
    }

    async fn dispatch(&self, r: Resolved, cx: &mut Ctx<'_>) -> Result<Response<Body>> {
        match r.op {
            Op::Token => return self.token(cx).await,
            // Health checks answer without credentials (and never look at any).
            Op::Health => return Ok(health::health_response()),
            Op::Ready => {
                let checks = health::check(
                    self.store.storage(),
                    &self.readiness,
                    &crate::upload::new_upload_id(),
                )
                .await;
                return Ok(health::ready_response(&checks));
            }
            _ => {}
        }
        self.authorize(&r, cx).await?;
        if let Some(m) = self.mirrors.clone() {
            if let Some(resp) = self.mirror_dispatch(&m, &r, cx).await {
                return Ok(resp);
            }
        }
        match r.op {
            Op::Base => json(StatusCode::OK, "application/json", &serde_json::json!({})),
            Op::Catalog => self.catalog(cx).await,
            Op::Sizes => self.sizes(cx).await,
            Op::ListTags { name } => self.tags(cx, &name).await,
            Op::GetManifest {
                name,
                reference,
                head,
            } => self.get_manifest(cx, &name, &reference, head).await,
            Op::PutManifest { name, reference } => self.put_manifest(cx, &name, &reference).await,
            Op::DeleteManifest { name, reference } => {
                self.delete_manifest(cx, &name, &reference).await
            }
            Op::GetBlob { name, digest, head } => self.get_blob(cx, &name, &digest, head).await,
            Op::DeleteBlob { name, digest } => self.delete_blob(cx, &name, &digest).await,
            Op::StartUpload { name } => self.start_upload(cx, &name).await,
            Op::UploadStatus { name, id } => self.upload_status(cx, &name, &id).await,
            Op::PatchUpload { name, id } => self.patch_upload(cx, &name, &id).await,
            Op::PutUpload { name, id } => self.put_upload(cx, &name, &id).await,
            Op::CancelUpload { name, id } => self.cancel_upload(cx, &name, &id).await,
            Op::Referrers { name, digest } => self.referrers(cx, &name, &digest).await,
            Op::Ui { path } => {
                let asset = crate::ui::asset(&path).ok_or_else(not_found)?;
                Ok(finish(
                    response(StatusCode::OK)
                        .header(header::CONTENT_TYPE, asset.content_type)
                        .header(header::CONTENT_LENGTH, asset.bytes.len())
                        .header(header::CACHE_CONTROL, "no-cache"),
                    Body::Full(Bytes::from_static(asset.bytes)),
                ))
            }
            Op::Token | Op::Health | Op::Ready => Err(not_found()),
        }
    }

    /// Recovers after a restart, before any request is served: removes upload data that no
    /// session owns (left by a crash). Returns how many were removed.
    pub async fn recover(&self) -> Result<usize> {
        self.store.sweep_orphan_data(self.clock.now(), 0).await
    }

    /// Removes every upload session that has seen no request for the upload TTL (and any
    /// whose state no longer parses). Returns how many remain open, and the events. Adapters
    /// call it periodically; opening a session at the bound calls it too.
    pub async fn expire_uploads(&self) -> Result<(usize, Vec<Event>)> {
        let mut events = Events::new();
        let open = self
            .store
            .expire_uploads(self.clock.now(), self.settings.upload_ttl, &mut events)
            .await?;
        Ok((open, events))
    }
}
