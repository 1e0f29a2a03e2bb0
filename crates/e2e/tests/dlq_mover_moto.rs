//! dlq-mover end to end: the core mover on the real adapters (SqsDeadLetterQueue,
//! SqsJobQueue, DynamoLedger; SqsBootstrapQueue and SqsRawQueue for the
//! bootstrap and stop-events DLQs) against moto, through the Lambda's `invoke`.

use spotrunner_aws::{dynamodb::DynamoLedger, sqs::SqsJobQueue, sqs_dlq::SqsDeadLetterQueue};
use spotrunner_core::dlq_mover::{DlqKind, DlqMover, DropReason, NoPacer, Pacer, Settings, pacer};
use spotrunner_core::fakes::RecordingPacer;
use spotrunner_core::job::{JOB_MESSAGE_VERSION, JobMessage, JobStateUpdate, ObservedJobStatus};
use spotrunner_core::ports::{
    BootstrapMessage, ClaimOutcome, DeadLetter, DeadLetterQueue, DeleteFailure, JobState,
    JobStateSink, Ledger, Limits, PortError, ReserveOutcome, RunnerRecord,
};
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_testkit::moto;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

struct World {
    _moto: moto::SharedMoto,
    sdk: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    ledger: Arc<DynamoLedger>,
    jobs_url: String,
    dlq_url: String,
}

async fn world() -> World {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut urls = Vec::new();
    for q in ["sr-jobs", "sr-dlq"] {
        let out = sqs
            .create_queue()
            .queue_name(q)
            .send()
            .await
            .expect("queue");
        urls.push(out.queue_url.expect("url"));
    }
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), "sr-ledger")
        .await
        .expect("table");
    World {
        ledger: Arc::new(DynamoLedger::new(&sdk, "sr-ledger")),
        _moto: moto,
        sqs,
        jobs_url: urls[0].clone(),
        dlq_url: urls[1].clone(),
        sdk,
    }
}

fn job(id: u64, queued_hours_ago: i64) -> JobMessage {
    let queued = chrono::Utc::now() - chrono::Duration::hours(queued_hours_ago);
    JobMessage {
        version: JOB_MESSAGE_VERSION,
        job_id: id,
        run_id: 9,
        run_attempt: 1,
        repository: "octo-org/app".into(),
        owner: "octo-org".into(),
        owner_type: "Organization".into(),
        installation_id: Some(1),
        labels: vec!["self-hosted".into(), "linux".into()],
        pool: "cpu".into(),
        delivery_id: None,
        received_at: queued,
        queued_at: Some(queued),
        launch_attempt: 0,
        deferrals: 0,
        job_name: None,
    }
}

impl World {
    /// A mover on fresh adapter instances (as a second Lambda would have).
    fn mover(&self, pacer: Arc<dyn Pacer>, settings: Settings) -> DlqMover {
        DlqMover {
            dlq: Arc::new(SqsDeadLetterQueue::new(&self.sdk, &self.dlq_url)),
            jobs: Arc::new(SqsJobQueue::new(&self.sdk, &self.jobs_url)),
            ledger: self.ledger.clone(),
            pacer,
            settings,
            bootstrap: None,
            stop_events: None,
        }
    }

    /// Put `bodies` in the DLQ, ten per SendMessageBatch.
    async fn fill_dlq(&self, bodies: &[String]) {
        for (n, chunk) in bodies.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(format!("m{n}-{i}"))
                        .message_body(b)
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send batch");
            assert!(out.failed().is_empty(), "{:?}", out.failed());
        }
    }

    /// The ledger shows `msg`'s job completed (claimed, then GitHub said completed).
    async fn finish(&self, msg: &JobMessage) {
        let now = chrono::Utc::now();
        let claim = self
            .ledger
            .claim_job(msg, now, chrono::Duration::minutes(5))
            .await
            .expect("claim");
        assert!(matches!(claim, ClaimOutcome::Claimed(_)), "{claim:?}");
        self.ledger
            .record_job_state(&JobStateUpdate {
                job_id: msg.job_id,
                repository: msg.repository.clone(),
                status: ObservedJobStatus::Completed,
                runner_name: None,
                runner_id: None,
                conclusion: Some("success".into()),
                at: now,
            })
            .await
            .expect("completed");
        let rec = self.ledger.get_job(msg.job_id).await.unwrap().unwrap();
        assert_eq!(rec.state, JobState::Completed);
    }

    /// Every job id on the jobs queue, duplicates included (drains the queue).
    async fn drain_jobs(&self) -> Vec<u64> {
        let mut ids = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.jobs_url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .send()
                .await
                .expect("receive");
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                return ids;
            }
            for m in msgs {
                let job = JobMessage::parse(m.body().expect("body")).expect("a job message");
                ids.push(job.job_id);
            }
        }
    }

    /// Messages in the DLQ, visible or held.
    async fn dlq_depth(&self) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.dlq_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes");
        let attrs = out.attributes.unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| attrs.get(a).map_or(0, |v| v.parse::<u64>().unwrap()))
        .sum()
    }
}

