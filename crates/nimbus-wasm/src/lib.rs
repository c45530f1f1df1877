//! The WebAssembly runtime of a node: one wasmtime [`Engine`] (pooling
//! allocator, epoch-based deadlines, per-instance memory limits), compilation
//! and validation of wasi:http 0.2 components at deploy time, precompiled
//! artifacts on disk, and the per-request path that instantiates a fresh
//! instance and runs its `wasi:http/incoming-handler`.
//!
//! It links all of WASI 0.2 (any 0.2.x patch version, thanks to wasmtime's
//! semver-aware linker) with no ambient authority: no preopened directories,
//! no sockets, no outbound HTTP, an environment of exactly what the manifest
//! sets. It knows nothing of routes, storage or the control plane.

mod capture;
mod compile;
mod guest;
mod invoke;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use capture::OutputCapture;
pub use compile::{CompileError, CompiledComponent};
pub use guest::GuestState;
pub use invoke::{InvokeLimits, InvokeReport, WasmFailure};

/// How the engine is sized; one per node.
#[derive(Clone, Debug)]
pub struct WasmConfig {
    /// Instances alive at once on this node (the pool's size). Requests past
    /// it are throttled.
    pub max_instances: u32,
    /// Bytes of guest stdout+stderr kept per invocation.
    pub max_output_bytes: usize,
    /// Largest response body a guest may produce.
    pub max_response_bytes: usize,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self { max_instances: 1000, max_output_bytes: 64 * 1024, max_response_bytes: 6 * 1024 * 1024 }
    }
}

/// Interval of the epoch clock that enforces deadlines and lets busy guests
/// yield to others.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// The node's WebAssembly engine, linker and epoch clock.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<GuestState>,
    config: WasmConfig,
    ticker_stop: Arc<AtomicBool>,
}

impl WasmRuntime {
    pub fn new(config: WasmConfig) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances.saturating_mul(8))
            .total_memories(config.max_instances.saturating_mul(2))
            .total_tables(config.max_instances.saturating_mul(8))
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .max_core_instances_per_component(64)
            .max_memory_size(nimbus_core::Limits::MEMORY_MB_RANGE.end().to_owned() as usize * 1024 * 1024)
            .table_elements(100_000)
            // Resetting an instance's memory for the next request is the
            // largest cost of a fresh instance per request. With PAGEMAP_SCAN
            // (Linux 6.7+) wasmtime finds the pages a guest dirtied and resets
            // only those, with memset, up to this many bytes: no madvise, no
            // TLB shootdowns, no page faults on reuse. Elsewhere it falls back
            // to madvise, batched to amortise the shootdowns.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(16 * 1024 * 1024)
            .table_keep_resident(1024 * 1024)
            .decommit_batch_size(32);

        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true);
        let engine = Engine::new(&cfg)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            thread::Builder::new().name("nimbus-epoch".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        }
        Ok(Self { engine, linker, config, ticker_stop })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// A short stable string that changes whenever precompiled artifacts of
    /// this engine cannot be loaded by another (wasmtime version, settings).
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
