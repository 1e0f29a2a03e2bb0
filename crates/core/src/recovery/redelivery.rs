//! The redelivery loop: read the webhook's delivery log since a checkpoint and
//! ask GitHub to redeliver every failed `workflow_job` delivery that has no
//! successful attempt, at most `max_requests` times each.
//!
//! The log is read newest first, page by page, down to the checkpoint (the
//! newest `delivered_at` of the last complete scan). A scan the budget cuts
//! short keeps its cursor and continues next run; only a complete scan moves
//! the checkpoint. Deliveries at the checkpoint's second are read again
//! (harmless: every decision is keyed by the delivery's guid). Failed
//! deliveries wait in `pending` (kept in the ledger with the checkpoint) until
//! an attempt succeeds, their requests run out, or GitHub forgets them, so a
//! failure seen in one run and requested in a later one is never lost between
//! windows.

use super::Budget;
use crate::config::RedeliveryConfig;
use crate::ports::{HookDeliveries, HookDelivery, HookRef, Ledger, PortError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The ledger key of the loop's state document.
pub const STATE_KEY: &str = "redelivery";
/// GitHub keeps deliveries (and redelivers them) for 3 days.
const RETENTION: Duration = Duration::days(3);
/// How long a requested redelivery may take to show up in the log before it
/// is requested again (GitHub lists it within seconds).
const AWAIT_ATTEMPT: Duration = Duration::minutes(10);

/// What the loop keeps between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeliveryState {
    /// Every attempt delivered before this instant was looked at.
    #[serde(default)]
    pub checkpoint: Option<DateTime<Utc>>,
    /// A scan the budget cut short: where to continue, and where it began.
    #[serde(default)]
    pub scan: Option<Scan>,
    /// Failed deliveries by guid, until one attempt succeeds.
    #[serde(default)]
    pub pending: BTreeMap<String, Pending>,
    /// Failed deliveries given up on (or refused for their content), by guid,
    /// with when they were first delivered: a scan that reads one of their
    /// attempts again (at the checkpoint's second) leaves them alone.
    #[serde(default)]
    pub settled: BTreeMap<String, DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    pub cursor: String,
    /// The newest `delivered_at` this scan saw: the checkpoint once it completes.
    pub top: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The newest failed attempt seen (what a request redelivers).
    pub attempt_id: u64,
    /// When the first attempt was delivered (GitHub forgets it 3 days later).
    pub first_delivered_at: DateTime<Utc>,
    pub status_code: u16,
    #[serde(default)]
    pub action: Option<String>,
    /// Redelivery requests made so far.
    #[serde(default)]
    pub requests: u32,
    /// The attempt the last request was for: while it is still the newest
    /// failed one, the redelivery's own attempt has not been seen yet.
    #[serde(default)]
    pub requested_for: Option<u64>,
    #[serde(default)]
    pub requested_at: Option<DateTime<Utc>>,
}

/// What one run did (logged, returned by the Lambda, counted in metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedeliveryReport {
    /// Why the run did nothing, if it did nothing on purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub pages: u32,
    pub deliveries_seen: u32,
    /// Failed `workflow_job` deliveries newly found.
    pub failed_found: u32,
    pub redelivered: u32,
    /// Pending deliveries an attempt of which succeeded since.
    pub recovered: u32,
    /// Given up after `max_requests`, or forgotten by GitHub.
    pub gave_up: u32,
    /// Deliveries whose answer says a redelivery cannot help (400, 413, …).
    pub not_retryable: u32,
    pub calls: u32,
    /// The scan reached the checkpoint (else it continues next run).
    pub complete: bool,
    pub pending: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The loop with its ports.
pub struct Redelivery {
    pub config: RedeliveryConfig,
    pub hook: Option<HookRef>,
    pub deliveries: Arc<dyn HookDeliveries>,
    pub ledger: Arc<dyn Ledger>,
}

/// An answer a redelivery cannot change: the payload itself was refused.
fn retryable(status_code: u16) -> bool {
    !matches!(status_code, 400 | 405 | 413 | 415 | 422)
}

impl Redelivery {
    /// Say once (at start) why the loop will not run, if it will not.
    pub fn warn_if_inactive(&self) {
        if self.config.enabled && self.hook.is_none() {
            tracing::warn!(
                "redelivery loop off: with a PAT it cannot read the GitHub App's webhook; set \
                 recovery.redelivery.hook_id and hook_org or hook_repository (failed deliveries \
                 are then left to the sweep)"
            );
        }
    }

