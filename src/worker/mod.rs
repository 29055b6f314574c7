//! The Cloudflare Worker adapter (wasm32 only). It converts requests, responses and streams
//! between workers-rs and the core, and supplies the R2 + KV storage; the registry logic is all
//! in the core.

mod gc;
mod mirror;
mod ops;
mod r2;
#[cfg(feature = "storage-suite")]
mod suite;

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use worker::{event, Context, Env};

use crate::auth::{Access, Accounts, ClientAddr, Grants, Htpasswd, TokenKey};
use crate::body::{Body, BoxError, ByteStream, NativeBody};
use crate::clock::Clock;
use crate::error::InternalCause;
use crate::registry::Registry;
use crate::settings::Settings;

pub use r2::R2Storage;

/// A request body as the runtime gave it: a JavaScript `ReadableStream`. Storage can hand it to
/// R2 whole; the core reads it as a stream of chunks otherwise.
struct JsStream(worker::web_sys::ReadableStream);

impl NativeBody for JsStream {
    fn into_stream(self: Box<Self>) -> ByteStream {
        Box::pin(
            worker::ByteStream::from(self.0)
                .map_ok(bytes::Bytes::from)
                .map_err(|e| Box::new(std::io::Error::other(e.to_string())) as BoxError),
        )
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.0)
    }
}

/// Wraps a platform stream for the core.
pub(crate) fn native_body(stream: worker::web_sys::ReadableStream) -> Body {
    Body::Native(Box::new(JsStream(stream)))
}

/// Takes the platform stream back out of a body, if it holds one.
pub(crate) fn take_native(body: Body) -> Result<worker::web_sys::ReadableStream, Body> {
    match body {
        Body::Native(n) => match n.into_any().downcast::<worker::web_sys::ReadableStream>() {
            Ok(stream) => Ok(*stream),
            Err(_) => Err(Body::Empty),
        },
        other => Err(other),
    }
}

/// Converts the runtime's request into the core's. The body stays the runtime's own stream
/// (with its known length, which R2 needs to store it directly). The URI stays absolute (the
/// token realm is built from it), and the client's address comes from `CF-Connecting-IP`.
fn to_core(req: &worker::Request) -> worker::Result<http::Request<Body>> {
    let url = req.url()?;
    let client = req
        .headers()
        .get("cf-connecting-ip")?
        .unwrap_or_else(|| "unknown".into());
    let mut builder = http::Request::builder()
        .method(req.inner().method().as_str())
        .uri(url.as_str())
        .extension(ClientAddr(client));
    for (name, value) in req.headers() {
        builder = builder.header(name, value);
    }
    let body = match req.inner().body() {
        Some(stream) => native_body(stream),
        None => Body::Empty,
    };
    builder
        .body(body)
        .map_err(|e| worker::Error::RustError(e.to_string()))
}

/// Converts the core's response into the runtime's, handing streams over as they are.
fn from_core(resp: http::Response<Body>) -> worker::Result<worker::Response> {
    let (parts, body) = resp.into_parts();
    let headers = worker::Headers::new();
    for (name, value) in &parts.headers {
        // Connection management is the runtime's.
        if name == http::header::CONNECTION {
            continue;
        }
        if let Ok(v) = value.to_str() {
            headers.append(name.as_str(), v)?;
        }
    }
    let builder = worker::ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(headers);
    Ok(match body {
        Body::Empty => builder.empty(),
        // `Vec::from` takes over a uniquely owned buffer instead of copying it; the one copy
        // left is into JavaScript memory.
        Body::Full(b) => builder.fixed(Vec::from(b)),
        Body::Stream(s) => builder.from_stream(s.map(|r| {
            r.map(Vec::from)
                .map_err(|e| worker::Error::RustError(e.to_string()))
        }))?,
        native @ Body::Native(_) => match take_native(native) {
            Ok(stream) => builder.stream(stream),
            Err(_) => builder.empty(),
        },
    })
}

/// Reads a setting from the Worker's vars, with a default.
fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
}

