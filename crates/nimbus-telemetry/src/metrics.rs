use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_core::ErrorCode;

use crate::Histogram;

/// The `outcome` label of an invocation the function answered.
pub const OUTCOME_OK: &str = "ok";

/// Per-function series. Held by the deployed function, so the request path
/// touches only atomics.
#[derive(Default)]
pub struct FunctionMetrics {
    ok: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    in_flight: AtomicI64,
    duration: Histogram,
}

impl FunctionMetrics {
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished invocation; `error` is `None` when the function answered.
    pub fn finished(&self, error: Option<ErrorCode>, duration: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.duration.observe(duration);
        self.record_outcome(error);
    }

    /// Records an invocation refused before it ran (throttled, too large).
    pub fn rejected(&self, error: ErrorCode) {
        self.record_outcome(Some(error));
    }

    fn record_outcome(&self, error: Option<ErrorCode>) {
        match error {
            None => self.ok.fetch_add(1, Ordering::Relaxed),
            Some(code) => {
                let i = ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(ErrorCode::ALL.len() - 1);
                self.errors[i].fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Every metric of one node.
#[derive(Default)]
pub struct Metrics {
    functions: Mutex<BTreeMap<String, Arc<FunctionMetrics>>>,
    compile: Histogram,
    artifact_load: Histogram,
    instantiate: Histogram,
    cold_start: Histogram,
    gateway_unrouted: AtomicU64,
}

impl Metrics {
    /// The series of one function, created on first use and kept across
    /// redeploys so counters never go backwards.
    pub fn function(&self, name: &str) -> Arc<FunctionMetrics> {
        let mut map = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    pub fn observe_compile(&self, d: Duration) {
        self.compile.observe(d);
    }

    pub fn observe_artifact_load(&self, d: Duration) {
        self.artifact_load.observe(d);
    }

    pub fn observe_instantiate(&self, d: Duration) {
        self.instantiate.observe(d);
    }

    /// A native function started a new instance for an invocation.
    pub fn observe_cold_start(&self, d: Duration) {
        self.cold_start.observe(d);
    }

    pub fn unrouted(&self) {
        self.gateway_unrouted.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, deployed_functions: usize) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let functions: Vec<(String, Arc<FunctionMetrics>)> = {
            let map = self.functions.lock().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };

        out.push_str(
            "# HELP nimbus_invocations_total Invocations by function and outcome (ok, or the platform error code).\n",
        );
        out.push_str("# TYPE nimbus_invocations_total counter\n");
        for (name, m) in &functions {
            let _ = writeln!(
                out,
                "nimbus_invocations_total{{function=\"{name}\",outcome=\"{OUTCOME_OK}\"}} {}",
                m.ok.load(Ordering::Relaxed)
            );
            for (code, n) in ErrorCode::ALL.iter().zip(&m.errors) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "nimbus_invocations_total{{function=\"{name}\",outcome=\"{code}\"}} {n}");
                }
            }
        }

        out.push_str("# HELP nimbus_invocation_duration_seconds Time from admission to response, by function.\n");
        out.push_str("# TYPE nimbus_invocation_duration_seconds histogram\n");
        for (name, m) in &functions {
            m.duration.render(&mut out, "nimbus_invocation_duration_seconds", &format!("function=\"{name}\""));
        }

        out.push_str("# HELP nimbus_invocations_in_flight Invocations running now, by function.\n");
        out.push_str("# TYPE nimbus_invocations_in_flight gauge\n");
        for (name, m) in &functions {
            let _ = writeln!(out, "nimbus_invocations_in_flight{{function=\"{name}\"}} {}", m.in_flight());
        }

        for (name, help, h) in [
            ("nimbus_instantiation_duration_seconds", "Time to instantiate a fresh Wasm instance.", &self.instantiate),
            (
                "nimbus_cold_start_duration_seconds",
                "Time to start a native function's instance until its runtime asked for an event.",
                &self.cold_start,
            ),
            ("nimbus_compile_duration_seconds", "Time to validate and compile a component at deploy.", &self.compile),
            (
                "nimbus_artifact_load_duration_seconds",
                "Time to load a precompiled component at start-up.",
                &self.artifact_load,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.render(&mut out, name, "");
        }

        out.push_str("# HELP nimbus_functions_deployed Functions deployed on this node.\n# TYPE nimbus_functions_deployed gauge\n");
        let _ = writeln!(out, "nimbus_functions_deployed {deployed_functions}");
        out.push_str("# HELP nimbus_gateway_unrouted_total Gateway requests that matched no route.\n# TYPE nimbus_gateway_unrouted_total counter\n");
        let _ = writeln!(out, "nimbus_gateway_unrouted_total {}", self.gateway_unrouted.load(Ordering::Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_outcome_and_gauges() {
        let metrics = Metrics::default();
        let f = metrics.function("hello");
        f.started();
        f.finished(None, Duration::from_millis(1));
        f.started();
        f.finished(Some(ErrorCode::FunctionTimeout), Duration::from_millis(5));
        f.rejected(ErrorCode::Throttled);
        let text = metrics.render(1);
        assert!(text.contains("nimbus_invocations_total{function=\"hello\",outcome=\"ok\"} 1\n"), "{text}");
        assert!(text.contains("nimbus_invocations_total{function=\"hello\",outcome=\"function_timeout\"} 1\n"));
        assert!(text.contains("nimbus_invocations_total{function=\"hello\",outcome=\"throttled\"} 1\n"));
        assert!(text.contains("nimbus_invocations_in_flight{function=\"hello\"} 0\n"));
        assert!(text.contains("nimbus_invocation_duration_seconds_count{function=\"hello\"} 2\n"));
        assert!(text.contains("nimbus_functions_deployed 1\n"));
    }
}
