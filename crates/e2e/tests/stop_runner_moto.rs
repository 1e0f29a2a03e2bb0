//! stop-runner end to end against moto and the fake GitHub: a queued job goes
//! through create-runner and bootstrap on real adapters, the test injects the
//! event EventBridge would deliver (moto sends none), and the stop-runner Lambda
//! glue ends the runner: instance terminated, JIT parameter deleted, GitHub
//! runner deleted, capacity released, ledger finished. Each event twice changes
//! nothing more. The deployed path, EventBridge → stop-events queue → SQS
//! batches with `ReportBatchItemFailures`, runs on a moto queue with a DLQ: a
//! failed teardown comes back until it succeeds, a malformed body fails alone
//! and ends in the DLQ.

mod common;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use common::*;
use serde_json::Value;
use spotrunner_core::job::{JobStateUpdate, ObservedJobStatus};
use spotrunner_core::ports::{JobState, JobStateSink, Ledger, RunnerState};
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_testkit::fake_github::{Failure, endpoint};
use std::collections::BTreeSet;

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
    launched(w, job_id, started).await
}

/// The job's runner, launched already; GitHub gave it the job.
async fn launch_started(w: &World, job_id: u64) -> Launched {
    launched(w, job_id, true).await
}

async fn launched(w: &World, job_id: u64, started: bool) -> Launched {
    let runners = w.ledger.list_runners().await.unwrap();
    let r = runners
        .iter()
        .find(|r| r.job_id == job_id)
        .expect("a runner for the job");
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
    assert!(github_has(w, &r.name));
    Launched {
        runner: r.name.clone(),
        instance: r.instance_id.clone().unwrap(),
        command_id: r.command_id.clone().unwrap(),
        parameter: r.jit_parameter.clone(),
    }
}

fn github_has(w: &World, runner: &str) -> bool {
    w.github.runners().iter().any(|g| g.name == runner)
}

async fn parameter_exists(w: &World, name: &str) -> bool {
    w.ssm.get_parameter().name(name).send().await.is_ok()
}

/// The instance as EC2 describes it.
async fn describe(w: &World, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = w
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0].clone()
}