/// A secret (`wrangler secret put`), or a var of that name (as `wrangler dev --var` gives).
fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| var(env, name))
        .filter(|v| !v.is_empty())
}

/// The Worker's clock: JavaScript's `Date.now()`.
struct DateClock;

impl Clock for DateClock {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }
}

/// Seconds since the Unix epoch.
#[cfg(feature = "storage-suite")]
fn now() -> u64 {
    DateClock.now()
}

/// The settings, read from the Worker's vars by the core's table. The Worker is
/// `authenticated` unless AUTH_MODE says otherwise.
/// Where the Worker's defaults differ from the table's: `authenticated`, and a chunk size
/// under the Free plan's 100 MB request body limit advertised to clients.
pub const WORKER_DEFAULTS: &[(&str, &str)] = &[
    ("AUTH_MODE", "authenticated"),
    ("MAX_CHUNK_LENGTH", "95000000"),
];

fn settings(env: &Env) -> Result<Settings, String> {
    Settings::from_lookup_with_defaults(|v| var(env, v), WORKER_DEFAULTS)
}

thread_local! {
    /// The access control of this isolate, kept between requests (failed-login counts,
    /// verified credentials) and rebuilt when its settings change.
    static ACCESS: RefCell<Option<(u64, Arc<Access>)>> = const { RefCell::new(None) };
}

/// Access control from the settings and the secrets USERS (htpasswd, bcrypt), TOKEN_SECRET
/// (without it clients get a Basic challenge) and GRANTS. A secret that does not parse is an
/// error response, never an open registry.
fn access(env: &Env, settings: &Settings) -> Result<Arc<Access>, String> {
    let secrets = [
        secret(env, "USERS"),
        secret(env, "GRANTS"),
        secret(env, "TOKEN_SECRET"),
    ];
    let fingerprint = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(format!("{settings:?}").as_bytes());
        for s in &secrets {
            let s = s.as_deref().unwrap_or("\0unset");
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        u64::from_le_bytes(h.finalize()[..8].try_into().unwrap_or_default())
    };
    if let Some(a) = ACCESS.with_borrow(|c| {
        c.as_ref()
            .filter(|(f, _)| *f == fingerprint)
            .map(|(_, a)| a.clone())
    }) {
        return Ok(a);
    }
    let [users, grants, token_secret] = secrets;
    let accounts = Accounts {
        htpasswd: Htpasswd::parse(users.as_deref().unwrap_or_default())
            .map_err(|e| format!("USERS: {e}"))?,
        grants: match grants {
            Some(g) => Grants::parse(&g).map_err(|e| format!("GRANTS: {e}"))?,
            None => Grants::default(),
        },
    };
    let key = match token_secret {
        Some(s) => {
            Some(TokenKey::new(s.trim().as_bytes()).map_err(|e| format!("TOKEN_SECRET: {e}"))?)
        }
        None => None,
    };
    let a = Arc::new(
        Access::new(settings.auth_mode, accounts, key)
            .with_token_ttl(settings.token_ttl)
            .with_max_failures(settings.max_login_failures),
    );
    ACCESS.with_borrow_mut(|c| *c = Some((fingerprint, a.clone())));
    Ok(a)
}

/// The registry over this Worker's R2 bucket and KV namespace, with its settings. The error
/// is for the log only.
fn registry(env: &Env) -> Result<Registry<R2Storage>, String> {
    let settings = settings(env).map_err(|e| format!("the settings are invalid: {e}"))?;
    let storage = storage(env, &settings)?;
    let access =
        access(env, &settings).map_err(|e| format!("access control is misconfigured: {e}"))?;
    let mut registry = Registry::new(storage, settings);
    if let Some(m) = mirror::mirrors(env)? {
        registry = registry.with_mirrors(m);
    }
    Ok(registry
        .with_access(access)
        .with_clock(Arc::new(DateClock))
        .with_chunk_min_length(r2::PART_SIZE as u64)
        .with_readiness(ops::readiness()))
}

