//! Runs the incremental collector (`gc::steps`, what the Worker's cron runs) over a native
//! store to its end, a step of `BUDGET` storage operations at a time, and prints how many steps
//! it took, their time, and the largest saved state (scripts/bench.d/gc).
//!
//!   cargo run --release --example gc_steps -- ROOT [BUDGET]

use std::time::Instant;

use edge_registry::gc::steps::{self, Status};
use edge_registry::gc::Options;
use edge_registry::native::fs::FsStorage;
use edge_registry::native::SystemClock;
use edge_registry::storage::Storage;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().expect("usage: gc_steps ROOT [BUDGET]");
    let budget: u64 = args.next().map_or(1000, |a| a.parse().unwrap());
    let s = FsStorage::open(&root).unwrap();
    let opts = Options {
        grace: 0,
        ..Options::default()
    };
    let (mut times, mut ops, mut state_max) = (Vec::new(), Vec::new(), 0usize);
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let step = steps::step(&s, &opts, &SystemClock, budget, Some(0))
            .await
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        ops.push(step.ops);
        if let Some(state) = s.get(steps::STATE).await.unwrap() {
            state_max = state_max.max(state.len());
        }
        match step.status {
            Status::Working(_) => {}
            Status::Done(r) => {
                let n = times.len() as f64;
                times.sort_by(|a, b| a.total_cmp(b));
                println!(
                    "- incremental, budget {budget}: {} steps in {:.1} s; per step {:.0} ms mean, {:.0} ms median, {:.0} ms max; {:.0} operations mean; largest saved state {} KiB; blobs removed {}, kept {}",
                    times.len(),
                    start.elapsed().as_secs_f64(),
                    times.iter().sum::<f64>() / n,
                    times[times.len() / 2],
                    times[times.len() - 1],
                    ops.iter().sum::<u64>() as f64 / n,
                    state_max / 1024,
                    r.blobs_removed,
                    r.blobs_kept,
                );
                return;
            }
            other => panic!("{other:?}"),
        }
    }
}
