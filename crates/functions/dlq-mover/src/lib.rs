//! The `dlq-mover` Lambda's glue: the environment ([`env`]), the adapters it
//! names ([`mover_from_env`]; with the configuration, [`function_from_env`]),
//! the real pacer ([`pacer`]), and one invocation:
//! run the core mover, log the report, publish it as EMF metrics.

pub mod env;
pub mod pacer;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use spotrunner_aws::runtime::{self, EnvSource};
use spotrunner_aws::{
    dynamodb::DynamoLedger,
    sqs::SqsJobQueue,
    sqs_bootstrap::SqsBootstrapQueue,
    sqs_dlq::{SqsDeadLetterQueue, SqsRawQueue},
};
use spotrunner_core::dlq_mover::{
    BootstrapRedrive, DlqKind, DlqMover, DlqReport, DropReason, StopEventsRedrive,
};
use std::sync::Arc;

/// The function name in metric dimensions.
pub const FUNCTION: &str = "dlq-mover";

/// The mover on the SQS and DynamoDB adapters `env` names: the jobs DLQ, and
/// the bootstrap and stop-events DLQs when their variables are set.
pub fn mover_from_env(sdk: &SdkConfig, env: env::MoverEnv) -> DlqMover {
    DlqMover {
        dlq: Arc::new(SqsDeadLetterQueue::new(sdk, env.dlq_url)),
        jobs: Arc::new(SqsJobQueue::new(sdk, env.jobs_queue_url)),
        ledger: Arc::new(DynamoLedger::new(sdk, env.ledger_table)),
        pacer: Arc::new(pacer::TokioPacer::default()),
        settings: env.settings,
        bootstrap: env.bootstrap.map(|r| BootstrapRedrive {
            dlq: Arc::new(SqsDeadLetterQueue::new(sdk, r.dlq_url)),
            queue: Arc::new(SqsBootstrapQueue::new(sdk, r.queue_url)),
        }),
        stop_events: env.stop_events.map(|r| StopEventsRedrive {
            dlq: Arc::new(SqsDeadLetterQueue::new(sdk, r.dlq_url)),
            queue: Arc::new(SqsRawQueue::new(sdk, r.queue_url)),
        }),
    }
}

/// What one container runs: the mover, and the deployment its metrics name.
pub struct Function {
    pub mover: DlqMover,
    pub deployment: String,
}

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// The variables [`env::MoverEnv`] reads, and `SPOTRUNNER_CONFIG_PARAMETER`
/// (or `SPOTRUNNER_CONFIG_FILE`) for the deployment's name.
pub async fn function_from_env(
    sdk: &SdkConfig,
    env: &dyn EnvSource,
) -> Result<Function, StartError> {
    let mover_env = env::MoverEnv::from_lookup(|name| env.get(name))?;
    let config = runtime::load_config_from(sdk, env).await?;
    Ok(Function {
        mover: mover_from_env(sdk, mover_env),
        deployment: config.deployment,
    })
}

/// The report as metrics: `moved`, `dropped_<reason>` for every reason, `failed`,
/// `delete_failed`, and `left` when the depth could be read (totals over the
/// DLQs); per DLQ drained, `moved_<queue>` and `left_<queue>` (`jobs`,
/// `bootstrap`, `stop_events`).
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
    for (kind, q) in &report.queues {
        let (moved, left) = match kind {
            DlqKind::Jobs => ("moved_jobs", "left_jobs"),
            DlqKind::Bootstrap => ("moved_bootstrap", "left_bootstrap"),
            DlqKind::StopEvents => ("moved_stop_events", "left_stop_events"),
        };
        m.push((moved, q.moved as f64));
        if let Some(n) = q.left {
            m.push((left, n as f64));
        }
    }
    m
}

/// One scheduled run: move, log the summary, emit the metrics, return the report.
pub async fn invoke(mover: &DlqMover, deployment: &str, now: DateTime<Utc>) -> DlqReport {
    let _metrics = spotrunner_aws::metrics::invocation();
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
        queues = %serde_json::to_string(&report.queues).unwrap_or_default(),
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

    #[test]
    fn each_dlq_drained_has_its_moved_and_left() {
        let mut r = DlqReport::default();
        for (kind, moved, left) in [
            (DlqKind::Jobs, 3, Some(1)),
            (DlqKind::Bootstrap, 2, Some(0)),
            (DlqKind::StopEvents, 1, None),
        ] {
            r.queues.insert(
                kind,
                spotrunner_core::dlq_mover::QueueReport {
                    moved,
                    left,
                    ..Default::default()
                },
            );
        }
        let m: std::collections::BTreeMap<_, _> = metrics(&r).into_iter().collect();
        assert_eq!(m["moved_jobs"], 3.0);
        assert_eq!(m["left_jobs"], 1.0);
        assert_eq!(m["moved_bootstrap"], 2.0);
        assert_eq!(m["left_bootstrap"], 0.0);
        assert_eq!(m["moved_stop_events"], 1.0);
        assert!(!m.contains_key("left_stop_events"));
    }
}
