//! The demo's `serve` child process and the per-job progress read from `/status`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `spotrunner serve` as a child process.
pub struct Serve {
    child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(config: &Path, state_dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(state_dir).map_err(|e| e.to_string())?;
        let addr_file = state_dir.join("serve.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = state_dir.join("serve.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start serve: {e}"))?;
        let mut serve = Self {
            child: Some(child),
            addr: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file)
                && !a.is_empty()
            {
                serve.addr = a.trim().to_string();
                return Ok(serve);
            }
            if let Some(c) = serve.child.as_mut()
                && let Ok(Some(code)) = c.try_wait()
            {
                return Err(format!(
                    "serve exited ({code}) at start; log: {}",
                    serve.log.display()
                ));
            }
            if Instant::now() > deadline {
                serve.stop();
                return Err("serve did not start within 20s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn status(&self, client: &reqwest::Client) -> Result<Value, String> {
        client
            .get(format!("http://{}/status", self.addr))
            .send()
            .await
            .map_err(|e| format!("GET /status: {e}"))?
            .json()
            .await
            .map_err(|e| format!("GET /status: {e}"))
    }

    /// SIGTERM, then wait (serve keeps its state and exits 0).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Queued,
    Launching,
    Running,
    Done,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Self::Queued, Self::Launching, Self::Running, Self::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Launching => "launching",
            Self::Running => "running",
            Self::Done => "done",
        }
    }
}

pub struct Change {
    pub job_id: u64,
    pub stage: Stage,
    pub runner_name: Option<String>,
    pub detail: String,
}

struct JobProgress {
    stage: Option<Stage>,
    since: Instant,
    first_seen: Instant,
    runner: Option<String>,
    pool: String,
}

pub struct Tracker {
    jobs: BTreeMap<u64, JobProgress>,
}

/// Where a job stands according to one `/status` answer.
pub fn stage_of(status: &Value, job_id: u64) -> (Option<Stage>, Option<String>, String) {
    let job = status["jobs"]["items"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["job_id"] == job_id));
    let Some(job) = job else {
        return (None, None, String::new());
    };
    let state = job["state"].as_str().unwrap_or("");
    let pool = job["pool"].as_str().unwrap_or("").to_string();
    let runner = job["runner_name"].as_str().map(str::to_string);
    let instance = runner.as_ref().and_then(|r| {
        status["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["runner_name"] == r.as_str()))
    });
    let instance_state = instance.and_then(|i| i["state"].as_str()).unwrap_or("");
    let runner_live = runner.as_ref().is_some_and(|r| {
        status["pools"][&pool]["runners"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["name"] == r.as_str()))
    });
    let stage = match state {
        "queued" | "waiting" => Stage::Queued,
        "completed" | "dropped" | "interrupted" if !runner_live => Stage::Done,
        _ if instance_state == "running" => Stage::Running,
        "running" | "completed" => Stage::Running,
        _ => Stage::Launching,
    };
    (Some(stage), runner, pool)
}

impl Tracker {
    pub fn new(ids: &[u64]) -> Self {
        let now = Instant::now();
        Self {
            jobs: ids
                .iter()
                .map(|id| {
                    (
                        *id,
                        JobProgress {
                            stage: None,
                            since: now,
                            first_seen: now,
                            runner: None,
                            pool: String::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn all_done(&self) -> bool {
        self.jobs.values().all(|j| j.stage == Some(Stage::Done))
    }

    /// The stage changes since the last call (never backwards).
    pub fn update(&mut self, status: &Value) -> Vec<Change> {
        let mut out = Vec::new();
        for (id, p) in self.jobs.iter_mut() {
            let (stage, runner, pool) = stage_of(status, *id);
            let Some(reached) = stage else { continue };
            if p.stage.is_some_and(|s| s >= reached) {
                continue;
            }
            p.since = Instant::now();
            p.pool = pool;
            if runner.is_some() {
                p.runner = runner.clone();
            }
            // A job can pass several stages between two polls: show each one
            // it went through, in order.
            let seen = p.stage;
            let passed = Stage::ALL
                .into_iter()
                .filter(move |s| *s <= reached && seen.is_none_or(|seen| *s > seen));
            p.stage = Some(reached);
            for stage in passed {
                let detail = match stage {
                    Stage::Queued => format!("on the jobs queue for pool {}", p.pool),
                    Stage::Launching => format!(
                        "claimed; registering JIT runner {}",
                        p.runner.as_deref().unwrap_or("…")
                    ),
                    Stage::Running => format!(
                        "runner process {} started",
                        p.runner.as_deref().unwrap_or("?")
                    ),
                    Stage::Done => {
                        "runner exited; instance, parameter, GitHub runner cleaned up".into()
                    }
                };
                out.push(Change {
                    job_id: *id,
                    stage,
                    runner_name: p.runner.clone(),
                    detail,
                });
            }
        }
        out
    }

    pub fn summary(&self) -> Vec<String> {
        self.jobs
            .iter()
            .map(|(id, p)| {
                format!(
                    "job {id}: pool {}, runner {}, {} after {:.1}s",
                    p.pool,
                    p.runner.as_deref().unwrap_or("-"),
                    p.stage.map_or("?", Stage::as_str),
                    (p.since - p.first_seen).as_secs_f64()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, instance_state: &str) -> Value {
        serde_json::json!({
            "jobs": { "items": [{ "job_id": 7, "state": state, "pool": "p", "runner_name": "r-7" }] },
            "instances": [{ "runner_name": "r-7", "state": instance_state }],
            "pools": { "p": { "runners": [{ "name": "r-7" }] } },
        })
    }

    #[test]
    fn stages_passed_between_two_polls_are_each_shown_in_order() {
        let mut t = Tracker::new(&[7]);
        let first: Vec<Stage> = t
            .update(&status("waiting", ""))
            .iter()
            .map(|c| c.stage)
            .collect();
        assert_eq!(
            first,
            [Stage::Queued],
            "waiting for capacity is still queued"
        );
        // The next poll finds it running already: launching is shown too.
        let next: Vec<Stage> = t
            .update(&status("launched", "running"))
            .iter()
            .map(|c| c.stage)
            .collect();
        assert_eq!(next, [Stage::Launching, Stage::Running]);
        assert!(
            t.update(&status("launched", "running")).is_empty(),
            "nothing twice"
        );
        let mut fresh = Tracker::new(&[7]);
        let all: Vec<Stage> = fresh
            .update(&status("launched", "running"))
            .iter()
            .map(|c| c.stage)
            .collect();
        assert_eq!(all, [Stage::Queued, Stage::Launching, Stage::Running]);
    }
}
