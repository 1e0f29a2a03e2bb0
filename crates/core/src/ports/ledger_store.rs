//! What a ledger store must do, and nothing more: read documents by key, read
//! the capacity counters, and commit a set of writes atomically — each document
//! write only if the document is still at the version read, each counter change
//! only within its condition. The rules (who may claim, reserve, release, …)
//! live once, in [`crate::ledger`]; every type implementing [`LedgerStore`] is a
//! [`super::Ledger`] through it (DynamoDB, SQLite, memory).

use super::{CapacityUse, JobRecord, PortError, RunnerRecord};
use crate::circuit::PoolHealth;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The key of one stored document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocKey {
    Job(u64),
    Runner(String),
    /// A pool's circuit breaker record.
    Health(String),
    /// A scheduled task's state document.
    State(String),
    /// The pool is drained.
    Drain(String),
}

/// A kind of document, for listing all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocKind {
    Job,
    Runner,
    Health,
    State,
    Drain,
}

/// One stored document.
// A document lives for one read-decide-commit; boxing the job record would
// only add an allocation to every read.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Job(JobRecord),
    Runner(RunnerRecord),
    Health(PoolHealth),
    State {
        key: String,
        value: serde_json::Value,
    },
    Drain {
        pool: String,
        since: DateTime<Utc>,
    },
}

impl Doc {
    pub fn key(&self) -> DocKey {
        match self {
            Self::Job(j) => DocKey::Job(j.job_id),
            Self::Runner(r) => DocKey::Runner(r.name.clone()),
            Self::Health(h) => DocKey::Health(h.pool.clone()),
            Self::State { key, .. } => DocKey::State(key.clone()),
            Self::Drain { pool, .. } => DocKey::Drain(pool.clone()),
        }
    }

    pub fn kind(&self) -> DocKind {
        self.key().kind()
    }
}

impl DocKey {
    pub fn kind(&self) -> DocKind {
        match self {
            Self::Job(_) => DocKind::Job,
            Self::Runner(_) => DocKind::Runner,
            Self::Health(_) => DocKind::Health,
            Self::State(_) => DocKind::State,
            Self::Drain(_) => DocKind::Drain,
        }
    }
}

/// A capacity counter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// Live runners of one pool.
    Pool(String),
    /// Weight in use across all pools.
    Weight,
}

/// What a document write requires of the stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect<V> {
    /// There is none.
    Absent,
    /// It is still at this version (the one read).
    Version(V),
    /// Nothing (a flag).
    Any,
}

/// A change of one counter, only ever conditional on its current value
/// (never read and overwritten).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterChange {
    /// `counter += amount`, refused when the result would pass `cap`.
    Take {
        counter: Counter,
        amount: u32,
        cap: Option<u32>,
    },
    /// `counter -= amount`, never below zero (a repair may have lowered it).
    Give { counter: Counter, amount: u32 },
    /// `counter := to`, refused unless it holds `from` (absent holds 0).
    Swap {
        counter: Counter,
        from: u32,
        to: u32,
    },
}

/// One write of a commit.
// A commit holds a handful of writes, briefly: boxing the document buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Write<V> {
    Put {
        doc: Doc,
        expect: Expect<V>,
    },
    /// Delete the document, whatever it holds (absent is fine).
    Delete(DocKey),
    Count(CounterChange),
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Every write applied.
    Done,
    /// Nothing applied: write `i`'s condition did not hold.
    Refused(usize),
    /// Nothing applied: another commit was in the way (DynamoDB's
    /// `TransactionConflict`, throttling); read again and retry.
    Contended,
}

/// A ledger's storage. Implementations hold no ledger rule: a document write
/// is checked against its [`Expect`], a counter against its bound, and a commit
/// applies all its writes or none.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// What identifies a stored document's version (a number, or the stored
    /// bytes themselves); only ever compared for equality by the store.
    type Version: Clone + std::fmt::Debug + Send + Sync;

    /// A short name for errors and logs (`dynamodb`, `sqlite`, `ledger`).
    fn service(&self) -> &'static str;

    /// The document at `key` and its version (a consistent read).
    async fn read(&self, key: &DocKey) -> Result<Option<(Doc, Self::Version)>, PortError>;
    /// Every document of `kind` (in any order).
    async fn read_all(&self, kind: DocKind) -> Result<Vec<Doc>, PortError>;
    /// The counters as stored (pools at zero left out).
    async fn counters(&self) -> Result<CapacityUse, PortError>;
    /// One counter (a store whose `counters` lists many items reads just
    /// this one).
    async fn counter(&self, counter: &Counter) -> Result<u32, PortError> {
        let all = self.counters().await?;
        Ok(match counter {
            Counter::Pool(pool) => all.pools.get(pool).copied().unwrap_or(0),
            Counter::Weight => all.weight,
        })
    }
    /// Apply all of `writes` atomically, or none.
    async fn commit(&self, writes: Vec<Write<Self::Version>>) -> Result<Commit, PortError>;
    /// Apply one document `Put` (never a delete or a counter): a store whose
    /// `commit` is a costlier transaction makes it a plain conditional write.
    async fn commit_one(&self, write: Write<Self::Version>) -> Result<Commit, PortError> {
        self.commit(vec![write]).await
    }

    /// Called once at the start of every ledger operation (`"claim_job"`, …):
    /// test stores count calls and fail them on demand here.
    fn enter(&self, op: &'static str) -> Result<(), PortError> {
        let _ = op;
        Ok(())
    }
    /// Wait before retry `attempt` of an operation whose commit lost a race
    /// (stores whose commits never contend need not wait).
    async fn pause(&self, attempt: u32) {
        let _ = attempt;
    }
}
