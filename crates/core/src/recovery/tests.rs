use super::*;
use crate::Config;
use crate::config::RedeliveryConfig;
use crate::fakes::{MemoryHookDeliveries, MemoryJobSource, MemoryLedger, MemoryQueue};
use crate::ports::{HookRef, Ledger, ListedJob};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::sync::Arc;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap() + Duration::seconds(secs)
}

fn config(extra: &str) -> Config {
    Config::from_toml(&format!(
        r#"
deployment = "sr"
allowed_owners = ["acme", "alice"]
[github]
auth = {{ type = "app", app_id = 1, private_key = "env:K" }}
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 5
{extra}
"#
    ))
    .unwrap()
}

struct Loop {
    log: Arc<MemoryHookDeliveries>,
    ledger: Arc<MemoryLedger>,
    settings: RedeliveryConfig,
}

impl Loop {
    fn new(page_size: usize) -> Self {
        Self {
            log: Arc::new(MemoryHookDeliveries::new(page_size)),
            ledger: Arc::new(MemoryLedger::default()),
            settings: RedeliveryConfig::default(),
        }
    }

    /// A fresh task over the same log and ledger (a restart).
    fn task(&self) -> Redelivery {
        Redelivery {
            config: self.settings.clone(),
            hook: Some(HookRef::App),
            deliveries: self.log.clone(),
            ledger: self.ledger.clone(),
        }
    }

    async fn run(&self, now: DateTime<Utc>) -> RedeliveryReport {
        self.log.set_now(now);
        self.task().run(now).await.expect("run")
    }
}

#[tokio::test]
async fn a_failed_delivery_is_redelivered_once_and_settles_when_it_succeeds() {
    let l = Loop::new(100);
    l.log.record("g-ok", "workflow_job", 202, t(0), false);
    let failed = l.log.record("g-503", "workflow_job", 503, t(1), false);
    l.log.record("g-ping", "ping", 500, t(2), false);

    let first = l.run(t(60)).await;
    assert_eq!(first.failed_found, 1, "{first:?}");
    assert_eq!(first.redelivered, 1, "{first:?}");
    assert_eq!(l.log.redeliveries(), [failed]);
    assert!(first.complete);

    // The redelivery (202) is in the log now: the next run settles it.
    let second = l.run(t(120)).await;
    assert_eq!(second.recovered, 1, "{second:?}");
    assert_eq!(second.redelivered, 0, "{second:?}");
    assert_eq!(second.pending, 0);
    // And later runs leave it alone, after a restart too.
    let third = l.run(t(180)).await;
    assert_eq!((third.redelivered, third.failed_found), (0, 0), "{third:?}");
    assert_eq!(l.log.redeliveries(), [failed]);
}

