//! No queued job lost, end to end on the local backend: `spotrunner serve`
//! (the real binary) against the fake GitHub, which delivers webhooks itself,
//! keeps a delivery log and never redelivers unless asked.
//!
//! - A delivery that failed because serve was down is redelivered by serve's
//!   redelivery loop once serve is up: the job runs exactly once, a delivery
//!   that succeeded is never redelivered, and a restart does not redeliver
//!   again (the checkpoint is in the ledger).
//! - A queued job that was never delivered is found by the sweep and runs
//!   exactly once, also when its webhook arrives at the same time.

mod common;

use common::{SECRET, Serve, job_payload, runner_script, status, wait_until, write_json};
use serde_json::{Value, json};
use spotrunner_core::ports::RunnerScope;
use spotrunner_testkit::fake_github::{
    APP_ID, APP_PRIVATE_KEY_PEM, FakeGitHub, FakeJob, FakeWorkflowJob,
};
use std::path::PathBuf;
use std::time::Duration;

const REPO: &str = "octo-org/repo";
const LABELS: &[&str] = &["self-hosted", "linux"];

struct World {
    _tmp: tempfile::TempDir,
    github: FakeGitHub,
    config: PathBuf,
    state: PathBuf,
    runs: PathBuf,
    release: PathBuf,
    listen: String,
}

/// A free port on 127.0.0.1 (nobody listens there until serve starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn world(recovery: Value) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let installation = github.add_installation(RunnerScope::Org {
        org: "octo-org".into(),
    });
    github.add_repository(REPO, "Organization", Some(installation));
    let runs = tmp.path().join("runs");
    let release = tmp.path().join("release");
    std::fs::create_dir_all(&runs).unwrap();
    std::fs::create_dir_all(&release).unwrap();
    // One line per run in runs/<job id>; the runner holds until release/<job id>
    // exists (the test plays GitHub: the job completes, then the runner exits).
    let runner = runner_script(
        tmp.path(),
        &format!(
            "name=\"$SPOTRUNNER_RUNNER_NAME\"; job=\"${{name#*-}}\"; job=\"${{job%-*}}\"\n\
             echo \"$name\" >> '{runs}'/\"$job\"\n\
             while [ ! -e '{release}'/\"$job\" ]; do sleep 0.1; done",
            runs = runs.display(),
            release = release.display()
        ),
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    let doc = json!({
        "deployment": "e2e",
        "allow_public_repositories": true,
        "github": {
            "api_url": github.url(),
            "auth": { "type": "app", "app_id": APP_ID.parse::<u64>().unwrap(), "private_key": format!("value:{APP_PRIVATE_KEY_PEM}") },
        },
        "webhook": { "secrets": [format!("value:{SECRET}")] },
        "pools": [{ "name": "linux", "labels": ["linux"], "max_runners": 4 }],
        "recovery": recovery,
        "local": {
            "listen": listen,
            "visibility_timeout_secs": 4,
            "claim_lease_secs": 2,
            // The runner writes into the test's own directories (root's when
            // the tests run as root); isolation has its own test.
            "runner_user": "root",
            "runner_command": runner.display().to_string(),
        },
    });
    write_json(&config, &doc);
    github.set_webhook(&format!("http://{listen}/webhook"), SECRET);
    World {
        _tmp: tmp,
        github,
        config,
        state,
        runs,
        release,
        listen,
    }
}

