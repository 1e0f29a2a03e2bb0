//! The ledger on one DynamoDB table.
//!
//! Items are keyed by a string `pk`:
//!
//! | `pk` | attributes |
//! |------|------------|
//! | `job#<id>` | `doc` (the [`JobRecord`] as JSON), `state`, `launch_attempt`, `lease_until` (epoch ms, absent without a lease), `version`, `expires_at` |
//! | `runner#<name>` | `doc` ([`RunnerRecord`] JSON), `state`, `version`, `expires_at` |
//! | `capacity#pool#<pool>` | `count` (live runners of the pool) |
//! | `capacity#global` | `weight_used` |
//! | `drain#<pool>` | `since` (the pool is drained) |
//! | `health#<pool>` | `doc` (the pool's circuit breaker, [`PoolHealth`] JSON), `version` |
//! | `state#<key>` | `doc` (a scheduled task's state: `redelivery`, `sweep`), `version` |
//!
//! Every write of a job or runner is conditional (and carries a `writer`
//! token, so a retry whose first attempt was applied knows it): creations on
//! `attribute_not_exists(pk)`, changes on the `version` read before (optimistic
//! locking, retried on a lost race). Reservations and releases are one
//! `TransactWriteItems` each, so the caps hold under any concurrency.
//! `expires_at` (epoch seconds) lets DynamoDB's TTL drop jobs and runners
//! [`TTL`] after their last update.

use crate::error::classify;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use spotrunner_core::circuit::PoolHealth;
use spotrunner_core::job::{JobMessage, JobStateUpdate};
use spotrunner_core::ports::{
    CapacityUse, ClaimDecision, ClaimOutcome, DocUpdate, HealthUpdate, JobChange, JobRecord,
    JobStateSink, Ledger, Limits, PortError, ReserveOutcome, RunnerChange, RunnerRecord,
    RunnerState, decide_claim,
};
use std::collections::HashMap;
use std::time::Duration;

const SERVICE: &str = "dynamodb";
/// How long jobs and runners stay after their last update.
pub const TTL: chrono::Duration = chrono::Duration::days(7);
/// Lost optimistic races / transaction conflicts before giving up.
const MAX_ATTEMPTS: u32 = 25;

const PK: &str = "pk";
const DOC: &str = "doc";
const STATE: &str = "state";
const VERSION: &str = "version";
const LEASE_UNTIL: &str = "lease_until";
const LAUNCH_ATTEMPT: &str = "launch_attempt";
const EXPIRES_AT: &str = "expires_at";
/// A token per versioned put: tells our own applied write from another's.
const WRITER: &str = "writer";
const COUNT: &str = "count";
const WEIGHT_USED: &str = "weight_used";

const JOB_PREFIX: &str = "job#";
const RUNNER_PREFIX: &str = "runner#";
const POOL_PREFIX: &str = "capacity#pool#";
const GLOBAL_PK: &str = "capacity#global";
/// `drain#<pool>`: the pool is drained (`spotrunner drain`).
const DRAIN_PREFIX: &str = "drain#";
/// `health#<pool>`: the pool's circuit breaker record (`doc`, `version`).
const HEALTH_PREFIX: &str = "health#";
/// `state#<key>`: a scheduled task's state document (`doc`, `version`).
const STATE_PREFIX: &str = "state#";

type Item = HashMap<String, AttributeValue>;

/// The [`Ledger`] on a DynamoDB table (see the module docs for the layout).
#[derive(Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
    page_size: Option<i32>,
}

impl DynamoLedger {
    pub fn new(sdk: &SdkConfig, table_name: impl Into<String>) -> Self {
        Self::from_client(Client::new(sdk), table_name)
    }

    pub fn from_client(client: Client, table_name: impl Into<String>) -> Self {
        Self {
            client,
            table: table_name.into(),
            page_size: None,
        }
    }

