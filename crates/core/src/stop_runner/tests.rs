use super::*;
use crate::config::Config;
use crate::create_runner::{CreateRunner, JobOutcome, Settings};
use crate::fakes::{
    MemoryBootstrapQueue, MemoryCommands, MemoryCompute, MemoryGitHub, MemoryLedger,
    MemoryParameters, MemoryQueue,
};
use crate::job::{JOB_MESSAGE_VERSION, JobMessage, JobStateUpdate, ObservedJobStatus};
use crate::ports::{CapacityUse, Compute, JobState, JobStateSink, Ledger, RunnerState};
use chrono::Utc;
use std::sync::Arc;

pub(super) struct World {
    pub(super) ledger: Arc<MemoryLedger>,
    pub(super) github: Arc<MemoryGitHub>,
    pub(super) compute: Arc<MemoryCompute>,
    pub(super) params: Arc<MemoryParameters>,
    pub(super) bootstrap: Arc<MemoryBootstrapQueue>,
    pub(super) jobs: Arc<MemoryQueue>,
    pub(super) cr: CreateRunner,
    pub(super) stop: StopRunner,
}

fn world() -> World {
    world_with("")
}

/// A world whose cpu pool has `extra` TOML lines (e.g. a `[pools.relaunch]` table).
pub(super) fn world_with(extra: &str) -> World {
    let config = Arc::new(
        Config::from_toml(&format!(
            r#"
deployment = "sr"
max_total_weight = 100
[github]
auth = {{ type = "pat", token = "env:T" }}
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux"]
launch_template = "sr-cpu"
instance_types = ["m7i.large"]
max_runners = 5
{extra}
"#,
        ))
        .unwrap(),
    );
    let ledger = Arc::new(MemoryLedger::default());
    let github = Arc::new(MemoryGitHub::default());
    let compute = Arc::new(MemoryCompute::default());
    let params = Arc::new(MemoryParameters::default());
    let bootstrap = Arc::new(MemoryBootstrapQueue::default());
    let jobs = Arc::new(MemoryQueue::default());
    let cr = CreateRunner {
        config: config.clone(),
        settings: Settings::for_deployment("sr"),
        ledger: ledger.clone(),
        github: github.clone(),
        compute: compute.clone(),
        parameters: params.clone(),
        commands: Arc::new(MemoryCommands::default()),
        bootstrap_queue: bootstrap.clone(),
        jobs_queue: jobs.clone(),
    };
    let stop = StopRunner {
        config,
        document: "sr-runner".into(),
        ledger: ledger.clone(),
        github: github.clone(),
        compute: compute.clone(),
        parameters: params.clone(),
        jobs_queue: jobs.clone(),
    };
    World {
        ledger,
        github,
        compute,
        params,
        bootstrap,
        jobs,
        cr,
        stop,
    }
}

pub(super) fn job(id: u64) -> JobMessage {
    JobMessage {
        version: JOB_MESSAGE_VERSION,
        job_id: id,
        run_id: 1,
        run_attempt: 1,
        repository: "o/r".into(),
        owner: "o".into(),
        owner_type: "Organization".into(),
        installation_id: Some(1),
        labels: vec!["self-hosted".into(), "linux".into()],
        pool: "cpu".into(),
        delivery_id: None,
        received_at: Utc::now(),
        queued_at: Some(Utc::now()),
        launch_attempt: 0,
        deferrals: 0,
        job_name: None,
    }
}

impl World {
    /// Launch and bootstrap a runner for job `id`; returns (runner, instance).
    pub(super) async fn running(&self, id: u64) -> (String, String) {
        let JobOutcome::Launched {
            runner_name,
            instance_id,
        } = self.cr.handle_job(&job(id), Utc::now()).await
        else {
            panic!("not launched")
        };
        for (msg, _) in self.bootstrap.take_all() {
            self.cr.handle_bootstrap(&msg, Utc::now()).await;
        }
        (runner_name, instance_id)
    }

