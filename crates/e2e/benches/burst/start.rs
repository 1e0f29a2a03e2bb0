//! Start time on the local backend: webhook → job `in_progress`.
//!
//! `spotrunner serve` (SQLite, runners as local processes) with a fake GitHub
//! whose dispatch is GitHub's (`crates/fake-github/src/dispatch.rs`): each job
//! is queued with `FakeGitHub::queue_job` at t0 (the `queued` webhook goes to
//! serve's `/webhook`), and the runner command plays the actions runner — it
//! asks the fake for work every 50 ms, and GitHub gives it the oldest queued
//! job that fits. The job's start is the fake's `in_progress` time (when a
//! runner took it). Jobs run one at a time: the next is queued once the
//! previous one is completed on both sides and the deployment is at rest (no
//! runner process left beyond the hot ones, and, with `--hot N`, N idle
//! runners online), so each sample is a start from rest.
//!
//! Every job is of one repository (GitHub's first queued example). `--hot N`
//! (or `BENCH_HOT=N`) puts `"hot": {"count": N, "owner": …}` in the pool
//! (`"repository"` for a user's repository: where its runners register); a
//! build without hot pools refuses that configuration (`spotrunner config
//! check`), and the case is reported as skipped.

use crate::Case;
use crate::local::start_serve;
use crate::payloads::{self, SECRET};
use crate::stats::{self, secs};
use serde_json::{Value, json};
use spotrunner_testkit::fake_github::FakeGitHub;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

/// The actions runner, as far as dispatch goes: acquire until a job comes,
/// then complete it at once.
fn runner_script(github_url: &str) -> String {
    spotrunner_testkit::fake_github::dispatch_runner_script(github_url, None)
}

/// `hot` of the pool: `count` idle runners registered where the jobs' runners
/// register (an organisation's repository: the organisation; a user's: the
/// repository), so that they can take the jobs.
fn hot_setting(hot: u32, job: &Value) -> Value {
    let repo = &job["repository"];
    if repo["owner"]["type"] == "User" {
        json!({ "count": hot, "repository": repo["full_name"] })
    } else {
        json!({ "count": hot, "owner": repo["owner"]["login"] })
    }
}

fn config(github: &str, runner: &Path, max_runners: u32, hot: Option<Value>) -> Value {
    let mut pool = json!({
        "name": "bench",
        "labels": payloads::POOL_LABELS,
        "max_runners": max_runners,
    });
    if let Some(hot) = hot {
        pool["hot"] = hot;
    }
    json!({
        "deployment": "bench",
        "allow_public_repositories": true,
        "github": { "api_url": github, "auth": { "type": "pat", "token": format!("value:{TOKEN}") } },
        "webhook": { "secrets": [format!("value:{SECRET}")] },
        "pools": [pool],
        "recovery": { "redelivery": { "enabled": false }, "sweep": { "enabled": false } },
        "local": {
            "listen": "127.0.0.1:0",
            "runner_command": runner.display().to_string(),
        },
    })
}

fn open_ro(db: &Path) -> Option<rusqlite::Connection> {
    let c = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    c.busy_timeout(Duration::from_secs(5)).ok()?;
    Some(c)
}

