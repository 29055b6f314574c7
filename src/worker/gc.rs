//! The collector on the Worker: each cron invocation runs one bounded step of the incremental
//! collection ([`crate::gc::steps`]), its state in R2. Settings: `GC_GRACE` and
//! `GC_DELETE_UNTAGGED` (the core's table), and the Worker's own `GC_INTERVAL` (how often a
//! collection begins; empty: never), `GC_BUDGET` (storage operations, about R2 subrequests,
//! per invocation) and `RETENTION` (the rules, one a line).

use worker::Env;

use crate::clock::Clock;
use crate::gc::steps::{self, Status};
use crate::gc::{Options, Retention};
use crate::settings::{parse_duration, Settings};

use super::{var, DateClock, R2Storage};

/// Operations per invocation unless `GC_BUDGET` says otherwise: well under the Paid plan's
/// subrequests (10,000); the Free plan's 50 wants `GC_BUDGET` 40.
const DEFAULT_BUDGET: u64 = 1000;

/// The collector's own vars; an error names the var and what is wrong.
fn vars(env: &Env) -> Result<(u64, Option<u64>, Retention), String> {
    let budget = match var(env, "GC_BUDGET") {
        Some(b) => b
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| format!("GC_BUDGET: {b:?} is not a whole number above 0"))?,
        None => DEFAULT_BUDGET,
    };
    let interval = match var(env, "GC_INTERVAL") {
        Some(i) => Some(parse_duration(&i).map_err(|e| format!("GC_INTERVAL: {e}"))?),
        None => None,
    };
    let retention = match var(env, "RETENTION") {
        Some(r) => Retention::parse(&r).map_err(|e| format!("RETENTION: {e}"))?,
        None => Retention::default(),
    };
    Ok((budget, interval, retention))
}

/// One step of the collection, logged as one JSON line (`"message":"gc"`).
pub async fn step(env: &Env, storage: &R2Storage, settings: &Settings) {
    let (budget, interval, retention) = match vars(env) {
        Ok(v) => v,
        Err(e) => {
            worker::console_error!("garbage collection is misconfigured: {e}");
            return;
        }
    };
    let opts = Options {
        grace: settings.gc_grace,
        delete_untagged: settings.gc_delete_untagged,
        dry_run: false,
        retention,
    };
    let start = DateClock.now_ms();
    match steps::step(storage, &opts, &DateClock, budget, interval).await {
        Ok(s) => {
            let (status, phase, report) = match &s.status {
                Status::Idle => ("idle", None, None),
                Status::Busy => ("busy", None, None),
                Status::Working(p) => ("working", Some(p.as_str()), None),
                Status::Done(r) => ("done", None, Some(r)),
            };
            let line = serde_json::json!({
                "level": "INFO",
                "message": "gc",
                "status": status,
                "phase": phase,
                "generation": s.generation,
                "step": s.steps,
                "ops": s.ops,
                "removed": s.events.len(),
                "ms": DateClock.now_ms().saturating_sub(start),
                "report": report,
            });
            worker::console_log!("{line}");
        }
        Err(e) => worker::console_error!("garbage collection step failed: {}", e.cause()),
    }
}
