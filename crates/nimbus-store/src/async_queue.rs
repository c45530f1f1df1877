//! Durable asynchronous invocations: accepted work, its attempts, results,
//! and the dead-letter queue, in the node's SQLite database.
//!
//! Accepts are group-committed by one writer thread with `synchronous=FULL`:
//! a caller is answered only after its invocation is on disk, and many
//! accepts share one fsync. Status changes after that use the ordinary
//! connection; losing one in a crash only means an invocation runs again
//! (delivery is at least once).

use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError, now_ms, open_connection};

/// How long an idempotency key keeps returning the same invocation.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Where an asynchronous invocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AsyncStatus {
    /// Accepted, not attempted yet.
    Queued,
    /// An attempt is running.
    Running,
    /// The last attempt failed; another is scheduled.
    Failed,
    Succeeded,
    /// Retries exhausted or too old: in the dead-letter queue.
    Dead,
}

impl AsyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "failed" => Self::Failed,
            "succeeded" => Self::Succeeded,
            _ => Self::Dead,
        }
    }
}

/// The request an asynchronous invocation will deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// One attempt's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub request_id: String,
    pub started_at_ms: i64,
    pub duration_ms: f64,
    pub status: u16,
    /// `ok`, `function_error` (a 5xx answer), or the platform error code.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An asynchronous invocation as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AsyncRecord {
    pub id: String,
    pub function: String,
    pub status: AsyncStatus,
    pub request: StoredRequest,
    pub idempotency_key: Option<String>,
    pub created_at_ms: i64,
    /// When it was last put in the queue (accept or redrive); its age counts from here.
    pub enqueued_at_ms: i64,
    pub next_attempt_at_ms: i64,
    /// Attempts since it was last enqueued; the retry budget counts these.
    pub tries: u32,
    pub attempts: Vec<Attempt>,
    pub result_status: Option<u16>,
    #[serde(skip)]
    pub result_body: Option<Vec<u8>>,
    pub last_error: Option<String>,
    pub finished_at_ms: Option<i64>,
}

/// The answer to an accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    /// An earlier accept with the same idempotency key was returned instead.
    pub duplicate: bool,
}

pub(crate) struct AcceptRequest {
    record: Box<AsyncRecord>,
    reply: tokio::sync::oneshot::Sender<std::result::Result<Accepted, String>>,
}

pub(crate) struct SendRequest {
    pub(crate) queue: String,
    pub(crate) body: Vec<u8>,
    pub(crate) reply: tokio::sync::oneshot::Sender<std::result::Result<String, String>>,
}

/// Work for the durable writer: accepts and queue sends share its fsyncs.
pub(crate) enum WriteRequest {
    Accept(AcceptRequest),
    Send(SendRequest),
}

/// Counts per function for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub function: String,
    pub pending: u64,
    pub running: u64,
    pub dead: u64,
    pub oldest_pending_ms: Option<i64>,
}

pub struct AsyncQueue {
    pub(crate) accepts: Sender<WriteRequest>,
    db: Mutex<Connection>,
}

const COLUMNS: &str = "id, function, status, method, path, headers, body, idempotency_key, created_at_ms, \
    enqueued_at_ms, next_attempt_at_ms, tries, attempts, result_status, result_body, last_error, finished_at_ms";

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS async_invocations (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    status TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    idempotency_key TEXT,
    created_at_ms INTEGER NOT NULL,
    enqueued_at_ms INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    attempts TEXT NOT NULL DEFAULT '[]',
    result_status INTEGER,
    result_body BLOB,
    last_error TEXT,
    finished_at_ms INTEGER
);
DROP INDEX IF EXISTS async_due;
-- Only pending work is indexed for the dispatcher: claims read the rows they
-- take, in order, however large the backlog.
CREATE INDEX IF NOT EXISTS async_pending_by_function ON async_invocations (function, next_attempt_at_ms)
    WHERE status IN ('queued', 'failed');
CREATE INDEX IF NOT EXISTS async_pending ON async_invocations (next_attempt_at_ms)
    WHERE status IN ('queued', 'failed');
