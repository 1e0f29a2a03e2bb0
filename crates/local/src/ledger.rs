//! The ledger's storage in SQLite: jobs, runners, pool records and task state
//! as JSON documents (a document's version is its stored text), the counters
//! in their own tables. A commit is one `IMMEDIATE` transaction that checks
//! every write's condition before it applies any, so commits are atomic across
//! threads and processes. The rules are [`spotrunner_core::ledger`]'s.

use crate::db::{Db, SERVICE, bad_doc, err};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use spotrunner_core::ports::{
    CapacityUse, Commit, Counter, CounterChange, Doc, DocKey, DocKind, Expect, LedgerStore,
    PortError, Write,
};
use std::collections::BTreeMap;

/// The ledger on the state database.
#[derive(Clone)]
pub struct SqliteLedger {
    db: Db,
}

impl SqliteLedger {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

/// Where a document lives: table, key column, key value.
fn place(key: &DocKey) -> (&'static str, &'static str, rusqlite::types::Value) {
    use rusqlite::types::Value;
    match key {
        DocKey::Job(id) => ("jobs", "job_id", Value::Integer(*id as i64)),
        DocKey::Runner(name) => ("runners", "name", Value::Text(name.clone())),
        DocKey::Health(pool) => ("pool_health", "pool", Value::Text(pool.clone())),
        DocKey::State(key) => ("state_docs", "key", Value::Text(key.clone())),
        DocKey::Drain(pool) => ("drained", "pool", Value::Text(pool.clone())),
    }
}

/// The stored text of a document (its version).
fn stored(c: &Connection, key: &DocKey) -> Result<Option<String>, PortError> {
    let (table, column, value) = place(key);
    let text = if let DocKey::Drain(_) = key {
        "since"
    } else {
        "doc"
    };
    c.query_row(
        &format!("SELECT {text} FROM {table} WHERE {column} = ?1"),
        params![value],
        |r| r.get(0),
    )
    .optional()
    .map_err(err)
}

fn decode(key: &DocKey, text: &str) -> Result<Doc, PortError> {
    Ok(match key {
        DocKey::Job(_) => Doc::Job(serde_json::from_str(text).map_err(bad_doc)?),
        DocKey::Runner(_) => Doc::Runner(serde_json::from_str(text).map_err(bad_doc)?),
        DocKey::Health(_) => Doc::Health(serde_json::from_str(text).map_err(bad_doc)?),
        DocKey::State(key) => Doc::State {
            key: key.clone(),
            value: serde_json::from_str(text).map_err(bad_doc)?,
        },
        DocKey::Drain(pool) => Doc::Drain {
            pool: pool.clone(),
            since: chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| PortError::rejected(SERVICE, format!("drain {pool}: {e}")))?
                .to_utc(),
        },
    })
}

fn put(c: &Connection, doc: &Doc) -> Result<(), PortError> {
    let result = match doc {
        Doc::Job(j) => c.execute(
            "INSERT INTO jobs (job_id, state, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, doc = excluded.doc",
            params![j.job_id as i64, j.state.as_str(), json(j)?],
        ),
        Doc::Runner(r) => c.execute(
            "INSERT INTO runners (name, state, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET state = excluded.state, doc = excluded.doc",
            params![r.name, r.state.as_str(), json(r)?],
        ),
        Doc::Health(h) => c.execute(
            "INSERT INTO pool_health (pool, doc) VALUES (?1, ?2)
             ON CONFLICT (pool) DO UPDATE SET doc = excluded.doc",
            params![h.pool, json(h)?],
        ),
        Doc::State { key, value } => c.execute(
            "INSERT INTO state_docs (key, doc) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
            params![key, value.to_string()],
        ),
        Doc::Drain { pool, since } => c.execute(
            "INSERT INTO drained (pool, since) VALUES (?1, ?2)
             ON CONFLICT (pool) DO UPDATE SET since = excluded.since",
            params![pool, since.to_rfc3339()],
        ),
    };
    result.map(|_| ()).map_err(err)
}

/// A record's stored text.
fn json<T: serde::Serialize>(v: &T) -> Result<String, PortError> {
    serde_json::to_string(v).map_err(bad_doc)
}

