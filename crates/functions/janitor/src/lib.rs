//! janitor glue: a scheduled event → one reconciliation pass → the report as
//! JSON, and one EMF metric line with the count of each action.

use serde_json::Value;
use spotrunner_aws::runtime::{self, EnvSource, SdkConfig};
use spotrunner_aws::{
    dynamodb::DynamoLedger, sqs::SqsJobQueue, ssm::SsmSecretStore, ssm_runner::SsmRunnerParameters,
};
use spotrunner_core::janitor::{Janitor, JanitorReport, JanitorSettings};
use spotrunner_core::ports::PortError;
use std::sync::Arc;

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// `SPOTRUNNER_CONFIG_PARAMETER` (or `SPOTRUNNER_CONFIG_FILE`),
/// `SPOTRUNNER_LEDGER_TABLE`, `SPOTRUNNER_JOBS_QUEUE_URL`, optional
/// `SPOTRUNNER_DRY_RUN` (report only).
pub async fn handler_from_env(sdk: &SdkConfig, env: &dyn EnvSource) -> Result<Handler, StartError> {
    let dry_run = parse_dry_run(env.get("SPOTRUNNER_DRY_RUN").as_deref())?;
    let config = runtime::load_config_from(sdk, env).await?;
    let secrets = SsmSecretStore::new(sdk);
    let github = spotrunner_github::client_from_config(&config.github, Some(&secrets)).await?;
    let janitor = Janitor {
        settings: JanitorSettings::for_deployment(&config.deployment),
        ledger: Arc::new(DynamoLedger::new(
            sdk,
            env.require("SPOTRUNNER_LEDGER_TABLE")?,
        )),
        github: Arc::new(github),
        compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(sdk)),
        parameters: Arc::new(SsmRunnerParameters::new(sdk)),
        jobs_queue: Arc::new(SqsJobQueue::new(
            sdk,
            env.require("SPOTRUNNER_JOBS_QUEUE_URL")?,
        )),
        config: Arc::new(config),
    };
    Ok(Handler { janitor, dry_run })
}

pub struct Handler {
    pub janitor: Janitor,
    pub dry_run: bool,
}

impl Handler {
    /// One pass; the metrics it counted are printed as it returns: the count
    /// of each action, `failed`, and per pool the gauges `capacity_used` (the
    /// ledger's counter after the pass) and `capacity_max` (`max_runners`).
    pub async fn handle(&self, _event: Value) -> Result<JanitorReport, PortError> {
        let _metrics = spotrunner_aws::metrics::invocation();
        let report = self.janitor.run(chrono::Utc::now(), self.dry_run).await?;
        self.capacity_gauges().await;
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

    /// `capacity_used` and `capacity_max` for every configured pool, as metric
    /// events (debug level: they are not log lines).
    async fn capacity_gauges(&self) {
        let used = self
            .janitor
            .ledger
            .capacity()
            .await
            .inspect_err(|e| {
                tracing::warn!(error = %e, "capacity counters unreadable: capacity_used not published this pass")
            })
            .ok();
        for pool in &self.janitor.config.pools {
            let pool_name = pool.name.as_str();
            if let Some(used) = &used {
                let n = used.pools.get(pool_name).copied().unwrap_or(0);
                tracing::debug!(
                    metric = "capacity_used",
                    pool = pool_name,
                    value = u64::from(n)
                );
            }
            tracing::debug!(
                metric = "capacity_max",
                pool = pool_name,
                value = u64::from(pool.max_runners)
            );
        }
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
