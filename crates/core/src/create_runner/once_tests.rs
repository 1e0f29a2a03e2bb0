//! The bootstrap step sends the runner command once (issue 10, defect 2):
//! SendCommand is not idempotent, SQS delivers the bootstrap message twice, and
//! an answer can be lost after SSM accepted the command.

use super::bootstrap::{RESEND_AFTER, SEND_WINDOW};
use super::tests::{World, config, fixed_now, job, world};
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
    let out = w.cr.handle_job(&job(id, "cpu"), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    w.bootstrap.take_all().remove(0).0
}

#[tokio::test]
async fn a_duplicate_bootstrap_message_sends_the_runner_command_once() {
    let w = world(config(""));
    let msg = launched(&w, 1).await;
    let now = fixed_now();
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
    let now = fixed_now();
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

/// Take the runner as a step would (`Launched` → `Bootstrapping` at `at`) and
/// then do nothing: a step that is slow, or died, before its SendCommand.
async fn taken_and_silent(w: &World, msg: &BootstrapMessage, at: chrono::DateTime<Utc>) {
    let change = RunnerChange {
        state: Some(RunnerState::Bootstrapping),
        ..RunnerChange::default()
    };
    assert!(
        w.ledger
            .transition_runner(&msg.runner_name, &[RunnerState::Launched], &change, at)
            .await
            .unwrap()
    );
}

/// Found by the chaos test (three VMs got two commands, both answered): a
/// step counted its 10 s grace from its own first sight, so a step that took
/// the runner and was slow to call SendCommand sent too, after the other had.
/// The wait now runs from the taking step's write, past its send window and
/// call timeout, and a resend needs the runner taken over from that write.
#[tokio::test]
async fn a_step_that_died_before_sending_is_finished_after_its_send_window() {
    let w = world(config(""));
    let msg = launched(&w, 3).await;
    let t0 = fixed_now();
    taken_and_silent(&w, &msg, t0).await;
    let out =
        w.cr.handle_bootstrap(&msg, t0 + CDuration::seconds(5))
            .await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    let (next, delay) = w.bootstrap.take_all().remove(0);
    assert_eq!(
        delay,
        RESEND_AFTER - std::time::Duration::from_secs(5),
        "until the taking step's window and call are over"
    );
    // The old grace (10 s from that sight) has passed: still nothing sent.
    let resend = RESEND_AFTER.as_secs() as i64;
    for at in [15, resend - 1] {
        let early =
            w.cr.handle_bootstrap(&next, t0 + CDuration::seconds(at))
                .await;
        assert!(matches!(early, JobOutcome::Deferred { .. }), "{early:?}");
        assert_eq!(w.commands.sent_to(&msg.instance_id), 0, "at t0 + {at} s");
    }
    let (next, _) = w.bootstrap.take_all().remove(0);
    let at = t0 + CDuration::seconds(resend);
    let out = w.cr.handle_bootstrap(&next, at).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
    let sent = w.commands.sent().remove(0);
    assert_eq!(
        sent.send_by,
        at + CDuration::from_std(SEND_WINDOW).unwrap(),
        "the resending step has its own window"
    );
}

#[tokio::test]
async fn two_steps_that_find_the_same_silent_runner_send_once() {
    let w = world(config(""));
    let msg = launched(&w, 7).await;
    let t0 = fixed_now();
    taken_and_silent(&w, &msg, t0).await;
    // Both read the runner (written at t0) and find nothing listed; the one
    // that takes it over is still sending when the other tries.
    w.commands.hold_finds(2);
    w.commands.slow_sends(3);
    let at = t0 + CDuration::from_std(RESEND_AFTER).unwrap();
    let (a, b) = tokio::join!(
        w.cr.handle_bootstrap(&msg, at),
        w.cr.handle_bootstrap(&msg, at)
    );
    let sent = [&a, &b]
        .iter()
        .filter(|o| matches!(o, JobOutcome::Launched { .. }))
        .count();
    assert_eq!(sent, 1, "{a:?} {b:?}");
    assert!(
        [&a, &b].iter().any(|o| matches!(o, JobOutcome::Duplicate)),
        "{a:?} {b:?}"
    );
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
}

#[tokio::test]
async fn a_step_too_late_to_send_hands_the_runner_back() {
    let w = world(config(""));
    let msg = launched(&w, 8).await;
    w.commands.set_too_late(true);
    let out = w.cr.handle_bootstrap(&msg, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    assert_eq!(runner(&w, &msg).await.state, RunnerState::Launched);
    assert!(w.commands.sent().is_empty());
    w.commands.set_too_late(false);
    let (next, delay) = w.bootstrap.take_all().remove(0);
    assert_eq!(delay, std::time::Duration::from_secs(1), "tried again soon");
    let out = w.cr.handle_bootstrap(&next, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
}

/// Throttling is a refusal before SSM looked: the runner goes back at once,
/// without waiting out the resend window.
#[tokio::test]
async fn a_throttled_send_hands_the_runner_back_at_once() {
    let w = world(config(""));
    let msg = launched(&w, 9).await;
    w.commands.throttle_next_sends(1);
    let now = fixed_now();
    let out = w.cr.handle_bootstrap(&msg, now).await;
    assert!(out.keeps_message(), "retried: {out:?}");
    assert_eq!(runner(&w, &msg).await.state, RunnerState::Launched);
    let out =
        w.cr.handle_bootstrap(&msg, now + CDuration::seconds(1))
            .await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
}

/// A hand-back never undoes a later step's taking over.
#[tokio::test]
async fn a_hand_back_from_a_step_that_was_overtaken_changes_nothing() {
    let w = world(config(""));
    let msg = launched(&w, 10).await;
    let t0 = fixed_now();
    taken_and_silent(&w, &msg, t0).await;
    let t1 = t0 + CDuration::from_std(RESEND_AFTER).unwrap();
    let out = w.cr.handle_bootstrap(&msg, t1).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    // The first step's send finally answers "not ready" and hands back.
    let change = RunnerChange {
        state: Some(RunnerState::Launched),
        only_if_written_at: Some(t0),
        ..RunnerChange::default()
    };
    assert!(
        !w.ledger
            .transition_runner(
                &msg.runner_name,
                &[RunnerState::Bootstrapping, RunnerState::Bootstrapped],
                &change,
                t1
            )
            .await
            .unwrap()
    );
    assert_eq!(runner(&w, &msg).await.state, RunnerState::Bootstrapped);
}

#[tokio::test]
async fn an_agent_not_yet_online_hands_the_runner_back_for_the_next_step() {
    let w = world(config(""));
    let msg = launched(&w, 4).await;
    w.commands.set_not_ready(true);
    let out = w.cr.handle_bootstrap(&msg, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    let r = runner(&w, &msg).await;
    assert_eq!(r.state, RunnerState::Launched, "nothing was sent");
    w.commands.set_not_ready(false);
    let (next, _) = w.bootstrap.take_all().remove(0);
    let out = w.cr.handle_bootstrap(&next, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
}

#[tokio::test]
async fn a_bootstrap_message_for_another_instance_is_dropped() {
    let w = world(config(""));
    let mut msg = launched(&w, 5).await;
    msg.instance_id = "i-someone-else".into();
    let out = w.cr.handle_bootstrap(&msg, fixed_now()).await;
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
    let out = w.cr.handle_bootstrap(&msg, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    // The job message comes again with the job still claimed (its last
    // ledger write failed): the claim resumes and finds the instance.
    let change = crate::ports::JobChange {
        state: Some(crate::ports::JobState::Claimed),
        clear_lease: true,
        ..Default::default()
    };
    w.ledger.update_job(6, &change, fixed_now()).await.unwrap();
    let again = w.cr.handle_job(&job(6, "cpu"), fixed_now()).await;
    assert!(matches!(again, JobOutcome::Launched { .. }), "{again:?}");
    assert_eq!(runner(&w, &msg).await.state, RunnerState::Bootstrapped);
    assert!(
        w.bootstrap.take_all().is_empty(),
        "no second bootstrap step"
    );
    assert_eq!(w.commands.sent_to(&msg.instance_id), 1);
}