    /// Read scans `n` items per page (tests use it to exercise pagination).
    pub fn with_page_size(mut self, n: i32) -> Self {
        self.page_size = Some(n);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, pk: &str) -> Result<Option<Item>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(SERVICE, &format!("get {pk}"), e, &[]))?;
        Ok(out.item)
    }

    /// Write `item` if the stored version is still `expected` (`None`: no item).
    /// `Ok(false)` when the condition failed (someone else wrote first).
    ///
    /// PutItem is not idempotent under the SDK's retries: when a write was
    /// applied but its answer lost, the retry finds the version moved and
    /// fails its condition. Every put carries a fresh `writer` token (the SDK
    /// resends the same request, token included), so a failed condition is
    /// checked against what is stored: our own token means our write happened
    /// (`Ok(true)`), never "someone else won" — even when a concurrent writer
    /// wrote an identical document.
    async fn put_if_version(
        &self,
        mut item: Item,
        expected: Option<i64>,
    ) -> Result<bool, PortError> {
        let pk = string_attr(&item, PK).unwrap_or_default().to_string();
        let token = uuid::Uuid::new_v4().simple().to_string();
        item.insert(WRITER.into(), s(&token));
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        req = match expected {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", n(v)),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                let stored = self.get_item(&pk).await?;
                let ours =
                    stored.is_some_and(|item| string_attr(&item, WRITER) == Some(token.as_str()));
                if ours {
                    tracing::info!(
                        pk,
                        "a retried write found itself applied (its first answer was lost)"
                    );
                }
                Ok(ours)
            }
            Err(e) => Err(classify(SERVICE, &format!("put {pk}"), e, &[])),
        }
    }

    async fn load_job(&self, job_id: u64) -> Result<Option<(JobRecord, i64)>, PortError> {
        match self.get_item(&job_pk(job_id)).await? {
            None => Ok(None),
            Some(item) => Ok(Some((decode_job(&item)?, version(&item)?))),
        }
    }

    async fn load_health(&self, pool: &str) -> Result<Option<(PoolHealth, i64)>, PortError> {
        match self.get_item(&format!("{HEALTH_PREFIX}{pool}")).await? {
            None => Ok(None),
            Some(item) => {
                let health = serde_json::from_str(doc(&item)?).map_err(|e| corrupt(&item, e))?;
                Ok(Some((health, version(&item)?)))
            }
        }
    }

    async fn load_state_doc(
        &self,
        key: &str,
    ) -> Result<Option<(serde_json::Value, i64)>, PortError> {
        match self.get_item(&format!("{STATE_PREFIX}{key}")).await? {
            None => Ok(None),
            Some(item) => {
                let value = serde_json::from_str(doc(&item)?).map_err(|e| corrupt(&item, e))?;
                Ok(Some((value, version(&item)?)))
            }
        }
    }

    async fn load_runner(&self, name: &str) -> Result<Option<(RunnerRecord, i64)>, PortError> {
        match self.get_item(&runner_pk(name)).await? {
            None => Ok(None),
            Some(item) => Ok(Some((decode_runner(&item)?, version(&item)?))),
        }
    }

    /// Every item whose `pk` starts with `prefix`, page after page.
    async fn scan(&self, prefix: &str) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("begins_with(#pk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":prefix", s(prefix))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify(SERVICE, &format!("scan {prefix}"), e, &[]))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<TxOutcome, PortError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(TxOutcome::Done),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(tce)) =
                    e.as_service_error()
                {
                    let codes = tce
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_string())
                        .collect();
                    return Ok(TxOutcome::Cancelled(codes));
                }
                Err(classify(SERVICE, "transact write", e, &[]))
            }
        }
    }

    async fn counter(&self, pk: &str, attr: &str) -> Result<Option<i64>, PortError> {
        match self.get_item(pk).await? {
            None => Ok(None),
            Some(item) => Ok(Some(num_attr(&item, attr).unwrap_or(0))),
        }
    }

    fn update(&self, pk: &str) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder().table_name(&self.table).key(PK, s(pk))
    }
}

enum TxOutcome {
    Done,
    /// `TransactionCanceledException`, with one reason code per item.
    Cancelled(Vec<String>),
}

fn failed(codes: &[String], i: usize) -> bool {
    codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed")
}

fn conflicted(codes: &[String]) -> bool {
    codes
        .iter()
        .any(|c| c == "TransactionConflict" || c.contains("Throughput") || c == "ThrottlingError")
}

