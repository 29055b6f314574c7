//! The registry under test: in process (`Registry<MemoryStorage>`, answered through
//! `Registry::handle`, no socket) or over HTTP (a native server, or `EDGE_REGISTRY_URL`), in an
//! access mode, and the [`Client`] of its tests.
//!
//! Suites that run both ways write each test once as `async fn name(t: Transport)` and
//! generate a test per transport with [`crate::both_transports!`].

use std::sync::Arc;

use edge_registry::auth::{Access, Accounts, Grants, Htpasswd, Mode, TokenKey};
use edge_registry::native::SystemClock;
use edge_registry::storage::memory::MemoryStorage;
use edge_registry::{Registry, Settings};

use super::client::{Client, Conn};
use super::{auth_server, write_accounts, Server, ALICE, BOB, GRANTS};

/// How a test reaches the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `Registry<MemoryStorage>` in this process, through `Registry::handle`.
    InProcess,
    /// HTTP to a server: a fresh native one, or `EDGE_REGISTRY_URL`.
    Http,
}

// ---- what a registry is started with --------------------------------------------------------

/// How to start a registry: its access mode, the fixture users ([`ALICE`], [`BOB`]) and
/// [`GRANTS`], and access settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: &'static str,
    /// The fixture users.
    pub users: bool,
    /// [`GRANTS`] for them.
    pub grants: bool,
    pub token_ttl: Option<u64>,
    pub max_login_failures: Option<u32>,
}

impl Options {
    /// Open mode, no users.
    pub fn open() -> Options {
        Options {
            mode: "open",
            users: false,
            grants: false,
            token_ttl: None,
            max_login_failures: None,
        }
    }

    /// `mode` with the fixture users and their grants.
    pub fn mode(mode: &'static str) -> Options {
        Options {
            mode,
            users: true,
            grants: true,
            ..Options::open()
        }
    }

    pub fn without_grants(self) -> Options {
        Options {
            grants: false,
            ..self
        }
    }

    pub fn token_ttl(self, seconds: u64) -> Options {
        Options {
            token_ttl: Some(seconds),
            ..self
        }
    }

    pub fn max_login_failures(self, n: u32) -> Options {
        Options {
            max_login_failures: Some(n),
            ..self
        }
    }

    /// The `serve` arguments for these options; the account files are written into
    /// `accounts`.
    pub fn serve_args(&self, accounts: &std::path::Path) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if self.mode != "open" || self.users {
            args.extend(["--auth".into(), self.mode.into()]);
        }
        if self.users {
            write_accounts(accounts, &[ALICE, BOB]);
            let file = |f: &str| accounts.join(f).to_str().unwrap().to_string();
            args.extend(["--htpasswd".into(), file("htpasswd")]);
            if self.grants {
                args.extend(["--grants".into(), file("grants")]);
            }
        }
        if let Some(ttl) = self.token_ttl {
            args.extend(["--token-ttl".into(), ttl.to_string()]);
        }
        if let Some(n) = self.max_login_failures {
            args.extend(["--max-login-failures".into(), n.to_string()]);
        }
        args
    }
}

/// Users and grants as the core takes them.
fn accounts(users: &[(&str, &str)], grants: bool) -> Accounts {
    let lines: Vec<String> = users
        .iter()
        .map(|(u, p)| edge_registry::native::access::htpasswd_line(u, p, 4).unwrap())
        .collect();
    Accounts {
        htpasswd: Htpasswd::parse(&lines.join("\n")).unwrap(),
        grants: if grants {
            Grants::parse(GRANTS).unwrap()
        } else {
            Grants::default()
        },
    }
}

/// The one place the tests build the core: a registry on `storage` with `options`, and its
/// access control (kept, so that tests can rotate credentials).
pub fn core(storage: MemoryStorage, options: &Options) -> (Registry<MemoryStorage>, Arc<Access>) {
    let mode: Mode = options.mode.parse().unwrap();
    let users: &[(&str, &str)] = if options.users { &[ALICE, BOB] } else { &[] };
    let key = TokenKey::new(b"the in-process test registry token key").unwrap();
    let mut access = Access::new(mode, accounts(users, options.grants), Some(key));
    if let Some(ttl) = options.token_ttl {
        access = access.with_token_ttl(ttl);
    }
    if let Some(n) = options.max_login_failures {
        access = access.with_max_failures(n);
    }
    let access = Arc::new(access);
    let registry = Registry::new(storage, Settings::default())
        .with_access(access.clone())
        .with_clock(Arc::new(SystemClock));
    (registry, access)
}

/// A fresh in-process registry in access `mode`, with the fixture users and grants.
pub fn in_process(mode: &'static str) -> Target {
    in_process_with(Options::mode(mode), MemoryStorage::new())
}