fn count(c: &Connection, counter: &Counter) -> Result<u32, PortError> {
    let n: Option<i64> = match counter {
        Counter::Pool(pool) => c
            .query_row(
                "SELECT count FROM capacity WHERE pool = ?1",
                params![pool],
                |r| r.get(0),
            )
            .optional(),
        Counter::Weight => c
            .query_row("SELECT used FROM weight WHERE id = 0", [], |r| r.get(0))
            .optional(),
    }
    .map_err(err)?;
    Ok(n.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
}

fn set_count(c: &Connection, counter: &Counter, n: u32) -> Result<(), PortError> {
    match counter {
        Counter::Pool(pool) => c.execute(
            "INSERT INTO capacity (pool, count) VALUES (?1, ?2)
             ON CONFLICT (pool) DO UPDATE SET count = excluded.count",
            params![pool, n],
        ),
        Counter::Weight => c.execute(
            "INSERT INTO weight (id, used) VALUES (0, ?1)
             ON CONFLICT (id) DO UPDATE SET used = excluded.used",
            params![n],
        ),
    }
    .map(|_| ())
    .map_err(err)
}

/// Does `write` hold against the database as it is?
fn holds(c: &Connection, write: &Write<String>) -> Result<bool, PortError> {
    Ok(match write {
        Write::Put { doc, expect } => {
            let now = stored(c, &doc.key())?;
            match expect {
                Expect::Absent => now.is_none(),
                Expect::Version(v) => now.as_ref() == Some(v),
                Expect::Any => true,
            }
        }
        Write::Count(CounterChange::Take {
            counter,
            amount,
            cap,
        }) => {
            let n = u64::from(count(c, counter)?);
            cap.is_none_or(|cap| n + u64::from(*amount) <= u64::from(cap))
        }
        Write::Count(CounterChange::Swap { counter, from, .. }) => count(c, counter)? == *from,
        Write::Delete(_) | Write::Count(CounterChange::Give { .. }) => true,
    })
}

fn apply(c: &Connection, write: &Write<String>) -> Result<(), PortError> {
    match write {
        Write::Put { doc, .. } => put(c, doc),
        Write::Delete(key) => {
            let (table, column, value) = place(key);
            c.execute(
                &format!("DELETE FROM {table} WHERE {column} = ?1"),
                params![value],
            )
            .map(|_| ())
            .map_err(err)
        }
        Write::Count(CounterChange::Take {
            counter, amount, ..
        }) => set_count(c, counter, count(c, counter)?.saturating_add(*amount)),
        Write::Count(CounterChange::Give { counter, amount }) => {
            set_count(c, counter, count(c, counter)?.saturating_sub(*amount))
        }
        Write::Count(CounterChange::Swap { counter, to, .. }) => set_count(c, counter, *to),
    }
}

#[async_trait]
impl LedgerStore for SqliteLedger {
    type Version = String;

    fn service(&self) -> &'static str {
        SERVICE
    }

    async fn read(&self, key: &DocKey) -> Result<Option<(Doc, String)>, PortError> {
        self.db.read(|c| {
            stored(c, key)?
                .map(|text| Ok((decode(key, &text)?, text)))
                .transpose()
        })
    }

    async fn read_all(&self, kind: DocKind) -> Result<Vec<Doc>, PortError> {
        let (sql, key): (&str, fn(String) -> DocKey) = match kind {
            DocKind::Job => ("SELECT job_id, doc FROM jobs", |k| {
                DocKey::Job(k.parse().unwrap_or_default())
            }),
            DocKind::Runner => ("SELECT name, doc FROM runners", DocKey::Runner),
            DocKind::Health => ("SELECT pool, doc FROM pool_health", DocKey::Health),
            DocKind::State => ("SELECT key, doc FROM state_docs", DocKey::State),
            DocKind::Drain => ("SELECT pool, since FROM drained", DocKey::Drain),
        };
        self.db.read(|c| {
            let mut stmt = c.prepare(sql).map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    let k: rusqlite::types::Value = r.get(0)?;
                    let k = match k {
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        _ => String::new(),
                    };
                    Ok((k, r.get::<_, String>(1)?))
                })
                .map_err(err)?;
            let mut out = Vec::new();
            for row in rows {
                let (k, text) = row.map_err(err)?;
                out.push(decode(&key(k), &text)?);
            }
            Ok(out)
        })
    }

    async fn counters(&self) -> Result<CapacityUse, PortError> {
        self.db.read(|c| {
            let mut stmt = c
                .prepare("SELECT pool, count FROM capacity WHERE count > 0 ORDER BY pool")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(err)?;
            let mut pools = BTreeMap::new();
            for row in rows {
                let (pool, n) = row.map_err(err)?;
                pools.insert(pool, n.clamp(0, i64::from(u32::MAX)) as u32);
            }
            Ok(CapacityUse {
                pools,
                weight: count(c, &Counter::Weight)?,
            })
        })
    }

    async fn commit(&self, writes: Vec<Write<String>>) -> Result<Commit, PortError> {
        self.db.tx(|tx| {
            for (i, w) in writes.iter().enumerate() {
                if !holds(tx, w)? {
                    return Ok(Commit::Refused(i));
                }
            }
            for w in &writes {
                apply(tx, w)?;
            }
            Ok(Commit::Done)
        })
    }
}
