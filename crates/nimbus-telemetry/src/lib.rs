//! Observability for a node: Prometheus metrics kept in lock-free counters on
//! the request path and rendered in the text exposition format on demand, and
//! the node's own log setup.
//!
//! It knows metric names and label sets, not where the numbers come from.

mod histogram;
mod metrics;

pub use histogram::Histogram;
pub use metrics::{FunctionMetrics, Metrics, OUTCOME_OK};

/// Sets up the node's own logs on stderr; `RUST_LOG` overrides the level.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
