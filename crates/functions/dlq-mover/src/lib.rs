//! The `dlq-mover` Lambda's glue: the environment ([`env`]), the real pacer
//! ([`pacer`]), and one invocation: run the core mover, log the report, publish
//! it as EMF metrics.

pub mod env;
pub mod pacer;

use chrono::{DateTime, Utc};
use spotrunner_core::dlq_mover::{DlqMover, DlqReport, DropReason};

/// The function name in metric dimensions.
pub const FUNCTION: &str = "dlq-mover";

/// The report as metrics: `moved`, `dropped_<reason>` for every reason, `failed`,
/// `delete_failed`, and `left` when the depth could be read.
pub fn metrics(report: &DlqReport) -> Vec<(&'static str, f64)> {
    let mut m = vec![("moved", report.moved as f64)];
    for reason in DropReason::ALL {
        let name = match reason {
            DropReason::Malformed => "dropped_malformed",
            DropReason::Stale => "dropped_stale",
            DropReason::Finished => "dropped_finished",
        };
        m.push((name, report.dropped(reason) as f64));
    }
    m.push(("failed", report.failed as f64));
    m.push(("delete_failed", report.delete_failed as f64));
    if let Some(left) = report.left {
        m.push(("left", left as f64));
    }
    m
}

/// One scheduled run: move, log the summary, emit the metrics, return the report.
pub async fn invoke(mover: &DlqMover, deployment: &str, now: DateTime<Utc>) -> DlqReport {
    let report = mover.run(now).await;
    tracing::info!(
        received = report.received,
        moved = report.moved,
        dropped_malformed = report.dropped(DropReason::Malformed),
        dropped_stale = report.dropped(DropReason::Stale),
        dropped_finished = report.dropped(DropReason::Finished),
        failed = report.failed,
        delete_failed = report.delete_failed,
        left = report.left,
        stopped = report.stopped.as_deref(),
        "dlq-mover run done"
    );
    spotrunner_aws::metrics::emit(
        &[("deployment", deployment), ("function", FUNCTION)],
        &metrics(&report),
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_becomes_a_metric() {
        let mut r = DlqReport {
            moved: 85,
            failed: 1,
            left: Some(3),
            ..DlqReport::default()
        };
        r.dropped.insert(DropReason::Stale, 10);
        r.dropped.insert(DropReason::Finished, 5);
        r.dropped.insert(DropReason::Malformed, 2);
        let m: std::collections::BTreeMap<_, _> = metrics(&r).into_iter().collect();
        assert_eq!(m["moved"], 85.0);
        assert_eq!(m["dropped_stale"], 10.0);
        assert_eq!(m["dropped_finished"], 5.0);
        assert_eq!(m["dropped_malformed"], 2.0);
        assert_eq!(m["failed"], 1.0);
        assert_eq!(m["delete_failed"], 0.0);
        assert_eq!(m["left"], 3.0);
        // An unknown depth is not published as zero.
        r.left = None;
        assert!(!metrics(&r).iter().any(|(k, _)| *k == "left"));
    }
}