async fn instance_state(w: &World, id: &str) -> String {
    describe(w, id)
        .await
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

/// How EC2 launched the instance: `spot`, or `on-demand` (no lifecycle).
async fn lifecycle_of(w: &World, id: &str) -> String {
    describe(w, id)
        .await
        .instance_lifecycle()
        .map_or("on-demand".to_string(), |l| l.as_str().to_string())
}

/// Job 42 of run 9, named `build`, in GitHub's attempt `attempt`.
fn named(w: &World, id: u64, attempt: u32) -> spotrunner_core::job::JobMessage {
    spotrunner_core::job::JobMessage {
        run_attempt: attempt,
        job_name: Some("build".into()),
        ..w.job(id, "cpu")
    }
}

#[tokio::test]
async fn a_spot_interruption_re_runs_the_job_once_and_the_re_run_launches_on_demand() {
    use spotrunner_testkit::fake_github::{FakeJob, FakeWorkflowJob};
    let w = world(5, None).await;
    w.github.add_workflow_job(
        "octo-org/app",
        FakeWorkflowJob::new(
            9,
            42,
            "queued",
            &["self-hosted", "linux", "x64"],
            chrono::Utc::now(),
        )
        .named("build"),
    );
    w.send(&named(&w, 42, 1).to_json()).await;
    w.settle(1).await;
    let l = launch_started(&w, 42).await;
    assert_eq!(lifecycle_of(&w, &l.instance).await, "spot");
    let warning = StopEvent::SpotInterruption {
        instance_id: l.instance.clone(),
    };
    // The warning (twice): the job is stamped, the runner runs on.
    for _ in 0..2 {
        let out = deliver(&w, &warning).await;
        assert_eq!(out["outcome"], "interrupted", "{out}");
    }
    assert_eq!(instance_state(&w, &l.instance).await, "running");
    // EC2 reclaims the instance: its command fails, the runner ends.
    let out = deliver(&w, &command("Failed")(&l)).await;
    assert_eq!(out["outcome"], "ended", "{out}");
    assert_ended(&w, &l).await;
    let job = w.ledger.get_job(42).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Interrupted);
    assert_eq!(
        w.github.calls(endpoint::RERUN_JOB),
        0,
        "GitHub still runs it"
    );

    // GitHub fails the job; the run completes; the janitor's pass re-runs it.
    w.github.set_job(
        "octo-org/app",
        FakeJob {
            id: 42,
            status: "completed".into(),
            conclusion: Some("failure".into()),
            runner_name: Some(l.runner.clone()),
        },
    );
    for _ in 0..3 {
        w.janitor.run(chrono::Utc::now(), false).await.unwrap();
    }
    assert_eq!(
        w.github.calls(endpoint::RERUN_JOB),
        1,
        "exactly one request"
    );
    let (new_id, attempt) = w.github.rerun_of("octo-org/app", 42).expect("re-run");
    assert_eq!(attempt, 2);
    let job = w.ledger.get_job(42).await.unwrap().unwrap();
    assert!(
        job.rerun.as_deref().unwrap().starts_with("requested"),
        "{job:?}"
    );

    // The re-run's queued delivery (twice) launches one on-demand VM.
    for _ in 0..2 {
        w.send(&named(&w, new_id, 2).to_json()).await;
    }
    w.settle(1).await;
    let r = w
        .ledger
        .list_runners()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.job_id == new_id)
        .expect("a runner for the re-run");
    let instance = r.instance_id.unwrap();
    assert_eq!(lifecycle_of(&w, &instance).await, "on-demand");
    let live: Vec<_> = w
        .instances(Some("running"))
        .await
        .into_iter()
        .filter(|i| tag(i, "spotrunner:job-id").as_deref() == Some(&new_id.to_string()))
        .collect();
    assert_eq!(live.len(), 1, "one VM for the re-run");
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
    // Exactly one fresh message, after the pool's relaunch delay (1 s in this
    // world): it launches a second runner (next attempt).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
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

/// The stop-events queue as the module deploys it (its DLQ after
/// `max_receives`), on moto; returns (queue URL, DLQ URL).
async fn stop_events_queue(w: &World, max_receives: u32) -> (String, String) {
    let dlq = w
        .sqs
        .create_queue()
        .queue_name("sr-stop-events-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = w
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives});
    let queue = w
        .sqs
        .create_queue()
        .queue_name("sr-stop-events")
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (queue, dlq)
}

/// What EventBridge does: the event JSON as the message body.
async fn put_event(w: &World, queue: &str, body: &str) -> String {
    w.sqs
        .send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap()
}

