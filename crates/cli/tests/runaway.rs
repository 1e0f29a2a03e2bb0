//! Issue 10, defect 8: a runner that exits before its job starts must not be
//! relaunched without bound (measured before the fix: 200 launches in 30 s for
//! 3 jobs). `spotrunner serve`, a runner command that exits 1 at once, 3 jobs,
//! observed past the whole relaunch schedule.

mod common;

use common::*;
use spotrunner_testkit::fake_github::{FakeGitHub, endpoint};
use std::collections::BTreeMap;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_that_exits_at_once_is_launched_at_most_three_times_per_job_and_pauses_the_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let runner = runner_script(tmp.path(), "exit 1");
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &path,
        &config(
            &github,
            serde_json::json!([{
                "name": "linux", "labels": ["linux"], "max_runners": 10,
                "relaunch": {
                    "max_launches": 3, "delay_secs": 1,
                    "circuit_failures": 5, "circuit_window_secs": 600,
                    "circuit_cooldown_secs": 600
                }
            }]),
            serde_json::json!({ "runner_command": runner.display().to_string() }),
        ),
    );
    let serve = Serve::start(&path, &state);
    let client = reqwest::Client::new();
    let ids = [301u64, 302, 303];
    for id in ids {
        // GitHub keeps the job queued: no runner ever takes it.
        github.add_job("octo-org/repo", id, "queued");
        let (body, sig) = job_payload("queued", id, &["self-hosted", "linux"], None);
        assert_eq!(
            post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await,
            Some(202)
        );
    }
    wait_until("the pool's circuit to open", LONG, || {
        status(&path, &state)["pools"]["linux"]["circuit"] == "open"
    });
    // Past the whole relaunch schedule (1 s, 2 s) with room to spare: nothing
    // more may launch while the circuit is open.
    let settled = launches_per_job(&status(&path, &state));
    std::thread::sleep(Duration::from_secs(8));
    let s = status(&path, &state);
    let launches = launches_per_job(&s);
    assert_eq!(launches, settled, "launches after the circuit opened: {s}");
    for id in ids {
        let n = launches.get(&id).copied().unwrap_or(0);
        assert!((1..=3).contains(&n), "job {id}: {n} launches; {launches:?}");
    }
    let total: usize = launches.values().sum();
    assert!(
        total >= 5,
        "the circuit opened after 5 failures: {launches:?}"
    );
    let pool = &s["pools"]["linux"];
    assert!(pool["start_failures"].as_u64().unwrap() >= 5, "{pool}");
    assert!(pool["last_start_failure"].as_str().is_some(), "{pool}");
    assert!(pool["circuit_open_until"].as_str().is_some(), "{pool}");
    // Every job is in a state a person can read: given up (with the reason),
    // or waiting for the pool to heal.
    let states = job_states(&s);
    for id in ids {
        let state = states.get(&id).map(String::as_str);
        assert!(
            matches!(state, Some("failed" | "requeued" | "queued")),
            "job {id}: {state:?}; {s}"
        );
    }
    for j in s["jobs"]["items"].as_array().unwrap() {
        if j["state"] == "failed" {
            let reason = j["end_reason"].as_str().unwrap_or_default();
            assert!(reason.contains("max_launches"), "{j}");
        }
    }
    // GitHub calls stay bounded: a JIT registration, its deletion and one
    // "is the job still queued?" per launch, plus token and listing calls.
    assert_eq!(github.calls(endpoint::GENERATE_JITCONFIG), total);
    assert!(
        github.total_calls() <= 6 * total + 10,
        "{} GitHub calls for {total} launches",
        github.total_calls()
    );
    let text = std::process::Command::new(BIN)
        .args(["status", "--config"])
        .arg(&path)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("open"), "{text}");
    assert!(text.contains("paused until"), "{text}");
    assert!(serve.log_text().contains("pool_circuit_opened"));
    drop(serve);
    wait_until("no runner process left", LONG, || {
        processes_under(&state).is_empty()
    });
}

#[tokio::test]
async fn serve_refuses_a_runner_command_that_does_not_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let path = tmp.path().join("config.json");
    write_json(
        &path,
        &config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 1 }]),
            serde_json::json!({ "runner_command": "/nonexistent/spotrunner-runner --once" }),
        ),
    );
    let Err(log) = Serve::try_start(&path, &tmp.path().join("state")) else {
        panic!("serve started with a runner command that does not exist");
    };
    assert!(log.contains("local.runner_command"), "{log}");
    assert!(log.contains("/nonexistent/spotrunner-runner"), "{log}");
}

/// Runner processes started per job (runner names end in `-{job}-{attempt}`).
fn launches_per_job(status: &serde_json::Value) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for i in status["instances"].as_array().into_iter().flatten() {
        let name = i["runner_name"].as_str().unwrap_or_default();
        let mut parts = name.rsplit('-');
        let (_attempt, job) = (parts.next(), parts.next());
        if let Some(job) = job.and_then(|j| j.parse::<u64>().ok()) {
            *out.entry(job).or_default() += 1;
        }
    }
    out
}
