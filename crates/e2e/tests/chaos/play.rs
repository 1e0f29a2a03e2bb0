//! The test plays the instances, GitHub and EventBridge, as the runner side
//! behaves (scripts/runner/bootstrap.sh: one run per VM; a second SSM command on
//! the same VM waits for the first run and exits with its exit code):
//!
//! - a bootstrapped runner starts: bootstrap.sh reads and deletes the JIT
//!   parameter, the runner registers, GitHub gives it its job (`in_progress`
//!   through the webhook's ledger). A missing parameter or registration makes
//!   it fail: a `Failed` status for every command on the VM;
//! - one step later the job completes (`completed` webhook) and every runner
//!   command on the VM ends `Success`: the events for the commands the ledger
//!   did not record first (duplicates), then the recorded one; stop-runner must
//!   end the runner (once) and not fail;
//! - every instance a handler terminated gets its `terminated` event (GitHub
//!   sees its runner offline first).
//!
//! Events are delivered until stop-runner succeeds (EventBridge retries, and a
//! throttled call waits as told); webhooks until the ledger takes them.

use super::proxylog::{Cmd, parameter_deletions, send_commands, terminations};
use super::report::Violation;
use super::{DOCUMENT, REPO, World, is_live, tag};
use futures::StreamExt;
use spotrunner_core::job::{JobStateUpdate, ObservedJobStatus};
use spotrunner_core::ports::{JobStateSink, Ledger, PortError, RunnerRecord, tags};
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_testkit::fake_github::FakeJob;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

type Instances = BTreeMap<String, aws_sdk_ec2::types::Instance>;
type Terms = [(u64, String, String)];

#[derive(Debug, Clone)]
enum Stage {
    /// The job runs on it; `commands`: every runner command on its VM, the
    /// recorded one last.
    Running {
        job: u64,
        instance: String,
        commands: Vec<String>,
    },
    Done,
}

#[derive(Default)]
pub struct Play {
    stages: BTreeMap<String, Stage>,
    terminated_sent: BTreeSet<String>,
    pub violations: Vec<Violation>,
    pub started: usize,
    pub completed: usize,
    pub events: usize,
}

/// What one runner's step produced.
struct Outcome {
    runner: String,
    stage: Stage,
    violations: Vec<Violation>,
    events: usize,
}

impl Outcome {
    fn new(runner: &str) -> Self {
        Outcome {
            runner: runner.to_string(),
            stage: Stage::Done,
            violations: Vec::new(),
            events: 0,
        }
    }

    async fn deliver(&mut self, w: &World, event: StopEvent) {
        let (n, v) = deliver(w, &event).await;
        self.events += n;
        self.violations.extend(v);
    }
}

impl Play {
    /// Jobs running on a simulated runner now.
    pub fn running(&self) -> usize {
        self.stages
            .values()
            .filter(|s| matches!(s, Stage::Running { .. }))
            .count()
    }

