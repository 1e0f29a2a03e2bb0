//! Operator actions: drain/undrain, and the dlq-mover, janitor and stop-runner
//! logic run on demand or by `serve`.

use crate::adapters::Adapters;
use crate::handlers::{self, Handlers};
use crate::{Target, config_file};
use spotrunner_core::create_runner::JobOutcome;
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

/// The janitor logic once.
pub async fn run_janitor(_a: &Adapters, _h: &Handlers, _dry_run: bool) -> Result<String, String> {
    Err(format!("janitor is {NOT_IN_BUILD}"))
}

/// One runner-exit event (local) through the stop-runner logic.
pub async fn on_runner_exit(_a: &Adapters, _h: &Handlers, _body: &str) -> JobOutcome {
    JobOutcome::Retry {
        reason: format!("stop-runner is {NOT_IN_BUILD}"),
        after: std::time::Duration::from_secs(30),
    }
}
