//! Consumers of built-in queues: for every `[[queue]]` of every deployed
//! function, batches of messages are received (hidden for the visibility
//! timeout), delivered to the function as an SQS-style event, and deleted
//! when it succeeds. A failed batch comes back after the visibility timeout;
//! a message received `max_receive` times goes to the queue's dead-letter
//! queue. A function may report partial failure as Lambda does, answering
//! `{"batchItemFailures":[{"itemIdentifier":"<messageId>"}]}`: only those
//! messages come back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{FunctionName, Invocation, QueueBinding};
use nimbus_scheduler::{DeployedFunction, Scheduler};
use nimbus_store::{QueueMessage, ReceiveOptions, format_rfc3339};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::AsyncInvoker;

type BindingKey = (FunctionName, String);

pub struct QueueConsumers {
    invoker: Arc<AsyncInvoker>,
    scheduler: Arc<Scheduler>,
    in_flight: Arc<Mutex<HashMap<BindingKey, u32>>>,
}

/// How often consumers look for messages whose visibility timeout passed;
/// new messages wake them at once.
const POLL: Duration = Duration::from_millis(200);

impl QueueConsumers {
    pub fn new(invoker: Arc<AsyncInvoker>, scheduler: Arc<Scheduler>) -> Self {
        Self { invoker, scheduler, in_flight: Arc::new(Mutex::new(HashMap::new())) }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let table = self.scheduler.table();
            let mut bindings: Vec<(Arc<DeployedFunction>, QueueBinding)> = Vec::new();
            for function in table.functions() {
                for binding in &function.record.spec.queues {
                    bindings.push((function.clone(), binding.clone()));
                }
            }
            drop(table);
            bindings.sort_by(|a, b| (a.0.name(), &a.1.name).cmp(&(b.0.name(), &b.1.name)));
            for (function, binding) in bindings {
                self.fill(function, binding).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.invoker.queue_activity().notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Starts as many batches as the binding's `max_concurrency` allows.
    async fn fill(&self, function: Arc<DeployedFunction>, binding: QueueBinding) {
        let key = (function.name().clone(), binding.name.clone());
        loop {
            let running = self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied().unwrap_or(0);
            if running >= binding.max_concurrency {
                return;
            }
            let queue = self.invoker.queue().clone();
            let name = binding.name.clone();
            let options = ReceiveOptions {
                max_messages: binding.batch_size as usize,
                visibility_timeout_ms: binding.visibility_timeout_s as i64 * 1000,
                max_receive: binding.max_receive,
            };
            let messages = match tokio::task::spawn_blocking(move || queue.receive(&name, options)).await {
                Ok(Ok(messages)) => messages,
                Ok(Err(e)) => {
                    tracing::error!(queue = %binding.name, "cannot receive: {e}");
                    return;
                }
                Err(_) => return,
            };
            if messages.is_empty() {
                return;
            }
            *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default() += 1;
            let (invoker, scheduler, in_flight) =
                (self.invoker.clone(), self.scheduler.clone(), self.in_flight.clone());
            let (function, binding, key) = (function.clone(), binding.clone(), key.clone());
            tokio::spawn(async move {
                deliver(&invoker, &scheduler, function, &binding, messages).await;
                if let Some(n) = in_flight.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&key) {
                    *n = n.saturating_sub(1);
                }
                invoker.queue_activity().notify_one();
            });
        }
    }
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(rename = "batchItemFailures", default)]
    failures: Vec<ItemFailure>,
}

#[derive(Deserialize)]
struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    id: String,
}

/// The event a consumer gets: SQS's shape, so Lambda handlers read it as is.
fn batch_event(queue: &str, messages: &[QueueMessage]) -> String {
    let records: Vec<_> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.id,
                "receiptHandle": m.id,
                "body": String::from_utf8_lossy(&m.body),
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_at_ms.to_string(),
                },
                "messageAttributes": {},
                "eventSource": "nimbus:queue",
                "eventSourceARN": format!("queue:{queue}"),
            })
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}

async fn deliver(
    invoker: &AsyncInvoker,
    scheduler: &Arc<Scheduler>,
    function: Arc<DeployedFunction>,
    binding: &QueueBinding,
    messages: Vec<QueueMessage>,
) {
    let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    let path = function.record.spec.default_path();
    let request = http::Request::builder()
        .method("POST")
        .uri(path.as_str())
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-nimbus-queue", binding.name.as_str())
        .body(Bytes::from(batch_event(&binding.name, &messages)));
    let Ok(request) = request else { return };
    let mut invocation = Invocation::new(function.name().clone(), request);
    invocation.note = Some(format!(
        "queue {}: batch of {} (first sent {})",
        binding.name,
        messages.len(),
        messages.first().map(|m| format_rfc3339(m.sent_at_ms)).unwrap_or_default()
    ));
    let outcome = scheduler.invoke_when_admitted(function, invocation).await.buffered().await;
    let queue = invoker.queue().clone();
    let (done, failed, error): (Vec<String>, Vec<String>, Option<String>) = match &outcome.result {
        Ok(response) if !response.status().is_server_error() => {
            let failures: Vec<String> = serde_json::from_slice::<BatchResponse>(response.body().as_bytes())
                .map(|r| r.failures.into_iter().map(|f| f.id).collect())
                .unwrap_or_default();
            let (failed, done) = ids.into_iter().partition(|id| failures.contains(id));
            (done, failed, Some("reported in batchItemFailures".to_owned()))
        }
        Ok(response) => (Vec::new(), ids, Some(format!("the function answered {}", response.status()))),
        Err(e) => (Vec::new(), ids, Some(format!("{}: {}", e.code, e.message))),
    };
    let _ = tokio::task::spawn_blocking(move || {
        if !done.is_empty() {
            queue.delete_messages(&done)?;
        }
        if let (false, Some(error)) = (failed.is_empty(), error) {
            queue.note_failure(&failed, &error)?;
        }
        Ok::<_, nimbus_store::StoreError>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_events_have_the_sqs_shape() {
        let m = QueueMessage {
            id: "7".into(),
            queue: "jobs".into(),
            body: b"{\"n\":1}".to_vec(),
            sent_at_ms: 5,
            receive_count: 2,
            last_error: None,
        };
        let v: serde_json::Value = serde_json::from_str(&batch_event("jobs", &[m])).unwrap();
        assert_eq!(v["Records"][0]["messageId"], "7");
        assert_eq!(v["Records"][0]["body"], "{\"n\":1}");
        assert_eq!(v["Records"][0]["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(v["Records"][0]["eventSourceARN"], "queue:jobs");
        let r: BatchResponse = serde_json::from_str(r#"{"batchItemFailures":[{"itemIdentifier":"7"}]}"#).unwrap();
        assert_eq!(r.failures[0].id, "7");
    }
}
