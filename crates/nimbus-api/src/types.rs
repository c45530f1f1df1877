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
    /// The next time one of its schedules fires.
    #[serde(default)]
    pub next_run: Option<String>,
    /// For process functions: instances alive and idle now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Instances>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instances {
    pub alive: u64,
    pub idle: u64,
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
    /// Whether the invocation had to start a new instance (process functions).
    #[serde(default)]
    pub cold: bool,
    /// Set for a cold start: how long the new instance took to initialise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_ms: Option<f64>,
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

/// The answer to an asynchronous invoke (202).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AsyncAccepted {
    pub id: String,
    /// `true` when the idempotency key matched an earlier invocation, whose id this is.
    pub duplicate: bool,
}

/// One attempt of an asynchronous invocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    pub request_id: String,
    pub started_at: String,
    pub duration_ms: f64,
    pub status: u16,
    pub outcome: String,
    #[serde(default)]
    pub error: Option<String>,
}

/// An asynchronous invocation, as `GET /v1/invocations/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationView {
    pub id: String,
    pub function: String,
    /// queued | running | failed (retry scheduled) | succeeded | dead
    pub status: String,
    pub created_at: String,
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    pub attempts: Vec<AttemptView>,
    /// The request: method, path and body (lossy UTF-8).
    pub method: String,
    pub path: String,
    pub payload: String,
    #[serde(default)]
    pub result_status: Option<u16>,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvocationList {
    /// Newest first.
    pub invocations: Vec<InvocationView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetters {
    pub entries: Vec<InvocationView>,
}

/// Which dead letters to redrive or purge; all of the function's when empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterSelection {
    #[serde(default)]
    pub ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterCount {
    pub count: usize,
}

/// The header that makes a repeated asynchronous submit return the same id.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The answer to a queue send (202): the message is on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueSent {
    pub id: String,
}

/// A built-in queue as `GET /v1/queues` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub ready: u64,
    pub in_flight: u64,
    pub dead: u64,
    pub oldest_ready_age_s: f64,
    /// Functions that consume it.
    pub consumers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueList {
    pub queues: Vec<QueueInfo>,
}

/// A dead message of a built-in queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadMessage {
    pub id: String,
    pub sent_at: String,
    pub receive_count: u32,
    pub body: String,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadMessages {
    pub messages: Vec<DeadMessage>,
}
