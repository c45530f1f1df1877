use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "nimbus", version, about = "A self-hosted serverless platform: deploy functions, nimbus runs them.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node: the public gateway and the control API.
    Server(ServerArgs),
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where the node keeps its state (SQLite registry, components, logs).
    #[arg(long, default_value = ".nimbus", env = "NIMBUS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the public gateway; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Address of the control API; a non-loopback address requires --token.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub api_listen: String,
    /// Bearer token the control API requires on /v1.
    #[arg(long, env = "NIMBUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest request body, in bytes (gateway and invoke).
    #[arg(long, default_value_t = 6 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// WebAssembly instances alive at once on this node.
    #[arg(long, default_value_t = 1000)]
    pub max_instances: u32,
    /// Delay before the first retry of a failed asynchronous invocation, in
    /// ms; it doubles with each retry (with jitter), up to 5 minutes.
    #[arg(long, default_value_t = 1000)]
    pub async_retry_base_ms: u64,
    /// Run process functions as UID:GID (e.g. 65534:65534) instead of the
    /// node's own user. Their runtimes must be readable by that user.
    #[arg(long, value_parser = parse_uid_gid)]
    pub process_user: Option<(u32, u32)>,
    /// Most processes and threads one process-function instance may start
    /// (a fork bomb stops here).
    #[arg(long, default_value_t = 1024)]
    pub process_max_pids: u32,
    /// How long a process function's runtime may take to start (until it
    /// asks for its first event), in ms; as Lambda, 10 s by default.
    #[arg(long, default_value_t = 10_000)]
    pub process_init_timeout_ms: u64,
}

fn parse_uid_gid(s: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = s.split_once(':').ok_or_else(|| format!("{s:?}: write UID:GID, e.g. 65534:65534"))?;
    let number = |v: &str| v.parse::<u32>().map_err(|_| format!("{s:?}: write numeric UID:GID, e.g. 65534:65534"));
    Ok((number(uid)?, number(gid)?))
}

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The node's control API.
    #[arg(long, global = true, env = "NIMBUS_API", default_value = "http://127.0.0.1:8090")]
    pub api: String,
    /// Bearer token for the control API.
    #[arg(long, global = true, env = "NIMBUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Deploy the function in a directory (or a manifest file).
    Deploy {
        /// A directory holding nimbus.toml, or the path of a manifest.
        path: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Call a function and print its response body.
    Invoke {
        name: String,
        /// Request body; `@FILE` reads it from a file.
        #[arg(long, conflicts_with = "data_file")]
        data: Option<String>,
        /// Request body read from a file ('-' for stdin).
        #[arg(long)]
        data_file: Option<PathBuf>,
        /// HTTP method the function sees (default: POST with a body, GET without).
        #[arg(long)]
        method: Option<String>,
        /// Path and query the function sees (default: its first route).
        #[arg(long)]
        path: Option<String>,
        /// A request header, as NAME:VALUE; repeatable.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Queue the invocation and print its id at once; it runs (and is
        /// retried) in the background. See `nimbus invocation get ID`.
        #[arg(long = "async")]
        run_async: bool,
        /// With --async: a repeated submit with the same key within 24 h
        /// returns the first one's id and runs once.
        #[arg(long, requires = "run_async")]
        idempotency_key: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Asynchronous invocations.
    #[command(subcommand)]
    Invocation(InvocationCommand),
    /// A function's dead-letter queue: asynchronous invocations that failed for good.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Built-in queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// List deployed functions.
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show recent invocations of a function with their output.
    Logs {
        name: String,
        /// How many recent invocations.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Keep printing new invocations as they happen.
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove a function.
    Rm {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand, Debug)]
pub enum InvocationCommand {
    /// Show an asynchronous invocation: status, attempts, result or error.
    Get {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List a function's recent asynchronous invocations, newest first.
    Ls {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List the dead-letter queue, with payloads and last errors.
    Ls {
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Queue dead invocations again (all, or the given ids).
    Redrive {
        name: String,
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete dead invocations (all, or the given ids).
    Purge {
        name: String,
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Send a message; prints its id once it is on disk.
    Send {
        queue: String,
        /// The message body; `@FILE` reads it from a file.
        #[arg(long)]
        data: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// List queues: waiting, in flight, dead, oldest age, consumers.
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a queue's dead-letter queue; --redrive delivers them again.
    Dlq {
        queue: String,
        #[arg(long)]
        redrive: bool,
        #[command(flatten)]
        conn: Connection,
    },
}
