//! The contract every [`Ledger`] must meet, as checks any adapter's tests can run:
//! each `pub async fn` takes an empty ledger and panics on the first violation;
//! [`run_all`] runs them all, each on a fresh ledger.
//!
//! The checks use times rounded to whole seconds near the current time (so that
//! TTLs lie in the future) and run concurrent calls with
//! [`futures::future::join_all`], so they need no particular runtime.

use super::{
    CapacityUse, ClaimOutcome, JobChange, JobRecord, JobState, Ledger, Limits, LineOutcome,
    PortError, ReserveOutcome, RunnerChange, RunnerRecord, RunnerState, Stage,
};
use crate::job::{JobMessage, JobStateUpdate};
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::future::join_all;
use std::collections::BTreeMap;
use std::future::Future;

/// Every check, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[&str] = &[
    "claim_new_busy_duplicate",
    "claim_after_lease_expiry",
    "claim_requeued_needs_higher_attempt",
    "claim_final_states_are_duplicates",
    "update_and_get",
    "reserve_pool_cap",
    "reserve_global_cap_mixed_weights",
    "reserve_already_reserved",
    "release_idempotent",
    "counters_never_negative",
    "set_capacity_overwrites",
    "list_all",
    "record_job_state_ordering",
    "concurrent_reserves_respect_pool_cap",
    "concurrent_reserves_respect_global_cap",
    "concurrent_claims_one_winner",
    "concurrent_releases_one_winner",
    "drain_flags",
    "claim_launched_by_higher_attempt",
    "update_only_at_attempt",
    "transition_runner_compare_and_set",
    "transition_runner_only_if_written_at",
    "bind_runner_only_for_job",
    "repair_capacity_only_if_unchanged",
    "pool_health_no_lost_update",
    "state_doc_no_lost_update",
    "waiting_line_order_and_races",
];

/// Run every check, each on a fresh, empty ledger from `make`.
pub async fn run_all<L, F, Fut>(mut make: F)
where
    L: Ledger,
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
{
    for name in CHECKS {
        let ledger = make().await;
        run(name, &ledger).await;
    }
}

/// Run the check called `name` (one of [`CHECKS`]).
pub async fn run(name: &str, l: &dyn Ledger) {
    match name {
        "claim_new_busy_duplicate" => claim_new_busy_duplicate(l).await,
        "claim_after_lease_expiry" => claim_after_lease_expiry(l).await,
        "claim_requeued_needs_higher_attempt" => claim_requeued_needs_higher_attempt(l).await,
        "claim_final_states_are_duplicates" => claim_final_states_are_duplicates(l).await,
        "update_and_get" => update_and_get(l).await,
        "reserve_pool_cap" => reserve_pool_cap(l).await,
        "reserve_global_cap_mixed_weights" => reserve_global_cap_mixed_weights(l).await,
        "reserve_already_reserved" => reserve_already_reserved(l).await,
        "release_idempotent" => release_idempotent(l).await,
        "counters_never_negative" => counters_never_negative(l).await,
        "set_capacity_overwrites" => set_capacity_overwrites(l).await,
        "list_all" => list_all(l).await,
        "record_job_state_ordering" => record_job_state_ordering(l).await,
        "concurrent_reserves_respect_pool_cap" => concurrent_reserves_respect_pool_cap(l).await,
        "concurrent_reserves_respect_global_cap" => concurrent_reserves_respect_global_cap(l).await,
        "concurrent_claims_one_winner" => concurrent_claims_one_winner(l).await,
        "concurrent_releases_one_winner" => concurrent_releases_one_winner(l).await,
        "drain_flags" => drain_flags(l).await,
        "claim_launched_by_higher_attempt" => claim_launched_by_higher_attempt(l).await,
        "update_only_at_attempt" => update_only_at_attempt(l).await,
        "transition_runner_compare_and_set" => transition_runner_compare_and_set(l).await,
        "transition_runner_only_if_written_at" => transition_runner_only_if_written_at(l).await,
        "bind_runner_only_for_job" => bind_runner_only_for_job(l).await,
        "repair_capacity_only_if_unchanged" => repair_capacity_only_if_unchanged(l).await,
        "pool_health_no_lost_update" => pool_health_no_lost_update(l).await,
        "state_doc_no_lost_update" => state_doc_no_lost_update(l).await,
        "waiting_line_order_and_races" => waiting_line_order_and_races(l).await,
        other => panic!("no ledger contract check called {other}"),
    }
}

// ---------------------------------------------------------------- fixtures

/// Now, rounded down to the second (adapters may keep leases in epoch millis).
pub fn base_time() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::seconds(1))
        .expect("round to seconds")
}

/// When every fixture message was received: the wall clock the first time a
/// fixture asks, then the same instant for the whole process, so a message built
/// twice is the same message and is never received after a check's `base_time()`.
fn received_at() -> DateTime<Utc> {
    static AT: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *AT.get_or_init(base_time)
}

/// A job message for `job_id` in `pool` (built from JSON so that fields added to
/// the message with defaults need no change here).
pub fn job_message(job_id: u64, pool: &str, launch_attempt: u32) -> JobMessage {
    serde_json::from_value(serde_json::json!({
        "version": crate::job::JOB_MESSAGE_VERSION,
        "job_id": job_id,
        "run_id": job_id + 1000,
        "run_attempt": 1,
        "repository": "octo/repo",
        "owner": "octo",
        "owner_type": "Organization",
        "installation_id": 42,
        "labels": ["self-hosted", "linux"],
        "pool": pool,
        "delivery_id": format!("delivery-{job_id}"),
        "received_at": received_at(),
        "launch_attempt": launch_attempt,
    }))
    .expect("job message fixture")
}

/// A runner record in state `Reserved`, as create-runner builds it before `reserve`.
pub fn runner(
    name: &str,
    pool: &str,
    job_id: u64,
    weight: u32,
    now: DateTime<Utc>,
) -> RunnerRecord {
    RunnerRecord {
        name: name.to_string(),
        pool: pool.to_string(),
        job_id,
        weight,
        state: RunnerState::Reserved,
        instance_id: None,
        command_id: None,
        github_runner_id: None,
        jit_parameter: format!("/sr/jit/{name}"),
        created_at: now,
        launched_at: None,
        updated_at: now,
        end_reason: None,
    }
}

fn state_update(job_id: u64, status: &str, runner_name: &str, at: DateTime<Utc>) -> JobStateUpdate {
    serde_json::from_value(serde_json::json!({
        "job_id": job_id,
        "repository": "octo/repo",
        "status": status,
        "runner_name": runner_name,
        "runner_id": 7,
        "conclusion": if status == "completed" { Some("success") } else { None },
        "at": at,
    }))
    .expect("job state update fixture")
}

