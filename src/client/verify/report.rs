//! The results: a table, counts, and a report file (JSON, or JUnit XML).

use std::path::Path;

use super::{CheckResult, Keyword, Outcome};

pub fn counts(results: &[CheckResult]) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for r in results {
        match r.outcome {
            Outcome::Pass => c.0 += 1,
            Outcome::Fail(_) => c.1 += 1,
            Outcome::Skip(_) => c.2 += 1,
        }
    }
    c
}

/// Whether a MUST check failed.
pub fn must_failed(results: &[CheckResult]) -> bool {
    results
        .iter()
        .any(|r| r.meta.keyword == Keyword::MUST && matches!(r.outcome, Outcome::Fail(_)))
}

/// One line per check: status, keyword, id, section, and the reason for a failure or skip.
pub fn table(results: &[CheckResult]) -> String {
    let idw = results.iter().map(|r| r.meta.id.len()).max().unwrap_or(10);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<6} {:<6} {:<idw$} {}\n",
        "RESULT", "LEVEL", "CHECK", "SPEC SECTION / WHY"
    ));
    for r in results {
        let (status, why) = match &r.outcome {
            Outcome::Pass => ("pass", String::new()),
            Outcome::Fail(m) => ("FAIL", format!(" -- {m}")),
            Outcome::Skip(m) => ("skip", format!(" -- {m}")),
        };
        out.push_str(&format!(
            "{status:<6} {:<6} {:<idw$} {}{why}\n",
            format!("{:?}", r.meta.keyword),
            r.meta.id,
            r.meta.section
        ));
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one testsuite per area, one testcase per check.
pub fn junit(url: &str, results: &[CheckResult]) -> String {
    let (passed, failed, skipped) = counts(results);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"edge-registry verify {}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\">\n",
        xml_escape(url),
        passed + failed + skipped
    ));
    let mut areas: Vec<&str> = results.iter().map(|r| r.meta.area).collect();
    areas.dedup();
    for area in areas {
        let in_area: Vec<&CheckResult> = results.iter().filter(|r| r.meta.area == area).collect();
        let f = in_area
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .count();
        let s = in_area
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Skip(_)))
            .count();
        out.push_str(&format!(
            "  <testsuite name=\"{area}\" tests=\"{}\" failures=\"{f}\" skipped=\"{s}\">\n",
            in_area.len()
        ));
        for r in in_area {
            out.push_str(&format!(
                "    <testcase classname=\"{area}\" name=\"{} [{:?}] {}\">",
                r.meta.id,
                r.meta.keyword,
                xml_escape(r.meta.section)
            ));
            match &r.outcome {
                Outcome::Pass => {}
                Outcome::Fail(m) => out.push_str(&format!(
                    "<failure message=\"{}\">{}</failure>",
                    xml_escape(m),
                    xml_escape(r.meta.title)
                )),
                Outcome::Skip(m) => {
                    out.push_str(&format!("<skipped message=\"{}\"/>", xml_escape(m)))
                }
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Writes the report: `.xml` is JUnit, anything else JSON.
pub fn write(path: &Path, url: &str, results: &[CheckResult]) -> std::io::Result<()> {
    let text = if path.extension().is_some_and(|e| e == "xml") {
        junit(url, results)
    } else {
        let (passed, failed, skipped) = counts(results);
        serde_json::to_string_pretty(&serde_json::json!({
            "registry": url,
            "spec": "OCI Distribution Spec v1.1",
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
            "must_failed": must_failed(results),
            "checks": results,
        }))
        .unwrap_or_default()
    };
    std::fs::write(path, text)
}