    pub(super) async fn in_progress(&self, id: u64, runner: &str) {
        self.ledger
            .record_job_state(&JobStateUpdate {
                job_id: id,
                repository: "o/r".into(),
                status: ObservedJobStatus::InProgress,
                runner_name: Some(runner.into()),
                runner_id: None,
                conclusion: None,
                at: Utc::now(),
            })
            .await
            .unwrap();
    }

    pub(super) async fn job_state(&self, id: u64) -> JobState {
        self.ledger.get_job(id).await.unwrap().unwrap().state
    }

    /// Everything the runner held is gone.
    pub(super) async fn assert_cleaned(&self, runner: &str, instance: &str) {
        let r = self.ledger.get_runner(runner).await.unwrap().unwrap();
        assert_eq!(r.state, RunnerState::Released);
        assert!(
            self.compute
                .live()
                .iter()
                .all(|i| i.instance_id != instance)
        );
        assert!(self.params.names().is_empty(), "parameter left behind");
        assert!(
            self.github.runners().iter().all(|g| g.name != runner),
            "GitHub runner left behind"
        );
        let cap = self.ledger.capacity().await.unwrap();
        assert_eq!(cap.pools.get("cpu").copied().unwrap_or(0), 0);
        assert_eq!(cap.weight, 0);
    }
}

pub(super) fn command(instance: &str, status: &str) -> StopEvent {
    StopEvent::CommandStatus {
        instance_id: instance.into(),
        command_id: "cmd-1".into(),
        document: "arn:aws:ssm:us-east-1:1:document/sr-runner".into(),
        status: status.into(),
    }
}

#[tokio::test]
async fn terminal_command_statuses_end_the_runner_and_finish_the_job() {
    for status in ["Success", "Failed", "TimedOut", "Cancelled"] {
        let w = world();
        let (runner, instance) = w.running(1).await;
        w.in_progress(1, &runner).await;
        let out = w
            .stop
            .handle(&command(&instance, status), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            out,
            StopOutcome::Ended {
                runner_name: runner.clone(),
                job_id: 1,
                job_state: Some(JobState::Completed)
            },
            "{status}"
        );
        w.assert_cleaned(&runner, &instance).await;
        assert_eq!(w.job_state(1).await, JobState::Completed);
        let end = w.ledger.get_runner(&runner).await.unwrap().unwrap();
        assert_eq!(
            end.end_reason.as_deref(),
            Some(format!("runner command {status}").as_str())
        );
    }
}

#[tokio::test]
async fn every_event_twice_changes_nothing_more() {
    let events = |i: &str| {
        vec![
            command(i, "Success"),
            StopEvent::SpotInterruption {
                instance_id: i.into(),
            },
            StopEvent::InstanceState {
                instance_id: i.into(),
                state: "terminated".into(),
            },
        ]
    };
    // A warning does not end a runner that has its job (see spot_tests).
    for n in [0, 2] {
        let w = world();
        let (runner, instance) = w.running(1).await;
        w.in_progress(1, &runner).await;
        let event = events(&instance)[n].clone();
        if n == 2 {
            // EC2 says the instance is terminated: it really is.
            w.compute
                .terminate(std::slice::from_ref(&instance))
                .await
                .unwrap();
        }
        assert!(matches!(
            w.stop.handle(&event, Utc::now()).await.unwrap(),
            StopOutcome::Ended { .. }
        ));
        let state = w.job_state(1).await;
        let deletes = w.github.state.lock().unwrap().delete_calls;
        let before = w.ledger.get_runner(&runner).await.unwrap();
        // The same event again, then every other event for the runner.
        for again in std::iter::once(event).chain(events(&instance)) {
            assert_eq!(
                w.stop.handle(&again, Utc::now()).await.unwrap(),
                StopOutcome::AlreadyEnded {
                    runner_name: runner.clone()
                }
            );
        }
        assert_eq!(w.job_state(1).await, state);
        assert_eq!(w.ledger.get_runner(&runner).await.unwrap(), before);
        assert_eq!(w.github.state.lock().unwrap().delete_calls, deletes);
        assert!(w.jobs.sent().is_empty(), "nothing requeued");
        w.assert_cleaned(&runner, &instance).await;
    }
}

