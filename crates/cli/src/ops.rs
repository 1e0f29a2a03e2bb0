//! Operator actions: drain/undrain, and the dlq-mover, janitor and stop-runner
//! logic run on demand or by `serve`.

use crate::adapters::Adapters;
use crate::handlers::{self, Handlers, LOCAL_DOCUMENT};
use crate::{Target, config_file};
use chrono::Utc;
use spotrunner_core::create_runner::JobOutcome;
use spotrunner_core::dlq_mover::{
    self, BootstrapRedrive, DlqKind, DlqMover, StopEventsRedrive, Verdict,
};
use spotrunner_core::ports::DeadLetter;
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_core::waiting::Waker;
use spotrunner_local::RunnerExited;
use std::process::ExitCode;
use std::sync::Arc;

/// Handlers for an operator command (no serve needed).
async fn open(target: &Target) -> Result<(Adapters, Handlers), String> {
    let config = config_file::load(&target.config)?;
    let adapters = Adapters::open(target, &config, false).await?;
    let h = handlers::build(config, &adapters).await?;
    Ok((adapters, h))
}

pub async fn set_drained(target: &Target, pool: &str, drained: bool) -> Result<ExitCode, String> {
    let config = config_file::load(&target.config)?;
    if config.pool(pool).is_none() {
        let known: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        return Err(format!(
            "no pool named {pool:?} (pools: {})",
            known.join(", ")
        ));
    }
    let adapters = Adapters::open(target, &config, false).await?;
    let now = Utc::now();
    adapters
        .ledger
        .set_drained(pool, drained, now)
        .await
        .map_err(|e| e.to_string())?;
    if drained {
        println!("pool {pool} drained: no new runners; its jobs wait in its line");
    } else {
        let waker = Waker {
            config: &config,
            ledger: adapters.ledger.as_ref(),
            jobs_queue: adapters.jobs_queue.as_ref(),
        };
        let woken = waker.wake(pool, now).await.map_err(|e| e.to_string())?;
        println!(
            "pool {pool} undrained: launching again ({} waiting job(s) woken)",
            woken.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn redrive(target: &Target, dry_run: bool) -> Result<ExitCode, String> {
    let (adapters, h) = open(target).await?;
    let report = run_redrive(&adapters, &h, dry_run).await?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

pub async fn janitor(target: &Target, dry_run: bool) -> Result<ExitCode, String> {
    let (adapters, h) = open(target).await?;
    let report = run_janitor(&adapters, &h, dry_run).await?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// The bootstrap DLQ and the stop-events DLQ the mover drains besides the jobs
/// DLQ: locally the bootstrap DLQ (there is no stop-events queue: runner exits
/// are events in the database); on AWS each pair the dlq-mover Lambda gets
/// (`SPOTRUNNER_BOOTSTRAP_DLQ_URL` + `SPOTRUNNER_BOOTSTRAP_QUEUE_URL`,
/// `SPOTRUNNER_STOP_EVENTS_DLQ_URL` + `SPOTRUNNER_STOP_EVENTS_QUEUE_URL`) when set.
async fn other_dlqs(
    a: &Adapters,
) -> Result<(Option<BootstrapRedrive>, Option<StopEventsRedrive>), String> {
    if let Some(st) = &a.local {
        let bootstrap = BootstrapRedrive {
            dlq: Arc::new(st.bootstrap_dlq.clone()),
            queue: Arc::new(st.bootstrap.clone()),
        };
        return Ok((Some(bootstrap), None));
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let pair = |dlq: &str, queue: &str| match (var(dlq), var(queue)) {
        (Some(d), Some(q)) => Ok(Some((d, q))),
        (None, None) => Ok(None),
        _ => Err(format!("redrive: set both {dlq} and {queue}, or neither")),
    };
    let bootstrap = pair(
        "SPOTRUNNER_BOOTSTRAP_DLQ_URL",
        "SPOTRUNNER_BOOTSTRAP_QUEUE_URL",
    )?;
    let stop = pair(
        "SPOTRUNNER_STOP_EVENTS_DLQ_URL",
        "SPOTRUNNER_STOP_EVENTS_QUEUE_URL",
    )?;
    if bootstrap.is_none() && stop.is_none() {
        return Ok((None, None));
    }
    use spotrunner_aws::{sqs_bootstrap::SqsBootstrapQueue, sqs_dlq};
    let sdk = spotrunner_aws::sdk::load().await;
    Ok((
        bootstrap.map(|(d, q)| BootstrapRedrive {
            dlq: Arc::new(sqs_dlq::SqsDeadLetterQueue::new(&sdk, d)),
            queue: Arc::new(SqsBootstrapQueue::new(&sdk, q)),
        }),
        stop.map(|(d, q)| StopEventsRedrive {
            dlq: Arc::new(sqs_dlq::SqsDeadLetterQueue::new(&sdk, d)),
            queue: Arc::new(sqs_dlq::SqsRawQueue::new(&sdk, q)),
        }),
    ))
}

/// The dlq-mover logic once: the jobs DLQ, and the bootstrap and stop-events
/// DLQs there are. A dry run changes nothing: it reads the local DLQs (SQS
/// cannot be peeked without hiding messages, so there it reports the depth).
pub async fn run_redrive(a: &Adapters, _h: &Handlers, dry_run: bool) -> Result<String, String> {
    let Some(dlq) = a.dlq.clone() else {
        return Err("redrive: no dead-letter queue configured (set SPOTRUNNER_DLQ_URL)".into());
    };
    let (bootstrap, stop_events) = other_dlqs(a).await?;
    let mover = DlqMover {
        dlq: dlq.clone(),
        jobs: a.jobs_queue.clone(),
        ledger: a.ledger.clone(),
        pacer: Arc::new(crate::pacer::TokioPacer::default()),
        settings: dlq_mover::Settings::default(),
        bootstrap,
        stop_events,
    };
    let now = Utc::now();
    if dry_run {
        let Some(st) = &a.local else {
            let depth = dlq.approximate_depth().await.map_err(|e| e.to_string())?;
            return Ok(format!(
                "redrive (dry run: nothing changed): about {depth} message(s) in the DLQ"
            ));
        };
        let mut letters = Vec::new();
        for (kind, q) in [
            (DlqKind::Jobs, &st.dlq),
            (DlqKind::Bootstrap, &st.bootstrap_dlq),
        ] {
            letters.extend(
                q.list()
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|m| (kind, m)),
            );
        }
        let mut out = format!(
            "redrive (dry run: nothing changed): {} message(s) in the DLQs\n",
            letters.len()
        );
        for (kind, m) in letters {
            let letter = DeadLetter {
                message_id: m.message_id.to_string(),
                receipt: String::new(),
                body: m.body,
                receive_count: m.receive_count,
            };
            let line = match mover.judge_in(kind, &letter, now).await {
                Verdict::Move(job) => {
                    format!("would move job {} back to the jobs queue", job.job_id)
                }
                Verdict::MoveBootstrap(step) => format!(
                    "would move the bootstrap step of runner {} (job {}) back to the bootstrap queue",
                    step.runner_name, step.job_id
                ),
                Verdict::MoveStopEvent { instance_id } => format!(
                    "would move the event for instance {instance_id} back to the stop-events queue"
                ),
                Verdict::Drop {
                    reason,
                    job_id,
                    detail,
                } => format!(
                    "would drop job {} ({}): {detail}",
                    job_id.map_or("?".into(), |j| j.to_string()),
                    reason.as_str()
                ),
                Verdict::Keep { job_id, error } => format!("would keep job {job_id}: {error}"),
            };
            out.push_str(&format!(
                "  {} message {}: {line}\n",
                kind.as_str(),
                m.message_id
            ));
        }
        return Ok(out.trim_end().to_string());
    }
    let r = mover.run(now).await;
    let dropped: Vec<String> = r
        .dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    let mut out = format!(
        "redrive: received {}, moved {}, dropped {} ({}), failed {}, left {}",
        r.received,
        r.moved,
        r.dropped_total(),
        if dropped.is_empty() {
            "none".into()
        } else {
            dropped.join(", ")
        },
        r.failed + r.delete_failed,
        r.left.map_or("?".into(), |n| n.to_string())
    );
    if let Some(why) = r.stopped {
        out.push_str(&format!("; stopped early: {why}"));
    }
    Ok(out)
}

/// The janitor logic once: a report of every action with its reason.
pub async fn run_janitor(_a: &Adapters, h: &Handlers, dry_run: bool) -> Result<String, String> {
    let report = h
        .janitor
        .run(Utc::now(), dry_run)
        .await
        .map_err(|e| format!("janitor: {e}"))?;
    let mut out = format!(
        "janitor{}: {} action(s), {} failed\n",
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        },
        report.results.len(),
        report.failed()
    );
    for r in &report.results {
        let a = &r.action;
        let state = match (&r.error, r.done) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, true) => "done".into(),
            (None, false) => "planned".into(),
        };
        out.push_str(&format!(
            "  {:<24} {:<40} {} [{state}]\n",
            a.kind.as_str(),
            a.subject,
            a.reason
        ));
    }
    for w in &report.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    Ok(out.trim_end().to_string())
}

/// One event of the local `events` queue through the stop-runner logic: a
/// runner process's exit, or an EventBridge-shaped event (the spot
/// interruption warning `spotrunner interrupt` announces).
pub async fn on_runner_exit(_a: &Adapters, h: &Handlers, body: &str) -> JobOutcome {
    let parsed: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return JobOutcome::Invalid {
                reason: format!("runner event: {e}"),
            };
        }
    };
    if parsed.get("detail-type").is_some() {
        return match StopEvent::from_eventbridge(&parsed) {
            Ok(event) => handle_stop_event(h, &event).await,
            Err(e) => JobOutcome::Invalid {
                reason: format!("runner event: {e}"),
            },
        };
    }
    let exited: RunnerExited = match serde_json::from_value(parsed) {
        Ok(e) => e,
        Err(e) => {
            return JobOutcome::Invalid {
                reason: format!("runner-exit event: {e}"),
            };
        }
    };
    let event = StopEvent::CommandStatus {
        instance_id: exited.instance_id.clone(),
        command_id: format!("cmd-{}", exited.instance_id),
        document: LOCAL_DOCUMENT.into(),
        status: if exited.exit_code == Some(0) {
            "Success"
        } else {
            "Failed"
        }
        .into(),
    };
    handle_stop_event(h, &event).await
}

async fn handle_stop_event(h: &Handlers, event: &StopEvent) -> JobOutcome {
    match h.stop_runner.handle(event, Utc::now()).await {
        Ok(_) => JobOutcome::Duplicate,
        Err(e) => JobOutcome::Retry {
            reason: e.to_string(),
            after: std::time::Duration::from_secs(5),
        },
    }
}
