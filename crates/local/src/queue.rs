//! Durable queues in the state database, with SQS's semantics where they matter:
//! delayed messages, a visibility timeout per receive, a receive count, and a
//! redrive to a dead-letter queue once a message was received `max_receives` times
//! without being deleted. A receipt (new per receive) names one delivery.

use crate::db::{Db, err};
use async_trait::async_trait;
use rusqlite::params;
use spotrunner_core::job::JobMessage;
use spotrunner_core::pool_task::TaskMessage;
use spotrunner_core::ports::{
    BootstrapMessage, BootstrapQueue, DeadLetter, DeadLetterQueue, DeleteFailure, JobQueue,
    PortError,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Queue names in the `messages` table.
pub mod names {
    pub const JOBS: &str = "jobs";
    pub const BOOTSTRAP: &str = "bootstrap";
    pub const DLQ: &str = "dlq";
    /// Runner-exit events for stop-runner (the local EventBridge).
    pub const EVENTS: &str = "events";
}

/// SQS's default for the jobs queue's redrive policy.
pub const MAX_RECEIVES: u32 = 3;

/// One delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: i64,
    pub receipt: String,
    pub body: String,
    /// Including this one.
    pub receive_count: u32,
}

/// A message at rest, for listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stored {
    pub message_id: i64,
    pub body: String,
    pub receive_count: u32,
    pub sent_at_ms: i64,
    pub visible_at_ms: i64,
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    /// Receivable now.
    pub visible: u64,
    /// Delayed or received and not yet deleted.
    pub not_visible: u64,
}

