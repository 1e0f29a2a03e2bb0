//! stop-runner end to end against moto and the fake GitHub: a queued job goes
//! through create-runner and bootstrap on real adapters, the test injects the
//! event EventBridge would deliver (moto sends none), and the stop-runner Lambda
//! glue ends the runner: instance terminated, JIT parameter deleted, GitHub
//! runner deleted, capacity released, ledger finished. Each event twice changes
//! nothing more.

mod common;

use common::*;
use serde_json::Value;
use spotrunner_core::job::{JobStateUpdate, ObservedJobStatus};
use spotrunner_core::ports::{JobState, JobStateSink, Ledger, RunnerState};
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_testkit::fake_github::endpoint;

/// A job launched and bootstrapped on real adapters; GitHub gave it to its runner.
struct Launched {
    runner: String,
    instance: String,
    command_id: String,
    parameter: String,
}

async fn launch(w: &World, job_id: u64, started: bool) -> Launched {
    w.send(&w.job(job_id, "cpu").to_json()).await;
    w.settle(1).await;
    let runners = w.ledger.list_runners().await.unwrap();
    assert_eq!(runners.len(), 1);
    let r = &runners[0];
    assert_eq!(r.state, RunnerState::Bootstrapped, "bootstrapped");
    if started {
        w.ledger
            .record_job_state(&JobStateUpdate {
                job_id,
                repository: "octo-org/app".into(),
                status: ObservedJobStatus::InProgress,
                runner_name: Some(r.name.clone()),
                runner_id: r.github_runner_id,
                conclusion: None,
                at: chrono::Utc::now(),
            })
            .await
            .unwrap();
    }
    assert!(parameter_exists(w, &r.jit_parameter).await);
    assert_eq!(w.github.runners().len(), 1);
    Launched {
        runner: r.name.clone(),
        instance: r.instance_id.clone().unwrap(),
        command_id: r.command_id.clone().unwrap(),
        parameter: r.jit_parameter.clone(),
    }
}

async fn parameter_exists(w: &World, name: &str) -> bool {
    w.ssm.get_parameter().name(name).send().await.is_ok()
}

async fn instance_state(w: &World, id: &str) -> String {
    let out = w
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap()
}

async fn deliver(w: &World, event: &StopEvent) -> Value {
    w.stop
        .handle(event.to_eventbridge())
        .await
        .expect("handled")
}

/// Everything the runner held is given back.
async fn assert_ended(w: &World, l: &Launched) {
    let state = instance_state(w, &l.instance).await;
    assert!(
        state == "terminated" || state == "shutting-down",
        "instance {state}"
    );
    assert!(
        !parameter_exists(w, &l.parameter).await,
        "parameter deleted"
    );
    assert!(w.github.runners().is_empty(), "GitHub runner deleted");
    let cap = w.ledger.capacity().await.unwrap();
    assert_eq!(cap.pools.get("cpu").copied().unwrap_or(0), 0, "{cap:?}");
    assert_eq!(cap.weight, 0);
    let r = w.ledger.get_runner(&l.runner).await.unwrap().unwrap();
    assert_eq!(r.state, RunnerState::Released);
}

/// Deliver `event`, check the end state, deliver it again: nothing more changes.
async fn lifecycle(event: impl Fn(&Launched) -> StopEvent, started: bool, job_state: JobState) {
    let w = world(5, None).await;
    let l = launch(&w, 42, started).await;
    let e = event(&l);
    if matches!(&e, StopEvent::InstanceState { state, .. } if state == "terminated") {
        w.ec2
            .terminate_instances()
            .instance_ids(&l.instance)
            .send()
            .await
            .unwrap();
    }
    let out = deliver(&w, &e).await;
    assert_eq!(out["outcome"], "ended", "{out}");
    assert_eq!(out["job_id"], 42);
    assert_ended(&w, &l).await;
    let job = w.ledger.get_job(42).await.unwrap().unwrap();
    assert_eq!(job.state, job_state);

    let deletes = w.github.calls(endpoint::DELETE_RUNNER);
    let runner = w.ledger.get_runner(&l.runner).await.unwrap();
    let again = deliver(&w, &e).await;
    assert_eq!(again["outcome"], "already_ended", "{again}");
    assert_eq!(w.github.calls(endpoint::DELETE_RUNNER), deletes);
    assert_eq!(w.ledger.get_runner(&l.runner).await.unwrap(), runner);
    assert_eq!(w.ledger.get_job(42).await.unwrap().unwrap(), job);
    assert_ended(&w, &l).await;
}

