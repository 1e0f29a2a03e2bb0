//! `spotrunner match [--public] LABELS…`: the pool a job with these labels
//! gets, and why; whether the pool serves public repositories (`--public`: the
//! job is of one, and a pool that refuses them ends in exit 1, as the webhook
//! ignores such a job with reason `public_repository`).

use crate::config_file;
use spotrunner_core::{matching, sizing};
use std::path::Path;
use std::process::ExitCode;

pub fn run(config: &Path, labels: &[String], public: bool) -> Result<ExitCode, String> {
    let config = config_file::load(config)?;
    let e = matching::explain(&config.pools, labels);
    match &e.chosen {
        Some(pool) => println!("labels {labels:?} -> pool {pool}"),
        None => println!("labels {labels:?} -> no pool (the webhook ignores the job)"),
    }
    for v in &e.pools {
        println!("  {:<20} {}", v.pool, v.reason);
    }
    // A public repository's job runs only on a pool that allows them.
    let chosen = e.chosen.as_deref().and_then(|name| config.pool(name));
    let public_ok = match chosen {
        Some(pool) => {
            let allows = pool.allows_public_repositories(config.allow_public_repositories);
            let source = if pool.allow_public_repositories.is_some() {
                "the pool's allow_public_repositories"
            } else {
                "the global allow_public_repositories"
            };
            let verdict = match (allows, public) {
                (true, _) => {
                    "served (anyone who can open a pull request there can run code on this pool)"
                }
                (false, true) => "refused: the webhook ignores this job (public_repository)",
                (false, false) => "refused (a job of a private or internal repository is served)",
            };
            println!("  public repositories: {verdict} — {source} = {allows}");
            allows || !public
        }
        None => true,
    };
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
    Ok(if e.chosen.is_some() && sized && public_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
