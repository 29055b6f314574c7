//! For the operations tests: a native server started with the ops flags (whose metrics
//! address is on its second stdout line), a local notification receiver on 127.0.0.1 that
//! records every POST, and a Prometheus text parser for scrapes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A native server the test owns, stopped by its PID.
pub struct OpsServer {
    pub url: String,
    /// `http://addr/metrics`, when started with `--metrics-listen`.
    pub metrics: Option<String>,
    child: Option<Child>,
}

impl OpsServer {
    /// `edge-registry serve` on a free port storing into `root`, with `args`.
    pub fn start(root: &Path, args: &[&str]) -> OpsServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-registry"))
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start edge-registry");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let metrics = args.contains(&"--metrics-listen").then(|| {
            let mut line = String::new();
            out.read_line(&mut line).expect("read metrics address");
            line.trim()
                .strip_prefix("metrics on ")
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .to_string()
        });
        OpsServer {
            url,
            metrics,
            child: Some(child),
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The metrics, scraped and parsed.
    pub async fn scrape(&self) -> Scrape {
        let url = self
            .metrics
            .as_ref()
            .expect("started with --metrics-listen");
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        Scrape::parse(&text)
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A scrape: each sample line's series (`name{labels}`) and value.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape {
            text: text.to_string(),
            samples,
        }
    }

    /// The value of one series (`name{a="x",b="y"}` as the encoder writes it), 0 if absent.
    pub fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The series of metric `name` (any labels).
    pub fn series(&self, name: &str) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}

/// A free port on 127.0.0.1 (bound and released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Post {
    pub content_type: String,
    pub headers: http::HeaderMap,
    pub body: Value,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    /// Never answers (the connection stays open).
    Hang,
}

/// A notification endpoint on 127.0.0.1 recording what it receives.
pub struct Receiver {
    pub url: String,
    posts: Arc<Mutex<Vec<Post>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on `addr` (port 0 for any), answering as `answer`.
    pub async fn start(addr: SocketAddr, answer: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        let recorded = posts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let posts = recorded.clone();
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let posts = posts.clone();
                    async move {
                        if answer == Answer::Hang {
                            std::future::pending::<()>().await;
                        }
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await.map(|b| b.to_bytes());
                        let body = bytes
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or(Value::Null);
                        posts.lock().unwrap().push(Post {
                            content_type: parts
                                .headers
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string(),
                            headers: parts.headers,
                            body,
                        });
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::new(),
                        )))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { url, posts, task }
    }

    pub fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// Every event received, in order.
    pub fn events(&self) -> Vec<Value> {
        self.posts()
            .iter()
            .flat_map(|p| p.body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits (at most `limit`) until `n` events arrived; returns what arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let events = self.events();
            if events.len() >= n || start.elapsed() > limit {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops listening (open connections end with the test's runtime).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
