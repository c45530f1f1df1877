//! The `nimbus` binary: parses the command line and hands over to a crate.

use clap::Parser;
use nimbus_cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nimbus: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => {
                nimbus_telemetry::init_logging();
                let config = nimbus_node::NodeConfig {
                    data_dir: args.data_dir,
                    listen: args.listen,
                    api_listen: args.api_listen,
                    token: args.token,
                    max_body_bytes: args.max_body_bytes,
                    max_instances: args.max_instances,
                    async_retry_base: std::time::Duration::from_millis(args.async_retry_base_ms),
                    process_user: args.process_user,
                    process_max_pids: args.process_max_pids,
                    process_init_timeout: std::time::Duration::from_millis(args.process_init_timeout_ms),
                    ..nimbus_node::NodeConfig::default()
                };
                let shutdown = tokio_util::sync::CancellationToken::new();
                nimbus_node::cancel_on_signal(shutdown.clone());
                nimbus_node::run(config, shutdown).await
            }
            Command::Client(command) => nimbus_cli::run_client(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, on one line.
            eprintln!("nimbus: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
