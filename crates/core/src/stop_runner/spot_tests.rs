//! Spot interruptions: the warning, the re-run of the killed job on-demand,
//! the spot breaker.

use super::tests::{World, command, job, world_with};
use super::*;
use crate::config::CapacityType;
use crate::create_runner::JobOutcome;
use crate::job::{JobMessage, JobStateUpdate, ObservedJobStatus};
use crate::ports::{GitHubApi, JobState, JobStateSink, Ledger, RunnerState, Stage};
use crate::rerun::{RerunStep, Reruns, marker_key};
use chrono::{DateTime, Duration, Utc};

const RUN: u64 = 500;

fn named(id: u64, attempt: u32) -> JobMessage {
    JobMessage {
        run_id: RUN,
        run_attempt: attempt,
        job_name: Some("build".into()),
        ..job(id)
    }
}

fn warning(instance: &str) -> StopEvent {
    StopEvent::SpotInterruption {
        instance_id: instance.into(),
    }
}

impl World {
    /// Launch `msg` at `now`, bootstrap it; (runner, instance).
    async fn launched(&self, msg: &JobMessage, now: DateTime<Utc>) -> (String, String) {
        let JobOutcome::Launched {
            runner_name,
            instance_id,
        } = self.cr.handle_job(msg, now).await
        else {
            panic!("not launched")
        };
        for (m, _) in self.bootstrap.take_all() {
            self.cr.handle_bootstrap(&m, now).await;
        }
        (runner_name, instance_id)
    }

    fn capacity_of(&self, instance: &str) -> CapacityType {
        self.compute
            .all()
            .into_iter()
            .find(|(i, _)| i.instance_id == instance)
            .map(|(_, c)| c)
            .expect("instance launched")
    }

    fn reruns(&self) -> Reruns<'_> {
        Reruns {
            config: &self.stop.config,
            ledger: self.ledger.as_ref(),
            github: self.github.as_ref(),
        }
    }

    async fn completed(&self, id: u64, conclusion: &str) {
        self.ledger
            .record_job_state(&JobStateUpdate {
                job_id: id,
                repository: "o/r".into(),
                status: ObservedJobStatus::Completed,
                runner_name: None,
                runner_id: None,
                conclusion: Some(conclusion.into()),
                at: Utc::now(),
            })
            .await
            .unwrap();
    }

    /// A running job 1 of run RUN interrupted: warning, then its runner's end.
    async fn interrupted_job(&self) -> (String, String) {
        let now = Utc::now();
        let (runner, instance) = self.launched(&named(1, 1), now).await;
        self.in_progress(1, &runner).await;
        self.github
            .set_run_job(1, "build", RUN, 1, "in_progress", None);
        self.github.set_run(RUN, 1, "in_progress");
        assert_eq!(
            self.stop.handle(&warning(&instance), now).await.unwrap(),
            StopOutcome::Interrupted {
                runner_name: runner.clone(),
                job_id: 1
            }
        );
        // A second copy of the warning changes nothing more.
        let before = self.ledger.get_job(1).await.unwrap();
        self.stop.handle(&warning(&instance), now).await.unwrap();
        assert_eq!(self.ledger.get_job(1).await.unwrap(), before);
        let out = self
            .stop
            .handle(&command(&instance, "Failed"), now)
            .await
            .unwrap();
        assert!(
            matches!(
                out,
                StopOutcome::Ended {
                    job_state: Some(JobState::Interrupted),
                    ..
                }
            ),
            "{out:?}"
        );
        (runner, instance)
    }
}

