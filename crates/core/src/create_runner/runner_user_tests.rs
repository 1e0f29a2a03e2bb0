//! The bootstrap command carries the pool's runner user and its runner-cache
//! opt-out (`config/runner_user.rs`): `runner` with a verified runner by
//! default, root and an unverified runner only when the pool says so.

use super::JobOutcome;
use super::tests::{config, fixed_now, job, world};
use crate::config::Config;
use crate::ports::BootstrapCommand;

/// Launch one job of `pool` and run its bootstrap step: the command sent.
async fn command_for(config: Config, pool: &str) -> BootstrapCommand {
    let w = world(config);
    let out = w.cr.handle_job(&job(21, pool), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    let (boot, _) = w.bootstrap.take_all().remove(0);
    let out = w.cr.handle_bootstrap(&boot, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    let mut sent = w.commands.sent();
    assert_eq!(sent.len(), 1);
    sent.remove(0)
}

#[tokio::test]
async fn a_pool_that_says_nothing_runs_jobs_as_runner_with_a_verified_runner() {
    let cmd = command_for(config(""), "cpu").await;
    assert_eq!(cmd.runner_user, "runner");
    assert!(!cmd.allow_unverified_runner);
}

#[tokio::test]
async fn root_and_the_opt_out_are_the_pools_explicit_choices() {
    let c = config("runner_user = \"root\"\nallow_unverified_runner = true");
    assert_eq!(
        c.runner_version, "2.329.0",
        "a pinned version (the opt-out needs one)"
    );
    let cmd = command_for(c.clone(), "cpu").await;
    assert_eq!(cmd.runner_user, "root");
    assert!(cmd.allow_unverified_runner);
    // The other pool keeps its defaults.
    let other = command_for(c, "gpu").await;
    assert_eq!(other.runner_user, "runner");
    assert!(!other.allow_unverified_runner);
}
