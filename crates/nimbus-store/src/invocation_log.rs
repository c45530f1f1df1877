use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, mpsc};

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::{Result, open_connection};

/// One invocation as the logs show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Position in the log; assigned when written (0 before).
    #[serde(default)]
    pub seq: i64,
    pub function: String,
    pub request_id: String,
    pub started_at_ms: i64,
    /// The HTTP status the caller received.
    pub status: u16,
    /// `ok`, or the platform error code.
    pub outcome: String,
    pub duration_us: u64,
    /// Guest stdout and stderr, with a truncation marker if it was cut.
    pub output: String,
    pub output_truncated_bytes: u64,
    /// For a cold start: how long the new instance took to initialise.
    /// `None` when the invocation ran on a warm instance (or a Wasm instance,
    /// which is created per request in microseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_us: Option<u64>,
}

/// Which records to read: the newest `limit`, or those after `after_seq`.
#[derive(Clone, Debug)]
pub struct LogQuery {
    pub function: String,
    pub after_seq: Option<i64>,
    pub limit: u32,
}

enum Message {
    Record(Box<InvocationRecord>),
    Flush(mpsc::Sender<()>),
}

/// Appends invocation records from the request path without waiting: a
/// writer thread commits them to SQLite in batches. Readers query through
/// their own connection (WAL mode lets both proceed at once).
pub struct InvocationLog {
    sender: SyncSender<Message>,
    reader: Mutex<Connection>,
    written: tokio::sync::watch::Sender<i64>,
    dropped: AtomicU64,
}

const QUEUE_CAPACITY: usize = 65_536;
const BATCH: usize = 4096;
/// After each commit the writer sleeps this long, so that under load records
/// accumulate and commit together (group commit), and senders do not have to
/// wake the writer for every record. A lone record is still written at once.
const GROUP_COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

impl InvocationLog {
    pub(crate) fn start(db_path: &Path, retain_per_function: u32) -> Result<Self> {
        let writer_conn = open_connection(db_path)?;
        let reader = open_connection(db_path)?;
        let last: i64 = reader.query_row("SELECT COALESCE(MAX(seq), 0) FROM invocations", [], |r| r.get(0))?;
        let (written, _) = tokio::sync::watch::channel(last);
        let (sender, receiver) = mpsc::sync_channel(QUEUE_CAPACITY);
        let notify = written.clone();
        std::thread::Builder::new()
            .name("nimbus-invocation-log".into())
            .spawn(move || write_loop(writer_conn, receiver, notify, retain_per_function))
            .map_err(crate::StoreError::io("cannot start the invocation log writer"))?;
        Ok(Self { sender, reader: Mutex::new(reader), written, dropped: AtomicU64::new(0) })
    }

