//! Operator actions: drain/undrain, and the dlq-mover, janitor and stop-runner
//! logic run on demand or by `serve`.

use crate::adapters::Adapters;
use crate::handlers::{self, Handlers, LOCAL_DOCUMENT};
use crate::{Target, config_file};
use chrono::Utc;
use spotrunner_core::create_runner::JobOutcome;
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_local::RunnerExited;
use std::process::ExitCode;

/// Handlers for an operator command (no serve needed).
async fn open(target: &Target) -> Result<(Adapters, Handlers), String> {
    let config = config_file::load(&target.config)?;
    let adapters = Adapters::open(target, &config).await?;
    let h = handlers::build(config, &adapters).await?;
    Ok((adapters, h))
}

pub async fn set_drained(target: &Target, pool: &str, drained: bool) -> Result<ExitCode, String> {
    let config = config_file::load(&target.config)?;
    if config.pool(pool).is_none() {
        let known: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "no pool named {pool:?} (pools: {})",
            known.join(", ")
        ));
    }
    let adapters = Adapters::open(target, &config).await?;
    adapters
        .ledger
        .set_drained(pool, drained)
        .await
        .map_err(|e| e.to_string())?;
    if drained {
        println!("pool {pool} drained: no new runners; its jobs stay queued");
    } else {
        println!("pool {pool} undrained: launching again");
    }
    Ok(ExitCode::SUCCESS)
}

const NOT_IN_BUILD: &str = "not available in this build";

pub async fn redrive(target: &Target, dry_run: bool) -> Result<ExitCode, String> {
    let (adapters, h) = open(target).await?;
    let report = run_redrive(&adapters, &h, dry_run).await?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

pub async fn janitor(target: &Target, dry_run: bool) -> Result<ExitCode, String> {
    let (adapters, h) = open(target).await?;
    let report = run_janitor(&adapters, &h, dry_run).await?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// The dlq-mover logic once.
pub async fn run_redrive(_a: &Adapters, _h: &Handlers, _dry_run: bool) -> Result<String, String> {
    Err(format!("redrive (dlq-mover) is {NOT_IN_BUILD}"))
}

/// The janitor logic once: a report of every action with its reason.
pub async fn run_janitor(_a: &Adapters, h: &Handlers, dry_run: bool) -> Result<String, String> {
    let report = h
        .janitor
        .run(Utc::now(), dry_run)
        .await
        .map_err(|e| format!("janitor: {e}"))?;
    let mut out = format!(
        "janitor{}: {} action(s), {} failed\n",
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        },
        report.results.len(),
        report.failed()
    );
    for r in &report.results {
        let a = &r.action;
        let state = match (&r.error, r.done) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, true) => "done".into(),
            (None, false) => "planned".into(),
        };
        out.push_str(&format!(
            "  {:<24} {:<40} {} [{state}]\n",
            a.kind.as_str(),
            a.subject,
            a.reason
        ));
    }
    for w in &report.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    Ok(out.trim_end().to_string())
}

/// One runner-exit event (local) through the stop-runner logic.
pub async fn on_runner_exit(_a: &Adapters, h: &Handlers, body: &str) -> JobOutcome {
    let exited: RunnerExited = match serde_json::from_str(body) {
        Ok(e) => e,
        Err(e) => {
            return JobOutcome::Invalid {
                reason: format!("runner-exit event: {e}"),
            };
        }
    };
    let event = StopEvent::CommandStatus {
        instance_id: exited.instance_id.clone(),
        command_id: format!("cmd-{}", exited.instance_id),
        document: LOCAL_DOCUMENT.into(),
        status: if exited.exit_code == Some(0) {
            "Success"
        } else {
            "Failed"
        }
        .into(),
    };
    match h.stop_runner.handle(&event, Utc::now()).await {
        Ok(_) => JobOutcome::Duplicate,
        Err(e) => JobOutcome::Retry {
            reason: e.to_string(),
            after: std::time::Duration::from_secs(5),
        },
    }
}
