//! The webhook's secrets-refresh gate on the ledger table
//! ([`spotrunner_core::webhook::RefreshGate`]): one item, `gate#webhook-secrets`,
//! written with the condition "absent, or its `at` at least the interval old".
//! The first container to write it reads the secrets; the others, within the
//! interval, do not. The webhook's role may write `gate#*` items only
//! (terraform/iam.tf, `dynamodb:LeadingKeys`).

use crate::error::classify;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use spotrunner_core::ports::PortError;
use spotrunner_core::webhook::RefreshGate;
use std::time::Duration;

/// The item's key.
pub const GATE_PK: &str = "gate#webhook-secrets";

pub struct DynamoRefreshGate {
    client: Client,
    table: String,
}

impl DynamoRefreshGate {
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.into(),
        }
    }
}

#[async_trait]
impl RefreshGate for DynamoRefreshGate {
    async fn claim(&self, now: DateTime<Utc>, interval: Duration) -> Result<bool, PortError> {
        let at = now.timestamp_millis();
        let cutoff = at.saturating_sub(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX));
        // A fresh token per claim: a retried put whose first answer was lost
        // finds its own token and still counts as the claim.
        let token = uuid::Uuid::new_v4().simple().to_string();
        let expires = now.timestamp() + 86_400;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(GATE_PK.into()))
            .item("at", AttributeValue::N(at.to_string()))
            .item("writer", AttributeValue::S(token.clone()))
            .item("expires_at", AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(pk) OR #at <= :cutoff")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                let stored = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", AttributeValue::S(GATE_PK.into()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| classify("dynamodb", "get gate", e, &[]))?;
                let ours = stored
                    .item()
                    .and_then(|i| i.get("writer"))
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|w| *w == token);
                Ok(ours)
            }
            Err(e) => Err(classify("dynamodb", &format!("put {GATE_PK}"), e, &[])),
        }
    }
}
