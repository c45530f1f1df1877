//! nimbus test fixture: a Rust function on the official `lambda_runtime`
//! crate. The action comes from `event.action` for a plain JSON object, or
//! from the last segment of `rawPath` for an API Gateway HTTP API (payload
//! 2.0) event, whose parameters then come from `queryStringParameters`.
//!
//! Actions: `echo` (default, also for unknown actions), `error`, `http`,
//! `sleep` (`ms`, default 1000).
//!
//! lambda_runtime panics at start unless AWS_LAMBDA_RUNTIME_API,
//! AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_MEMORY_SIZE (an i32) and
//! AWS_LAMBDA_FUNCTION_VERSION are set, and on an invocation without the
//! Lambda-Runtime-Deadline-Ms header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

/// Per-process invocation counter: proves a warm process is reused.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Returns (action, parameters) for a plain event or an API Gateway v2 event.
fn dispatch(event: &Value) -> (String, Value) {
    let is_http = event.get("version").and_then(Value::as_str) == Some("2.0") && event.get("rawPath").is_some();
    if is_http {
        let path = event["rawPath"].as_str().unwrap_or("");
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let params = event.get("queryStringParameters").cloned().unwrap_or(Value::Null);
        let action = if last.is_empty() { "echo" } else { last };
        return (action.to_owned(), params);
    }
    let action = event.get("action").and_then(Value::as_str).unwrap_or("echo");
    (action.to_owned(), event.clone())
}

/// A number parameter: a JSON number, or a string (query string parameters).
fn num(params: &Value, name: &str, default: u64) -> u64 {
    match params.get(name) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(default),
        Some(Value::String(s)) => s.parse().unwrap_or(default),
        _ => default,
    }
}

async fn handler(req: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let counter = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
    let (event, ctx) = req.into_parts();
    let (action, params) = dispatch(&event);
    match action.as_str() {
        // An explicit Diagnostic gives a stable errorType; lambda_runtime
        // POSTs it to /invocation/{id}/error.
        "error" => Err(Diagnostic { error_type: "Rust.Boom".into(), error_message: "boom from rust".into() }),
        "http" => Ok(json!({
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": "{\"from\":\"rust\"}",
        })),
        "sleep" => {
            let ms = num(&params, "ms", 1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({"slept_ms": ms}))
        }
        _ => Ok(json!({
            "event": event,
            "request_id": ctx.request_id,
            "function_name": ctx.env_config.function_name,
            "memory_mb": ctx.env_config.memory,
            "deadline": ctx.deadline,
            "invoked_function_arn": ctx.invoked_function_arn,
            "counter": counter,
            "pid": std::process::id(),
        })),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(handler)).await
}
