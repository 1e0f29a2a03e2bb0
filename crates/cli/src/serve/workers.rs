//! The loops of `serve`: jobs and bootstrap queues through create-runner, and
//! locally the runner-exit reaper and the events queue through stop-runner, plus
//! the built-in schedules. Each loop handles a batch's messages concurrently
//! and checks for a stop between batches only, so a launch in flight always
//! finishes.

use super::Shared;
use crate::config_file;
use crate::inbox::{Delivery, Inbox};
use crate::ops;
use chrono::Utc;
use spotrunner_core::create_runner::JobOutcome;
use spotrunner_core::ports::BootstrapMessage;
use spotrunner_core::waiting::Waker;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long an empty queue is left before it is read again: a woken job's
/// message waits at most this long (a read of an empty SQLite queue is cheap).
const IDLE: Duration = Duration::from_millis(50);
const BATCH: usize = 8;

pub fn spawn_all(shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(jobs_loop(shared.clone())),
        tokio::spawn(bootstrap_loop(shared.clone())),
        tokio::spawn(schedule(shared.clone(), Schedule::Janitor)),
        tokio::spawn(schedule(shared.clone(), Schedule::Redrive)),
        tokio::spawn(schedule(shared.clone(), Schedule::Redelivery)),
        tokio::spawn(schedule(shared.clone(), Schedule::Sweep)),
        tokio::spawn(wake_at_start(shared.clone())),
        tokio::spawn(hot_loop(shared.clone())),
    ];
    if shared.adapters.local.is_some() {
        tasks.push(tokio::spawn(reaper_loop(shared.clone())));
        tasks.push(tokio::spawn(events_loop(shared.clone())));
    }
    tasks
}

fn visibility(shared: &Shared) -> Duration {
    let h = shared.handlers();
    Duration::from_secs(config_file::local(&h.config).visibility_timeout_secs)
}

/// Acknowledge or hand back one delivery by its outcome.
async fn settle(inbox: &dyn Inbox, d: &Delivery, outcome: &JobOutcome) {
    let result = match outcome {
        JobOutcome::Retry { after, .. } => inbox.retry_after(&d.receipt, *after).await,
        // Left to its visibility timeout; the receive count walks it to the DLQ.
        JobOutcome::Invalid { .. } => Ok(()),
        _ => inbox.ack(&d.receipt).await,
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not settle a queue message; it will be redelivered");
    }
}

async fn receive(shared: &Shared, inbox: &dyn Inbox) -> Vec<Delivery> {
    match inbox.receive(BATCH, visibility(shared)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "receive failed");
            Vec::new()
        }
    }
}

async fn jobs_loop(shared: Arc<Shared>) {
    let inbox = shared.adapters.jobs_inbox.clone();
    while !shared.stopping() {
        let deliveries = receive(&shared, inbox.as_ref()).await;
        if deliveries.is_empty() {
            shared.pause(IDLE).await;
            continue;
        }
        let h = shared.handlers();
        let batch = deliveries
            .iter()
            .map(|d| (d.receipt.clone(), d.body.clone()))
            .collect();
        let result = h.create_runner.handle_batch(batch, Utc::now()).await;
        for item in &result.items {
            if let Some(d) = deliveries.iter().find(|d| d.receipt == item.message_id) {
                settle(inbox.as_ref(), d, &item.outcome).await;
            }
        }
    }
}

async fn bootstrap_loop(shared: Arc<Shared>) {
    let inbox = shared.adapters.bootstrap_inbox.clone();
    while !shared.stopping() {
        let deliveries = receive(&shared, inbox.as_ref()).await;
        if deliveries.is_empty() {
            shared.pause(IDLE).await;
            continue;
        }
        let h = shared.handlers();
        // Each step concurrently, as concurrent Lambda invocations would.
        futures::future::join_all(deliveries.iter().map(|d| {
            let (h, inbox) = (&h, inbox.as_ref());
            async move {
                let outcome = match serde_json::from_str::<BootstrapMessage>(&d.body) {
                    Ok(msg) => h.create_runner.handle_bootstrap(&msg, Utc::now()).await,
                    Err(e) => {
                        tracing::error!(error = %e, "malformed bootstrap message");
                        JobOutcome::Invalid {
                            reason: e.to_string(),
                        }
                    }
                };
                settle(inbox, d, &outcome).await;
            }
        }))
        .await;
    }
}