/// What Lambda's SQS poller does with `ReportBatchItemFailures`: receive a
/// batch, invoke the function with it (as JSON, through `invoke`), delete the
/// records not reported failed, and make the failed ones visible again (the
/// queue's visibility timeout, shortened). Returns (message ids received,
/// message ids reported failed).
async fn poll(w: &World, queue: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let msgs = w
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let mut event = sqs_event(&msgs, "sr-stop-events");
    for (record, m) in event.records.iter_mut().zip(&msgs) {
        record.event_source = Some("aws:sqs".into());
        if let Some(n) = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        {
            record
                .attributes
                .insert("ApproximateReceiveCount".into(), n.clone());
        }
    }
    let answer = w
        .stop
        .invoke(serde_json::to_value(&event).unwrap())
        .await
        .expect("an SQS batch never fails as a whole");
    let failed: BTreeSet<String> = answer["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect();
    let mut received = BTreeSet::new();
    for m in &msgs {
        let id = m.message_id().unwrap().to_string();
        let receipt = m.receipt_handle().unwrap();
        if failed.contains(&id) {
            w.sqs
                .change_message_visibility()
                .queue_url(queue)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        } else {
            w.sqs
                .delete_message()
                .queue_url(queue)
                .receipt_handle(receipt)
                .send()
                .await
                .unwrap();
        }
        received.insert(id);
    }
    (received, failed)
}

#[tokio::test]
async fn an_sqs_batch_reports_exactly_the_failed_and_the_malformed_events() {
    let w = world(5, None).await;
    let failing = launch(&w, 60, true).await;
    let ending = launch(&w, 61, true).await;
    let (queue, dlq) = stop_events_queue(&w, 3).await;

    // Three queued events, in this order: a teardown GitHub fails (503 on the
    // runner's deregistration), one that succeeds, a body that is no event.
    let success = |l: &Launched| command("Success")(l).to_eventbridge().to_string();
    let a = put_event(&w, &queue, &success(&failing)).await;
    let b = put_event(&w, &queue, &success(&ending)).await;
    let m = put_event(
        &w,
        &queue,
        "{\"detail-type\": \"EC2 Spot Instance Interruption Warning\", \"detail\": {}",
    )
    .await;
    w.github.fail_next(
        endpoint::DELETE_RUNNER,
        1,
        Failure::new(503, "Service Unavailable"),
    );

    let (received, failed) = poll(&w, &queue).await;
    assert_eq!(received, BTreeSet::from([a.clone(), b.clone(), m.clone()]));
    assert_eq!(
        failed,
        BTreeSet::from([a.clone(), m.clone()]),
        "the failed teardown and the malformed body, nothing else"
    );

    // The good one is torn down; the failed one is half done and still held.
    assert!(!parameter_exists(&w, &ending.parameter).await);
    assert!(!github_has(&w, &ending.runner));
    let r = w.ledger.get_runner(&ending.runner).await.unwrap().unwrap();
    assert_eq!(r.state, RunnerState::Released);
    assert_eq!(
        w.ledger.get_job(61).await.unwrap().unwrap().state,
        JobState::Completed
    );
    let r = w.ledger.get_runner(&failing.runner).await.unwrap().unwrap();
    assert_ne!(r.state, RunnerState::Released, "capacity is released last");
    assert!(github_has(&w, &failing.runner));

    // Delivered again, the failed teardown succeeds; the malformed body fails again.
    let (received, failed) = poll(&w, &queue).await;
    assert_eq!(received, BTreeSet::from([a.clone(), m.clone()]));
    assert_eq!(failed, BTreeSet::from([m.clone()]));
    assert_ended(&w, &failing).await;
    assert_eq!(
        w.ledger.get_job(60).await.unwrap().unwrap().state,
        JobState::Completed
    );

    // The malformed body fails on every receive until the queue moves it to its DLQ.
    let (_, failed) = poll(&w, &queue).await;
    assert_eq!(failed, BTreeSet::from([m.clone()]));
    let (received, _) = poll(&w, &queue).await;
    assert!(received.is_empty(), "{received:?}");
    let dead = w
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let dead: Vec<&str> = dead.iter().filter_map(|d| d.message_id()).collect();
    assert_eq!(
        dead,
        vec![m.as_str()],
        "only the malformed body is dead-lettered"
    );
}

#[tokio::test]
async fn a_direct_sqs_batch_and_an_eventbridge_event_reach_the_same_handler() {
    // `handle_sqs` with the SQS event type (what `invoke` builds from JSON);
    // an empty body fails alone.
    let w = world(5, None).await;
    let l = launch(&w, 62, true).await;
    let mut ok = aws_lambda_events::event::sqs::SqsMessage::default();
    ok.message_id = Some("ok".into());
    ok.body = Some(command("Success")(&l).to_eventbridge().to_string());
    let mut empty = aws_lambda_events::event::sqs::SqsMessage::default();
    empty.message_id = Some("empty".into());
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![ok, empty];
    let r = w.stop.handle_sqs(event).await;
    let failed: Vec<&str> = r
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["empty"]);
    assert_ended(&w, &l).await;
    // The same event delivered directly (not through SQS) is already done.
    let again = deliver(&w, &command("Success")(&l)).await;
    assert_eq!(again["outcome"], "already_ended", "{again}");
}
