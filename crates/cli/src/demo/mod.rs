//! `spotrunner demo`: a first look without any account. Starts `serve` (this
//! binary, as a child process) on a built-in configuration with a local fake
//! GitHub and a runner command that prints and exits, sends a few signed
//! `workflow_job` webhooks, shows each job's progress live (queued → launching →
//! running → done), prints a summary and cleans up. Everything it prints is
//! labelled DEMO.

mod payload;
mod progress;

use crate::demo::progress::Stage;
use spotrunner_fake_github::{FakeGitHub, FakeJob, endpoint};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const SECRET: &str = "demo-webhook-secret";
const TOKEN: &str = "demo-token";
pub const REPO: &str = "demo-org/demo-repo";
const DEADLINE: Duration = Duration::from_secs(90);

fn say(line: impl AsRef<str>) {
    println!("[DEMO] {}", line.as_ref());
}

/// What the demo's runners do: print, pretend to work, exit 0.
const RUNNER: &str = r#"#!/bin/sh
echo "[DEMO] runner $SPOTRUNNER_RUNNER_NAME: got a JIT config, running the job (pretend)"
sleep 2
echo "[DEMO] runner $SPOTRUNNER_RUNNER_NAME: job done, exiting"
"#;

fn config(api_url: &str, runner: &Path) -> serde_json::Value {
    serde_json::json!({
        "deployment": "demo",
        "github": { "api_url": api_url, "auth": { "type": "pat", "token": format!("value:{TOKEN}") } },
        "webhook": { "secrets": [format!("value:{SECRET}")] },
        "max_total_weight": 8,
        "pools": [
            { "name": "linux-x64", "labels": ["linux", "x64"], "max_runners": 2 },
            { "name": "linux-arm64", "labels": ["linux", "arm64"], "max_runners": 1 },
        ],
        "local": {
            "listen": "127.0.0.1:0",
            "runner_command": runner.display().to_string(),
            // The demo's runner is its own printing script, not a job: run as
            // root, it creates no accounts on the machine (README "Security
            // model" for what serve does for real jobs).
            "runner_user": "root",
            "visibility_timeout_secs": 10,
            "claim_lease_secs": 5,
        },
    })
}

/// A temporary directory removed on drop (unless the user chose the directory).
struct StateDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub async fn run(jobs: u32, state_dir: Option<PathBuf>) -> Result<ExitCode, String> {
    let started = Instant::now();
    let dir = match state_dir {
        Some(p) => StateDir {
            path: p,
            remove: false,
        },
        None => StateDir {
            path: std::env::temp_dir().join(format!("spotrunner-demo-{}", std::process::id())),
            remove: true,
        },
    };
    std::fs::create_dir_all(&dir.path).map_err(|e| format!("{}: {e}", dir.path.display()))?;
    say("spotrunner demo: everything below is local and fake — no GitHub, no AWS.");

    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let runner = dir.path.join("demo-runner.sh");
    std::fs::write(&runner, RUNNER).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let config_path = dir.path.join("demo-config.json");
    let cfg = serde_json::to_string_pretty(&config(&github.url(), &runner)).unwrap_or_default();
    std::fs::write(&config_path, cfg).map_err(|e| e.to_string())?;
    say(format!("fake GitHub at {}", github.url()));
    say(format!("configuration: {}", config_path.display()));

    let mut serve = progress::Serve::start(&config_path, &dir.path.join("state"))?;
    say(format!(
        "spotrunner serve listening on http://{} (logs: {})",
        serve.addr,
        serve.log.display()
    ));

    let client = reqwest::Client::new();
    let ids: Vec<u64> = (0..u64::from(jobs.max(1))).map(|i| 4200 + i).collect();
    for (i, id) in ids.iter().enumerate() {
        github.add_job(REPO, *id, "queued");
        let labels: &[&str] = if i % 3 == 2 {
            &["self-hosted", "linux", "arm64"]
        } else {
            &["self-hosted", "linux", "x64"]
        };
        let body = payload::workflow_job("queued", *id, labels, None);
        let (status, why) = payload::send(&client, &serve.addr, SECRET, &body).await?;
        let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
        say(format!(
            "GitHub → webhook: workflow_job queued, job {id}, labels {labels:?} → HTTP {status}{why}"
        ));
    }

    let mut tracker = progress::Tracker::new(&ids);
    let deadline = Instant::now() + DEADLINE;
    while !tracker.all_done() {
        if Instant::now() > deadline {
            serve.stop();
            return Err(format!(
                "DEMO did not finish within {}s; serve's log: {}",
                DEADLINE.as_secs(),
                serve.log.display()
            ));
        }
        let status = serve.status(&client).await?;
        for change in tracker.update(&status) {
            say(format!(
                "job {:<6} {:<10} {}",
                change.job_id,
                change.stage.as_str(),
                change.detail
            ));
            if change.stage == Stage::Running
                && let Some(runner) = &change.runner_name
            {
                // What GitHub does once the runner took the job.
                github.set_job(
                    REPO,
                    FakeJob {
                        id: change.job_id,
                        status: "in_progress".into(),
                        conclusion: None,
                        runner_name: Some(runner.clone()),
                    },
                );
                let body = payload::workflow_job(
                    "in_progress",
                    change.job_id,
                    &["self-hosted"],
                    Some(runner),
                );
                payload::send(&client, &serve.addr, SECRET, &body).await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let final_status = serve.status(&client).await?;
    serve.stop();
    say("summary:");
    for line in tracker.summary() {
        say(format!("  {line}"));
    }
    say(format!(
        "  fake GitHub saw {} JIT registration(s) and {} runner deletion(s) for {} job(s)",
        github.calls(endpoint::GENERATE_JITCONFIG),
        github.calls(endpoint::DELETE_RUNNER),
        ids.len()
    ));
    let left = final_status["instances"].as_array().map_or(0, |a| {
        a.iter().filter(|i| i["state"] != "terminated").count()
    });
    say(format!(
        "  runner processes left: {left}; capacity in use: weight {}",
        final_status["capacity"]["weight_used"]
    ));
    say(format!(
        "done in {:.1}s. Next: `spotrunner serve --config FILE` with your own configuration.",
        started.elapsed().as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}
