//! The `nimbus` command line: argument definitions for every command, and
//! the client commands (deploy, invoke, ls, logs, rm) that talk to a node's
//! control API. `nimbus server` itself is run by `nimbus-node`; this crate
//! only describes its flags.

mod args;
mod client;
mod commands;

pub use args::{Cli, ClientCommand, Command, DlqCommand, InvocationCommand, QueueCommand, ServerArgs};
pub use client::ApiClient;
pub use commands::run_client;