#[tokio::test]
async fn spot_interruption_of_a_running_job_records_it_interrupted() {
    let w = world();
    let (runner, instance) = w.running(7).await;
    w.in_progress(7, &runner).await;
    let out = w
        .stop
        .handle(
            &StopEvent::SpotInterruption {
                instance_id: instance.clone(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        StopOutcome::Interrupted {
            runner_name: runner.clone(),
            job_id: 7
        }
    );
    // The runner runs on until EC2 reclaims it; that ends it.
    let live = w.ledger.get_runner(&runner).await.unwrap().unwrap();
    assert_ne!(live.state, RunnerState::Released);
    let out = w
        .stop
        .handle(&command(&instance, "Failed"), Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        out,
        StopOutcome::Ended {
            job_state: Some(JobState::Interrupted),
            ..
        }
    ));
    let job = w.ledger.get_job(7).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Interrupted);
    // What a re-run needs: the message, the runner that ran it.
    assert_eq!(job.message.job_id, 7);
    assert_eq!(job.taken_by.as_deref(), Some(runner.as_str()));
    w.assert_cleaned(&runner, &instance).await;
}

#[tokio::test]
async fn a_runner_that_ended_before_its_job_started_puts_the_job_back() {
    let w = world();
    let (runner, instance) = w.running(3).await;
    w.github.set_job(3, "queued");
    let out = w
        .stop
        .handle(
            &StopEvent::SpotInterruption {
                instance_id: instance.clone(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        out,
        StopOutcome::Ended {
            job_state: Some(JobState::Requeued),
            ..
        }
    ));
    let sent = w.jobs.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].job_id, sent[0].launch_attempt), (3, 1));
    w.assert_cleaned(&runner, &instance).await;
    // The requeued job launches a second runner under the next attempt's name.
    let JobOutcome::Launched { runner_name, .. } = w.cr.handle_job(&sent[0], Utc::now()).await
    else {
        panic!("requeued job not launched")
    };
    assert_ne!(runner_name, runner);
}

#[tokio::test]
async fn a_runner_that_ended_after_github_completed_the_job_marks_it_completed() {
    let w = world();
    let (_, instance) = w.running(4).await;
    w.github.set_job(4, "completed");
    w.stop
        .handle(&command(&instance, "Success"), Utc::now())
        .await
        .unwrap();
    assert_eq!(w.job_state(4).await, JobState::Completed);
    assert!(w.jobs.sent().is_empty());
}

#[tokio::test]
async fn events_of_other_documents_states_and_instances_are_ignored() {
    let w = world();
    let (runner, instance) = w.running(1).await;
    let ignored = [
        StopEvent::CommandStatus {
            instance_id: instance.clone(),
            command_id: "c".into(),
            document: "AWS-RunShellScript".into(),
            status: "Success".into(),
        },
        command(&instance, "InProgress"),
        StopEvent::InstanceState {
            instance_id: instance.clone(),
            state: "running".into(),
        },
        command("i-not-ours", "Success"),
    ];
    for e in ignored {
        assert!(
            matches!(
                w.stop.handle(&e, Utc::now()).await.unwrap(),
                StopOutcome::Ignored { .. }
            ),
            "{e:?}"
        );
    }
    let r = w.ledger.get_runner(&runner).await.unwrap().unwrap();
    assert_eq!(r.state, RunnerState::Bootstrapped);
    assert_eq!(w.compute.live().len(), 1);
    assert_eq!(
        w.ledger.capacity().await.unwrap(),
        CapacityUse {
            pools: [("cpu".to_string(), 1)].into(),
            weight: 1
        }
    );
}

#[tokio::test]
async fn a_failed_step_fails_the_event_and_the_retry_finishes_the_job() {
    let w = world();
    let (runner, instance) = w.running(5).await;
    w.in_progress(5, &runner).await;
    w.ledger.fail_next("release");
    assert!(
        w.stop
            .handle(&command(&instance, "Success"), Utc::now())
            .await
            .is_err()
    );
    assert_ne!(
        w.ledger.get_runner(&runner).await.unwrap().unwrap().state,
        RunnerState::Released
    );
    assert!(matches!(
        w.stop
            .handle(&command(&instance, "Success"), Utc::now())
            .await
            .unwrap(),
        StopOutcome::Ended { .. }
    ));
    w.assert_cleaned(&runner, &instance).await;
}

