//! `spotrunner job ID [--json]`: one job's way from GitHub's queue to its end,
//! stage by stage, from its ledger record and its runner's.

use crate::adapters::Adapters;
use crate::{Target, config_file};
use chrono::{DateTime, Utc};
use serde::Serialize;
use spotrunner_core::ports::{JobRecord, RunnerRecord, Stage};
use std::process::ExitCode;

#[derive(Debug, Serialize)]
pub struct JobView {
    pub job_id: u64,
    pub pool: String,
    pub repository: String,
    pub state: String,
    pub launch_attempt: u32,
    pub runner_name: Option<String>,
    /// The runner GitHub gave the job to, when it was another one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// GitHub's conclusion once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// A job a spot interruption hit: what became of its re-run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun: Option<String>,
    /// Which way it went: `direct` (a slot was free) or `waited` (its pool's line).
    pub path: &'static str,
    /// The runner it started on: `own` (launched for it), `hot` (an idle hot
    /// runner), `other` (launched for another job: a steal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_path: Option<String>,
    pub stages: Vec<StageLine>,
    /// The runner's own record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerView>,
}

#[derive(Debug, Serialize)]
pub struct StageLine {
    pub stage: &'static str,
    pub at: DateTime<Utc>,
    /// Since GitHub queued it (or since we heard of it, when that is unknown).
    pub since_start_ms: i64,
    /// Since the stage before.
    pub step_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct RunnerView {
    pub name: String,
    pub state: String,
    pub instance_id: Option<String>,
    pub command_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

pub fn view(job: &JobRecord, runner: Option<&RunnerRecord>) -> JobView {
    let stamps: Vec<(Stage, DateTime<Utc>)> = job.timeline.stages().collect();
    let start = stamps.first().map(|(_, t)| *t);
    let mut prev = start;
    let stages = stamps
        .iter()
        .map(|(stage, at)| {
            let line = StageLine {
                stage: stage.as_str(),
                at: *at,
                since_start_ms: start.map_or(0, |s| (*at - s).num_milliseconds()),
                step_ms: prev.map_or(0, |p| (*at - p).num_milliseconds()),
            };
            prev = Some(*at);
            line
        })
        .collect();
    JobView {
        job_id: job.job_id,
        pool: job.pool.clone(),
        repository: job.repository.clone(),
        state: job.state.as_str().to_string(),
        launch_attempt: job.launch_attempt,
        runner_name: job.runner_name.clone(),
        taken_by: job
            .taken_by
            .clone()
            .filter(|t| Some(t) != job.runner_name.as_ref()),
        end_reason: job.end_reason.clone(),
        conclusion: job.conclusion.clone(),
        rerun: if job.timeline.get(Stage::Interrupted).is_some() {
            Some(
                job.rerun
                    .clone()
                    .unwrap_or_else(|| "undecided (waiting for its run to complete)".into()),
            )
        } else {
            None
        },
        start_path: job.start_path.clone(),
        path: if job.timeline.get(Stage::WaitingSince).is_some() {
            "waited"
        } else {
            "direct"
        },
        stages,
        runner: runner.map(|r| RunnerView {
            name: r.name.clone(),
            state: r.state.as_str().to_string(),
            instance_id: r.instance_id.clone(),
            command_id: r.command_id.clone(),
            end_reason: r.end_reason.clone(),
        }),
    }
}

fn secs(ms: i64) -> String {
    format!("{:.3}s", ms as f64 / 1000.0)
}

pub fn render(v: &JobView) -> String {
    let mut out = format!(
        "job {} ({}) pool {} — {}, attempt {}, {} path\n",
        v.job_id, v.repository, v.pool, v.state, v.launch_attempt, v.path
    );
    if let Some(r) = &v.end_reason {
        out.push_str(&format!("  reason: {r}\n"));
    }
    if let Some(c) = &v.conclusion {
        out.push_str(&format!("  conclusion: {c}\n"));
    }
    if let Some(r) = &v.rerun {
        out.push_str(&format!("  spot interruption re-run: {r}\n"));
    }
    if let Some(p) = &v.start_path {
        out.push_str(&format!("  start path: {p}\n"));
    }
    out.push_str(&format!(
        "  {:<18} {:<26} {:>10} {:>10}\n",
        "stage", "at", "since", "step"
    ));
    for s in &v.stages {
        out.push_str(&format!(
            "  {:<18} {:<26} {:>10} {:>10}\n",
            s.stage,
            s.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            secs(s.since_start_ms),
            secs(s.step_ms)
        ));
    }
    if v.stages.is_empty() {
        out.push_str("  (no stage recorded: the job predates timelines)\n");
    }
    if let Some(r) = &v.runner {
        out.push_str(&format!(
            "  runner {} {} instance {} command {}{}\n",
            r.name,
            r.state,
            r.instance_id.as_deref().unwrap_or("-"),
            r.command_id.as_deref().unwrap_or("-"),
            r.end_reason
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    if let Some(t) = &v.taken_by {
        out.push_str(&format!("  GitHub gave it to runner {t}\n"));
    }
    out
}

pub async fn run(target: &Target, job_id: u64, json: bool) -> Result<ExitCode, String> {
    let config = config_file::load(&target.config)?;
    let adapters = Adapters::open(target, &config, false).await?;
    let Some(job) = adapters
        .ledger
        .get_job(job_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err(format!(
            "job {job_id} is not in the ledger of deployment {} (not received yet, or not ours)",
            config.deployment
        ));
    };
    let runner = match &job.runner_name {
        Some(name) => adapters
            .ledger
            .get_runner(name)
            .await
            .map_err(|e| e.to_string())?,
        None => None,
    };
    let v = view(&job, runner.as_ref());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(&v));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotrunner_core::job::JobMessage;
    use spotrunner_core::ports::{JobState, Timeline};

    #[test]
    fn stages_are_listed_in_order_with_their_steps() {
        let t0: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        let mut timeline = Timeline::default();
        for (stage, ms) in [
            (Stage::Created, 0),
            (Stage::Received, 400),
            (Stage::Claimed, 450),
            (Stage::WaitingSince, 460),
            (Stage::WaitingUntil, 30_460),
            (Stage::LaunchRequested, 31_000),
        ] {
            timeline.set(stage, t0 + chrono::Duration::milliseconds(ms));
        }
        let msg: JobMessage = serde_json::from_value(serde_json::json!({
            "version": 1, "job_id": 7, "run_id": 1, "run_attempt": 1,
            "repository": "o/r", "owner": "o", "owner_type": "Organization",
            "labels": ["self-hosted"], "pool": "cpu", "received_at": "2026-11-26T10:00:00Z"
        }))
        .unwrap();
        let job = JobRecord {
            job_id: 7,
            pool: "cpu".into(),
            repository: "o/r".into(),
            state: JobState::Launched,
            launch_attempt: 0,
            runner_name: Some("sr_cpu-7-0".into()),
            taken_by: None,
            lease_until: None,
            message: msg,
            created_at: t0,
            updated_at: t0,
            end_reason: None,
            timeline,
            conclusion: None,
            rerun: None,
            start_path: None,
        };
        let v = view(&job, None);
        assert_eq!(v.path, "waited");
        let names: Vec<&str> = v.stages.iter().map(|s| s.stage).collect();
        assert_eq!(
            names,
            [
                "created",
                "received",
                "claimed",
                "waiting_since",
                "waiting_until",
                "launch_requested"
            ]
        );
        assert_eq!(v.stages[4].step_ms, 30_000);
        assert_eq!(v.stages[5].since_start_ms, 31_000);
        let text = render(&v);
        assert!(text.contains("waiting_until"), "{text}");
        assert!(text.contains("30.000s"), "{text}");
    }
}
