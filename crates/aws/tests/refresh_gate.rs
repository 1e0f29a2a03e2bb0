//! The webhook's secrets-refresh gate on DynamoDB (moto): across "containers"
//! (gates of their own over one table), one claim per interval.

use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration as Span, Utc};
use spotrunner_aws::dynamodb::{DynamoLedger, REFRESH_GATE_PK, create_table};
use spotrunner_core::webhook::RefreshGate;
use spotrunner_testkit::moto;
use std::time::Duration;

fn t0() -> DateTime<Utc> {
    "2026-11-26T10:00:00Z".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_claim_per_interval_across_containers() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let table = format!("sr-gate-{}", uuid::Uuid::new_v4().simple());
    create_table(&Client::new(&sdk), &table).await.unwrap();
    let a = DynamoLedger::new(&sdk, &table);
    let b = DynamoLedger::new(&sdk, &table);
    let every = Duration::from_secs(30);

    assert!(a.claim(t0(), every).await.unwrap(), "the first claim wins");
    assert!(!b.claim(t0() + Span::seconds(1), every).await.unwrap());
    assert!(!a.claim(t0() + Span::seconds(29), every).await.unwrap());
    assert!(b.claim(t0() + Span::seconds(30), every).await.unwrap());

    // Eight containers at once: exactly one reads.
    let t = t0() + Span::seconds(120);
    let gates: Vec<_> = (0..8).map(|_| DynamoLedger::new(&sdk, &table)).collect();
    let won = futures::future::join_all(gates.iter().map(|g| g.claim(t, every))).await;
    let won = won.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1);

    let item = Client::new(&sdk)
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(REFRESH_GATE_PK.into()),
        )
        .send()
        .await
        .unwrap();
    let item = item.item().expect("the gate item");
    assert!(
        item.contains_key("expires_at"),
        "the gate item expires (TTL)"
    );
}

#[tokio::test]
async fn a_missing_table_is_an_error_not_a_claim() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let gate = DynamoLedger::new(&sdk, "no-such-table");
    assert!(gate.claim(t0(), Duration::from_secs(30)).await.is_err());
}