CREATE INDEX IF NOT EXISTS async_by_function ON async_invocations (function, status);
CREATE TABLE IF NOT EXISTS queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue_messages (queue, dead, visible_at_ms);
CREATE TABLE IF NOT EXISTS schedule_state (
    function TEXT NOT NULL,
    schedule TEXT NOT NULL,
    last_tick_ms INTEGER NOT NULL,
    PRIMARY KEY (function, schedule)
);
CREATE INDEX IF NOT EXISTS async_idempotency ON async_invocations (function, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
";

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<AsyncRecord> {
    let headers: String = r.get(5)?;
    let attempts: String = r.get(12)?;
    Ok(AsyncRecord {
        id: r.get(0)?,
        function: r.get(1)?,
        status: AsyncStatus::parse(&r.get::<_, String>(2)?),
        request: StoredRequest {
            method: r.get(3)?,
            path: r.get(4)?,
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body: r.get(6)?,
        },
        idempotency_key: r.get(7)?,
        created_at_ms: r.get(8)?,
        enqueued_at_ms: r.get(9)?,
        next_attempt_at_ms: r.get(10)?,
        tries: r.get(11)?,
        attempts: serde_json::from_str(&attempts).unwrap_or_default(),
        result_status: r.get(13)?,
        result_body: r.get(14)?,
        last_error: r.get(15)?,
        finished_at_ms: r.get(16)?,
    })
}

impl AsyncQueue {
    pub(crate) fn open(db_path: &Path) -> Result<Arc<Self>> {
        let writer = open_connection(db_path)?;
        // Accepted means on disk: every accept batch is fsync'd.
        writer.pragma_update(None, "synchronous", "FULL")?;
        let db = open_connection(db_path)?;
        // Attempts interrupted by a crash run again.
        db.execute("UPDATE async_invocations SET status = 'queued' WHERE status = 'running'", [])?;
        let (accepts, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("nimbus-async-accept".into())
            .spawn(move || accept_loop(writer, receiver))
            .map_err(StoreError::io("cannot start the async accept writer"))?;
        Ok(Arc::new(Self { accepts, db: Mutex::new(db) }))
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a new invocation durably; resolves once it is on disk. With an
    /// idempotency key seen for this function within 24 h, returns that
    /// invocation's id instead.
    pub async fn accept(&self, record: AsyncRecord) -> Result<Accepted> {
        let stopped = || StoreError::Corrupt { name: "async queue".into(), reason: "the accept writer stopped".into() };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.accepts
            .send(WriteRequest::Accept(AcceptRequest { record: Box::new(record), reply }))
            .map_err(|_| stopped())?;
        match answer.await {
            Ok(Ok(accepted)) => Ok(accepted),
            Ok(Err(reason)) => Err(StoreError::Corrupt { name: "async queue".into(), reason }),
            Err(_) => Err(stopped()),
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<AsyncRecord>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(&format!("SELECT {COLUMNS} FROM async_invocations WHERE id = ?1"))?;
        Ok(stmt.query_row([id], read).optional()?)
    }

    /// Claims up to `limit` due invocations of `function`, oldest first,
    /// marking them running.
    pub fn claim_due(&self, function: &str, now: i64, limit: usize) -> Result<Vec<AsyncRecord>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(&format!(
            "UPDATE async_invocations SET status = 'running'
             WHERE id IN (SELECT id FROM async_invocations INDEXED BY async_pending_by_function
                          WHERE function = ?1 AND status IN ('queued', 'failed') AND next_attempt_at_ms <= ?2
                          ORDER BY next_attempt_at_ms LIMIT ?3)
             RETURNING {COLUMNS}"
        ))?;
        let mut claimed =
            stmt.query_map(params![function, now, limit as i64], read)?.collect::<rusqlite::Result<Vec<_>>>()?;
        claimed.sort_by_key(|r| (r.next_attempt_at_ms, r.created_at_ms));
        Ok(claimed)
    }

    /// Whether `function` has work due by `now`.
    pub fn has_due(&self, function: &str, now: i64) -> Result<bool> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM async_invocations INDEXED BY async_pending_by_function
                            WHERE function = ?1 AND status IN ('queued', 'failed') AND next_attempt_at_ms <= ?2)",
        )?;
        Ok(stmt.query_row(params![function, now], |r| r.get(0))?)
    }

    /// The earliest time any pending work becomes due after `now`.
    pub fn next_due_after(&self, now: i64) -> Result<Option<i64>> {
        Ok(self.db().query_row(
            "SELECT MIN(next_attempt_at_ms) FROM async_invocations INDEXED BY async_pending
             WHERE status IN ('queued', 'failed') AND next_attempt_at_ms > ?1",
            [now],
            |r| r.get(0),
        )?)
    }

    /// Functions with due work, found by scanning all of it: for the
    /// occasional sweep of work whose function is no longer deployed.
    pub fn functions_with_due_work(&self, now: i64) -> Result<Vec<String>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT DISTINCT function FROM async_invocations INDEXED BY async_pending_by_function
             WHERE status IN ('queued', 'failed') AND next_attempt_at_ms <= ?1",
        )?;
        Ok(stmt.query_map([now], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Records an attempt and what follows from it: done (`Succeeded` or
    /// `Dead`), or another try at `retry_at_ms` (`Failed`).
    pub fn finish_attempt(
        &self,
        id: &str,
        attempt: &Attempt,
        status: AsyncStatus,
        retry_at_ms: i64,
        result: Option<(u16, &[u8])>,
    ) -> Result<()> {
        let db = self.db();
        let attempts: String = db
            .query_row("SELECT attempts FROM async_invocations WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .unwrap_or_default();
        let mut list: Vec<Attempt> = serde_json::from_str(&attempts).unwrap_or_default();
        list.push(attempt.clone());
        let list = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
        let finished = matches!(status, AsyncStatus::Succeeded | AsyncStatus::Dead).then(now_ms);
        db.execute(
            "UPDATE async_invocations SET status = ?2, attempts = ?3, tries = tries + 1, next_attempt_at_ms = ?4,
               result_status = COALESCE(?5, result_status), result_body = COALESCE(?6, result_body),
               last_error = ?7, finished_at_ms = ?8
             WHERE id = ?1",
            params![
                id,
                status.as_str(),
                list,
                retry_at_ms,
                result.map(|(s, _)| s),
                result.map(|(_, b)| b),
                attempt.error,
                finished
            ],
        )?;
        Ok(())
    }

    /// Sends an invocation to the dead-letter queue without running it.
    pub fn bury(&self, id: &str, reason: &str) -> Result<()> {
        self.db().execute(
            "UPDATE async_invocations SET status = 'dead', last_error = ?2, finished_at_ms = ?3 WHERE id = ?1",
            params![id, reason, now_ms()],
        )?;
        Ok(())
    }

    /// Puts a claimed invocation back, untouched (e.g. on shutdown).
    pub fn release(&self, id: &str) -> Result<()> {
        self.db()
            .execute("UPDATE async_invocations SET status = 'queued' WHERE id = ?1 AND status = 'running'", [id])?;
        Ok(())
    }

    /// The newest `limit` invocations of a function, newest first.
    pub fn recent(&self, function: &str, limit: u32) -> Result<Vec<AsyncRecord>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM async_invocations WHERE function = ?1 ORDER BY created_at_ms DESC, id DESC LIMIT ?2"
        ))?;
        Ok(stmt.query_map(params![function, limit], read)?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The last tick a schedule fired for, if it ever did. `schedule`
    /// identifies it (cron expression and time zone).
    pub fn last_tick(&self, function: &str, schedule: &str) -> Result<Option<i64>> {
        Ok(self
            .db()
            .query_row(
                "SELECT last_tick_ms FROM schedule_state WHERE function = ?1 AND schedule = ?2",
                params![function, schedule],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_last_tick(&self, function: &str, schedule: &str, tick_ms: i64) -> Result<()> {
        self.db().execute(
            "INSERT INTO schedule_state (function, schedule, last_tick_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (function, schedule) DO UPDATE SET last_tick_ms = excluded.last_tick_ms",
            params![function, schedule, tick_ms],
        )?;
        Ok(())
    }

    /// The dead-letter queue of a function, oldest first.
    pub fn dead_letters(&self, function: &str, limit: u32) -> Result<Vec<AsyncRecord>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM async_invocations WHERE function = ?1 AND status = 'dead' ORDER BY finished_at_ms LIMIT ?2"
        ))?;
        Ok(stmt.query_map(params![function, limit], read)?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Queues dead invocations again with a fresh retry budget and age; all
    /// of the function's when `ids` is empty. Returns how many.
    pub fn redrive(&self, function: &str, ids: &[String]) -> Result<usize> {
        let now = now_ms();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = if ids.is_empty() {
            tx.execute(
                "UPDATE async_invocations SET status = 'queued', tries = 0, enqueued_at_ms = ?2, next_attempt_at_ms = ?2,
                   finished_at_ms = NULL WHERE function = ?1 AND status = 'dead'",
                params![function, now],
            )?
        } else {
            let mut n = 0;
            for id in ids {
                n += tx.execute(
                    "UPDATE async_invocations SET status = 'queued', tries = 0, enqueued_at_ms = ?3, next_attempt_at_ms = ?3,
                       finished_at_ms = NULL WHERE function = ?1 AND id = ?2 AND status = 'dead'",
                    params![function, id, now],
                )?;
            }
            n
        };
        tx.commit()?;
        Ok(n)
    }

    /// Deletes dead invocations; all of the function's when `ids` is empty.
    pub fn purge(&self, function: &str, ids: &[String]) -> Result<usize> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = if ids.is_empty() {
            tx.execute("DELETE FROM async_invocations WHERE function = ?1 AND status = 'dead'", [function])?
        } else {
            let mut n = 0;
            for id in ids {
                n += tx.execute(
                    "DELETE FROM async_invocations WHERE function = ?1 AND id = ?2 AND status = 'dead'",
                    params![function, id],
                )?;
            }
            n
        };
        tx.commit()?;
        Ok(n)
    }

    /// Depth, running, dead and oldest pending age per function.
    pub fn stats(&self) -> Result<Vec<QueueStats>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT function,
                    SUM(status IN ('queued', 'failed')), SUM(status = 'running'), SUM(status = 'dead'),
                    MIN(CASE WHEN status IN ('queued', 'failed') THEN enqueued_at_ms END)
             FROM async_invocations GROUP BY function ORDER BY function",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(QueueStats {
                function: r.get(0)?,
                pending: r.get::<_, i64>(1)? as u64,
                running: r.get::<_, i64>(2)? as u64,
                dead: r.get::<_, i64>(3)? as u64,
                oldest_pending_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

fn accept_loop(mut conn: Connection, receiver: Receiver<WriteRequest>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut accepts = Vec::new();
        let mut sends = Vec::new();
        for request in batch {
            match request {
                WriteRequest::Accept(a) => accepts.push(a),
                WriteRequest::Send(s) => sends.push(s),
            }
        }
        match insert_batch(&mut conn, &accepts, &sends) {
            Ok((accepted, sent)) => {
                for (request, answer) in accepts.into_iter().zip(accepted) {
                    let _ = request.reply.send(Ok(answer));
                }
                for (request, id) in sends.into_iter().zip(sent) {
                    let _ = request.reply.send(Ok(id));
                }
            }
            Err(e) => {
                tracing::error!(
                    "cannot store {} async invocations and {} queue messages: {e}",
                    accepts.len(),
                    sends.len()
                );
                for request in accepts {
                    let _ = request.reply.send(Err(e.to_string()));
                }
                for request in sends {
                    let _ = request.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// One transaction, one fsync, for every accept and send waiting.
fn insert_batch(
    conn: &mut Connection,
    accepts: &[AcceptRequest],
    sends: &[SendRequest],
) -> rusqlite::Result<(Vec<Accepted>, Vec<String>)> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(accepts.len());
    let mut sent = Vec::with_capacity(sends.len());
    {
        let mut find = tx.prepare_cached(
            "SELECT id FROM async_invocations WHERE function = ?1 AND idempotency_key = ?2 AND created_at_ms > ?3
             ORDER BY created_at_ms DESC LIMIT 1",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO async_invocations (id, function, status, method, path, headers, body, idempotency_key,
               created_at_ms, enqueued_at_ms, next_attempt_at_ms)
             VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?8)",
        )?;
        for AcceptRequest { record: r, .. } in accepts {
            if let Some(key) = &r.idempotency_key {
                let earlier: Option<String> = find
                    .query_row(params![r.function, key, r.created_at_ms - IDEMPOTENCY_WINDOW_MS], |row| row.get(0))
                    .optional()?;
                if let Some(id) = earlier {
                    answers.push(Accepted { id, duplicate: true });
                    continue;
                }
            }
            let headers = serde_json::to_string(&r.request.headers).unwrap_or_else(|_| "[]".into());
            insert.execute(params![
                r.id,
                r.function,
                r.request.method,
                r.request.path,
                headers,
                r.request.body,
                r.idempotency_key,
                r.created_at_ms
            ])?;
            answers.push(Accepted { id: r.id.clone(), duplicate: false });
        }
        let mut send = tx.prepare_cached(
            "INSERT INTO queue_messages (queue, body, sent_at_ms, visible_at_ms) VALUES (?1, ?2, ?3, ?3)",
        )?;
        let now = now_ms();
        for s in sends {
            send.execute(params![s.queue, s.body, now])?;
            sent.push(tx.last_insert_rowid().to_string());
        }
    }
    tx.commit()?;
    Ok((answers, sent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn record(id: &str, key: Option<&str>) -> AsyncRecord {
        AsyncRecord {
            id: id.into(),
            function: "f".into(),
            status: AsyncStatus::Queued,
            request: StoredRequest {
                method: "POST".into(),
                path: "/".into(),
                headers: vec![("a".into(), "b".into())],
                body: b"x".to_vec(),
            },
            idempotency_key: key.map(String::from),
            created_at_ms: now_ms(),
            enqueued_at_ms: 0,
            next_attempt_at_ms: 0,
            tries: 0,
            attempts: vec![],
            result_status: None,
            result_body: None,
            last_error: None,
            finished_at_ms: None,
        }
    }

    fn attempt(outcome: &str) -> Attempt {
        Attempt {
            request_id: "r".into(),
            started_at_ms: 1,
            duration_ms: 1.0,
            status: 502,
            outcome: outcome.into(),
            error: Some("boom".into()),
        }
    }

    #[tokio::test]
    async fn lifecycle_idempotency_dlq_and_crash_recovery() {
        let dir = std::env::temp_dir().join(format!("nimbus-async-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let q = store.async_queue().unwrap();
        assert_eq!(q.accept(record("a", Some("k"))).await.unwrap(), Accepted { id: "a".into(), duplicate: false });
        assert_eq!(q.accept(record("b", Some("k"))).await.unwrap(), Accepted { id: "a".into(), duplicate: true });
        q.accept(record("c", None)).await.unwrap();
        assert!(q.get("b").unwrap().is_none());
        let stored = q.get("a").unwrap().unwrap();
        assert_eq!(stored.request.body, b"x");
        assert_eq!(stored.request.headers, vec![("a".to_string(), "b".to_string())]);

        assert_eq!(q.functions_with_due_work(now_ms()).unwrap(), ["f"]);
        assert!(q.has_due("f", now_ms()).unwrap());
        assert!(!q.has_due("g", now_ms()).unwrap());
        let claimed = q.claim_due("f", now_ms(), 1).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(q.get(&claimed[0].id).unwrap().unwrap().status, AsyncStatus::Running);
        q.finish_attempt(&claimed[0].id, &attempt("function_crashed"), AsyncStatus::Dead, 0, None).unwrap();
        let dead = q.dead_letters("f", 10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("boom"));

        // A claim that a crash interrupted runs again after a restart.
        let second = q.claim_due("f", now_ms(), 10).unwrap();
        assert_eq!(second.len(), 1);
        drop(q);
        let q = store.async_queue().unwrap();
        assert_eq!(q.get(&second[0].id).unwrap().unwrap().status, AsyncStatus::Queued);

        assert_eq!(q.redrive("f", &[]).unwrap(), 1);
        let again = q.get(&dead[0].id).unwrap().unwrap();
        assert_eq!((again.status, again.tries, again.attempts.len()), (AsyncStatus::Queued, 0, 1));
        let stats = q.stats().unwrap();
        assert_eq!((stats[0].pending, stats[0].dead), (2, 0));
        let id = again.id.clone();
        q.claim_due("f", now_ms(), 10).unwrap();
        q.finish_attempt(&id, &attempt("function_crashed"), AsyncStatus::Dead, 0, None).unwrap();
        assert_eq!(q.purge("f", &[id]).unwrap(), 1);
        assert!(q.dead_letters("f", 10).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
