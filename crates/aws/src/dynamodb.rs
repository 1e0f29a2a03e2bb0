//! The ledger's storage on one DynamoDB table: a [`LedgerStore`], so the
//! rules are [`spotrunner_core::ledger`]'s, as for SQLite and memory.
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
//! | `health#<pool>` | `doc` (the pool's circuit breaker record as JSON), `version` |
//! | `state#<key>` | `doc` (a scheduled task's state: `redelivery`, `sweep`), `version` |
//! | `gate#webhook-secrets` | `at` (epoch ms), `writer`, `expires_at`: the webhook's secrets-refresh gate (`refresh_gate.rs`) |
//!
//! A commit of one document is a conditional `PutItem` (and carries a `writer`
//! token, so a retry whose first attempt was applied knows it): creations on
//! `attribute_not_exists(pk)`, changes on the `version` read before. A commit
//! of several writes is one `TransactWriteItems` with the same conditions, and
//! counters change by conditional `SET #c = #c ± n` (never read and
//! overwritten), so reservations and releases hold the caps under any
//! concurrency.
//! `expires_at` (epoch seconds) lets DynamoDB's TTL drop jobs and runners
//! [`TTL`] after their last update.

use crate::error::classify;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use spotrunner_core::ports::{
    CapacityUse, Commit, Counter, CounterChange, Doc, DocKey, DocKind, Expect, JobRecord,
    LedgerStore, PortError, RunnerRecord, Write,
};
use std::collections::HashMap;
use std::time::Duration;

const SERVICE: &str = "dynamodb";
/// How long jobs and runners stay after their last update.
pub const TTL: chrono::Duration = chrono::Duration::days(7);

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

mod refresh_gate;
pub use refresh_gate::REFRESH_GATE_PK;

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

