//! The composition root of a node: checks its configuration, opens the data
//! directory, builds the engine, scheduler, gateway and control API, restores
//! deployed functions, serves until told to stop, and shuts down gracefully
//! (requests in flight finish, the invocation log is flushed).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nimbus_api::{ApiConfig, FunctionService};
use nimbus_events::{AsyncInvoker, QueueConsumers, RetryPolicy, ScheduleRunner};
use nimbus_gateway::{Gateway, GatewayConfig};
use nimbus_process::{ProcessConfig, ProcessRuntime};
use nimbus_scheduler::Scheduler;
use nimbus_store::Store;
use nimbus_telemetry::Metrics;
use nimbus_wasm::{WasmConfig, WasmRuntime};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Everything `nimbus server` can be told.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Public gateway address, e.g. `127.0.0.1:8080`; port 0 picks one.
    pub listen: String,
    /// Control API address, e.g. `127.0.0.1:8090`.
    pub api_listen: String,
    pub token: Option<String>,
    pub max_body_bytes: usize,
    pub max_instances: u32,
    /// Invocation records kept per function.
    pub log_retention: u32,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
    /// Delay before the first retry of a failed asynchronous invocation.
    pub async_retry_base: Duration,
    /// Run process functions as this uid:gid instead of the node's user.
    pub process_user: Option<(u32, u32)>,
    /// Most processes and threads one process-function instance may have.
    pub process_max_pids: u32,
    /// How long a process function's runtime may take to ask for its first event.
    pub process_init_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".nimbus"),
            listen: "127.0.0.1:8080".into(),
            api_listen: "127.0.0.1:8090".into(),
            token: None,
            max_body_bytes: 6 * 1024 * 1024,
            max_instances: 1000,
            log_retention: 1000,
            drain: Duration::from_secs(10),
            async_retry_base: RetryPolicy::default().base,
            process_user: None,
            process_max_pids: 1024,
            process_init_timeout: Duration::from_secs(10),
        }
    }
}

fn resolve(addr: &str, flag: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("{flag} {addr}: not an address; write HOST:PORT, e.g. 127.0.0.1:8080"))?
        .next()
        .with_context(|| format!("{flag} {addr}: resolves to no address"))
}

/// Refuses configurations that would expose the control plane unprotected.
pub fn check_config(config: &NodeConfig) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let gateway = resolve(&config.listen, "--listen")?;
    let api = resolve(&config.api_listen, "--api-listen")?;
    if !api.ip().is_loopback() && config.token.as_deref().is_none_or(str::is_empty) {
        bail!(
            "refusing to serve the control API on {api} without a token: anyone who can reach it could deploy code. \
             Set --token (or NIMBUS_TOKEN), or listen on a loopback address such as 127.0.0.1:8090"
        );
    }
    Ok((gateway, api))
}

/// Runs a node until `shutdown` is cancelled. Prints the bound addresses and
/// a `ready` line on stdout.
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    let (gateway_addr, api_addr) = check_config(&config)?;
    let gateway_listener =
        TcpListener::bind(gateway_addr).await.with_context(|| format!("cannot listen on {gateway_addr} (--listen)"))?;
    let api_listener =
        TcpListener::bind(api_addr).await.with_context(|| format!("cannot listen on {api_addr} (--api-listen)"))?;

    let store = Arc::new(
        Store::open(&config.data_dir)
            .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?,
    );
    let wasm = Arc::new(
        WasmRuntime::new(WasmConfig { max_instances: config.max_instances, ..WasmConfig::default() })
            .map_err(|e| anyhow::anyhow!("cannot start the WebAssembly engine: {e:#}"))?,
    );
    let metrics = Arc::new(Metrics::default());
    let log = Arc::new(store.invocation_log(config.log_retention)?);
    let process = ProcessRuntime::new(ProcessConfig {
        user: config.process_user,
        max_pids: config.process_max_pids,
        init_timeout: config.process_init_timeout,
        ..ProcessConfig::new(config.data_dir.join("scratch"))
    });
    println!("nimbus: process sandbox: {}", process.sandbox.describe());
    let process_runtime = process.clone();
    let scheduler = Arc::new(Scheduler::new(wasm, process, metrics, log.clone()));
    let functions = FunctionService::new(store.clone(), scheduler.clone());
    let restored = functions.restore()?;
    let retry = RetryPolicy { base: config.async_retry_base, ..RetryPolicy::default() };
    let invoker = AsyncInvoker::new(store.async_queue()?, scheduler.clone(), retry);

    let gateway_addr = gateway_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    println!("nimbus: gateway listening on http://{gateway_addr}");
    println!("nimbus: control API listening on http://{api_addr}");
    println!(
        "nimbus: ready ({restored} functions restored from {} in {:.1} ms)",
        config.data_dir.display(),
        started.elapsed().as_secs_f64() * 1000.0
    );

    let gateway = Gateway::new(scheduler.clone(), GatewayConfig { max_body_bytes: config.max_body_bytes });
    let gateway_task = tokio::spawn(gateway.serve(gateway_listener, shutdown.clone(), config.drain));
    let api_config =
        ApiConfig { token: config.token.clone(), max_body_bytes: config.max_body_bytes, ..ApiConfig::default() };
    let router = nimbus_api::router(functions, Some(invoker.clone()), api_config);
    let schedules = tokio::spawn(ScheduleRunner::new(invoker.clone(), scheduler.clone()).run(shutdown.clone()));
    let consumers = tokio::spawn(QueueConsumers::new(invoker.clone(), scheduler.clone()).run(shutdown.clone()));
    let dispatcher = tokio::spawn(invoker.clone().run(shutdown.clone()));
    let api_shutdown = shutdown.clone();
    let api_task = tokio::spawn(async move {
        axum::serve(api_listener, router).with_graceful_shutdown(api_shutdown.cancelled_owned()).await
    });

    shutdown.cancelled().await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = gateway_task.await;
    let _ = dispatcher.await;
    // Attempts already running finish (and record their outcome); any still
    // running after the drain period run again after a restart.
    let unfinished = invoker.wait_idle(config.drain).await;
    if unfinished > 0 {
        tracing::warn!(
            "{unfinished} asynchronous attempts still running at shutdown; they will run again after a restart"
        );
    }
    let _ = schedules.await;
    let _ = consumers.await;
    match tokio::time::timeout(config.drain, api_task).await {
        Ok(Ok(Err(e))) => tracing::warn!("control API: {e}"),
        Err(_) => tracing::warn!("control API requests still open after {:?}", config.drain),
        _ => {}
    }
    let _ = tokio::task::spawn_blocking(move || log.flush()).await;
    // Process-function instances: stop them all and remove their cgroups.
    for function in scheduler.table().functions() {
        if let Some(pool) = function.process() {
            pool.close();
        }
    }
    process_runtime.shutdown();
    println!("nimbus: stopped");
    Ok(())
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_api_needs_a_token() {
        let open = NodeConfig { api_listen: "0.0.0.0:8090".into(), ..NodeConfig::default() };
        let err = check_config(&open).unwrap_err().to_string();
        assert!(err.contains("without a token"), "{err}");
        let with_token = NodeConfig { token: Some("s3cret".into()), ..open };
        assert!(check_config(&with_token).is_ok());
        assert!(check_config(&NodeConfig::default()).is_ok());
        let bad = NodeConfig { listen: "nonsense".into(), ..NodeConfig::default() };
        assert!(check_config(&bad).unwrap_err().to_string().contains("--listen nonsense"));
    }
}
