//! Durable state of a node, in one data directory: the function registry
//! (SQLite), content-addressed component artifacts and their precompiled
//! forms, and the per-invocation log written in batches off the request path.
//!
//! It stores and returns plain records; it does not compile, run or route.

mod artifacts;
mod async_queue;
mod invocation_log;
mod queues;
mod registry;
mod time;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

pub use artifacts::Artifacts;
pub use async_queue::{
    Accepted, AsyncQueue, AsyncRecord, AsyncStatus, Attempt, IDEMPOTENCY_WINDOW_MS, QueueStats, StoredRequest,
};
pub use invocation_log::{InvocationLog, InvocationRecord, LogQuery};
pub use queues::{QueueDepth, QueueMessage, ReceiveOptions};
pub use registry::FunctionRecord;
pub use time::{format_rfc3339, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("corrupt record for {name}: {reason}")]
    Corrupt { name: String, reason: String },
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    component_sha256 TEXT NOT NULL,
    deployed_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS function_versions (
    name TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    request_id TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    duration_us INTEGER NOT NULL,
    output TEXT NOT NULL,
    output_truncated_bytes INTEGER NOT NULL,
    init_us INTEGER
);
CREATE INDEX IF NOT EXISTS invocations_by_function ON invocations (function, seq);
";

/// Brings a data directory written by an earlier nimbus up to this schema.
fn migrate(conn: &Connection) -> Result<()> {
    let has_init_us: bool =
        conn.prepare("SELECT 1 FROM pragma_table_info('invocations') WHERE name = 'init_us'")?.exists([])?;
    if !has_init_us {
        conn.execute_batch("ALTER TABLE invocations ADD COLUMN init_us INTEGER")?;
    }
    Ok(())
}

/// The node's data directory.
pub struct Store {
    dir: PathBuf,
    db: Mutex<Connection>,
    artifacts: Artifacts,
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    // SQLite's own busy handler sleeps in steps of up to 100 ms; writers here
    // hold the lock for a commit at most, so retry in fine steps instead.
    conn.busy_handler(Some(retry_when_busy))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Waits for another connection's write to finish: 50 µs steps growing to
/// 1 ms, for up to about 10 s, then reports the database as busy.
fn retry_when_busy(attempt: i32) -> bool {
    if attempt > 10_050 {
        return false;
    }
    let micros = (50 * (attempt as u64 + 1)).min(1000);
    std::thread::sleep(std::time::Duration::from_micros(micros));
    true
}

impl Store {
    /// Opens (creating if needed) the data directory `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(StoreError::io(format!("cannot create data directory {}", dir.display())))?;
        let conn = open_connection(&dir.join("nimbus.db"))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        conn.execute_batch(async_queue::SCHEMA)?;
        let artifacts = Artifacts::open(dir)?;
        Ok(Self { dir: dir.to_path_buf(), db: Mutex::new(conn), artifacts })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn artifacts(&self) -> &Artifacts {
        &self.artifacts
    }

    /// Starts the background writer of invocation records.
    pub fn invocation_log(&self, retain_per_function: u32) -> Result<InvocationLog> {
        InvocationLog::start(&self.dir.join("nimbus.db"), retain_per_function)
    }

    /// Opens the durable queue of asynchronous invocations (one per node).
    pub fn async_queue(&self) -> Result<std::sync::Arc<AsyncQueue>> {
        AsyncQueue::open(&self.dir.join("nimbus.db"))
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}
