//! SIGTERM during a burst of deliveries: GitHub does not redeliver a failed
//! delivery, so serve keeps taking (and queueing) webhooks while its loops
//! finish the launches in flight, and closes its listener only then. Every
//! delivery answered is a 202 (nothing 5xx), including those sent after the
//! SIGTERM; after a restart every job runs exactly once.

mod common;

use common::*;
use spotrunner_testkit::fake_github::FakeGitHub;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(180);
const SENDERS: usize = 2;
/// Between two deliveries of one sender.
const PACE: Duration = Duration::from_millis(250);
/// GitHub's answers are this slow while the first serve runs, so a launch is in
/// flight for a while after the SIGTERM.
const LATENCY: Duration = Duration::from_secs(2);

struct Delivery {
    job_id: u64,
    sent_at: Instant,
    status: Option<u16>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_burst_refuses_no_delivery_and_every_job_runs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let github = Arc::new(FakeGitHub::start().await);
    github.set_pat(TOKEN);
    let ran = tmp.path().join("ran.log");
    let runner = runner_script(
        tmp.path(),
        &format!(
            "echo \"$SPOTRUNNER_RUNNER_NAME\" >> '{}'\nsleep 1",
            ran.display()
        ),
    );
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &path,
        &config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 8 }]),
            serde_json::json!({
                "runner_command": runner.display().to_string(),
                "visibility_timeout_secs": 30,
                "claim_lease_secs": 20,
                "janitor_interval_secs": 3600,
                "redrive_interval_secs": 3600,
            }),
        ),
    );
    github.set_latency(LATENCY);
    let mut serve = Serve::start(&path, &state);
    let addr = serve.addr.clone();

    // Senders: a new job each, a new connection each, until told to stop.
    let next_id = Arc::new(AtomicU64::new(90_000));
    let done = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (next_id, done, github, addr) =
            (next_id.clone(), done.clone(), github.clone(), addr.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut sent = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let job_id = next_id.fetch_add(1, Ordering::SeqCst);
                github.add_job("octo-org/repo", job_id, "completed");
                let (body, sig) = job_payload("queued", job_id, &["self-hosted", "linux"], None);
                let sent_at = Instant::now();
                let status = post_webhook(&client, &addr, "workflow_job", &body, &sig).await;
                sent.push(Delivery {
                    job_id,
                    sent_at,
                    status,
                });
                tokio::time::sleep(PACE).await;
            }
            sent
        }));
    }

    // SIGTERM while a launch is in flight (a job claimed, GitHub slow to answer).
    let client = reqwest::Client::new();
    wait_until_async("a launch in flight", LONG, || {
        let (client, url) = (client.clone(), serve.url("/status"));
        async move {
            let Ok(resp) = client.get(url).send().await else {
                return false;
            };
            let s: serde_json::Value = resp.json().await.unwrap_or_default();
            job_states(&s).values().any(|v| v == "claimed")
        }
    })
    .await;
    serve.signal(libc::SIGTERM);
    // Once serve has taken the signal, /healthz says stopping (503) so a load
    // balancer drains, while /webhook still answers 202 (the senders).
    let deadline = Instant::now() + LONG;
    let health = loop {
        let h = client
            .get(serve.url("/healthz"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        if h != Some(200) {
            break h;
        }
        assert!(Instant::now() < deadline, "/healthz never said stopping");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // From here serve is certainly draining.
    let stopping_at = Instant::now();
    // Signal 0 sends nothing: only wait for the exit.
    let exit = tokio::task::block_in_place(|| serve.stop_with(0));
    let log = serve.log_text();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("stopped; state kept"), "{log}");
    assert_eq!(health, Some(503), "/healthz while stopping");
    done.store(true, Ordering::SeqCst);
    let mut per_sender = Vec::new();
    for s in senders {
        per_sender.push(s.await.unwrap());
    }

    // Every answer was a 202; once a sender found serve gone, it stayed gone
    // (the listener closed once, at the end, not refusing in between).
    let all: Vec<&Delivery> = per_sender.iter().flatten().collect();
    for d in &all {
        assert!(
            d.status.is_none() || d.status == Some(202),
            "job {}: answered {:?}",
            d.job_id,
            d.status
        );
    }
    for sent in &per_sender {
        let first_gone = sent.iter().position(|d| d.status.is_none());
        if let Some(i) = first_gone {
            assert!(
                sent[i..].iter().all(|d| d.status.is_none()),
                "a delivery was refused, then later ones taken"
            );
        }
    }
    let while_stopping = all
        .iter()
        .filter(|d| d.sent_at >= stopping_at && d.status == Some(202))
        .count();
    println!(
        "deliveries: {} in all, {} sent once /healthz said stopping and answered 202, {} unanswered (serve gone)",
        all.len(),
        while_stopping,
        all.iter().filter(|d| d.status.is_none()).count()
    );
    assert!(
        while_stopping > 0,
        "no delivery was sent and answered during the drain; serve's log:\n{log}"
    );

    // A restart: the unanswered ones are delivered again (as a GitHub user would),
    // and every job runs exactly once.
    github.set_latency(Duration::ZERO);
    let serve = Serve::start(&path, &state);
    for d in all.iter().filter(|d| d.status.is_none()) {
        let (body, sig) = job_payload("queued", d.job_id, &["self-hosted", "linux"], None);
        assert_eq!(
            post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await,
            Some(202)
        );
    }
    let ids: Vec<u64> = all.iter().map(|d| d.job_id).collect();
    wait_until_async("every job completed and cleaned up", LONG, || {
        let (path, state, ids) = (path.clone(), state.clone(), ids.clone());
        async move {
            let s = status(&path, &state);
            let states = job_states(&s);
            ids.iter()
                .all(|id| states.get(id).map(String::as_str) == Some("completed"))
                && s["capacity"]["weight_used"] == 0
                && s["queues"]["jobs"]["visible"] == 0
                && s["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["state"] == "terminated")
        }
    })
    .await;

    // Runner names are `e2e_linux-<job id>-<launch>`: one start per job.
    let text = std::fs::read_to_string(&ran).unwrap_or_default();
    let mut per_job: BTreeMap<u64, usize> = BTreeMap::new();
    for line in text.lines() {
        let id = line
            .strip_prefix("e2e_linux-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("unexpected runner name {line:?}"));
        *per_job.entry(id).or_default() += 1;
    }
    let expected: BTreeMap<u64, usize> = ids.iter().map(|id| (*id, 1)).collect();
    assert_eq!(per_job, expected, "one runner start per job, each once");
    let s = status(&path, &state);
    assert_eq!(
        s["queues"]["dlq"]["visible"], 0,
        "nothing dead-lettered: {s}"
    );
    assert!(processes_under(&state).is_empty(), "runner processes left");
    drop(serve);
}
