//! The janitor against moto (EC2, SSM, DynamoDB, SQS) and the fake GitHub, one
//! test per rule on a state built by hand, and one messy account mixing every
//! leak with healthy and busy runners. Time moves by passing a later `now`.
//! The `race_*` tests let another handler act in the middle of a pass (a ledger
//! wrapper with hooks) on the real DynamoDB, SSM and EC2 adapters.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use spotrunner_core::fakes::{Hook, RacingLedger};
use spotrunner_core::janitor::{ActionKind, Janitor, JanitorReport};
use spotrunner_core::job::{JobStateUpdate, ObservedJobStatus};
use spotrunner_core::ports::{
    CapacityUse, ClaimOutcome, GitHubTarget, JitRequest, JobChange, JobState, JobStateSink, Ledger,
    Limits, ReserveOutcome, RunnerChange, RunnerParameters, RunnerRecord, RunnerScope, RunnerState,
    tags,
};
use std::sync::Arc;

/// How a hand-built runner stands.
struct R {
    job: u64,
    state: RunnerState,
    instance: bool,
    github: Option<(&'static str, bool)>,
    job_state: JobState,
}

fn r(job: u64, state: RunnerState) -> R {
    R {
        job,
        state,
        instance: true,
        github: None,
        job_state: JobState::Launched,
    }
}

impl R {
    fn github(mut self, status: &'static str, busy: bool) -> Self {
        self.github = Some((status, busy));
        self
    }
    fn running(mut self) -> Self {
        self.job_state = JobState::Running;
        self
    }
    fn no_instance(mut self) -> Self {
        self.instance = false;
        self
    }
}

fn org() -> RunnerScope {
    RunnerScope::Org {
        org: "octo-org".into(),
    }
}

async fn run_instance(w: &World, runner: &str, job: u64) -> String {
    w.run_instance("sr", runner, job).await
}

/// A job with its runner, as create-runner and the webhook would have left them.
async fn hand_built(w: &World, spec: R, now: DateTime<Utc>) -> (String, Option<String>) {
    let name = format!("sr_cpu-{}-0", spec.job);
    let msg = w.job(spec.job, "cpu");
    w.ledger
        .claim_job(&msg, now, Duration::minutes(5))
        .await
        .unwrap();
    let record = RunnerRecord {
        name: name.clone(),
        pool: "cpu".into(),
        job_id: spec.job,
        weight: 1,
        state: RunnerState::Reserved,
        instance_id: None,
        command_id: None,
        github_runner_id: None,
        jit_parameter: format!("/sr/jit/{name}"),
        created_at: now,
        launched_at: None,
        updated_at: now,
        end_reason: None,
    };
    let limits = Limits {
        pool_max: 100,
        weight: 1,
        global_max_weight: None,
    };
    w.ledger.reserve(&record, limits).await.unwrap();
    let github_id = spec
        .github
        .map(|(status, busy)| w.github.add_runner(org(), &name, status, busy));
    let instance = if spec.instance {
        Some(run_instance(w, &name, spec.job).await)
    } else {
        None
    };
    let change = RunnerChange {
        state: Some(spec.state),
        instance_id: instance.clone(),
        github_runner_id: github_id,
        launched_at: instance.as_ref().map(|_| now),
        ..RunnerChange::default()
    };
    w.ledger.update_runner(&name, &change, now).await.unwrap();
    let change = JobChange {
        state: Some(JobState::Launched),
        runner_name: Some(name.clone()),
        clear_lease: true,
        ..JobChange::default()
    };
    w.ledger.update_job(spec.job, &change, now).await.unwrap();
    if spec.job_state == JobState::Running {
        w.ledger
            .record_job_state(&JobStateUpdate {
                job_id: spec.job,
                repository: "octo-org/app".into(),
                status: ObservedJobStatus::InProgress,
                runner_name: Some(name.clone()),
                runner_id: github_id,
                conclusion: None,
                at: now,
            })
            .await
            .unwrap();
    }
    w.params
        .put(&format!("/sr/jit/{name}"), "JIT-SECRET", &[])
        .await
        .unwrap();
    (name, instance)
}

async fn pass(w: &World, now: DateTime<Utc>, dry_run: bool) -> JanitorReport {
    w.janitor.run(now, dry_run).await.expect("janitor pass")
}

fn kinds(report: &JanitorReport) -> Vec<(ActionKind, String)> {
    let mut v: Vec<_> = report
        .results
        .iter()
        .map(|r| (r.action.kind, r.action.subject.clone()))
        .collect();
    v.sort();
    v
}

async fn live(w: &World) -> Vec<String> {
    let mut ids: Vec<String> = w
        .instances(None)
        .await
        .iter()
        .filter(|i| {
            matches!(
                i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                Some("running" | "pending")
            )
        })
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn runner_state(w: &World, name: &str) -> RunnerState {
    w.ledger.get_runner(name).await.unwrap().unwrap().state
}

/// Job ids on the jobs queue, delayed ones included: a relaunch waits the
/// pool's `relaunch.delay_secs` (1 s in this world) before it is visible.
async fn jobs_on_queue(w: &World) -> Vec<u64> {
    let mut ids = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let out = w
            .sqs
            .receive_message()
            .queue_url(&w.jobs_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        ids.extend(out.messages().iter().map(|m| {
            spotrunner_core::job::JobMessage::parse(m.body().unwrap())
                .unwrap()
                .job_id
        }));
    }
    ids
}

#[tokio::test]
async fn boot_timeout_terminates_releases_and_requeues() {
    let w = world(10, None).await;
    let now = Utc::now();
    let (name, instance) = hand_built(&w, r(1, RunnerState::Launched), now).await;
    let report = pass(&w, now + Duration::seconds(301), false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::BootTimeout, name.clone())]
    );
    assert!(!live(&w).await.contains(&instance.unwrap()));
    assert_eq!(runner_state(&w, &name).await, RunnerState::Released);
    assert_eq!(jobs_on_queue(&w).await, vec![1]);
    assert!(w.params.list("/sr/jit/").await.unwrap().is_empty());
}