    /// One run. Errors of GitHub end the run early (its state is still saved);
    /// an error of the ledger is returned.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<RedeliveryReport, PortError> {
        let mut report = RedeliveryReport::default();
        if !self.config.enabled {
            report.skipped = Some("recovery.redelivery.enabled is false".into());
            return Ok(report);
        }
        let Some(hook) = &self.hook else {
            report.skipped = Some(
                "no webhook to read: with a PAT set recovery.redelivery.hook_id and hook_org \
                 or hook_repository"
                    .into(),
            );
            tracing::debug!(reason = report.skipped.as_deref(), "redelivery skipped");
            return Ok(report);
        };
        let mut state: RedeliveryState = match self.ledger.state_doc(STATE_KEY).await? {
            Some(doc) => serde_json::from_value(doc).unwrap_or_else(|e| {
                tracing::error!(error = %e, "redelivery state unreadable; starting over");
                RedeliveryState::default()
            }),
            None => RedeliveryState::default(),
        };
        let checkpoint = state.checkpoint.unwrap_or_else(|| {
            now - Duration::seconds(self.config.lookback_secs.min(i64::MAX as u64) as i64)
        });
        let mut budget = Budget::new(self.config.max_calls);
        let (failed, succeeded) = self
            .scan(hook, &mut state, checkpoint, &mut budget, &mut report)
            .await;
        self.settle(&mut state, failed, &succeeded, now, &mut report);
        self.request(hook, &mut state, now, &mut budget, &mut report)
            .await;
        report.calls = budget.used();
        report.pending = state.pending.len() as u32;
        let doc = serde_json::to_value(&state)
            .map_err(|e| PortError::rejected("ledger", format!("encode redelivery state: {e}")))?;
        self.ledger
            .update_state_doc(STATE_KEY, &|d: &mut Option<serde_json::Value>| {
                *d = Some(doc.clone());
                true
            })
            .await?;
        tracing::info!(
            hook = %hook,
            pages = report.pages,
            deliveries_seen = report.deliveries_seen,
            failed_found = report.failed_found,
            redelivered = report.redelivered,
            recovered = report.recovered,
            gave_up = report.gave_up,
            pending = report.pending,
            calls = report.calls,
            complete = report.complete,
            "redelivery run"
        );
        Ok(report)
    }

    /// Read pages down to the checkpoint (or until the budget runs out):
    /// the newest failed `workflow_job` attempt per guid, and the guids with a
    /// successful attempt.
    async fn scan(
        &self,
        hook: &HookRef,
        state: &mut RedeliveryState,
        checkpoint: DateTime<Utc>,
        budget: &mut Budget,
        report: &mut RedeliveryReport,
    ) -> (BTreeMap<String, HookDelivery>, Vec<String>) {
        let mut failed: BTreeMap<String, HookDelivery> = BTreeMap::new();
        let mut succeeded = Vec::new();
        let (mut cursor, mut top) = match state.scan.take() {
            Some(s) => (Some(s.cursor), Some(s.top)),
            None => (None, None),
        };
        // Keep one call for a redelivery when something is pending.
        let reserve = u32::from(!state.pending.is_empty());
        loop {
            if !budget.take_keeping(reserve) {
                if let Some(c) = cursor {
                    state.scan = Some(Scan {
                        cursor: c,
                        top: top.unwrap_or(checkpoint),
                    });
                } else if let Some(t) = top {
                    state.scan = None;
                    state.checkpoint = Some(t);
                }
                return (failed, succeeded);
            }
            let page = match self
                .deliveries
                .list_deliveries(hook, cursor.as_deref())
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(hook = %hook, error = %e, "cannot list webhook deliveries");
                    report.error = Some(format!("list deliveries: {e}"));
                    if let Some(c) = cursor {
                        state.scan = Some(Scan {
                            cursor: c,
                            top: top.unwrap_or(checkpoint),
                        });
                    }
                    return (failed, succeeded);
                }
            };
            report.pages += 1;
            let mut reached = false;
            for d in page.deliveries {
                if d.delivered_at < checkpoint {
                    reached = true;
                    break;
                }
                report.deliveries_seen += 1;
                top = Some(top.map_or(d.delivered_at, |t| t.max(d.delivered_at)));
                if d.succeeded() {
                    succeeded.push(d.guid.clone());
                } else if d.event == "workflow_job" {
                    let newer = failed.get(&d.guid).is_none_or(|f| f.id < d.id);
                    if newer {
                        failed.insert(d.guid.clone(), d);
                    }
                }
            }
            match page.next_cursor {
                Some(next) if !reached => cursor = Some(next),
                _ => {
                    report.complete = true;
                    state.scan = None;
                    state.checkpoint = Some(top.unwrap_or(checkpoint).max(checkpoint));
                    return (failed, succeeded);
                }
            }
        }
    }

    /// Fold what the scan saw into `pending`; drop what succeeded or is too old.
    fn settle(
        &self,
        state: &mut RedeliveryState,
        failed: BTreeMap<String, HookDelivery>,
        succeeded: &[String],
        now: DateTime<Utc>,
        report: &mut RedeliveryReport,
    ) {
        for (guid, d) in failed {
            if succeeded.contains(&guid) || state.settled.contains_key(&guid) {
                continue;
            }
            if !retryable(d.status_code) {
                state.settled.insert(guid.clone(), d.delivered_at);
                if state.pending.remove(&guid).is_none() {
                    report.not_retryable += 1;
                    tracing::warn!(
                        delivery = %guid,
                        delivery_attempt = d.id,
                        status_code = d.status_code,
                        "a failed delivery was refused for its content; not redelivered"
                    );
                }
                continue;
            }
            match state.pending.get_mut(&guid) {
                Some(p) => {
                    if d.id > p.attempt_id {
                        p.attempt_id = d.id;
                        p.status_code = d.status_code;
                    }
                }
                None => {
                    report.failed_found += 1;
                    tracing::warn!(
                        delivery = %guid,
                        delivery_attempt = d.id,
                        status_code = d.status_code,
                        action = d.action.as_deref(),
                        metric = "webhook_delivery_failed",
                        "a workflow_job delivery failed at our endpoint"
                    );
                    state.pending.insert(
                        guid,
                        Pending {
                            attempt_id: d.id,
                            first_delivered_at: d.delivered_at,
                            status_code: d.status_code,
                            action: d.action,
                            requests: 0,
                            requested_for: None,
                            requested_at: None,
                        },
                    );
                }
            }
        }
        for guid in succeeded {
            if let Some(p) = state.pending.remove(guid) {
                report.recovered += 1;
                tracing::info!(
                    delivery = %guid,
                    requests = p.requests,
                    metric = "webhook_delivery_recovered",
                    "a failed delivery succeeded on redelivery"
                );
            }
        }
        state.settled.retain(|_, at| *at + RETENTION > now);
        let settled = &mut state.settled;
        state.pending.retain(|guid, p| {
            let keep = p.first_delivered_at + RETENTION > now;
            if !keep {
                settled.insert(guid.clone(), p.first_delivered_at);
                report.gave_up += 1;
                tracing::error!(
                    delivery = %guid,
                    requests = p.requests,
                    metric = "webhook_redelivery_gave_up",
                    "GitHub no longer keeps this failed delivery; its job may be found by the sweep"
                );
            }
            keep
        });
    }

    /// Ask for a redelivery of every pending delivery whose last attempt is
    /// not already our request's, within the budget, oldest first.
    async fn request(
        &self,
        hook: &HookRef,
        state: &mut RedeliveryState,
        now: DateTime<Utc>,
        budget: &mut Budget,
        report: &mut RedeliveryReport,
    ) {
        let mut order: Vec<(DateTime<Utc>, String)> = state
            .pending
            .iter()
            .map(|(g, p)| (p.first_delivered_at, g.clone()))
            .collect();
        order.sort();
        for (_, guid) in order {
            let Some(p) = state.pending.get_mut(&guid) else {
                continue;
            };
            let awaiting = p.requested_for == Some(p.attempt_id)
                && p.requested_at.is_some_and(|t| now - t < AWAIT_ATTEMPT);
            if awaiting {
                continue; // our redelivery's attempt is not in the log yet
            }
            if p.requests >= self.config.max_requests {
                report.gave_up += 1;
                tracing::error!(
                    delivery = %guid,
                    requests = p.requests,
                    status_code = p.status_code,
                    metric = "webhook_redelivery_gave_up",
                    "a delivery still fails after every redelivery; its job may be found by the sweep"
                );
                state.settled.insert(guid.clone(), p.first_delivered_at);
                state.pending.remove(&guid);
                continue;
            }
            if !budget.take() {
                break;
            }
            match self.deliveries.redeliver(hook, p.attempt_id).await {
                Ok(()) => {
                    p.requests += 1;
                    p.requested_for = Some(p.attempt_id);
                    p.requested_at = Some(now);
                    report.redelivered += 1;
                    tracing::info!(
                        delivery = %guid,
                        delivery_attempt = p.attempt_id,
                        request = p.requests,
                        metric = "webhook_redelivery_requested",
                        "redelivery requested"
                    );
                }
                Err(PortError::NotFound { .. }) => {
                    report.gave_up += 1;
                    tracing::error!(
                        delivery = %guid,
                        metric = "webhook_redelivery_gave_up",
                        "GitHub does not know this delivery any more"
                    );
                    state.settled.insert(guid.clone(), p.first_delivered_at);
                    state.pending.remove(&guid);
                }
                Err(e) => {
                    tracing::warn!(delivery = %guid, error = %e, "redelivery request failed; next run retries");
                    report.error = Some(format!("redeliver {guid}: {e}"));
                    break;
                }
            }
        }
    }
}
