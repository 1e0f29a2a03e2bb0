//! Crash safety of the local mode: `serve` is killed with SIGKILL at random
//! points while 30 jobs, each delivered twice, flow through a pool of 3 slots
//! (so most of them wait in its line and are woken by releases). After a last restart every
//! job has been served exactly once (one runner process ran for it, one JIT
//! registration, one deletion) and no runner process or working directory is left.

mod common;

use common::*;
use spotrunner_testkit::fake_github::{FakeGitHub, endpoint};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const JOBS: u64 = 30;
const KILLS: usize = 4;

/// A small xorshift generator; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_no_job_and_launches_none_twice() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let ran = tmp.path().join("ran.log");
    let runner = runner_script(
        tmp.path(),
        &format!(
            "echo \"$SPOTRUNNER_RUNNER_NAME\" >> '{}'\nsleep 0.3",
            ran.display()
        ),
    );
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &path,
        &config(
            &github,
            // Fewer slots than jobs: most wait in the line and are woken by
            // releases, across the kills.
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 3 }]),
            serde_json::json!({
                "runner_command": runner.display().to_string(),
                "redrive_interval_secs": 5,
                "janitor_interval_secs": 3600,
            }),
        ),
    );
    let ids: Vec<u64> = (1..=JOBS).map(|i| 70_000 + i).collect();
    for id in &ids {
        github.add_job("octo-org/repo", *id, "completed");
    }
    // Every job twice, in a random order.
    let mut pending: Vec<u64> = ids.iter().chain(ids.iter()).copied().collect();
    for i in (1..pending.len()).rev() {
        pending.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let client = reqwest::Client::new();

    for round in 0..KILLS {
        let mut serve = Serve::start(&path, &state);
        let n = (4 + rng.below(14) as usize).min(pending.len());
        let mut sent = 0;
        while sent < n {
            let id = pending[0];
            let (body, sig) = job_payload("queued", id, &["self-hosted", "linux"], None);
            match post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await {
                Some(202) => {
                    pending.remove(0);
                    sent += 1;
                }
                other => panic!("delivery refused while serve runs: {other:?}"),
            }
        }
        let wait = rng.below(1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let st = serve.stop_with(libc::SIGKILL);
        println!("round {round}: sent {sent}, killed after {wait} ms ({st})");
    }

    // The last incarnation gets the rest and runs to the end.
    let serve = Serve::start(&path, &state);
    for id in std::mem::take(&mut pending) {
        let (body, sig) = job_payload("queued", id, &["self-hosted", "linux"], None);
        assert_eq!(
            post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await,
            Some(202)
        );
    }
    wait_until_async(
        "every job completed and cleaned up",
        Duration::from_secs(180),
        || {
            let path = path.clone();
            let state = state.clone();
            async move {
                let s = status(&path, &state);
                let states = job_states(&s);
                states.len() == JOBS as usize
                    && states.values().all(|v| v == "completed")
                    && s["capacity"]["weight_used"] == 0
                    && s["queues"]["jobs"]["visible"] == 0
                    && s["instances"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|i| i["state"] == "terminated")
            }
        },
    )
    .await;

    let text = std::fs::read_to_string(&ran).unwrap_or_default();
    let mut per_job: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        *per_job.entry(line.to_string()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = ids
        .iter()
        .map(|id| (format!("e2e_linux-{id}-0"), 1))
        .collect();
    assert_eq!(per_job, expected, "one runner process per job, each once");
    // A teardown cut short by a kill is redone from the start, so a deletion may
    // be sent again (GitHub answers 404, which is success): at least one per job,
    // and in the end no registration is left.
    assert!(github.calls(endpoint::DELETE_RUNNER) >= JOBS as usize);
    assert!(github.runners().is_empty(), "every registration deleted");
    let s = status(&path, &state);
    assert_eq!(
        s["pools"]["linux"]["runners_by_state"]["released"], JOBS,
        "{s}"
    );
    assert_eq!(
        s["queues"]["dlq"]["visible"], 0,
        "nothing dead-lettered: {s}"
    );
    assert!(instance_dirs(&state).is_empty(), "working directories left");
    assert!(processes_under(&state).is_empty(), "runner processes left");
    drop(serve);
}
