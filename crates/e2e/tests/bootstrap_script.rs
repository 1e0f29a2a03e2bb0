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
    assert!(passed >= 32, "expected the full suite to run, got: {last}");
    // One run per VM (SSM may deliver the bootstrap command twice).
    for case in [
        "two_concurrent_runs_start_one_runner",
        "second_run_after_first_finished_exits_at_once",
        "second_run_reports_first_runs_failure",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {case}")),
            "{case} did not pass:\n{stdout}"
        );
    }
}