#[tokio::test]
async fn max_run_time_terminates() {
    let w = world(10, None).await;
    let now = Utc::now();
    let (name, _) = hand_built(
        &w,
        r(1, RunnerState::Bootstrapped)
            .github("online", true)
            .running(),
        now,
    )
    .await;
    let t = now + Duration::hours(6) + Duration::seconds(1);
    let report = pass(&w, t, false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::MaxRunTime, name.clone())]);
    assert!(live(&w).await.is_empty(), "instance terminated");
    // GitHub refuses to delete a runner while it says it is busy: the runner
    // stays on the ledger until GitHub sees it gone; the next pass finishes.
    let error = report.results[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("still running a job"), "{error}");
    assert_ne!(runner_state(&w, &name).await, RunnerState::Released);
    w.github.set_runner_status(&name, "offline", false);
    let report = pass(&w, t + Duration::minutes(5), false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::ReleaseLost, name.clone())]
    );
    assert_eq!(report.failed(), 0);
    assert!(w.github.runners().is_empty());
    assert_eq!(runner_state(&w, &name).await, RunnerState::Released);
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 0);
}

#[tokio::test]
async fn idle_runner_tainted_then_deleted_busy_runner_kept() {
    let w = world(10, None).await;
    let now = Utc::now();
    let (idle, idle_i) = hand_built(
        &w,
        r(1, RunnerState::Bootstrapped).github("online", false),
        now,
    )
    .await;
    let (busy, busy_i) = hand_built(
        &w,
        r(2, RunnerState::Bootstrapped).github("online", true),
        now,
    )
    .await;
    let t1 = now + Duration::seconds(901);
    let report = pass(&w, t1, false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::Taint, idle.clone())]);
    assert_eq!(runner_state(&w, &idle).await, RunnerState::Tainted);
    let tainted = w.instances(None).await;
    let i = tainted
        .iter()
        .find(|i| i.instance_id() == idle_i.as_deref())
        .unwrap();
    assert!(tag(i, tags::TAINTED).is_some(), "instance tagged tainted");
    // Grace: at the taint time + 10 min it is deleted (the tag says when).
    let tainted_at: DateTime<Utc> = tag(i, tags::TAINTED).unwrap().parse().unwrap();
    let report = pass(&w, tainted_at + Duration::minutes(11), false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::DeleteTainted, idle.clone())]
    );
    assert_eq!(live(&w).await, vec![busy_i.unwrap()]);
    assert_eq!(runner_state(&w, &busy).await, RunnerState::Bootstrapped);
}

