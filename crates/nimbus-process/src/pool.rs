//! The instances of one deployed function: warm ones reused most recent
//! first, cold starts on demand, `min_instances` kept initialised, idle ones
//! beyond that stopped after `idle_timeout_s`. Admission (how many run at
//! once) is the scheduler's job; the pool never holds more instances than
//! were ever busy at once, or `min_instances`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use nimbus_core::{Body, CapturedOutput, ErrorCode, Invocation, PlatformError, Trigger};
use tokio::sync::{mpsc, oneshot};

use crate::instance::{InitType, Instance};
use crate::runtime_api::{Event, Reply, reported};
use crate::{FunctionContext, apigw};

/// Whatever must be kept while an invocation occupies an instance (the
/// scheduler's admission permit).
pub type Hold = Box<dyn Send>;

/// What one invocation of a native function produced.
#[derive(Debug)]
pub struct ProcessReport {
    pub result: Result<http::Response<Body>, PlatformError>,
    pub output: CapturedOutput,
    /// Set when the invocation needed a new instance: how long its start took.
    pub init: Option<Duration>,
}

/// How one attempt to run an invocation on an instance ended.
enum Run {
    Done(ProcessReport),
    /// A warm instance was gone before its runtime took the event.
    LostBeforeStart,
}

pub struct ProcessFunction {
    ctx: FunctionContext,
    min_instances: usize,
    idle_timeout: Duration,
    /// Idle instances, most recently used last.
    idle: Mutex<Vec<Instance>>,
    /// Instances alive: idle, busy, or starting.
    alive: AtomicUsize,
    closed: AtomicBool,
}