/// serve's state of job `id` and its live runner processes.
fn serve_side(db: &Path, id: u64) -> (Option<String>, i64) {
    let Some(conn) = open_ro(db) else {
        return (None, i64::MAX);
    };
    let state = conn
        .query_row(
            "SELECT state FROM jobs WHERE job_id = ?1",
            [id as i64],
            |r| r.get::<_, String>(0),
        )
        .ok();
    let running = conn
        .query_row(
            "SELECT COUNT(*) FROM instances WHERE state = 'running'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(i64::MAX);
    (state, running)
}

/// At rest: no runner beyond the hot ones, and `hot` idle runners asking for work.
fn at_rest(github: &FakeGitHub, db: &Path, hot: u32) -> bool {
    let Some(conn) = open_ro(db) else {
        return false;
    };
    let running = conn
        .query_row(
            "SELECT COUNT(*) FROM instances WHERE state = 'running'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(i64::MAX);
    let idle_online = github
        .runners()
        .iter()
        .filter(|r| r.status == "online" && !r.busy)
        .count();
    running <= i64::from(hot) && idle_online >= hot as usize
}

async fn wait_for(deadline: Instant, mut f: impl FnMut() -> bool) -> bool {
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn run(case: &Case, bin: &Path, hot: u32) -> Value {
    let tmp = std::env::temp_dir().join(format!(
        "spotrunner-bench-{}-{}",
        std::process::id(),
        case.name
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let runner = tmp.join("runner.sh");
    std::fs::write(&runner, runner_script(&github.url())).unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Every job of one repository (GitHub's first queued example), so that
    // hot runners registered for it can take every job.
    let all = payloads::jobs(case.jobs * 2, 7_000_000);
    let repo = all[0].repo.clone();
    let jobs: Vec<payloads::Job> = all
        .into_iter()
        .filter(|j| j.repo == repo)
        .take(case.jobs)
        .collect();
    let hot_cfg = (hot > 0).then(|| hot_setting(hot, &jobs[0].payload));
    let cfg = tmp.join("config.json");
    std::fs::write(
        &cfg,
        serde_json::to_string_pretty(&config(&github.url(), &runner, case.max_runners, hot_cfg))
            .unwrap(),
    )
    .unwrap();
    // A build without hot pools refuses `hot`: say so instead of failing at start.
    if hot > 0 {
        let check = std::process::Command::new(bin)
            .args(["config", "check"])
            .arg(&cfg)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        if !check.status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            let stderr = String::from_utf8_lossy(&check.stderr);
            let why = stderr
                .lines()
                .find(|l| l.contains("].hot"))
                .unwrap_or(stderr.trim())
                .trim();
            return json!({
                "finished": false,
                "skipped": format!("this spotrunner refuses the hot setting ({why})"),
            });
        }
    }
    let state = tmp.join("state");
    let serve = start_serve(bin, &cfg, &state);
    github.set_webhook(&format!("http://{}/webhook", serve.addr), SECRET);
    let db = state.join("spotrunner.db");
    let deadline = Instant::now() + Duration::from_secs(case.deadline_secs);

    let mut to_start: Vec<f64> = Vec::new();
    let mut webhook_answer: Vec<f64> = Vec::new();
    let mut own_runner = 0usize;
    let mut statuses: std::collections::BTreeMap<String, usize> = Default::default();
    let mut finished = true;
    for job in &jobs {
        // From rest: the previous job done, the hot pool (if any) refilled.
        if !wait_for(deadline, || at_rest(&github, &db, hot)).await {
            finished = false;
            break;
        }
        let mut p = job.payload.clone();
        p["workflow_job"]["created_at"] = chrono::Utc::now().to_rfc3339().into();
        let t0 = chrono::Utc::now();
        let status = github.queue_job(p).await;
        webhook_answer.push(secs(t0, chrono::Utc::now()));
        *statuses.entry(status.to_string()).or_default() += 1;
        let done = wait_for(deadline, || {
            github
                .dispatch_log()
                .iter()
                .any(|a| a.job_id == job.id && a.completed_at.is_some())
                && serve_side(&db, job.id).0.as_deref() == Some("completed")
        })
        .await;
        if !done {
            finished = false;
            break;
        }
        let a = github
            .dispatch_log()
            .into_iter()
            .find(|a| a.job_id == job.id)
            .expect("assigned");
        to_start.push(secs(t0, a.started_at));
        if stats::job_of_runner(&a.runner_name) == Some(job.id) {
            own_runner += 1;
        }
    }
    let finished = finished && wait_for(deadline, || serve_side(&db, 0).1 <= i64::from(hot)).await;
    drop(serve);
    let _ = std::fs::remove_dir_all(&tmp);
    json!({
        "finished": finished,
        "webhook_to_in_progress": stats::summary_ms(&to_start),
        "samples_ms": to_start.iter().map(|s| stats::round(s * 1000.0)).collect::<Vec<_>>(),
        "queued_webhook_http": stats::summary_ms(&webhook_answer),
        "webhook_status": statuses,
        "taken_by_own_runner": own_runner,
        "assignments": github.assignments().len(),
    })
}