fn command(status: &'static str) -> impl Fn(&Launched) -> StopEvent {
    move |l| StopEvent::CommandStatus {
        instance_id: l.instance.clone(),
        command_id: l.command_id.clone(),
        document: "sr-runner".into(),
        status: status.into(),
    }
}

#[tokio::test]
async fn ssm_success_ends_the_runner_and_finishes_the_job() {
    lifecycle(command("Success"), true, JobState::Completed).await;
}

#[tokio::test]
async fn ssm_failed_ends_the_runner_and_finishes_the_job() {
    lifecycle(command("Failed"), true, JobState::Completed).await;
}

#[tokio::test]
async fn ssm_timed_out_ends_the_runner_and_finishes_the_job() {
    lifecycle(command("TimedOut"), true, JobState::Completed).await;
}

#[tokio::test]
async fn spot_interruption_records_the_job_interrupted() {
    lifecycle(
        |l| StopEvent::SpotInterruption {
            instance_id: l.instance.clone(),
        },
        true,
        JobState::Interrupted,
    )
    .await;
}

#[tokio::test]
async fn bare_instance_terminated_event_cleans_up() {
    lifecycle(
        |l| StopEvent::InstanceState {
            instance_id: l.instance.clone(),
            state: "terminated".into(),
        },
        true,
        JobState::Completed,
    )
    .await;
}

#[tokio::test]
async fn a_runner_lost_before_its_job_started_puts_the_job_back_once() {
    let w = world(5, None).await;
    let l = launch(&w, 43, false).await;
    w.github.add_job("octo-org/app", 43, "queued");
    let out = deliver(
        &w,
        &StopEvent::SpotInterruption {
            instance_id: l.instance.clone(),
        },
    )
    .await;
    assert_eq!(out["job_state"], "requeued", "{out}");
    assert_ended(&w, &l).await;
    // The state-change events that follow change nothing more.
    for state in ["shutting-down", "terminated"] {
        let again = deliver(
            &w,
            &StopEvent::InstanceState {
                instance_id: l.instance.clone(),
                state: state.into(),
            },
        )
        .await;
        assert_eq!(again["outcome"], "already_ended");
    }
    // Exactly one fresh message: it launches a second runner (next attempt).
    w.settle(1).await;
    let live = w.instances(Some("running")).await;
    assert_eq!(live.len(), 1);
    assert_eq!(
        tag(&live[0], "spotrunner:runner-name").unwrap(),
        "sr_cpu-43-1"
    );
}

#[tokio::test]
async fn events_for_other_documents_and_unknown_instances_change_nothing() {
    let w = world(5, None).await;
    let l = launch(&w, 44, true).await;
    for e in [
        StopEvent::CommandStatus {
            instance_id: l.instance.clone(),
            command_id: l.command_id.clone(),
            document: "AWS-RunShellScript".into(),
            status: "Success".into(),
        },
        StopEvent::CommandStatus {
            instance_id: "i-0123456789abcdef0".into(),
            command_id: "x".into(),
            document: "sr-runner".into(),
            status: "Success".into(),
        },
    ] {
        assert_eq!(deliver(&w, &e).await["outcome"], "ignored");
    }
    let not_an_event = serde_json::json!({"detail-type": "Scheduled Event", "detail": {}});
    assert_eq!(
        w.stop.handle(not_an_event).await.unwrap()["outcome"],
        "ignored"
    );
    assert_eq!(instance_state(&w, &l.instance).await, "running");
    assert!(parameter_exists(&w, &l.parameter).await);
    assert_eq!(w.github.runners().len(), 1);
}
