//! recovery glue: an EventBridge schedule's input names the task —
//! `{"task": "redelivery"}`, `{"task": "sweep"}` or `{"task": "runner-cache"}`
//! — which runs once; the report is returned as JSON and its counts
//! published as EMF metrics.

mod wiring;

pub use wiring::handler_from_env;

use serde::Deserialize;
use serde_json::Value;
use spotrunner_core::ports::PortError;
use spotrunner_core::recovery::{Redelivery, Sweep};
use spotrunner_core::runner_cache::{RunnerCacheSync, SyncError};

/// Which task an invocation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    Redelivery,
    Sweep,
    /// Fill the runner cache with verified runner tarballs.
    RunnerCache,
}

/// The event is not `{"task": "redelivery" | "sweep"}`.
#[derive(Debug, thiserror::Error)]
#[error(
    "event: {0} (expected {{\"task\": \"redelivery\"}}, {{\"task\": \"sweep\"}} or {{\"task\": \"runner-cache\"}})"
)]
pub struct BadEvent(String);

impl Task {
    pub fn from_event(event: &Value) -> Result<Self, BadEvent> {
        #[derive(Deserialize)]
        struct Input {
            task: Task,
        }
        serde_json::from_value::<Input>(event.clone())
            .map(|i| i.task)
            .map_err(|e| BadEvent(e.to_string()))
    }
}

/// The tasks with their ports.
pub struct Handler {
    pub deployment: String,
    pub redelivery: Redelivery,
    pub sweep: Sweep,
    /// `None` without a runner bucket (`SPOTRUNNER_BUCKET`) or when
    /// `recovery.runner_cache.enabled` is false.
    pub runner_cache: Option<RunnerCacheSync>,
}

/// A run failed on our side (the ledger); the invocation fails.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Event(#[from] BadEvent),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    RunnerCache(#[from] SyncError),
}

impl Handler {
    /// One invocation; the metrics its events counted are printed as it returns.
    pub async fn handle(&self, event: Value) -> Result<Value, RunError> {
        let _metrics = spotrunner_aws::metrics::invocation();
        let now = chrono::Utc::now();
        let task = Task::from_event(&event)?;
        let dims = [
            ("deployment", self.deployment.as_str()),
            ("function", "recovery"),
        ];
        match task {
            Task::Redelivery => {
                let r = self.redelivery.run(now).await?;
                spotrunner_aws::metrics::emit(
                    &dims,
                    &[
                        ("deliveries_failed_found", r.failed_found as f64),
                        ("deliveries_redelivered", r.redelivered as f64),
                        ("deliveries_recovered", r.recovered as f64),
                        ("deliveries_gave_up", r.gave_up as f64),
                        ("deliveries_pending", r.pending as f64),
                        ("redelivery_github_calls", r.calls as f64),
                    ],
                );
                Ok(serde_json::to_value(r).unwrap_or_default())
            }
            Task::Sweep => {
                let r = self.sweep.run(now).await?;
                spotrunner_aws::metrics::emit(
                    &dims,
                    &[
                        ("jobs_found_by_sweep", r.enqueued as f64),
                        ("sweep_queued_jobs", r.queued_jobs as f64),
                        ("sweep_github_calls", r.calls as f64),
                        ("sweep_rate_limited", f64::from(u8::from(r.rate_limited))),
                    ],
                );
                Ok(serde_json::to_value(r).unwrap_or_default())
            }
            Task::RunnerCache => {
                let Some(sync) = &self.runner_cache else {
                    tracing::info!(
                        "runner cache task skipped: no SPOTRUNNER_BUCKET, or recovery.runner_cache.enabled is false"
                    );
                    return Ok(serde_json::json!({ "skipped": "runner cache disabled" }));
                };
                let r = sync.run(now).await?;
                spotrunner_aws::metrics::emit(
                    &dims,
                    &[
                        ("runner_cache_stored", r.stored() as f64),
                        ("runner_cache_refused_archs", r.refused() as f64),
                    ],
                );
                Ok(serde_json::to_value(r).unwrap_or_default())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_names_the_task_or_is_refused_clearly() {
        assert_eq!(
            Task::from_event(&serde_json::json!({"task": "sweep"})).unwrap(),
            Task::Sweep
        );
        assert_eq!(
            Task::from_event(&serde_json::json!({"task": "redelivery", "x": 1})).unwrap(),
            Task::Redelivery
        );
        assert_eq!(
            Task::from_event(&serde_json::json!({"task": "runner-cache"})).unwrap(),
            Task::RunnerCache
        );
        let e = Task::from_event(&serde_json::json!({"task": "janitor"})).unwrap_err();
        assert!(e.to_string().contains("runner-cache"), "{e}");
        assert!(e.to_string().contains("redelivery"), "{e}");
        assert!(Task::from_event(&serde_json::json!({})).is_err());
    }
}
