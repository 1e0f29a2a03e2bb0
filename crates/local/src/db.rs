//! The one SQLite database of a state directory: WAL journal, `synchronous=FULL`,
//! every write in an `IMMEDIATE` transaction, so a `kill -9` loses no committed
//! change and several processes (`serve` and the operator commands) can share it.

use rusqlite::{Connection, Transaction, TransactionBehavior};
use spotrunner_core::ports::PortError;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const SERVICE: &str = "sqlite";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runners (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS capacity (
    pool TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS weight (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pool_health (
    pool TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state_docs (
    key TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drained (
    pool TEXT PRIMARY KEY,
    since TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, visible_at);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    client_token TEXT NOT NULL UNIQUE,
    runner_name TEXT NOT NULL,
    pool TEXT NOT NULL,
    dir TEXT NOT NULL,
    state TEXT NOT NULL,
    tags TEXT NOT NULL,
    launched_at TEXT NOT NULL,
    command_id TEXT,
    pid INTEGER,
    exit_code INTEGER,
    ended_at TEXT
);
CREATE TABLE IF NOT EXISTS parameter_tags (
    name TEXT PRIMARY KEY,
    tags TEXT NOT NULL
);
"#;

/// A shared handle on the state database.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    /// Open (and create) `path`, apply the schema.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` in one `IMMEDIATE` transaction; commit on `Ok`, roll back on `Err`.
    pub(crate) fn tx<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let out = f(&tx)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Run a read on the connection (no explicit transaction).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn)
    }
}

/// An SQLite failure as a port error: busy/locked is transient, the rest is not.
pub(crate) fn err(e: rusqlite::Error) -> PortError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            PortError::unavailable(SERVICE, e)
        }
        _ => PortError::rejected(SERVICE, e),
    }
}

/// A stored JSON document that does not parse (a corrupted or foreign row).
pub(crate) fn bad_doc(e: serde_json::Error) -> PortError {
    PortError::rejected(SERVICE, format!("stored document does not parse: {e}"))
}
