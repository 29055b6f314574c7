//! PostgreSQL: the pools, the schema and its migrations, and how its failures are told apart
//! (down or unreachable: "unavailable", a 503; anything else: a 500).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::storage::{StorageError, StorageResult};

/// How long a request waits for a pooled connection, or for a new one to be made.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long any one statement may take before the request gives up with a 503.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);

/// The schema, one step per version. Each runs once, in order, in one transaction with its
/// record in `er_schema`; never edit a step that has shipped, add one.
const MIGRATIONS: &[&str] = &[
    // 1: small objects, blobs, and uploads with data stored.
    r#"
    CREATE TABLE er_objects (
        key     text COLLATE "C" PRIMARY KEY,
        dir     text COLLATE "C" NOT NULL,
        value   bytea NOT NULL,
        version bigint NOT NULL
    );
    CREATE INDEX er_objects_dir ON er_objects (dir);
    CREATE SEQUENCE er_versions;
    CREATE TABLE er_blobs (
        digest   text COLLATE "C" PRIMARY KEY,
        size     bigint NOT NULL,
        location text NOT NULL,
        modified bigint NOT NULL
    );
    CREATE TABLE er_upload_data (
        id        text PRIMARY KEY,
        modified  bigint NOT NULL,
        multipart text
    );
    "#,
];

/// The advisory lock key that serialises migrations across instances starting at once.
const MIGRATION_LOCK: i64 = 0x6564_6765_7265_6701; // "edgereg" 1

/// The connections to PostgreSQL.
#[derive(Clone)]
pub struct Db {
    /// For statements.
    pool: Pool,
    /// For session locks, each held on a connection for a whole request: apart, so that
    /// requests holding locks never starve the statements they need to finish.
    locks: Pool,
    /// Statements sent, for measuring (round trips per request).
    pub round_trips: Arc<AtomicU64>,
    /// A collector's store: every statement goes to the one connection that holds the
    /// collector's lock (see [`super::collector`]).
    pinned: Option<Pinned>,
}

/// The connection a collector holds its lock on, shared by its statements; `None` once
/// released.
pub type Pinned = Arc<tokio::sync::Mutex<Option<Dedicated>>>;

/// A connection taken out of its pool for good: dropping it closes it, which makes
/// PostgreSQL release whatever advisory lock its session holds. It never goes back to a pool
/// with a lock held.
pub struct Dedicated(Option<Object>);

impl Dedicated {
    pub fn new(conn: Object) -> Self {
        Dedicated(Some(conn))
    }

    fn object(&mut self) -> Option<&mut Object> {
        self.0.as_mut()
    }

    /// Returns the connection to its pool: only when its session holds no lock.
    pub fn give_back(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}

/// A connection for statements: from the pool, or a collector's own. (The pooled one, the
/// usual, is the large variant; boxing it would cost an allocation per statement.)
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    Pooled(Object),
    Pinned(tokio::sync::OwnedMappedMutexGuard<Option<Dedicated>, Object>),
}