fn limits(pool_max: u32, weight: u32, global_max_weight: Option<u32>) -> Limits {
    Limits {
        pool_max,
        weight,
        global_max_weight,
    }
}

fn capacity(pools: &[(&str, u32)], weight: u32) -> CapacityUse {
    CapacityUse {
        pools: pools.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        weight,
    }
}

fn claimed(outcome: ClaimOutcome) -> JobRecord {
    match outcome {
        ClaimOutcome::Claimed(r) => r,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

fn busy(outcome: ClaimOutcome) -> JobRecord {
    match outcome {
        ClaimOutcome::Busy(r) => r,
        other => panic!("expected Busy, got {other:?}"),
    }
}

fn duplicate(outcome: ClaimOutcome) -> JobRecord {
    match outcome {
        ClaimOutcome::Duplicate(r) => r,
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

async fn claim(l: &dyn Ledger, msg: &JobMessage, now: DateTime<Utc>) -> ClaimOutcome {
    l.claim_job(msg, now, LEASE).await.expect("claim_job")
}

async fn job(l: &dyn Ledger, job_id: u64) -> JobRecord {
    l.get_job(job_id)
        .await
        .expect("get_job")
        .unwrap_or_else(|| panic!("job {job_id} should exist"))
}

async fn runner_record(l: &dyn Ledger, name: &str) -> RunnerRecord {
    l.get_runner(name)
        .await
        .expect("get_runner")
        .unwrap_or_else(|| panic!("runner {name} should exist"))
}

async fn set_job_state(l: &dyn Ledger, job_id: u64, state: JobState, now: DateTime<Utc>) {
    let change = JobChange {
        state: Some(state),
        ..JobChange::default()
    };
    l.update_job(job_id, &change, now)
        .await
        .expect("update_job");
}

const LEASE: Duration = Duration::seconds(60);

// ---------------------------------------------------------------- claims

/// A new job is claimed with a lease; a second claim meanwhile is `Busy`; once
/// launched, claims are `Duplicate`.
pub async fn claim_new_busy_duplicate(l: &dyn Ledger) {
    let t0 = base_time();
    let msg = job_message(101, "cpu", 0);
    let rec = claimed(claim(l, &msg, t0).await);
    assert_eq!(rec.job_id, 101);
    assert_eq!(rec.pool, "cpu");
    assert_eq!(rec.repository, "octo/repo");
    assert_eq!(rec.state, JobState::Claimed);
    assert_eq!(rec.launch_attempt, 0);
    assert_eq!(rec.lease_until, Some(t0 + LEASE));
    assert_eq!(rec.message, msg);
    assert_eq!(rec.created_at, t0);
    assert_eq!(rec.updated_at, t0);
    assert_eq!(rec.runner_name, None);
    assert_eq!(
        job(l, 101).await,
        rec,
        "get_job returns what the claim wrote"
    );

    let held = busy(claim(l, &msg, t0 + Duration::seconds(5)).await);
    assert_eq!(held, rec, "a busy claim changes nothing");

    set_job_state(l, 101, JobState::Launched, t0 + Duration::seconds(6)).await;
    let dup = duplicate(claim(l, &msg, t0 + Duration::seconds(7)).await);
    assert_eq!(dup.state, JobState::Launched);
    assert_eq!(job(l, 101).await, dup);
    // Other jobs are unaffected.
    claimed(claim(l, &job_message(102, "cpu", 0), t0).await);
}

/// A claim whose lease ran out is taken over with a new lease; the boundary
/// instant still belongs to the holder.
pub async fn claim_after_lease_expiry(l: &dyn Ledger) {
    let t0 = base_time();
    let msg = job_message(201, "cpu", 0);
    let first = claimed(claim(l, &msg, t0).await);
    busy(claim(l, &msg, t0 + Duration::seconds(30)).await);
    busy(claim(l, &msg, t0 + LEASE).await);
    let t1 = t0 + LEASE + Duration::seconds(1);
    let again = claimed(claim(l, &msg, t1).await);
    assert_eq!(again.lease_until, Some(t1 + LEASE));
    assert_eq!(again.state, JobState::Claimed);
    assert_eq!(again.created_at, first.created_at);
    assert_eq!(again.launch_attempt, 0);
    assert_eq!(job(l, 201).await, again);
    busy(claim(l, &msg, t1 + Duration::seconds(1)).await);

    // A claim whose lease was dropped is free too.
    let change = JobChange {
        clear_lease: true,
        ..JobChange::default()
    };
    l.update_job(201, &change, t1 + Duration::seconds(2))
        .await
        .expect("update_job");
    let t2 = t1 + Duration::seconds(3);
    let third = claimed(claim(l, &msg, t2).await);
    assert_eq!(third.lease_until, Some(t2 + LEASE));
}

/// A requeued job is claimed only by a message with a higher launch attempt.
pub async fn claim_requeued_needs_higher_attempt(l: &dyn Ledger) {
    let t0 = base_time();
    let first = claimed(claim(l, &job_message(301, "cpu", 0), t0).await);
    set_job_state(l, 301, JobState::Requeued, t0 + Duration::seconds(1)).await;

    let t1 = t0 + Duration::seconds(2);
    let stale = duplicate(claim(l, &job_message(301, "cpu", 0), t1).await);
    assert_eq!(stale.state, JobState::Requeued);
    assert_eq!(stale.launch_attempt, 0);

    let msg1 = job_message(301, "cpu", 1);
    let rec = claimed(claim(l, &msg1, t1).await);
    assert_eq!(rec.state, JobState::Claimed);
    assert_eq!(rec.launch_attempt, 1);
    assert_eq!(rec.message, msg1);
    assert_eq!(rec.lease_until, Some(t1 + LEASE));
    assert_eq!(rec.created_at, first.created_at);
    assert_eq!(job(l, 301).await, rec);

    // Now claimed with a live lease: a still newer message waits.
    busy(claim(l, &job_message(301, "cpu", 2), t1 + Duration::seconds(1)).await);

    // Requeued again at attempt 1: attempt 1 is a duplicate, attempt 2 claims.
    set_job_state(l, 301, JobState::Requeued, t1 + Duration::seconds(2)).await;
    let t2 = t1 + Duration::seconds(3);
    duplicate(claim(l, &msg1, t2).await);
    let rec2 = claimed(claim(l, &job_message(301, "cpu", 2), t2).await);
    assert_eq!(rec2.launch_attempt, 2);
}

/// Launched, running and finished jobs are duplicates, lease or not.
pub async fn claim_final_states_are_duplicates(l: &dyn Ledger) {
    let t0 = base_time();
    // (`Launched` is taken by a higher attempt: `claim_launched_by_higher_attempt`.)
    let states = [
        JobState::Running,
        JobState::Completed,
        JobState::Interrupted,
        JobState::Dropped,
        JobState::Failed,
    ];
    for (i, state) in states.into_iter().enumerate() {
        let id = 400 + i as u64;
        claimed(claim(l, &job_message(id, "cpu", 0), t0).await);
        set_job_state(l, id, state, t0 + Duration::seconds(1)).await;
        // Long after the lease, and with a newer attempt: still a duplicate.
        let later = t0 + Duration::hours(2);
        let rec = duplicate(claim(l, &job_message(id, "cpu", 5), later).await);
        assert_eq!(rec.state, state, "{state:?}");
        assert_eq!(rec.launch_attempt, 0, "{state:?}");
    }
}

/// Updates apply the given fields only, stamp `updated_at`, and need the item.
pub async fn update_and_get(l: &dyn Ledger) {
    let t0 = base_time();
    assert_eq!(l.get_job(501).await.expect("get_job"), None);
    assert_eq!(l.get_runner("sr-none").await.expect("get_runner"), None);
    let err = l
        .update_job(501, &JobChange::default(), t0)
        .await
        .expect_err("update of an unknown job");
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
    let err = l
        .update_runner("sr-none", &RunnerChange::default(), t0)
        .await
        .expect_err("update of an unknown runner");
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
    assert_eq!(l.get_job(501).await.expect("get_job"), None, "not created");
    assert_eq!(l.get_runner("sr-none").await.expect("get_runner"), None);

    let rec = claimed(claim(l, &job_message(501, "cpu", 0), t0).await);
    let t1 = t0 + Duration::seconds(10);
    let change = JobChange {
        state: Some(JobState::Launched),
        runner_name: Some("sr_cpu-501-0".into()),
        launch_attempt: Some(2),
        clear_lease: true,
        ..JobChange::default()
    };
    l.update_job(501, &change, t1).await.expect("update_job");
    let mut want = rec.clone();
    want.state = JobState::Launched;
    want.runner_name = Some("sr_cpu-501-0".into());
    want.launch_attempt = 2;
    want.lease_until = None;
    want.updated_at = t1;
    assert_eq!(job(l, 501).await, want);

    let t2 = t1 + Duration::seconds(1);
    l.update_job(501, &JobChange::default(), t2)
        .await
        .expect("update_job");
    want.updated_at = t2;
    assert_eq!(
        job(l, 501).await,
        want,
        "an empty change only stamps the time"
    );

    let r = runner("sr_cpu-501-0", "cpu", 501, 2, t0);
    assert_eq!(
        l.reserve(&r, limits(5, 2, None)).await.expect("reserve"),
        ReserveOutcome::Reserved
    );
    assert_eq!(runner_record(l, &r.name).await, r);
    let change = RunnerChange {
        state: Some(RunnerState::Launched),
        instance_id: Some("i-0123456789abcdef0".into()),
        command_id: None,
        github_runner_id: Some(77),
        launched_at: Some(t1),
        only_if_written_at: None,
        job_id: None,
        only_for_job: None,
    };
    l.update_runner(&r.name, &change, t1)
        .await
        .expect("update_runner");
    let change = RunnerChange {
        state: Some(RunnerState::Bootstrapped),
        command_id: Some("cmd-1".into()),
        ..RunnerChange::default()
    };
    l.update_runner(&r.name, &change, t2)
        .await
        .expect("update_runner");
    let mut want = r.clone();
    want.state = RunnerState::Bootstrapped;
    want.instance_id = Some("i-0123456789abcdef0".into());
    want.command_id = Some("cmd-1".into());
    want.github_runner_id = Some(77);
    want.launched_at = Some(t1);
    want.updated_at = t2;
    assert_eq!(runner_record(l, &r.name).await, want);
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("cpu", 1)], 2),
        "updates leave the counters alone"
    );
}

// ---------------------------------------------------------------- capacity

async fn reserve(l: &dyn Ledger, r: &RunnerRecord, lim: Limits) -> ReserveOutcome {
    l.reserve(r, lim).await.expect("reserve")
}

/// A pool takes `pool_max` runners; a full pool changes nothing; other pools are
/// counted apart; a release frees a slot.
pub async fn reserve_pool_cap(l: &dyn Ledger) {
    let t0 = base_time();
    let lim = limits(2, 1, None);
    let r1 = runner("sr-a-1", "a", 1, 1, t0);
    let r2 = runner("sr-a-2", "a", 2, 1, t0);
    let r3 = runner("sr-a-3", "a", 3, 1, t0);
    assert_eq!(reserve(l, &r1, lim).await, ReserveOutcome::Reserved);
    assert_eq!(reserve(l, &r2, lim).await, ReserveOutcome::Reserved);
    assert_eq!(reserve(l, &r3, lim).await, ReserveOutcome::PoolFull);
    assert_eq!(l.get_runner("sr-a-3").await.expect("get_runner"), None);
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 2)], 2)
    );

    let b1 = runner("sr-b-1", "b", 4, 1, t0);
    assert_eq!(reserve(l, &b1, lim).await, ReserveOutcome::Reserved);
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 2), ("b", 1)], 3)
    );
    // A pool with no room at all.
    let z = runner("sr-z-1", "z", 5, 1, t0);
    assert_eq!(
        reserve(l, &z, limits(0, 1, None)).await,
        ReserveOutcome::PoolFull
    );

    assert!(l.release("sr-a-1", "done", t0).await.expect("release"));
    assert_eq!(reserve(l, &r3, lim).await, ReserveOutcome::Reserved);
    assert_eq!(
        runner_record(l, "sr-a-3").await.state,
        RunnerState::Reserved
    );
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 2), ("b", 1)], 3)
    );
}