    /// Queues a record; never blocks. If the writer is hopelessly behind the
    /// record is dropped and counted.
    pub fn append(&self, record: InvocationRecord) {
        match self.sender.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Blocks until every record appended before this call is committed.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.sender.send(Message::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Watches the highest sequence number written, to follow the log.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.written.subscribe()
    }

    pub fn query(&self, q: &LogQuery) -> Result<Vec<InvocationRecord>> {
        let db = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let columns = "seq, function, request_id, started_at_ms, status, outcome, duration_us, output, output_truncated_bytes, init_us";
        let mut records = match q.after_seq {
            Some(after) => {
                let mut stmt = db.prepare_cached(&format!(
                    "SELECT {columns} FROM invocations WHERE function = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3"
                ))?;
                stmt.query_map(params![q.function, after, q.limit], read_record)?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            }
            None => {
                let mut stmt = db.prepare_cached(&format!(
                    "SELECT {columns} FROM invocations WHERE function = ?1 ORDER BY seq DESC LIMIT ?2"
                ))?;
                let mut v =
                    stmt.query_map(params![q.function, q.limit], read_record)?.collect::<rusqlite::Result<Vec<_>>>()?;
                v.reverse();
                v
            }
        };
        records.shrink_to_fit();
        Ok(records)
    }
}

fn read_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<InvocationRecord> {
    Ok(InvocationRecord {
        seq: r.get(0)?,
        function: r.get(1)?,
        request_id: r.get(2)?,
        started_at_ms: r.get(3)?,
        status: r.get(4)?,
        outcome: r.get(5)?,
        duration_us: r.get::<_, i64>(6)? as u64,
        output: r.get(7)?,
        output_truncated_bytes: r.get::<_, i64>(8)? as u64,
        init_us: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
    })
}

fn write_loop(
    mut conn: Connection,
    receiver: Receiver<Message>,
    written: tokio::sync::watch::Sender<i64>,
    retain_per_function: u32,
) {
    let mut since_prune = 0usize;
    while let Ok(first) = receiver.recv() {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(r) => batch.push(r),
                Message::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < BATCH { receiver.try_recv().ok() } else { None };
        }
        if !batch.is_empty() {
            match insert_batch(&mut conn, &batch) {
                Ok(last) => {
                    written.send_replace(last);
                }
                Err(e) => tracing::error!("cannot write {} invocation records: {e}", batch.len()),
            }
            since_prune += batch.len();
            if since_prune >= 4096 {
                since_prune = 0;
                if let Err(e) = prune(&conn, retain_per_function) {
                    tracing::warn!("cannot prune the invocation log: {e}");
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
        std::thread::sleep(GROUP_COMMIT_WINDOW);
    }
}

fn insert_batch(conn: &mut Connection, batch: &[Box<InvocationRecord>]) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO invocations (function, request_id, started_at_ms, status, outcome, duration_us, output, output_truncated_bytes, init_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for r in batch {
            stmt.execute(params![
                r.function,
                r.request_id,
                r.started_at_ms,
                r.status,
                r.outcome,
                r.duration_us as i64,
                r.output,
                r.output_truncated_bytes as i64,
                r.init_us.map(|v| v as i64)
            ])?;
        }
    }
    let last = tx.last_insert_rowid();
    tx.commit()?;
    Ok(last)
}

/// Keeps the newest `retain` records of each function.
fn prune(conn: &Connection, retain: u32) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM invocations WHERE seq IN (
           SELECT seq FROM (
             SELECT seq, ROW_NUMBER() OVER (PARTITION BY function ORDER BY seq DESC) AS rank FROM invocations
           ) WHERE rank > ?1)",
        [retain],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn record(function: &str, i: usize) -> InvocationRecord {
        InvocationRecord {
            seq: 0,
            function: function.into(),
            request_id: format!("r{i}"),
            started_at_ms: i as i64,
            status: 200,
            outcome: "ok".into(),
            duration_us: 10,
            output: format!("line {i}"),
            output_truncated_bytes: 0,
            init_us: i.is_multiple_of(2).then_some(1500),
        }
    }

    #[test]
    fn appends_queries_follows_and_prunes() {
        let dir = std::env::temp_dir().join(format!("nimbus-log-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let log = store.invocation_log(5000).unwrap();
        let watch = log.subscribe();
        for i in 0..10 {
            log.append(record("a", i));
        }
        log.append(record("b", 99));
        log.flush();
        assert_eq!(*watch.borrow(), 11);
        let newest = log.query(&LogQuery { function: "a".into(), after_seq: None, limit: 3 }).unwrap();
        assert_eq!(newest.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["r7", "r8", "r9"]);
        let after = log.query(&LogQuery { function: "a".into(), after_seq: Some(8), limit: 100 }).unwrap();
        assert_eq!(after.iter().map(|r| r.seq).collect::<Vec<_>>(), [9, 10]);
        prune(&log.reader.lock().unwrap(), 2).unwrap();
        let kept = log.query(&LogQuery { function: "a".into(), after_seq: None, limit: 100 }).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(log.query(&LogQuery { function: "b".into(), after_seq: None, limit: 100 }).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