#[tokio::test]
async fn orphan_instance_terminated() {
    let w = world(10, None).await;
    let orphan = run_instance(&w, "sr_cpu-9-0", 9).await;
    let report = pass(&w, Utc::now(), false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::TerminateOrphan, orphan.clone())]
    );
    assert!(live(&w).await.is_empty());
}

#[tokio::test]
async fn offline_github_runner_without_instance_deleted() {
    let w = world(10, None).await;
    let now = Utc::now();
    // A finished job keeps the scope known; its runner registration leaked.
    let (name, _) = hand_built(&w, r(1, RunnerState::Bootstrapped).no_instance(), now).await;
    w.ledger.release(&name, "test", now).await.unwrap();
    w.params.delete(&format!("/sr/jit/{name}")).await.unwrap();
    w.github.add_runner(org(), &name, "offline", false);
    w.github
        .add_runner(org(), "someone-else-1", "offline", false);
    w.github.add_runner(org(), "sr_cpu-77-0", "online", false);
    // Released at `now`: its leftovers wait for the janitor's 10 min grace.
    let report = pass(&w, now + Duration::minutes(11), false).await;
    assert!(
        kinds(&report).contains(&(ActionKind::DeleteGitHubRunner, name.clone())),
        "{report:?}"
    );
    let left: Vec<String> = w.github.runners().into_iter().map(|r| r.name).collect();
    assert_eq!(left, vec!["someone-else-1", "sr_cpu-77-0"]);
}

#[tokio::test]
async fn leaked_parameter_deleted() {
    let w = world(10, None).await;
    w.params
        .put("/sr/jit/sr_cpu-5-0", "JIT-SECRET", &[])
        .await
        .unwrap();
    let report = pass(&w, Utc::now(), false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::DeleteParameter, "/sr/jit/sr_cpu-5-0".into())]
    );
    assert!(w.params.list("/sr/jit/").await.unwrap().is_empty());
}

#[tokio::test]
async fn capacity_counters_repaired() {
    let w = world(10, None).await;
    let now = Utc::now();
    hand_built(&w, r(1, RunnerState::Bootstrapped), now).await;
    w.ledger
        .set_capacity(&CapacityUse {
            pools: [("cpu".to_string(), 4)].into(),
            weight: 6,
        })
        .await
        .unwrap();
    let report = pass(&w, now, false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::RepairCapacity, "capacity".into())]
    );
    let cap = w.ledger.capacity().await.unwrap();
    assert_eq!((cap.pools.get("cpu").copied(), cap.weight), (Some(1), 1));
}

#[tokio::test]
async fn queued_job_without_runner_gets_a_fresh_message() {
    let w = world(10, None).await;
    let now = Utc::now();
    let msg = w.job(7, "cpu");
    w.ledger
        .claim_job(&msg, now, Duration::minutes(5))
        .await
        .unwrap();
    w.github.add_job("octo-org/app", 7, "queued");
    let report = pass(&w, now + Duration::minutes(31), false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::RequeueJob, "7".into())]);
    assert_eq!(jobs_on_queue(&w).await, vec![7]);
    let job = w.ledger.get_job(7).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Requeued);
}

