//! Who may read the webhook secrets again after a signature mismatch, across
//! every container of the function: a flood of badly signed requests spread
//! over many warm containers costs at most one secrets read per interval, not
//! one per container. Each container also keeps its own limit
//! ([`super::WebhookService::with_secrets_source`]), so it asks the gate at
//! most once per interval too.
//!
//! On AWS the gate is one conditional write of the ledger table's
//! `gate#webhook-secrets` item (`DynamoLedger` in `spotrunner_aws::dynamodb`).
//! `serve` runs one service, whose own limit is enough; tests share a
//! [`MemoryRefreshGate`] between services.

use crate::ports::PortError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

#[async_trait]
pub trait RefreshGate: Send + Sync {
    /// Claim the read at `now` when the last claim, by anyone sharing the
    /// gate, is at least `interval` old. `Ok(false)`: someone read recently.
    async fn claim(&self, now: DateTime<Utc>, interval: Duration) -> Result<bool, PortError>;
}

/// A gate shared by the services of one process (tests).
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct MemoryRefreshGate {
    last: std::sync::Mutex<Option<DateTime<Utc>>>,
}

#[cfg(any(test, feature = "test-support"))]
#[async_trait]
impl RefreshGate for MemoryRefreshGate {
    async fn claim(&self, now: DateTime<Utc>, interval: Duration) -> Result<bool, PortError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
        if last.is_some_and(|t| now < t + interval) {
            return Ok(false);
        }
        *last = Some(now);
        Ok(true)
    }
}