#[tokio::test]
async fn only_the_recorded_command_ends_the_runner() {
    let w = world();
    let (runner, instance) = w.running(21).await;
    w.in_progress(21, &runner).await;
    // A second SendCommand (or SSM running the command twice) ends first.
    let mut stray = command(&instance, "Failed");
    if let StopEvent::CommandStatus { command_id, .. } = &mut stray {
        *command_id = "cmd-999".into();
    }
    let out = w.stop.handle(&stray, Utc::now()).await.unwrap();
    assert!(
        matches!(&out, StopOutcome::Ignored { reason } if reason.contains("recorded")),
        "{out:?}"
    );
    let r = w.ledger.get_runner(&runner).await.unwrap().unwrap();
    assert_eq!(
        r.state,
        RunnerState::Bootstrapped,
        "the job keeps its runner"
    );
    assert!(w.compute.live().iter().any(|i| i.instance_id == instance));
    assert_eq!(w.job_state(21).await, JobState::Running);
    // The recorded command's end does end it.
    let out = w
        .stop
        .handle(&command(&instance, "Success"), Utc::now())
        .await
        .unwrap();
    assert!(matches!(out, StopOutcome::Ended { .. }), "{out:?}");
    w.assert_cleaned(&runner, &instance).await;
}

/// Issue 10, defect 8: a runner that ends before its job starts (a broken
/// runner command) must not be relaunched without bound.
#[tokio::test]
async fn a_job_whose_runners_keep_failing_is_launched_at_most_max_launches_times() {
    let w = world_with("[pools.relaunch]\nmax_launches = 3\ndelay_secs = 5\ncircuit_failures = 0");
    w.github.set_job(31, "queued");
    let mut msg = job(31);
    let mut launches = 0;
    for _ in 0..10 {
        let JobOutcome::Launched { instance_id, .. } = w.cr.handle_job(&msg, Utc::now()).await
        else {
            break;
        };
        launches += 1;
        for (b, _) in w.bootstrap.take_all() {
            w.cr.handle_bootstrap(&b, Utc::now()).await;
        }
        let failed = StopEvent::CommandStatus {
            instance_id,
            command_id: format!("cmd-{launches}"),
            document: "sr-runner".into(),
            status: "Failed".into(),
        };
        w.stop.handle(&failed, Utc::now()).await.unwrap();
        match w.jobs.sent().last() {
            Some(next) if next.launch_attempt == launches => msg = next.clone(),
            _ => break,
        }
    }
    assert_eq!(launches, 3);
    let rec = w.ledger.get_job(31).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Failed);
    assert!(
        rec.end_reason
            .as_deref()
            .is_some_and(|r| r.contains("max_launches")),
        "{rec:?}"
    );
    let delays = w.jobs.delays();
    assert_eq!(
        delays,
        vec![
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(10)
        ],
        "growing delays between relaunches"
    );
    // A late duplicate of the last message launches nothing.
    assert!(matches!(
        w.cr.handle_job(&msg, Utc::now()).await,
        JobOutcome::Duplicate
    ));
    assert!(w.compute.live().is_empty());
}

