//! A spot interruption end to end on the local backend, through HTTP:
//! a running job → `spotrunner interrupt JOB` (the runner gets the warning,
//! `serve` is killed with SIGKILL and started again, the runner is reclaimed
//! after the grace) → GitHub says the job failed → exactly one re-run request
//! (the fake GitHub creates the re-run and delivers its `queued` webhook) →
//! the re-run launches on-demand → it completes and is cleaned up.

mod common;

use common::*;
use serde_json::{Value, json};
use spotrunner_testkit::fake_github::{FakeGitHub, FakeJob, FakeWorkflowJob, endpoint};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);
const REPO: &str = "octo-org/repo";
const RUN: u64 = 4242;
const JOB: u64 = 777;

fn payload(
    action: &str,
    id: u64,
    attempt: u32,
    runner: Option<&str>,
    conclusion: Option<&str>,
) -> Value {
    let now = chrono::Utc::now().to_rfc3339();
    json!({
        "action": action,
        "workflow_job": {
            "id": id, "run_id": RUN, "run_attempt": attempt, "name": "build",
            "status": action, "conclusion": conclusion,
            "labels": ["self-hosted", "linux"], "created_at": now, "started_at": now,
            "runner_name": runner,
        },
        "repository": { "full_name": REPO, "owner": { "login": "octo-org", "type": "Organization" } },
    })
}

async fn post(serve: &Serve, v: &Value) {
    let body = serde_json::to_vec(v).unwrap();
    let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
    let code = post_webhook(
        &reqwest::Client::new(),
        &serve.addr,
        "workflow_job",
        &body,
        &sig,
    )
    .await;
    assert_eq!(code, Some(202), "{}", v["action"]);
}

fn job(s: &Value, id: u64) -> Option<Value> {
    s["jobs"]["items"]
        .as_array()?
        .iter()
        .find(|j| j["job_id"] == id)
        .cloned()
}

