//! Built-in named queues: at-least-once delivery with a visibility timeout,
//! redelivery, and a dead-letter queue per queue after `max_receive`
//! receives. Messages are sent through the durable writer of
//! [`AsyncQueue`], so a 202 means the message is on disk.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::async_queue::{SendRequest, WriteRequest};
use crate::{AsyncQueue, Result, StoreError, now_ms};

/// A message as a consumer receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    pub id: String,
    pub queue: String,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub sent_at_ms: i64,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    pub last_error: Option<String>,
}

/// Per-queue counts for metrics and `nimbus queue ls`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    pub queue: String,
    /// Waiting to be received (including those whose visibility timeout passed).
    pub ready: u64,
    /// Received and within their visibility timeout.
    pub in_flight: u64,
    pub dead: u64,
    pub oldest_ready_ms: Option<i64>,
}

/// How a consumer receives.
#[derive(Clone, Copy, Debug)]
pub struct ReceiveOptions {
    pub max_messages: usize,
    pub visibility_timeout_ms: i64,
    /// A message received this many times already goes to the dead-letter queue.
    pub max_receive: u32,
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueMessage> {
    Ok(QueueMessage {
        id: r.get::<_, i64>(0)?.to_string(),
        queue: r.get(1)?,
        body: r.get(2)?,
        sent_at_ms: r.get(3)?,
        receive_count: r.get(4)?,
        last_error: r.get(5)?,
    })
}

impl AsyncQueue {
    /// Stores a message durably; resolves with its id once it is on disk.
    pub async fn send(&self, queue: &str, body: Vec<u8>) -> Result<String> {
        let stopped = || StoreError::Corrupt { name: "queue".into(), reason: "the durable writer stopped".into() };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.accepts
            .send(WriteRequest::Send(SendRequest { queue: queue.to_owned(), body, reply }))
            .map_err(|_| stopped())?;
        match answer.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(reason)) => Err(StoreError::Corrupt { name: "queue".into(), reason }),
            Err(_) => Err(stopped()),
        }
    }

    /// Receives up to `max_messages` visible messages, hiding them for the
    /// visibility timeout. Messages already received `max_receive` times go
    /// to the queue's dead-letter queue instead.
    pub fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Vec<QueueMessage>> {
        let now = now_ms();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut messages = Vec::with_capacity(options.max_messages);
        {
            // In index order (visible since, then id): reads only the rows it takes.
            let mut candidates = tx.prepare_cached(
                "SELECT id, queue, body, sent_at_ms, receive_count, last_error FROM queue_messages INDEXED BY queue_ready
                 WHERE queue = ?1 AND dead = 0 AND visible_at_ms <= ?2 ORDER BY visible_at_ms, id LIMIT ?3",
            )?;
            let mut bury = tx.prepare_cached(
                "UPDATE queue_messages SET dead = 1,
                   last_error = COALESCE(last_error, 'not processed') || ' (received ' || receive_count || ' times)'
                 WHERE id = ?1",
            )?;
            let mut take = tx.prepare_cached(
                "UPDATE queue_messages SET visible_at_ms = ?2, receive_count = receive_count + 1 WHERE id = ?1",
            )?;
            // Dead letters found on the way do not shrink the batch much:
            // look a little further, a bounded number of times.
            for _ in 0..4 {
                let want = options.max_messages - messages.len();
                if want == 0 {
                    break;
                }
                let rows = candidates
                    .query_map(params![queue, now, want as i64], read)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut buried = 0;
                for mut m in rows {
                    let id: i64 = m.id.parse().unwrap_or(-1);
                    if messages.iter().any(|taken: &QueueMessage| taken.id == m.id) {
                        continue;
                    }
                    if m.receive_count >= options.max_receive {
                        bury.execute([id])?;
                        buried += 1;
                    } else {
                        take.execute(params![id, now + options.visibility_timeout_ms])?;
                        m.receive_count += 1;
                        messages.push(m);
                    }
                }
                if buried == 0 {
                    break;
                }
            }
        }
        tx.commit()?;
        Ok(messages)
    }

    /// Deletes processed messages.
    pub fn delete_messages(&self, ids: &[String]) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for id in ids {
            tx.execute("DELETE FROM queue_messages WHERE id = ?1", [id.parse::<i64>().unwrap_or(-1)])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Notes why a delivery failed, for the dead-letter queue to show.
    pub fn note_failure(&self, ids: &[String], error: &str) -> Result<()> {
        let db = self.db();
        for id in ids {
            db.execute(
                "UPDATE queue_messages SET last_error = ?2 WHERE id = ?1",
                params![id.parse::<i64>().unwrap_or(-1), error],
            )?;
        }
        Ok(())
    }

    pub fn queue_depths(&self) -> Result<Vec<QueueDepth>> {
        let now = now_ms();
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT queue,
                    SUM(dead = 0 AND visible_at_ms <= ?1), SUM(dead = 0 AND visible_at_ms > ?1), SUM(dead = 1),
                    MIN(CASE WHEN dead = 0 AND visible_at_ms <= ?1 THEN sent_at_ms END)
             FROM queue_messages GROUP BY queue ORDER BY queue",
        )?;
        let rows = stmt.query_map([now], |r| {
            Ok(QueueDepth {
                queue: r.get(0)?,
                ready: r.get::<_, i64>(1)? as u64,
                in_flight: r.get::<_, i64>(2)? as u64,
                dead: r.get::<_, i64>(3)? as u64,
                oldest_ready_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The dead-letter queue of a queue, oldest first.
    pub fn queue_dead_letters(&self, queue: &str, limit: u32) -> Result<Vec<QueueMessage>> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT id, queue, body, sent_at_ms, receive_count, last_error FROM queue_messages
             WHERE queue = ?1 AND dead = 1 ORDER BY id LIMIT ?2",
        )?;
        Ok(stmt.query_map(params![queue, limit], read)?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Makes dead messages deliverable again, with a fresh receive count.
    pub fn redrive_queue(&self, queue: &str) -> Result<usize> {
        Ok(self.db().execute(
            "UPDATE queue_messages SET dead = 0, receive_count = 0, visible_at_ms = ?2 WHERE queue = ?1 AND dead = 1",
            params![queue, now_ms()],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[tokio::test]
    async fn visibility_redelivery_and_dead_letters() {
        let dir = std::env::temp_dir().join(format!("nimbus-queue-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let q = store.async_queue().unwrap();
        for i in 0..3 {
            q.send("jobs", format!("m{i}").into_bytes()).await.unwrap();
        }
        let opts = ReceiveOptions { max_messages: 2, visibility_timeout_ms: 0, max_receive: 2 };
        let hidden = ReceiveOptions { visibility_timeout_ms: 60_000, ..opts };
        let first = q.receive("jobs", hidden).unwrap();
        assert_eq!(first.iter().map(|m| m.body.as_slice()).collect::<Vec<_>>(), [b"m0", b"m1"]);
        // Hidden ones are not received again; the third is.
        let second = q.receive("jobs", hidden).unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].body, b"m2");
        q.delete_messages(&[second[0].id.clone()]).unwrap();
        let depth = &q.queue_depths().unwrap()[0];
        assert_eq!((depth.ready, depth.in_flight, depth.dead), (0, 2, 0));

        // With no visibility timeout, messages come straight back, then die.
        q.send("other", b"x".to_vec()).await.unwrap();
        assert_eq!(q.receive("other", opts).unwrap()[0].receive_count, 1);
        q.note_failure(&["4".into()], "boom").unwrap();
        assert_eq!(q.receive("other", opts).unwrap()[0].receive_count, 2);
        assert!(q.receive("other", opts).unwrap().is_empty());
        let dead = q.queue_dead_letters("other", 10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("boom (received 2 times)"));
        assert_eq!(q.redrive_queue("other").unwrap(), 1);
        assert_eq!(q.receive("other", opts).unwrap()[0].receive_count, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