/// The global weighted quota holds across pools and weights.
pub async fn reserve_global_cap_mixed_weights(l: &dyn Ledger) {
    let t0 = base_time();
    let g = Some(10);
    let a1 = runner("sr-a-1", "a", 1, 4, t0);
    let a2 = runner("sr-a-2", "a", 2, 4, t0);
    let b1 = runner("sr-b-1", "b", 3, 3, t0);
    let b2 = runner("sr-b-2", "b", 4, 2, t0);
    let c1 = runner("sr-c-1", "c", 5, 1, t0);
    let huge = runner("sr-c-2", "c", 6, 11, t0);
    assert_eq!(
        reserve(l, &huge, limits(5, 11, g)).await,
        ReserveOutcome::GlobalFull
    );
    assert_eq!(
        reserve(l, &a1, limits(5, 4, g)).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        reserve(l, &a2, limits(5, 4, g)).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        reserve(l, &b1, limits(5, 3, g)).await,
        ReserveOutcome::GlobalFull
    );
    assert_eq!(l.get_runner("sr-b-1").await.expect("get_runner"), None);
    assert_eq!(
        reserve(l, &b2, limits(5, 2, g)).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 2), ("b", 1)], 10)
    );
    assert_eq!(
        reserve(l, &c1, limits(5, 1, g)).await,
        ReserveOutcome::GlobalFull
    );
    // The pool cap is checked too: a full pool is reported as such.
    let a3 = runner("sr-a-3", "a", 7, 1, t0);
    assert_eq!(
        reserve(l, &a3, limits(2, 1, g)).await,
        ReserveOutcome::PoolFull
    );

    assert!(l.release("sr-a-1", "done", t0).await.expect("release"));
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 1), ("b", 1)], 6)
    );
    assert_eq!(
        reserve(l, &b1, limits(5, 3, g)).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        reserve(l, &c1, limits(5, 1, g)).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 1), ("b", 2), ("c", 1)], 10)
    );
    // Without a global quota the weight is still counted, never capped.
    let d1 = runner("sr-d-1", "d", 8, 50, t0);
    assert_eq!(
        reserve(l, &d1, limits(5, 50, None)).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(l.capacity().await.expect("capacity").weight, 60);
    assert!(l.release("sr-d-1", "done", t0).await.expect("release"));
    assert_eq!(l.capacity().await.expect("capacity").weight, 10);
}

