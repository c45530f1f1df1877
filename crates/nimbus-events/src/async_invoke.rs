//! Asynchronous invocations: accept durably, run later, retry with
//! exponential backoff and jitter, dead-letter what keeps failing, and send
//! the outcome to the function's destinations.
//!
//! One dispatcher task claims due work from the durable queue, function by
//! function in turn (so one busy function cannot starve the others), never
//! claiming more of a function than its `max_concurrency` allows; each
//! attempt then waits for an admission slot shared with synchronous traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{Destination, FunctionName, Invocation, RequestId};
use nimbus_scheduler::{DeployedFunction, Scheduler};
use nimbus_store::{Accepted, AsyncQueue, AsyncRecord, AsyncStatus, Attempt, StoreError, StoredRequest, now_ms};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How retries are spaced.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Delay before the first retry; doubles with each further one.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): exponential, capped,
    /// with "equal jitter" (between half and all of it) so retries of many
    /// invocations that failed together spread out.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let full = exp.min(self.cap);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// What a caller gets back from [`AsyncInvoker::submit`].
pub type SubmitResult = Result<Accepted, StoreError>;

pub struct AsyncInvoker {
    queue: Arc<AsyncQueue>,
    scheduler: Arc<Scheduler>,
    retry: RetryPolicy,
    wake: Notify,
    /// Woken when a queue message is sent or a batch finishes.
    queue_activity: Notify,
    /// Claimed and not yet finished, per function.
    claimed: Mutex<HashMap<String, usize>>,
    retries: Mutex<HashMap<String, u64>>,
}

/// How many due invocations the dispatcher claims from one function at a time.
const CLAIM_BATCH: usize = 64;

/// How often the dispatcher looks for work of functions no longer deployed.
const SWEEP_INTERVAL_MS: i64 = 5_000;

impl AsyncInvoker {
    pub fn new(queue: Arc<AsyncQueue>, scheduler: Arc<Scheduler>, retry: RetryPolicy) -> Arc<Self> {
        Arc::new(Self {
            queue,
            scheduler,
            retry,
            wake: Notify::new(),
            queue_activity: Notify::new(),
            claimed: Mutex::new(HashMap::new()),
            retries: Mutex::new(HashMap::new()),
        })
    }

    pub fn queue(&self) -> &Arc<AsyncQueue> {
        &self.queue
    }

    /// Accepts an invocation of `function`: resolves once it is on disk.
    pub async fn submit(
        &self,
        function: &FunctionName,
        request: StoredRequest,
        idempotency_key: Option<String>,
    ) -> SubmitResult {
        let now = now_ms();
        let record = AsyncRecord {
            id: RequestId::generate().to_string(),
            function: function.to_string(),
            status: AsyncStatus::Queued,
            request,
            idempotency_key,
            created_at_ms: now,
            enqueued_at_ms: now,
            next_attempt_at_ms: now,
            tries: 0,
            attempts: Vec::new(),
            result_status: None,
            result_body: None,
            last_error: None,
            finished_at_ms: None,
        };
        let accepted = self.queue.accept(record).await?;
        self.wake.notify_one();
        Ok(accepted)
    }

    /// Sends a message to a built-in queue; resolves once it is on disk.
    pub async fn send_to_queue(&self, queue: &str, body: Vec<u8>) -> Result<String, StoreError> {
        let id = self.queue.send(queue, body).await?;
        self.queue_activity.notify_one();
        Ok(id)
    }

    /// Wakes the queue consumers (after a redrive, say).
    pub fn nudge_queues(&self) {
        self.queue_activity.notify_one();
    }

    pub(crate) fn queue_activity(&self) -> &Notify {
        &self.queue_activity
    }

    /// Waits until no attempt is running, up to `limit`; for shutdown, after
    /// [`Self::run`] stopped claiming. Returns how many were still running.
    pub async fn wait_idle(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let running: usize = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).values().sum();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wakes the dispatcher (after a redrive, say).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Retries scheduled so far, per function.
    pub fn retries(&self) -> Vec<(String, u64)> {
        let map = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        v
    }

