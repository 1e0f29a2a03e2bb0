//! The runner's bootstrap script under bash with fake `aws`, `shutdown`, `curl` and
//! `run.sh` on PATH (scripts/tests/test_bootstrap.sh holds the cases).

use std::process::Command;

#[test]
fn bootstrap_script_suite_passes() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new("bash")
        .arg("scripts/tests/test_bootstrap.sh")
        .current_dir(root)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        out.status.success() && last.ends_with(" 0 failed"),
        "bootstrap suite failed:\n{stdout}\n{stderr}"
    );
    let passed: u32 = last
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 48, "expected the full suite to run, got: {last}");
    for case in [
        // One run per VM (SSM may deliver the bootstrap command twice).
        "two_concurrent_runs_start_one_runner",
        "second_run_after_first_finished_exits_at_once",
        "second_run_reports_first_runs_failure",
        // The runner cache fails closed (issue 26, item 8).
        "planted_tarball_without_checksum_is_refused",
        "no_checksum_no_install_from_github_either",
        "unverified_runner_allowed_when_opted_out",
        "opt_out_never_overrides_a_wrong_checksum",
        // Jobs run as a non-root user with sudo; root only when chosen (item 10).
        "runner_runs_as_a_new_non_root_user_with_sudo",
        "existing_runner_user_is_reused",
        "docker_group_made_by_the_startup_script_is_joined",
        "root_runner_user_is_an_explicit_choice",
        "runner_as_the_current_user_without_the_flag",
        "switching_user_needs_root",
        "ssm_document",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {case}")),
            "{case} did not pass:\n{stdout}"
        );
    }
}
