//! `spotrunner status [--json]` and `GET /status`: jobs by state, runners by
//! state per pool (instance, age, job), capacity used/max, queue and DLQ depths.

use crate::adapters::Adapters;
use crate::inbox::QueueDepth;
use crate::{Target, config_file};
use chrono::{DateTime, Utc};
use serde::Serialize;
use spotrunner_core::Config;
use spotrunner_core::circuit::{CircuitState, PoolHealth};
use spotrunner_core::job::JobMessage;
use spotrunner_core::ports::{RunnerState, Stage};
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Debug, Serialize)]
pub struct Status {
    pub deployment: String,
    pub backend: &'static str,
    pub at: DateTime<Utc>,
    pub jobs: Jobs,
    pub pools: BTreeMap<String, PoolStatus>,
    pub capacity: Capacity,
    pub queues: BTreeMap<String, QueueDepth>,
    /// Local backend: every runner process, live or ended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceLine>,
    /// The redelivery loop's and the sweep's state (from the ledger).
    pub recovery: RecoveryStatus,
    /// The runner version in use, the cache and GitHub's newest release.
    pub runner: crate::status_runner::RunnerVersionStatus,
}

#[derive(Debug, Default, Serialize)]
pub struct RecoveryStatus {
    /// Deliveries before this were looked at (none: the loop has not run).
    pub redelivery_checkpoint: Option<DateTime<Utc>>,
    /// Failed `workflow_job` deliveries waiting for a successful redelivery.
    pub pending_deliveries: Vec<PendingDelivery>,
    pub sweep_last_complete: Option<DateTime<Utc>>,
    /// Where the next sweep starts (it stopped there for its budget).
    pub sweep_next_repository: Option<String>,
    /// Jobs the sweep enqueued in the last 24 h.
    pub swept_jobs: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub struct PendingDelivery {
    pub delivery: String,
    pub status_code: u16,
    pub requests: u32,
}

#[derive(Debug, Serialize)]
pub struct Jobs {
    /// Ledger states, plus `queued`: on the jobs queue, not yet claimed.
    pub by_state: BTreeMap<String, u64>,
    pub items: Vec<JobLine>,
}

#[derive(Debug, Serialize)]
pub struct JobLine {
    pub job_id: u64,
    pub pool: String,
    pub repository: String,
    pub state: String,
    pub runner_name: Option<String>,
    pub age_secs: i64,
    /// Why the job was given up on (`failed`, `dropped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// A job a spot interruption hit: what became of its re-run
    /// (`undecided` until its run completed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub used: u32,
    pub max_runners: u32,
    pub weight: u32,
    pub drained: bool,
    /// The circuit breaker: `closed`, `open` (paused: runners keep ending
    /// before their job starts) or `half-open` (one probe launch allowed).
    pub circuit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_open_until: Option<DateTime<Utc>>,
    /// Start failures in a row, and the last one's reason.
    pub start_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_start_failure: Option<String>,
    /// The spot breaker: `closed`, or `open` (no spot launches until then).
    pub spot_breaker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_breaker_until: Option<DateTime<Utc>>,
    /// Spot interruptions within the breaker's window, and how often it opened.
    pub spot_interruptions: u32,
    pub spot_breaks: u32,
    pub runners_by_state: BTreeMap<String, u64>,
    pub runners: Vec<RunnerLine>,
    /// Jobs in the pool's waiting line (the pool or the global quota is full,
    /// or the pool is drained).
    pub waiting: usize,
    /// How long the pool's jobs waited on GitHub (created → `in_progress`).
    pub queue_time: QueueTime,
}

/// Queue-time percentiles of the jobs that started within the window.
#[derive(Debug, Default, Serialize)]
pub struct QueueTime {
    pub window_secs: i64,
    pub jobs: usize,
    pub p50_secs: Option<f64>,
    pub p95_secs: Option<f64>,
    pub p99_secs: Option<f64>,
}

impl QueueTime {
    /// From the queue times (milliseconds) of the jobs in the window.
    pub fn of(mut millis: Vec<i64>, window_secs: i64) -> Self {
        millis.sort_unstable();
        let pick = |p: f64| -> Option<f64> {
            if millis.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least p of them at or below it.
            let rank = ((p * millis.len() as f64).ceil() as usize).clamp(1, millis.len());
            Some(millis[rank - 1] as f64 / 1000.0)
        };
        Self {
            window_secs,
            jobs: millis.len(),
            p50_secs: pick(0.50),
            p95_secs: pick(0.95),
            p99_secs: pick(0.99),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunnerLine {
    pub name: String,
    pub state: String,
    pub job_id: u64,
    pub instance_id: Option<String>,
    pub age_secs: i64,
    pub end_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Capacity {
    pub weight_used: u32,
    pub weight_max: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct InstanceLine {
    pub instance_id: String,
    pub runner_name: String,
    pub state: String,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// The job it was launched for and the capacity type asked for (`spot`,
    /// `on-demand`), from its tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_type: Option<String>,
    /// What a sized job asked (`cpu=8 ram=32`), from its `spotrunner:size` tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Queue times count over the last hour unless `status --window` says otherwise.
pub const DEFAULT_WINDOW_SECS: i64 = 3600;

pub async fn collect(a: &Adapters, config: &Config) -> Result<Status, String> {
    collect_window(a, config, DEFAULT_WINDOW_SECS).await
}

pub async fn collect_window(
    a: &Adapters,
    config: &Config,
    window_secs: i64,
) -> Result<Status, String> {
    let now = Utc::now();
    let jobs = a.ledger.list_jobs().await.map_err(err)?;
    let runners = a.ledger.list_runners().await.map_err(err)?;
    let cap = a.ledger.capacity().await.map_err(err)?;
    let drained = a.ledger.drained_pools().await.map_err(err)?;
    let health: BTreeMap<String, PoolHealth> = a
        .ledger
        .list_pool_health()
        .await
        .map_err(err)?
        .into_iter()
        .map(|h| (h.pool.clone(), h))
        .collect();

    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let mut items = Vec::new();
    for j in &jobs {
        *by_state.entry(j.state.as_str().to_string()).or_default() += 1;
        items.push(JobLine {
            job_id: j.job_id,
            pool: j.pool.clone(),
            repository: j.repository.clone(),
            state: j.state.as_str().to_string(),
            runner_name: j.runner_name.clone(),
            age_secs: (now - j.created_at).num_seconds(),
            end_reason: j.end_reason.clone(),
            rerun: j
                .timeline
                .get(spotrunner_core::ports::Stage::Interrupted)
                .map(|_| j.rerun.clone().unwrap_or_else(|| "undecided".into())),
        });
    }
    // Locally the jobs queue can be read: jobs waiting there, not yet claimed.
    if let Some(st) = &a.local {
        let known: std::collections::BTreeSet<u64> = jobs.iter().map(|j| j.job_id).collect();
        let mut waiting = std::collections::BTreeSet::new();
        for m in st.jobs.list().map_err(err)? {
            if let Ok(msg) = JobMessage::parse(&m.body)
                && !known.contains(&msg.job_id)
                && waiting.insert(msg.job_id)
            {
                items.push(JobLine {
                    job_id: msg.job_id,
                    pool: msg.pool.clone(),
                    repository: msg.repository.clone(),
                    state: "queued".into(),
                    runner_name: None,
                    age_secs: (now - msg.received_at).num_seconds(),
                    end_reason: None,
                    rerun: None,
                });
            }
        }
        if !waiting.is_empty() {
            by_state.insert("queued".into(), waiting.len() as u64);
        }
    }

    let mut pools: BTreeMap<String, PoolStatus> = config
        .pools
        .iter()
        .map(|p| {
            let h = health
                .get(&p.name)
                .cloned()
                .unwrap_or_else(|| PoolHealth::new(&p.name));
            let circuit = h.state(now);
            (
                p.name.clone(),
                PoolStatus {
                    used: cap.pools.get(&p.name).copied().unwrap_or(0),
                    max_runners: p.max_runners,
                    weight: p.weight,
                    drained: drained.contains(&p.name),
                    circuit: circuit.as_str().to_string(),
                    circuit_open_until: match circuit {
                        CircuitState::Open { until } => Some(until),
                        _ => None,
                    },
                    start_failures: h.failures.len() as u32,
                    last_start_failure: h.last_reason().map(str::to_string),
                    spot_breaker: if h.spot_off(now).is_some() {
                        "open".into()
                    } else {
                        "closed".into()
                    },
                    spot_breaker_until: h.spot_off(now),
                    spot_interruptions: h
                        .interruptions
                        .iter()
                        .filter(|i| {
                            now - i.at
                                <= chrono::Duration::seconds(
                                    p.spot.breaker_window_secs.min(i64::MAX as u64) as i64,
                                )
                        })
                        .count() as u32,
                    spot_breaks: h.spot_breaks,
                    runners_by_state: BTreeMap::new(),
                    runners: Vec::new(),
                    waiting: 0,
                    queue_time: QueueTime::default(),
                },
            )
        })
        .collect();
    for r in &runners {
        let Some(pool) = pools.get_mut(&r.pool) else {
            continue;
        };
        *pool
            .runners_by_state
            .entry(r.state.as_str().to_string())
            .or_default() += 1;
        // Released runners are history: counted, not listed.
        if r.state != RunnerState::Released {
            pool.runners.push(RunnerLine {
                name: r.name.clone(),
                state: r.state.as_str().to_string(),
                job_id: r.job_id,
                instance_id: r.instance_id.clone(),
                age_secs: (now - r.created_at).num_seconds(),
                end_reason: r.end_reason.clone(),
            });
        }
    }

    let since = now - chrono::Duration::seconds(window_secs);
    for (name, pool) in pools.iter_mut() {
        pool.waiting = a.ledger.waiting_line(name).await.map_err(err)?.len();
        let millis = jobs
            .iter()
            .filter(|j| &j.pool == name)
            .filter(|j| {
                j.timeline
                    .get(Stage::InProgress)
                    .is_some_and(|t| t >= since)
            })
            .filter_map(|j| j.timeline.queue_millis())
            .collect();
        pool.queue_time = QueueTime::of(millis, window_secs);
    }

    let mut queues = BTreeMap::new();
    for (name, q) in &a.queues {
        queues.insert(name.clone(), q.depth().await.map_err(err)?);
    }
    let instances = match &a.local {
        Some(st) => st
            .backend
            .instances()
            .map_err(err)?
            .into_iter()
            .map(|i| InstanceLine {
                job_id: i.job_id(),
                capacity_type: i
                    .tags
                    .iter()
                    .find(|(k, _)| k == spotrunner_local::CAPACITY_TAG)
                    .map(|(_, v)| v.clone()),
                size: i
                    .tags
                    .iter()
                    .find(|(k, _)| k == spotrunner_core::ports::tags::SIZE)
                    .map(|(_, v)| v.clone()),
                instance_id: i.instance_id,
                runner_name: i.runner_name,
                state: i.state,
                pid: i.pid,
                exit_code: i.exit_code,
            })
            .collect(),
        None => Vec::new(),
    };
    let recovery = recovery_status(a).await?;
    let runner = crate::status_runner::RunnerVersionStatus::of(
        &config.runner_version,
        config.recovery.runner_cache.max_age_days,
        &spotrunner_core::runner_cache::RunnerReleaseState::from_doc(
            a.ledger
                .state_doc(spotrunner_core::runner_cache::STATE_KEY)
                .await
                .map_err(err)?,
        ),
        now,
    );
    Ok(Status {
        deployment: config.deployment.clone(),
        backend: if a.local.is_some() { "local" } else { "aws" },
        at: now,
        jobs: Jobs { by_state, items },
        pools,
        capacity: Capacity {
            weight_used: cap.weight,
            weight_max: config.max_total_weight,
        },
        queues,
        instances,
        recovery,
        runner,
    })
}

async fn recovery_status(a: &Adapters) -> Result<RecoveryStatus, String> {
    use spotrunner_core::recovery::{RedeliveryState, SweepState, keys};
    let redelivery: RedeliveryState =
        match a.ledger.state_doc(keys::REDELIVERY).await.map_err(err)? {
            Some(doc) => serde_json::from_value(doc).unwrap_or_default(),
            None => RedeliveryState::default(),
        };
    let sweep: SweepState = match a.ledger.state_doc(keys::SWEEP).await.map_err(err)? {
        Some(doc) => serde_json::from_value(doc).unwrap_or_default(),
        None => SweepState::default(),
    };
    Ok(RecoveryStatus {
        redelivery_checkpoint: redelivery.checkpoint,
        pending_deliveries: redelivery
            .pending
            .iter()
            .map(|(guid, p)| PendingDelivery {
                delivery: guid.clone(),
                status_code: p.status_code,
                requests: p.requests,
            })
            .collect(),
        sweep_last_complete: sweep.last_complete,
        sweep_next_repository: sweep.next_repository,
        swept_jobs: sweep.enqueued.keys().copied().collect(),
    })
}

pub async fn run(target: &Target, json: bool, window_secs: i64) -> Result<ExitCode, String> {
    let config = config_file::load(&target.config)?;
    let adapters = Adapters::open(target, &config, false).await?;
    let s = collect_window(&adapters, &config, window_secs).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s).map_err(err)?);
    } else {
        print!("{}", render(&s));
    }
    Ok(ExitCode::SUCCESS)
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status as a few tables for people.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "deployment {} ({} backend) at {}\n\n",
        s.deployment,
        s.backend,
        s.at.format("%H:%M:%S")
    ));
    out.push_str(&s.runner.render());
    out.push_str(&format!("jobs: {}\n", counts(&s.jobs.by_state)));
    let open: Vec<&JobLine> = s
        .jobs
        .items
        .iter()
        .filter(|j| {
            !matches!(j.state.as_str(), "completed" | "dropped" | "interrupted")
                || j.rerun.as_deref() == Some("undecided")
        })
        .collect();
    for j in open {
        out.push_str(&format!(
            "  job {:<12} {:<10} pool {:<12} {:<24} {}s\n",
            j.job_id,
            j.state,
            j.pool,
            j.runner_name.as_deref().unwrap_or("-"),
            j.age_secs
        ));
        if let Some(reason) = &j.end_reason {
            out.push_str(&format!("      {reason}\n"));
        }
        if let Some(rerun) = &j.rerun {
            out.push_str(&format!("      spot interruption re-run: {rerun}\n"));
        }
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<14} {:>9} {:>7} {:>7} {:<8} {:<10} runners\n",
        "pool", "used/max", "waiting", "weight", "drained", "circuit"
    ));
    for (name, p) in &s.pools {
        out.push_str(&format!(
            "{:<14} {:>9} {:>7} {:>7} {:<8} {:<10} {}\n",
            name,
            format!("{}/{}", p.used, p.max_runners),
            p.waiting,
            p.weight,
            if p.drained { "yes" } else { "no" },
            p.circuit,
            counts(&p.runners_by_state)
        ));
        let q = &p.queue_time;
        if q.jobs > 0 {
            let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}s"));
            out.push_str(&format!(
                "  queue time (created → in_progress, {} job(s) in the last {}): p50 {} p95 {} p99 {}\n",
                q.jobs,
                human_window(q.window_secs),
                secs(q.p50_secs),
                secs(q.p95_secs),
                secs(q.p99_secs)
            ));
        }
        if p.circuit != "closed" || p.start_failures > 0 {
            out.push_str(&format!(
                "  {} start failure(s) in a row{}{}\n",
                p.start_failures,
                p.circuit_open_until
                    .map(|t| format!("; paused until {}", t.format("%H:%M:%S")))
                    .unwrap_or_default(),
                p.last_start_failure
                    .as_deref()
                    .map(|r| format!("; last: {r}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(until) = p.spot_breaker_until {
            out.push_str(&format!(
                "  spot breaker open until {}: {} spot interruption(s); launches go on-demand, or wait when the pool allows none (opened {} time(s))\n",
                until.format("%H:%M:%S"),
                p.spot_interruptions,
                p.spot_breaks
            ));
        } else if p.spot_interruptions > 0 {
            out.push_str(&format!(
                "  {} spot interruption(s) in the breaker's window (breaker closed)\n",
                p.spot_interruptions
            ));
        }
        for r in &p.runners {
            out.push_str(&format!(
                "  {:<32} {:<12} job {:<12} {:<20} {}s\n",
                r.name,
                r.state,
                r.job_id,
                r.instance_id.as_deref().unwrap_or("-"),
                r.age_secs
            ));
        }
    }
    out.push_str(&format!(
        "\ncapacity: weight {} of {}\n",
        s.capacity.weight_used,
        s.capacity
            .weight_max
            .map_or("unlimited".to_string(), |m| m.to_string())
    ));
    out.push_str("queues: ");
    let q: Vec<String> = s
        .queues
        .iter()
        .map(|(k, d)| format!("{k} {} (+{} in flight/delayed)", d.visible, d.not_visible))
        .collect();
    out.push_str(&q.join(", "));
    out.push('\n');
    let r = &s.recovery;
    let at = |t: Option<DateTime<Utc>>| {
        t.map_or("never".to_string(), |t| t.format("%H:%M:%S").to_string())
    };
    out.push_str(&format!(
        "redelivery: checkpoint {}, {} failed deliver{} pending\n",
        at(r.redelivery_checkpoint),
        r.pending_deliveries.len(),
        if r.pending_deliveries.len() == 1 {
            "y"
        } else {
            "ies"
        }
    ));
    for p in &r.pending_deliveries {
        out.push_str(&format!(
            "  delivery {} answered {}, {} redelivery request(s)\n",
            p.delivery, p.status_code, p.requests
        ));
    }
    out.push_str(&format!(
        "sweep: last complete {}{}, {} job(s) found in 24 h{}\n",
        at(r.sweep_last_complete),
        r.sweep_next_repository
            .as_deref()
            .map(|n| format!(", resumes at {n}"))
            .unwrap_or_default(),
        r.swept_jobs.len(),
        if r.swept_jobs.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                r.swept_jobs
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));
    let live: Vec<&InstanceLine> = s
        .instances
        .iter()
        .filter(|i| i.state != "terminated")
        .collect();
    if !live.is_empty() {
        out.push_str("runner processes:\n");
        for i in live {
            out.push_str(&format!(
                "  {:<20} {:<10} pid {:<8} {}\n",
                i.instance_id,
                i.state,
                i.pid.map_or("-".into(), |p| p.to_string()),
                i.runner_name
            ));
        }
    }
    out
}

fn human_window(secs: i64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_over_the_jobs_in_the_window() {
        let q = QueueTime::of((1..=100).rev().map(|s| s * 1000).collect(), 3600);
        assert_eq!(q.jobs, 100);
        assert_eq!(q.p50_secs, Some(50.0));
        assert_eq!(q.p95_secs, Some(95.0));
        assert_eq!(q.p99_secs, Some(99.0));
        let one = QueueTime::of(vec![1500], 60);
        assert_eq!((one.p50_secs, one.p99_secs), (Some(1.5), Some(1.5)));
        assert_eq!(QueueTime::of(Vec::new(), 60).p50_secs, None);
        assert_eq!(human_window(3600), "1 h");
        assert_eq!(human_window(900), "15 min");
    }
}