#[tokio::test]
async fn a_delivery_already_redelivered_successfully_is_not_redelivered_again() {
    let l = Loop::new(100);
    l.log.record("g1", "workflow_job", 503, t(0), false);
    l.log.record("g1", "workflow_job", 202, t(30), true);
    let report = l.run(t(60)).await;
    assert_eq!(report.redelivered, 0, "{report:?}");
    assert_eq!(report.failed_found, 0, "{report:?}");
    assert!(l.log.redeliveries().is_empty());
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_given_up_after_max_requests() {
    let mut l = Loop::new(100);
    l.settings.max_requests = 2;
    l.log.answer_redeliveries(503);
    l.log.record("g1", "workflow_job", 0, t(0), false);
    let mut gave_up = 0;
    for i in 1..=5 {
        let r = l.run(t(60 * i)).await;
        gave_up += r.gave_up;
    }
    assert_eq!(l.log.redeliveries().len(), 2, "{:?}", l.log.attempts());
    assert_eq!(gave_up, 1);
    let state: RedeliveryState =
        serde_json::from_value(l.ledger.state_doc(keys::REDELIVERY).await.unwrap().unwrap())
            .unwrap();
    assert!(state.pending.is_empty(), "{state:?}");
}

#[tokio::test]
async fn a_refused_payload_is_not_redelivered() {
    let l = Loop::new(100);
    l.log.record("g-bad", "workflow_job", 400, t(0), false);
    l.log.record("g-auth", "workflow_job", 401, t(1), false);
    let r = l.run(t(60)).await;
    assert_eq!(r.not_retryable, 1, "{r:?}");
    assert_eq!(r.redelivered, 1, "{r:?}");
    let redelivered: Vec<String> = l
        .log
        .attempts()
        .into_iter()
        .filter(|d| d.redelivery)
        .map(|d| d.guid)
        .collect();
    assert_eq!(redelivered, ["g-auth"]);
}

#[tokio::test]
async fn the_checkpoint_survives_a_restart_and_old_deliveries_are_not_read_again() {
    let l = Loop::new(10);
    for i in 0..30 {
        l.log
            .record(&format!("g{i}"), "workflow_job", 202, t(i), false);
    }
    let first = l.run(t(100)).await;
    assert!(first.complete, "{first:?}");
    assert_eq!(first.deliveries_seen, 30);
    let calls = l.log.list_calls();
    // A restart: a new task on the same ledger reads one page, down to the checkpoint.
    l.log.record("late", "workflow_job", 503, t(200), false);
    let second = l.run(t(260)).await;
    assert_eq!(l.log.list_calls() - calls, 1, "{second:?}");
    assert!(second.deliveries_seen <= 2, "{second:?}");
    assert_eq!(second.redelivered, 1);
}

#[tokio::test]
async fn a_scan_cut_short_by_the_budget_continues_and_every_failure_is_redelivered_once() {
    let mut l = Loop::new(5);
    l.settings.max_calls = 3;
    let mut failed = Vec::new();
    for i in 0..60 {
        let status = if i % 7 == 0 { 502 } else { 202 };
        let id = l
            .log
            .record(&format!("g{i}"), "workflow_job", status, t(i), false);
        if status != 202 {
            failed.push(id);
        }
    }
    let mut runs = 0;
    while runs < 100 {
        runs += 1;
        let r = l.run(t(1000 + runs)).await;
        assert!(r.calls <= 3, "{r:?}");
        if r.complete && r.pending == 0 && l.log.redeliveries().len() == failed.len() {
            break;
        }
    }
    let mut got = l.log.redeliveries();
    got.sort_unstable();
    assert_eq!(got, failed, "each failed delivery redelivered exactly once");
    assert!(runs > 3, "the budget spread the work over runs: {runs}");
}

#[tokio::test]
async fn a_github_outage_ends_the_run_and_the_next_one_catches_up() {
    let l = Loop::new(100);
    l.log.record("g1", "workflow_job", 503, t(0), false);
    l.log.fail_lists(1);
    let r = l.run(t(60)).await;
    assert!(r.error.is_some(), "{r:?}");
    assert_eq!(r.redelivered, 0);
    let r = l.run(t(120)).await;
    assert_eq!(r.redelivered, 1, "{r:?}");
}

#[tokio::test]
async fn disabled_or_without_a_hook_it_reads_nothing() {
    let mut l = Loop::new(100);
    l.log.record("g1", "workflow_job", 503, t(0), false);
    l.settings.enabled = false;
    assert!(l.run(t(60)).await.skipped.is_some());
    l.settings.enabled = true;
    let task = Redelivery {
        hook: None,
        ..l.task()
    };
    assert!(task.run(t(60)).await.unwrap().skipped.is_some());
    assert_eq!(l.log.list_calls(), 0);
}

// ------------------------------------------------------------------ sweep

struct SweepWorld {
    source: Arc<MemoryJobSource>,
    ledger: Arc<MemoryLedger>,
    queue: Arc<MemoryQueue>,
    config: Config,
}

impl SweepWorld {
    fn new(config: Config, page_size: usize) -> Self {
        Self {
            source: Arc::new(MemoryJobSource::new(page_size)),
            ledger: Arc::new(MemoryLedger::default()),
            queue: Arc::new(MemoryQueue::default()),
            config,
        }
    }

    async fn run(&self, now: DateTime<Utc>) -> SweepReport {
        Sweep {
            config: Arc::new(self.config.clone()),
            source: self.source.clone(),
            ledger: self.ledger.clone(),
            queue: self.queue.clone(),
        }
        .run(now)
        .await
        .expect("sweep")
    }

    fn enqueued(&self) -> Vec<u64> {
        self.queue.sent().iter().map(|m| m.job_id).collect()
    }
}

fn job(id: u64, run_id: u64, status: &str, labels: &[&str], created: DateTime<Utc>) -> ListedJob {
    ListedJob {
        id,
        run_id,
        run_attempt: 1,
        status: status.into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        created_at: created,
        name: Some(format!("job-{id}")),
    }
}

#[tokio::test]
async fn a_queued_job_never_delivered_is_enqueued_once() {
    let w = SweepWorld::new(config(""), 100);
    w.source.add_repository("acme/app", "Organization");
    w.source.add_repository("alice/dotfiles", "User");
    w.source.add_repository("evil/x", "Organization");
    w.source.add_job(
        "acme/app",
        10,
        job(1, 10, "queued", &["self-hosted", "linux"], t(0)),
    );
    w.source
        .add_job("acme/app", 10, job(2, 10, "completed", &["linux"], t(0)));
    w.source
        .add_job("acme/app", 11, job(3, 11, "queued", &["windows"], t(0)));
    w.source
        .add_job("alice/dotfiles", 12, job(4, 12, "queued", &["linux"], t(0)));
    w.source
        .add_job("evil/x", 13, job(5, 13, "queued", &["linux"], t(0)));
    let r = w.run(t(600)).await;
    assert_eq!(w.enqueued(), [1, 4], "{r:?}");
    assert_eq!(r.not_ours, 1, "{r:?}");
    assert!(r.complete);
    let sent = w.queue.sent();
    assert_eq!(sent[0].delivery_id.as_deref(), Some(SWEEP_DELIVERY));
    assert_eq!(sent[0].pool, "cpu");
    assert_eq!(sent[1].owner_type, "User");
    assert_eq!(sent[0].queued_at, Some(t(0)));
    // Still queued (waiting on the jobs queue): not enqueued again.
    let again = w.run(t(900)).await;
    assert_eq!(w.enqueued(), [1, 4], "{again:?}");
    assert_eq!(again.known, 2);
}

#[tokio::test]
async fn a_job_the_ledger_knows_or_too_young_is_left_alone() {
    let w = SweepWorld::new(config(""), 100);
    w.source.add_repository("acme/app", "Organization");
    w.source
        .add_job("acme/app", 10, job(1, 10, "queued", &["linux"], t(0)));
    w.source
        .add_job("acme/app", 10, job(2, 10, "queued", &["linux"], t(590)));
    let msg = crate::ports::ledger_contract::job_message(1, "cpu", 0);
    w.ledger
        .claim_job(&msg, t(10), Duration::seconds(100))
        .await
        .unwrap();
    let r = w.run(t(600)).await;
    assert!(w.enqueued().is_empty(), "{r:?}");
    assert_eq!((r.known, r.too_young), (1, 1), "{r:?}");
}

#[tokio::test]
async fn the_budget_spreads_repositories_over_runs_and_reaches_them_all() {
    let mut small = config("");
    small.recovery.sweep.max_calls = 5;
    let w = SweepWorld::new(small, 100);
    for i in 0..6 {
        let repo = format!("acme/r{i}");
        w.source.add_repository(&repo, "Organization");
        w.source.add_job(
            &repo,
            100 + i,
            job(i + 1, 100 + i, "queued", &["linux"], t(0)),
        );
    }
    let mut runs = 0;
    while w.enqueued().len() < 6 && runs < 20 {
        runs += 1;
        let r = w.run(t(600 + runs as i64)).await;
        assert!(r.calls <= 5, "{r:?}");
    }
    let mut got = w.enqueued();
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);
    assert!(runs > 1, "one run could not do it all: {runs}");
}