/// A short, growing pause with some jitter before retrying a lost race.
async fn backoff(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let base = 5u64 << attempt.min(6);
    let jitter = u64::from(nanos) % base.max(1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

fn too_many(what: &str) -> PortError {
    PortError::Conflict {
        service: SERVICE,
        message: format!("{what}: still contended after {MAX_ATTEMPTS} attempts"),
    }
}

fn build_err(e: impl std::fmt::Display) -> PortError {
    PortError::rejected(SERVICE, format!("building a request: {e}"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn job_pk(job_id: u64) -> String {
    format!("{JOB_PREFIX}{job_id}")
}

fn runner_pk(name: &str) -> String {
    format!("{RUNNER_PREFIX}{name}")
}

fn pool_pk(pool: &str) -> String {
    format!("{POOL_PREFIX}{pool}")
}

fn string_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn num_attr(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn corrupt(item: &Item, what: impl std::fmt::Display) -> PortError {
    PortError::rejected(
        SERVICE,
        format!("item {}: {what}", string_attr(item, PK).unwrap_or("?")),
    )
}

fn version(item: &Item) -> Result<i64, PortError> {
    num_attr(item, VERSION).ok_or_else(|| corrupt(item, "no version"))
}

fn doc(item: &Item) -> Result<&str, PortError> {
    string_attr(item, DOC).ok_or_else(|| corrupt(item, "no doc"))
}

fn decode_job(item: &Item) -> Result<JobRecord, PortError> {
    serde_json::from_str(doc(item)?).map_err(|e| corrupt(item, e))
}

fn decode_runner(item: &Item) -> Result<RunnerRecord, PortError> {
    serde_json::from_str(doc(item)?).map_err(|e| corrupt(item, e))
}

fn expires_at(updated_at: DateTime<Utc>) -> AttributeValue {
    n((updated_at + TTL).timestamp())
}

/// A fresh version for a new item: distinct from any version a stale reader of a
/// replaced item may hold.
fn first_version() -> i64 {
    Utc::now().timestamp_micros()
}

fn job_item(rec: &JobRecord, version: i64) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(job_pk(rec.job_id)));
    item.insert(
        DOC.into(),
        s(serde_json::to_string(rec).expect("job record serializes")),
    );
    item.insert(STATE.into(), s(rec.state.as_str()));
    item.insert(LAUNCH_ATTEMPT.into(), n(rec.launch_attempt));
    if let Some(lease) = rec.lease_until {
        item.insert(LEASE_UNTIL.into(), n(lease.timestamp_millis()));
    }
    item.insert(VERSION.into(), n(version));
    item.insert(EXPIRES_AT.into(), expires_at(rec.updated_at));
    item
}

fn runner_item(rec: &RunnerRecord, version: i64) -> Item {
    let mut item = Item::new();
    item.insert(PK.into(), s(runner_pk(&rec.name)));
    item.insert(
        DOC.into(),
        s(serde_json::to_string(rec).expect("runner record serializes")),
    );
    item.insert(STATE.into(), s(rec.state.as_str()));
    item.insert(VERSION.into(), n(version));
    item.insert(EXPIRES_AT.into(), expires_at(rec.updated_at));
    item
}

fn not_found(what: String) -> PortError {
    PortError::NotFound {
        service: SERVICE,
        what,
    }
}

#[async_trait]
impl JobStateSink for DynamoLedger {
    async fn record_job_state(&self, update: &JobStateUpdate) -> Result<(), PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((mut rec, v)) = self.load_job(update.job_id).await? else {
                return Ok(());
            };
            if !rec.observe(update) {
                return Ok(());
            }
            if self.put_if_version(job_item(&rec, v + 1), Some(v)).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(too_many(&format!("record state of job {}", update.job_id)))
    }
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn claim_job(
        &self,
        msg: &JobMessage,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<ClaimOutcome, PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let loaded = self.load_job(msg.job_id).await?;
            let (next, expected) =
                match decide_claim(loaded.as_ref().map(|(r, _)| r), msg, now, lease) {
                    ClaimDecision::Take(next) => (next, loaded.map(|(_, v)| v)),
                    ClaimDecision::Report(outcome) => return Ok(outcome),
                };
            let version = expected.map_or_else(first_version, |v| v + 1);
            if self
                .put_if_version(job_item(&next, version), expected)
                .await?
            {
                return Ok(ClaimOutcome::Claimed(next));
            }
            // Someone wrote the job meanwhile: look again (usually Busy now).
            if attempt > 0 {
                backoff(attempt).await;
            }
        }
        Err(too_many(&format!("claim job {}", msg.job_id)))
    }

    async fn get_job(&self, job_id: u64) -> Result<Option<JobRecord>, PortError> {
        Ok(self.load_job(job_id).await?.map(|(rec, _)| rec))
    }

    async fn update_job(
        &self,
        job_id: u64,
        change: &JobChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let (mut rec, v) = self
                .load_job(job_id)
                .await?
                .ok_or_else(|| not_found(format!("job {job_id}")))?;
            if !rec.apply(change, now) {
                return Ok(());
            }
            if self.put_if_version(job_item(&rec, v + 1), Some(v)).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(too_many(&format!("update job {job_id}")))
    }

    async fn list_jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.scan(JOB_PREFIX)
            .await?
            .iter()
            .map(decode_job)
            .collect()
    }

    async fn reserve(
        &self,
        runner: &RunnerRecord,
        limits: Limits,
    ) -> Result<ReserveOutcome, PortError> {
        let mut rec = runner.clone();
        rec.state = RunnerState::Reserved;
        rec.weight = limits.weight;
        let hopeless = if limits.pool_max == 0 {
            Some(ReserveOutcome::PoolFull)
        } else if limits
            .global_max_weight
            .is_some_and(|max| limits.weight > max)
        {
            Some(ReserveOutcome::GlobalFull)
        } else {
            None
        };
        if let Some(outcome) = hopeless {
            // No transaction can succeed; still report a retried step as such.
            return Ok(match self.load_runner(&rec.name).await? {
                Some((r, _)) if r.state != RunnerState::Released => ReserveOutcome::AlreadyReserved,
                _ => outcome,
            });
        }

        let put_runner = Put::builder()
            .table_name(&self.table)
            .set_item(Some(runner_item(&rec, first_version())))
            .condition_expression("attribute_not_exists(pk) OR #s = :released")
            .expression_attribute_names("#s", STATE)
            .expression_attribute_values(":released", s(RunnerState::Released.as_str()))
            .build()
            .map_err(build_err)?;
        let take_slot = self
            .update(&pool_pk(&rec.pool))
            .update_expression("SET #c = if_not_exists(#c, :zero) + :one")
            .condition_expression("attribute_not_exists(pk) OR #c < :max")
            .expression_attribute_names("#c", COUNT)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(limits.pool_max))
            .build()
            .map_err(build_err)?;
        let mut take_weight = self
            .update(GLOBAL_PK)
            .update_expression("SET #w = if_not_exists(#w, :zero) + :weight")
            .expression_attribute_names("#w", WEIGHT_USED)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":weight", n(limits.weight));
        if let Some(max) = limits.global_max_weight {
            take_weight = take_weight
                .condition_expression("attribute_not_exists(pk) OR #w <= :limit")
                .expression_attribute_values(":limit", n(max - limits.weight));
        }
        let take_weight = take_weight.build().map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().put(put_runner).build(),
            TransactWriteItem::builder().update(take_slot).build(),
            TransactWriteItem::builder().update(take_weight).build(),
        ];

        for attempt in 0..MAX_ATTEMPTS {
            match self.transact(items.clone()).await? {
                TxOutcome::Done => return Ok(ReserveOutcome::Reserved),
                TxOutcome::Cancelled(codes) if failed(&codes, 0) => {
                    return Ok(ReserveOutcome::AlreadyReserved);
                }
                TxOutcome::Cancelled(codes) if failed(&codes, 1) => {
                    return Ok(ReserveOutcome::PoolFull);
                }
                TxOutcome::Cancelled(codes) if failed(&codes, 2) => {
                    return Ok(ReserveOutcome::GlobalFull);
                }
                TxOutcome::Cancelled(codes) if conflicted(&codes) => backoff(attempt).await,
                TxOutcome::Cancelled(codes) => {
                    return Err(PortError::rejected(
                        SERVICE,
                        format!("reserve {}: transaction cancelled: {codes:?}", rec.name),
                    ));
                }
            }
        }
        Err(too_many(&format!("reserve {}", rec.name)))
    }

    async fn release(
        &self,
        runner_name: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((mut rec, v)) = self.load_runner(runner_name).await? else {
                return Ok(false);
            };
            if rec.state == RunnerState::Released {
                return Ok(false);
            }
            rec.state = RunnerState::Released;
            rec.end_reason = Some(reason.to_string());
            rec.updated_at = now;
            let mark = Put::builder()
                .table_name(&self.table)
                .set_item(Some(runner_item(&rec, v + 1)))
                .condition_expression("#v = :v AND #s <> :released")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_names("#s", STATE)
                .expression_attribute_values(":v", n(v))
                .expression_attribute_values(":released", s(RunnerState::Released.as_str()))
                .build()
                .map_err(build_err)?;
            // Decrement, or clamp at zero when a repair left the counter lower.
            let pool = pool_pk(&rec.pool);
            let count = self.counter(&pool, COUNT).await?;
            let give_slot = give_back(self.update(&pool), COUNT, 1, count)?;
            let used = self.counter(GLOBAL_PK, WEIGHT_USED).await?;
            let give_weight =
                give_back(self.update(GLOBAL_PK), WEIGHT_USED, rec.weight.into(), used)?;
            let items = vec![
                TransactWriteItem::builder().put(mark).build(),
                TransactWriteItem::builder().update(give_slot).build(),
                TransactWriteItem::builder().update(give_weight).build(),
            ];
            match self.transact(items).await? {
                TxOutcome::Done => return Ok(true),
                // Lost a race (the runner or a counter changed): look again.
                TxOutcome::Cancelled(codes)
                    if codes.iter().any(|c| c == "ConditionalCheckFailed")
                        || conflicted(&codes) =>
                {
                    backoff(attempt).await
                }
                TxOutcome::Cancelled(codes) => {
                    return Err(PortError::rejected(
                        SERVICE,
                        format!("release {runner_name}: transaction cancelled: {codes:?}"),
                    ));
                }
            }
        }
        Err(too_many(&format!("release {runner_name}")))
    }

    async fn get_runner(&self, name: &str) -> Result<Option<RunnerRecord>, PortError> {
        Ok(self.load_runner(name).await?.map(|(rec, _)| rec))
    }

    async fn update_runner(
        &self,
        name: &str,
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let (mut rec, v) = self
                .load_runner(name)
                .await?
                .ok_or_else(|| not_found(format!("runner {name}")))?;
            rec.apply(change, now);
            if self
                .put_if_version(runner_item(&rec, v + 1), Some(v))
                .await?
            {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(too_many(&format!("update runner {name}")))
    }

    async fn list_runners(&self) -> Result<Vec<RunnerRecord>, PortError> {
        self.scan(RUNNER_PREFIX)
            .await?
            .iter()
            .map(decode_runner)
            .collect()
    }

    async fn capacity(&self) -> Result<CapacityUse, PortError> {
        let mut cap = CapacityUse::default();
        for item in self.scan("capacity#").await? {
            let pk = string_attr(&item, PK).unwrap_or_default();
            if pk == GLOBAL_PK {
                cap.weight = clamp(num_attr(&item, WEIGHT_USED));
            } else if let Some(pool) = pk.strip_prefix(POOL_PREFIX) {
                let count = clamp(num_attr(&item, COUNT));
                if count > 0 {
                    cap.pools.insert(pool.to_string(), count);
                }
            }
        }
        Ok(cap)
    }

    async fn set_capacity(&self, counts: &CapacityUse) -> Result<(), PortError> {
        let mut puts: Vec<Item> = counts
            .pools
            .iter()
            .map(|(pool, count)| {
                Item::from([(PK.into(), s(pool_pk(pool))), (COUNT.into(), n(count))])
            })
            .collect();
        puts.push(Item::from([
            (PK.into(), s(GLOBAL_PK)),
            (WEIGHT_USED.into(), n(counts.weight)),
        ]));
        for item in puts {
            let pk = string_attr(&item, PK).unwrap_or_default().to_string();
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| classify(SERVICE, &format!("put {pk}"), e, &[]))?;
        }
        // Pools the repair does not mention have no live runners.
        for item in self.scan(POOL_PREFIX).await? {
            let pk = string_attr(&item, PK).unwrap_or_default();
            let pool = pk.strip_prefix(POOL_PREFIX).unwrap_or_default();
            if !counts.pools.contains_key(pool) {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key(PK, s(pk))
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &format!("delete {pk}"), e, &[]))?;
            }
        }
        Ok(())
    }

    async fn transition_runner(
        &self,
        name: &str,
        from: &[RunnerState],
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((mut rec, v)) = self.load_runner(name).await? else {
                return Ok(false);
            };
            if !from.contains(&rec.state) {
                return Ok(false);
            }
            rec.apply(change, now);
            if self
                .put_if_version(runner_item(&rec, v + 1), Some(v))
                .await?
            {
                return Ok(true);
            }
            backoff(attempt).await;
        }
        Err(too_many(&format!("transition runner {name}")))
    }

    async fn repair_capacity(
        &self,
        seen: &CapacityUse,
        counts: &CapacityUse,
    ) -> Result<bool, PortError> {
        // One transaction: every counter is written only if it still holds what
        // the janitor saw (a counter it saw as 0 may be absent).
        let pools: std::collections::BTreeSet<&String> =
            seen.pools.keys().chain(counts.pools.keys()).collect();
        let mut items = Vec::new();
        let guarded = |pk: &str, attr: &str, was: u32, new: u32| {
            let mut u = self
                .update(pk)
                .update_expression("SET #c = :new")
                .expression_attribute_names("#c", attr)
                .expression_attribute_values(":new", n(new))
                .expression_attribute_values(":was", n(was));
            u = if was == 0 {
                u.condition_expression("attribute_not_exists(#c) OR #c <= :was")
            } else {
                u.condition_expression("#c = :was")
            };
            u.build().map_err(build_err)
        };
        for pool in pools {
            let was = seen.pools.get(pool).copied().unwrap_or(0);
            let new = counts.pools.get(pool).copied().unwrap_or(0);
            items.push(
                TransactWriteItem::builder()
                    .update(guarded(&pool_pk(pool), COUNT, was, new)?)
                    .build(),
            );
        }
        items.push(
            TransactWriteItem::builder()
                .update(guarded(GLOBAL_PK, WEIGHT_USED, seen.weight, counts.weight)?)
                .build(),
        );
        if items.len() > 100 {
            return Err(PortError::rejected(
                SERVICE,
                format!("repair of {} counters exceeds one transaction", items.len()),
            ));
        }
        match self.transact(items).await? {
            TxOutcome::Done => Ok(true),
            TxOutcome::Cancelled(codes)
                if codes.iter().any(|c| c == "ConditionalCheckFailed") || conflicted(&codes) =>
            {
                Ok(false)
            }
            TxOutcome::Cancelled(codes) => Err(PortError::rejected(
                SERVICE,
                format!("repair capacity: transaction cancelled: {codes:?}"),
            )),
        }
    }

    async fn pool_health(&self, pool: &str) -> Result<PoolHealth, PortError> {
        Ok(self
            .load_health(pool)
            .await?
            .map_or_else(|| PoolHealth::new(pool), |(h, _)| h))
    }

    async fn list_pool_health(&self) -> Result<Vec<PoolHealth>, PortError> {
        self.scan(HEALTH_PREFIX)
            .await?
            .iter()
            .map(|item| serde_json::from_str(doc(item)?).map_err(|e| corrupt(item, e)))
            .collect()
    }

    async fn update_pool_health(
        &self,
        pool: &str,
        f: &HealthUpdate<'_>,
    ) -> Result<PoolHealth, PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let loaded = self.load_health(pool).await?;
            let (mut health, expected) = match loaded {
                Some((h, v)) => (h, Some(v)),
                None => (PoolHealth::new(pool), None),
            };
            if !f(&mut health) {
                return Ok(health);
            }
            let version = expected.map_or_else(first_version, |v| v + 1);
            let body = serde_json::to_string(&health)
                .map_err(|e| PortError::rejected(SERVICE, format!("encode pool health: {e}")))?;
            let item = Item::from([
                (PK.into(), s(format!("{HEALTH_PREFIX}{pool}"))),
                (DOC.into(), s(body)),
                (VERSION.into(), n(version)),
            ]);
            if self.put_if_version(item, expected).await? {
                return Ok(health);
            }
            backoff(attempt).await;
        }
        Err(too_many(&format!("update health of pool {pool}")))
    }

    async fn state_doc(&self, key: &str) -> Result<Option<serde_json::Value>, PortError> {
        Ok(self.load_state_doc(key).await?.map(|(d, _)| d))
    }

    async fn update_state_doc(
        &self,
        key: &str,
        f: &DocUpdate<'_>,
    ) -> Result<Option<serde_json::Value>, PortError> {
        for attempt in 0..MAX_ATTEMPTS {
            let loaded = self.load_state_doc(key).await?;
            let expected = loaded.as_ref().map(|(_, v)| *v);
            let mut value = loaded.map(|(d, _)| d);
            if !f(&mut value) {
                return Ok(value);
            }
            let Some(body) = &value else {
                return Err(PortError::rejected(
                    SERVICE,
                    "a state document cannot be unset",
                ));
            };
            let version = expected.map_or_else(first_version, |v| v + 1);
            let item = Item::from([
                (PK.into(), s(format!("{STATE_PREFIX}{key}"))),
                (DOC.into(), s(body.to_string())),
                (VERSION.into(), n(version)),
            ]);
            if self.put_if_version(item, expected).await? {
                return Ok(value);
            }
            backoff(attempt).await;
        }
        Err(too_many(&format!("update state document {key}")))
    }

    async fn drained_pools(&self) -> Result<std::collections::BTreeSet<String>, PortError> {
        Ok(self
            .scan(DRAIN_PREFIX)
            .await?
            .iter()
            .filter_map(|item| string_attr(item, PK))
            .filter_map(|pk| pk.strip_prefix(DRAIN_PREFIX))
            .map(str::to_string)
            .collect())
    }

    async fn is_drained(&self, pool: &str) -> Result<bool, PortError> {
        Ok(self
            .get_item(&format!("{DRAIN_PREFIX}{pool}"))
            .await?
            .is_some())
    }

    async fn set_drained(&self, pool: &str, drained: bool) -> Result<(), PortError> {
        let pk = format!("{DRAIN_PREFIX}{pool}");
        if drained {
            let item = Item::from([
                (PK.into(), s(&pk)),
                ("since".into(), s(chrono::Utc::now().to_rfc3339())),
            ]);
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| classify(SERVICE, &format!("put {pk}"), e, &[]))?;
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(&pk))
                .send()
                .await
                .map_err(|e| classify(SERVICE, &format!("delete {pk}"), e, &[]))?;
        }
        Ok(())
    }
}

