//! The webhook's secrets-refresh gate ([`spotrunner_core::webhook::RefreshGate`])
//! on the ledger's table: one item, [`REFRESH_GATE_PK`], written with the
//! condition "absent, or its `at` at least the interval old". The first
//! container to write it reads the secrets; the others, within the interval,
//! do not. The webhook's role may write that key only (terraform/iam.tf,
//! `dynamodb:LeadingKeys`).

use super::{DynamoLedger, EXPIRES_AT, PK, SERVICE, WRITER, expires_at, n, s, string_attr};
use crate::error::classify;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use spotrunner_core::ports::PortError;
use spotrunner_core::webhook::RefreshGate;
use std::time::Duration;

/// The gate's item.
pub const REFRESH_GATE_PK: &str = "gate#webhook-secrets";
/// When the last claim was made (epoch ms).
const AT: &str = "at";

#[async_trait]
impl RefreshGate for DynamoLedger {
    async fn claim(&self, now: DateTime<Utc>, interval: Duration) -> Result<bool, PortError> {
        let at = now.timestamp_millis();
        let cutoff = at.saturating_sub(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX));
        // A fresh token per claim: a retried put whose first answer was lost
        // finds its own token and still counts as the claim.
        let token = uuid::Uuid::new_v4().simple().to_string();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(REFRESH_GATE_PK))
            .item(AT, n(at))
            .item(WRITER, s(&token))
            .item(EXPIRES_AT, expires_at(now))
            .condition_expression("attribute_not_exists(pk) OR #at <= :cutoff")
            .expression_attribute_names("#at", AT)
            .expression_attribute_values(":cutoff", n(cutoff))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                let stored = self.get_item(REFRESH_GATE_PK).await?;
                Ok(stored.is_some_and(|item| string_attr(&item, WRITER) == Some(token.as_str())))
            }
            Err(e) => Err(classify(SERVICE, &format!("put {REFRESH_GATE_PK}"), e, &[])),
        }
    }
}