#[tokio::test]
async fn messy_account_every_leak_gone_healthy_and_busy_untouched_dry_run_exact() {
    let w = world(50, None).await;
    let now = Utc::now();
    let t = now + Duration::seconds(1000);
    // Healthy at t: launched recently, idle but young, busy past idle, running.
    let mut healthy = Vec::new();
    healthy.push(
        hand_built(
            &w,
            r(10, RunnerState::Bootstrapped).github("offline", false),
            t - Duration::seconds(60),
        )
        .await,
    );
    healthy.push(
        hand_built(
            &w,
            r(11, RunnerState::Bootstrapped).github("online", false),
            t - Duration::seconds(100),
        )
        .await,
    );
    healthy.push(
        hand_built(
            &w,
            r(12, RunnerState::Bootstrapped).github("online", true),
            now,
        )
        .await,
    );
    healthy.push(
        hand_built(
            &w,
            r(13, RunnerState::Bootstrapped)
                .github("online", false)
                .running(),
            now,
        )
        .await,
    );
    // Leaks.
    let (boot, _) = hand_built(&w, r(20, RunnerState::Launched), now).await;
    let (idle, _) = hand_built(
        &w,
        r(21, RunnerState::Bootstrapped).github("online", false),
        now,
    )
    .await;
    let (lost, lost_i) = hand_built(&w, r(22, RunnerState::Bootstrapped), now).await;
    w.ec2
        .terminate_instances()
        .instance_ids(lost_i.unwrap())
        .send()
        .await
        .unwrap();
    let orphan = run_instance(&w, "sr_cpu-23-0", 23).await;
    w.github.add_runner(org(), "sr_cpu-24-0", "offline", false);
    w.params
        .put("/sr/jit/sr_cpu-25-0", "JIT-SECRET", &[])
        .await
        .unwrap();
    let mut cap = w.ledger.capacity().await.unwrap();
    cap.weight += 2;
    w.ledger.set_capacity(&cap).await.unwrap();
    let before = live(&w).await;

    let dry = pass(&w, t, true).await;
    assert_eq!(live(&w).await, before, "a dry run changes nothing");
    assert!(jobs_on_queue(&w).await.is_empty());
    let real = pass(&w, t, false).await;
    assert_eq!(
        dry.actions(),
        real.actions(),
        "dry run lists exactly what is done"
    );
    assert_eq!(real.failed(), 0, "{real:?}");
    assert_eq!(
        kinds(&real),
        vec![
            (ActionKind::BootTimeout, boot.clone()),
            (ActionKind::Taint, idle.clone()),
            (ActionKind::ReleaseLost, lost.clone()),
            (ActionKind::TerminateOrphan, orphan.clone()),
            (ActionKind::DeleteGitHubRunner, "sr_cpu-24-0".into()),
            (ActionKind::DeleteParameter, "/sr/jit/sr_cpu-25-0".into()),
            (ActionKind::RepairCapacity, "capacity".into()),
        ]
    );
    let mut jobs = jobs_on_queue(&w).await;
    jobs.sort();
    assert_eq!(
        jobs,
        vec![20, 22],
        "the jobs of the dead runners are requeued"
    );
    // After the grace the tainted runner goes too; then nothing is left to do.
    let later = t + Duration::minutes(11);
    let report = pass(&w, later, false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::DeleteTainted, idle.clone())]
    );
    let mut expected: Vec<String> = healthy.iter().map(|(_, i)| i.clone().unwrap()).collect();
    expected.sort();
    assert_eq!(
        live(&w).await,
        expected,
        "healthy and busy runners untouched"
    );
    for (name, _) in &healthy {
        assert!(matches!(
            runner_state(&w, name).await,
            RunnerState::Launched | RunnerState::Bootstrapped
        ));
    }
    let cap = w.ledger.capacity().await.unwrap();
    assert_eq!(cap.weight, 4);
    assert!(w.github.runners().iter().all(|r| r.name != "sr_cpu-24-0"));
    assert_eq!(w.params.list("/sr/jit/").await.unwrap().len(), 4);
}

// --- Races: another handler acts in the middle of a pass. ----------------------

/// `w`'s janitor on a [`RacingLedger`] over DynamoDB.
fn racing(
    w: &World,
    after_list_runners: Option<Hook>,
    before_counter_write: Option<Hook>,
) -> Janitor {
    let ledger = Arc::new(RacingLedger::new(
        w.ledger.clone(),
        after_list_runners,
        before_counter_write,
    ));
    Janitor {
        ledger,
        ..w.janitor.clone()
    }
}

