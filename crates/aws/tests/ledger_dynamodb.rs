//! The ledger contract ([`spotrunner_core::ports::ledger_contract`]) against the
//! DynamoDB adapter on moto, plus what only the adapter has: the item layout, TTL,
//! pagination past a page, the table helper.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use spotrunner_aws::dynamodb::{DynamoLedger, TTL, create_table};
use spotrunner_core::ports::ledger_contract as contract;
use spotrunner_core::ports::{Ledger, ReserveOutcome};
use spotrunner_testkit::moto;

const TABLE: &str = "sr-ledger";

struct Env {
    _moto: moto::SharedMoto,
    client: Client,
    ledger: DynamoLedger,
}

async fn env() -> Env {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let client = Client::new(&sdk);
    create_table(&client, TABLE).await.expect("create table");
    Env {
        ledger: DynamoLedger::new(&sdk, TABLE),
        client,
        _moto: moto,
    }
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let env = env().await;
            contract::$name(&env.ledger).await;
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

/// Every check is wired above (a new check in the contract fails this test until
/// it is added here too).
#[test]
fn every_contract_check_is_run() {
    let source = include_str!("ledger_dynamodb.rs");
    for name in contract::CHECKS {
        assert!(
            source.contains(&format!("    {name},\n")),
            "contract check {name} is not run against DynamoDB"
        );
    }
}

async fn raw(env: &Env, pk: &str) -> std::collections::HashMap<String, AttributeValue> {
    env.client
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(pk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
        .unwrap_or_else(|| panic!("{pk} missing"))
}

fn num(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> i64 {
    item[name].as_n().expect("number").parse().expect("integer")
}

#[tokio::test]
async fn items_carry_state_lease_and_ttl() {
    let env = env().await;
    let t0 = contract::base_time();
    let msg = contract::job_message(9, "cpu", 0);
    env.ledger
        .claim_job(&msg, t0, chrono::Duration::seconds(90))
        .await
        .expect("claim");
    let job = raw(&env, "job#9").await;
    assert_eq!(job["state"].as_s().unwrap(), "claimed");
    assert_eq!(
        num(&job, "lease_until"),
        (t0 + chrono::Duration::seconds(90)).timestamp_millis()
    );
    assert_eq!(num(&job, "launch_attempt"), 0);
    assert_eq!(num(&job, "expires_at"), (t0 + TTL).timestamp());
    assert_eq!(TTL, chrono::Duration::days(7));

    let r = contract::runner("sr_cpu-9-0", "cpu", 9, 2, t0);
    let limits = spotrunner_core::ports::Limits {
        pool_max: 3,
        weight: 2,
        global_max_weight: Some(8),
    };
    assert_eq!(
        env.ledger.reserve(&r, limits).await.unwrap(),
        ReserveOutcome::Reserved
    );
    let item = raw(&env, "runner#sr_cpu-9-0").await;
    assert_eq!(item["state"].as_s().unwrap(), "reserved");
    assert_eq!(num(&item, "expires_at"), (t0 + TTL).timestamp());
    assert_eq!(num(&raw(&env, "capacity#pool#cpu").await, "count"), 1);
    assert_eq!(num(&raw(&env, "capacity#global").await, "weight_used"), 2);

    let later = t0 + chrono::Duration::hours(3);
    assert!(
        env.ledger
            .release("sr_cpu-9-0", "done", later)
            .await
            .unwrap()
    );
    let item = raw(&env, "runner#sr_cpu-9-0").await;
    assert_eq!(item["state"].as_s().unwrap(), "released");
    assert_eq!(
        num(&item, "expires_at"),
        (later + TTL).timestamp(),
        "TTL moves with updates"
    );
    assert_eq!(num(&raw(&env, "capacity#pool#cpu").await, "count"), 0);
    assert_eq!(num(&raw(&env, "capacity#global").await, "weight_used"), 0);

    // The table has TTL on expires_at.
    let ttl = env
        .client
        .describe_time_to_live()
        .table_name(TABLE)
        .send()
        .await
        .expect("describe ttl");
    let desc = ttl.time_to_live_description.expect("ttl description");
    assert_eq!(desc.attribute_name.as_deref(), Some("expires_at"));
}

#[tokio::test]
async fn create_table_twice_is_fine() {
    let env = env().await;
    create_table(&env.client, TABLE)
        .await
        .expect("second create");
    let tables = env.client.list_tables().send().await.expect("list tables");
    assert_eq!(tables.table_names(), [TABLE.to_string()]);
}

/// Small pages: every list walks LastEvaluatedKey to the end.
#[tokio::test]
async fn lists_follow_pages() {
    let env = env().await;
    let paged = env.ledger.clone().with_page_size(3);
    contract::list_all(&paged).await;
    assert_eq!(paged.list_jobs().await.unwrap().len(), 25);
    let cap = paged.capacity().await.unwrap();
    assert_eq!(cap.pools.get("cpu"), Some(&11));
    assert_eq!(cap.weight, 11);
}

/// More than 1 MB of jobs: DynamoDB (and moto) cut scans at 1 MB.
#[tokio::test]
async fn lists_past_one_megabyte() {
    let env = env().await;
    let t0 = contract::base_time();
    let big_label = "x".repeat(100_000);
    for id in 0..14u64 {
        let mut msg = contract::job_message(id, "cpu", 0);
        msg.labels = vec![big_label.clone()];
        env.ledger
            .claim_job(&msg, t0, chrono::Duration::seconds(60))
            .await
            .expect("claim");
    }
    let first_page = env
        .client
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .expect("scan");
    let jobs = env.ledger.list_jobs().await.expect("list");
    let mut ids: Vec<u64> = jobs.iter().map(|j| j.job_id).collect();
    ids.sort();
    assert_eq!(ids, (0..14).collect::<Vec<_>>());
    assert!(jobs.iter().all(|j| j.message.labels[0].len() == 100_000));
    assert!(
        first_page.last_evaluated_key.is_some() && first_page.count < 14,
        "the data must span more than one 1 MB page for this test to mean anything \
         (one scan returned {} items)",
        first_page.count
    );
}

/// The whole contract in one go, each check on a fresh table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_on_fresh_tables() {
    let env = env().await;
    let sdk_client = env.client.clone();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    contract::run_all(|| {
        let client = sdk_client.clone();
        let name = format!(
            "sr-ledger-{}",
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        async move {
            create_table(&client, &name).await.expect("create table");
            DynamoLedger::from_client(client, name)
        }
    })
    .await;
    assert_eq!(
        counter.load(std::sync::atomic::Ordering::SeqCst),
        contract::CHECKS.len()
    );
}

/// Four clients at once over HTTP, 40 random requests each, over 3 seeds, each
/// on a fresh table: the final state is what the clients were told
/// ([`spotrunner_core::ports::ledger_interleave`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_interleavings_match_the_model() {
    use spotrunner_core::ports::ledger_interleave as il;
    let env = env().await;
    for seed in 1..=3u64 {
        let table = format!("sr-interleave-{seed}");
        create_table(&env.client, &table)
            .await
            .expect("create table");
        let t0 = il::start();
        let clients: Vec<(DynamoLedger, Vec<il::Op>)> = (0..4)
            .map(|c| {
                let l = DynamoLedger::from_client(env.client.clone(), table.clone());
                (l, il::ops(seed, c, 40))
            })
            .collect();
        let told =
            futures::future::join_all(clients.iter().map(|(l, ops)| il::client(l, ops, t0))).await;
        il::check(&clients[0].0, &told).await;
    }
}
