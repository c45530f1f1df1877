use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::FunctionName;

/// A function as the platform understands it: the manifest, resolved and
/// validated, with every default filled in. Everything past the manifest
/// parser consumes this and never the raw file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: FunctionName,
    pub runtime: Runtime,
    pub limits: Limits,
    /// Environment variables the guest sees; nothing else is in its environment.
    pub env: BTreeMap<String, String>,
    pub routes: Vec<HttpRoute>,
    /// How asynchronous invocations of this function are retried and where
    /// their results go.
    #[serde(default, rename = "async")]
    pub async_config: AsyncConfig,
    /// Cron schedules that invoke the function asynchronously.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// Built-in queues this function consumes.
    #[serde(default)]
    pub queues: Vec<QueueBinding>,
}

/// One `[[queue]]`: a built-in queue the function consumes, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueBinding {
    /// The queue's name, `[a-z][a-z0-9-]{0,62}`.
    pub name: String,
    /// Messages per invocation.
    pub batch_size: u32,
    /// Batches of this queue being processed at once.
    pub max_concurrency: u32,
    /// How long a received message stays hidden before it is redelivered.
    pub visibility_timeout_s: u64,
    /// Receives after which a message goes to the queue's dead-letter queue.
    pub max_receive: u32,
}

impl QueueBinding {
    pub const BATCH_SIZE_RANGE: std::ops::RangeInclusive<u32> = 1..=100;
    pub const MAX_CONCURRENCY_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
    pub const VISIBILITY_TIMEOUT_S_RANGE: std::ops::RangeInclusive<u64> = 1..=43_200;
    pub const MAX_RECEIVE_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
    pub const DEFAULT: QueueBinding = QueueBinding {
        name: String::new(),
        batch_size: 1,
        max_concurrency: 1,
        visibility_timeout_s: 30,
        max_receive: 5,
    };
}

impl FunctionSpec {
    /// The path a call that names no path is delivered to (API invokes,
    /// schedules, queues, destinations): the first route (a prefix route's
    /// prefix itself), or `/`.
    pub fn default_path(&self) -> String {
        match self.routes.first().map(|r| &r.route) {
            Some(RoutePattern::Exact(p)) => p.clone(),
            Some(RoutePattern::Prefix(p)) if !p.is_empty() => p.clone(),
            _ => "/".to_owned(),
        }
    }
}

/// One `[[schedule]]`: when, in which time zone, with which body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Six fields with seconds (`0 */5 * * * *`) or standard five.
    pub cron: String,
    /// IANA time zone name.
    pub timezone: String,
    /// The body each invocation gets; default: a scheduled-event JSON.
    pub payload: Option<String>,
}

/// The `[async]` section of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncConfig {
    /// Retries after the first attempt fails.
    pub max_retries: u32,
    /// Older invocations go to the dead-letter queue without running.
    pub max_event_age_s: u64,
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
}

impl AsyncConfig {
    pub const MAX_RETRIES_RANGE: std::ops::RangeInclusive<u32> = 0..=10;
    pub const MAX_EVENT_AGE_S_RANGE: std::ops::RangeInclusive<u64> = 1..=21_600;
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self { max_retries: 2, max_event_age_s: 21_600, on_success: None, on_failure: None }
    }
}

/// Where the record of a finished asynchronous invocation is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Destination {
    /// Invoke this function asynchronously with the record as its body.
    Function(FunctionName),
    /// Send the record to this built-in queue.
    Queue(String),
}

impl Destination {
    /// Parses `function:NAME` or `queue:NAME`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("function", name)) => FunctionName::parse(name).map(Self::Function).map_err(|e| e.to_string()),
            Some(("queue", name)) => FunctionName::parse(name).map(|_| Self::Queue(name.to_owned())).map_err(|_| {
                format!("{s:?}: a queue name is 1 to 63 characters of a-z, 0-9 and '-', starting with a letter")
            }),
            _ => Err(format!("{s:?}: write \"function:NAME\" or \"queue:NAME\"")),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Function(name) => write!(f, "function:{name}"),
            Self::Queue(name) => write!(f, "queue:{name}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Runtime {
    /// A wasi:http 0.2 component; `component` is relative to the manifest.
    Wasm { component: PathBuf },
    /// A native program speaking the AWS Lambda Runtime API, one process per
    /// instance, each running one invocation at a time.
    Process(ProcessSpec),
}

impl Runtime {
    pub fn kind(&self) -> &'static str {
        match self {
            Runtime::Wasm { .. } => "wasm",
            Runtime::Process(_) => "process",
        }
    }
}