impl ProcessFunction {
    /// The pool of a newly installed function; starts `min_instances` in
    /// the background and keeps them.
    pub fn start(ctx: FunctionContext, min_instances: u32, idle_timeout: Duration) -> Arc<Self> {
        let pool = Arc::new(Self {
            ctx,
            min_instances: min_instances as usize,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
            alive: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(maintain(Arc::downgrade(&pool)));
        pool
    }

    /// Stops every idle instance and any that would be returned later: for
    /// a function that was replaced or removed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let drained: Vec<Instance> = std::mem::take(&mut *self.lock_idle());
        self.alive.fetch_sub(drained.len(), Ordering::SeqCst);
    }

    /// Instances alive now (idle, busy or starting).
    pub fn instances(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// Idle instances now.
    pub fn idle_instances(&self) -> usize {
        self.lock_idle().len()
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_idle(&self) -> Option<Instance> {
        let mut idle = self.lock_idle();
        while let Some(instance) = idle.pop() {
            if !instance.has_exited() {
                return Some(instance);
            }
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
        None
    }

    fn give_back(&self, mut instance: Instance) {
        if self.closed.load(Ordering::SeqCst) || instance.has_exited() {
            self.retire(instance);
            return;
        }
        instance.last_used = Instant::now();
        self.lock_idle().push(instance);
    }

    fn retire(&self, instance: Instance) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
        drop(instance);
    }

    async fn start_instance(&self, init_type: InitType) -> Result<Instance, (PlatformError, CapturedOutput)> {
        self.alive.fetch_add(1, Ordering::SeqCst);
        let started = Instance::start(&self.ctx, init_type).await;
        if started.is_err() {
            self.alive.fetch_sub(1, Ordering::SeqCst);
        }
        started
    }

    /// Runs one invocation on a warm instance, or a new one. The deadline
    /// applies from when the event is handed to the runtime.
    ///
    /// `hold` (the caller's admission slot) is kept until the instance is
    /// free again, a streamed response included. Dropping this future kills
    /// the instance: the scheduler runs it in a task of its own.
    pub async fn invoke(self: &Arc<Self>, invocation: Invocation, timeout: Duration, hold: Hold) -> ProcessReport {
        let mut hold = Some(hold);
        let body = self.event_body(&invocation);
        // A warm instance may have died while idle. If it is found dead
        // before its runtime took the event, the event goes to a new
        // instance instead of failing an invocation that never ran.
        let mut warm_allowed = true;
        loop {
            let warm = if warm_allowed { self.take_idle() } else { None };
            let (instance, init) = match warm {
                Some(instance) => (instance, None),
                None => match self.start_instance(InitType::OnDemand).await {
                    Ok(instance) => {
                        let init = instance.init_duration;
                        (instance, Some(init))
                    }
                    Err((error, output)) => return ProcessReport { result: Err(error), output, init: None },
                },
            };
            match self.run(instance, init, &invocation, body.clone(), timeout, &mut hold).await {
                Run::Done(report) => return report,
                Run::LostBeforeStart => warm_allowed = false,
            }
        }
    }

    /// Hands the event to `instance` and waits for its answer, its end, or
    /// the deadline.
    async fn run(
        self: &Arc<Self>,
        mut instance: Instance,
        init: Option<Duration>,
        invocation: &Invocation,
        body: Bytes,
        timeout: Duration,
        hold: &mut Option<Hold>,
    ) -> Run {
        let deadline = Instant::now() + timeout;
        let trigger = invocation.trigger;
        let request_id = invocation.request_id.to_string();
        let (reply_tx, reply_rx) = oneshot::channel();
        let event = Event {
            request_id: request_id.clone(),
            body,
            headers: self.event_headers(invocation, deadline),
            reply: reply_tx,
        };
        if instance.events.send(event).await.is_err() {
            let output = instance.output.take();
            self.retire(instance);
            if init.is_none() {
                return Run::LostBeforeStart;
            }
            let error = PlatformError::new(ErrorCode::FunctionCrashed, "the instance stopped before the invocation");
            return Run::Done(ProcessReport { result: Err(error), output, init });
        }

        let timeout_error = || {
            PlatformError::reported(
                ErrorCode::FunctionTimeout,
                reported(
                    "Sandbox.Timedout",
                    &format!(
                        "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                        timeout.as_secs_f64()
                    ),
                ),
            )
        };
        let outcome = tokio::select! {
            reply = reply_rx => Ok(reply),
            exit = instance.exited() => Err(Some(exit)),
            _ = tokio::time::sleep_until(deadline.into()) => Err(None),
        };
        let result = match outcome {
            Ok(Ok(Reply::Response { body, content_type })) => {
                let result = self.response(trigger, body, content_type);
                let output = instance.output.take();
                self.give_back(instance);
                return Run::Done(ProcessReport { result, output, init });
            }
            Ok(Ok(Reply::Stream { content_type, chunks, done })) => {
                let output = instance.output.take();
                let result = self.stream(trigger, content_type, chunks).await;
                let pool = self.clone();
                let hold = hold.take();
                // The instance stays busy until the runtime has sent the
                // whole stream, or is killed at the deadline.
                tokio::spawn(async move {
                    let _hold = hold;
                    tokio::select! {
                        _ = done => pool.give_back(instance),
                        _ = tokio::time::sleep_until(deadline.into()) => {
                            instance.kill();
                            pool.retire(instance);
                        }
                    }
                });
                return Run::Done(ProcessReport { result, output, init });
            }
            Ok(Ok(Reply::Error(error))) => {
                let output = instance.output.take();
                self.give_back(instance);
                return Run::Done(ProcessReport {
                    result: Err(PlatformError::reported(ErrorCode::FunctionError, error)),
                    output,
                    init,
                });
            }
            Ok(Ok(Reply::TooLarge)) => {
                // Runtime clients treat the 413 as fatal (awslambdaric exits):
                // retire the instance rather than hand it the next event,
                // after a moment to let it report what happened.
                let _ = tokio::time::timeout(Duration::from_millis(100), instance.exited()).await;
                let output = instance.output.take();
                self.retire(instance);
                let message = format!(
                    "Response payload size exceeded maximum allowed payload size ({} bytes).",
                    crate::MAX_RESPONSE_BYTES
                );
                return Run::Done(ProcessReport {
                    result: Err(PlatformError::reported(
                        ErrorCode::FunctionError,
                        reported("Function.ResponseSizeTooLarge", &message),
                    )),
                    output,
                    init,
                });
            }
            Ok(Ok(Reply::Abandoned)) | Ok(Err(_)) => Err(PlatformError::reported(
                ErrorCode::FunctionCrashed,
                reported("Runtime.NoResponse", "the runtime asked for its next event without answering this one"),
            )),
            Err(Some(_)) if init.is_none() && !instance.took_event(&request_id) => {
                self.retire(instance);
                return Run::LostBeforeStart;
            }
            Err(Some(exit)) => {
                if instance.out_of_memory() {
                    Err(PlatformError::reported(
                        ErrorCode::FunctionOutOfMemory,
                        reported(
                            "Runtime.OutOfMemory",
                            &format!(
                                "RequestId: {request_id} Error: the function used more than memory_mb = {} MiB and was stopped",
                                self.ctx.memory_mb
                            ),
                        ),
                    ))
                } else {
                    Err(PlatformError::reported(
                        ErrorCode::FunctionCrashed,
                        reported(
                            "Runtime.ExitError",
                            &format!(
                                "RequestId: {request_id} Error: the runtime {} during the invocation",
                                exit.describe()
                            ),
                        ),
                    ))
                }
            }
            Err(None) => Err(timeout_error()),
        };
        // The instance cannot be trusted with another event: stop its tree.
        instance.kill();
        let _ = tokio::time::timeout(Duration::from_millis(500), instance.exited()).await;
        let output = instance.output.take();
        self.retire(instance);
        Run::Done(ProcessReport { result, output, init })
    }

    fn event_body(&self, invocation: &Invocation) -> Bytes {
        match invocation.trigger {
            Trigger::Event => invocation.request.body().clone(),
            Trigger::Http => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
                let event = apigw::event(&invocation.request, invocation.request_id.as_str(), &self.ctx.name, now);
                Bytes::from(event.to_string())
            }
        }
    }

    fn event_headers(&self, invocation: &Invocation, deadline: Instant) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let deadline_ms = now_ms + deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
        let id = invocation.request_id.as_str();
        set("lambda-runtime-aws-request-id", id);
        set("lambda-runtime-deadline-ms", &deadline_ms.to_string());
        set("lambda-runtime-invoked-function-arn", &self.ctx.runtime.function_arn(&self.ctx.name));
        let hex: String = id.chars().filter(char::is_ascii_hexdigit).chain(std::iter::repeat('0')).take(32).collect();
        set(
            "lambda-runtime-trace-id",
            &format!("Root=1-{:08x}-{};Parent={};Sampled=0", now_ms / 1000, &hex[8..32], &hex[..16]),
        );
        let request_headers = invocation.request.headers();
        if let Some(context) = request_headers.get("x-amz-client-context").and_then(|v| v.to_str().ok()) {
            use base64::Engine;
            // The Invoke API carries the client context base64-encoded; the
            // runtime gets the JSON itself.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(context)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_else(|| context.to_owned());
            set("lambda-runtime-client-context", &decoded);
        }
        if let Some(identity) = request_headers.get("x-amz-cognito-identity").and_then(|v| v.to_str().ok()) {
            set("lambda-runtime-cognito-identity", identity);
        }
        headers
    }

    fn response(
        &self,
        trigger: Trigger,
        body: Bytes,
        content_type: Option<String>,
    ) -> Result<http::Response<Body>, PlatformError> {
        match trigger {
            Trigger::Http => apigw::response(&body)
                .map(|r| r.map(Body::Full))
                .map_err(|e| PlatformError::new(ErrorCode::FunctionError, e)),
            Trigger::Event => {
                let mut response = http::Response::new(Body::Full(body));
                let ct = content_type.and_then(|c| HeaderValue::from_str(&c).ok());
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, ct.unwrap_or(HeaderValue::from_static("application/json")));
                Ok(response)
            }
        }
    }