/// Reserving the same runner again is `AlreadyReserved` and takes nothing more,
/// even when the pool is full meanwhile; a released name may be reserved anew.
pub async fn reserve_already_reserved(l: &dyn Ledger) {
    let t0 = base_time();
    let lim = limits(1, 2, Some(4));
    let r = runner("sr-a-1", "a", 1, 2, t0);
    assert_eq!(reserve(l, &r, lim).await, ReserveOutcome::Reserved);
    assert_eq!(reserve(l, &r, lim).await, ReserveOutcome::AlreadyReserved);
    assert_eq!(
        reserve(l, &r, limits(5, 2, Some(100))).await,
        ReserveOutcome::AlreadyReserved
    );
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 1)], 2)
    );
    // The stored record is the first one, whatever the retry carried.
    let mut changed = r.clone();
    changed.jit_parameter = "/other".into();
    assert_eq!(
        reserve(l, &changed, lim).await,
        ReserveOutcome::AlreadyReserved
    );
    assert_eq!(runner_record(l, "sr-a-1").await, r);

    // Launched (or later) runners are still "already reserved".
    let change = RunnerChange {
        state: Some(RunnerState::Launched),
        ..RunnerChange::default()
    };
    l.update_runner("sr-a-1", &change, t0)
        .await
        .expect("update_runner");
    assert_eq!(reserve(l, &r, lim).await, ReserveOutcome::AlreadyReserved);

    assert!(l.release("sr-a-1", "done", t0).await.expect("release"));
    assert_eq!(l.capacity().await.expect("capacity"), capacity(&[], 0));
    assert_eq!(reserve(l, &r, lim).await, ReserveOutcome::Reserved);
    assert_eq!(
        runner_record(l, "sr-a-1").await.state,
        RunnerState::Reserved
    );
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 1)], 2)
    );
}

/// Releasing marks the runner, gives its capacity back once, and is a no-op after.
pub async fn release_idempotent(l: &dyn Ledger) {
    let t0 = base_time();
    let r1 = runner("sr-a-1", "a", 1, 3, t0);
    let r2 = runner("sr-a-2", "a", 2, 3, t0);
    assert_eq!(
        reserve(l, &r1, limits(5, 3, Some(20))).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        reserve(l, &r2, limits(5, 3, Some(20))).await,
        ReserveOutcome::Reserved
    );
    let t1 = t0 + Duration::seconds(30);
    assert!(
        l.release("sr-a-1", "job completed", t1)
            .await
            .expect("release")
    );
    let rec = runner_record(l, "sr-a-1").await;
    assert_eq!(rec.state, RunnerState::Released);
    assert_eq!(rec.end_reason.as_deref(), Some("job completed"));
    assert_eq!(rec.updated_at, t1);
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 1)], 3)
    );

    let t2 = t1 + Duration::seconds(30);
    assert!(!l.release("sr-a-1", "again", t2).await.expect("release"));
    assert_eq!(
        runner_record(l, "sr-a-1").await,
        rec,
        "a second release changes nothing"
    );
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 1)], 3)
    );
    assert!(!l.release("sr-unknown", "x", t2).await.expect("release"));
    assert_eq!(l.get_runner("sr-unknown").await.expect("get_runner"), None);
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 1)], 3)
    );

    assert!(l.release("sr-a-2", "done", t2).await.expect("release"));
    assert_eq!(l.capacity().await.expect("capacity"), capacity(&[], 0));
}

/// Counters clamp at zero when a repair set them lower than the live runners.
pub async fn counters_never_negative(l: &dyn Ledger) {
    let t0 = base_time();
    let r1 = runner("sr-a-1", "a", 1, 3, t0);
    let r2 = runner("sr-a-2", "a", 2, 3, t0);
    assert_eq!(
        reserve(l, &r1, limits(5, 3, Some(10))).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        reserve(l, &r2, limits(5, 3, Some(10))).await,
        ReserveOutcome::Reserved
    );
    l.set_capacity(&capacity(&[("a", 1)], 1))
        .await
        .expect("set_capacity");
    assert!(l.release("sr-a-1", "done", t0).await.expect("release"));
    assert_eq!(l.capacity().await.expect("capacity"), capacity(&[], 0));
    assert!(l.release("sr-a-2", "done", t0).await.expect("release"));
    assert_eq!(l.capacity().await.expect("capacity"), capacity(&[], 0));
    // The counters still work (no wrap-around to a huge value).
    let r3 = runner("sr-a-3", "a", 3, 3, t0);
    assert_eq!(
        reserve(l, &r3, limits(1, 3, Some(3))).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 1)], 3)
    );
    let r4 = runner("sr-a-4", "a", 4, 3, t0);
    assert_eq!(
        reserve(l, &r4, limits(1, 3, Some(3))).await,
        ReserveOutcome::PoolFull
    );
}

