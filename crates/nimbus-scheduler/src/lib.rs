//! Everything a trigger may do to a function goes through here: the live
//! table of deployed functions and their routes (swapped atomically on
//! deploy, so requests in flight finish on the code they started with),
//! admission against each function's `max_concurrency`, and the invoke path
//! that runs the guest and records metrics and the invocation log.
//!
//! It knows no listener and no file format: triggers hand it requests.

mod table;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use nimbus_core::{Body, ErrorCode, FunctionName, Invocation, Outcome, PlatformError, REQUEST_ID_HEADER};
use nimbus_process::{ProcessFunction, ProcessRuntime};
use nimbus_store::{FunctionRecord, InvocationLog, InvocationRecord, now_ms};
use nimbus_telemetry::{FunctionMetrics, Metrics};
use nimbus_wasm::{CompiledComponent, InvokeLimits, WasmRuntime};
use tokio::sync::Semaphore;

pub use table::{FunctionTable, RouteConflict, RouteMatch};

/// What runs when a function is invoked.
pub enum FunctionCode {
    /// A compiled component, instantiated fresh for every invocation.
    Wasm(CompiledComponent),
    /// A pool of native processes speaking the Lambda Runtime API.
    Process(Arc<ProcessFunction>),
}

/// A function ready to serve: its record, code and admission state.
pub struct DeployedFunction {
    pub record: FunctionRecord,
    code: FunctionCode,
    env: Vec<(String, String)>,
    admission: Arc<Semaphore>,
    metrics: Arc<FunctionMetrics>,
}

impl DeployedFunction {
    pub fn name(&self) -> &FunctionName {
        &self.record.spec.name
    }

    pub fn in_flight(&self) -> i64 {
        self.metrics.in_flight()
    }

    /// The instance pool of a native function.
    pub fn process(&self) -> Option<&Arc<ProcessFunction>> {
        match &self.code {
            FunctionCode::Process(pool) => Some(pool),
            FunctionCode::Wasm(_) => None,
        }
    }

    /// Stops the instances a replaced or removed function keeps.
    fn retire(&self) {
        if let Some(pool) = self.process() {
            pool.close();
        }
    }
}

pub struct Scheduler {
    table: ArcSwap<FunctionTable>,
    wasm: Arc<WasmRuntime>,
    process: Arc<ProcessRuntime>,
    metrics: Arc<Metrics>,
    log: Arc<InvocationLog>,
}

impl Scheduler {
    pub fn new(
        wasm: Arc<WasmRuntime>,
        process: Arc<ProcessRuntime>,
        metrics: Arc<Metrics>,
        log: Arc<InvocationLog>,
    ) -> Self {
        Self { table: ArcSwap::from_pointee(FunctionTable::default()), wasm, process, metrics, log }
    }

    pub fn process(&self) -> &Arc<ProcessRuntime> {
        &self.process
    }

    pub fn wasm(&self) -> &Arc<WasmRuntime> {
        &self.wasm
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn log(&self) -> &Arc<InvocationLog> {
        &self.log
    }

    /// A snapshot of the live table.
    pub fn table(&self) -> Arc<FunctionTable> {
        self.table.load_full()
    }

    /// Would installing `record` clash with another function's routes?
    pub fn check_routes(&self, record: &FunctionRecord) -> Result<(), RouteConflict> {
        self.table.load().check_routes(&record.spec)
    }

    /// Makes `record` live, replacing any function of the same name. New
    /// requests see the new code at once; requests in flight keep the old.
    pub fn install(&self, record: FunctionRecord, code: FunctionCode) -> Result<(), RouteConflict> {
        let metrics = self.metrics.function(record.spec.name.as_str());
        let env = record.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // A redeploy with the same max_concurrency keeps the admission slots,
        // so requests still running on the old version count against the new.
        let max = record.spec.limits.max_concurrency;
        let admission = match self.table.load().get(&record.spec.name) {
            Some(old) if old.record.spec.limits.max_concurrency == max => old.admission.clone(),
            _ => Arc::new(Semaphore::new(max as usize)),
        };
        let name = record.spec.name.clone();
        let function = Arc::new(DeployedFunction { record, code, env, admission, metrics });
        let previous = self.table.load().get(&name).cloned();
        let mut result = Ok(());
        self.table.rcu(|table| match table.with(function.clone()) {
            Ok(next) => {
                result = Ok(());
                Arc::new(next)
            }
            Err(conflict) => {
                result = Err(conflict);
                table.clone()
            }
        });
        match (&result, previous) {
            (Ok(()), Some(previous)) => previous.retire(),
            (Ok(()), None) => {}
            (Err(_), _) => function.retire(),
        }
        result
    }

    /// Takes a function out of service; `false` if it was not deployed.
    pub fn remove(&self, name: &FunctionName) -> bool {
        let previous = self.table.load().get(name).cloned();
        let mut removed = false;
        self.table.rcu(|table| {
            let (next, was_there) = table.without(name);
            removed = was_there;
            Arc::new(next)
        });
        if let Some(previous) = previous.filter(|_| removed) {
            previous.retire();
        }
        removed
    }

    /// Runs one invocation of `function` if it has a free slot under its
    /// `max_concurrency`; otherwise answers `throttled` at once.
    pub async fn invoke(self: &Arc<Self>, function: Arc<DeployedFunction>, invocation: Invocation) -> Outcome {
        match function.admission.clone().try_acquire_owned() {
            Ok(permit) => self.run_admitted(function, invocation, permit).await,
            Err(_) => {
                function.metrics.rejected(ErrorCode::Throttled);
                let max = function.record.spec.limits.max_concurrency;
                let error = PlatformError::new(
                    ErrorCode::Throttled,
                    format!(
                        "function {} is already running {max} invocations (its max_concurrency); retry shortly",
                        function.name()
                    ),
                );
                let request_id = invocation.request_id;
                let outcome = Outcome {
                    request_id,
                    result: Err(error),
                    duration: Duration::ZERO,
                    output: Default::default(),
                    init: None,
                };
                self.record(&function, invocation.note.as_deref(), &outcome);
                outcome
            }
        }
    }

    /// Runs one invocation once `function` has a free slot, waiting for one:
    /// for queued work, which must never exceed `max_concurrency` nor fail
    /// for want of a slot. The deadline counts from admission.
    pub async fn invoke_when_admitted(
        self: &Arc<Self>,
        function: Arc<DeployedFunction>,
        mut invocation: Invocation,
    ) -> Outcome {
        let permit = match function.admission.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return self.invoke(function, invocation).await,
        };
        invocation.received_at = Instant::now();
        self.run_admitted(function, invocation, permit).await
    }