#[tokio::test]
async fn moves_85_drops_10_stale_and_5_finished_within_the_rate() {
    let w = world().await;
    // 1..=10 queued 25 h ago; 11..=15 finished; 16..=17 claimed (not final); the
    // rest only in the DLQ.
    let mut bodies = Vec::new();
    for id in 1..=100u64 {
        let msg = job(id, if id <= 10 { 25 } else { 1 });
        if (11..=15).contains(&id) {
            w.finish(&msg).await;
        }
        if (16..=17).contains(&id) {
            w.ledger
                .claim_job(&msg, chrono::Utc::now(), chrono::Duration::minutes(5))
                .await
                .expect("claim");
        }
        bodies.push(msg.to_json());
    }
    w.fill_dlq(&bodies).await;
    assert_eq!(w.dlq_depth().await, 100);

    let pacer = Arc::new(RecordingPacer::new());
    let settings = Settings::default();
    let rate = settings.rate_per_second;
    let mover = w.mover(pacer.clone(), settings);
    let report = spotrunner_dlq_mover::invoke(&mover, "sr", chrono::Utc::now()).await;

    assert_eq!(report.received, 100, "{report:?}");
    assert_eq!(report.moved, 85, "{report:?}");
    assert_eq!(report.dropped(DropReason::Stale), 10);
    assert_eq!(report.dropped(DropReason::Finished), 5);
    assert_eq!(report.dropped(DropReason::Malformed), 0);
    assert_eq!((report.failed, report.delete_failed), (0, 0));
    assert_eq!(report.left, Some(0));
    assert_eq!(report.stopped, None);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["dropped"]["stale"], 10);
    assert_eq!(json["moved"], 85);

    // Exactly the 85 live jobs, once each; nothing left in the DLQ.
    let ids = w.drain_jobs().await;
    assert_eq!(ids.len(), 85, "{ids:?}");
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique, (16..=100).collect::<BTreeSet<u64>>());
    assert_eq!(w.dlq_depth().await, 0);

    // The rate: 85 moves at 50/s asked the pacer for at least 1.7 s, in batches of
    // at most 10 moves each.
    assert!(
        pacer.total() >= pacer::budget(85, rate),
        "{:?}",
        pacer.total()
    );
    let batch_budget = pacer::budget(10, rate);
    assert!(
        pacer.delays().iter().all(|d| *d <= batch_budget),
        "{:?}",
        pacer.delays()
    );
    assert!(pacer.delays().len() >= 9);
}

/// moto's ReceiveMessage checks visibility and marks a message received without a
/// lock, and its server is threaded: two receives at the same moment can both get
/// one message (SQS hides a message as it hands it out). This wrapper makes each
/// receive atomic, as on SQS; everything else — judging, sending, deleting — runs
/// concurrently.
struct AtomicReceive {
    inner: SqsDeadLetterQueue,
    lock: Arc<tokio::sync::Mutex<()>>,
}

#[async_trait::async_trait]
impl DeadLetterQueue for AtomicReceive {
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<DeadLetter>, PortError> {
        let _one_at_a_time = self.lock.lock().await;
        self.inner.receive(max, visibility).await
    }
    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<DeleteFailure>, PortError> {
        self.inner.delete_batch(receipts).await
    }
    async fn approximate_depth(&self) -> Result<u64, PortError> {
        self.inner.approximate_depth().await
    }
}

