//! A ledger write that DynamoDB applied but whose answer was lost: the SDK
//! retries the PutItem, whose version condition now fails. Found with the
//! chaos test (issue 10): the bootstrap step read that as "another step won"
//! and dropped its runner. The condition failure must be checked against what
//! is stored: our own item means our write happened.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use chrono::{DateTime, Utc};
use spotrunner_aws::dynamodb::DynamoLedger;
use spotrunner_core::ports::{Ledger, RunnerChange, RunnerRecord, RunnerState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn record(state: RunnerState, at: DateTime<Utc>) -> RunnerRecord {
    RunnerRecord {
        name: "sr_cpu-1-0".into(),
        pool: "cpu".into(),
        job_id: 1,
        weight: 1,
        state,
        instance_id: Some("i-1".into()),
        command_id: None,
        github_runner_id: Some(7),
        jit_parameter: "/sr/jit/sr_cpu-1-0".into(),
        created_at: at,
        launched_at: Some(at),
        updated_at: at,
        end_reason: None,
    }
}

fn item(rec: &RunnerRecord, version: i64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("writer".into(), AttributeValue::S("someone-else".into())),
        (
            "pk".into(),
            AttributeValue::S(format!("runner#{}", rec.name)),
        ),
        (
            "doc".into(),
            AttributeValue::S(serde_json::to_string(rec).unwrap()),
        ),
        ("state".into(), AttributeValue::S(rec.state.as_str().into())),
        ("version".into(), AttributeValue::N(version.to_string())),
    ])
}

fn ledger(rules: &[&Rule]) -> DynamoLedger {
    let client: Client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()));
    DynamoLedger::from_client(client, "ledger")
}

fn condition_failed() -> PutItemError {
    PutItemError::ConditionalCheckFailedException(
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .build(),
    )
}

fn change() -> RunnerChange {
    RunnerChange {
        state: Some(RunnerState::Bootstrapping),
        ..RunnerChange::default()
    }
}

#[tokio::test]
async fn a_transition_whose_answer_was_lost_is_ours() {
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let now = DateTime::from_timestamp(1_800_000_060, 0).unwrap();
    let before = record(RunnerState::Launched, t0);
    let b = item(&before, 1);
    // The put is applied (we keep what it wrote) but answers as the SDK's
    // retry would: the condition failed.
    let stored: Arc<Mutex<Option<HashMap<String, AttributeValue>>>> = Arc::default();
    let seen = stored.clone();
    let puts = mock!(Client::put_item)
        .match_requests(move |r| {
            *seen.lock().unwrap() = r.item().cloned();
            true
        })
        .then_error(condition_failed);
    let read_back = stored.clone();
    let gets = mock!(Client::get_item)
        .sequence()
        .output(move || GetItemOutput::builder().set_item(Some(b.clone())).build())
        .output(move || {
            GetItemOutput::builder()
                .set_item(read_back.lock().unwrap().clone())
                .build()
        })
        .build();
    let l = ledger(&[&gets, &puts]);
    let won = l
        .transition_runner("sr_cpu-1-0", &[RunnerState::Launched], &change(), now)
        .await
        .unwrap();
    assert!(won, "the stored item is the one this call wrote");
    assert_eq!(puts.num_calls(), 1);
}

#[tokio::test]
async fn a_transition_that_lost_to_another_writer_is_not_ours() {
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let now = DateTime::from_timestamp(1_800_000_060, 0).unwrap();
    let before = record(RunnerState::Launched, t0);
    // Another step made the same transition at the same moment: an identical
    // document, but written by someone else (another writer token).
    let mut theirs = before.clone();
    theirs.apply(&change(), now);
    let (b, t1, t2) = (item(&before, 1), item(&theirs, 2), item(&theirs, 2));
    let gets = mock!(Client::get_item)
        .sequence()
        .output(move || GetItemOutput::builder().set_item(Some(b.clone())).build())
        .output(move || GetItemOutput::builder().set_item(Some(t1.clone())).build())
        .output(move || GetItemOutput::builder().set_item(Some(t2.clone())).build())
        .build();
    let puts = mock!(Client::put_item).then_error(condition_failed);
    let l = ledger(&[&gets, &puts]);
    let won = l
        .transition_runner("sr_cpu-1-0", &[RunnerState::Launched], &change(), now)
        .await
        .unwrap();
    assert!(!won, "someone else's write is not ours");
}
