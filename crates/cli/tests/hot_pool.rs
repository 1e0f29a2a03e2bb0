//! A hot pool on the local backend, under GitHub's real dispatch (the fake
//! GitHub gives a queued job to any idle runner whose labels fit): with
//! `hot.count = 2` two runners are registered and idle before any job; of a
//! burst of 5 jobs the first two start on them (runners that existed before
//! the jobs were queued: no launch on their critical path); the pool's cap
//! (4) is never exceeded (sampled); `serve` killed with SIGKILL mid-burst and
//! restarted keeps the accounting exact; every job completes; the pool refills
//! to 2; `drain` empties it.

mod common;

use common::*;
use serde_json::Value;
use spotrunner_testkit::examples::examples;
use spotrunner_testkit::fake_github::FakeGitHub;
use std::collections::BTreeSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);
const CAP: usize = 4;

/// GitHub's first queued example (an organisation's repository, label
/// `ubuntu-latest`) with a fresh id and a `created_at` of now.
fn queued(id: u64) -> Value {
    let mut p = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .expect("a queued example")
        .payload;
    assert_eq!(p["repository"]["owner"]["type"], "Organization");
    p["workflow_job"]["id"] = id.into();
    p["workflow_job"]["run_id"] = (id + 1_000_000).into();
    p["workflow_job"]["created_at"] = chrono::Utc::now().to_rfc3339().into();
    p
}

/// Live runners of the pool in `status --json` (name, job id).
fn live_runners(s: &Value) -> Vec<(String, u64)> {
    s["pools"]["ubuntu"]["runners"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] != "released")
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["job_id"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_pool_starts_jobs_at_once_refills_holds_its_cap_and_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let hold = tmp.path().join("hold");
    std::fs::create_dir_all(&hold).unwrap();
    let runner = dispatch_runner_script(tmp.path(), &github.url(), Some(&hold));
    // Hot runners register with the organisation whose jobs they take.
    let owner = queued(1)["repository"]["owner"]["login"].clone();
    let pools = serde_json::json!([{
        "name": "ubuntu",
        "labels": ["ubuntu-latest"],
        "max_runners": CAP,
        "hot": { "count": 2, "owner": owner },
    }]);
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
    let mut serve = Serve::start(&cfg_path, &state);
    github.set_webhook(&serve.url("/webhook"), SECRET);

    // Before any job: two idle runners registered with GitHub.
    let mut max_seen = 0usize;
    let mut sample = |s: &Value| {
        let n = live_runners(s).len();
        max_seen = max_seen.max(n);
        assert!(n <= CAP, "cap exceeded: {n} live runners: {s}");
        assert!(
            s["pools"]["ubuntu"]["used"].as_u64().unwrap() <= CAP as u64,
            "{s}"
        );
    };
    wait_until("two hot runners online", LONG, || {
        let online = github
            .runners()
            .iter()
            .filter(|r| r.status == "online")
            .count();
        online == 2
    });
    let s = status(&cfg_path, &state);
    sample(&s);
    let hot: BTreeSet<String> = live_runners(&s)
        .into_iter()
        .map(|(n, j)| {
            assert_eq!(j, 0, "a hot runner has no job: {n}");
            n
        })
        .collect();
    assert_eq!(hot.len(), 2, "{s}");

    // A burst of 5.
    let ids: Vec<u64> = (41_000..41_005).collect();
    let answers =
        futures::future::join_all(ids.iter().map(|id| github.queue_job(queued(*id)))).await;
    assert!(answers.iter().all(|a| *a == 202), "{answers:?}");
    wait_until("the first two jobs taken", LONG, || {
        github.assignments().len() >= 2
    });
    let first: Vec<(u64, String)> = github.assignments().into_iter().take(2).collect();
    // No launch on their critical path: they ran on runners registered
    // before they were queued.
    for (job, r) in &first {
        assert!(
            hot.contains(r),
            "job {job} started on a hot runner, not {r}"
        );
    }
    // Four runners busy (the cap), the fifth job waits for a slot.
    wait_until("four jobs running", LONG, || {
        sample(&status(&cfg_path, &state));
        github.assignments().len() == CAP
    });

    // SIGKILL mid-burst, restart: nothing is lost, nothing counted twice.
    serve.stop_with(libc::SIGKILL);
    let serve = Serve::start(&cfg_path, &state);
    github.set_webhook(&serve.url("/webhook"), SECRET);
    let s = status(&cfg_path, &state);
    sample(&s);

    // Let every job finish, one after the other.
    for id in &ids {
        std::fs::write(hold.join(id.to_string()), "").unwrap();
    }
    wait_until("every job completed", LONG, || {
        let s = status(&cfg_path, &state);
        sample(&s);
        let states = job_states(&s);
        ids.iter()
            .all(|id| states.get(id).map(String::as_str) == Some("completed"))
    });
    assert_eq!(github.assignments().len(), 5);
    let runners: BTreeSet<String> = github.assignments().into_iter().map(|(_, r)| r).collect();
    assert_eq!(runners.len(), 5, "one runner per job");

    // The pool refills to two idle runners, and the accounting is exact.
    wait_until("the hot pool refilled to 2", LONG, || {
        let s = status(&cfg_path, &state);
        sample(&s);
        let live = live_runners(&s);
        live.len() == 2
            && live.iter().all(|(_, j)| *j == 0)
            && github
                .runners()
                .iter()
                .filter(|r| r.status == "online" && !r.busy)
                .count()
                == 2
            && s["pools"]["ubuntu"]["used"] == 2
    });
    let s = status(&cfg_path, &state);
    assert_eq!(s["capacity"]["weight_used"], 2, "{s}");
    let job_path = |id: u64| {
        let out = cli(&[
            "job",
            &id.to_string(),
            "--json",
            "--config",
            cfg_path.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["start_path"].as_str().map(str::to_string)
    };
    // The path each job took is in its timeline view (a job whose
    // in_progress came before its record gets it from the `started` task,
    // which looks again shortly after).
    let mut paths = Vec::new();
    wait_until("every job's start path known", LONG, || {
        paths = ids.iter().map(|id| job_path(*id)).collect::<Vec<_>>();
        paths.iter().all(Option::is_some)
    });
    for (job, _) in &first {
        let i = ids.iter().position(|id| id == job).unwrap();
        assert_eq!(paths[i].as_deref(), Some("hot"), "job {job}: {paths:?}");
    }
    let failed: Vec<_> = github
        .deliveries()
        .into_iter()
        .filter(|d| d.status_code != 202)
        .map(|d| (d.action, d.status_code))
        .collect();
    eprintln!("deliveries not answered 202: {failed:?}");

    // Drain: the hot pool is emptied.
    let out = cli(&[
        "drain",
        "ubuntu",
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
    wait_until("the drained hot pool is empty", LONG, || {
        let s = status(&cfg_path, &state);
        live_runners(&s).is_empty() && s["capacity"]["weight_used"] == 0
    });
    wait_until("no runner left on GitHub", LONG, || {
        github.runners().is_empty()
    });
    assert!(max_seen <= CAP);
    drop(serve);
}
