//! janitor glue: a scheduled event → one reconciliation pass → the report as
//! JSON, and one EMF metric line with the count of each action.

use serde_json::Value;
use spotrunner_core::janitor::{Janitor, JanitorReport};
use spotrunner_core::ports::PortError;

pub struct Handler {
    pub janitor: Janitor,
    pub dry_run: bool,
}

impl Handler {
    pub async fn handle(&self, _event: Value) -> Result<JanitorReport, PortError> {
        let report = self.janitor.run(chrono::Utc::now(), self.dry_run).await?;
        let counts = report.counts();
        let mut metrics: Vec<(&str, f64)> = counts.iter().map(|(k, v)| (*k, *v as f64)).collect();
        metrics.push(("failed", report.failed() as f64));
        spotrunner_aws::metrics::emit(
            &[
                ("deployment", self.janitor.config.deployment.as_str()),
                ("function", "janitor"),
            ],
            &metrics,
        );
        Ok(report)
    }
}

/// `SPOTRUNNER_DRY_RUN`: `true`/`1`/`yes` → report only; unset/`false`/`0`/`no`
/// → act; anything else is refused, naming the variable.
pub fn parse_dry_run(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(format!(
            "SPOTRUNNER_DRY_RUN: {other:?} is not one of true, false, 1, 0, yes, no"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_dry_run;

    #[test]
    fn dry_run_values() {
        assert_eq!(parse_dry_run(None), Ok(false));
        assert_eq!(parse_dry_run(Some("TRUE")), Ok(true));
        assert_eq!(parse_dry_run(Some("0")), Ok(false));
        assert!(
            parse_dry_run(Some("maybe"))
                .unwrap_err()
                .contains("SPOTRUNNER_DRY_RUN")
        );
    }
}