#[tokio::test]
async fn two_movers_at_once_move_each_message_once() {
    let w = world().await;
    let bodies: Vec<String> = (1..=100u64).map(|id| job(id, 1).to_json()).collect();
    w.fill_dlq(&bodies).await;

    let lock = Arc::new(tokio::sync::Mutex::new(()));
    let movers: Vec<DlqMover> = (0..2)
        .map(|_| {
            let mut m = w.mover(Arc::new(NoPacer), Settings::default());
            m.dlq = Arc::new(AtomicReceive {
                inner: SqsDeadLetterQueue::new(&w.sdk, &w.dlq_url),
                lock: lock.clone(),
            });
            m
        })
        .collect();
    let now = chrono::Utc::now();
    let (ra, rb) = tokio::join!(movers[0].run(now), movers[1].run(now));

    assert_eq!(ra.moved + rb.moved, 100, "{ra:?} {rb:?}");
    assert!(
        ra.moved > 0 && rb.moved > 0,
        "both movers worked: {ra:?} {rb:?}"
    );
    assert_eq!(
        (ra.failed + rb.failed, ra.delete_failed + rb.delete_failed),
        (0, 0)
    );
    let ids = w.drain_jobs().await;
    assert_eq!(ids.len(), 100, "no duplicates on the jobs queue");
    assert_eq!(
        ids.into_iter().collect::<BTreeSet<u64>>(),
        (1..=100).collect::<BTreeSet<u64>>()
    );
    assert_eq!(w.dlq_depth().await, 0);
}

/// Without the wrapper moto may hand one message to both movers (at-least-once, as
/// SQS standard queues may too): then it is moved twice — create-runner's claim
/// ignores the copy — but never lost, and every copy is counted.
#[tokio::test]
async fn two_movers_on_raw_moto_lose_nothing() {
    let w = world().await;
    let bodies: Vec<String> = (1..=100u64).map(|id| job(id, 1).to_json()).collect();
    w.fill_dlq(&bodies).await;
    let a = w.mover(Arc::new(NoPacer), Settings::default());
    let b = w.mover(Arc::new(NoPacer), Settings::default());
    let now = chrono::Utc::now();
    let (ra, rb) = tokio::join!(a.run(now), b.run(now));

    let ids = w.drain_jobs().await;
    assert_eq!(ids.len(), ra.moved + rb.moved, "{ra:?} {rb:?}");
    assert_eq!(
        ids.into_iter().collect::<BTreeSet<u64>>(),
        (1..=100).collect::<BTreeSet<u64>>()
    );
    assert_eq!(w.dlq_depth().await, 0);
}

#[tokio::test]
async fn a_malformed_body_is_dropped_and_does_not_block_the_others() {
    let w = world().await;
    w.fill_dlq(&[
        job(1, 1).to_json(),
        "{not json".into(),
        job(3, 1)
            .to_json()
            .replace("\"version\":1", "\"version\":2"),
        job(2, 1).to_json(),
    ])
    .await;
    let mover = w.mover(Arc::new(NoPacer), Settings::default());
    let report = mover.run(chrono::Utc::now()).await;
    assert_eq!(report.dropped(DropReason::Malformed), 2, "{report:?}");
    assert_eq!(report.moved, 2);
    let ids: BTreeSet<u64> = w.drain_jobs().await.into_iter().collect();
    assert_eq!(ids, BTreeSet::from([1, 2]));
    assert_eq!(w.dlq_depth().await, 0);
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url")
}

/// Every body on `url` (drains it).
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let msgs = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if msgs.is_empty() {
            return bodies;
        }
        bodies.extend(msgs.iter().filter_map(|m| m.body().map(String::from)));
    }
}

fn step(job_id: u64, launched_hours_ago: i64) -> BootstrapMessage {
    BootstrapMessage {
        version: 1,
        job_id,
        runner_name: format!("sr_cpu-{job_id}-0"),
        instance_id: format!("i-{job_id:017x}"),
        pool: "cpu".into(),
        launched_at: chrono::Utc::now() - chrono::Duration::hours(launched_hours_ago),
        tries: 3,
        resend_after: None,
    }
}

/// The runner of `m` in the ledger, reserved (then released when `released`).
async fn runner(ledger: &DynamoLedger, m: &BootstrapMessage, released: bool) {
    let now = chrono::Utc::now();
    let record: RunnerRecord = serde_json::from_value(serde_json::json!({
        "name": m.runner_name, "pool": m.pool, "job_id": m.job_id, "weight": 1,
        "state": "reserved", "jit_parameter": format!("/sr/jit/{}", m.runner_name),
        "created_at": now, "updated_at": now,
    }))
    .expect("runner record");
    let limits = Limits {
        pool_max: 10,
        weight: 1,
        global_max_weight: None,
    };
    assert_eq!(
        ledger.reserve(&record, limits).await.expect("reserve"),
        ReserveOutcome::Reserved
    );
    if released {
        assert!(ledger.release(&m.runner_name, "test", now).await.unwrap());
    }
}

