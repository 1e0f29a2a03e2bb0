//! `spotrunner interrupt INSTANCE|JOB`: deliver a spot interruption to a
//! runner, to see (and test) what an interruption does.
//!
//! Local backend: the runner gets the warning (the instance-action file in
//! its directory, `$SPOTRUNNER_HOME/spot-instance-action`), stop-runner gets
//! the warning event, and after `--grace` the runner's processes are killed,
//! as EC2 reclaims the instance (`spotrunner_local::interrupt`). AWS backend:
//! the same EventBridge event shape is sent to the `stop-events` queue
//! (`SPOTRUNNER_STOP_EVENTS_QUEUE_URL`), which is only the warning: EC2 does
//! not reclaim the instance. For a real interruption use AWS FIS
//! (`aws:ec2:send-spot-instance-interruptions`), which makes EC2 send the
//! warning and reclaim the instance two minutes later.

use crate::adapters::Adapters;
use crate::{Target, config_file};
use chrono::{SecondsFormat, Utc};
use spotrunner_core::stop_runner::StopEvent;
use std::process::ExitCode;
use std::time::Duration;

/// The environment variable with the `stop-events` queue URL (AWS backend).
pub const STOP_EVENTS_QUEUE_ENV: &str = "SPOTRUNNER_STOP_EVENTS_QUEUE_URL";

pub async fn run(target: &Target, subject: &str, grace: Duration) -> Result<ExitCode, String> {
    let config = config_file::load(&target.config)?;
    let adapters = Adapters::open(target, &config, false).await?;
    let (instance_id, about) = resolve(&adapters, subject).await?;
    match &adapters.local {
        Some(st) => {
            let at = st
                .backend
                .interrupt(&instance_id, grace)
                .map_err(|e| e.to_string())?;
            println!(
                "spot interruption announced to {instance_id} ({about}); it is reclaimed at {} (serve kills its runner then)",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
        }
        None => {
            let url = std::env::var(STOP_EVENTS_QUEUE_ENV).map_err(|_| {
                format!("--backend aws: {STOP_EVENTS_QUEUE_ENV} is not set (the stop-events queue URL, a Terraform output)")
            })?;
            let sdk = spotrunner_aws::sdk::load().await;
            let mut event = StopEvent::SpotInterruption {
                instance_id: instance_id.clone(),
            }
            .to_eventbridge();
            event["time"] = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true).into();
            if let Some(region) = sdk.region() {
                event["region"] = region.to_string().into();
            }
            aws_sdk_sqs::Client::new(&sdk)
                .send_message()
                .queue_url(&url)
                .message_body(event.to_string())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "could not send the warning to {url}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })?;
            println!(
                "spot interruption warning for {instance_id} ({about}) sent to stop-runner; EC2 does not reclaim the instance: for a real interruption use AWS FIS (aws:ec2:send-spot-instance-interruptions)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The instance of `subject`: an instance id, or a job id (its runner's
/// instance); and a few words about it.
async fn resolve(a: &Adapters, subject: &str) -> Result<(String, String), String> {
    if subject.starts_with("i-") {
        let runner = a
            .ledger
            .list_runners()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|r| r.instance_id.as_deref() == Some(subject));
        let about = runner.map_or("no runner of this deployment known".into(), |r| {
            format!("runner {}, job {}", r.name, r.job_id)
        });
        return Ok((subject.to_string(), about));
    }
    let job_id: u64 = subject
        .parse()
        .map_err(|_| format!("{subject:?} is neither an instance id (i-…) nor a job id"))?;
    let job = a
        .ledger
        .get_job(job_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("job {job_id} is not in the ledger"))?;
    let runner_name = job
        .taken_by
        .clone()
        .or(job.runner_name.clone())
        .ok_or_else(|| format!("job {job_id} has no runner ({})", job.state.as_str()))?;
    let runner = a
        .ledger
        .get_runner(&runner_name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("job {job_id}'s runner {runner_name} is not in the ledger"))?;
    let instance = runner.instance_id.ok_or_else(|| {
        format!(
            "job {job_id}'s runner {runner_name} has no instance yet ({})",
            runner.state.as_str()
        )
    })?;
    Ok((instance, format!("runner {runner_name}, job {job_id}")))
}
