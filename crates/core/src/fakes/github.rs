//! GitHub in memory: JIT registrations, runners, jobs; counts calls.

use crate::ports::{
    GitHubApi, GitHubJob, GitHubRun, GitHubRunner, GitHubTarget, JitConfig, JitRequest, PortError,
    RerunAnswer,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryGitHub {
    pub state: Mutex<GitHubState>,
}

#[derive(Default)]
pub struct GitHubState {
    pub runners: BTreeMap<u64, GitHubRunner>,
    pub jobs: BTreeMap<u64, GitHubJob>,
    /// Runner names in use (GitHub refuses a second runner with the same name).
    pub names: BTreeMap<String, u64>,
    pub next_id: u64,
    pub jit_calls: u32,
    pub delete_calls: u32,
    pub fail_next_jit: VecDeque<PortError>,
    /// Workflow runs by id (`get_run`, and what a re-run changes).
    pub runs: BTreeMap<u64, GitHubRun>,
    /// Job ids a re-run was requested for and accepted, in order.
    pub reruns: Vec<u64>,
    /// Re-run requests made (accepted or refused).
    pub rerun_calls: u32,
}

impl MemoryGitHub {
    pub fn runners(&self) -> Vec<GitHubRunner> {
        self.state
            .lock()
            .unwrap()
            .runners
            .values()
            .cloned()
            .collect()
    }
    /// GitHub's view of a runner's busy flag (it took a job).
    pub fn set_busy(&self, name: &str, busy: bool) {
        let mut s = self.state.lock().unwrap();
        for r in s.runners.values_mut().filter(|r| r.name == name) {
            r.busy = busy;
        }
    }
    pub fn jit_calls(&self) -> u32 {
        self.state.lock().unwrap().jit_calls
    }
    pub fn set_job(&self, id: u64, status: &str) {
        self.state.lock().unwrap().jobs.insert(
            id,
            GitHubJob {
                id,
                status: status.into(),
                conclusion: None,
                runner_name: None,
                name: None,
                run_id: None,
                run_attempt: None,
            },
        );
    }
    /// Put job `id` (named `name`) into run `run_id`'s attempt `attempt` with
    /// this status and conclusion; the run's status follows (`set_run`).
    pub fn set_run_job(
        &self,
        id: u64,
        name: &str,
        run_id: u64,
        attempt: u32,
        status: &str,
        conclusion: Option<&str>,
    ) {
        self.state.lock().unwrap().jobs.insert(
            id,
            GitHubJob {
                id,
                status: status.into(),
                conclusion: conclusion.map(str::to_string),
                runner_name: None,
                name: Some(name.into()),
                run_id: Some(run_id),
                run_attempt: Some(attempt),
            },
        );
    }
    pub fn set_run(&self, run_id: u64, attempt: u32, status: &str) {
        self.state.lock().unwrap().runs.insert(
            run_id,
            GitHubRun {
                id: run_id,
                status: status.into(),
                conclusion: None,
                run_attempt: attempt,
            },
        );
    }
    pub fn reruns(&self) -> Vec<u64> {
        self.state.lock().unwrap().reruns.clone()
    }
    /// The job a re-run created for `job_id` (same run and name, next attempt).
    pub fn rerun_of(&self, job_id: u64) -> Option<GitHubJob> {
        let s = self.state.lock().unwrap();
        let old = s.jobs.get(&job_id)?;
        s.jobs
            .values()
            .find(|j| {
                j.id != job_id
                    && j.run_id == old.run_id
                    && j.name == old.name
                    && j.run_attempt > old.run_attempt
            })
            .cloned()
    }
    pub fn fail_next_jit(&self, e: PortError) {
        self.state.lock().unwrap().fail_next_jit.push_back(e);
    }
}

#[async_trait]
impl GitHubApi for MemoryGitHub {
    async fn create_jit_config(&self, req: &JitRequest) -> Result<JitConfig, PortError> {
        let mut s = self.state.lock().unwrap();
        s.jit_calls += 1;
        if let Some(e) = s.fail_next_jit.pop_front() {
            return Err(e);
        }
        if s.names.contains_key(&req.name) {
            return Err(PortError::Conflict {
                service: "github",
                message: format!("runner {} already exists", req.name),
            });
        }
        s.next_id += 1;
        let id = s.next_id;
        s.names.insert(req.name.clone(), id);
        s.runners.insert(
            id,
            GitHubRunner {
                id,
                name: req.name.clone(),
                status: "offline".into(),
                busy: false,
                labels: req.labels.clone(),
            },
        );
        Ok(JitConfig {
            runner_id: id,
            encoded_jit_config: format!("JIT-SECRET-{id}"),
        })
    }
    async fn get_job(
        &self,
        _t: &GitHubTarget,
        _repo: &str,
        job_id: u64,
    ) -> Result<Option<GitHubJob>, PortError> {
        Ok(self.state.lock().unwrap().jobs.get(&job_id).cloned())
    }
    async fn list_runners(&self, _t: &GitHubTarget) -> Result<Vec<GitHubRunner>, PortError> {
        Ok(self.runners())
    }
    async fn get_runner(
        &self,
        _t: &GitHubTarget,
        id: u64,
    ) -> Result<Option<GitHubRunner>, PortError> {
        Ok(self.state.lock().unwrap().runners.get(&id).cloned())
    }
    async fn delete_runner(&self, _t: &GitHubTarget, id: u64) -> Result<(), PortError> {
        let mut s = self.state.lock().unwrap();
        s.delete_calls += 1;
        // GitHub refuses to delete a runner while it runs a job (422).
        if s.runners.get(&id).is_some_and(|r| r.busy) {
            return Err(PortError::rejected(
                "github",
                format!(
                    "runner {id}: validation failed (422): Bad request - Runner \"{id}\" is still running a job\""
                ),
            ));
        }
        if let Some(r) = s.runners.remove(&id) {
            s.names.remove(&r.name);
        }
        Ok(())
    }
    async fn get_run(
        &self,
        _t: &GitHubTarget,
        _repo: &str,
        run_id: u64,
    ) -> Result<Option<GitHubRun>, PortError> {
        Ok(self.state.lock().unwrap().runs.get(&run_id).cloned())
    }
    /// As GitHub: refused while the run is not completed; else the run's next
    /// attempt re-runs the job under a new id (queued).
    async fn rerun_job(
        &self,
        _t: &GitHubTarget,
        _repo: &str,
        job_id: u64,
    ) -> Result<RerunAnswer, PortError> {
        let mut s = self.state.lock().unwrap();
        s.rerun_calls += 1;
        let Some(job) = s.jobs.get(&job_id).cloned() else {
            return Ok(RerunAnswer::Refused("Not Found".into()));
        };
        let Some(run) = job.run_id.and_then(|r| s.runs.get(&r).cloned()) else {
            return Ok(RerunAnswer::Refused("Not Found".into()));
        };
        if run.status != "completed" {
            return Ok(RerunAnswer::Refused(
                "The workflow run containing this job is already running".into(),
            ));
        }
        let attempt = run.run_attempt + 1;
        let new_id = job_id + 1_000_000 * u64::from(attempt);
        s.runs.insert(
            run.id,
            GitHubRun {
                status: "queued".into(),
                conclusion: None,
                run_attempt: attempt,
                ..run.clone()
            },
        );
        s.jobs.insert(
            new_id,
            GitHubJob {
                id: new_id,
                status: "queued".into(),
                conclusion: None,
                runner_name: None,
                name: job.name.clone(),
                run_id: Some(run.id),
                run_attempt: Some(attempt),
            },
        );
        s.reruns.push(job_id);
        Ok(RerunAnswer::Accepted)
    }
}