impl std::ops::Deref for Conn {
    type Target = Object;
    fn deref(&self) -> &Object {
        match self {
            Conn::Pooled(o) => o,
            Conn::Pinned(g) => g,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Object {
        match self {
            Conn::Pooled(o) => o,
            Conn::Pinned(g) => &mut *g,
        }
    }
}

/// An error with its causes, on one line ("error connecting to server: Connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// A PostgreSQL failure: unreachable, closed, shut down or out of connections is
/// "unavailable"; a statement's own error is not.
pub fn db_error(e: tokio_postgres::Error) -> StorageError {
    match e.as_db_error() {
        Some(db) => {
            let class = &db.code().code()[..2];
            // 08: connection exception, 53: insufficient resources, 57: operator
            // intervention (shutdown, cannot connect now), 40: a serialization failure or
            // deadlock (retrying helps).
            let msg = format!("PostgreSQL: {}: {}", db.code().code(), db.message());
            if matches!(class, "08" | "53" | "57" | "40") {
                StorageError::unavailable(msg)
            } else {
                StorageError(msg)
            }
        }
        None => StorageError::unavailable(format!("PostgreSQL: {}", with_causes(&e))),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StorageError {
    StorageError::unavailable(format!("PostgreSQL: {}", with_causes(&e)))
}

fn timed_out(_: tokio::time::error::Elapsed) -> StorageError {
    StorageError::unavailable("PostgreSQL: a statement timed out")
}

/// Runs a database future with the statement timeout.
pub async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> StorageResult<T> {
    tokio::time::timeout(QUERY_TIMEOUT, f)
        .await
        .map_err(timed_out)?
        .map_err(db_error)
}

fn build_pool(config: &tokio_postgres::Config, size: usize) -> Result<Pool, String> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .recycle_timeout(Some(POOL_WAIT))
        .build()
        .map_err(|e| format!("a PostgreSQL pool: {e}"))
}

/// Parses `--metadata`: a `postgres://` URL (or a key=value connection string).
pub fn parse_url(raw: &str) -> Result<tokio_postgres::Config, String> {
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err("--metadata: expected a postgres://USER@HOST:PORT/DATABASE URL".into());
    }
    let mut config: tokio_postgres::Config = raw
        .parse()
        .map_err(|e| format!("--metadata: not a PostgreSQL URL: {e}"))?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err("--metadata: sslmode=require is not supported (connections are plain TCP or a Unix socket: keep PostgreSQL on a private network)".into());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(POOL_WAIT);
    }
    if config.get_application_name().is_none() {
        config.application_name("edge-registry");
    }
    Ok(config)
}

impl Db {
    /// Connects (checking at once that PostgreSQL answers) and brings the schema up to date.
    /// `size` is the most connections each pool opens.
    pub async fn connect(config: &tokio_postgres::Config, size: usize) -> Result<Self, String> {
        let db = Db {
            pool: build_pool(config, size)?,
            locks: build_pool(config, size * 2)?,
            round_trips: Arc::default(),
            pinned: None,
        };
        let mut client = db.pool.get().await.map_err(|e| {
            // The pool's error wraps the connection's, which says what is wrong (refused,
            // password authentication failed, no such database).
            let detail = match &e {
                deadpool_postgres::PoolError::Backend(b) => match b.as_db_error() {
                    Some(db) => db.message().to_string(),
                    None => with_causes(b),
                },
                other => with_causes(other),
            };
            format!("--metadata: cannot connect to PostgreSQL: {detail}")
        })?;
        migrate(&mut client)
            .await
            .map_err(|e| format!("PostgreSQL schema migration failed: {e}"))?;
        Ok(db)
    }

    /// A connection for statements (a collector's store: its own connection, one statement
    /// at a time).
    pub async fn client(&self) -> StorageResult<Conn> {
        let Some(pinned) = &self.pinned else {
            return self.pool.get().await.map(Conn::Pooled).map_err(pool_error);
        };
        let guard = pinned.clone().lock_owned().await;
        tokio::sync::OwnedMutexGuard::try_map(guard, |d| d.as_mut().and_then(Dedicated::object))
            .map(Conn::Pinned)
            .map_err(|_| StorageError::unavailable("PostgreSQL: the collector's lock was released"))
    }

    /// The same database with every statement on `conn` (a collector's).
    pub fn pinned_to(&self, conn: Pinned) -> Db {
        Db {
            pinned: Some(conn),
            ..self.clone()
        }
    }

    /// A connection for a session lock.
    pub async fn lock_client(&self) -> StorageResult<Object> {
        self.locks.get().await.map_err(pool_error)
    }

    /// Counts one statement sent (for the round-trip measurements).
    pub fn count(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }
}

/// Applies the migrations not applied yet, under an advisory lock held for the transaction,
/// so instances starting at once apply each step exactly once.
async fn migrate(client: &mut Object) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS er_schema (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM er_schema", &[])
        .await?;
    let current: i32 = row.get(0);
    for (i, step) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
        if version <= current {
            continue;
        }
        tx.batch_execute(step).await?;
        tx.execute("INSERT INTO er_schema (version) VALUES ($1)", &[&version])
            .await?;
        tracing::info!(version, "PostgreSQL schema migrated");
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    /// A URL that asks for TLS is refused at start, never served in plain text.
    #[test]
    fn a_url_asking_for_tls_is_refused() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgres://u:secret@db.internal:5432/registry?sslmode={mode}");
            let err = parse_url(&url).expect_err(mode);
            assert!(err.starts_with("--metadata: "), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
        for mode in ["disable", "prefer"] {
            let url = format!("postgres://u@db.internal/registry?sslmode={mode}");
            assert!(parse_url(&url).is_ok(), "{mode}");
        }
        assert!(parse_url("postgres://u@db.internal/registry").is_ok());
    }
}