/// Local: turn ended runner processes into events (a durable queue).
async fn reaper_loop(shared: Arc<Shared>) {
    let Some(st) = shared.adapters.local.clone() else {
        return;
    };
    while !shared.stopping() {
        if let Err(e) = st.backend.reap() {
            tracing::warn!(error = %e, "could not check runner processes");
        }
        shared.pause(Duration::from_millis(100)).await;
    }
}

/// Local: runner-exit events through the stop-runner logic.
async fn events_loop(shared: Arc<Shared>) {
    let Some(st) = shared.adapters.local.clone() else {
        return;
    };
    let inbox: &dyn Inbox = &st.events;
    while !shared.stopping() {
        let deliveries = receive(&shared, inbox).await;
        if deliveries.is_empty() {
            shared.pause(IDLE).await;
            continue;
        }
        let h = shared.handlers();
        // Each runner's end concurrently (stop-runner is idempotent and safe
        // to run at once for different runners, as concurrent Lambdas do).
        futures::future::join_all(deliveries.iter().map(|d| {
            let (h, adapters) = (&h, &shared.adapters);
            async move {
                let outcome = ops::on_runner_exit(adapters, h, &d.body).await;
                settle(inbox, d, &outcome).await;
            }
        }))
        .await;
    }
}

/// A start may follow a crash between a release and its wake: look at every
/// pool's waiting line once (the janitor does it again at each pass).
async fn wake_at_start(shared: Arc<Shared>) {
    let h = shared.handlers();
    let waker = Waker {
        config: &h.config,
        ledger: shared.adapters.ledger.as_ref(),
        jobs_queue: shared.adapters.jobs_queue.as_ref(),
    };
    let woken = waker.wake_all(Utc::now()).await;
    if !woken.is_empty() {
        tracing::info!(woken = ?woken, "waiting jobs woken at start for free slots");
    }
}

/// How often `serve` keeps its hot pools at their targets (on AWS the
/// janitor's pass does it, and each job's delivery refills the pool).
const HOT_EVERY: Duration = Duration::from_secs(2);

/// Hot pools (`spotrunner_core::hot`): top up, recycle, trim — at start,
/// then every [`HOT_EVERY`].
async fn hot_loop(shared: Arc<Shared>) {
    loop {
        let h = shared.handlers();
        if h.config.pools.iter().any(|p| p.hot.is_some()) {
            let report = h.janitor.step_hot(Utc::now()).await;
            for p in report.pools.iter().filter(|p| p.refills > 0 || p.ended > 0) {
                tracing::info!(pool = %p.pool, target = p.target, free = p.free, refills = p.refills, ended = p.ended, "hot pool step");
            }
        }
        shared.pause(HOT_EVERY).await;
        if shared.stopping() {
            return;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Schedule {
    Janitor,
    Redrive,
    /// Failed webhook deliveries asked for again (GitHub never redelivers).
    Redelivery,
    /// Queued jobs whose webhook never came.
    Sweep,
}

/// The first redelivery and sweep run this soon after a start (a restart is
/// when deliveries were missed), then at their intervals.
const FIRST_RECOVERY: Duration = Duration::from_secs(5);

async fn schedule(shared: Arc<Shared>, which: Schedule) {
    let mut first = true;
    loop {
        let config = shared.handlers().config;
        let local = config_file::local(&config);
        let every = Duration::from_secs(match which {
            Schedule::Janitor => local.janitor_interval_secs,
            Schedule::Redrive => local.redrive_interval_secs,
            Schedule::Redelivery => config.recovery.redelivery.interval_secs,
            Schedule::Sweep => config.recovery.sweep.interval_secs,
        });
        let wait = match which {
            Schedule::Redelivery | Schedule::Sweep if first => every.min(FIRST_RECOVERY),
            _ => every,
        };
        first = false;
        shared.pause(wait).await;
        if shared.stopping() {
            return;
        }
        let h = shared.handlers();
        let now = chrono::Utc::now();
        let result = match which {
            Schedule::Janitor => ops::run_janitor(&shared.adapters, &h, false).await,
            Schedule::Redrive => ops::run_redrive(&shared.adapters, &h, false).await,
            // Their runs log their own summary line.
            Schedule::Redelivery => h
                .redelivery
                .run(now)
                .await
                .map(|_| String::new())
                .map_err(|e| e.to_string()),
            Schedule::Sweep => h
                .sweep
                .run(now)
                .await
                .map(|_| String::new())
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(report) if report.is_empty() => {}
            Ok(report) => tracing::info!(schedule = ?which, %report, "scheduled run done"),
            Err(e) => tracing::warn!(schedule = ?which, error = %e, "scheduled run failed"),
        }
    }
}
