//! In-memory compute, parameters, commands and bootstrap queue.

use crate::clock::Clock;
use crate::config::CapacityType;
use crate::ports::{
    BootstrapCommand, BootstrapMessage, BootstrapQueue, Commands, Compute, Instance, LaunchOutcome,
    LaunchRequest, PortError, RunnerParameters, SendOutcome,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// VMs in memory. `ClientToken`s are honoured as strictly as EC2 does: a known
/// token with the same parameters returns the first call's instance and starts
/// none; a known token with other parameters is `IdempotentParameterMismatch`,
/// answered as the EC2 adapter classed it before it handled the mismatch
/// ([`PortError::Rejected`]), so a core that changes its request between
/// retries fails its tests. Spot capacity can be switched off; failures can be
/// queued, before the call ([`ComputeState::fail_next_launch`]) or after it
/// ([`ComputeState::lose_next_answer`]: the VM starts, the answer is lost).
#[derive(Default)]
pub struct MemoryCompute {
    pub state: Mutex<ComputeState>,
}

#[derive(Default)]
pub struct ComputeState {
    pub instances: BTreeMap<String, (Instance, CapacityType)>,
    /// `ClientToken` → (instance id, the request that first used the token).
    pub tokens: BTreeMap<String, (String, LaunchRequest)>,
    pub no_spot_capacity: bool,
    pub launch_calls: u32,
    /// Fail the next launches before anything happens.
    pub fail_next_launch: VecDeque<PortError>,
    /// The next launches happen (an instance starts, its token is known), but
    /// the caller gets this error instead of the answer.
    pub lose_next_answer: VecDeque<PortError>,
    /// EC2's clock, which stamps `launched_at`: the wall clock unless a test
    /// that drives its steps at a fixed instant gives its own
    /// ([`MemoryCompute::with_clock`], `crate::clock`).
    pub clock: Option<Arc<dyn Clock>>,
}

impl MemoryCompute {
    /// A cloud whose launches are stamped by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let c = Self::default();
        c.state.lock().unwrap().clock = Some(clock);
        c
    }

    pub fn live(&self) -> Vec<Instance> {
        let s = self.state.lock().unwrap();
        s.instances
            .values()
            .filter(|(i, _)| i.is_live())
            .map(|(i, _)| i.clone())
            .collect()
    }
    pub fn all(&self) -> Vec<(Instance, CapacityType)> {
        self.state
            .lock()
            .unwrap()
            .instances
            .values()
            .cloned()
            .collect()
    }
    pub fn set_no_spot_capacity(&self, v: bool) {
        self.state.lock().unwrap().no_spot_capacity = v;
    }
    pub fn launch_calls(&self) -> u32 {
        self.state.lock().unwrap().launch_calls
    }
    /// The next launch starts its VM but answers `e` (a timeout after EC2 acted).
    pub fn lose_next_answer(&self, e: PortError) {
        self.state.lock().unwrap().lose_next_answer.push_back(e);
    }
}

#[async_trait]
impl Compute for MemoryCompute {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, PortError> {
        let mut s = self.state.lock().unwrap();
        s.launch_calls += 1;
        if let Some(e) = s.fail_next_launch.pop_front() {
            return Err(e);
        }
        if let Some((id, first)) = s.tokens.get(&req.client_token) {
            if first != req {
                return Err(PortError::rejected(
                    "ec2",
                    format!(
                        "launch runner {}: IdempotentParameterMismatch: the client token {} \
                         was used before with other parameters (fake)",
                        req.runner_name, req.client_token
                    ),
                ));
            }
            let (_, cap) = &s.instances[id];
            return Ok(LaunchOutcome::Launched {
                instance_id: id.clone(),
                capacity_type: *cap,
            });
        }
        if req.capacity_type == CapacityType::Spot && s.no_spot_capacity {
            return Ok(LaunchOutcome::NoCapacity {
                code: "InsufficientInstanceCapacity".into(),
                message: "no spot capacity (fake)".into(),
            });
        }
        let id = format!("i-{:017x}", s.instances.len() + 1);
        let inst = Instance {
            instance_id: id.clone(),
            state: "running".into(),
            launched_at: Some(s.clock.as_ref().map_or_else(chrono::Utc::now, |c| c.now())),
            tags: req.tags.clone(),
        };
        s.instances.insert(id.clone(), (inst, req.capacity_type));
        s.tokens
            .insert(req.client_token.clone(), (id.clone(), req.clone()));
        if let Some(e) = s.lose_next_answer.pop_front() {
            return Err(e);
        }
        Ok(LaunchOutcome::Launched {
            instance_id: id,
            capacity_type: req.capacity_type,
        })
    }

