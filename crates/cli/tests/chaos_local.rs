//! Chaos on the local backend: `spotrunner serve` is SIGKILLed 3–5 times at
//! random (seeded) moments and restarted while 40 jobs, each delivered 1–3
//! times through the webhook, flow (the janitor runs every few seconds too).
//! Invariants: every job completed and its runner ran exactly once (the runner
//! command appends to a file per job), no runner process, working directory,
//! JIT parameter or GitHub registration left, and the pool's cap never passed
//! (live runner processes and the ledger's counters, sampled throughout).
//!
//! The seed is printed; `SPOTRUNNER_FAULT_SEED=<seed>` replays the choices.

mod common;

use common::*;
use spotrunner_testkit::fake_github::FakeGitHub;
use spotrunner_testkit::fault_proxy::seed_from_env;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const JOBS: u64 = 40;
const MAX_RUNNERS: u64 = 6;

/// A small xorshift generator (seeded; the seed is printed).
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

/// Instances with a live process (runner processes run in `instances/<id>`).
fn live_instances(state: &Path) -> BTreeSet<String> {
    let dir = state.join("instances");
    processes_under(&dir)
        .into_iter()
        .filter_map(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).ok())
        .filter_map(|cwd| {
            cwd.strip_prefix(&dir)
                .ok()
                .and_then(|rest| rest.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
        })
        .collect()
}

/// The caps as seen: live runner processes and the ledger's counters.
#[derive(Default)]
struct Caps {
    samples: usize,
    max_live: usize,
    max_used: u64,
    broken: Vec<String>,
}

impl Caps {
    fn sample(&mut self, config: &Path, state: &Path, with_status: bool) {
        self.samples += 1;
        let live = live_instances(state).len();
        self.max_live = self.max_live.max(live);
        if live as u64 > MAX_RUNNERS {
            self.broken.push(format!(
                "{live} live runner instances (max_runners {MAX_RUNNERS})"
            ));
        }
        if with_status {
            let s = status(config, state);
            let used = s["pools"]["linux"]["used"].as_u64().unwrap_or(0);
            let weight = s["capacity"]["weight_used"].as_u64().unwrap_or(0);
            self.max_used = self.max_used.max(used).max(weight);
            if used > MAX_RUNNERS || weight > MAX_RUNNERS {
                self.broken.push(format!(
                    "ledger counters: pool used {used}, weight used {weight} (max {MAX_RUNNERS})"
                ));
            }
        }
    }

