//! The ledger in SQLite: jobs and runners as JSON documents next to their state,
//! the counters in their own tables. Each call is one `IMMEDIATE` transaction, so
//! claims, reservations and releases are atomic across threads and processes.

use crate::db::{Db, bad_doc, err};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use spotrunner_core::circuit::PoolHealth;
use spotrunner_core::job::{JobMessage, JobStateUpdate};
use spotrunner_core::ports::{
    CapacityUse, ClaimDecision, ClaimOutcome, DocUpdate, HealthUpdate, JobChange, JobRecord,
    JobStateSink, Ledger, Limits, PortError, ReserveOutcome, RunnerChange, RunnerRecord,
    RunnerState, decide_claim,
};
use std::collections::{BTreeMap, BTreeSet};

/// A [`Ledger`] on the state database.
#[derive(Clone)]
pub struct SqliteLedger {
    db: Db,
}

impl SqliteLedger {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn get_job(tx: &rusqlite::Connection, job_id: u64) -> Result<Option<JobRecord>, PortError> {
    let doc: Option<String> = tx
        .query_row(
            "SELECT doc FROM jobs WHERE job_id = ?1",
            params![job_id as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    doc.map(|d| serde_json::from_str(&d).map_err(bad_doc))
        .transpose()
}

fn put_job(tx: &Transaction<'_>, job: &JobRecord) -> Result<(), PortError> {
    let doc = serde_json::to_string(job).map_err(bad_doc)?;
    tx.execute(
        "INSERT INTO jobs (job_id, state, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, doc = excluded.doc",
        params![job.job_id as i64, job.state.as_str(), doc],
    )
    .map_err(err)?;
    Ok(())
}

fn get_runner(tx: &rusqlite::Connection, name: &str) -> Result<Option<RunnerRecord>, PortError> {
    let doc: Option<String> = tx
        .query_row(
            "SELECT doc FROM runners WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    doc.map(|d| serde_json::from_str(&d).map_err(bad_doc))
        .transpose()
}

fn put_runner(tx: &Transaction<'_>, runner: &RunnerRecord) -> Result<(), PortError> {
    let doc = serde_json::to_string(runner).map_err(bad_doc)?;
    tx.execute(
        "INSERT INTO runners (name, state, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET state = excluded.state, doc = excluded.doc",
        params![runner.name, runner.state.as_str(), doc],
    )
    .map_err(err)?;
    Ok(())
}

fn pool_count(tx: &rusqlite::Connection, pool: &str) -> Result<u32, PortError> {
    let n: Option<i64> = tx
        .query_row(
            "SELECT count FROM capacity WHERE pool = ?1",
            params![pool],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    Ok(n.unwrap_or(0).max(0) as u32)
}

fn weight_used(tx: &rusqlite::Connection) -> Result<u32, PortError> {
    let n: Option<i64> = tx
        .query_row("SELECT used FROM weight WHERE id = 0", [], |r| r.get(0))
        .optional()
        .map_err(err)?;
    Ok(n.unwrap_or(0).max(0) as u32)
}

fn set_pool_count(tx: &Transaction<'_>, pool: &str, n: u32) -> Result<(), PortError> {
    tx.execute(
        "INSERT INTO capacity (pool, count) VALUES (?1, ?2)
         ON CONFLICT (pool) DO UPDATE SET count = excluded.count",
        params![pool, n],
    )
    .map_err(err)?;
    Ok(())
}

fn set_weight(tx: &Transaction<'_>, n: u32) -> Result<(), PortError> {
    tx.execute(
        "INSERT INTO weight (id, used) VALUES (0, ?1)
         ON CONFLICT (id) DO UPDATE SET used = excluded.used",
        params![n],
    )
    .map_err(err)?;
    Ok(())
}

fn get_health(tx: &rusqlite::Connection, pool: &str) -> Result<Option<PoolHealth>, PortError> {
    let doc: Option<String> = tx
        .query_row(
            "SELECT doc FROM pool_health WHERE pool = ?1",
            params![pool],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    doc.map(|d| serde_json::from_str(&d).map_err(bad_doc))
        .transpose()
}

fn get_state_doc(
    c: &rusqlite::Connection,
    key: &str,
) -> Result<Option<serde_json::Value>, PortError> {
    let doc: Option<String> = c
        .query_row(
            "SELECT doc FROM state_docs WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    doc.map(|d| serde_json::from_str(&d).map_err(bad_doc))
        .transpose()
}

fn docs<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    sql: &str,
) -> Result<Vec<T>, PortError> {
    let mut stmt = conn.prepare(sql).map_err(err)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(err)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(serde_json::from_str(&row.map_err(err)?).map_err(bad_doc)?);
    }
    Ok(out)
}

#[async_trait]
impl JobStateSink for SqliteLedger {
    async fn record_job_state(&self, update: &JobStateUpdate) -> Result<(), PortError> {
        self.db.tx(|tx| {
            let Some(mut job) = get_job(tx, update.job_id)? else {
                return Ok(());
            };
            if !job.observe(update) {
                return Ok(());
            }
            put_job(tx, &job)
        })
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn claim_job(
        &self,
        msg: &JobMessage,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<ClaimOutcome, PortError> {
        self.db.tx(
            |tx| match decide_claim(get_job(tx, msg.job_id)?.as_ref(), msg, now, lease) {
                ClaimDecision::Take(record) => {
                    put_job(tx, &record)?;
                    Ok(ClaimOutcome::Claimed(record))
                }
                ClaimDecision::Report(outcome) => Ok(outcome),
            },
        )
    }

    async fn get_job(&self, job_id: u64) -> Result<Option<JobRecord>, PortError> {
        self.db.read(|c| get_job(c, job_id))
    }

    async fn update_job(
        &self,
        job_id: u64,
        change: &JobChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.db.tx(|tx| {
            let mut job = get_job(tx, job_id)?.ok_or_else(|| PortError::NotFound {
                service: crate::db::SERVICE,
                what: format!("job {job_id}"),
            })?;
            if !job.apply(change, now) {
                return Ok(());
            }
            put_job(tx, &job)
        })
    }

    async fn list_jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.db
            .read(|c| docs(c, "SELECT doc FROM jobs ORDER BY job_id"))
    }

    async fn reserve(
        &self,
        runner: &RunnerRecord,
        limits: Limits,
    ) -> Result<ReserveOutcome, PortError> {
        self.db.tx(|tx| {
            if get_runner(tx, &runner.name)?.is_some_and(|r| r.state != RunnerState::Released) {
                return Ok(ReserveOutcome::AlreadyReserved);
            }
            let count = pool_count(tx, &runner.pool)?;
            if count >= limits.pool_max {
                return Ok(ReserveOutcome::PoolFull);
            }
            let used = weight_used(tx)?;
            if let Some(max) = limits.global_max_weight
                && u64::from(used) + u64::from(limits.weight) > u64::from(max)
            {
                return Ok(ReserveOutcome::GlobalFull);
            }
            set_pool_count(tx, &runner.pool, count + 1)?;
            set_weight(tx, used.saturating_add(limits.weight))?;
            let mut record = runner.clone();
            record.state = RunnerState::Reserved;
            record.weight = limits.weight;
            put_runner(tx, &record)?;
            Ok(ReserveOutcome::Reserved)
        })
    }

    async fn release(
        &self,
        runner_name: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.db.tx(|tx| {
            let Some(mut runner) = get_runner(tx, runner_name)? else {
                return Ok(false);
            };
            if runner.state == RunnerState::Released {
                return Ok(false);
            }
            runner.state = RunnerState::Released;
            runner.end_reason = Some(reason.to_string());
            runner.updated_at = now;
            put_runner(tx, &runner)?;
            let count = pool_count(tx, &runner.pool)?;
            set_pool_count(tx, &runner.pool, count.saturating_sub(1))?;
            let used = weight_used(tx)?;
            set_weight(tx, used.saturating_sub(runner.weight))?;
            Ok(true)
        })
    }

    async fn get_runner(&self, name: &str) -> Result<Option<RunnerRecord>, PortError> {
        self.db.read(|c| get_runner(c, name))
    }

    async fn update_runner(
        &self,
        name: &str,
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.db.tx(|tx| {
            let mut runner = get_runner(tx, name)?.ok_or_else(|| PortError::NotFound {
                service: crate::db::SERVICE,
                what: format!("runner {name}"),
            })?;
            runner.apply(change, now);
            put_runner(tx, &runner)
        })
    }

    async fn list_runners(&self) -> Result<Vec<RunnerRecord>, PortError> {
        self.db
            .read(|c| docs(c, "SELECT doc FROM runners ORDER BY name"))
    }

    async fn capacity(&self) -> Result<CapacityUse, PortError> {
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
                pools.insert(pool, n as u32);
            }
            Ok(CapacityUse {
                pools,
                weight: weight_used(c)?,
            })
        })
    }

    async fn set_capacity(&self, counts: &CapacityUse) -> Result<(), PortError> {
        self.db.tx(|tx| {
            tx.execute("DELETE FROM capacity", []).map_err(err)?;
            for (pool, n) in &counts.pools {
                set_pool_count(tx, pool, *n)?;
            }
            set_weight(tx, counts.weight)
        })
    }

    async fn transition_runner(
        &self,
        name: &str,
        from: &[RunnerState],
        change: &RunnerChange,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.db.tx(|tx| {
            let Some(mut runner) = get_runner(tx, name)? else {
                return Ok(false);
            };
            if !from.contains(&runner.state) {
                return Ok(false);
            }
            runner.apply(change, now);
            put_runner(tx, &runner)?;
            Ok(true)
        })
    }

    async fn repair_capacity(
        &self,
        seen: &CapacityUse,
        counts: &CapacityUse,
    ) -> Result<bool, PortError> {
        self.db.tx(|tx| {
            let mut stmt = tx
                .prepare("SELECT pool, count FROM capacity WHERE count > 0")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(err)?;
            let mut now_pools = BTreeMap::new();
            for row in rows {
                let (pool, n) = row.map_err(err)?;
                now_pools.insert(pool, n as u32);
            }
            drop(stmt);
            if now_pools != seen.pools || weight_used(tx)? != seen.weight {
                return Ok(false);
            }
            tx.execute("DELETE FROM capacity", []).map_err(err)?;
            for (pool, n) in &counts.pools {
                set_pool_count(tx, pool, *n)?;
            }
            set_weight(tx, counts.weight)?;
            Ok(true)
        })
    }

    async fn pool_health(&self, pool: &str) -> Result<PoolHealth, PortError> {
        self.db
            .read(|c| get_health(c, pool))
            .map(|h| h.unwrap_or_else(|| PoolHealth::new(pool)))
    }

    async fn list_pool_health(&self) -> Result<Vec<PoolHealth>, PortError> {
        self.db
            .read(|c| docs(c, "SELECT doc FROM pool_health ORDER BY pool"))
    }

    async fn update_pool_health(
        &self,
        pool: &str,
        f: &HealthUpdate<'_>,
    ) -> Result<PoolHealth, PortError> {
        self.db.tx(|tx| {
            let mut health = get_health(tx, pool)?.unwrap_or_else(|| PoolHealth::new(pool));
            if f(&mut health) {
                let doc = serde_json::to_string(&health).map_err(bad_doc)?;
                tx.execute(
                    "INSERT INTO pool_health (pool, doc) VALUES (?1, ?2)
                     ON CONFLICT (pool) DO UPDATE SET doc = excluded.doc",
                    params![pool, doc],
                )
                .map_err(err)?;
            }
            Ok(health)
        })
    }

    async fn state_doc(&self, key: &str) -> Result<Option<serde_json::Value>, PortError> {
        self.db.read(|c| get_state_doc(c, key))
    }

    async fn update_state_doc(
        &self,
        key: &str,
        f: &DocUpdate<'_>,
    ) -> Result<Option<serde_json::Value>, PortError> {
        self.db.tx(|tx| {
            let mut doc = get_state_doc(tx, key)?;
            if f(&mut doc) {
                let Some(value) = &doc else {
                    return Err(PortError::rejected(
                        "ledger",
                        "a state document cannot be unset",
                    ));
                };
                tx.execute(
                    "INSERT INTO state_docs (key, doc) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
                    params![key, value.to_string()],
                )
                .map_err(err)?;
            }
            Ok(doc)
        })
    }

    async fn drained_pools(&self) -> Result<BTreeSet<String>, PortError> {
        self.db.read(|c| {
            let mut stmt = c.prepare("SELECT pool FROM drained").map_err(err)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(err)?;
            rows.map(|r| r.map_err(err)).collect()
        })
    }

    async fn set_drained(&self, pool: &str, drained: bool) -> Result<(), PortError> {
        self.db.tx(|tx| {
            if drained {
                tx.execute(
                    "INSERT OR IGNORE INTO drained (pool, since) VALUES (?1, ?2)",
                    params![pool, Utc::now().to_rfc3339()],
                )
            } else {
                tx.execute("DELETE FROM drained WHERE pool = ?1", params![pool])
            }
            .map_err(err)?;
            Ok(())
        })
    }
}