/// How a native (Lambda Runtime API) function is started and kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// The code directory, relative to the manifest; uploaded with the
    /// deploy, it becomes `LAMBDA_TASK_ROOT` and the working directory.
    pub code: PathBuf,
    /// The program and its arguments, run in the code directory.
    pub command: Vec<String>,
    /// Exported to the runtime as `_HANDLER`.
    pub handler: Option<String>,
    /// Instances kept initialised at all times (provisioned concurrency).
    pub min_instances: u32,
    /// An idle instance above `min_instances` is stopped after this long.
    pub idle_timeout_s: u64,
}

impl ProcessSpec {
    pub const DEFAULT_COMMAND: &'static str = "./bootstrap";
    pub const IDLE_TIMEOUT_S_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;
    pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 300;
    /// Environment variables the platform sets and a manifest may not.
    pub const RESERVED_ENV: [&'static str; 5] = [
        "AWS_LAMBDA_RUNTIME_API",
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Maximum linear memory of one instance, in MiB.
    pub memory_mb: u32,
    /// Wall-clock budget of one invocation.
    pub timeout_ms: u64,
    /// Invocations of this function in flight at once; more are throttled.
    pub max_concurrency: u32,
}

impl Limits {
    pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u32> = 16..=4096;
    pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=900_000;
    pub const MAX_CONCURRENCY_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;

    pub fn memory_bytes(&self) -> usize {
        self.memory_mb as usize * 1024 * 1024
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_mb: 128, timeout_ms: 3000, max_concurrency: 100 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRoute {
    pub route: RoutePattern,
    /// Upper-case method names; `None` accepts any method.
    pub methods: Option<Vec<String>>,
}

impl HttpRoute {
    pub fn allows_method(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m == method))
    }
}

/// A gateway path: an exact path, or a prefix written `/api/*` that matches
/// `/api` itself and everything below `/api/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoutePattern {
    Exact(String),
    /// The prefix without the trailing `/*`, e.g. `/api` (or `` for `/*`).
    Prefix(String),
}

impl RoutePattern {
    /// Parses `/exact/path` or `/prefix/*`. The error says what to write instead.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("route {s:?} must start with '/', e.g. \"/{}\"", s.trim_start_matches('/')));
        }
        if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("route {s:?} must be a plain path without query, fragment or spaces"));
        }
        if let Some(prefix) = s.strip_suffix("/*") {
            if prefix.contains('*') {
                return Err(format!("route {s:?}: '*' is only allowed as the final \"/*\""));
            }
            return Ok(Self::Prefix(prefix.to_owned()));
        }
        if s.contains('*') {
            return Err(format!("route {s:?}: '*' is only allowed as the final \"/*\", e.g. \"/api/*\""));
        }
        Ok(Self::Exact(s.to_owned()))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => p == path,
            Self::Prefix(p) => {
                path == p || (path.len() > p.len() && path.starts_with(p.as_str()) && path.as_bytes()[p.len()] == b'/')
            }
        }
    }
}

impl std::fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(p) => f.write_str(p),
            Self::Prefix(p) => write!(f, "{p}/*"),
        }
    }
}

impl Serialize for RoutePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RoutePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_routes_match_only_themselves() {
        let r = RoutePattern::parse("/hello").unwrap();
        assert!(r.matches("/hello"));
        assert!(!r.matches("/hello/"));
        assert!(!r.matches("/hello2"));
    }

    #[test]
    fn prefix_routes_match_below_a_segment_boundary() {
        let r = RoutePattern::parse("/api/*").unwrap();
        assert_eq!(r.to_string(), "/api/*");
        assert!(r.matches("/api"));
        assert!(r.matches("/api/"));
        assert!(r.matches("/api/x/y"));
        assert!(!r.matches("/apix"));
        let root = RoutePattern::parse("/*").unwrap();
        assert!(root.matches("/anything/at/all"));
        assert!(root.matches("/"));
    }

    #[test]
    fn bad_routes_say_what_to_write() {
        assert!(RoutePattern::parse("hello").unwrap_err().contains("\"/hello\""));
        assert!(RoutePattern::parse("/a/*/b").is_err());
        assert!(RoutePattern::parse("/a*").is_err());
        assert!(RoutePattern::parse("/a?x=1").is_err());
    }
}