#[tokio::test]
async fn an_interrupted_job_is_re_run_once_its_run_completed_and_the_re_run_launches_on_demand() {
    let w = world_with("on_demand_fallback = false");
    let (_, instance) = w.interrupted_job().await;
    assert_eq!(w.capacity_of(&instance), CapacityType::Spot);
    // The runner's end tried at once: GitHub still says in progress.
    assert!(w.github.reruns().is_empty());
    let job = w.ledger.get_job(1).await.unwrap().unwrap();
    assert!(job.timeline.get(Stage::Interrupted).is_some());
    assert_eq!(job.rerun, None, "undecided");

    // The job failed, but another job keeps the run going: not yet.
    w.github
        .set_run_job(1, "build", RUN, 1, "completed", Some("failure"));
    w.completed(1, "failure").await;
    assert_eq!(w.job_state(1).await, JobState::Interrupted);
    let step = w.reruns().step_job(1, Utc::now()).await.unwrap();
    assert!(
        matches!(step, Some(RerunStep::Later(ref why)) if why.contains("still in_progress")),
        "{step:?}"
    );
    assert_eq!(w.github.state.lock().unwrap().rerun_calls, 0);

    // The run completed: exactly one request, then the job is decided.
    w.github.set_run(RUN, 1, "completed");
    let step = w.reruns().step_job(1, Utc::now()).await.unwrap();
    assert_eq!(step, Some(RerunStep::Requested { depth: 1 }));
    assert_eq!(w.github.reruns(), vec![1]);
    for _ in 0..3 {
        assert_eq!(w.reruns().step_job(1, Utc::now()).await.unwrap(), None);
        let jobs = w.ledger.list_jobs().await.unwrap();
        assert!(w.reruns().step_all(&jobs, Utc::now()).await.is_empty());
    }
    assert_eq!(w.github.state.lock().unwrap().rerun_calls, 1);
    let job = w.ledger.get_job(1).await.unwrap().unwrap();
    assert!(job.rerun.as_deref().unwrap().starts_with("requested"));
    assert!(job.timeline.get(Stage::RerunRequested).is_some());

    // The re-run's queued delivery: a new job id, same run and name, attempt 2.
    let again = w.github.rerun_of(1).expect("GitHub made the re-run");
    assert_eq!(again.run_attempt, Some(2));
    let (_, od) = w.launched(&named(again.id, 2), Utc::now()).await;
    assert_eq!(w.capacity_of(&od), CapacityType::OnDemand);
    // Another job of the same attempt (a dependent) is not a re-run: spot.
    let other = JobMessage {
        job_name: Some("deploy".into()),
        ..named(77, 2)
    };
    let (_, spot) = w.launched(&other, Utc::now()).await;
    assert_eq!(w.capacity_of(&spot), CapacityType::Spot);
}

#[tokio::test]
async fn a_crash_between_the_request_and_the_ledger_write_sends_no_second_request() {
    let w = world_with("");
    w.interrupted_job().await;
    w.github
        .set_run_job(1, "build", RUN, 1, "completed", Some("failure"));
    w.github.set_run(RUN, 1, "completed");
    // The request went out (and was accepted), the mark was lost.
    let target = crate::target::github_target(&named(1, 1), &w.stop.config.pools[0]);
    w.github.rerun_job(&target, "o/r", 1).await.unwrap();
    let step = w.reruns().step_job(1, Utc::now()).await.unwrap();
    assert_eq!(step, Some(RerunStep::Found));
    assert_eq!(w.github.state.lock().unwrap().rerun_calls, 1);
}

#[tokio::test]
async fn a_request_in_flight_is_not_repeated_and_a_refusal_unlocks() {
    let w = world_with("");
    w.interrupted_job().await;
    w.github
        .set_run_job(1, "build", RUN, 1, "completed", Some("cancelled"));
    w.github.set_run(RUN, 1, "completed");
    let now = Utc::now();
    // Another stepper holds the marker (its request is on its way).
    w.ledger
        .update_state_doc(&marker_key(RUN), &|doc| {
            *doc = Some(serde_json::json!({"jobs": {"build": {
                "from_job": 1, "from_attempt": 1, "rerun_attempt": 2, "depth": 1,
                "requested_at": now.to_rfc3339()}}}));
            true
        })
        .await
        .unwrap();
    let step = w.reruns().step_job(1, now).await.unwrap();
    assert!(
        matches!(step, Some(RerunStep::Later(ref why)) if why.contains("in flight")),
        "{step:?}"
    );
    assert_eq!(w.github.state.lock().unwrap().rerun_calls, 0);
    // Ten minutes on, the lock is stale: this step sends.
    let later = now + Duration::minutes(11);
    let step = w.reruns().step_job(1, later).await.unwrap();
    assert_eq!(step, Some(RerunStep::Requested { depth: 1 }));
}

