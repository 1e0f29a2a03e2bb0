//! Today's cold path under GitHub's real dispatch: `spotrunner serve` gets the
//! fake GitHub's own `queued` deliveries (GitHub's examples, queued with
//! `FakeGitHub::queue_job`), launches a runner per job, and each runner asks
//! the fake for work the way the actions runner does: GitHub gives it the
//! oldest queued job its labels and scope fit, which need not be the job it
//! was launched for. The `in_progress`/`completed` webhooks come from the
//! fake's dispatch, not from the test. Every job completes, every runner is
//! cleaned up, and the fake assigned each job to exactly one runner.

mod common;

use common::*;
use serde_json::Value;
use spotrunner_testkit::examples::examples;
use spotrunner_testkit::fake_github::{FakeGitHub, endpoint};
use std::collections::BTreeSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

/// GitHub's queued examples in turn, `n` of them, with fresh ids and a
/// `created_at` of now.
fn queued_payloads(n: u64) -> Vec<(u64, Value)> {
    let queued: Vec<Value> = examples("workflow_job")
        .into_iter()
        .filter(|e| e.action() == Some("queued"))
        .map(|e| e.payload)
        .collect();
    assert_eq!(queued.len(), 2, "the package ships two queued examples");
    (0..n)
        .map(|i| {
            let mut p = queued[i as usize % queued.len()].clone();
            let id = 31_000 + i;
            p["workflow_job"]["id"] = id.into();
            p["workflow_job"]["run_id"] = (id + 1_000_000).into();
            p["workflow_job"]["created_at"] = chrono::Utc::now().to_rfc3339().into();
            (id, p)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_run_on_runners_github_dispatches_them_to() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let hold = tmp.path().join("hold");
    std::fs::create_dir_all(&hold).unwrap();
    let runner = dispatch_runner_script(tmp.path(), &github.url(), Some(&hold));
    let pools = serde_json::json!([
        { "name": "ubuntu", "labels": ["ubuntu-latest"], "max_runners": 4 },
        { "name": "k8s", "labels": ["k8s"], "max_runners": 4 },
    ]);
    let cfg_path = tmp.path().join("config.json");
    write_json(
        &cfg_path,
        &config(
            &github,
            pools,
            serde_json::json!({ "runner_command": runner.display().to_string() }),
        ),
    );
    let state = tmp.path().join("state");
    let serve = Serve::start(&cfg_path, &state);
    github.set_webhook(&serve.url("/webhook"), SECRET);

    let jobs = queued_payloads(3);
    let ids: BTreeSet<u64> = jobs.iter().map(|(id, _)| *id).collect();
    for (id, p) in jobs {
        assert_eq!(
            github.queue_job(p).await,
            202,
            "job {id}: serve took the delivery"
        );
    }

    // Each runner took a job and holds it: the fake's in_progress webhooks
    // reached serve, which shows every job running.
    wait_until(
        "every job running on a runner GitHub gave it to",
        LONG,
        || {
            let states = job_states(&status(&cfg_path, &state));
            github.assignments().len() == 3
                && ids
                    .iter()
                    .all(|id| states.get(id).map(String::as_str) == Some("running"))
        },
    );
    assert!(github.queued_jobs().is_empty());
    for (job, _) in github.assignments() {
        std::fs::write(hold.join(job.to_string()), "").unwrap();
    }

    wait_until(
        "every job completed and every runner cleaned up",
        LONG,
        || {
            let s = status(&cfg_path, &state);
            let states = job_states(&s);
            ids.iter()
                .all(|id| states.get(id).map(String::as_str) == Some("completed"))
                && s["capacity"]["weight_used"] == 0
                && s["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["state"] == "terminated")
        },
    );
    let s = status(&cfg_path, &state);
    for pool in ["ubuntu", "k8s"] {
        assert!(
            s["pools"][pool]["runners"].as_array().unwrap().is_empty(),
            "{s}"
        );
    }
    wait_until("the working directories removed", LONG, || {
        instance_dirs(&state).is_empty()
    });
    assert!(processes_under(&state).is_empty(), "no runner process left");

    // GitHub's side: each job went to exactly one runner, each runner ran one
    // job, every runner deregistered (the fake removes a runner at its job's
    // end; stop-runner's delete finds it gone), and every job is completed.
    let assignments = github.assignments();
    // A runner may well have run another job than the one it was launched for.
    eprintln!("assignments (job, runner): {assignments:?}");
    assert_eq!(assignments.len(), 3, "{assignments:?}");
    let jobs_assigned: BTreeSet<u64> = assignments.iter().map(|(j, _)| *j).collect();
    let runners: BTreeSet<&str> = assignments.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(jobs_assigned, ids);
    assert_eq!(runners.len(), 3, "{assignments:?}");
    assert!(runners.iter().all(|r| r.starts_with("e2e_")), "{runners:?}");
    assert!(github.runners().is_empty(), "{:?}", github.runners());
    // serve recorded the runner GitHub named, whichever it was launched for.
    for (job, runner) in &assignments {
        let out = cli(&[
            "job",
            &job.to_string(),
            "--json",
            "--config",
            cfg_path.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let view: Value = serde_json::from_slice(&out.stdout).unwrap();
        // `taken_by` appears only when it is not the runner launched for the job.
        let taken_by = view["taken_by"].as_str().or(view["runner_name"].as_str());
        assert_eq!(taken_by, Some(runner.as_str()), "job {job}: {view}");
        let launched_for_it = view["runner_name"] == runner.as_str();
        assert_eq!(
            view["taken_by"].is_null(),
            launched_for_it,
            "job {job}: {view}"
        );
        assert_eq!(view["state"], "completed", "job {job}: {view}");
    }
    assert_eq!(github.calls(endpoint::GENERATE_JITCONFIG), 3);
    // Every delivery (queued, in_progress, completed per job) reached serve.
    let deliveries = github.deliveries();
    for action in ["queued", "in_progress", "completed"] {
        let n = deliveries
            .iter()
            .filter(|d| d.action.as_deref() == Some(action) && d.status_code == 202)
            .count();
        assert_eq!(n, 3, "{action}: {deliveries:#?}");
    }
    drop(serve);
}
