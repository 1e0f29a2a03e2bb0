//! P2 on the local backend: `spotrunner serve` (a child process, SQLite state,
//! runners as local processes) with a fake GitHub; the burst's deliveries go
//! to its `POST /webhook`. The runner command reports to this harness when it
//! starts and ends its job (it plays the actions runner), and the harness
//! plays GitHub: the job goes `in_progress` then `completed` in the fake, and
//! the matching webhooks are sent to `serve`. Everything else is measured from
//! the state directory's SQLite database (read-only) and HTTP timings.

use crate::payloads::{self, Job, SECRET};
use crate::stats::{self, secs};
use crate::{Case, send_all};
use axum::extract::{Path as UrlPath, State};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spotrunner_testkit::fake_github::{FakeGitHub, FakeJob};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

pub struct Serve {
    child: Child,
    pub addr: String,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGTERM: serve finishes what is in flight and exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_serve(bin: &Path, config: &Path, state: &Path) -> Serve {
    std::fs::create_dir_all(state).unwrap();
    let addr_file = state.join("serve.addr");
    let log = state.join("serve.log");
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut s = Serve {
        child,
        addr: String::new(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file)
            && !a.trim().is_empty()
        {
            s.addr = a.trim().to_string();
            return s;
        }
        if let Ok(Some(st)) = s.child.try_wait() {
            panic!(
                "serve exited at start ({st}): {}",
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "serve did not start in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the harness (playing the runner side and GitHub) saw per job.
#[derive(Default)]
struct Played {
    /// Runner reported start / end, per job (first start, last end).
    started: HashMap<u64, DateTime<Utc>>,
    ended: HashMap<u64, DateTime<Utc>>,
    webhook_failures: usize,
}

struct Ctl {
    github: Arc<FakeGitHub>,
    jobs: HashMap<u64, Arc<Job>>,
    serve: Mutex<String>,
    played: Mutex<Played>,
    client: reqwest::Client,
}

async fn report(State(ctl): State<Arc<Ctl>>, UrlPath((what, runner)): UrlPath<(String, String)>) {
    let now = Utc::now();
    let Some(id) = stats::job_of_runner(&runner) else {
        return;
    };
    let Some(job) = ctl.jobs.get(&id).cloned() else {
        return;
    };
    let action = if what == "start" {
        ctl.played.lock().unwrap().started.entry(id).or_insert(now);
        "in_progress"
    } else {
        ctl.played.lock().unwrap().ended.insert(id, now);
        "completed"
    };
    ctl.github.set_job(
        &job.repo,
        FakeJob {
            id,
            status: action.into(),
            conclusion: (action == "completed").then(|| "success".into()),
            runner_name: Some(runner.clone()),
        },
    );
    let ctl2 = ctl.clone();
    tokio::spawn(async move {
        let (body, sig) = payloads::progressed(&job, action, &runner);
        let addr = ctl2.serve.lock().unwrap().clone();
        let ok = ctl2
            .client
            .post(format!("http://{addr}/webhook"))
            .header("content-type", "application/json")
            .header("x-github-event", "workflow_job")
            .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
            .header("x-hub-signature-256", sig)
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            ctl2.played.lock().unwrap().webhook_failures += 1;
        }
    });
}

fn config(github: &str, runner: &Path, max_runners: u32) -> Value {
    json!({
        "deployment": "bench",
        "allow_public_repositories": true,
        "github": { "api_url": github, "auth": { "type": "pat", "token": format!("value:{TOKEN}") } },
        "webhook": { "secrets": [format!("value:{SECRET}")] },
        "pools": [ { "name": "bench", "labels": payloads::POOL_LABELS, "max_runners": max_runners } ],
        "recovery": { "redelivery": { "enabled": false }, "sweep": { "enabled": false } },
        "local": {
            "listen": "127.0.0.1:0",
            "runner_command": runner.display().to_string(),
        },
    })
}

/// One sample of the state database.
fn sample(conn: &rusqlite::Connection) -> (f64, f64) {
    let used: f64 = conn
        .query_row("SELECT COALESCE(SUM(count), 0) FROM capacity", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|v| v as f64)
        .unwrap_or(f64::NAN);
    let running: f64 = conn
        .query_row(
            "SELECT COUNT(*) FROM instances WHERE state = 'running'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|v| v as f64)
        .unwrap_or(f64::NAN);
    (used, running)
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

fn final_states(conn: &rusqlite::Connection) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(mut st) = conn.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        && let Ok(rows) = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
    {
        for (s, n) in rows.flatten() {
            out.insert(s, n as u64);
        }
    }
    out
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub async fn run(case: &Case, bin: &Path) -> Value {
    let tmp = std::env::temp_dir().join(format!(
        "spotrunner-bench-{}-{}",
        std::process::id(),
        case.name
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let github = Arc::new(FakeGitHub::start().await);
    github.set_pat(TOKEN);
    let jobs: Vec<Arc<Job>> = payloads::jobs(case.jobs, 5_000_000)
        .into_iter()
        .map(Arc::new)
        .collect();
    for j in &jobs {
        github.add_job(&j.repo, j.id, "queued");
    }

    // The harness's side door: the runner command reports start and end.
    let ctl = Arc::new(Ctl {
        github: github.clone(),
        jobs: jobs.iter().map(|j| (j.id, j.clone())).collect(),
        serve: Mutex::new(String::new()),
        played: Mutex::new(Played::default()),
        client: reqwest::Client::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ctl_addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/{what}/{runner}", axum::routing::post(report))
        .with_state(ctl.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let runner = tmp.join("runner.sh");
    std::fs::write(
        &runner,
        format!(
            "#!/bin/sh\n\
             curl -s -m 10 -X POST \"http://{ctl_addr}/start/$SPOTRUNNER_RUNNER_NAME\" >/dev/null\n\
             sleep {run}\n\
             curl -s -m 10 -X POST \"http://{ctl_addr}/end/$SPOTRUNNER_RUNNER_NAME\" >/dev/null\n",
            run = case.run_secs
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = tmp.join("config.json");
    std::fs::write(
        &cfg,
        serde_json::to_string_pretty(&config(&github.url(), &runner, case.max_runners)).unwrap(),
    )
    .unwrap();
    let state = tmp.join("state");
    let serve = start_serve(bin, &cfg, &state);
    *ctl.serve.lock().unwrap() = serve.addr.clone();
    let db = state.join("spotrunner.db");

    // Sampler: the pool counter and live runner processes every 100 ms.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let conn = open_ro(&db).expect("open the state database");
            let mut out: Vec<(DateTime<Utc>, f64, f64)> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Utc::now();
                let (used, running) = sample(&conn);
                out.push((t, used, running));
                std::thread::sleep(Duration::from_millis(100));
            }
            out
        })
    };

    let t0 = Utc::now();
    let started = Instant::now();
    let url = format!("http://{}/webhook", serve.addr);
    let sent = send_all(case, &jobs, |job, dup| {
        let url = url.clone();
        let client = ctl.client.clone();
        let job = job.clone();
        async move {
            // A duplicate is a redelivery: same payload, same GUID.
            let _ = dup;
            let delivery = job.delivery.clone();
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-github-event", "workflow_job")
                .header("x-github-delivery", delivery)
                .header("x-hub-signature-256", &job.signature)
                .body(job.body.clone())
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    })
    .await;
    let sent_in = started.elapsed();

    // Wait until every job is final and every slot free.
    let conn = open_ro(&db).expect("open the state database");
    let deadline = Instant::now() + Duration::from_secs(case.deadline_secs);
    let finished = loop {
        let states = final_states(&conn);
        let done: u64 = ["completed", "dropped", "failed", "interrupted"]
            .iter()
            .map(|s| states.get(*s).copied().unwrap_or(0))
            .sum();
        let (used, _) = sample(&conn);
        if done as usize >= jobs.len() && used == 0.0 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let wall = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().unwrap();

    // Read what happened from the database.
    let states = final_states(&conn);
    let mut instances: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
    {
        let mut st = conn
            .prepare("SELECT runner_name, launched_at, ended_at FROM instances")
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .unwrap();
        for (name, l, e) in rows.flatten() {
            if let Some(l) = parse_ts(&l) {
                instances.push((name, l, e.as_deref().and_then(parse_ts)));
            }
        }
    }
    let github_calls = github.calls_by_endpoint();
    drop(serve);
    server.abort();

    let played = ctl.played.lock().unwrap();
    let mut first_launch: HashMap<u64, DateTime<Utc>> = HashMap::new();
    for (name, l, _) in &instances {
        if let Some(id) = stats::job_of_runner(name) {
            let e = first_launch.entry(id).or_insert(*l);
            if l < e {
                *e = *l;
            }
        }
    }
    let launch_latency: Vec<f64> = sent
        .originals
        .iter()
        .filter_map(|(i, at)| first_launch.get(&jobs[*i].id).map(|l| secs(*at, *l)))
        .collect();
    let last_launch = first_launch.values().max().map(|t| secs(t0, *t));
    let last_end = instances
        .iter()
        .filter_map(|(_, _, e)| *e)
        .max()
        .map(|t| secs(t0, t));
    let counter: Vec<(f64, f64)> = samples.iter().map(|s| (secs(t0, s.0), s.1)).collect();
    let running_peak = samples.iter().map(|s| s.2).fold(0.0, f64::max);
    let end_s = secs(t0, Utc::now());
    let inst_intervals: Vec<(f64, f64)> = instances
        .iter()
        .map(|(_, l, e)| (secs(t0, *l), e.map_or(end_s, |e| secs(t0, e))))
        .collect();
    let job_intervals: Vec<(f64, f64)> = played
        .started
        .iter()
        .filter_map(|(id, s)| played.ended.get(id).map(|e| (secs(t0, *s), secs(t0, *e))))
        .collect();
    let util = match last_launch {
        Some(ll) => stats::utilisation(
            case.max_runners,
            &counter,
            &inst_intervals,
            &job_intervals,
            ll,
        ),
        None => json!({ "saturated": false }),
    };
    let n = jobs.len() as f64;
    let per_job: BTreeMap<String, f64> = github_calls
        .iter()
        .map(|(k, v)| (k.to_string(), stats::round3(*v as f64 / n)))
        .collect();
    let _ = std::fs::remove_dir_all(&tmp);
    json!({
        "finished": finished,
        "send_s": stats::round3(sent_in.as_secs_f64()),
        "wall_s": stats::round3(wall.as_secs_f64()),
        "webhook_http": stats::summary_ms(&sent.latencies_original),
        "webhook_http_duplicates": stats::summary_ms(&sent.latencies_duplicate),
        "webhook_status": sent.statuses,
        "webhook_to_launch": stats::summary_ms(&launch_latency),
        "jobs_launched": first_launch.len(),
        "launches": instances.len(),
        "all_launched_s": last_launch.map(stats::round3),
        "all_done_s": last_end.map(stats::round3),
        "job_states": states,
        "peak_running_processes": running_peak,
        "utilisation": util,
        "github_calls": github_calls,
        "github_calls_per_job": per_job,
        "progress_webhook_failures": played.webhook_failures,
    })
}