    /// Sample for `d` (live processes often, the counters every few samples).
    async fn watch(&mut self, config: &Path, state: &Path, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            let with_status = self.samples.is_multiple_of(4);
            self.sample(config, state, with_status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_serve_while_jobs_flow_each_job_runs_once_nothing_left_caps_hold() {
    let seed = seed_from_env();
    println!("chaos_local seed={seed} (replay with SPOTRUNNER_FAULT_SEED={seed})");
    let mut rng = Rng(seed | 1);

    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let runs = tmp.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    // One line per run in runs/<job id> (the name is e2e_linux-<job>-<attempt>).
    let runner = runner_script(
        tmp.path(),
        &format!(
            "name=\"$SPOTRUNNER_RUNNER_NAME\"; job=\"${{name#*-}}\"; job=\"${{job%-*}}\"\n\
             echo \"$name\" >> '{}'/\"$job\"\nsleep 0.$(( $$ % 7 + 2 ))",
            runs.display()
        ),
    );
    let config = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &config,
        &common::config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": MAX_RUNNERS }]),
            serde_json::json!({
                "runner_command": runner.display().to_string(),
                "redrive_interval_secs": 5,
                "janitor_interval_secs": 4,
            }),
        ),
    );
    let ids: Vec<u64> = (1..=JOBS).map(|i| 90_000 + i).collect();
    for id in &ids {
        github.add_job("octo-org/repo", *id, "completed");
    }
    // Each job 1–3 times, shuffled.
    let mut pending: Vec<u64> = Vec::new();
    for id in &ids {
        for _ in 0..=rng.below(3) {
            pending.push(*id);
        }
    }
    for i in (1..pending.len()).rev() {
        pending.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let deliveries = pending.len();
    let client = reqwest::Client::new();
    let mut caps = Caps::default();
    let kills = 3 + rng.below(3) as usize;
    println!("{JOBS} jobs, {deliveries} deliveries, {kills} kills");
    let started = Instant::now();

    for round in 0..kills {
        let mut serve = Serve::start(&config, &state);
        let n = (2 + rng.below(deliveries as u64 / kills as u64 + 2) as usize).min(pending.len());
        for id in pending.drain(..n) {
            let (body, sig) = job_payload("queued", id, &["self-hosted", "linux"], None);
            let code = post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await;
            assert_eq!(code, Some(202), "delivery of job {id} while serve runs");
        }
        let wait = Duration::from_millis(200 + rng.below(2500));
        caps.watch(&config, &state, wait).await;
        let st = serve.stop_with(libc::SIGKILL);
        println!("kill {round}: {n} delivered, killed after {wait:?} ({st})");
        caps.sample(&config, &state, true);
    }

    // The last incarnation gets the rest and runs to the end.
    let serve = Serve::start(&config, &state);
    for id in std::mem::take(&mut pending) {
        let (body, sig) = job_payload("queued", id, &["self-hosted", "linux"], None);
        let code = post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await;
        assert_eq!(code, Some(202), "delivery of job {id}");
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        caps.watch(&config, &state, Duration::from_millis(500))
            .await;
        let s = status(&config, &state);
        let states = job_states(&s);
        let finished = states.len() == JOBS as usize
            && states.values().all(|v| v == "completed")
            && s["capacity"]["weight_used"] == 0
            && s["queues"]["jobs"]["visible"] == 0
            && live_instances(&state).is_empty();
        if finished || Instant::now() > deadline {
            break finished;
        }
    };
    println!(
        "{} after {:?}; caps: {} samples, max live {} / counters {}",
        if done { "quiescent" } else { "deadline passed" },
        started.elapsed(),
        caps.samples,
        caps.max_live,
        caps.max_used
    );

    // The invariants, each broken one with its jobs.
    let mut broken: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let s = status(&config, &state);
    for (id, st) in job_states(&s) {
        if st != "completed" {
            broken
                .entry("every job completed")
                .or_default()
                .push(format!("job {id} is {st}"));
        }
    }
    for id in &ids {
        if !job_states(&s).contains_key(id) {
            broken
                .entry("every job completed")
                .or_default()
                .push(format!("job {id} unknown to the ledger"));
        }
        let lines = std::fs::read_to_string(runs.join(id.to_string())).unwrap_or_default();
        let runs_of: Vec<&str> = lines.lines().collect();
        if runs_of.len() != 1 {
            broken
                .entry("each job ran exactly once")
                .or_default()
                .push(format!("job {id}: {} runs {runs_of:?}", runs_of.len()));
        }
    }
    let left = processes_under(&state);
    if !left.is_empty() {
        broken
            .entry("nothing left")
            .or_default()
            .push(format!("runner processes {left:?}"));
    }
    let dirs = instance_dirs(&state);
    if !dirs.is_empty() {
        broken
            .entry("nothing left")
            .or_default()
            .push(format!("working directories {dirs:?}"));
    }
    let params: Vec<String> = std::fs::read_dir(state.join("params"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if !params.is_empty() {
        broken
            .entry("nothing left")
            .or_default()
            .push(format!("JIT parameters {params:?}"));
    }
    let registrations: Vec<String> = github.runners().into_iter().map(|r| r.name).collect();
    if !registrations.is_empty() {
        broken
            .entry("nothing left")
            .or_default()
            .push(format!("GitHub registrations {registrations:?}"));
    }
    if s["capacity"]["weight_used"] != 0 {
        broken
            .entry("nothing left")
            .or_default()
            .push(format!("capacity still used: {}", s["capacity"]));
    }
    for dlq in ["dlq", "bootstrap-dlq"] {
        if s["queues"][dlq]["visible"].as_u64().unwrap_or(0) != 0 {
            broken
                .entry("nothing dead-lettered")
                .or_default()
                .push(format!("{dlq}: {}", s["queues"][dlq]));
        }
    }
    if !caps.broken.is_empty() {
        broken
            .entry("caps hold")
            .or_default()
            .extend(caps.broken.iter().cloned());
    }
    let mut text = String::new();
    for (invariant, list) in &broken {
        text.push_str(&format!("BROKEN {invariant}: {} violations\n", list.len()));
        for x in list.iter().take(15) {
            text.push_str(&format!("    {x}\n"));
        }
    }
    println!("{text}");
    if !broken.is_empty() {
        println!("last serve log:\n{}", serve.log_text());
    }
    assert!(
        broken.is_empty(),
        "seed {seed} (replay with SPOTRUNNER_FAULT_SEED={seed}): invariants broken:\n{text}"
    );
    drop(serve);
}
