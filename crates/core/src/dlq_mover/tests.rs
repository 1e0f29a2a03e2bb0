use super::*;
use crate::fakes::{
    MemoryBootstrapQueue, MemoryDeadLetterQueue, MemoryLedger, MemoryQueue, RecordingPacer,
};
use crate::job::{JOB_MESSAGE_VERSION, JobMessage};
use crate::ports::{BootstrapMessage, JobRecord, JobState, PortError, RunnerRecord};
use crate::stop_runner::StopEvent;
use async_trait::async_trait;
use chrono::{Duration as CDuration, Utc};
use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

struct World {
    dlq: Arc<MemoryDeadLetterQueue>,
    jobs: Arc<MemoryQueue>,
    ledger: Arc<MemoryLedger>,
    pacer: Arc<RecordingPacer>,
    mover: DlqMover,
}

fn world(settings: Settings) -> World {
    let dlq = Arc::new(MemoryDeadLetterQueue::new());
    let jobs = Arc::new(MemoryQueue::default());
    let ledger = Arc::new(MemoryLedger::new());
    let pacer = Arc::new(RecordingPacer::new());
    let mover = DlqMover {
        dlq: dlq.clone(),
        jobs: jobs.clone(),
        ledger: ledger.clone(),
        pacer: pacer.clone(),
        settings,
        bootstrap: None,
        stop_events: None,
    };
    World {
        dlq,
        jobs,
        ledger,
        pacer,
        mover,
    }
}

fn now() -> DateTime<Utc> {
    "2026-11-24T12:00:00Z".parse().unwrap()
}

fn job(id: u64, queued_ago: CDuration) -> JobMessage {
    JobMessage {
        version: JOB_MESSAGE_VERSION,
        job_id: id,
        run_id: 7,
        run_attempt: 1,
        repository: "o/r".into(),
        owner: "o".into(),
        owner_type: "Organization".into(),
        installation_id: Some(1),
        labels: vec!["linux".into()],
        pool: "cpu".into(),
        delivery_id: None,
        received_at: now() - queued_ago + CDuration::seconds(1),
        queued_at: Some(now() - queued_ago),
        launch_attempt: 0,
        deferrals: 0,
        job_name: None,
    }
}

fn fresh(id: u64) -> JobMessage {
    job(id, CDuration::minutes(30))
}

fn record(msg: &JobMessage, state: JobState) -> JobRecord {
    JobRecord {
        job_id: msg.job_id,
        pool: msg.pool.clone(),
        repository: msg.repository.clone(),
        state,
        launch_attempt: 0,
        runner_name: None,
        taken_by: None,
        lease_until: None,
        message: msg.clone(),
        created_at: now(),
        updated_at: now(),
        end_reason: None,
        timeline: Default::default(),
        conclusion: None,
        rerun: None,
        start_path: None,
    }
}

impl World {
    fn push(&self, msg: &JobMessage) {
        self.dlq.push(msg.to_json());
    }
    fn moved_ids(&self) -> Vec<u64> {
        self.jobs.sent().iter().map(|j| j.job_id).collect()
    }
}