/// A short, growing pause with some jitter before retrying a lost race. The
/// wall clock's nanoseconds are only a cheap source of jitter, not a time.
async fn backoff(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let base = 5u64 << attempt.min(6);
    let jitter = u64::from(nanos) % base.max(1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
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

fn expires_at(updated_at: DateTime<Utc>) -> AttributeValue {
    n((updated_at + TTL).timestamp())
}

/// A fresh version for a new item: distinct from any version a stale reader of a
/// replaced item may hold. The wall clock's microseconds serve as a unique,
/// increasing number, not as a time (nothing compares them with a `now`).
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

/// The stored document of `item` (its key says which kind).
fn decode(item: &Item) -> Result<(Doc, i64), PortError> {
    let pk = string_attr(item, PK).unwrap_or_default();
    let bad = |e: serde_json::Error| corrupt(item, e);
    let d = if pk.starts_with(JOB_PREFIX) {
        Doc::Job(serde_json::from_str(doc(item)?).map_err(bad)?)
    } else if pk.starts_with(RUNNER_PREFIX) {
        Doc::Runner(serde_json::from_str(doc(item)?).map_err(bad)?)
    } else if pk.starts_with(HEALTH_PREFIX) {
        Doc::Health(serde_json::from_str(doc(item)?).map_err(bad)?)
    } else if let Some(key) = pk.strip_prefix(STATE_PREFIX) {
        Doc::State {
            key: key.to_string(),
            value: serde_json::from_str(doc(item)?).map_err(bad)?,
        }
    } else if let Some(pool) = pk.strip_prefix(DRAIN_PREFIX) {
        let since = string_attr(item, "since")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(Utc::now, |t| t.to_utc());
        // A flag: never written conditionally, so it has no version.
        return Ok((
            Doc::Drain {
                pool: pool.to_string(),
                since,
            },
            0,
        ));
    } else {
        return Err(corrupt(item, "not a ledger document"));
    };
    Ok((d, version(item)?))
}

fn key_pk(key: &DocKey) -> String {
    match key {
        DocKey::Job(id) => job_pk(*id),
        DocKey::Runner(name) => runner_pk(name),
        DocKey::Health(pool) => format!("{HEALTH_PREFIX}{pool}"),
        DocKey::State(key) => format!("{STATE_PREFIX}{key}"),
        DocKey::Drain(pool) => format!("{DRAIN_PREFIX}{pool}"),
    }
}

fn kind_prefix(kind: DocKind) -> &'static str {
    match kind {
        DocKind::Job => JOB_PREFIX,
        DocKind::Runner => RUNNER_PREFIX,
        DocKind::Health => HEALTH_PREFIX,
        DocKind::State => STATE_PREFIX,
        DocKind::Drain => DRAIN_PREFIX,
    }
}

/// The item for `d` at `version`.
fn encode(d: &Doc, version: i64) -> Result<Item, PortError> {
    let json = |r: Result<String, serde_json::Error>| {
        r.map_err(|e| PortError::rejected(SERVICE, format!("encode {}: {e}", key_pk(&d.key()))))
    };
    Ok(match d {
        Doc::Job(j) => job_item(j, version),
        Doc::Runner(r) => runner_item(r, version),
        Doc::Health(h) => Item::from([
            (PK.into(), s(key_pk(&d.key()))),
            (DOC.into(), s(json(serde_json::to_string(h))?)),
            (VERSION.into(), n(version)),
        ]),
        Doc::State { value, .. } => Item::from([
            (PK.into(), s(key_pk(&d.key()))),
            (DOC.into(), s(value.to_string())),
            (VERSION.into(), n(version)),
        ]),
        Doc::Drain { since, .. } => Item::from([
            (PK.into(), s(key_pk(&d.key()))),
            ("since".into(), s(since.to_rfc3339())),
        ]),
    })
}

/// A counter's item and attribute.
fn counter_place(counter: &Counter) -> (String, &'static str) {
    match counter {
        Counter::Pool(pool) => (pool_pk(pool), COUNT),
        Counter::Weight => (GLOBAL_PK.to_string(), WEIGHT_USED),
    }
}

impl DynamoLedger {
    /// One write as a transaction item.
    async fn transact_item(&self, w: &Write<i64>) -> Result<TransactWriteItem, PortError> {
        let item = match w {
            Write::Put { doc, expect } => {
                let version = match expect {
                    Expect::Version(v) => v + 1,
                    Expect::Absent | Expect::Any => first_version(),
                };
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(encode(doc, version)?));
                let put = match expect {
                    Expect::Absent => put.condition_expression("attribute_not_exists(pk)"),
                    Expect::Version(v) => put
                        .condition_expression("#v = :v")
                        .expression_attribute_names("#v", VERSION)
                        .expression_attribute_values(":v", n(v)),
                    Expect::Any => put,
                };
                TransactWriteItem::builder()
                    .put(put.build().map_err(build_err)?)
                    .build()
            }
            Write::Delete(key) => TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .key(PK, s(key_pk(key)))
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
            Write::Count(CounterChange::Take {
                counter,
                amount,
                cap,
            }) => {
                let (pk, attr) = counter_place(counter);
                let mut u = self
                    .update(&pk)
                    .update_expression("SET #c = if_not_exists(#c, :zero) + :amount")
                    .expression_attribute_names("#c", attr)
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":amount", n(amount));
                if let Some(cap) = cap {
                    u = u
                        .condition_expression("attribute_not_exists(pk) OR #c <= :limit")
                        .expression_attribute_values(
                            ":limit",
                            n(i64::from(*cap) - i64::from(*amount)),
                        );
                }
                TransactWriteItem::builder()
                    .update(u.build().map_err(build_err)?)
                    .build()
            }
            Write::Count(CounterChange::Give { counter, amount }) => {
                // Subtract when the counter holds that much, else set it to zero;
                // the condition makes sure it is still on the side it was read on.
                let (pk, attr) = counter_place(counter);
                let current = self.counter(&pk, attr).await?;
                let amount = i64::from(*amount);
                let u = self
                    .update(&pk)
                    .expression_attribute_names("#a", attr)
                    .expression_attribute_values(":amount", n(amount));
                let u = if current.is_some_and(|c| c >= amount) {
                    u.update_expression("SET #a = #a - :amount")
                        .condition_expression("#a >= :amount")
                } else {
                    u.update_expression("SET #a = :zero")
                        .condition_expression("attribute_not_exists(pk) OR #a < :amount")
                        .expression_attribute_values(":zero", n(0))
                };
                TransactWriteItem::builder()
                    .update(u.build().map_err(build_err)?)
                    .build()
            }
            Write::Count(CounterChange::Swap { counter, from, to }) => {
                let (pk, attr) = counter_place(counter);
                let u = self
                    .update(&pk)
                    .update_expression("SET #c = :new")
                    .expression_attribute_names("#c", attr)
                    .expression_attribute_values(":new", n(to))
                    .expression_attribute_values(":was", n(from));
                // A counter seen as 0 may be absent.
                let u = if *from == 0 {
                    u.condition_expression("attribute_not_exists(#c) OR #c <= :was")
                } else {
                    u.condition_expression("#c = :was")
                };
                TransactWriteItem::builder()
                    .update(u.build().map_err(build_err)?)
                    .build()
            }
        };
        Ok(item)
    }
}