#[tokio::test]
async fn repeated_start_failures_pause_the_pool_until_a_probe_succeeds() {
    let w = world_with(
        "[pools.relaunch]\nmax_launches = 1\ncircuit_failures = 2\ncircuit_cooldown_secs = 60",
    );
    for id in [41, 42] {
        w.github.set_job(id, "queued");
        let (_, instance) = w.running(id).await;
        let event = StopEvent::InstanceState {
            instance_id: instance,
            state: "shutting-down".into(),
        };
        w.stop.handle(&event, Utc::now()).await.unwrap();
        assert_eq!(w.job_state(id).await, JobState::Failed);
    }
    let health = w.ledger.pool_health("cpu").await.unwrap();
    assert!(
        matches!(
            health.state(Utc::now()),
            crate::circuit::CircuitState::Open { .. }
        ),
        "{health:?}"
    );
    // While open, a new job waits unclaimed; nothing launches.
    let out = w.cr.handle_job(&job(43), Utc::now()).await;
    assert!(
        matches!(&out, JobOutcome::Deferred { reason, .. } if reason.contains("paused")),
        "{out:?}"
    );
    assert_eq!(w.ledger.get_job(43).await.unwrap(), None);
    // After the cool-down one probe launches; a second job waits for it.
    let later = Utc::now() + chrono::Duration::seconds(61);
    let probe = w.cr.handle_job(&job(43), later).await;
    assert!(matches!(probe, JobOutcome::Launched { .. }), "{probe:?}");
    let out = w.cr.handle_job(&job(44), later).await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    // The probe's runner runs its job: the pool is healthy again.
    for (b, _) in w.bootstrap.take_all() {
        w.cr.handle_bootstrap(&b, later).await;
    }
    let JobOutcome::Launched {
        runner_name,
        instance_id,
    } = probe
    else {
        unreachable!()
    };
    w.in_progress(43, &runner_name).await;
    let done = StopEvent::CommandStatus {
        instance_id,
        command_id: "cmd-3".into(),
        document: "sr-runner".into(),
        status: "Success".into(),
    };
    w.stop.handle(&done, later).await.unwrap();
    assert_eq!(
        w.ledger.pool_health("cpu").await.unwrap().state(later),
        crate::circuit::CircuitState::Closed
    );
    let out = w.cr.handle_job(&job(44), later).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
}

/// Issue 10, defect 6: a relaunch sends the job's message first and marks the
/// job `requeued` after; a failed send leaves the job as it was, so the retried
/// event relaunches it (it used to be marked first and then lost).
#[tokio::test]
async fn a_failed_requeue_send_changes_nothing_and_the_retry_relaunches() {
    let w = world();
    let (runner, instance) = w.running(51).await;
    w.github.set_job(51, "queued");
    let event = StopEvent::SpotInterruption {
        instance_id: instance.clone(),
    };
    w.jobs.set_failing(true);
    assert!(w.stop.handle(&event, Utc::now()).await.is_err());
    assert_eq!(
        w.job_state(51).await,
        JobState::Launched,
        "not marked before the send"
    );
    assert!(w.jobs.sent().is_empty());
    w.jobs.set_failing(false);
    let out = w.stop.handle(&event, Utc::now()).await.unwrap();
    assert!(
        matches!(
            out,
            StopOutcome::Ended {
                job_state: Some(JobState::Requeued),
                ..
            }
        ),
        "{out:?}"
    );
    let sent = w.jobs.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].job_id, sent[0].launch_attempt), (51, 1));
    assert_eq!(w.job_state(51).await, JobState::Requeued);
    w.assert_cleaned(&runner, &instance).await;
}

/// The mark after the send is skipped when the message was claimed first.
#[tokio::test]
async fn a_relaunch_message_claimed_before_the_mark_keeps_its_claim() {
    let w = world();
    w.running(52).await;
    w.github.set_job(52, "queued");
    let job = w.ledger.get_job(52).await.unwrap().unwrap();
    // The relaunch message is claimed (attempt 1) while the job still says
    // `launched` at attempt 0: the claim rule lets the higher attempt take it.
    let mut next = job.message.clone();
    next.launch_attempt = 1;
    let claimed = w
        .ledger
        .claim_job(&next, Utc::now(), chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert!(
        matches!(claimed, crate::ports::ClaimOutcome::Claimed(_)),
        "{claimed:?}"
    );
    // The late mark of the old attempt changes nothing.
    crate::teardown::send_requeue(
        w.ledger.as_ref(),
        w.jobs.as_ref(),
        &job,
        std::time::Duration::ZERO,
        Utc::now(),
    )
    .await
    .unwrap();
    let rec = w.ledger.get_job(52).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.launch_attempt), (JobState::Claimed, 1));
    assert!(rec.lease_until.is_some(), "the claim keeps its lease");
}
