//! Per-thread shards for what every request updates: each thread writes to a cache line of its
//! own, so that threads do not pass one line from core to core on every request (the cost of
//! a shared atomic or lock that two cores update turn about, many times an uncontended one).
//! Metrics' shards are summed at a scrape; the notification queue's shards are merged by its
//! writer ([`super::notify`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// How many shards: one per core (tokio runs as many worker threads), at most 16.
pub fn shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(16)))
}

/// This thread's shard of `shards`: threads are numbered as they first ask, so that the first
/// `shards` threads to ask (the request workers) each have one of their own.
pub fn thread_shard(shards: usize) -> usize {
    static THREADS: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    NUMBER.with(|n| {
        if n.get() == usize::MAX {
            n.set(THREADS.fetch_add(1, Ordering::Relaxed));
        }
        n.get() % shards.max(1)
    })
}

/// Sixteen counters on a pair of cache lines (what adjacent-line prefetching moves together)
/// of their own.
#[repr(align(128))]
#[derive(Default)]
struct Line([AtomicU64; 16]);

/// `width` counters in each of [`shards`] shards.
struct Cells {
    width: usize,
    /// Lines a shard takes.
    stride: usize,
    lines: Box<[Line]>,
}

impl Cells {
    fn new(width: usize) -> Cells {
        let stride = width.div_ceil(16).max(1);
        Cells {
            width,
            stride,
            lines: (0..stride * shards()).map(|_| Line::default()).collect(),
        }
    }

    fn cell(&self, shard: usize, i: usize) -> &AtomicU64 {
        let at = shard * self.stride * 16 + i;
        &self.lines[at / 16].0[at % 16]
    }

    /// Adds `v` to counter `i` in this thread's shard.
    fn add(&self, i: usize, v: u64) {
        debug_assert!(i < self.width);
        self.cell(thread_shard(shards()), i)
            .fetch_add(v, Ordering::Relaxed);
    }

    /// Counter `i`, summed over the shards.
    fn sum(&self, i: usize) -> u64 {
        (0..self.lines.len() / self.stride)
            .map(|s| self.cell(s, i).load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// A Prometheus counter kept in per-thread shards.
#[derive(Clone)]
pub struct Counter(Arc<Cells>);

impl Default for Counter {
    fn default() -> Self {
        Counter(Arc::new(Cells::new(1)))
    }
}

impl Counter {
    pub fn inc(&self) {
        self.0.add(0, 1);
    }

    pub fn inc_by(&self, v: u64) {
        self.0.add(0, v);
    }

    pub fn get(&self) -> u64 {
        self.0.sum(0)
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A Prometheus histogram of durations kept in per-thread shards: per shard a count per
/// bucket (the last one `+Inf`), the count and the sum in nanoseconds.
#[derive(Clone)]
pub struct Histogram {
    bounds: Arc<[f64]>,
    cells: Arc<Cells>,
}

impl Histogram {
    /// A histogram with these upper bounds in seconds (ascending), and `+Inf`.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Histogram {
        let bounds: Arc<[f64]> = bounds.into_iter().collect();
        let cells = Arc::new(Cells::new(bounds.len() + 3));
        Histogram { bounds, cells }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let n = self.bounds.len();
        let bucket = self.bounds.iter().position(|b| secs <= *b).unwrap_or(n);
        self.cells.add(bucket, 1);
        self.cells.add(n + 1, 1);
        self.cells
            .add(n + 2, d.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// The count and the sum in seconds.
    pub fn count_and_sum(&self) -> (u64, f64) {
        let n = self.bounds.len();
        (self.cells.sum(n + 1), self.cells.sum(n + 2) as f64 / 1e9)
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (count, sum) = self.count_and_sum();
        f.debug_struct("Histogram")
            .field("count", &count)
            .field("sum", &sum)
            .finish()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(i, bound)| (bound, self.cells.sum(i)))
            .collect();
        let (count, sum) = self.count_and_sum();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    /// Counts from many threads add up, and the exposition is what prometheus-client writes for
    /// its own counter and histogram given the same observations.
    #[test]
    fn shards_sum_and_encode_as_the_crates_own_metrics() {
        let bounds = || prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 4);
        let (ours, hist) = (Counter::default(), Histogram::new(bounds()));
        let theirs = prometheus_client::metrics::counter::Counter::<u64>::default();
        let their_hist = prometheus_client::metrics::histogram::Histogram::new(bounds());
        // Whole milliseconds, so that the sums in seconds are exact both ways.
        let observations: Vec<u64> = (0..12).map(|i| i * i).collect();
        std::thread::scope(|s| {
            for t in 0..5 {
                let (ours, hist, obs) = (&ours, &hist, &observations);
                s.spawn(move || {
                    for _ in 0..1000 {
                        ours.inc();
                    }
                    ours.inc_by(t);
                    for ms in obs.iter().skip(t as usize).step_by(5) {
                        hist.observe(Duration::from_millis(*ms));
                    }
                });
            }
        });
        theirs.inc_by(5000 + 10);
        for ms in &observations {
            their_hist.observe(*ms as f64 / 1000.0);
        }
        assert_eq!(ours.get(), 5010);
        assert_eq!(hist.count_and_sum(), (12, 0.506));
        let text = |c: Box<dyn FnOnce(&mut Registry)>| {
            let mut r = Registry::default();
            c(&mut r);
            let mut out = String::new();
            encode(&mut out, &r).unwrap();
            out
        };
        let (o, h) = (ours.clone(), hist.clone());
        let mine = text(Box::new(move |r| {
            r.register("requests", "Requests.", o);
            r.register("latency", "Latency.", h);
        }));
        let crates = text(Box::new(move |r| {
            r.register("requests", "Requests.", theirs);
            r.register("latency", "Latency.", their_hist);
        }));
        assert_eq!(mine, crates);
        assert!(mine.contains("latency_bucket{le=\"+Inf\"} 12"), "{mine}");
    }
}