fn clamp(v: Option<i64>) -> u32 {
    v.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32
}

/// Give `amount` back to counter `attr` as it was read (`current`): subtract when
/// the counter holds that much, else set it to zero; the condition makes sure the
/// counter still is on the side of `amount` it was read on.
fn give_back(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    attr: &str,
    amount: i64,
    current: Option<i64>,
) -> Result<Update, PortError> {
    let update = update
        .expression_attribute_names("#a", attr)
        .expression_attribute_values(":amount", n(amount));
    let update = if current.is_some_and(|c| c >= amount) {
        update
            .update_expression("SET #a = #a - :amount")
            .condition_expression("#a >= :amount")
    } else {
        update
            .update_expression("SET #a = :zero")
            .condition_expression("attribute_not_exists(pk) OR #a < :amount")
            .expression_attribute_values(":zero", n(0))
    };
    update.build().map_err(build_err)
}

/// Create the ledger table (`pk` string hash key, on-demand) unless it exists, wait
/// until it is active, and turn TTL on `expires_at` on (best effort).
pub async fn create_table(client: &Client, name: &str) -> Result<(), PortError> {
    let attr = AttributeDefinition::builder()
        .attribute_name(PK)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_err)?;
    let key = KeySchemaElement::builder()
        .attribute_name(PK)
        .key_type(KeyType::Hash)
        .build()
        .map_err(build_err)?;
    let created = client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr)
        .key_schema(key)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    if let Err(e) = created {
        let exists = e
            .as_service_error()
            .is_some_and(|se| se.is_resource_in_use_exception());
        if !exists {
            return Err(classify(SERVICE, &format!("create table {name}"), e, &[]));
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| classify(SERVICE, &format!("describe table {name}"), e, &[]))?;
        let status = out.table.and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(PortError::unavailable(
                SERVICE,
                format!("table {name} not active: {status:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(EXPIRES_AT)
        .build()
        .map_err(build_err)?;
    if let Err(e) = client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        // Already on, or not supported by an emulator: the ledger works without.
        tracing::debug!(table = name, error = %classify(SERVICE, "enable TTL", e, &[]), "TTL not enabled");
    }
    Ok(())
}