    async fn terminate(&self, instance_ids: &[String]) -> Result<(), PortError> {
        let mut s = self.state.lock().unwrap();
        for id in instance_ids {
            if let Some((i, _)) = s.instances.get_mut(id) {
                i.state = "terminated".into();
            }
        }
        Ok(())
    }

    async fn list_instances(&self, deployment: &str) -> Result<Vec<Instance>, PortError> {
        let s = self.state.lock().unwrap();
        Ok(s.instances
            .values()
            .map(|(i, _)| i)
            .filter(|i| i.tag(crate::ports::tags::DEPLOYMENT) == Some(deployment))
            .cloned()
            .collect())
    }

    async fn tag_instance(&self, id: &str, key: &str, value: &str) -> Result<(), PortError> {
        let mut s = self.state.lock().unwrap();
        let (i, _) = s.instances.get_mut(id).ok_or_else(|| PortError::NotFound {
            service: "compute",
            what: id.to_string(),
        })?;
        i.tags.retain(|(k, _)| k != key);
        i.tags.push((key.to_string(), value.to_string()));
        Ok(())
    }
}

/// A stored parameter: its value and its tags.
pub type StoredParameter = (String, Vec<(String, String)>);

/// Parameters in memory by name.
#[derive(Default)]
pub struct MemoryParameters {
    pub params: Mutex<BTreeMap<String, StoredParameter>>,
    pub puts: Mutex<u32>,
}