const CAP: Limits = Limits {
    pool_max: 3,
    weight: 1,
    global_max_weight: None,
};

/// A reservation as create-runner's first step writes it.
fn reservation(job: u64, now: DateTime<Utc>) -> RunnerRecord {
    let name = format!("sr_cpu-{job}-0");
    RunnerRecord {
        jit_parameter: format!("/sr/jit/{name}"),
        name,
        pool: "cpu".into(),
        job_id: job,
        weight: 1,
        state: RunnerState::Reserved,
        instance_id: None,
        command_id: None,
        github_runner_id: None,
        created_at: now,
        launched_at: None,
        updated_at: now,
        end_reason: None,
    }
}

/// Race (a): create-runner claims, reserves, registers with GitHub and writes
/// the JIT parameter right after the janitor read the runners. Its registration
/// and parameter are not taken for leaks.
#[tokio::test]
async fn race_a_runner_created_right_after_the_ledger_read_keeps_its_registration_and_parameter() {
    let w = world(10, None).await;
    let now = Utc::now();
    // A job of the same scope, so that the pass lists the org's runners.
    let (done, _) = hand_built(&w, r(5, RunnerState::Bootstrapped).no_instance(), now).await;
    w.ledger.release(&done, "test", now).await.unwrap();
    w.params.delete(&format!("/sr/jit/{done}")).await.unwrap();
    let name = "sr_cpu-1-0".to_string();
    let msg = w.job(1, "cpu");
    let (ledger, github, params) = (w.ledger.clone(), w.janitor.github.clone(), w.params.clone());
    let target = GitHubTarget {
        scope: org(),
        installation_id: Some(w.installation),
    };
    let group = w.config.pool("cpu").unwrap().runner_group.clone();
    let create_runner: Hook = Box::new(move || {
        Box::pin(async move {
            ledger
                .claim_job(&msg, now, Duration::minutes(5))
                .await
                .unwrap();
            let reserved = ledger.reserve(&reservation(1, now), CAP).await.unwrap();
            assert_eq!(reserved, ReserveOutcome::Reserved);
            let jit = github
                .create_jit_config(&JitRequest {
                    target,
                    name: "sr_cpu-1-0".into(),
                    runner_group: group,
                    labels: vec!["self-hosted".into(), "linux".into()],
                    work_folder: "_work".into(),
                })
                .await
                .unwrap();
            let change = RunnerChange {
                github_runner_id: Some(jit.runner_id),
                ..RunnerChange::default()
            };
            ledger
                .update_runner("sr_cpu-1-0", &change, now)
                .await
                .unwrap();
            params
                .put("/sr/jit/sr_cpu-1-0", &jit.encoded_jit_config, &[])
                .await
                .unwrap();
        })
    });
    let report = racing(&w, Some(create_runner), None)
        .run(now, false)
        .await
        .unwrap();
    let registered: Vec<String> = w.github.runners().into_iter().map(|r| r.name).collect();
    assert!(
        registered.contains(&name),
        "registration deleted: {report:?}"
    );
    assert_eq!(
        w.params.list("/sr/jit/").await.unwrap(),
        vec![format!("/sr/jit/{name}")],
        "{report:?}"
    );
    assert_eq!(runner_state(&w, &name).await, RunnerState::Reserved);
}

