//! The operator commands against a local state directory, with no serve running:
//! `redrive` (dlq-mover) and `janitor`, each dry run first (nothing changes),
//! then for real.

mod common;

use common::*;
use spotrunner_core::config::CapacityType;
use spotrunner_core::job::JobMessage;
use spotrunner_core::ports::{Compute, LaunchRequest, RunnerParameters, tags};
use spotrunner_local::{LocalState, RunnerSettings};
use spotrunner_testkit::fake_github::FakeGitHub;
use std::time::Duration;

fn message(id: u64, age: chrono::Duration) -> String {
    let at = chrono::Utc::now() - age;
    serde_json::json!({
        "version": 1, "job_id": id, "run_id": 1, "run_attempt": 1,
        "repository": "octo-org/repo", "owner": "octo-org", "owner_type": "Organization",
        "labels": ["self-hosted", "linux"], "pool": "linux",
        "received_at": at.to_rfc3339(), "queued_at": at.to_rfc3339(),
    })
    .to_string()
}

fn run(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_dry_run_changes_nothing_then_moves_and_drops() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &path,
        &config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 2 }]),
            serde_json::json!({}),
        ),
    );
    {
        let st = LocalState::open(&state, RunnerSettings::default()).unwrap();
        st.dlq
            .send(&message(1, chrono::Duration::minutes(5)), Duration::ZERO)
            .unwrap();
        st.dlq
            .send(&message(2, chrono::Duration::hours(30)), Duration::ZERO)
            .unwrap();
        st.dlq.send("{not json", Duration::ZERO).unwrap();
    }
    let (cfg, st) = (path.to_str().unwrap(), state.to_str().unwrap());

    let dry = run(&["redrive", "--dry-run", "--config", cfg, "--state-dir", st]);
    assert!(dry.contains("3 message(s) in the DLQ"), "{dry}");
    assert!(dry.contains("would move job 1"), "{dry}");
    assert!(dry.contains("would drop job 2 (stale)"), "{dry}");
    assert!(dry.contains("(malformed)"), "{dry}");
    let s = status(&path, &state);
    assert_eq!(s["queues"]["dlq"]["visible"], 3, "a dry run moves nothing");
    assert_eq!(s["queues"]["jobs"]["visible"], 0);

    let real = run(&["redrive", "--config", cfg, "--state-dir", st]);
    assert!(real.contains("moved 1, dropped 2"), "{real}");
    let s = status(&path, &state);
    assert_eq!(s["queues"]["dlq"]["visible"], 0);
    assert_eq!(s["queues"]["jobs"]["visible"], 1);
    let st = LocalState::open(&state, RunnerSettings::default()).unwrap();
    let moved = st.jobs.list().unwrap();
    assert_eq!(JobMessage::parse(&moved[0].body).unwrap().job_id, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_dry_run_reports_then_ends_orphans_and_leaked_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &path,
        &config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 2 }]),
            serde_json::json!({}),
        ),
    );
    let st = LocalState::open(&state, RunnerSettings::default()).unwrap();
    // An instance no ledger entry knows, and a JIT parameter whose runner is gone.
    let launched = st
        .backend
        .launch(&LaunchRequest {
            runner_name: "e2e_linux-5-0".into(),
            pool: "linux".into(),
            launch_template: String::new(),
            instance_types: vec![],
            subnets: vec![],
            capacity_type: CapacityType::OnDemand,
            client_token: "orphan".into(),
            tags: vec![
                (tags::DEPLOYMENT.into(), "e2e".into()),
                (tags::RUNNER_NAME.into(), "e2e_linux-5-0".into()),
            ],
            size: None,
        })
        .await
        .unwrap();
    let spotrunner_core::ports::LaunchOutcome::Launched { instance_id, .. } = launched else {
        panic!("{launched:?}");
    };
    st.parameters
        .put("/e2e/jit/e2e_linux-6-0", "JIT", &[])
        .await
        .unwrap();
    let (cfg, sd) = (path.to_str().unwrap(), state.to_str().unwrap());

    let dry = run(&["janitor", "--dry-run", "--config", cfg, "--state-dir", sd]);
    assert!(dry.contains("dry run"), "{dry}");
    assert!(dry.contains(&instance_id), "{dry}");
    assert!(dry.contains("/e2e/jit/e2e_linux-6-0"), "{dry}");
    assert_eq!(instance_dirs(&state).len(), 1, "a dry run ends nothing");
    assert!(
        st.parameters
            .exists("/e2e/jit/e2e_linux-6-0")
            .await
            .unwrap()
    );

    let real = run(&["janitor", "--config", cfg, "--state-dir", sd]);
    assert!(real.contains("[done]"), "{real}");
    assert!(!real.contains("FAILED"), "{real}");
    assert!(instance_dirs(&state).is_empty());
    assert!(st.backend.list_instances("e2e").await.unwrap().is_empty());
    assert!(
        !st.parameters
            .exists("/e2e/jit/e2e_linux-6-0")
            .await
            .unwrap()
    );
}

/// A bootstrap step in `bootstrap-dlq` (for `runner`, launched `age` ago).
fn step(job_id: u64, runner: &str, age: chrono::Duration) -> String {
    serde_json::json!({
        "version": 1, "job_id": job_id, "runner_name": runner, "instance_id": "i-local-1",
        "pool": "linux", "launched_at": (chrono::Utc::now() - age).to_rfc3339(), "tries": 12,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_puts_bootstrap_steps_back_on_the_bootstrap_queue() {
    use spotrunner_core::ports::{Ledger, Limits, RunnerRecord};
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &path,
        &config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 2 }]),
            serde_json::json!({}),
        ),
    );
    {
        let st = LocalState::open(&state, RunnerSettings::default()).unwrap();
        // The runner of job 7 still waits for its bootstrap; job 8's is unknown.
        let now = chrono::Utc::now();
        let record: RunnerRecord = serde_json::from_value(serde_json::json!({
            "name": "sr_linux-7-0", "pool": "linux", "job_id": 7, "weight": 1,
            "state": "reserved", "jit_parameter": "/sr/jit/sr_linux-7-0",
            "created_at": now, "updated_at": now,
        }))
        .unwrap();
        let limits = Limits {
            pool_max: 2,
            weight: 1,
            global_max_weight: None,
        };
        st.ledger.reserve(&record, limits).await.unwrap();
        for body in [
            step(7, "sr_linux-7-0", chrono::Duration::minutes(3)),
            step(8, "sr_linux-8-0", chrono::Duration::minutes(3)),
        ] {
            st.bootstrap_dlq.send(&body, Duration::ZERO).unwrap();
        }
    }
    let (cfg, st) = (path.to_str().unwrap(), state.to_str().unwrap());

    let dry = run(&["redrive", "--dry-run", "--config", cfg, "--state-dir", st]);
    assert!(dry.contains("2 message(s) in the DLQs"), "{dry}");
    assert!(
        dry.contains("would move the bootstrap step of runner sr_linux-7-0"),
        "{dry}"
    );
    assert!(dry.contains("would drop job 8 (finished)"), "{dry}");

    let real = run(&["redrive", "--config", cfg, "--state-dir", st]);
    assert!(real.contains("moved 1, dropped 1"), "{real}");
    let st = LocalState::open(&state, RunnerSettings::default()).unwrap();
    assert!(st.bootstrap_dlq.list().unwrap().is_empty());
    let back = st.bootstrap.list().unwrap();
    assert_eq!(back.len(), 1);
    assert!(back[0].body.contains("sr_linux-7-0"), "{}", back[0].body);
    assert!(st.jobs.list().unwrap().is_empty());
}
