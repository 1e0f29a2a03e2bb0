//! `SqsDeadLetterQueue` against moto: receive hides messages and counts receives,
//! the batch delete reports per-entry failures, the depth counts held messages.

use aws_sdk_sqs::Client;
use spotrunner_aws::sqs_dlq::SqsDeadLetterQueue;
use spotrunner_core::ports::{DeadLetterQueue, PortError};
use spotrunner_testkit::moto;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

async fn queue(sqs: &Client, name: &str, bodies: &[&str]) -> String {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    for b in bodies {
        sqs.send_message()
            .queue_url(&url)
            .message_body(*b)
            .send()
            .await
            .expect("send");
    }
    url
}

#[tokio::test]
async fn receive_hides_messages_and_counts_receives() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = Client::new(&sdk);
    let url = queue(&sqs, "dlq-receive", &["a", "b", "c"]).await;
    let dlq = SqsDeadLetterQueue::new(&sdk, &url);

    let first = dlq.receive(2, MINUTE).await.expect("receive");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|m| m.receive_count == 1), "{first:?}");
    assert!(
        first
            .iter()
            .all(|m| !m.receipt.is_empty() && !m.message_id.is_empty())
    );
    // Held messages are invisible to the next receiver; the depth still counts them.
    let rest = dlq.receive(10, MINUTE).await.expect("receive");
    assert_eq!(rest.len(), 1);
    assert!(dlq.receive(10, MINUTE).await.expect("receive").is_empty());
    assert_eq!(dlq.approximate_depth().await.expect("depth"), 3);

    // Released at once, received again: the count goes up.
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(&rest[0].receipt)
        .visibility_timeout(0)
        .send()
        .await
        .expect("release");
    let again = dlq.receive(10, MINUTE).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, rest[0].body);
    assert_eq!(again[0].receive_count, 2);
}

#[tokio::test]
async fn delete_batch_reports_the_entries_that_failed() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = Client::new(&sdk);
    let url = queue(&sqs, "dlq-delete", &["a", "b"]).await;
    let dlq = SqsDeadLetterQueue::new(&sdk, &url);
    let got = dlq.receive(10, MINUTE).await.expect("receive");
    assert_eq!(got.len(), 2);

    let mut receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
    receipts.push("not-a-receipt-handle".into());
    let failures = dlq.delete_batch(&receipts).await.expect("delete");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].receipt, "not-a-receipt-handle");
    assert!(!failures[0].error.is_transient(), "{:?}", failures[0].error);
    assert_eq!(dlq.approximate_depth().await.expect("depth"), 0);

    assert!(dlq.delete_batch(&[]).await.expect("empty").is_empty());
    let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    assert!(matches!(
        dlq.delete_batch(&eleven).await,
        Err(PortError::Rejected { .. })
    ));
}

#[tokio::test]
async fn a_missing_queue_is_not_found() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let dlq = SqsDeadLetterQueue::new(&sdk, format!("{}/123456789012/no-such-queue", moto.url()));
    let err = dlq.receive(10, MINUTE).await.unwrap_err();
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
    let err = dlq.approximate_depth().await.unwrap_err();
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
}
