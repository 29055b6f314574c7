//! The on-disk spool of one notification endpoint: batches of events, oldest first, that
//! survive a restart (and a SIGKILL) until they are delivered.
//!
//! A batch is one file, `<seq>-<count>.json`, holding its events as compact JSON objects, one a
//! line (so a POST's body is the lines joined by commas, with no parsing). Files are written to a
//! temporary name, fsynced and renamed into place, so the spool never holds a torn batch. When
//! the spool holds more than its limit of events, the oldest batches are dropped (the caller
//! logs and counts them).

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One batch in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub seq: u64,
    pub count: u64,
}

/// The spool's index (the files themselves are the truth; this is what is in the folder).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    batches: VecDeque<Batch>,
    events: u64,
    next: u64,
    max_events: u64,
}

fn name(b: Batch) -> String {
    format!("{:020}-{}.json", b.seq, b.count)
}

fn parse_name(n: &str) -> Option<Batch> {
    let (seq, count) = n.strip_suffix(".json")?.split_once('-')?;
    Some(Batch {
        seq: seq.parse().ok()?,
        count: count.parse().ok()?,
    })
}

impl Spool {
    /// Opens (creating) the spool in `dir`, finding the batches a previous run left, and
    /// removing temporary files a crash left.
    pub fn open(dir: &Path, max_events: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut batches = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let n = entry.file_name();
            let n = n.to_string_lossy();
            match parse_name(&n) {
                Some(b) => batches.push(b),
                None if n.ends_with(".tmp") => {
                    let _ = fs::remove_file(entry.path());
                }
                None => {}
            }
        }
        batches.sort_by_key(|b| b.seq);
        let next = batches.last().map_or(0, |b| b.seq + 1);
        let events = batches.iter().map(|b| b.count).sum();
        Ok(Spool {
            dir: dir.to_path_buf(),
            batches: batches.into(),
            events,
            next,
            max_events: max_events.max(1),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Events spooled.
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Reserves the next batch's number (the file is written by [`write_batch`], outside any
    /// lock, then [`Spool::added`]).
    pub fn reserve(&mut self, count: u64) -> Batch {
        let b = Batch {
            seq: self.next,
            count,
        };
        self.next += 1;
        b
    }

    /// A batch was written: it joins the spool. Returns the batches dropped to stay within
    /// the limit (their files already removed), oldest first.
    pub fn added(&mut self, b: Batch) -> Vec<Batch> {
        self.batches.push_back(b);
        self.events += b.count;
        let mut dropped = Vec::new();
        while self.events > self.max_events && self.batches.len() > 1 {
            if let Some(old) = self.batches.pop_front() {
                self.events -= old.count;
                let _ = fs::remove_file(self.dir.join(name(old)));
                dropped.push(old);
            }
        }
        dropped
    }

    /// The oldest batches, up to about `max_events` events (at least one batch).
    pub fn oldest(&self, max_events: u64) -> Vec<Batch> {
        let mut out = Vec::new();
        let mut n = 0;
        for b in &self.batches {
            if !out.is_empty() && n + b.count > max_events {
                break;
            }
            n += b.count;
            out.push(*b);
        }
        out
    }

    /// The batches were delivered: they leave the spool (those still in it).
    pub fn delivered(&mut self, done: &[Batch]) -> Vec<PathBuf> {
        let mut files = Vec::new();
        self.batches.retain(|b| {
            if done.contains(b) {
                self.events -= b.count;
                files.push(self.dir.join(name(*b)));
                false
            } else {
                true
            }
        });
        files
    }
}

/// Writes a batch's file durably: a temporary file, fsynced, renamed into place.
pub fn write_batch(dir: &Path, b: Batch, body: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{:020}.tmp", b.seq));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(body)?;
    f.sync_data()?;
    drop(f);
    fs::rename(&tmp, dir.join(name(b)))
}

/// Reads a batch's file (see [`events`]); `None` if it is gone (dropped since it was picked).
pub fn read_batch(dir: &Path, b: Batch) -> io::Result<Option<Vec<u8>>> {
    match fs::read(dir.join(name(b))) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The events in a batch's file, each a JSON object.
pub fn events(file: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', file)
        .chain(std::iter::once(file.len()))
        .filter_map(move |end| {
            let line = &file[start.min(end)..end];
            start = end + 1;
            (!line.is_empty()).then_some(line)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_splits_into_its_non_empty_lines() {
        let lines = |f: &'static [u8]| events(f).collect::<Vec<_>>();
        assert_eq!(lines(b"{a}\n{b}\n\n{c}"), [&b"{a}"[..], b"{b}", b"{c}"]);
        assert_eq!(lines(b"{a}\n"), [&b"{a}"[..]]);
        assert!(lines(b"").is_empty());
        assert!(lines(b"\n\n").is_empty());
    }

    #[test]
    fn keeps_order_limits_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 5).unwrap();
        for count in [2, 2] {
            let b = s.reserve(count);
            write_batch(s.dir(), b, b"{}").unwrap();
            assert!(s.added(b).is_empty());
        }
        // A third batch of 2 passes the limit of 5: the oldest goes.
        let b = s.reserve(2);
        write_batch(s.dir(), b, b"{}").unwrap();
        assert_eq!(s.added(b), [Batch { seq: 0, count: 2 }]);
        assert_eq!(s.events(), 4);
        fs::write(dir.path().join("00000000000000000009.tmp"), b"torn").unwrap();
        let mut s = Spool::open(dir.path(), 5).unwrap();
        assert_eq!(s.events(), 4);
        assert_eq!(s.oldest(1), [Batch { seq: 1, count: 2 }]);
        assert_eq!(s.oldest(10).len(), 2);
        assert!(!dir.path().join("00000000000000000009.tmp").exists());
        assert_eq!(s.reserve(1).seq, 3);
        let files = s.delivered(&[Batch { seq: 1, count: 2 }]);
        assert_eq!(files.len(), 1);
        assert_eq!(s.events(), 2);
    }
}