/// `set_capacity` replaces every counter; later reservations count from there.
pub async fn set_capacity_overwrites(l: &dyn Ledger) {
    let t0 = base_time();
    for (name, pool) in [("sr-a-1", "a"), ("sr-a-2", "a"), ("sr-b-1", "b")] {
        let r = runner(name, pool, 1, 2, t0);
        assert_eq!(
            reserve(l, &r, limits(5, 2, None)).await,
            ReserveOutcome::Reserved
        );
    }
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 2), ("b", 1)], 6)
    );
    let repaired = capacity(&[("a", 1), ("c", 4)], 7);
    l.set_capacity(&repaired).await.expect("set_capacity");
    assert_eq!(
        l.capacity().await.expect("capacity"),
        repaired,
        "b was dropped"
    );

    let a3 = runner("sr-a-3", "a", 3, 2, t0);
    let a4 = runner("sr-a-4", "a", 4, 2, t0);
    assert_eq!(
        reserve(l, &a3, limits(2, 2, Some(9))).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        reserve(l, &a4, limits(2, 2, Some(20))).await,
        ReserveOutcome::PoolFull
    );
    let c5 = runner("sr-c-5", "c", 5, 1, t0);
    assert_eq!(
        reserve(l, &c5, limits(9, 1, Some(9))).await,
        ReserveOutcome::GlobalFull
    );
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("a", 2), ("c", 4)], 9)
    );
    l.set_capacity(&CapacityUse::default())
        .await
        .expect("set_capacity");
    assert_eq!(
        l.capacity().await.expect("capacity"),
        CapacityUse::default()
    );
}

/// The lists hold every job and every runner (released ones included).
pub async fn list_all(l: &dyn Ledger) {
    let t0 = base_time();
    assert!(l.list_jobs().await.expect("list_jobs").is_empty());
    assert!(l.list_runners().await.expect("list_runners").is_empty());
    let mut want_jobs = Vec::new();
    for id in 1..=25u64 {
        want_jobs.push(claimed(claim(l, &job_message(id, "cpu", 0), t0).await));
    }
    let mut want_runners = Vec::new();
    for i in 0..12u64 {
        let r = runner(&format!("sr_cpu-{i:02}"), "cpu", i, 1, t0);
        assert_eq!(
            reserve(l, &r, limits(100, 1, None)).await,
            ReserveOutcome::Reserved
        );
        want_runners.push(r);
    }
    assert!(l.release("sr_cpu-00", "done", t0).await.expect("release"));
    want_runners[0].state = RunnerState::Released;
    want_runners[0].end_reason = Some("done".into());

    let mut jobs = l.list_jobs().await.expect("list_jobs");
    jobs.sort_by_key(|j| j.job_id);
    assert_eq!(jobs, want_jobs);
    let mut runners = l.list_runners().await.expect("list_runners");
    runners.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(runners, want_runners);
}

/// `in_progress` / `completed` land on known jobs; a late `in_progress` never
/// undoes `completed`; unknown jobs are skipped.
pub async fn record_job_state_ordering(l: &dyn Ledger) {
    let t0 = base_time();
    l.record_job_state(&state_update(601, "in_progress", "sr-x", t0))
        .await
        .expect("record unknown job");
    assert_eq!(
        l.get_job(601).await.expect("get_job"),
        None,
        "unknown jobs are skipped"
    );

    claimed(claim(l, &job_message(602, "cpu", 0), t0).await);
    set_job_state(l, 602, JobState::Launched, t0).await;
    let t1 = t0 + Duration::seconds(1);
    l.record_job_state(&state_update(602, "in_progress", "sr_cpu-602-0", t1))
        .await
        .expect("record");
    let rec = job(l, 602).await;
    assert_eq!(rec.state, JobState::Running);
    assert_eq!(rec.taken_by.as_deref(), Some("sr_cpu-602-0"));
    assert_eq!(rec.updated_at, t1);

    let t2 = t1 + Duration::seconds(1);
    l.record_job_state(&state_update(602, "completed", "sr_cpu-602-0", t2))
        .await
        .expect("record");
    let done = job(l, 602).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.taken_by.as_deref(), Some("sr_cpu-602-0"));

    l.record_job_state(&state_update(
        602,
        "in_progress",
        "sr-late",
        t2 + Duration::seconds(1),
    ))
    .await
    .expect("late in_progress");
    assert_eq!(
        job(l, 602).await,
        done,
        "a late in_progress changes nothing"
    );

    // Both events at once, for many jobs: completed always wins.
    let ids: Vec<u64> = (610..620).collect();
    for id in &ids {
        claimed(claim(l, &job_message(*id, "cpu", 0), t0).await);
    }
    let updates: Vec<(JobStateUpdate, JobStateUpdate)> = ids
        .iter()
        .map(|id| {
            (
                state_update(*id, "completed", "sr-c", t2),
                state_update(*id, "in_progress", "sr-c", t1),
            )
        })
        .collect();
    let results = join_all(updates.iter().flat_map(|(done, running)| {
        // In either order, the job ends up completed.
        [l.record_job_state(done), l.record_job_state(running)]
    }))
    .await;
    for r in results {
        r.expect("record");
    }
    for id in ids {
        assert_eq!(job(l, id).await.state, JobState::Completed, "job {id}");
    }
}

// ---------------------------------------------------------------- concurrency

/// 40 reservations at once on a pool of 5: exactly 5 win.
pub async fn concurrent_reserves_respect_pool_cap(l: &dyn Ledger) {
    let t0 = base_time();
    let runners: Vec<RunnerRecord> = (0..40u64)
        .map(|i| runner(&format!("sr_cpu-{i:02}"), "cpu", i, 1, t0))
        .collect();
    let lim = limits(5, 1, None);
    let outcomes = join_all(runners.iter().map(|r| l.reserve(r, lim))).await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes {
        *counts
            .entry(format!("{:?}", o.expect("reserve")))
            .or_default() += 1;
    }
    assert_eq!(counts.get("Reserved"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("PoolFull"), Some(&35), "{counts:?}");
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("cpu", 5)], 5)
    );
    let live = l.list_runners().await.expect("list_runners");
    assert_eq!(live.len(), 5, "only the winners are stored");
    assert!(live.iter().all(|r| r.state == RunnerState::Reserved));
}

