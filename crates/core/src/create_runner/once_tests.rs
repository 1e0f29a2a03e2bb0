//! The bootstrap step sends the runner command once (issue 10, defect 2):
//! SendCommand is not idempotent, SQS delivers the bootstrap message twice, and
//! an answer can be lost after SSM accepted the command.

use super::tests::{World, config, job, world};
use super::*;
use crate::ports::{BootstrapMessage, Ledger, RunnerChange, RunnerRecord, RunnerState};
use chrono::{Duration as CDuration, Utc};

/// The ledger's record of `msg`'s runner.
async fn runner(w: &World, msg: &BootstrapMessage) -> RunnerRecord {
    w.ledger
        .get_runner(&msg.runner_name)
        .await
        .unwrap()
        .unwrap()
}

/// Launch job `id` on the cpu pool; returns the world's bootstrap message.
async fn launched(w: &World, id: u64) -> BootstrapMessage {
    let out = w.cr.handle_job(&job(id, "cpu"), Utc::now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    w.bootstrap.take_all().remove(0).0
}

#[tokio::test]
async fn a_duplicate_bootstrap_message_sends_the_runner_command_once() {
    let w = world(config(""));
    let msg = launched(&w, 1).await;
    let now = Utc::now();
    let (a, b) = tokio::join!(
        w.cr.handle_bootstrap(&msg, now),
        w.cr.handle_bootstrap(&msg, now)
    );
    let third = w.cr.handle_bootstrap(&msg, now).await;
    let launched = [&a, &b, &third]
        .iter()
        .filter(|o| matches!(o, JobOutcome::Launched { .. }))
        .count();
    assert_eq!(launched, 1, "{a:?} {b:?} {third:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
    let r = runner(&w, &msg).await;
    assert_eq!(r.state, RunnerState::Bootstrapped);
    assert_eq!(r.command_id.as_deref(), Some("cmd-1"));
}

#[tokio::test]
async fn a_lost_send_answer_is_adopted_not_sent_again() {
    let w = world(config(""));
    let msg = launched(&w, 2).await;
    w.commands.lose_next_answers(1);
    let now = Utc::now();
    let out = w.cr.handle_bootstrap(&msg, now).await;
    assert!(out.keeps_message(), "retried: {out:?}");
    let r = runner(&w, &msg).await;
    assert_eq!(r.state, RunnerState::Bootstrapping);
    // The redelivered message finds the command SSM accepted and records it.
    let out =
        w.cr.handle_bootstrap(&msg, now + CDuration::seconds(10))
            .await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1, "never sent twice");
    let r = runner(&w, &msg).await;
    assert_eq!(r.state, RunnerState::Bootstrapped);
    assert_eq!(r.command_id.as_deref(), Some("cmd-1"));
}

#[tokio::test]
async fn a_step_that_died_before_sending_is_finished_after_the_grace() {
    let w = world(config(""));
    let msg = launched(&w, 3).await;
    let t0 = Utc::now();
    // A step won the transition and crashed before SendCommand.
    let change = RunnerChange {
        state: Some(RunnerState::Bootstrapping),
        ..RunnerChange::default()
    };
    assert!(
        w.ledger
            .transition_runner(&msg.runner_name, &[RunnerState::Launched], &change, t0)
            .await
            .unwrap()
    );
    let out =
        w.cr.handle_bootstrap(&msg, t0 + CDuration::seconds(5))
            .await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    assert_eq!(
        w.commands.sent_to(&msg.instance_id),
        0,
        "SSM may still list it"
    );
    // The grace runs from that first sight (t0 + 5 s), not from the record.
    let (next, delay) = w.bootstrap.take_all().remove(0);
    assert_eq!(delay, std::time::Duration::from_secs(10));
    assert_eq!(next.resend_after, Some(t0 + CDuration::seconds(15)));
    let early =
        w.cr.handle_bootstrap(&next, t0 + CDuration::seconds(14))
            .await;
    assert!(matches!(early, JobOutcome::Deferred { .. }), "{early:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 0);
    let (next, _) = w.bootstrap.take_all().remove(0);
    let out =
        w.cr.handle_bootstrap(&next, t0 + CDuration::seconds(15))
            .await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
}

#[tokio::test]
async fn an_agent_not_yet_online_hands_the_runner_back_for_the_next_step() {
    let w = world(config(""));
    let msg = launched(&w, 4).await;
    w.commands.set_not_ready(true);
    let out = w.cr.handle_bootstrap(&msg, Utc::now()).await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    let r = runner(&w, &msg).await;
    assert_eq!(r.state, RunnerState::Launched, "nothing was sent");
    w.commands.set_not_ready(false);
    let (next, _) = w.bootstrap.take_all().remove(0);
    let out = w.cr.handle_bootstrap(&next, Utc::now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
}

#[tokio::test]
async fn a_bootstrap_message_for_another_instance_is_dropped() {
    let w = world(config(""));
    let mut msg = launched(&w, 5).await;
    msg.instance_id = "i-someone-else".into();
    let out = w.cr.handle_bootstrap(&msg, Utc::now()).await;
    assert!(matches!(out, JobOutcome::Dropped { .. }), "{out:?}");
    assert!(w.commands.sent().is_empty());
}

/// Found by the chaos test: a create-runner delivery resumed after the
/// bootstrap step had already sent the command used to put the runner back to
/// `launched` and schedule a second bootstrap, which sent a second command.
#[tokio::test]
async fn a_resumed_launch_never_moves_a_bootstrapped_runner_back() {
    let w = world(config(""));
    let msg = launched(&w, 6).await;
    let out = w.cr.handle_bootstrap(&msg, Utc::now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    // The job message comes again with the job still claimed (its last
    // ledger write failed): the claim resumes and finds the instance.
    let change = crate::ports::JobChange {
        state: Some(crate::ports::JobState::Claimed),
        clear_lease: true,
        ..Default::default()
    };
    w.ledger.update_job(6, &change, Utc::now()).await.unwrap();
    let again = w.cr.handle_job(&job(6, "cpu"), Utc::now()).await;
    assert!(matches!(again, JobOutcome::Launched { .. }), "{again:?}");
    assert_eq!(runner(&w, &msg).await.state, RunnerState::Bootstrapped);
    assert!(
        w.bootstrap.take_all().is_empty(),
        "no second bootstrap step"
    );
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
}
