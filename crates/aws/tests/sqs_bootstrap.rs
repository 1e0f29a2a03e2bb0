//! `SqsBootstrapQueue` against moto: the message round-trips and the delay is
//! capped at SQS's 15 minutes.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{TimeZone, Utc};
use spotrunner_aws::sqs_bootstrap::SqsBootstrapQueue;
use spotrunner_core::ports::{BootstrapMessage, BootstrapQueue, PortError};
use spotrunner_testkit::moto;
use std::time::Duration;

fn message(tries: u32) -> BootstrapMessage {
    BootstrapMessage {
        version: 1,
        job_id: 4242,
        runner_name: "sr_ubuntu-4242".into(),
        instance_id: "i-0abc1234def567890".into(),
        pool: "ubuntu".into(),
        launched_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
        tries,
        resend_after: None,
    }
}

async fn receive_all(sqs: &Client, queue_url: &str, want: usize) -> Vec<BootstrapMessage> {
    let mut got = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            got.push(serde_json::from_str(m.body().expect("body")).expect("BootstrapMessage JSON"));
        }
        if got.len() >= want {
            break;
        }
    }
    got
}

#[tokio::test]
async fn schedule_round_trips_the_message() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name("sr-bootstrap")
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let queue = SqsBootstrapQueue::new(&sdk, &queue_url);

    queue.schedule(&message(0), Duration::ZERO).await.unwrap();
    // Longer than SQS allows: capped at 900 s instead of refused.
    queue
        .schedule(&message(1), Duration::from_secs(3600))
        .await
        .unwrap();

    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let attr = |a: QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|m| m.get(&a))
            .map(|v| v.parse::<u32>().unwrap())
            .unwrap_or(0)
    };
    let total = attr(QueueAttributeName::ApproximateNumberOfMessages)
        + attr(QueueAttributeName::ApproximateNumberOfMessagesDelayed);
    assert_eq!(total, 2, "both messages accepted");

    let got = receive_all(&sqs, &queue_url, 1).await;
    assert!(
        got.contains(&message(0)),
        "undelayed message received: {got:?}"
    );
    assert!(
        !got.contains(&message(1)),
        "a 900 s delayed message is not visible yet"
    );
}

#[tokio::test]
async fn missing_queue_is_not_found() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let queue = SqsBootstrapQueue::new(&sdk, format!("{}/123456789012/no-such-queue", moto.url()));
    let err = queue
        .schedule(&message(0), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
}