/// Race (b): an instance tagged with a runner name released an hour ago (an
/// earlier try of the same job attempt launched it) is planned as an orphan;
/// before the janitor acts, the retry reserves the name again and records that
/// instance (same `ClientToken`). It is not terminated.
#[tokio::test]
async fn race_b_an_instance_whose_runner_became_live_meanwhile_is_not_terminated() {
    let w = world(10, None).await;
    let now = Utc::now();
    let name = "sr_cpu-1-0".to_string();
    let earlier = now - Duration::hours(2);
    w.ledger
        .claim_job(&w.job(1, "cpu"), earlier, Duration::minutes(5))
        .await
        .unwrap();
    w.ledger
        .reserve(&reservation(1, earlier), CAP)
        .await
        .unwrap();
    w.ledger
        .release(&name, "launch refused", now - Duration::hours(1))
        .await
        .unwrap();
    let instance = run_instance(&w, &name, 1).await;
    let (ledger, id, msg) = (w.ledger.clone(), instance.clone(), w.job(1, "cpu"));
    let relaunch: Hook = Box::new(move || {
        Box::pin(async move {
            // The redelivered message resumes the claim (its lease ran out).
            let claimed = ledger.claim_job(&msg, now, Duration::minutes(5)).await;
            assert!(
                matches!(claimed, Ok(ClaimOutcome::Claimed(_))),
                "{claimed:?}"
            );
            let again = ledger.reserve(&reservation(1, now), CAP).await.unwrap();
            assert_eq!(again, ReserveOutcome::Reserved);
            let change = RunnerChange {
                state: Some(RunnerState::Launched),
                instance_id: Some(id),
                launched_at: Some(now),
                ..RunnerChange::default()
            };
            ledger
                .update_runner("sr_cpu-1-0", &change, now)
                .await
                .unwrap();
        })
    });
    let report = racing(&w, Some(relaunch), None)
        .run(now, false)
        .await
        .unwrap();
    assert!(
        kinds(&report).contains(&(ActionKind::TerminateOrphan, instance.clone())),
        "the snapshot saw an orphan: {report:?}"
    );
    assert_eq!(live(&w).await, vec![instance], "{report:?}");
    assert_eq!(runner_state(&w, &name).await, RunnerState::Launched);
    // The job looked stale to the snapshot; it was claimed since, so it stays.
    let job = w.ledger.get_job(1).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Claimed, "{report:?}");
}

/// Race (c): a reservation lands between the janitor's recount and its write
/// of the counters (DynamoDB's conditional transaction). It is not overwritten:
/// the cap holds, and the next pass repairs.
#[tokio::test]
async fn race_c_a_reservation_between_the_recount_and_the_repair_is_not_lost() {
    let w = world(10, None).await;
    let now = Utc::now();
    hand_built(&w, r(1, RunnerState::Bootstrapped), now).await;
    // One phantom slot: the counters say 2 for 1 live runner.
    w.ledger
        .set_capacity(&CapacityUse {
            pools: [("cpu".to_string(), 2)].into(),
            weight: 2,
        })
        .await
        .unwrap();
    let ledger = w.ledger.clone();
    let reserve: Hook = Box::new(move || {
        Box::pin(async move {
            let got = ledger.reserve(&reservation(2, now), CAP).await.unwrap();
            assert_eq!(got, ReserveOutcome::Reserved);
        })
    });
    let report = racing(&w, None, Some(reserve))
        .run(now, false)
        .await
        .unwrap();
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::RepairCapacity, "capacity".into())]
    );
    let counters = |c: CapacityUse| (c.pools.get("cpu").copied().unwrap_or(0), c.weight);
    assert_eq!(
        counters(w.ledger.capacity().await.unwrap()),
        (3, 3),
        "the reservation was overwritten: {report:?}"
    );
    assert_eq!(
        w.ledger.reserve(&reservation(3, now), CAP).await.unwrap(),
        ReserveOutcome::PoolFull,
        "the cap of 3 holds"
    );
    let error = report.results[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("capacity changed after the recount"),
        "{error}"
    );
    // Nothing racing: the next pass counts 2 live runners and repairs.
    let report = pass(&w, now, false).await;
    assert_eq!(report.failed(), 0, "{report:?}");
    assert_eq!(counters(w.ledger.capacity().await.unwrap()), (2, 2));
    assert_eq!(
        w.ledger.reserve(&reservation(3, now), CAP).await.unwrap(),
        ReserveOutcome::Reserved
    );
    assert_eq!(
        w.ledger.reserve(&reservation(4, now), CAP).await.unwrap(),
        ReserveOutcome::PoolFull
    );
}
