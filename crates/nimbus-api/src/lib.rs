//! The control plane of a node: a REST + JSON API under `/v1` (deploy, list,
//! remove, invoke, logs), `/metrics` in the Prometheus text format,
//! `/healthz`, and `/v1/openapi.json`. With a token configured, every `/v1`
//! call needs `Authorization: Bearer <token>`.
//!
//! Deploys are serialised and do the slow work (unpack, validate, compile,
//! persist) before anything changes, so a bad deploy changes nothing.

mod archive;
mod async_routes;
mod functions;
mod lambda_api;
mod openapi;
mod routes;
pub mod types;

pub use archive::{UploadError, pack_function};
pub use functions::{DeployError, FunctionService};
pub use routes::{ApiConfig, router};

/// Prometheus series of the asynchronous queues.
fn async_metrics(stats: &[nimbus_store::QueueStats], retries: &[(String, u64)]) -> String {
    use std::fmt::Write;
    let now = nimbus_store::now_ms();
    let mut out = String::new();
    out.push_str(
        "# HELP nimbus_async_queue_depth Asynchronous invocations waiting to run (queued or awaiting a retry).\n",
    );
    out.push_str("# TYPE nimbus_async_queue_depth gauge\n");
    for s in stats {
        let _ = writeln!(out, "nimbus_async_queue_depth{{function=\"{}\"}} {}", s.function, s.pending);
    }
    out.push_str(
        "# HELP nimbus_async_running Asynchronous invocations running now.\n# TYPE nimbus_async_running gauge\n",
    );
    for s in stats {
        let _ = writeln!(out, "nimbus_async_running{{function=\"{}\"}} {}", s.function, s.running);
    }
    out.push_str("# HELP nimbus_async_oldest_age_seconds Age of the oldest waiting asynchronous invocation.\n");
    out.push_str("# TYPE nimbus_async_oldest_age_seconds gauge\n");
    for s in stats {
        let age = s.oldest_pending_ms.map(|t| (now - t).max(0) as f64 / 1000.0).unwrap_or(0.0);
        let _ = writeln!(out, "nimbus_async_oldest_age_seconds{{function=\"{}\"}} {age}", s.function);
    }
    out.push_str(
        "# HELP nimbus_async_dlq_size Invocations in the dead-letter queue.\n# TYPE nimbus_async_dlq_size gauge\n",
    );
    for s in stats {
        let _ = writeln!(out, "nimbus_async_dlq_size{{function=\"{}\"}} {}", s.function, s.dead);
    }
    out.push_str("# HELP nimbus_async_retries_total Retries scheduled since the node started.\n# TYPE nimbus_async_retries_total counter\n");
    for (function, n) in retries {
        let _ = writeln!(out, "nimbus_async_retries_total{{function=\"{function}\"}} {n}");
    }
    out
}

/// Prometheus series of the built-in queues.
fn queue_metrics(depths: &[nimbus_store::QueueDepth]) -> String {
    use std::fmt::Write;
    let now = nimbus_store::now_ms();
    let mut out = String::new();
    for (name, help, value) in [
        (
            "nimbus_queue_depth",
            "Messages waiting to be received.",
            &(|d: &nimbus_store::QueueDepth| d.ready as f64) as &dyn Fn(&nimbus_store::QueueDepth) -> f64,
        ),
        ("nimbus_queue_in_flight", "Messages received and within their visibility timeout.", &|d| d.in_flight as f64),
        ("nimbus_queue_dlq_size", "Messages in the queue's dead-letter queue.", &|d| d.dead as f64),
        ("nimbus_queue_oldest_age_seconds", "Age of the oldest waiting message.", &|d| {
            d.oldest_ready_ms.map(|t| (now - t).max(0) as f64 / 1000.0).unwrap_or(0.0)
        }),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for d in depths {
            let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", d.queue, value(d));
        }
    }
    out
}