    /// The dispatcher: runs until `shutdown`, then leaves unfinished work
    /// queued for the next start.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut turn = 0usize;
        let mut last_sweep = 0i64;
        loop {
            let now = now_ms();
            // Deployed functions in turn, so that one busy function does not
            // starve the others.
            let mut functions: Vec<String> = self.scheduler.table().functions().map(|f| f.name().to_string()).collect();
            functions.sort();
            if !functions.is_empty() {
                let n = functions.len();
                functions.rotate_left(turn % n);
                turn = turn.wrapping_add(1);
            }
            // Now and then, also work whose function is gone: it is buried.
            if now - last_sweep > SWEEP_INTERVAL_MS {
                last_sweep = now;
                if let Some(all) = self.blocking(move |q| q.functions_with_due_work(now)).await {
                    let table = self.scheduler.table();
                    let gone = |f: &String| FunctionName::parse(f).ok().is_none_or(|n| table.get(&n).is_none());
                    functions.extend(all.into_iter().filter(gone));
                }
            }
            for name in functions {
                let owned = name.clone();
                if self.blocking(move |q| q.has_due(&owned, now)).await == Some(true) {
                    self.claim_and_start(&name, now).await;
                }
            }
            let next_due = self.blocking(move |q| q.next_due_after(now)).await.flatten();
            let wait = next_due
                .map(|t| Duration::from_millis((t - now_ms()).clamp(1, 1000) as u64))
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn claim_and_start(self: &Arc<Self>, name: &str, now: i64) {
        let table = self.scheduler.table();
        let function = FunctionName::parse(name).ok().and_then(|n| table.get(&n).cloned());
        let capacity = match &function {
            Some(f) => f.record.spec.limits.max_concurrency as usize,
            None => CLAIM_BATCH,
        };
        let in_hand = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).get(name).copied().unwrap_or(0);
        let room = capacity.saturating_sub(in_hand).min(CLAIM_BATCH);
        if room == 0 {
            return;
        }
        let queue = self.queue.clone();
        let owned = name.to_owned();
        let claimed = match tokio::task::spawn_blocking(move || queue.claim_due(&owned, now, room)).await {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(e)) => {
                tracing::error!(function = name, "cannot claim async invocations: {e}");
                return;
            }
            Err(_) => return,
        };
        for record in claimed {
            let Some(function) = function.clone() else {
                let reason = format!("function {name} is not deployed");
                self.blocking(move |q| q.bury(&record.id, &reason)).await;
                continue;
            };
            *self.claimed.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_owned()).or_default() += 1;
            let this = self.clone();
            tokio::spawn(async move {
                let name = function.name().to_string();
                this.attempt(function, record).await;
                if let Some(n) = this.claimed.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&name) {
                    *n = n.saturating_sub(1);
                }
                this.wake.notify_one();
            });
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AsyncQueue) -> Result<T, StoreError> + Send + 'static,
    ) -> Option<T> {
        let queue = self.queue.clone();
        match tokio::task::spawn_blocking(move || f(&queue)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::error!("async queue: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// One attempt of one invocation, and what follows from it.
    async fn attempt(self: &Arc<Self>, function: Arc<DeployedFunction>, record: AsyncRecord) {
        let config = function.record.spec.async_config.clone();
        let age_ms = now_ms() - record.enqueued_at_ms;
        if age_ms > config.max_event_age_s as i64 * 1000 {
            let reason = format!(
                "expired: queued for {} s, longer than max_event_age_s = {}",
                age_ms / 1000,
                config.max_event_age_s
            );
            let id = record.id.clone();
            self.blocking(move |q| q.bury(&id, &reason)).await;
            self.send_to_destination(&function, &record, config.on_failure.as_ref(), None, "EventAgeExceeded").await;
            return;
        }

        let invocation = match build_invocation(&function, &record) {
            Ok(invocation) => invocation,
            Err(reason) => {
                let id = record.id.clone();
                self.blocking(move |q| q.bury(&id, &reason)).await;
                return;
            }
        };
        let started_at_ms = now_ms();
        let outcome = self.scheduler.invoke_when_admitted(function.clone(), invocation).await.buffered().await;
        let (status, outcome_code, error, body) = match &outcome.result {
            Ok(response) if response.status().is_server_error() => (
                response.status().as_u16(),
                "function_error".to_owned(),
                Some(format!("the function answered {}", response.status())),
                Some(Bytes::copy_from_slice(response.body().as_bytes())),
            ),
            Ok(response) => (
                response.status().as_u16(),
                "ok".to_owned(),
                None,
                Some(Bytes::copy_from_slice(response.body().as_bytes())),
            ),
            Err(e) => (
                e.code.status().as_u16(),
                e.code.as_str().to_owned(),
                Some(e.message.clone()),
                e.reported.as_ref().map(|r| r.body.clone()),
            ),
        };
        let attempt = Attempt {
            request_id: outcome.request_id.to_string(),
            started_at_ms,
            duration_ms: outcome.duration.as_secs_f64() * 1000.0,
            status,
            outcome: outcome_code.clone(),
            error: error.clone(),
        };
        let succeeded = error.is_none();
        let tries = record.tries + 1;
        let (next, retry_at) = if succeeded {
            (AsyncStatus::Succeeded, 0)
        } else if tries > config.max_retries {
            (AsyncStatus::Dead, 0)
        } else {
            *self.retries.lock().unwrap_or_else(|e| e.into_inner()).entry(function.name().to_string()).or_default() +=
                1;
            let delay = self.retry.delay(tries, jitter(&record.id, tries));
            (AsyncStatus::Failed, now_ms() + delay.as_millis() as i64)
        };
        let id = record.id.clone();
        let result_body = body.clone();
        self.blocking(move |q| {
            q.finish_attempt(&id, &attempt, next, retry_at, result_body.as_ref().map(|b| (status, b.as_ref())))
        })
        .await;
        match next {
            AsyncStatus::Succeeded => {
                self.send_to_destination(
                    &function,
                    &record,
                    config.on_success.as_ref(),
                    Some((status, body)),
                    "Success",
                )
                .await
            }
            AsyncStatus::Dead => {
                let condition = if outcome_code == "ok" { "Success" } else { "RetriesExhausted" };
                self.send_to_destination(
                    &function,
                    &record,
                    config.on_failure.as_ref(),
                    Some((status, body)),
                    condition,
                )
                .await
            }
            _ => {}
        }
    }

    /// Invokes a destination function asynchronously with a record of the
    /// request and its result, shaped like Lambda's destination records.
    async fn send_to_destination(
        &self,
        function: &DeployedFunction,
        record: &AsyncRecord,
        destination: Option<&Destination>,
        response: Option<(u16, Option<Bytes>)>,
        condition: &str,
    ) {
        let Some(destination) = destination else { return };
        let (status, body) = response.unwrap_or((0, None));
        let payload = serde_json::json!({
            "version": "1.0",
            "timestamp": nimbus_store::format_rfc3339(now_ms()),
            "requestContext": {
                "requestId": record.id,
                "functionName": function.name().as_str(),
                "functionVersion": function.record.version.to_string(),
                "condition": condition,
                "approximateInvokeCount": record.tries + 1,
            },
            "requestPayload": String::from_utf8_lossy(&record.request.body),
            "responseContext": { "statusCode": status, "functionError": if condition == "Success" { None } else { Some("Unhandled") } },
            "responsePayload": body.map(|b| String::from_utf8_lossy(&b).into_owned()),
        });
        let result = match destination {
            Destination::Function(target) => {
                let path = self.scheduler.table().get(target).map(|f| f.record.spec.default_path());
                let request = StoredRequest {
                    method: "POST".into(),
                    path: path.unwrap_or_else(|| "/".to_owned()),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: payload.to_string().into_bytes(),
                };
                self.submit(target, request, Some(format!("destination:{}:{condition}", record.id))).await.map(|_| ())
            }
            Destination::Queue(queue) => self.send_to_queue(queue, payload.to_string().into_bytes()).await.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::error!(function = %function.name(), %destination, "cannot send to destination: {e}");
        }
    }
}

fn build_invocation(function: &DeployedFunction, record: &AsyncRecord) -> Result<Invocation, String> {
    let method = http::Method::from_bytes(record.request.method.as_bytes())
        .map_err(|_| "stored method is invalid".to_owned())?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(&record.request.path)
        .body(Bytes::from(record.request.body.clone()))
        .map_err(|e| format!("stored request is invalid: {e}"))?;
    for (k, v) in &record.request.headers {
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v)) {
            request.headers_mut().append(k, v);
        }
    }
    request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
    if let Ok(v) = http::HeaderValue::from_str(&record.id) {
        request.headers_mut().insert("x-nimbus-invocation-id", v);
    }
    let mut invocation = Invocation::new(function.name().clone(), request);
    invocation.note = Some(format!("async invocation {}, attempt {}", record.id, record.tries + 1));
    Ok(invocation)
}

/// A deterministic jitter in [0, 1) from the invocation id and attempt, so
/// retries spread without a random number generator.
fn jitter(id: &str, attempt: u32) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (id, attempt).hash(&mut h);
    (h.finish() % 10_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let p = RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(10) };
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(p.delay(5, 1.0), Duration::from_secs(10));
        assert_eq!(p.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(p.delay(40, 1.0), Duration::from_secs(10));
        let j = jitter("abc", 1);
        assert!((0.0..1.0).contains(&j));
        assert_ne!(jitter("abc", 1), jitter("abc", 2));
    }
}