    /// Runs an admitted invocation in its own task, so that a caller that
    /// goes away (a client disconnecting) neither cancels it half-way nor
    /// loses its metrics and log record: it runs to its end or deadline.
    async fn run_admitted(
        self: &Arc<Self>,
        function: Arc<DeployedFunction>,
        invocation: Invocation,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Outcome {
        let request_id = invocation.request_id.clone();
        let scheduler = self.clone();
        let task = tokio::spawn(async move { scheduler.run(function, invocation, permit).await });
        task.await.unwrap_or_else(|e| Outcome {
            request_id,
            result: Err(PlatformError::new(ErrorCode::Internal, format!("the invocation's task failed: {e}"))),
            duration: Duration::ZERO,
            output: Default::default(),
            init: None,
        })
    }

    async fn run(
        &self,
        function: Arc<DeployedFunction>,
        mut invocation: Invocation,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Outcome {
        let request_id = invocation.request_id.clone();
        if let Ok(value) = http::HeaderValue::from_str(request_id.as_str()) {
            invocation.request.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        let note = invocation.note.take();
        let limits = function.record.spec.limits;
        let started = Instant::now();
        function.metrics.started();
        let (result, output, init) = match &function.code {
            FunctionCode::Wasm(component) => {
                let deadline = invocation.received_at + Duration::from_millis(limits.timeout_ms);
                let report = self
                    .wasm
                    .invoke(
                        component,
                        &function.env,
                        invocation.request,
                        InvokeLimits { memory_bytes: limits.memory_bytes(), deadline },
                    )
                    .await;
                if let Some(instantiate) = report.instantiate {
                    self.metrics.observe_instantiate(instantiate);
                }
                let result = report.result.map(|r| r.map(Body::Full)).map_err(PlatformError::from);
                (result, report.output, None)
            }
            FunctionCode::Process(pool) => {
                // The pool keeps the slot while the instance is busy, even
                // past this call (streams, callers that went away).
                let report = pool.invoke(invocation, Duration::from_millis(limits.timeout_ms), Box::new(permit)).await;
                if let Some(init) = report.init {
                    self.metrics.observe_cold_start(init);
                }
                (report.result, report.output, report.init)
            }
        };
        let duration = started.elapsed();
        function.metrics.finished(result.as_ref().err().map(|e| e.code), duration);
        let outcome = Outcome { request_id, result, duration, output, init };
        self.record(&function, note.as_deref(), &outcome);
        outcome
    }

    /// Appends the invocation's record (status, outcome, timings, output)
    /// to the invocation log.
    fn record(&self, function: &DeployedFunction, note: Option<&str>, outcome: &Outcome) {
        let Outcome { request_id, result, duration, output, init } = outcome;
        let (duration, init) = (*duration, *init);
        let (status, outcome) = match result {
            Ok(response) => (response.status().as_u16(), nimbus_telemetry::OUTCOME_OK.to_owned()),
            Err(e) => (e.code.status().as_u16(), e.code.as_str().to_owned()),
        };
        let mut text = note.map(|n| format!("[nimbus: {n}]\n")).unwrap_or_default();
        if let Some(init) = init {
            text.push_str(&format!("[nimbus: cold start, init {:.1} ms]\n", init.as_secs_f64() * 1000.0));
        }
        text.push_str(&output.display());
        if let Err(e) = result {
            text.push_str(&format!("[nimbus: {}: {}]\n", e.code, e.message));
        }
        self.log.append(InvocationRecord {
            seq: 0,
            function: function.name().to_string(),
            request_id: request_id.to_string(),
            started_at_ms: now_ms() - duration.as_millis() as i64,
            status,
            outcome,
            duration_us: duration.as_micros() as u64,
            output: text,
            output_truncated_bytes: output.truncated_bytes,
            init_us: init.map(|d| d.as_micros() as u64),
        });
    }
}
