//! Progress: on a terminal a bar per blob and one overall (`indicatif`: bytes, rate, ETA);
//! otherwise a plain line when a blob starts and ends; nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::registry::short;
use super::upload::Sent;
use crate::digest::Digest;

#[derive(Clone)]
pub struct Progress {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Quiet,
    Plain,
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
    },
}

/// One blob's progress.
pub struct BlobProgress {
    digest: Digest,
    size: u64,
    mode: Mode,
    bar: Option<ProgressBar>,
    last: Arc<AtomicU64>,
}

impl Progress {
    /// `total` bytes to copy.
    pub fn new(quiet: bool, total: u64) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            overall.set_prefix("total");
            Mode::Bars { multi, overall }
        } else {
            Mode::Plain
        };
        Progress { mode }
    }

    /// A line of its own (above the bars on a terminal).
    pub fn line(&self, text: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => eprintln!("{text}"),
            Mode::Bars { multi, .. } => {
                let _ = multi.println(text);
            }
        }
    }

    pub fn blob(&self, digest: &Digest, size: u64) -> BlobProgress {
        let bar = match &self.mode {
            Mode::Bars { multi, .. } => {
                let b = multi.add(ProgressBar::new(size));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_prefix(digest.hex()[..12.min(digest.hex().len())].to_string());
                Some(b)
            }
            _ => None,
        };
        BlobProgress {
            digest: digest.clone(),
            size,
            mode: self.mode.clone(),
            bar,
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn finish(&self) {
        if let Mode::Bars { overall, .. } = &self.mode {
            overall.finish_and_clear();
        }
    }
}

impl BlobProgress {
    /// The callback the upload reports its offset to.
    pub fn callback(&self) -> Arc<dyn Fn(u64) + Send + Sync> {
        let bar = self.bar.clone();
        let overall = match &self.mode {
            Mode::Bars { overall, .. } => Some(overall.clone()),
            _ => None,
        };
        let last = self.last.clone();
        Arc::new(move |pos| {
            let before = last.swap(pos, Ordering::Relaxed);
            if let Some(b) = &bar {
                b.set_position(pos);
            }
            if let Some(o) = &overall {
                if pos >= before {
                    o.inc(pos - before);
                } else {
                    o.set_position(o.position().saturating_sub(before - pos));
                }
            }
        })
    }

    pub fn done(self, sent: &Sent) {
        let what = match sent {
            Sent::Present => "already there".to_string(),
            Sent::Mounted => "mounted".to_string(),
            Sent::Uploaded {
                bytes,
                resumed_from: 0,
            } => format!("{} sent", HumanBytes(*bytes)),
            Sent::Uploaded {
                bytes,
                resumed_from,
            } => format!(
                "{} sent, resumed at {}",
                HumanBytes(*bytes),
                HumanBytes(*resumed_from)
            ),
        };
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => eprintln!(
                "blob {} ({}): {what}",
                short(&self.digest),
                HumanBytes(self.size)
            ),
            Mode::Bars { multi, .. } => {
                let _ = multi.println(format!(
                    "blob {} ({}): {what}",
                    short(&self.digest),
                    HumanBytes(self.size)
                ));
            }
        }
    }

    pub fn failed(self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }
}
