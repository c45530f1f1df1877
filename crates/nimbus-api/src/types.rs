//! The JSON bodies of the control API, shared by the server and its client.

use nimbus_core::Limits;
use serde::{Deserialize, Serialize};

/// A deployed function as `GET /v1/functions` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub name: String,
    pub runtime: String,
    pub routes: Vec<String>,
    pub version: u64,
    pub deployed_at: String,
    pub deployed_at_ms: i64,
    pub component_sha256: String,
    pub limits: Limits,
    pub in_flight: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<FunctionInfo>,
}

/// The answer to a successful deploy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployResult {
    pub function: FunctionInfo,
    /// Time spent validating and compiling the component.
    pub compile_ms: f64,
    /// `false` if this exact component was already compiled and was reused.
    pub compiled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: i64,
    pub time: String,
    pub request_id: String,
    pub status: u16,
    pub outcome: String,
    pub duration_ms: f64,
    pub output: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    /// Pass as `after` to get only newer entries.
    pub last_seq: i64,
}

/// The body of every API error: `{"error":{"code","message","request_id"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Headers of `POST /v1/functions/{name}/invoke` answers.
pub const DURATION_HEADER: &str = "x-nimbus-duration-ms";