fn rate(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

#[tokio::test]
async fn moves_a_fresh_job_and_empties_the_dlq() {
    let w = world(Settings::default());
    let msg = fresh(1);
    w.push(&msg);
    let r = w.mover.run(now()).await;
    assert_eq!(w.jobs.sent(), vec![msg]);
    assert_eq!(
        (r.received, r.moved, r.failed, r.dropped_total()),
        (1, 1, 0, 0)
    );
    assert_eq!(r.left, Some(0));
    assert_eq!(r.stopped, None);
    assert!(w.dlq.is_empty());
}

#[tokio::test]
async fn malformed_bodies_are_dropped_and_do_not_block_the_others() {
    let w = world(Settings::default());
    w.push(&fresh(1));
    w.dlq.push("not json");
    w.dlq.push(r#"{"version":1,"job_id":5}"#);
    w.dlq
        .push(fresh(6).to_json().replace("\"version\":1", "\"version\":2"));
    w.push(&fresh(2));
    let r = w.mover.run(now()).await;
    assert_eq!(r.dropped(DropReason::Malformed), 3);
    assert_eq!(r.moved, 2);
    assert_eq!(w.moved_ids(), vec![1, 2]);
    assert!(w.dlq.is_empty());
}

#[tokio::test]
async fn jobs_queued_24_hours_ago_or_more_are_stale() {
    let w = world(Settings::default());
    w.push(&job(1, CDuration::hours(25)));
    w.push(&job(2, CDuration::hours(24)));
    w.push(&job(3, CDuration::hours(24) - CDuration::seconds(1)));
    // No queued_at: the time we first heard of the job counts.
    let mut old = job(4, CDuration::hours(30));
    old.queued_at = None;
    w.push(&old);
    let r = w.mover.run(now()).await;
    assert_eq!(r.dropped(DropReason::Stale), 3);
    assert_eq!(w.moved_ids(), vec![3]);
    assert!(w.dlq.is_empty());
}

#[tokio::test]
async fn jobs_the_ledger_shows_final_are_finished_the_others_move() {
    let w = world(Settings::default());
    let states = [
        (1, Some(JobState::Completed)),
        (2, Some(JobState::Dropped)),
        (3, Some(JobState::Interrupted)),
        (4, Some(JobState::Claimed)),
        (5, Some(JobState::Requeued)),
        (6, Some(JobState::Launched)),
        (7, None),
    ];
    for (id, state) in states {
        let msg = fresh(id);
        if let Some(s) = state {
            w.ledger.put_job(record(&msg, s));
        }
        w.push(&msg);
    }
    let r = w.mover.run(now()).await;
    assert_eq!(r.dropped(DropReason::Finished), 3);
    assert_eq!(w.moved_ids(), vec![4, 5, 6, 7]);
    assert!(w.dlq.is_empty());
}

#[tokio::test]
async fn stale_jobs_are_dropped_without_asking_the_ledger() {
    let w = world(Settings::default());
    w.push(&job(1, CDuration::hours(48)));
    w.dlq.push("{}");
    let r = w.mover.run(now()).await;
    assert_eq!(r.dropped_total(), 2);
    assert_eq!(w.ledger.calls("get_job"), 0);
}

#[tokio::test]
async fn receives_and_deletes_in_batches_of_ten() {
    let w = world(Settings::default());
    for id in 0..25 {
        w.push(&fresh(id));
    }
    let r = w.mover.run(now()).await;
    assert_eq!(r.moved, 25);
    assert_eq!(w.dlq.receive_sizes(), vec![10, 10, 10, 10]);
    assert_eq!(w.dlq.delete_sizes(), vec![10, 10, 5]);
    assert_eq!(w.moved_ids(), (0..25).collect::<Vec<_>>());
}

#[tokio::test]
async fn stops_at_max_per_run() {
    let w = world(Settings {
        max_per_run: 15,
        ..Settings::default()
    });
    for id in 0..25 {
        w.push(&fresh(id));
    }
    let r = w.mover.run(now()).await;
    assert_eq!((r.received, r.moved), (15, 15));
    assert_eq!(w.dlq.receive_sizes(), vec![10, 5]);
    assert_eq!(r.left, Some(10));
    assert_eq!(r.stopped, None);
    // The next run takes the rest.
    let r = w.mover.run(now()).await;
    assert_eq!((r.moved, r.left), (10, Some(0)));
    assert_eq!(w.jobs.sent().len(), 25);
}

#[tokio::test]
async fn moves_are_paced_at_the_rate_drops_are_not() {
    let w = world(Settings {
        rate_per_second: rate(4),
        ..Settings::default()
    });
    for id in 0..23 {
        w.push(&fresh(id));
    }
    for id in 100..107 {
        w.push(&job(id, CDuration::days(3)));
    }
    let r = w.mover.run(now()).await;
    assert_eq!((r.moved, r.dropped(DropReason::Stale)), (23, 7));
    // At 4 per second, 23 moves must have asked for at least 23/4 s, no more than
    // the same rounded up per batch.
    let total = w.pacer.total();
    assert!(total >= Duration::from_millis(5750), "{total:?}");
    assert!(
        total <= Duration::from_millis(5750) + Duration::from_nanos(3),
        "{total:?}"
    );
    // Paced before each batch with moves, by that batch's moves.
    let delays = w.pacer.delays();
    assert_eq!(delays.len(), 3);
    assert!(delays.iter().all(|d| *d <= pacer::budget(BATCH, rate(4))));
}

#[tokio::test]
async fn a_send_failure_leaves_the_message_in_the_dlq_and_stops_the_run() {
    let w = world(Settings::default());
    for id in 0..3 {
        w.push(&fresh(id));
    }
    w.dlq.push("garbage");
    w.jobs.set_failing(true);
    let r = w.mover.run(now()).await;
    assert_eq!(r.moved, 0);
    assert_eq!(r.failed, 3);
    assert_eq!(r.dropped(DropReason::Malformed), 1);
    assert!(
        r.stopped.as_deref().unwrap().contains("jobs queue"),
        "{r:?}"
    );
    assert_eq!(r.left, Some(3));
    assert_eq!(w.dlq.len(), 3);
    // Hidden until the visibility timeout runs out, then moved by the next run.
    assert_eq!(w.dlq.visible(), 0);
    w.dlq.advance(Duration::from_secs(61));
    w.jobs.set_failing(false);
    let r = w.mover.run(now()).await;
    assert_eq!(r.moved, 3);
    assert!(w.dlq.is_empty());
}

/// Sends one job fine, then refuses the next (not transient): the run goes on.
#[derive(Default)]
struct RefusesJob2(MemoryQueue);

#[async_trait]
impl JobQueue for RefusesJob2 {
    async fn send_job(&self, job: &JobMessage) -> Result<(), crate::ports::PortError> {
        if job.job_id == 2 {
            return Err(crate::ports::PortError::rejected("sqs", "too big"));
        }
        self.0.send_job(job).await
    }
}

#[tokio::test]
async fn a_refused_send_leaves_that_message_and_the_run_goes_on() {
    let mut w = world(Settings::default());
    let jobs = Arc::new(RefusesJob2::default());
    w.mover.jobs = jobs.clone();
    for id in 1..=3 {
        w.push(&fresh(id));
    }
    let r = w.mover.run(now()).await;
    assert_eq!((r.moved, r.failed, r.stopped.as_deref()), (2, 1, None));
    let ids: Vec<u64> = jobs.0.sent().iter().map(|j| j.job_id).collect();
    assert_eq!(ids, vec![1, 3]);
    assert_eq!(w.dlq.bodies(), vec![fresh(2).to_json()]);
}

#[tokio::test]
async fn a_ledger_failure_leaves_the_message_in_the_dlq() {
    let w = world(Settings::default());
    w.push(&fresh(1));
    w.ledger.set_failing(true);
    let r = w.mover.run(now()).await;
    assert_eq!((r.moved, r.failed), (0, 1));
    assert!(w.jobs.sent().is_empty());
    assert_eq!(w.dlq.len(), 1);
}

#[tokio::test]
async fn a_receive_failure_stops_the_run() {
    let w = world(Settings::default());
    w.push(&fresh(1));
    w.dlq.set_failing_receive(true);
    let r = w.mover.run(now()).await;
    assert_eq!(r.moved, 0);
    assert!(r.stopped.as_deref().unwrap().contains("receive"), "{r:?}");
    assert_eq!(r.left, Some(1));
}

#[tokio::test]
async fn a_failed_delete_is_counted_and_the_message_comes_back() {
    let w = world(Settings::default());
    w.push(&fresh(1));
    w.dlq.set_failing_delete(true);
    let r = w.mover.run(now()).await;
    assert_eq!((r.moved, r.delete_failed), (1, 1));
    assert_eq!(w.dlq.len(), 1);
    // Sent before the delete: a duplicate on the jobs queue, never a loss.
    w.dlq.set_failing_delete(false);
    w.dlq.advance(Duration::from_secs(61));
    let r = w.mover.run(now()).await;
    assert_eq!((r.moved, r.delete_failed), (1, 0));
    assert_eq!(w.moved_ids(), vec![1, 1]);
    assert!(w.dlq.is_empty());
}

/// Yields to the other mover before every batch, so two runs interleave.
struct Yielding;

#[async_trait]
impl Pacer for Yielding {
    async fn pace(&self, _budget: Duration) {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn two_movers_at_once_move_each_message_once() {
    let mut w = world(Settings::default());
    w.mover.pacer = Arc::new(Yielding);
    for id in 0..100 {
        w.push(&fresh(id));
    }
    let other = w.mover.clone();
    let (a, b) = tokio::join!(w.mover.run(now()), other.run(now()));
    assert_eq!(a.moved + b.moved, 100);
    assert!(
        a.moved > 0 && b.moved > 0,
        "both ran: {} + {}",
        a.moved,
        b.moved
    );
    let ids = w.moved_ids();
    assert_eq!(ids.len(), 100);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 100);
    assert!(w.dlq.is_empty());
}

#[test]
fn the_report_lists_every_drop_reason() {
    let v = serde_json::to_value(DlqReport::default()).unwrap();
    assert_eq!(
        v["dropped"],
        serde_json::json!({"malformed": 0, "stale": 0, "finished": 0})
    );
    assert_eq!(v["moved"], 0);
    assert!(v["left"].is_null());
}

// --- the bootstrap DLQ and the stop-events DLQ ---------------------------------

/// A raw queue in memory (the stop-events queue): bodies in order.
#[derive(Default)]
struct MemoryRawQueue {
    sent: std::sync::Mutex<Vec<String>>,
    failing: std::sync::atomic::AtomicBool,
}

impl MemoryRawQueue {
    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl RawQueue for MemoryRawQueue {
    async fn send_body(&self, body: &str) -> Result<(), PortError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PortError::unavailable("sqs", "down"));
        }
        self.sent.lock().unwrap().push(body.to_string());
        Ok(())
    }
}

/// The world with all three DLQs.
struct Full {
    w: World,
    boot_dlq: Arc<MemoryDeadLetterQueue>,
    boot: Arc<MemoryBootstrapQueue>,
    stop_dlq: Arc<MemoryDeadLetterQueue>,
    stop: Arc<MemoryRawQueue>,
}

fn full(settings: Settings) -> Full {
    let mut w = world(settings);
    let boot_dlq = Arc::new(MemoryDeadLetterQueue::new());
    let boot = Arc::new(MemoryBootstrapQueue::default());
    let stop_dlq = Arc::new(MemoryDeadLetterQueue::new());
    let stop = Arc::new(MemoryRawQueue::default());
    w.mover.bootstrap = Some(BootstrapRedrive {
        dlq: boot_dlq.clone(),
        queue: boot.clone(),
    });
    w.mover.stop_events = Some(StopEventsRedrive {
        dlq: stop_dlq.clone(),
        queue: stop.clone(),
    });
    Full {
        w,
        boot_dlq,
        boot,
        stop_dlq,
        stop,
    }
}

fn step(job_id: u64, launched_ago: CDuration) -> BootstrapMessage {
    BootstrapMessage {
        version: 1,
        job_id,
        runner_name: format!("sr_cpu-{job_id}-0"),
        instance_id: format!("i-{job_id:017x}"),
        pool: "cpu".into(),
        launched_at: now() - launched_ago,
        tries: 2,
        resend_after: None,
    }
}

fn step_json(m: &BootstrapMessage) -> String {
    serde_json::to_string(m).unwrap()
}

/// The ledger holds `m`'s runner in `state` (only the fields a record needs).
fn put_runner(l: &MemoryLedger, m: &BootstrapMessage, state: &str) {
    let record: RunnerRecord = serde_json::from_value(serde_json::json!({
        "name": m.runner_name, "pool": m.pool, "job_id": m.job_id, "weight": 1,
        "state": state, "instance_id": m.instance_id,
        "jit_parameter": format!("/sr/jit/{}", m.runner_name),
        "created_at": now(), "updated_at": now(),
    }))
    .expect("runner record");
    l.put_runner(record);
}

fn stop_event(instance: &str, sent_ago: CDuration) -> String {
    let mut e = StopEvent::SpotInterruption {
        instance_id: instance.into(),
    }
    .to_eventbridge();
    e["time"] = serde_json::json!((now() - sent_ago).to_rfc3339());
    e.to_string()
}

#[tokio::test]
async fn bootstrap_steps_go_back_to_the_bootstrap_queue_unless_their_runner_is_done() {
    let f = full(Settings::default());
    let waiting = step(1, CDuration::minutes(20));
    put_runner(&f.w.ledger, &waiting, "launched");
    let released = step(2, CDuration::minutes(20));
    put_runner(&f.w.ledger, &released, "released");
    let unknown = step(3, CDuration::minutes(20));
    let old = step(4, CDuration::hours(25));
    put_runner(&f.w.ledger, &old, "launched");
    let mut future = step(5, CDuration::minutes(20));
    future.version = 2;
    for m in [&waiting, &released, &unknown, &old] {
        f.boot_dlq.push(step_json(m));
    }
    f.boot_dlq.push(step_json(&future));
    f.boot_dlq.push("not json");
    f.boot_dlq.push(fresh(6).to_json()); // a job is not a bootstrap step

    let r = f.w.mover.run(now()).await;
    // Moved as it was, to be handled at once.
    assert_eq!(f.boot.take_all(), vec![(waiting, Duration::ZERO)]);
    assert!(f.w.jobs.sent().is_empty());
    assert_eq!(
        r.dropped(DropReason::Finished),
        2,
        "released and unknown runners"
    );
    assert_eq!(r.dropped(DropReason::Stale), 1, "launched 25 h ago");
    assert_eq!(r.dropped(DropReason::Malformed), 3);
    let q = r.queue(DlqKind::Bootstrap);
    assert_eq!(
        (q.received, q.moved, q.dropped, q.failed, q.left),
        (7, 1, 6, 0, Some(0))
    );
    assert_eq!((r.received, r.moved), (7, 1));
    assert!(f.boot_dlq.is_empty());
    // The stale one was not asked about.
    assert_eq!(f.w.ledger.calls("get_runner"), 3);
}

#[tokio::test]
async fn a_bootstrap_step_the_ledger_cannot_judge_stays_in_the_dlq() {
    let f = full(Settings::default());
    let m = step(1, CDuration::minutes(20));
    put_runner(&f.w.ledger, &m, "launched");
    f.boot_dlq.push(step_json(&m));
    f.w.ledger.set_failing(true);
    let r = f.w.mover.run(now()).await;
    assert_eq!(r.queue(DlqKind::Bootstrap).failed, 1);
    assert!(f.boot.take_all().is_empty());
    assert_eq!(f.boot_dlq.len(), 1);
}

#[tokio::test]
async fn a_bootstrap_step_in_the_jobs_dlq_goes_to_the_bootstrap_queue() {
    // Before the bootstrap queue had its own DLQ it redrove into the jobs DLQ.
    let f = full(Settings::default());
    let m = step(1, CDuration::minutes(20));
    put_runner(&f.w.ledger, &m, "launched");
    f.w.dlq.push(step_json(&m));
    f.w.push(&fresh(2));
    let r = f.w.mover.run(now()).await;
    assert_eq!(f.boot.take_all(), vec![(m, Duration::ZERO)]);
    assert_eq!(f.w.moved_ids(), vec![2]);
    assert_eq!((r.queue(DlqKind::Jobs).moved, r.dropped_total()), (2, 0));

    // A mover without a bootstrap queue drops it, saying why.
    let w = world(Settings::default());
    w.dlq.push(step_json(&step(3, CDuration::minutes(20))));
    let r = w.mover.run(now()).await;
    assert_eq!(r.dropped(DropReason::Malformed), 1);
    assert!(w.jobs.sent().is_empty());
}

#[tokio::test]
async fn stop_events_go_back_unchanged_malformed_and_stale_ones_are_dropped() {
    let f = full(Settings::default());
    let recent = stop_event("i-0aaaaaaaaaaaaaaa1", CDuration::hours(2));
    let stale = stop_event("i-0aaaaaaaaaaaaaaa2", CDuration::hours(25));
    f.stop_dlq.push(recent.clone());
    f.stop_dlq.push(stale);
    f.stop_dlq
        .push("{\"detail-type\": \"EC2 Spot Instance Interruption Warning\"");
    f.stop_dlq
        .push(serde_json::json!({"detail-type": "Scheduled Event", "detail": {}}).to_string());
    let r = f.w.mover.run(now()).await;
    assert_eq!(
        f.stop.sent(),
        vec![recent],
        "the body as EventBridge sent it"
    );
    assert_eq!(r.dropped(DropReason::Stale), 1);
    assert_eq!(r.dropped(DropReason::Malformed), 2);
    let q = r.queue(DlqKind::StopEvents);
    assert_eq!((q.received, q.moved, q.dropped, q.left), (4, 1, 3, Some(0)));
    assert!(f.stop_dlq.is_empty());
    // Stop events need no ledger.
    assert_eq!(
        f.w.ledger.calls("get_runner") + f.w.ledger.calls("get_job"),
        0
    );
}

#[tokio::test]
async fn a_failing_queue_stops_only_its_own_dlq() {
    let f = full(Settings::default());
    f.stop
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    f.stop_dlq
        .push(stop_event("i-0aaaaaaaaaaaaaaa1", CDuration::hours(1)));
    f.w.push(&fresh(1));
    let r = f.w.mover.run(now()).await;
    let stopped = r.stopped.as_deref().unwrap();
    assert!(stopped.starts_with("stop-events: "), "{stopped}");
    assert!(stopped.contains("stop-events queue"), "{stopped}");
    assert_eq!(r.queue(DlqKind::StopEvents).failed, 1);
    assert_eq!(f.stop_dlq.len(), 1);
    // The jobs DLQ is drained all the same.
    assert_eq!(f.w.moved_ids(), vec![1]);
    assert_eq!(r.queue(DlqKind::Jobs).stopped, None);
    assert_eq!(r.left, Some(1));
}

#[tokio::test]
async fn max_per_run_counts_every_dlq_stop_events_first() {
    let f = full(Settings {
        max_per_run: 12,
        ..Settings::default()
    });
    for n in 0..5 {
        f.stop_dlq
            .push(stop_event(&format!("i-{n:017x}"), CDuration::hours(1)));
    }
    for id in 0..5 {
        let m = step(id, CDuration::minutes(20));
        put_runner(&f.w.ledger, &m, "launched");
        f.boot_dlq.push(step_json(&m));
    }
    for id in 100..110 {
        f.w.push(&fresh(id));
    }
    let r = f.w.mover.run(now()).await;
    assert_eq!((r.received, r.moved), (12, 12));
    assert_eq!(f.stop.sent().len(), 5);
    assert_eq!(f.boot.take_all().len(), 5);
    assert_eq!(f.w.moved_ids(), vec![100, 101]);
    assert_eq!(r.left, Some(8));
    assert_eq!(r.queue(DlqKind::Jobs).left, Some(8));
    // Every move is paced, whatever its queue.
    assert_eq!(
        f.w.pacer.total(),
        pacer::budget(12, Settings::default().rate_per_second)
    );
}

#[test]
fn the_report_lists_each_dlq_drained() {
    let mut r = DlqReport::default();
    r.count_received(DlqKind::Bootstrap, 2);
    r.count_moved(DlqKind::Bootstrap);
    r.count_drop(DlqKind::Bootstrap, DropReason::Finished);
    r.set_left(DlqKind::Bootstrap, Some(0));
    r.set_left(DlqKind::Jobs, Some(3));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["queues"]["bootstrap"]["moved"], 1);
    assert_eq!(v["queues"]["bootstrap"]["dropped"], 1);
    assert_eq!(v["queues"]["jobs"]["left"], 3);
    assert_eq!(v["left"], 3);
    r.set_left(DlqKind::StopEvents, None);
    assert_eq!(r.left, None, "unknown when a depth is unknown");
}
