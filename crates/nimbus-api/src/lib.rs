//! The control plane of a node: a REST + JSON API under `/v1` (deploy, list,
//! remove, invoke, logs), `/metrics` in the Prometheus text format,
//! `/healthz`, and `/v1/openapi.json`. With a token configured, every `/v1`
//! call needs `Authorization: Bearer <token>`.
//!
//! Deploys are serialised and do the slow work (unpack, validate, compile,
//! persist) before anything changes, so a bad deploy changes nothing.

mod archive;
mod functions;
mod openapi;
mod routes;
pub mod types;

pub use archive::{ArchiveError, pack_function};
pub use functions::{DeployError, FunctionService};
pub use routes::{ApiConfig, router};