#[tokio::test]
async fn a_low_rate_limit_stops_the_sweep() {
    let w = SweepWorld::new(config(""), 100);
    w.source.add_repository("acme/app", "Organization");
    w.source
        .add_job("acme/app", 10, job(1, 10, "queued", &["linux"], t(0)));
    w.source.set_rate_limit(100, 5000);
    let r = w.run(t(600)).await;
    assert!(r.rate_limited, "{r:?}");
    assert_eq!(r.calls, 0);
    assert!(w.enqueued().is_empty());
    w.source.set_rate_limit(4000, 5000);
    let r = w.run(t(700)).await;
    assert!(!r.rate_limited);
    assert_eq!(w.enqueued(), [1]);
}

#[tokio::test]
async fn a_drained_pool_or_a_disabled_sweep_enqueues_nothing() {
    let mut w = SweepWorld::new(config(""), 100);
    w.source.add_repository("acme/app", "Organization");
    w.source
        .add_job("acme/app", 10, job(1, 10, "queued", &["linux"], t(0)));
    w.ledger.set_drained("cpu", true, t(0)).await.unwrap();
    let r = w.run(t(600)).await;
    assert!(w.enqueued().is_empty(), "{r:?}");
    assert_eq!(r.not_ours, 1);
    w.ledger.set_drained("cpu", false, t(600)).await.unwrap();
    w.config.recovery.sweep.enabled = false;
    let r = w.run(t(700)).await;
    assert!(r.skipped.is_some());
    assert!(w.enqueued().is_empty());
}