/// Mixed weights at once across pools: the global quota is never passed and the
/// counter matches the winners exactly.
pub async fn concurrent_reserves_respect_global_cap(l: &dyn Ledger) {
    let t0 = base_time();
    let global = 10u32;
    let runners: Vec<RunnerRecord> = (0..24u64)
        .map(|i| {
            let pool = format!("p{}", i % 4);
            runner(
                &format!("sr-{pool}-{i:02}"),
                &pool,
                i,
                (i % 4 + 1) as u32,
                t0,
            )
        })
        .collect();
    let outcomes = join_all(
        runners
            .iter()
            .map(|r| l.reserve(r, limits(10, r.weight, Some(global)))),
    )
    .await;
    let mut used = 0u32;
    let mut rejected = Vec::new();
    let mut pools: BTreeMap<String, u32> = BTreeMap::new();
    for (r, o) in runners.iter().zip(outcomes) {
        match o.expect("reserve") {
            ReserveOutcome::Reserved => {
                used += r.weight;
                *pools.entry(r.pool.clone()).or_default() += 1;
            }
            ReserveOutcome::GlobalFull => rejected.push(r.weight),
            other => panic!("{}: unexpected {other:?}", r.name),
        }
    }
    assert!(used <= global, "global quota passed: {used}");
    assert!(!rejected.is_empty());
    for w in rejected {
        assert!(
            used + w > global,
            "a weight-{w} reservation was refused at {used}"
        );
    }
    let cap = l.capacity().await.expect("capacity");
    assert_eq!(cap.weight, used);
    assert_eq!(cap.pools, pools);
    let stored = l.list_runners().await.expect("list_runners");
    assert_eq!(stored.iter().map(|r| r.weight).sum::<u32>(), used);
}

/// 30 claims of one job at once: exactly one wins, the rest see it busy.
pub async fn concurrent_claims_one_winner(l: &dyn Ledger) {
    let t0 = base_time();
    let msg = job_message(701, "cpu", 0);
    let outcomes = join_all((0..30).map(|_| l.claim_job(&msg, t0, LEASE))).await;
    let (mut won, mut busy_n) = (0, 0);
    for o in outcomes {
        match o.expect("claim_job") {
            ClaimOutcome::Claimed(r) => {
                won += 1;
                assert_eq!(r.lease_until, Some(t0 + LEASE));
            }
            ClaimOutcome::Busy(r) => {
                busy_n += 1;
                assert_eq!(r.state, JobState::Claimed);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won, busy_n), (1, 29));
    assert_eq!(job(l, 701).await.state, JobState::Claimed);

    // The same race over an expired lease: again exactly one taker.
    let t1 = t0 + LEASE + Duration::seconds(1);
    let outcomes = join_all((0..30).map(|_| l.claim_job(&msg, t1, LEASE))).await;
    let won = outcomes
        .into_iter()
        .filter(|o| matches!(o.as_ref().expect("claim_job"), ClaimOutcome::Claimed(_)))
        .count();
    assert_eq!(won, 1);
    assert_eq!(job(l, 701).await.lease_until, Some(t1 + LEASE));
}

/// Ten releases of one runner at once: exactly one gives capacity back.
pub async fn concurrent_releases_one_winner(l: &dyn Ledger) {
    let t0 = base_time();
    let keep = runner("sr-cpu-keep", "cpu", 1, 2, t0);
    let gone = runner("sr-cpu-gone", "cpu", 2, 3, t0);
    assert_eq!(
        reserve(l, &keep, limits(5, 2, Some(10))).await,
        ReserveOutcome::Reserved
    );
    assert_eq!(
        reserve(l, &gone, limits(5, 3, Some(10))).await,
        ReserveOutcome::Reserved
    );
    let outcomes = join_all((0..10).map(|_| l.release("sr-cpu-gone", "done", t0))).await;
    let released = outcomes
        .into_iter()
        .filter(|o| *o.as_ref().expect("release"))
        .count();
    assert_eq!(released, 1);
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("cpu", 1)], 2)
    );
    assert_eq!(
        runner_record(l, "sr-cpu-gone").await.state,
        RunnerState::Released
    );
}

/// Draining is a per-pool flag: set twice, cleared twice, seen by both reads.
pub async fn drain_flags(l: &dyn Ledger) {
    let now = base_time();
    assert!(l.drained_pools().await.expect("drained_pools").is_empty());
    assert!(!l.is_drained("cpu").await.expect("is_drained"));
    l.set_drained("cpu", true, now).await.expect("drain");
    l.set_drained("cpu", true, now).await.expect("drain twice");
    l.set_drained("gpu", true, now).await.expect("drain");
    assert!(l.is_drained("cpu").await.expect("is_drained"));
    assert!(!l.is_drained("arm").await.expect("is_drained"));
    let pools: Vec<String> = l
        .drained_pools()
        .await
        .expect("drained_pools")
        .into_iter()
        .collect();
    assert_eq!(pools, ["cpu", "gpu"]);
    l.set_drained("cpu", false, now).await.expect("undrain");
    l.set_drained("cpu", false, now)
        .await
        .expect("undrain twice");
    assert!(!l.is_drained("cpu").await.expect("is_drained"));
    assert!(l.is_drained("gpu").await.expect("is_drained"));
}

/// A requeue sends its message before it marks the job: the higher attempt
/// takes a job that still says `Launched`; the same attempt is a duplicate.
pub async fn claim_launched_by_higher_attempt(l: &dyn Ledger) {
    let t0 = base_time();
    claimed(claim(l, &job_message(601, "cpu", 0), t0).await);
    let launched = JobChange {
        state: Some(JobState::Launched),
        runner_name: Some("sr_cpu-601-0".into()),
        clear_lease: true,
        ..JobChange::default()
    };
    l.update_job(601, &launched, t0).await.expect("update_job");
    duplicate(claim(l, &job_message(601, "cpu", 0), t0).await);
    let rec = claimed(claim(l, &job_message(601, "cpu", 1), t0).await);
    assert_eq!((rec.state, rec.launch_attempt), (JobState::Claimed, 1));
    busy(claim(l, &job_message(601, "cpu", 1), t0).await);
    // A claim whose lease ran out is taken by a higher attempt at that attempt.
    let later = t0 + Duration::minutes(10);
    let rec = claimed(claim(l, &job_message(601, "cpu", 2), later).await);
    assert_eq!(rec.launch_attempt, 2);
}

/// `only_at_attempt` guards a change against a claim that moved the job on.
pub async fn update_only_at_attempt(l: &dyn Ledger) {
    let t0 = base_time();
    claimed(claim(l, &job_message(602, "cpu", 3), t0).await);
    let stale = JobChange {
        state: Some(JobState::Requeued),
        clear_lease: true,
        only_at_attempt: Some(2),
        ..JobChange::default()
    };
    l.update_job(602, &stale, t0).await.expect("update_job");
    let rec = job(l, 602).await;
    assert_eq!(rec.state, JobState::Claimed, "a stale change is skipped");
    assert!(rec.lease_until.is_some());
    let current = JobChange {
        only_at_attempt: Some(3),
        ..stale
    };
    l.update_job(602, &current, t0).await.expect("update_job");
    assert_eq!(job(l, 602).await.state, JobState::Requeued);
}