    /// One step; returns how many things happened.
    pub async fn step(&mut self, w: &World, instances: &[aws_sdk_ec2::types::Instance]) -> usize {
        let records = w.aws.records();
        let cmds = send_commands(&records);
        let terms = terminations(&records);
        let deletions = parameter_deletions(&records);
        let instances: Instances = instances
            .iter()
            .map(|i| (i.instance_id().unwrap_or_default().to_string(), i.clone()))
            .collect();
        let (cmds, terms, deletions, instances) = (&cmds, &terms, &deletions, &instances);

        // EventBridge: every terminated instance reports it, once; GitHub sees
        // its runner go offline.
        let fresh: Vec<String> = terms
            .iter()
            .map(|(_, i, _)| i.clone())
            .filter(|i| self.terminated_sent.insert(i.clone()))
            .collect();
        let mut outcomes: Vec<Outcome> = futures::stream::iter(fresh)
            .map(|instance| async move {
                let mut out = Outcome::new("");
                if let Some(name) = instances
                    .get(&instance)
                    .and_then(|i| tag(i, tags::RUNNER_NAME))
                {
                    w.github.set_runner_status(&name, "offline", false);
                }
                let event = StopEvent::InstanceState {
                    instance_id: instance,
                    state: "terminated".into(),
                };
                out.deliver(w, event).await;
                out
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut done = outcomes.len();
        for o in outcomes.drain(..) {
            self.events += o.events;
            self.violations.extend(o.violations);
        }

        // Jobs started in an earlier step complete.
        let running: Vec<(String, u64, String, Vec<String>)> = self
            .stages
            .iter()
            .filter_map(|(name, s)| match s {
                Stage::Running {
                    job,
                    instance,
                    commands,
                } => Some((name.clone(), *job, instance.clone(), commands.clone())),
                Stage::Done => None,
            })
            .collect();
        let outcomes: Vec<Outcome> = futures::stream::iter(running)
            .map(|(name, job, instance, commands)| async move {
                complete(w, &name, job, &instance, &commands, terms, instances).await
            })
            .buffer_unordered(8)
            .collect()
            .await;
        self.completed += outcomes.len();
        done += outcomes.len();
        self.absorb(outcomes);

        // Runners bootstrapped since the last step start.
        let runners = w.direct.ledger.list_runners().await.expect("list runners");
        let fresh: Vec<RunnerRecord> = runners
            .into_iter()
            .filter(|r| matches!(r.state.as_str(), "bootstrapped" | "tainted"))
            .filter(|r| r.command_id.is_some() && r.instance_id.is_some())
            .filter(|r| !self.stages.contains_key(&r.name))
            .collect();
        let outcomes: Vec<Outcome> = futures::stream::iter(fresh)
            .map(|r| async move { start(w, r, cmds, instances, terms, deletions).await })
            .buffer_unordered(8)
            .collect()
            .await;
        self.started += outcomes.len();
        done += outcomes.len();
        self.absorb(outcomes);
        done
    }

    fn absorb(&mut self, outcomes: Vec<Outcome>) {
        for o in outcomes {
            self.events += o.events;
            self.violations.extend(o.violations);
            self.stages.insert(o.runner, o.stage);
        }
    }
}

fn who_terminated(terms: &Terms, instance: &str) -> Vec<String> {
    terms
        .iter()
        .filter(|(_, i, _)| i == instance)
        .map(|(_, _, f)| f.clone())
        .collect()
}

async fn start(
    w: &World,
    runner: RunnerRecord,
    cmds: &BTreeMap<String, Vec<Cmd>>,
    instances: &Instances,
    terms: &Terms,
    deletions: &BTreeMap<String, Vec<String>>,
) -> Outcome {
    let name = runner.name.as_str();
    let job = runner.job_id;
    let instance = runner.instance_id.clone().unwrap_or_default();
    let recorded = runner.command_id.clone().unwrap_or_default();
    let mut out = Outcome::new(name);
    // Every command on the VM, duplicates first, the recorded one last.
    let mut commands: Vec<String> = cmds
        .get(&instance)
        .into_iter()
        .flatten()
        .map(|c| c.command_id.clone())
        .filter(|c| *c != recorded)
        .collect();
    commands.dedup();
    commands.push(recorded.clone());
    if !instances.get(&instance).is_some_and(is_live) {
        out.violations.push(Violation::new(
            "every job served",
            Some(job),
            format!(
                "runner {name}: instance {instance} gone before the job started \
                 (TerminateInstances from {:?}; ledger says {})",
                who_terminated(terms, &instance),
                runner.state.as_str()
            ),
        ));
        return out;
    }
    let parameter = w
        .direct
        .ssm
        .get_parameter()
        .name(&runner.jit_parameter)
        .send()
        .await
        .is_ok();
    let registration = w.github.runners().into_iter().find(|r| r.name == name);
    if !parameter || registration.is_none() {
        let deleted_by: Vec<String> = runner
            .github_runner_id
            .map(|id| {
                w.gh.records()
                    .into_iter()
                    .filter(|r| r.reached_upstream && r.path.ends_with(&format!("/runners/{id}")))
                    .filter(|r| r.op.starts_with("DELETE "))
                    .map(|r| r.front)
                    .collect()
            })
            .unwrap_or_default();
        let what = match (parameter, registration.is_some()) {
            (false, false) => "JIT parameter and GitHub registration",
            (false, true) => "JIT parameter",
            _ => "GitHub registration",
        };
        out.violations.push(Violation::new(
            "every job served",
            Some(job),
            format!(
                "runner {name} cannot start: {what} missing (parameter deleted by {:?}, \
                 registration {:?} deleted by {deleted_by:?})",
                deletions.get(&runner.jit_parameter),
                runner.github_runner_id
            ),
        ));
        // bootstrap.sh fails; every command on the VM ends with its exit code.
        for c in &commands {
            out.deliver(w, command_event(&instance, c, "Failed")).await;
        }
        return out;
    }
    // bootstrap.sh reads and deletes its parameter; the runner takes the job.
    let _ = w
        .direct
        .ssm
        .delete_parameter()
        .name(&runner.jit_parameter)
        .send()
        .await;
    w.github.set_runner_status(name, "online", true);
    w.github.set_job(
        REPO,
        FakeJob {
            id: job,
            status: "in_progress".into(),
            conclusion: None,
            runner_name: Some(name.to_string()),
        },
    );
    let update = JobStateUpdate {
        job_id: job,
        repository: REPO.into(),
        status: ObservedJobStatus::InProgress,
        runner_name: Some(name.to_string()),
        runner_id: registration.map(|r| r.id),
        conclusion: None,
        at: chrono::Utc::now(),
    };
    out.violations.extend(webhook(w, &update).await);
    out.stage = Stage::Running {
        job,
        instance,
        commands,
    };
    out
}

async fn complete(
    w: &World,
    name: &str,
    job: u64,
    instance: &str,
    commands: &[String],
    terms: &Terms,
    instances: &Instances,
) -> Outcome {
    let mut out = Outcome::new(name);
    let ledger = w.direct.ledger.get_runner(name).await.ok().flatten();
    let released = ledger
        .as_ref()
        .is_some_and(|r| r.state.as_str() == "released");
    if !instances.get(instance).is_some_and(is_live) || released {
        out.violations.push(Violation::new(
            "no job killed",
            Some(job),
            format!(
                "runner {name} ended while its job ran: instance {instance} live={}, \
                 TerminateInstances from {:?}, ledger {:?}",
                instances.get(instance).is_some_and(is_live),
                who_terminated(terms, instance),
                ledger.map(|r| (r.state.as_str(), r.end_reason)),
            ),
        ));
    }
    w.github.set_job(
        REPO,
        FakeJob {
            id: job,
            status: "completed".into(),
            conclusion: Some("success".into()),
            runner_name: Some(name.to_string()),
        },
    );
    w.github.set_runner_status(name, "offline", false);
    let update = JobStateUpdate {
        job_id: job,
        repository: REPO.into(),
        status: ObservedJobStatus::Completed,
        runner_name: Some(name.to_string()),
        runner_id: None,
        conclusion: Some("success".into()),
        at: chrono::Utc::now(),
    };
    out.violations.extend(webhook(w, &update).await);
    for c in commands {
        out.deliver(w, command_event(instance, c, "Success")).await;
    }
    let after = w.direct.ledger.get_runner(name).await.ok().flatten();
    let state = after.as_ref().map(|r| r.state.as_str());
    if state != Some("released") {
        out.violations.push(Violation::new(
            "stop-runner ends the runner",
            Some(job),
            format!("runner {name} is {state:?} after the Success of its commands {commands:?}"),
        ));
    }
    out
}

fn command_event(instance: &str, command: &str, status: &str) -> StopEvent {
    StopEvent::CommandStatus {
        instance_id: instance.to_string(),
        command_id: command.to_string(),
        document: DOCUMENT.to_string(),
        status: status.to_string(),
    }
}

const DELIVERIES: usize = 30;

/// Deliver until stop-runner succeeds (a throttled attempt waits as told);
/// (attempts, a violation if it never did).
async fn deliver(w: &World, event: &StopEvent) -> (usize, Option<Violation>) {
    let json = event.to_eventbridge();
    let mut last = String::new();
    for n in 1..=DELIVERIES {
        let wait = match w.stop.handle(json.clone()).await {
            Ok(_) => return (n, None),
            Err(PortError::Throttled { retry_after, .. }) => {
                last = format!("throttled for {retry_after:?}");
                retry_after.max(Duration::from_millis(100))
            }
            Err(e) => {
                last = e.to_string();
                Duration::from_millis(100)
            }
        };
        tokio::time::sleep(wait).await;
    }
    let v = Violation::new(
        "stop-runner converges",
        None,
        format!("{event:?} failed {DELIVERIES} times; last: {last}"),
    );
    (DELIVERIES, Some(v))
}

/// The webhook records a job state; redelivered until the ledger takes it.
async fn webhook(w: &World, update: &JobStateUpdate) -> Option<Violation> {
    let mut last = String::new();
    for _ in 0..DELIVERIES {
        match w.webhook_ledger.record_job_state(update).await {
            Ok(()) => return None,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(Violation::new(
        "webhook converges",
        Some(update.job_id),
        format!("{:?} never recorded: {last}", update.status),
    ))
}