#[tokio::test]
async fn bootstrap_steps_and_stop_events_go_back_to_their_own_queues() {
    let w = world().await;
    let boot_dlq = create_queue(&w.sqs, "sr-bootstrap-dlq").await;
    let boot = create_queue(&w.sqs, "sr-bootstrap").await;
    let stop_dlq = create_queue(&w.sqs, "sr-stop-events-dlq").await;
    let stop = create_queue(&w.sqs, "sr-stop-events").await;

    // Bootstrap steps: a runner still waiting (moves), a released one and an
    // unknown one (finished), one launched 25 h ago (stale), garbage.
    let waiting = step(1, 0);
    runner(&w.ledger, &waiting, false).await;
    let released = step(2, 0);
    runner(&w.ledger, &released, true).await;
    let unknown = step(3, 0);
    let old = step(4, 25);
    runner(&w.ledger, &old, false).await;
    for body in [
        serde_json::to_string(&waiting).unwrap(),
        serde_json::to_string(&released).unwrap(),
        serde_json::to_string(&unknown).unwrap(),
        serde_json::to_string(&old).unwrap(),
        "{\"version\":1".into(),
    ] {
        w.sqs
            .send_message()
            .queue_url(&boot_dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    // A bootstrap step that reached the jobs DLQ before the bootstrap queue had
    // its own DLQ, next to a job.
    let legacy = step(5, 0);
    runner(&w.ledger, &legacy, false).await;
    w.fill_dlq(&[serde_json::to_string(&legacy).unwrap(), job(6, 1).to_json()])
        .await;
    // Stop events: one to move (byte for byte), one that is not an event.
    let event = StopEvent::SpotInterruption {
        instance_id: "i-0aaaaaaaaaaaaaaa1".into(),
    }
    .to_eventbridge();
    let mut event = event;
    event["time"] = serde_json::json!(chrono::Utc::now().to_rfc3339());
    let event = event.to_string();
    for body in [event.as_str(), "not an event"] {
        w.sqs
            .send_message()
            .queue_url(&stop_dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    // The mover the Lambda builds from the environment Terraform hands it.
    let env: std::collections::BTreeMap<&str, String> = [
        ("SPOTRUNNER_DLQ_URL", w.dlq_url.clone()),
        ("SPOTRUNNER_JOBS_QUEUE_URL", w.jobs_url.clone()),
        ("SPOTRUNNER_LEDGER_TABLE", "sr-ledger".to_string()),
        ("SPOTRUNNER_BOOTSTRAP_DLQ_URL", boot_dlq.clone()),
        ("SPOTRUNNER_BOOTSTRAP_QUEUE_URL", boot.clone()),
        ("SPOTRUNNER_STOP_EVENTS_DLQ_URL", stop_dlq.clone()),
        ("SPOTRUNNER_STOP_EVENTS_QUEUE_URL", stop.clone()),
    ]
    .into_iter()
    .collect();
    let env = spotrunner_dlq_mover::env::MoverEnv::from_lookup(|k| env.get(k).cloned())
        .expect("the Lambda's environment");
    let mover = spotrunner_dlq_mover::mover_from_env(&w.sdk, env);
    let report = spotrunner_dlq_mover::invoke(&mover, "sr", chrono::Utc::now()).await;

    let b = report.queue(DlqKind::Bootstrap);
    assert_eq!(
        (b.received, b.moved, b.dropped, b.failed),
        (5, 1, 4, 0),
        "{report:?}"
    );
    let s = report.queue(DlqKind::StopEvents);
    assert_eq!((s.received, s.moved, s.dropped), (2, 1, 1), "{report:?}");
    let j = report.queue(DlqKind::Jobs);
    assert_eq!((j.received, j.moved, j.dropped), (2, 2, 0), "{report:?}");
    assert_eq!(report.dropped(DropReason::Finished), 2);
    assert_eq!(report.dropped(DropReason::Stale), 1);
    assert_eq!(report.dropped(DropReason::Malformed), 2);
    assert_eq!(
        (report.moved, report.left, report.stopped.as_deref()),
        (4, Some(0), None)
    );

    // Each went back where it came from, readable by its consumer.
    let mut steps: Vec<BootstrapMessage> = drain(&w.sqs, &boot)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).expect("a bootstrap step"))
        .collect();
    steps.sort_by_key(|m| m.job_id);
    assert_eq!(steps, vec![waiting, legacy]);
    assert_eq!(drain(&w.sqs, &stop).await, vec![event]);
    assert_eq!(w.drain_jobs().await, vec![6]);
    for q in [&boot_dlq, &stop_dlq, &w.dlq_url] {
        assert!(drain(&w.sqs, q).await.is_empty(), "{q} is empty");
    }
}