    /// A streamed answer as a response whose body follows the runtime's
    /// chunks. For HTTP callers an HTTP integration prelude sets the status
    /// and headers.
    async fn stream(
        &self,
        trigger: Trigger,
        content_type: Option<String>,
        mut chunks: mpsc::Receiver<Result<Bytes, String>>,
    ) -> Result<http::Response<Body>, PlatformError> {
        let content_type = content_type.unwrap_or_else(|| "application/octet-stream".to_owned());
        let streamed = |head: http::Response<()>, first: Option<Bytes>, rest: mpsc::Receiver<Result<Bytes, String>>| {
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(forward(first, rest, tx));
            head.map(|_| Body::Streaming(rx))
        };
        if trigger == Trigger::Http && content_type == apigw::HTTP_INTEGRATION_CONTENT_TYPE {
            let mut prelude = Vec::new();
            while let Some(chunk) = chunks.recv().await {
                let chunk = chunk.map_err(|e| PlatformError::new(ErrorCode::FunctionError, e))?;
                prelude.extend_from_slice(&chunk);
                if let Some(split) = apigw::split_prelude(&prelude) {
                    let (head, rest) = split.map_err(|e| PlatformError::new(ErrorCode::FunctionError, e))?;
                    return Ok(streamed(head, Some(rest).filter(|r| !r.is_empty()), chunks));
                }
                if prelude.len() > 64 * 1024 {
                    return Err(PlatformError::new(
                        ErrorCode::FunctionError,
                        "the streamed response's prelude has no end (eight NUL bytes) in its first 64 KiB",
                    ));
                }
            }
            return Err(PlatformError::new(ErrorCode::FunctionError, "the streamed response ended inside its prelude"));
        }
        let mut head = http::Response::new(());
        if let Ok(ct) = HeaderValue::from_str(&content_type) {
            head.headers_mut().insert(http::header::CONTENT_TYPE, ct);
        }
        Ok(streamed(head, None, chunks))
    }
}

