//! The native adapter: filesystem storage and a hyper + tokio server. It only converts
//! requests, responses and streams; all registry logic is in the core.

pub mod access;
pub mod fs;
pub mod server;

/// Seconds since the Unix epoch, the clock the core is given natively.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