impl World {
    fn runs_of(&self, job: u64) -> usize {
        std::fs::read_to_string(self.runs.join(job.to_string()))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// GitHub completes the job; its runner exits.
    fn finish(&self, job: u64) {
        self.github.set_job(
            REPO,
            FakeJob {
                id: job,
                status: "completed".into(),
                conclusion: Some("success".into()),
                runner_name: None,
            },
        );
        std::fs::write(self.release.join(job.to_string()), "").unwrap();
    }

    fn job_state(&self, job: u64) -> Option<String> {
        let s = status(&self.config, &self.state);
        common::job_states(&s).get(&job).cloned()
    }

    /// GitHub knows the job as queued since `minutes_ago`.
    fn queued_on_github(&self, job: u64, minutes_ago: i64) {
        let created = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
        self.github.add_workflow_job(
            REPO,
            FakeWorkflowJob::new(job + 1_000_000, job, "queued", LABELS, created),
        );
    }

    fn run_to_the_end(&self, job: u64) {
        wait_until(&format!("job {job} runs"), Duration::from_secs(60), || {
            self.runs_of(job) >= 1
        });
        self.finish(job);
        wait_until(
            &format!("job {job} completed"),
            Duration::from_secs(60),
            || self.job_state(job).as_deref() == Some("completed"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_failed_while_serve_was_down_is_redelivered_and_runs_once() {
    let w = world(json!({
        "redelivery": { "interval_secs": 1 },
        "sweep": { "enabled": false },
    }))
    .await;
    // serve is down: GitHub's delivery fails (no answer) and is only logged.
    let (lost, _) = job_payload("queued", 7001, LABELS, None);
    w.queued_on_github(7001, 0);
    let code = w.github.deliver("workflow_job", &lost).await;
    assert_eq!(code, 0, "nobody listens on {}", w.listen);
    assert_eq!(
        w.github.redelivery_requests(),
        0,
        "GitHub never redelivers by itself"
    );

    let mut serve = Serve::start(&w.config, &w.state);
    // A delivery that succeeds is never redelivered.
    let (ok, _) = job_payload("queued", 7002, LABELS, None);
    w.queued_on_github(7002, 0);
    assert_eq!(w.github.deliver("workflow_job", &ok).await, 202);

    w.run_to_the_end(7001);
    w.run_to_the_end(7002);
    assert_eq!(w.github.redelivery_requests(), 1, "{}", serve.log_text());
    let redelivered: Vec<_> = w
        .github
        .deliveries()
        .into_iter()
        .filter(|d| d.redelivery)
        .collect();
    assert_eq!(redelivered.len(), 1, "{redelivered:?}");
    assert_eq!(redelivered[0].status_code, 202, "{redelivered:?}");

    // Several more loop runs, then a restart: nothing is redelivered again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    serve.stop_with(libc::SIGTERM);
    let serve = Serve::start(&w.config, &w.state);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.github.redelivery_requests(), 1, "{}", serve.log_text());
    assert_eq!((w.runs_of(7001), w.runs_of(7002)), (1, 1));
    // `status` shows where the loop stands: a checkpoint, nothing pending.
    let st = status(&w.config, &w.state);
    assert!(
        st["recovery"]["redelivery_checkpoint"].is_string(),
        "{}",
        st["recovery"]
    );
    assert_eq!(st["recovery"]["pending_deliveries"], json!([]));
    let log = serve.log_text();
    assert!(
        log.contains("redelivery run"),
        "the loop logs its runs:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_never_delivered_is_found_by_the_sweep_and_runs_once_even_racing_its_webhook() {
    let w = world(json!({
        "redelivery": { "enabled": false },
        "sweep": { "interval_secs": 1, "min_age_secs": 60 },
    }))
    .await;
    // 8001: queued ten minutes ago, never delivered. 8002: the same, and its
    // webhook arrives while the sweep runs. 8003: queued just now (the
    // webhook's job, not the sweep's).
    w.queued_on_github(8001, 10);
    w.queued_on_github(8002, 10);
    w.queued_on_github(8003, 0);
    let serve = Serve::start(&w.config, &w.state);
    let (late, _) = job_payload("queued", 8002, LABELS, None);
    assert_eq!(w.github.deliver("workflow_job", &late).await, 202);

    w.run_to_the_end(8001);
    w.run_to_the_end(8002);
    // Several sweeps later: each ran once, and 8003 was left alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (w.runs_of(8001), w.runs_of(8002)),
        (1, 1),
        "{}",
        serve.log_text()
    );
    assert_eq!(w.runs_of(8003), 0, "a young job is the webhook's");
    assert_eq!(w.job_state(8003), None);
    let st = status(&w.config, &w.state);
    let swept = st["recovery"]["swept_jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(swept.contains(&json!(8001)), "{}", st["recovery"]);
    assert!(
        st["recovery"]["sweep_last_complete"].is_string(),
        "{}",
        st["recovery"]
    );
    let log = serve.log_text();
    assert!(
        log.contains("jobs_found_by_sweep") && log.contains("8001"),
        "the sweep says what it found:\n{log}"
    );
}