/// Exactly one of concurrent transitions from the same state wins.
pub async fn transition_runner_compare_and_set(l: &dyn Ledger) {
    let t0 = base_time();
    let r = runner("sr_cpu-603-0", "cpu", 603, 1, t0);
    assert_eq!(
        l.reserve(&r, limits(5, 1, None)).await.expect("reserve"),
        ReserveOutcome::Reserved
    );
    let to = |state| RunnerChange {
        state: Some(state),
        ..RunnerChange::default()
    };
    let cas = |from: &'static [RunnerState], state| {
        let change = to(state);
        async move {
            l.transition_runner("sr_cpu-603-0", from, &change, t0)
                .await
                .expect("transition_runner")
        }
    };
    assert!(!cas(&[RunnerState::Launched], RunnerState::Bootstrapping).await);
    assert!(cas(&[RunnerState::Reserved], RunnerState::Launched).await);
    let wins = join_all((0..6).map(|_| cas(&[RunnerState::Launched], RunnerState::Bootstrapping)))
        .await
        .into_iter()
        .filter(|won| *won)
        .count();
    assert_eq!(wins, 1);
    let rec = l
        .get_runner("sr_cpu-603-0")
        .await
        .expect("get")
        .expect("runner");
    assert_eq!(rec.state, RunnerState::Bootstrapping);
    assert!(
        !l.transition_runner(
            "sr-none",
            &[RunnerState::Reserved],
            &to(RunnerState::Launched),
            t0
        )
        .await
        .expect("unknown runner"),
        "an unknown runner never transitions"
    );
}

/// `only_if_written_at`: of steps that read the same record, one wins, even
/// when the state they expect is back again by then (A→B→A); `update_runner`
/// honours it too.
pub async fn transition_runner_only_if_written_at(l: &dyn Ledger) {
    let t0 = base_time();
    let (t1, t2) = (t0 + Duration::seconds(1), t0 + Duration::seconds(2));
    let name = "sr_cpu-604-0";
    let r = runner(name, "cpu", 604, 1, t0);
    assert_eq!(
        l.reserve(&r, limits(5, 1, None)).await.expect("reserve"),
        ReserveOutcome::Reserved
    );
    let boot = RunnerState::Bootstrapping;
    let to_boot = RunnerChange {
        state: Some(boot),
        ..RunnerChange::default()
    };
    assert!(
        l.transition_runner(name, &[RunnerState::Reserved], &to_boot, t1)
            .await
            .expect("transition")
    );
    // Two steps read it (written at t1) and both try to take it over.
    let retake = RunnerChange {
        only_if_written_at: Some(t1),
        ..to_boot.clone()
    };
    let from = [boot];
    let wins = join_all((0..4).map(|_| l.transition_runner(name, &from, &retake, t2)))
        .await
        .into_iter()
        .map(|r| r.expect("transition"))
        .filter(|won| *won)
        .count();
    assert_eq!(wins, 1, "one step takes it over");
    let rec = l.get_runner(name).await.expect("get").expect("runner");
    assert_eq!((rec.state, rec.updated_at), (boot, t2));
    // Same state as read, another write since: refused, and so is an update.
    assert!(
        !l.transition_runner(name, &[boot], &retake, t2)
            .await
            .expect("stale")
    );
    let stale_update = RunnerChange {
        command_id: Some("cmd-stale".into()),
        only_if_written_at: Some(t1),
        ..RunnerChange::default()
    };
    l.update_runner(name, &stale_update, t2)
        .await
        .expect("update_runner");
    let rec = l.get_runner(name).await.expect("get").expect("runner");
    assert_eq!(rec.command_id, None, "a stale update changes nothing");
}

/// Binding a free runner (`job_id` 0) to the job GitHub gave it
/// (`crate::hot`): of concurrent binds from the same reading, one wins; a
/// bind that expects another job changes nothing; the job id is stored.
pub async fn bind_runner_only_for_job(l: &dyn Ledger) {
    let t0 = base_time();
    let t1 = t0 + Duration::seconds(1);
    let name = "sr_cpu-0-605";
    let r = runner(name, "cpu", 0, 1, t0);
    assert_eq!(
        l.reserve(&r, limits(5, 1, None)).await.expect("reserve"),
        ReserveOutcome::Reserved
    );
    let live = [RunnerState::Reserved, RunnerState::Bootstrapped];
    let bind = |job: u64| RunnerChange {
        job_id: Some(job),
        only_for_job: Some(0),
        ..RunnerChange::default()
    };
    let wins = join_all((1..=4).map(|j| {
        let change = bind(700 + j);
        async move { l.transition_runner(name, &live, &change, t1).await }
    }))
    .await
    .into_iter()
    .map(|r| r.expect("transition"))
    .filter(|won| *won)
    .count();
    assert_eq!(wins, 1, "one job gets the free runner");
    let rec = l.get_runner(name).await.expect("get").expect("runner");
    assert!((701..=704).contains(&rec.job_id), "bound: {}", rec.job_id);
    assert!(
        !l.transition_runner(name, &live, &bind(799), t1)
            .await
            .expect("stale bind"),
        "a bound runner is not free any more"
    );
    let free_again = RunnerChange {
        job_id: Some(0),
        only_for_job: Some(rec.job_id),
        ..RunnerChange::default()
    };
    assert!(
        l.transition_runner(name, &live, &free_again, t1)
            .await
            .expect("free")
    );
    let rec = l.get_runner(name).await.expect("get").expect("runner");
    assert_eq!(rec.job_id, 0);
}

/// The janitor's repair writes only over the counters it saw.
pub async fn repair_capacity_only_if_unchanged(l: &dyn Ledger) {
    let t0 = base_time();
    for i in 0..2 {
        let r = runner(&format!("sr_cpu-61{i}-0"), "cpu", 610 + i, 2, t0);
        l.reserve(&r, limits(10, 2, Some(100)))
            .await
            .expect("reserve");
    }
    let seen = l.capacity().await.expect("capacity");
    assert_eq!(seen, capacity(&[("cpu", 2)], 4));
    // A reservation lands between the janitor's read and its repair.
    let r = runner("sr_cpu-612-0", "cpu", 612, 2, t0);
    l.reserve(&r, limits(10, 2, Some(100)))
        .await
        .expect("reserve");
    let wrong = capacity(&[("cpu", 1)], 2);
    assert!(!l.repair_capacity(&seen, &wrong).await.expect("repair"));
    assert_eq!(
        l.capacity().await.expect("capacity"),
        capacity(&[("cpu", 3)], 6)
    );
    let now_seen = l.capacity().await.expect("capacity");
    let fixed = capacity(&[("gpu", 1)], 4);
    assert!(l.repair_capacity(&now_seen, &fixed).await.expect("repair"));
    assert_eq!(l.capacity().await.expect("capacity"), fixed);
}

