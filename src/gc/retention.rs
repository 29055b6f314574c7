//! Retention rules: which tags to keep, per repository-name pattern, evaluated before the mark.
//!
//! One rule a line; `#` starts a comment. A line is a repository-name pattern, then what keeps
//! a tag there (a tag is kept when any of them keeps it; the others are removed):
//!
//! ```text
//! # pattern      what keeps a tag
//! library/*      keep-last=5 keep=latest,v* pushed-within=30d pulled-within=7d
//! *              keep-last=10
//! ```
//!
//! - `keep-last=N`: the N most recently pushed tags;
//! - `keep=P,Q`: tags matching a pattern;
//! - `pushed-within=D`, `pulled-within=D`: tags whose manifest was pushed, or pulled, within a
//!   duration (pull times are kept by the day).
//!
//! Patterns use `*` (any run of characters, `/` included) and `?` (one character). The first
//! line whose pattern matches a repository applies to it; a repository no line matches keeps
//! every tag. Anything malformed is refused with the line and what is wrong.

use crate::digest::Digest;
use crate::names::{Name, Tag};
use crate::settings::parse_duration;

use super::mark::Snapshot;

/// One line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub repos: String,
    pub keep_last: Option<usize>,
    pub keep: Vec<String>,
    /// Seconds.
    pub pushed_within: Option<u64>,
    /// Seconds.
    pub pulled_within: Option<u64>,
}

/// Every rule, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub rules: Vec<Rule>,
}

/// `*` and `?` matching over the whole of `text`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Retention {
    /// Parses the rules; an error names the line and what is wrong.
    pub fn parse(text: &str) -> Result<Retention, String> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |m: String| format!("retention rule on line {}: {m}", i + 1);
            let mut words = line.split_whitespace();
            let repos = words.next().unwrap_or_default().to_string();
            let mut rule = Rule {
                repos,
                keep_last: None,
                keep: Vec::new(),
                pushed_within: None,
                pulled_within: None,
            };
            let mut any = false;
            for word in words {
                let (key, value) = word
                    .split_once('=')
                    .ok_or_else(|| at(format!("{word:?} is not key=value")))?;
                if value.is_empty() {
                    return Err(at(format!("{key} has no value")));
                }
                match key {
                    "keep-last" => {
                        rule.keep_last = Some(value.parse().map_err(|_| {
                            at(format!("keep-last: {value:?} is not a whole number"))
                        })?)
                    }
                    "keep" => rule.keep.extend(value.split(',').map(str::to_string)),
                    "pushed-within" => {
                        rule.pushed_within =
                            Some(parse_duration(value).map_err(|e| at(format!("{key}: {e}")))?)
                    }
                    "pulled-within" => {
                        rule.pulled_within =
                            Some(parse_duration(value).map_err(|e| at(format!("{key}: {e}")))?)
                    }
                    _ => {
                        return Err(at(format!(
                            "unknown {key:?} (keep-last, keep, pushed-within or pulled-within)"
                        )))
                    }
                }
                any = true;
            }
            if !any {
                return Err(at(format!(
                    "{:?} says nothing to keep (a rule that keeps nothing is written keep-last=0)",
                    rule.repos
                )));
            }
            rules.push(rule);
        }
        Ok(Retention { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The tags no rule keeps, at `now` (seconds).
    pub fn expired(&self, snap: &Snapshot, now: u64) -> Vec<(Name, Tag, Digest)> {
        let mut out = Vec::new();
        for repo in &snap.repos {
            let Some(rule) = self
                .rules
                .iter()
                .find(|r| glob(&r.repos, repo.name.as_str()))
            else {
                continue;
            };
            // (pushed ms, pulled day) of each tag's manifest.
            let times = |d: &Digest| {
                repo.records
                    .get(d)
                    .map(|(r, _)| (r.pushed.unwrap_or(0), r.pulled))
                    .unwrap_or((0, None))
            };
            let mut by_age: Vec<&(Tag, Digest)> = repo.tags.iter().collect();
            by_age.sort_by(|a, b| {
                times(&b.1)
                    .0
                    .cmp(&times(&a.1).0)
                    .then_with(|| a.0.as_str().cmp(b.0.as_str()))
            });
            for (rank, (tag, d)) in by_age.iter().enumerate() {
                let (pushed, pulled) = times(d);
                let kept = rule.keep_last.is_some_and(|n| rank < n)
                    || rule.keep.iter().any(|p| glob(p, tag.as_str()))
                    || rule
                        .pushed_within
                        .is_some_and(|w| (pushed / 1000).saturating_add(w) >= now)
                    || rule
                        .pulled_within
                        .is_some_and(|w| pulled.is_some_and(|day| (day + 1) * 86_400 + w >= now));
                if !kept {
                    out.push((repo.name.clone(), tag.clone(), d.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "a/b"));
        assert!(glob("v*", "v1.2"));
        assert!(!glob("v*", "x1"));
        assert!(glob("library/*", "library/alpine"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*-rc*", "1.0-rc2"));
        assert!(glob("latest", "latest"));
        assert!(!glob("latest", "latest2"));
    }

    #[test]
    fn parses_and_refuses() {
        let r = Retention::parse(
            "# comment\nlibrary/* keep-last=5 keep=latest,v* pushed-within=30d\n\n* pulled-within=7d # x\n",
        )
        .unwrap();
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.rules[0].keep_last, Some(5));
        assert_eq!(r.rules[0].keep, vec!["latest", "v*"]);
        assert_eq!(r.rules[0].pushed_within, Some(30 * 86_400));
        assert_eq!(r.rules[1].pulled_within, Some(7 * 86_400));
        for bad in [
            "x keep-last=five",
            "x pushed-within=1w",
            "x keep-forever=1",
            "x",
            "x keep=",
            "x keep-last",
        ] {
            let e = Retention::parse(bad).unwrap_err();
            assert!(e.starts_with("retention rule on line 1: "), "{bad}: {e}");
        }
    }
}