async fn forward(
    first: Option<Bytes>,
    mut rest: mpsc::Receiver<Result<Bytes, String>>,
    tx: mpsc::Sender<Result<Bytes, String>>,
) {
    if let Some(first) = first
        && tx.send(Ok(first)).await.is_err()
    {
        return;
    }
    while let Some(chunk) = rest.recv().await {
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

impl Drop for ProcessFunction {
    fn drop(&mut self) {
        self.close();
    }
}

/// Keeps `min_instances` started and stops instances idle for longer than
/// `idle_timeout`, until the pool is gone.
async fn maintain(pool: Weak<ProcessFunction>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let Some(p) = pool.upgrade() else { return };
        if p.closed.load(Ordering::SeqCst) {
            return;
        }
        // Stop the longest-idle instances past their idle timeout.
        let expired: Vec<Instance> = {
            let mut idle = p.lock_idle();
            let mut expired = Vec::new();
            let now = Instant::now();
            let mut i = 0;
            while i < idle.len() {
                let surplus = p.alive.load(Ordering::SeqCst).saturating_sub(expired.len()) > p.min_instances;
                if idle[i].has_exited() || (surplus && now.duration_since(idle[i].last_used) >= p.idle_timeout) {
                    expired.push(idle.remove(i));
                } else {
                    i += 1;
                }
            }
            expired
        };
        for instance in expired {
            tracing::debug!(function = %p.ctx.name, instance = instance.id, "stopping an idle instance");
            p.retire(instance);
        }
        let mut wait = Duration::from_millis(500).min(p.idle_timeout / 2).max(Duration::from_millis(50));
        if p.alive.load(Ordering::SeqCst) < p.min_instances {
            match p.start_instance(InitType::Provisioned).await {
                Ok(instance) => {
                    tracing::info!(
                        function = %p.ctx.name,
                        init_ms = instance.init_duration.as_millis() as u64,
                        "provisioned instance ready"
                    );
                    p.give_back(instance);
                    backoff = Duration::from_millis(250);
                    wait = Duration::ZERO;
                }
                Err((e, output)) => {
                    tracing::warn!(function = %p.ctx.name, "a provisioned instance failed to start: {e}\n{}", output.display());
                    wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        drop(p);
        tokio::time::sleep(wait).await;
    }
}
