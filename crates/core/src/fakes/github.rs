//! GitHub in memory: JIT registrations, runners, jobs; counts calls.

use crate::ports::{
    GitHubApi, GitHubJob, GitHubRunner, GitHubTarget, JitConfig, JitRequest, PortError,
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
            },
        );
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
        if let Some(r) = s.runners.remove(&id) {
            s.names.remove(&r.name);
        }
        Ok(())
    }
}
