//! `POST /_storage-suite`: runs the storage suite (`crate::storage::suite`) on this Worker's R2
//! bucket and answers its report as JSON (`{"passed","failed","checks":[{"name","ok",
//! "message"}]}`), 200 when every check passed, else 500. Only in a build with the
//! `storage-suite` feature (scripts/test-worker-storage), which must never be deployed: the
//! route needs no credentials and writes to the bucket.

use worker::Env;

use super::r2::R2Storage;
use crate::storage::suite::{self, Inspect};
use crate::storage::StorageResult;

pub const PATH: &str = "/_storage-suite";

#[async_trait::async_trait(?Send)]
impl Inspect for R2Storage {
    async fn stored_keys(&self) -> StorageResult<Vec<String>> {
        R2Storage::stored_keys(self).await
    }
}

/// Runs the suite on the storage the registry would use (R2, with the KV cache and its TTL).
pub async fn run(env: &Env) -> worker::Result<worker::Response> {
    let settings = super::settings(env).map_err(worker::Error::RustError)?;
    let storage = super::storage(env, &settings).map_err(worker::Error::RustError)?;
    let report = suite::run(&storage, super::now).await;
    worker::console_log!("storage suite:\n{report}");
    let status = if report.all_passed() { 200 } else { 500 };
    Ok(worker::Response::from_json(&report)?.with_status(status))
}