/// The R2 bucket, with the KV namespace caching listings for CATALOG_CACHE_TTL.
fn storage(env: &Env, settings: &Settings) -> Result<R2Storage, String> {
    let bucket = env.bucket("BUCKET").map_err(|e| e.to_string())?;
    Ok(R2Storage::new(
        bucket,
        env.kv("CACHE").ok(),
        settings.catalog_cache_ttl,
    ))
}

#[event(fetch)]
pub async fn fetch(
    req: worker::Request,
    env: Env,
    ctx: Context,
) -> worker::Result<worker::Response> {
    console_error_panic_hook::set_once();
    let method = req.inner().method();
    let path = req.path();
    #[cfg(feature = "storage-suite")]
    if path == suite::PATH && method == "POST" {
        return suite::run(&env).await;
    }
    let registry = match registry(&env) {
        Ok(r) => r,
        Err(e) => {
            // The reason goes to the log only: it may quote a setting.
            worker::console_error!("{e}");
            let err = crate::Error::internal("the registry is misconfigured");
            return from_core(err.into_response());
        }
    };
    let seen = ops::see(&req);
    // The isolate's count of refused logins, before and after: the difference goes in the
    // request's data point. Requests that interleave in one isolate may trade a failure, but
    // the sum over all points is exact.
    let failed_before = registry.access().failed_logins();
    let outcome = registry.handle(to_core(&req)?).await;
    let failed_logins = registry
        .access()
        .failed_logins()
        .saturating_sub(failed_before);
    if let Some(report) = outcome.response.extensions().get::<crate::mirror::Report>() {
        for note in &report.notes {
            worker::console_warn!("mirror {}: {note}", report.mirror);
        }
    }
    if let Some(cause) = outcome.response.extensions().get::<InternalCause>() {
        worker::console_error!(
            "{method} {path} ({}): internal error: {}",
            outcome.op,
            cause.0
        );
    }
    let bytes_out = outcome
        .response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ops::after(
        &env,
        &ctx,
        seen,
        ops::Answered {
            op: outcome.op,
            status: outcome.response.status().as_u16(),
            bytes_out,
            events: &outcome.events,
            user: outcome.user.as_deref(),
            failed_logins,
            mirror: outcome.response.extensions().get::<crate::mirror::Report>(),
        },
    );
    let mut resp = from_core(outcome.response)?;
    if var(&env, "EXPOSE_MEMORY").as_deref() == Some("1") {
        resp.headers_mut()
            .set(MEMORY_HEADER, &wasm_memory().to_string())?;
    }
    Ok(resp)
}

/// The response header that reports [`wasm_memory`] when the var `EXPOSE_MEMORY` is `"1"`.
const MEMORY_HEADER: &str = "edge-registry-wasm-memory";

/// The size of this isolate's wasm linear memory, in bytes. It only ever grows, so it is the
/// high-water mark of everything the wasm side has held at once, over all the requests the
/// isolate has served.
fn wasm_memory() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65536
}

/// The notification queue's consumer (wrangler.toml `[[queues.consumers]]`).
#[event(queue)]
pub async fn queue(
    batch: worker::MessageBatch<ops::Delivery>,
    env: Env,
    _ctx: Context,
) -> worker::Result<()> {
    console_error_panic_hook::set_once();
    ops::consume(batch, &env).await
}

/// The cron that expires stale upload sessions (hourly); every cron runs a step of the
/// garbage collector.
const UPLOADS_CRON: &str = "17 * * * *";

/// The cron triggers (wrangler.toml `[triggers]`): expire stale upload sessions, and collect.
#[event(scheduled)]
pub async fn scheduled(event: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    console_error_panic_hook::set_once();
    let r = match registry(&env) {
        Ok(r) => r,
        Err(e) => return worker::console_error!("{e}"),
    };
    if event.cron() == UPLOADS_CRON {
        match r.expire_uploads().await {
            Ok((open, _events)) => worker::console_log!("upload sessions still open: {open}"),
            Err(e) => worker::console_error!("expiring upload sessions failed: {}", e.cause()),
        }
    }
    gc::step(&env, r.storage(), r.settings()).await;
}

#[cfg(test)]
mod tests;