/// An in-process registry on `storage` with `options`.
pub fn in_process_with(options: Options, storage: MemoryStorage) -> Target {
    let (registry, access) = core(storage.clone(), &options);
    Target {
        client: Client::of_conn(Conn::InProcess(Arc::new(registry))),
        backend: Backend::InProcess {
            storage,
            access,
            options,
        },
    }
}

/// An open in-process registry on `storage` that takes its time from `clock`.
pub fn in_process_clocked(
    storage: MemoryStorage,
    clock: Arc<dyn edge_registry::clock::Clock>,
) -> Target {
    let options = Options::open();
    let (registry, access) = core(storage.clone(), &options);
    Target {
        client: Client::of_conn(Conn::InProcess(Arc::new(registry.with_clock(clock)))),
        backend: Backend::InProcess {
            storage,
            access,
            options,
        },
    }
}

// ---- the registry under test ----------------------------------------------------------------

/// A registry under test, and the client of its tests.
pub struct Target {
    client: Client,
    backend: Backend,
}

enum Backend {
    InProcess {
        storage: MemoryStorage,
        access: Arc<Access>,
        options: Options,
    },
    Http {
        server: Server,
        /// The folder of the account files, when the test made them.
        accounts: Option<tempfile::TempDir>,
    },
}

impl Target {
    /// The registry most tests use, open: in process, or [`Server::start`] (a fresh native
    /// server, or `EDGE_REGISTRY_URL`).
    pub fn start(t: Transport) -> Target {
        match t {
            Transport::InProcess => in_process_with(Options::open(), MemoryStorage::new()),
            Transport::Http => Target::http(Server::start()),
        }
    }

    /// A registry in access `mode` with the fixture users: in process, or [`auth_server`]
    /// (the external server if `EDGE_REGISTRY_AUTH_MODE` names this mode).
    pub fn auth(t: Transport, mode: &'static str) -> Target {
        match t {
            Transport::InProcess => in_process(mode),
            Transport::Http => {
                let (server, dir) = auth_server(mode);
                Target {
                    client: Client::of(&server),
                    backend: Backend::Http {
                        server,
                        accounts: Some(dir),
                    },
                }
            }
        }
    }

    /// A fresh registry with `options`, of its own (never the external server).
    pub fn fresh(t: Transport, options: Options) -> Target {
        match t {
            Transport::InProcess => in_process_with(options, MemoryStorage::new()),
            Transport::Http => {
                let accounts = tempfile::tempdir().expect("tempdir");
                let server = Server::native_with_options(&options, accounts.path());
                Target {
                    client: Client::of(&server),
                    backend: Backend::Http {
                        server,
                        accounts: Some(accounts),
                    },
                }
            }
        }
    }

    /// `server`, over HTTP.
    pub fn http(server: Server) -> Target {
        Target {
            client: Client::of(&server),
            backend: Backend::Http {
                server,
                accounts: None,
            },
        }
    }

    /// The same storage, served again with `options` (a registry made by [`Target::fresh`]:
    /// over HTTP, the native server is stopped and started again on its folder).
    pub fn reopen(self, options: Options) -> Target {
        match self.backend {
            Backend::InProcess { storage, .. } => in_process_with(options, storage),
            Backend::Http { mut server, .. } => {
                let root = server.root.take().expect("a registry of its own");
                server.stop();
                let accounts = tempfile::tempdir().expect("tempdir");
                let mut server =
                    Server::native_at_with_options(root.path(), &options, accounts.path());
                server.root = Some(root);
                Target {
                    client: Client::of(&server),
                    backend: Backend::Http {
                        server,
                        accounts: Some(accounts),
                    },
                }
            }
        }
    }

    /// An anonymous client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client sending `user`'s Basic credentials with every request.
    pub fn user(&self, user: (&str, &str)) -> Client {
        self.client.basic(user)
    }

    pub fn transport(&self) -> Transport {
        match self.backend {
            Backend::InProcess { .. } => Transport::InProcess,
            Backend::Http { .. } => Transport::Http,
        }
    }

    /// The HTTP server, if the target is one.
    pub fn server(&self) -> Option<&Server> {
        match &self.backend {
            Backend::Http { server, .. } => Some(server),
            Backend::InProcess { .. } => None,
        }
    }

    /// Whether the registry still serves: the native server's process is alive (an
    /// in-process registry cannot exit).
    pub fn is_running(&mut self) -> bool {
        match &mut self.backend {
            Backend::Http { server, .. } => server.is_running(),
            Backend::InProcess { .. } => true,
        }
    }

    /// Replaces the users (credential rotation): in process at once, over HTTP by rewriting
    /// the account files, which the server reads again within seconds.
    pub fn set_accounts(&self, users: &[(&str, &str)]) {
        match &self.backend {
            Backend::InProcess {
                access, options, ..
            } => access.set_accounts(accounts(users, options.grants)),
            Backend::Http { accounts, .. } => write_accounts(
                accounts
                    .as_ref()
                    .expect("account files of this test")
                    .path(),
                users,
            ),
        }
    }
}