/// Concurrent read-modify-writes of a pool's health lose no update.
pub async fn pool_health_no_lost_update(l: &dyn Ledger) {
    let t0 = base_time();
    let policy = crate::config::RelaunchPolicy {
        circuit_failures: 100,
        ..Default::default()
    };
    let fresh = l.pool_health("cpu").await.expect("pool_health");
    assert_eq!(fresh, crate::circuit::PoolHealth::new("cpu"));
    assert!(l.list_pool_health().await.expect("list").is_empty());
    let record = |i: u32| {
        let policy = policy.clone();
        async move {
            l.update_pool_health("cpu", &|h: &mut crate::circuit::PoolHealth| {
                h.record_failure(&format!("sr_cpu-{i}-0"), "exit 1", t0, &policy)
            })
            .await
            .expect("update_pool_health")
        }
    };
    join_all((0..6).map(record)).await;
    let health = l.pool_health("cpu").await.expect("pool_health");
    assert_eq!(health.failures.len(), 6, "{health:?}");
    // Unchanged records are not written; the list holds what exists.
    let same = l
        .update_pool_health("gpu", &|_h: &mut crate::circuit::PoolHealth| false)
        .await
        .expect("no-op update");
    assert_eq!(same, crate::circuit::PoolHealth::new("gpu"));
    let pools: Vec<String> = l
        .list_pool_health()
        .await
        .expect("list")
        .into_iter()
        .map(|h| h.pool)
        .collect();
    assert_eq!(pools, ["cpu"]);
}

/// Concurrent read-modify-writes of a state document lose no update; a no-op
/// writes nothing; documents are kept apart by key.
pub async fn state_doc_no_lost_update(l: &dyn Ledger) {
    assert_eq!(l.state_doc("redelivery").await.expect("state_doc"), None);
    let none = l
        .update_state_doc("redelivery", &|_d: &mut Option<serde_json::Value>| false)
        .await
        .expect("no-op update");
    assert_eq!(none, None);
    assert_eq!(l.state_doc("redelivery").await.expect("state_doc"), None);
    let add = |i: u64| async move {
        l.update_state_doc("redelivery", &|d: &mut Option<serde_json::Value>| {
            let doc = d.get_or_insert_with(|| serde_json::json!({ "seen": [] }));
            doc["seen"]
                .as_array_mut()
                .expect("seen is an array")
                .push(i.into());
            true
        })
        .await
        .expect("update_state_doc")
    };
    join_all((0..6).map(add)).await;
    let doc = l
        .state_doc("redelivery")
        .await
        .expect("state_doc")
        .expect("written");
    let mut seen: Vec<u64> = doc["seen"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_u64().expect("number"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 4, 5], "{doc}");
    assert_eq!(l.state_doc("sweep").await.expect("state_doc"), None);
    let unset = l
        .update_state_doc("sweep", &|d: &mut Option<serde_json::Value>| {
            *d = None;
            true
        })
        .await;
    assert!(unset.is_err(), "unsetting a document is refused: {unset:?}");
}

/// Jobs enter a pool's line at once (concurrent create-runner invocations):
/// every one lands, in GitHub's queue order, `Waiting` with its lease dropped;
/// only the claimant at that attempt may put a job in line; a woken job is
/// claimed again and leaves the line once; marks and leaves are idempotent.
pub async fn waiting_line_order_and_races(l: &dyn Ledger) {
    let t = base_time();
    let queued = |job_id: u64| {
        let mut m = job_message(job_id, "a", 0);
        // Delivered in any order; GitHub queued job n at t - 100 + n.
        m.queued_at = Some(t - Duration::seconds(100) + Duration::seconds(job_id as i64));
        m
    };
    for job_id in 1..=6 {
        claimed(claim(l, &queued(job_id), t).await);
    }
    let entered = join_all((1..=6).rev().map(|j| l.enter_line("a", j, 0, t))).await;
    for e in entered {
        assert_eq!(e.expect("enter_line"), LineOutcome::Entered);
    }
    let line = l.waiting_line("a").await.expect("line");
    let order: Vec<u64> = line.waiters.iter().map(|w| w.job_id).collect();
    assert_eq!(order, [1, 2, 3, 4, 5, 6], "GitHub's order, none lost");
    let j3 = job(l, 3).await;
    assert_eq!(j3.state, JobState::Waiting);
    assert_eq!(j3.lease_until, None);
    assert_eq!(j3.timeline.get(Stage::WaitingSince), Some(t));
    // Not claimed at that attempt: refused, nothing changes.
    assert_eq!(
        l.enter_line("a", 3, 1, t).await.expect("enter_line"),
        LineOutcome::NotOurs
    );
    assert_eq!(
        l.enter_line("a", 99, 0, t).await.expect("enter_line"),
        LineOutcome::NotOurs
    );
    // Two wakes of the same jobs at once, and the woken job claimed again.
    join_all([l.mark_woken("a", &[1, 2], t), l.mark_woken("a", &[2, 1], t)]).await;
    let line = l.waiting_line("a").await.expect("line");
    let woken: Vec<u64> = line
        .waiters
        .iter()
        .filter(|w| w.woken_at.is_some())
        .map(|w| w.job_id)
        .collect();
    assert_eq!(woken, [1, 2]);
    assert_eq!(
        claimed(claim(l, &queued(1), t).await).state,
        JobState::Claimed
    );
    // Leaving at once from several callers, and for jobs not in line.
    join_all([
        l.leave_line("a", 1),
        l.leave_line("a", 1),
        l.leave_line("a", 4),
        l.leave_line("a", 77),
    ])
    .await
    .into_iter()
    .for_each(|r| r.expect("leave_line"));
    let line = l.waiting_line("a").await.expect("line");
    let order: Vec<u64> = line.waiters.iter().map(|w| w.job_id).collect();
    assert_eq!(order, [2, 3, 5, 6]);
    assert!(l.waiting_line("b").await.expect("line").is_empty());
    // What a wake reads: the pool's counter and the weight, nothing else.
    assert_eq!(l.pool_use("a").await.expect("pool_use"), (0, 0));
    for name in ["rl-a-1", "rl-a-2"] {
        let r = runner(name, "a", 1, 3, t);
        assert_eq!(
            reserve(l, &r, limits(5, 3, Some(20))).await,
            ReserveOutcome::Reserved
        );
    }
    assert_eq!(l.pool_use("a").await.expect("pool_use"), (2, 6));
    assert_eq!(l.pool_use("b").await.expect("pool_use"), (0, 6));
}