#[tokio::test]
async fn without_an_allow_list_the_installations_are_swept_and_a_pat_needs_one() {
    let mut app = config("");
    app.allowed_owners.clear();
    let w = SweepWorld::new(app, 1);
    w.source.add_repository("acme/app", "Organization");
    w.source.add_repository("bob/tool", "User");
    w.source
        .add_job("acme/app", 10, job(1, 10, "queued", &["linux"], t(0)));
    w.source
        .add_job("bob/tool", 11, job(2, 11, "queued", &["linux"], t(0)));
    let r = w.run(t(600)).await;
    let mut got = w.enqueued();
    got.sort_unstable();
    assert_eq!(got, [1, 2], "{r:?}");

    let mut pat = config("");
    pat.allowed_owners.clear();
    let w = SweepWorld::new(pat, 100);
    w.source.as_pat();
    let r = w.run(t(600)).await;
    assert!(r.skipped.is_some(), "{r:?}");
}

#[tokio::test]
async fn allowed_repositories_are_read_by_name() {
    let mut named = config("");
    named.allowed_repositories = vec!["acme/app".into(), "acme/gone".into()];
    let w = SweepWorld::new(named, 100);
    w.source.add_repository("acme/app", "Organization");
    w.source.add_repository("acme/other", "Organization");
    w.source
        .add_job("acme/app", 10, job(1, 10, "queued", &["linux"], t(0)));
    w.source
        .add_job("acme/other", 11, job(2, 11, "queued", &["linux"], t(0)));
    let r = w.run(t(600)).await;
    assert_eq!(w.enqueued(), [1], "{r:?}");
    assert_eq!(r.repositories, 1);
}

#[tokio::test]
async fn a_public_repositorys_missed_job_is_not_enqueued_unless_its_pool_allows_it() {
    for (extra, expected) in [
        ("", vec![1]),
        ("allow_public_repositories = true", vec![1, 2]),
    ] {
        let w = SweepWorld::new(config(extra), 100);
        w.source.add_repository("acme/app", "Organization");
        w.source.add_repository("acme/oss", "Organization");
        w.source.set_public("acme/oss");
        w.source
            .add_job("acme/app", 10, job(1, 10, "queued", &["linux"], t(0)));
        w.source
            .add_job("acme/oss", 11, job(2, 11, "queued", &["linux"], t(0)));
        let r = w.run(t(600)).await;
        assert_eq!(w.enqueued(), expected, "{extra:?}: {r:?}");
        assert_eq!(r.not_ours, 2 - expected.len() as u32, "{extra:?}: {r:?}");
    }
}

#[tokio::test]
async fn any_owner_said_explicitly_sweeps_every_installation() {
    let mut any = config("");
    any.allowed_owners = vec!["*".into()];
    let w = SweepWorld::new(any, 100);
    w.source.add_repository("acme/app", "Organization");
    w.source.add_repository("zed/tool", "Organization");
    w.source
        .add_job("acme/app", 10, job(1, 10, "queued", &["linux"], t(0)));
    w.source
        .add_job("zed/tool", 11, job(2, 11, "queued", &["linux"], t(0)));
    let r = w.run(t(600)).await;
    assert_eq!(w.enqueued(), [1, 2], "{r:?}");
}
