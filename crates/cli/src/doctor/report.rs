//! The doctor's checklist: each check's outcome, what it saw and how to fix it,
//! printed for a person or as JSON.

use serde::Serialize;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Not wrong, but worth a look (nothing to compare yet, a setting off).
    Warn,
    Fail,
}

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable dotted id, e.g. `github.webhook.secret`, `aws.launch_template.cpu`.
    pub id: String,
    pub status: Status,
    /// What was checked and what was seen.
    pub detail: String,
    /// What to do about it (failures and warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(id: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(id: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The whole checklist.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
    }

    pub fn failed(&self) -> usize {
        self.count(Status::Fail)
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The checklist for a person: one line a check, its fix indented below.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.status {
                Status::Pass => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            out.push_str(&format!("[{mark}] {}: {}\n", c.id, c.detail));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("       fix: {fix}\n"));
            }
        }
        out.push_str(&format!(
            "\n{} passed, {} warnings, {} failed\n",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.failed()
        ));
        out
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.failed() == 0,
            "passed": self.count(Status::Pass),
            "warnings": self.count(Status::Warn),
            "failed": self.failed(),
            "checks": self.checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_counted_and_its_fix_printed() {
        let mut r = Report::default();
        r.push(Check::pass("a", "fine"));
        r.push(Check::fail("b", "broken", "mend it"));
        assert_eq!(r.failed(), 1);
        let text = r.render();
        assert!(
            text.contains("[FAIL] b: broken\n       fix: mend it"),
            "{text}"
        );
        assert!(text.contains("1 passed, 0 warnings, 1 failed"), "{text}");
        let j = r.json();
        assert_eq!(j["ok"], false);
        assert_eq!(j["checks"][1]["fix"], "mend it");
        assert!(j["checks"][0].get("fix").is_none());
    }
}