#[tokio::test]
async fn no_re_run_for_success_for_a_disabled_pool_or_past_the_budget() {
    // Concluded success despite the warning.
    let w = world_with("");
    w.interrupted_job().await;
    w.github
        .set_run_job(1, "build", RUN, 1, "completed", Some("success"));
    w.github.set_run(RUN, 1, "completed");
    let step = w.reruns().step_job(1, Utc::now()).await.unwrap();
    assert!(
        matches!(step, Some(RerunStep::NotNeeded(ref why)) if why.contains("success")),
        "{step:?}"
    );
    assert_eq!(w.github.state.lock().unwrap().rerun_calls, 0);

    // Re-runs off for the pool.
    let w = world_with("[pools.spot]\nreruns = 0");
    w.interrupted_job().await;
    // Decided at the runner's end, before GitHub is asked anything.
    let rec = w.ledger.get_job(1).await.unwrap().unwrap();
    assert!(
        rec.rerun.as_deref().unwrap().contains("reruns = 0"),
        "{rec:?}"
    );
    w.github
        .set_run_job(1, "build", RUN, 1, "completed", Some("failure"));
    w.github.set_run(RUN, 1, "completed");
    assert_eq!(w.reruns().step_job(1, Utc::now()).await.unwrap(), None);
    assert_eq!(w.github.state.lock().unwrap().rerun_calls, 0);

    // The re-run itself interrupted: once per job by default.
    let w = world_with("");
    w.interrupted_job().await;
    w.github
        .set_run_job(1, "build", RUN, 1, "completed", Some("failure"));
    w.github.set_run(RUN, 1, "completed");
    w.reruns().step_job(1, Utc::now()).await.unwrap();
    let again = w.github.rerun_of(1).unwrap();
    let now = Utc::now();
    let (runner, instance) = w.launched(&named(again.id, 2), now).await;
    w.in_progress(again.id, &runner).await;
    w.stop.handle(&warning(&instance), now).await.unwrap();
    w.stop
        .handle(&command(&instance, "Failed"), now)
        .await
        .unwrap();
    w.github
        .set_run_job(again.id, "build", RUN, 2, "completed", Some("failure"));
    w.github.set_run(RUN, 2, "completed");
    let rec = w.ledger.get_job(again.id).await.unwrap().unwrap();
    let step = w.reruns().step_job(again.id, Utc::now()).await.unwrap();
    assert!(
        matches!(step, Some(RerunStep::NotNeeded(ref why)) if why.contains("spot.reruns = 1")),
        "{step:?} {rec:?}"
    );
    assert_eq!(w.github.reruns(), vec![1]);
}

#[tokio::test]
async fn two_interruptions_switch_the_pool_to_on_demand_until_the_cool_down_ends() {
    let w = world_with("on_demand_fallback = true");
    let t0 = Utc::now();
    for id in [1, 2] {
        let (runner, instance) = w.launched(&job(id), t0).await;
        w.in_progress(id, &runner).await;
        w.stop.handle(&warning(&instance), t0).await.unwrap();
    }
    let health = w.ledger.pool_health("cpu").await.unwrap();
    assert_eq!(health.spot_breaks, 1);
    assert!(health.spot_off(t0).is_some());
    let (_, od) = w.launched(&job(3), t0 + Duration::minutes(1)).await;
    assert_eq!(w.capacity_of(&od), CapacityType::OnDemand);
    // 30 minutes on, spot again (a manual clock: the handler's `now`).
    let (_, spot) = w.launched(&job(4), t0 + Duration::minutes(31)).await;
    assert_eq!(w.capacity_of(&spot), CapacityType::Spot);
}

#[tokio::test]
async fn a_pool_without_on_demand_holds_its_launches_while_the_breaker_is_open() {
    let w = world_with("");
    let t0 = Utc::now();
    for id in [1, 2] {
        let (runner, instance) = w.launched(&job(id), t0).await;
        w.in_progress(id, &runner).await;
        w.stop.handle(&warning(&instance), t0).await.unwrap();
    }
    let launches = w.compute.launch_calls();
    let out = w.cr.handle_job(&job(3), t0 + Duration::minutes(1)).await;
    match out {
        JobOutcome::Deferred { reason, after } => {
            assert!(reason.contains("spot breaker open"), "{reason}");
            assert!(after <= std::time::Duration::from_secs(900));
        }
        other => panic!("expected Deferred, got {other:?}"),
    }
    assert_eq!(w.compute.launch_calls(), launches, "nothing launched");
    assert!(!w.jobs.sent().is_empty(), "the job waits on the queue");
    // A warning for a runner whose job had not started ends it as before.
    let (runner, instance) = w.launched(&job(9), t0 + Duration::minutes(31)).await;
    w.github.set_job(9, "queued");
    let out = w
        .stop
        .handle(&warning(&instance), t0 + Duration::minutes(31))
        .await
        .unwrap();
    assert!(matches!(out, StopOutcome::Ended { .. }), "{out:?}");
    let r = w.ledger.get_runner(&runner).await.unwrap().unwrap();
    assert_eq!(r.state, RunnerState::Released);
}
