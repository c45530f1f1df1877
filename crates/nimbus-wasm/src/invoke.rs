//! The request path: a fresh instance per request, run under a deadline and a
//! memory cap, with the response buffered so that every failure, even one in
//! the middle of the body, reaches the caller as a typed error.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use nimbus_core::{CapturedOutput, ErrorCode, PlatformError};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::guest::{DenyOutbound, MemoryLimiter};
use crate::{CompiledComponent, GuestState, OutputCapture, WasmRuntime};

/// The limits one invocation runs under.
#[derive(Clone, Copy, Debug)]
pub struct InvokeLimits {
    pub memory_bytes: usize,
    pub deadline: Instant,
}

/// What one invocation of a guest produced.
#[derive(Debug)]
pub struct InvokeReport {
    pub result: Result<http::Response<Bytes>, WasmFailure>,
    pub output: CapturedOutput,
    /// Time to create the fresh instance, if one was created.
    pub instantiate: Option<Duration>,
}

/// Why a guest produced no response, before it becomes a [`PlatformError`].
#[derive(Debug)]
pub enum WasmFailure {
    Timeout,
    OutOfMemory(String),
    Crashed(String),
    /// Every instance slot of the node is in use.
    NodeAtCapacity,
}

impl From<WasmFailure> for PlatformError {
    fn from(f: WasmFailure) -> Self {
        match f {
            WasmFailure::Timeout => {
                PlatformError::new(ErrorCode::FunctionTimeout, "the function did not respond within its timeout_ms")
            }
            WasmFailure::OutOfMemory(m) => PlatformError::new(ErrorCode::FunctionOutOfMemory, m),
            WasmFailure::Crashed(m) => PlatformError::new(ErrorCode::FunctionCrashed, m),
            WasmFailure::NodeAtCapacity => PlatformError::new(
                ErrorCode::Throttled,
                "the node is running as many instances as it allows; retry shortly",
            ),
        }
    }
}

impl WasmRuntime {
    /// Runs one request on a fresh instance of `component`.
    pub async fn invoke(
        &self,
        component: &CompiledComponent,
        env: &[(String, String)],
        request: http::Request<Bytes>,
        limits: InvokeLimits,
    ) -> InvokeReport {
        let capture = OutputCapture::new(self.config.max_output_bytes);
        let wasi = WasiCtx::builder().envs(env).stdout(capture.clone()).stderr(capture.clone()).build();
        let state = GuestState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            hooks: DenyOutbound,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = limits.deadline;
        // Every tick a running guest yields, so a busy guest cannot starve
        // the node's other requests, and past its deadline it is stopped.
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline { Err(Trap::Interrupt.into()) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        store.set_epoch_deadline(1);

        let mut instantiate = None;
        let run = self.run(component, &mut store, request, &mut instantiate);
        let result = tokio::time::timeout_at(deadline.into(), run).await;
        let mut output = capture.take();
        let result = match result {
            Err(_elapsed) => Err(WasmFailure::Timeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(RunError::Guest(e))) => Err(self.classify(&e, store.data(), &mut output)),
            Ok(Err(RunError::Failure(f))) => Err(match f {
                WasmFailure::Crashed(m) if store.data().limiter.denied => {
                    WasmFailure::OutOfMemory(oom_message(&store, m))
                }
                other => other,
            }),
        };
        InvokeReport { result, output, instantiate }
    }

    async fn run(
        &self,
        component: &CompiledComponent,
        store: &mut Store<GuestState>,
        request: http::Request<Bytes>,
        instantiate: &mut Option<Duration>,
    ) -> Result<http::Response<Bytes>, RunError> {
        let (mut parts, body) = request.into_parts();
        if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
            parts.headers.insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
        }
        let body =
            Full::new(body).map_err(|never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} });
        let request = http::Request::from_parts(parts, body);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let data = store.data_mut();
        let req = data.http().new_incoming_request(Scheme::Http, request).map_err(RunError::Guest)?;
        let out = data.http().new_response_outparam(sender).map_err(RunError::Guest)?;

        let started = Instant::now();
        let proxy = match component.pre.instantiate_async(&mut *store).await {
            Ok(proxy) => {
                *instantiate = Some(started.elapsed());
                proxy
            }
            Err(e) if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
                return Err(RunError::Failure(WasmFailure::NodeAtCapacity));
            }
            Err(e) => return Err(RunError::Guest(e)),
        };
        let max_body = self.config.max_response_bytes;
        let guest = proxy.wasi_http_incoming_handler().call_handle(&mut *store, req, out);
        let response = async move {
            let response = match receiver.await {
                Ok(Ok(response)) => response,
                Ok(Err(code)) => {
                    return Err(WasmFailure::Crashed(format!("the function answered with an error: {code:?}")));
                }
                Err(_) => return Err(WasmFailure::Crashed("the function returned without setting a response".into())),
            };
            let (parts, mut body) = response.into_parts();
            let mut collected = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| WasmFailure::Crashed(format!("the response body failed: {e:?}")))?;
                if let Ok(data) = frame.into_data() {
                    if collected.len() + data.len() > max_body {
                        return Err(WasmFailure::Crashed(format!("the response body is larger than {max_body} bytes")));
                    }
                    collected.extend_from_slice(&data);
                }
            }
            Ok(http::Response::from_parts(parts, collected.freeze()))
        };
        tokio::pin!(guest, response);
        // If the guest traps, the response channels stay open inside the
        // store: stop waiting for the response as soon as the guest ends.
        let mut early_response = None;
        let guest_result = tokio::select! {
            result = &mut guest => result,
            result = &mut response => {
                early_response = Some(result);
                (&mut guest).await
            }
        };
        match (guest_result, early_response) {
            // The host gave up on the response first (e.g. it was too large):
            // that, not the guest's reaction to it, is the cause.
            (Err(e), Some(Err(failure))) if !is_interrupt(&e) => Err(RunError::Failure(failure)),
            (Err(e), _) => Err(RunError::Guest(e)),
            (Ok(()), Some(result)) => result.map_err(RunError::Failure),
            (Ok(()), None) => response.await.map_err(RunError::Failure),
        }
    }

    fn classify(&self, e: &wasmtime::Error, state: &GuestState, output: &mut CapturedOutput) -> WasmFailure {
        if is_interrupt(e) {
            return WasmFailure::Timeout;
        }
        let detail = format!("{e:?}");
        if !detail.is_empty() {
            output.text.push_str(&format!("[nimbus: {}]\n", detail.trim_end()));
        }
        let cause = e.root_cause().to_string();
        if state.limiter.denied || matches!(e.downcast_ref::<Trap>(), Some(Trap::AllocationTooLarge)) {
            return WasmFailure::OutOfMemory(format!(
                "the function needed more than its memory_mb ({} MiB) and stopped: {cause}",
                state.limiter.max_bytes / (1024 * 1024)
            ));
        }
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return WasmFailure::Crashed(format!("the function exited with status {} instead of responding", exit.0));
        }
        WasmFailure::Crashed(format!("the function crashed: {cause}"))
    }
}

fn is_interrupt(e: &wasmtime::Error) -> bool {
    matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt))
}

fn oom_message(store: &Store<GuestState>, crash: String) -> String {
    format!(
        "the function needed more than its memory_mb ({} MiB): {crash}",
        store.data().limiter.max_bytes / (1024 * 1024)
    )
}

enum RunError {
    Guest(wasmtime::Error),
    Failure(WasmFailure),
}
