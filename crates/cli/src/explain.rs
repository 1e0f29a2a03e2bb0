//! `spotrunner match LABELS…`: the pool a job with these labels gets, and why.

use crate::config_file;
use spotrunner_core::matching;
use std::path::Path;
use std::process::ExitCode;

pub fn run(config: &Path, labels: &[String]) -> Result<ExitCode, String> {
    let config = config_file::load(config)?;
    let e = matching::explain(&config.pools, labels);
    match &e.chosen {
        Some(pool) => println!("labels {labels:?} -> pool {pool}"),
        None => println!("labels {labels:?} -> no pool (the webhook ignores the job)"),
    }
    for v in &e.pools {
        println!("  {:<20} {}", v.pool, v.reason);
    }
    Ok(if e.chosen.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