/// The running instance of `job_id`'s runner and its capacity type.
fn instance_of(s: &Value, job_id: u64) -> Option<(String, String)> {
    s["instances"].as_array()?.iter().find_map(|i| {
        (i["job_id"] == job_id && i["state"] == "running").then(|| {
            (
                i["instance_id"].as_str().unwrap_or_default().to_string(),
                i["capacity_type"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_job_is_re_run_once_on_demand_even_across_a_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    // A runner that works until it is killed, or until the test releases it.
    let release = tmp.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    let runner = runner_script(
        tmp.path(),
        &format!(
            "while [ ! -e '{}'/\"$SPOTRUNNER_RUNNER_NAME\" ]; do sleep 0.1; done",
            release.display()
        ),
    );
    let pools = json!([{ "name": "linux", "labels": ["linux"], "max_runners": 4 }]);
    let cfg_path = tmp.path().join("config.json");
    write_json(
        &cfg_path,
        &config(
            &github,
            pools,
            json!({ "runner_command": runner.display().to_string(), "janitor_interval_secs": 1 }),
        ),
    );
    let state = tmp.path().join("state");
    let (cfg, st) = (cfg_path.to_str().unwrap(), state.to_str().unwrap());
    let mut serve = Serve::start(&cfg_path, &state);
    github.set_webhook(&format!("http://{}/webhook", serve.addr), SECRET);
    let t0 = chrono::Utc::now();
    github.add_workflow_job(
        REPO,
        FakeWorkflowJob::new(RUN, JOB, "queued", &["self-hosted", "linux"], t0).named("build"),
    );

    // The job runs on a spot runner.
    post(&serve, &payload("queued", JOB, 1, None, None)).await;
    let mut first = None;
    wait_until("a spot runner for the job", LONG, || {
        first = instance_of(&status(&cfg_path, &state), JOB);
        first.is_some()
    });
    let (instance, capacity) = first.unwrap();
    assert_eq!(capacity, "spot");
    let s = status(&cfg_path, &state);
    let runner_name = job(&s, JOB).unwrap()["runner_name"]
        .as_str()
        .unwrap()
        .to_string();
    github.set_job(
        REPO,
        FakeJob {
            id: JOB,
            status: "in_progress".into(),
            conclusion: None,
            runner_name: Some(runner_name.clone()),
        },
    );
    post(
        &serve,
        &payload("in_progress", JOB, 1, Some(&runner_name), None),
    )
    .await;
    wait_until("the job running", LONG, || {
        job(&status(&cfg_path, &state), JOB).is_some_and(|j| j["state"] == "running")
    });

    // The interruption, by job id; serve killed at once and started again.
    let out = cli(&[
        "interrupt",
        &JOB.to_string(),
        "--grace",
        "2",
        "--config",
        cfg,
        "--state-dir",
        st,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains(&instance), "{said}");
    let action = state
        .join("instances")
        .join(&instance)
        .join("spot-instance-action");
    let warning: Value = serde_json::from_slice(&std::fs::read(&action).unwrap()).unwrap();
    assert_eq!(
        warning["action"], "terminate",
        "the runner sees the warning"
    );
    serve.stop_with(libc::SIGKILL);
    let serve = Serve::start(&cfg_path, &state);
    github.set_webhook(&format!("http://{}/webhook", serve.addr), SECRET);
    // Announcing twice changes nothing.
    let again = cli(&["interrupt", &instance, "--config", cfg, "--state-dir", st]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    wait_until("the job interrupted and its runner reclaimed", LONG, || {
        let s = status(&cfg_path, &state);
        job(&s, JOB).is_some_and(|j| j["state"] == "interrupted") && instance_of(&s, JOB).is_none()
    });
    assert!(processes_under(&state.join("instances").join(&instance)).is_empty());
    let s = status(&cfg_path, &state);
    assert_eq!(s["pools"]["linux"]["spot_interruptions"], 1);
    assert_eq!(
        github.calls(endpoint::RERUN_JOB),
        0,
        "not before GitHub says it failed"
    );

    // GitHub fails the job (its runner is gone); the run completes.
    github.set_job(
        REPO,
        FakeJob {
            id: JOB,
            status: "completed".into(),
            conclusion: Some("failure".into()),
            runner_name: Some(runner_name.clone()),
        },
    );
    post(
        &serve,
        &payload("completed", JOB, 1, Some(&runner_name), Some("failure")),
    )
    .await;
    // The completed delivery twice: nothing more.
    post(
        &serve,
        &payload("completed", JOB, 1, Some(&runner_name), Some("failure")),
    )
    .await;

    // Exactly one re-run; its queued webhook launches it on-demand.
    let mut rerun = None;
    wait_until("GitHub's re-run of the job", LONG, || {
        rerun = github.rerun_of(REPO, JOB);
        rerun.is_some()
    });
    let (new_id, attempt) = rerun.unwrap();
    assert_eq!(attempt, 2);
    let mut second = None;
    wait_until("the re-run's runner", LONG, || {
        second = instance_of(&status(&cfg_path, &state), new_id);
        second.is_some()
    });
    assert_eq!(second.unwrap().1, "on-demand");
    // More janitor passes and the re-run's own deliveries ask nothing more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(github.calls(endpoint::RERUN_JOB), 1);
    assert_eq!(github.reruns(), vec![(REPO.to_string(), JOB)]);
    let s = status(&cfg_path, &state);
    let first_job = job(&s, JOB).unwrap();
    assert!(
        first_job["rerun"]
            .as_str()
            .unwrap()
            .starts_with("requested"),
        "{first_job}"
    );

    // The re-run completes and is cleaned up.
    let s = status(&cfg_path, &state);
    let name2 = job(&s, new_id).unwrap()["runner_name"]
        .as_str()
        .unwrap()
        .to_string();
    post(
        &serve,
        &payload("in_progress", new_id, 2, Some(&name2), None),
    )
    .await;
    std::fs::write(release.join(&name2), "").unwrap();
    post(
        &serve,
        &payload("completed", new_id, 2, Some(&name2), Some("success")),
    )
    .await;
    wait_until("the re-run completed and its runner released", LONG, || {
        let s = status(&cfg_path, &state);
        job(&s, new_id).is_some_and(|j| j["state"] == "completed")
            && instance_of(&s, new_id).is_none()
    });
    let job_view = cli(&["job", &JOB.to_string(), "--config", cfg, "--state-dir", st]);
    let text = String::from_utf8_lossy(&job_view.stdout);
    assert!(
        text.contains("interrupted") && text.contains("rerun_requested"),
        "{text}"
    );
    drop(serve);
}