/// One named queue, optionally redriving to a dead-letter queue.
#[derive(Clone)]
pub struct SqliteQueue {
    db: Db,
    name: String,
    dead_letter: Option<(String, u32)>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SqliteQueue {
    pub fn new(db: Db, name: &str) -> Self {
        Self {
            db,
            name: name.to_string(),
            dead_letter: None,
        }
    }

    /// Messages received `max_receives` times move to `dlq` on their next receive.
    pub fn with_dead_letter(mut self, dlq: &str, max_receives: u32) -> Self {
        self.dead_letter = Some((dlq.to_string(), max_receives.max(1)));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn send(&self, body: &str, delay: Duration) -> Result<(), PortError> {
        let now = now_ms();
        self.db.tx(|tx| {
            tx.execute(
                "INSERT INTO messages (queue, body, sent_at, visible_at) VALUES (?1, ?2, ?3, ?4)",
                params![self.name, body, now, now + delay.as_millis() as i64],
            )
            .map_err(err)?;
            Ok(())
        })
    }

    /// Receive up to `max` visible messages, hiding each for `visibility`.
    pub fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, PortError> {
        let now = now_ms();
        self.db.tx(|tx| {
            let candidates: Vec<(i64, String, u32)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT id, body, receive_count FROM messages
                         WHERE queue = ?1 AND visible_at <= ?2
                         ORDER BY visible_at, id LIMIT ?3",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![self.name, now, max as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u32))
                    })
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)?
            };
            let mut out = Vec::new();
            for (id, body, count) in candidates {
                if let Some((dlq, max_receives)) = &self.dead_letter
                    && count >= *max_receives
                {
                    tx.execute(
                        "UPDATE messages SET queue = ?1, receive_count = 0, receipt = NULL,
                         visible_at = ?2 WHERE id = ?3",
                        params![dlq, now, id],
                    )
                    .map_err(err)?;
                    tracing::warn!(
                        queue = self.name,
                        message_id = id,
                        receives = count,
                        "message moved to the dead-letter queue"
                    );
                    continue;
                }
                let receipt = format!("{id}:{}", uuid::Uuid::new_v4());
                tx.execute(
                    "UPDATE messages SET receive_count = receive_count + 1, receipt = ?1,
                     visible_at = ?2 WHERE id = ?3",
                    params![receipt, now + visibility.as_millis() as i64, id],
                )
                .map_err(err)?;
                out.push(Received {
                    message_id: id,
                    receipt,
                    body,
                    receive_count: count + 1,
                });
            }
            Ok(out)
        })
    }

    /// Delete the delivery `receipt`; `false` when that delivery is stale.
    pub fn delete(&self, receipt: &str) -> Result<bool, PortError> {
        self.db.tx(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                    params![self.name, receipt],
                )
                .map_err(err)?;
            Ok(n > 0)
        })
    }

    /// Make the delivery `receipt` visible again after `delay`.
    pub fn change_visibility(&self, receipt: &str, delay: Duration) -> Result<bool, PortError> {
        let at = now_ms() + delay.as_millis() as i64;
        self.db.tx(|tx| {
            let n = tx
                .execute(
                    "UPDATE messages SET visible_at = ?1 WHERE queue = ?2 AND receipt = ?3",
                    params![at, self.name, receipt],
                )
                .map_err(err)?;
            Ok(n > 0)
        })
    }

    /// Delete a message by id whatever its receipt (the redrive's move).
    pub fn delete_id(&self, message_id: i64) -> Result<bool, PortError> {
        self.db.tx(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM messages WHERE queue = ?1 AND id = ?2",
                    params![self.name, message_id],
                )
                .map_err(err)?;
            Ok(n > 0)
        })
    }

    /// Move a message to another queue atomically (visible at once, count reset).
    pub fn move_to(&self, message_id: i64, queue: &str, body: &str) -> Result<bool, PortError> {
        let now = now_ms();
        self.db.tx(|tx| {
            let n = tx
                .execute(
                    "UPDATE messages SET queue = ?1, body = ?2, receive_count = 0, receipt = NULL,
                     visible_at = ?3, sent_at = ?3 WHERE queue = ?4 AND id = ?5",
                    params![queue, body, now, self.name, message_id],
                )
                .map_err(err)?;
            Ok(n > 0)
        })
    }

    pub fn depth(&self) -> Result<Depth, PortError> {
        let now = now_ms();
        self.db.read(|c| {
            let (visible, total): (i64, i64) = c
                .query_row(
                    "SELECT COALESCE(SUM(visible_at <= ?2), 0), COUNT(*) FROM messages
                     WHERE queue = ?1",
                    params![self.name, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(err)?;
            Ok(Depth {
                visible: visible as u64,
                not_visible: (total - visible) as u64,
            })
        })
    }

    /// Every message, oldest first.
    pub fn list(&self) -> Result<Vec<Stored>, PortError> {
        self.db.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, body, receive_count, sent_at, visible_at FROM messages
                     WHERE queue = ?1 ORDER BY id",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![self.name], |r| {
                    Ok(Stored {
                        message_id: r.get(0)?,
                        body: r.get(1)?,
                        receive_count: r.get::<_, i64>(2)? as u32,
                        sent_at_ms: r.get(3)?,
                        visible_at_ms: r.get(4)?,
                    })
                })
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)
        })
    }
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn send_job(&self, job: &JobMessage) -> Result<(), PortError> {
        self.send(&job.to_json(), Duration::ZERO)
    }

    async fn send_job_after(&self, job: &JobMessage, delay: Duration) -> Result<(), PortError> {
        self.send(&job.to_json(), delay)
    }

    async fn send_task(&self, task: &TaskMessage, delay: Duration) -> Result<(), PortError> {
        self.send(&task.to_json(), delay)
    }
}

#[async_trait]
impl BootstrapQueue for SqliteQueue {
    async fn schedule(&self, msg: &BootstrapMessage, delay: Duration) -> Result<(), PortError> {
        let body = serde_json::to_string(msg).map_err(|e| PortError::rejected("sqlite", e))?;
        self.send(&body, delay)
    }
}

#[async_trait]
impl DeadLetterQueue for SqliteQueue {
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<DeadLetter>, PortError> {
        Ok(SqliteQueue::receive(self, max, visibility)?
            .into_iter()
            .map(|m| DeadLetter {
                message_id: m.message_id.to_string(),
                receipt: m.receipt,
                body: m.body,
                receive_count: m.receive_count,
            })
            .collect())
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<DeleteFailure>, PortError> {
        let mut failed = Vec::new();
        for r in receipts {
            if let Err(error) = self.delete(r) {
                failed.push(DeleteFailure {
                    receipt: r.clone(),
                    error,
                });
            }
        }
        Ok(failed)
    }

    async fn approximate_depth(&self) -> Result<u64, PortError> {
        let d = self.depth()?;
        Ok(d.visible + d.not_visible)
    }
}
