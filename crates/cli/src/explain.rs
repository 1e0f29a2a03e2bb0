//! `spotrunner match LABELS…`: the pool a job with these labels gets, and why.

use crate::config_file;
use spotrunner_core::{matching, sizing};
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
    // The chosen pool's bounds decide the job's sizing labels.
    let sized = match e.chosen.as_deref().and_then(|name| config.pool(name)) {
        Some(pool) => match sizing::decide(pool, labels, config.max_total_weight) {
            Ok(Some(s)) => {
                println!("  {}", s.describe());
                true
            }
            Ok(None) => true,
            Err(err) => {
                println!("  sizing refused (the webhook ignores the job): {err}");
                false
            }
        },
        None => true,
    };
    Ok(if e.chosen.is_some() && sized {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