#[async_trait]
impl LedgerStore for DynamoLedger {
    type Version = i64;

    fn service(&self) -> &'static str {
        SERVICE
    }

    async fn read(&self, key: &DocKey) -> Result<Option<(Doc, i64)>, PortError> {
        self.get_item(&key_pk(key))
            .await?
            .map(|item| decode(&item))
            .transpose()
    }

    async fn read_all(&self, kind: DocKind) -> Result<Vec<Doc>, PortError> {
        self.scan(kind_prefix(kind))
            .await?
            .iter()
            .map(|item| decode(item).map(|(d, _)| d))
            .collect()
    }

    async fn counters(&self) -> Result<CapacityUse, PortError> {
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

    async fn counter(&self, counter: &Counter) -> Result<u32, PortError> {
        let (pk, attr) = counter_place(counter);
        Ok(clamp(self.counter(&pk, attr).await?))
    }

    async fn commit(&self, writes: Vec<Write<i64>>) -> Result<Commit, PortError> {
        // A cap no counter can meet: refused without asking.
        if let Some(i) = writes
            .iter()
            .position(|w| matches!(w, Write::Count(CounterChange::Take { amount, cap: Some(cap), .. }) if amount > cap))
        {
            return Ok(Commit::Refused(i));
        }
        if writes.len() > 100 {
            return Err(PortError::rejected(
                SERVICE,
                format!("{} writes exceed one transaction", writes.len()),
            ));
        }
        let mut items = Vec::with_capacity(writes.len());
        for w in &writes {
            items.push(self.transact_item(w).await?);
        }
        match self.transact(items).await? {
            TxOutcome::Done => Ok(Commit::Done),
            TxOutcome::Cancelled(codes) => {
                match (0..writes.len()).find(|&i| failed(&codes, i)) {
                    // A give-back's branch no longer holds: read and try again.
                    Some(i) if matches!(writes[i], Write::Count(CounterChange::Give { .. })) => {
                        Ok(Commit::Contended)
                    }
                    Some(i) => Ok(Commit::Refused(i)),
                    None if conflicted(&codes) => Ok(Commit::Contended),
                    None => Err(PortError::rejected(
                        SERVICE,
                        format!("transaction cancelled: {codes:?}"),
                    )),
                }
            }
        }
    }

    /// One document: a plain conditional write (cheaper than a transaction,
    /// and its lost answer is told apart by the writer token).
    async fn commit_one(&self, write: Write<i64>) -> Result<Commit, PortError> {
        match &write {
            Write::Put {
                doc,
                expect: expect @ (Expect::Absent | Expect::Version(_)),
            } => {
                let expected = match expect {
                    Expect::Version(v) => Some(*v),
                    _ => None,
                };
                let version = expected.map_or_else(first_version, |v| v + 1);
                let ok = self.put_if_version(encode(doc, version)?, expected).await?;
                Ok(if ok { Commit::Done } else { Commit::Refused(0) })
            }
            Write::Put {
                doc,
                expect: Expect::Any,
            } => {
                let pk = key_pk(&doc.key());
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(encode(doc, first_version())?))
                    .send()
                    .await
                    .map_err(|e| classify(SERVICE, &format!("put {pk}"), e, &[]))?;
                Ok(Commit::Done)
            }
            // Deletes (undrain) and counters commit in `commit`.
            Write::Delete(_) | Write::Count(_) => Err(PortError::rejected(
                SERVICE,
                "only a document put commits alone",
            )),
        }
    }

    async fn pause(&self, attempt: u32) {
        backoff(attempt).await;
    }
}

fn clamp(v: Option<i64>) -> u32 {
    v.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32
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