impl MemoryParameters {
    pub fn names(&self) -> Vec<String> {
        self.params.lock().unwrap().keys().cloned().collect()
    }
    pub fn value(&self, name: &str) -> Option<String> {
        self.params
            .lock()
            .unwrap()
            .get(name)
            .map(|(v, _)| v.clone())
    }
    pub fn tags(&self, name: &str) -> Vec<(String, String)> {
        self.params
            .lock()
            .unwrap()
            .get(name)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl RunnerParameters for MemoryParameters {
    async fn put(
        &self,
        name: &str,
        value: &str,
        tags: &[(String, String)],
    ) -> Result<(), PortError> {
        *self.puts.lock().unwrap() += 1;
        self.params
            .lock()
            .unwrap()
            .insert(name.to_string(), (value.to_string(), tags.to_vec()));
        Ok(())
    }
    async fn exists(&self, name: &str) -> Result<bool, PortError> {
        Ok(self.params.lock().unwrap().contains_key(name))
    }
    async fn bind_to_instance(&self, name: &str, instance_id: &str) -> Result<(), PortError> {
        let (key, value) = (crate::ports::tags::INSTANCE_ID, instance_id);
        let mut p = self.params.lock().unwrap();
        let (_, tags) = p.get_mut(name).ok_or_else(|| PortError::NotFound {
            service: "parameters",
            what: name.to_string(),
        })?;
        tags.retain(|(k, _)| k != key);
        tags.push((key.to_string(), value.to_string()));
        Ok(())
    }
    async fn delete(&self, name: &str) -> Result<(), PortError> {
        self.params.lock().unwrap().remove(name);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, PortError> {
        Ok(self
            .params
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// Records bootstrap commands; answers `NotReady` while `not_ready` is set.
/// Like SSM, `send_bootstrap` is not idempotent: every call is a new command.
/// `lose_next_answer` makes the next send apply but answer an error;
/// `throttle_next_sends` refuses sends (nothing sent), `set_too_late` plays a
/// send whose `send_by` passed (no clock here: tests pass their own times);
/// `hold_finds` and `slow_sends` interleave two steps of one task.
#[derive(Default)]
pub struct MemoryCommands {
    pub sent: Mutex<Vec<BootstrapCommand>>,
    pub not_ready: Mutex<bool>,
    pub lose_answers: Mutex<u32>,
    pub throttled: Mutex<u32>,
    pub too_late: Mutex<bool>,
    /// `slow_sends`: how often a send lets the task's other futures run first.
    pub send_yields: Mutex<u32>,
    /// `hold_finds`: (lookups to wait for, lookups arrived).
    pub find_hold: Mutex<(usize, usize)>,
}

impl MemoryCommands {
    /// The next `n` sends are refused with throttling (nothing sent).
    pub fn throttle_next_sends(&self, n: u32) {
        *self.throttled.lock().unwrap() = n;
    }
    pub fn set_too_late(&self, v: bool) {
        *self.too_late.lock().unwrap() = v;
    }
    /// Every send lets the task's other futures run `n` times before it lands
    /// (a step still sending while another acts).
    pub fn slow_sends(&self, n: u32) {
        *self.send_yields.lock().unwrap() = n;
    }
    /// The next `n` `find_bootstrap` calls look, then answer only once all
    /// `n` looked (steps that read the same state).
    pub fn hold_finds(&self, n: usize) {
        *self.find_hold.lock().unwrap() = (n, 0);
    }
    /// The next `n` sends reach the "agent" but their answers are lost.
    pub fn lose_next_answers(&self, n: u32) {
        *self.lose_answers.lock().unwrap() = n;
    }
    /// Commands sent to `instance_id`.
    pub fn sent_to(&self, instance_id: &str) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.instance_id == instance_id)
            .count()
    }
    pub fn sent(&self) -> Vec<BootstrapCommand> {
        self.sent.lock().unwrap().clone()
    }
    pub fn set_not_ready(&self, v: bool) {
        *self.not_ready.lock().unwrap() = v;
    }
}

#[async_trait]
impl Commands for MemoryCommands {
    async fn send_bootstrap(&self, cmd: &BootstrapCommand) -> Result<SendOutcome, PortError> {
        if *self.not_ready.lock().unwrap() {
            return Ok(SendOutcome::NotReady);
        }
        if *self.too_late.lock().unwrap() {
            return Ok(SendOutcome::TooLate);
        }
        let yields = *self.send_yields.lock().unwrap();
        for _ in 0..yields {
            super::ledger::yield_now().await;
        }
        {
            let mut throttled = self.throttled.lock().unwrap();
            if *throttled > 0 {
                *throttled -= 1;
                return Err(PortError::Throttled {
                    service: "ssm",
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push(cmd.clone());
        let mut lose = self.lose_answers.lock().unwrap();
        if *lose > 0 {
            *lose -= 1;
            return Err(PortError::unavailable("ssm", "answer lost (fake)"));
        }
        Ok(SendOutcome::Sent {
            command_id: format!("cmd-{}", sent.len()),
        })
    }

    async fn find_bootstrap(
        &self,
        instance_id: &str,
        runner_name: &str,
    ) -> Result<Option<String>, PortError> {
        let found = self
            .sent
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .rfind(|(_, c)| c.instance_id == instance_id && c.runner_name == runner_name)
            .map(|(i, _)| format!("cmd-{}", i + 1));
        let wait_for = {
            let mut hold = self.find_hold.lock().unwrap();
            hold.1 += 1;
            hold.0
        };
        while self.find_hold.lock().unwrap().1 < wait_for {
            super::ledger::yield_now().await;
        }
        Ok(found)
    }
}

/// Delayed bootstrap messages, in order, with their delays.
#[derive(Default)]
pub struct MemoryBootstrapQueue {
    pub scheduled: Mutex<VecDeque<(BootstrapMessage, Duration)>>,
}

impl MemoryBootstrapQueue {
    pub fn take_all(&self) -> Vec<(BootstrapMessage, Duration)> {
        self.scheduled.lock().unwrap().drain(..).collect()
    }
}

#[async_trait]
impl BootstrapQueue for MemoryBootstrapQueue {
    async fn schedule(&self, msg: &BootstrapMessage, delay: Duration) -> Result<(), PortError> {
        self.scheduled
            .lock()
            .unwrap()
            .push_back((msg.clone(), delay));
        Ok(())
    }
}
