//! The ledger contract ([`spotrunner_core::ports::ledger_contract`]) on SQLite,
//! each check on a fresh database file.

use spotrunner_core::ports::ledger_contract as contract;
use spotrunner_local::{Db, SqliteLedger};

fn ledger() -> (tempfile::TempDir, SqliteLedger) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("state.db")).expect("open db");
    (dir, SqliteLedger::new(db))
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_dir, l) = ledger();
            contract::$name(&l).await;
        }
    )*};
}

contract_tests!(
    claim_new_busy_duplicate,
    claim_after_lease_expiry,
    claim_requeued_needs_higher_attempt,
    claim_final_states_are_duplicates,
    update_and_get,
    reserve_pool_cap,
    reserve_global_cap_mixed_weights,
    reserve_already_reserved,
    release_idempotent,
    counters_never_negative,
    set_capacity_overwrites,
    list_all,
    record_job_state_ordering,
    concurrent_reserves_respect_pool_cap,
    concurrent_reserves_respect_global_cap,
    concurrent_claims_one_winner,
    concurrent_releases_one_winner,
    drain_flags,
    claim_launched_by_higher_attempt,
    update_only_at_attempt,
    transition_runner_compare_and_set,
    transition_runner_only_if_written_at,
    bind_runner_only_for_job,
    repair_capacity_only_if_unchanged,
    pool_health_no_lost_update,
    state_doc_no_lost_update,
    waiting_line_order_and_races,
);

/// Two connections on one file (serve and an operator command) see one ledger,
/// and concurrent reservations through both still respect the pool cap.
#[tokio::test]
async fn two_connections_share_the_caps() {
    use spotrunner_core::ports::{Ledger, Limits, ReserveOutcome};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let a = SqliteLedger::new(Db::open(&path).expect("open a"));
    let b = SqliteLedger::new(Db::open(&path).expect("open b"));
    let t0 = contract::base_time();
    let lim = Limits {
        pool_max: 3,
        weight: 1,
        global_max_weight: None,
    };
    let mut handles = Vec::new();
    for i in 0..10u64 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        let r = contract::runner(&format!("sr_cpu-{i}"), "cpu", i, 1, t0);
        handles.push(std::thread::spawn(move || {
            futures::executor::block_on(l.reserve(&r, lim)).expect("reserve")
        }));
    }
    let won = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .filter(|o| *o == ReserveOutcome::Reserved)
        .count();
    assert_eq!(won, 3);
    assert_eq!(a.capacity().await.expect("capacity").pools["cpu"], 3);
    b.set_drained("cpu", true, chrono::Utc::now())
        .await
        .expect("drain");
    assert!(a.is_drained("cpu").await.expect("is_drained"));
}

/// Four threads, each with its own connection to one file, 60 random requests
/// each, over 8 seeds: the final state is what the clients were told
/// ([`spotrunner_core::ports::ledger_interleave`]).
#[tokio::test]
async fn random_interleavings_across_connections_match_the_model() {
    use spotrunner_core::ports::ledger_interleave as il;
    for seed in 1..=8 {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let t0 = il::start();
        let handles: Vec<_> = (0..4)
            .map(|c| {
                let l = SqliteLedger::new(Db::open(&path).expect("open"));
                let ops = il::ops(seed, c, 60);
                std::thread::spawn(move || futures::executor::block_on(il::client(&l, &ops, t0)))
            })
            .collect();
        let told: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect();
        let l = SqliteLedger::new(Db::open(&path).expect("open"));
        il::check(&l, &told).await;
    }
}
