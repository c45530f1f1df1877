//! Native functions: programs in any language that speak the AWS Lambda
//! Runtime API, so existing Lambda functions and the official runtime
//! clients (`awslambdaric`, `aws-lambda-ric`, the `lambda_runtime` crate, a
//! shell `bootstrap` with curl) run unmodified.
//!
//! An instance is one sandboxed process with its own Runtime API server on a
//! loopback port, running one invocation at a time and reused while warm.
//! Each function has a pool of instances: `min_instances` kept initialised,
//! more started on demand (cold starts) up to the scheduler's
//! `max_concurrency`, and idle ones stopped after `idle_timeout_s`.

mod apigw;
mod instance;
mod pool;
mod runtime_api;
mod sandbox;
mod spawner;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use instance::InitType;
pub use pool::{Hold, ProcessFunction, ProcessReport};
pub use runtime_api::{MAX_RESPONSE_BYTES, MAX_STREAMED_BYTES};
pub use sandbox::{LimitBackend, Sandbox};

/// How a node runs native functions.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// Where instances get a private TMPDIR when mount namespaces are unavailable.
    pub scratch_dir: PathBuf,
    /// Run instances as this uid and gid instead of the node's own.
    pub user: Option<(u32, u32)>,
    /// Most processes and threads one instance may have (fork bombs stop here).
    pub max_pids: u32,
    /// `AWS_REGION` as functions see it.
    pub region: String,
    /// How long a runtime may take to ask for its first event.
    pub init_timeout: Duration,
    /// Bytes of stdout+stderr kept per invocation.
    pub max_output_bytes: usize,
}

impl ProcessConfig {
    pub fn new(scratch_dir: PathBuf) -> Self {
        Self {
            scratch_dir,
            user: None,
            max_pids: 1024,
            region: "us-east-1".to_owned(),
            init_timeout: Duration::from_secs(10),
            max_output_bytes: 64 * 1024,
        }
    }
}

/// The node-wide part: the sandbox this kernel allows, and settings.
pub struct ProcessRuntime {
    pub sandbox: Sandbox,
    scratch_dir: PathBuf,
    region: String,
    init_timeout: Duration,
    max_output_bytes: usize,
    spawner: spawner::Spawner,
}

impl ProcessRuntime {
    /// Probes what the kernel allows and says so in the node log; weaker
    /// fallbacks are warnings.
    pub fn new(config: ProcessConfig) -> Arc<Self> {
        let scope = format!("node-{}", std::process::id());
        let sandbox = Sandbox::detect(&scope, config.user, config.max_pids);
        if sandbox.has_cgroups() && sandbox.namespaces {
            tracing::info!("process sandbox: {}", sandbox.describe());
        } else {
            tracing::warn!(
                "process sandbox is weaker on this machine: {} (see docs/process-functions.md)",
                sandbox.describe()
            );
        }
        Arc::new(Self {
            sandbox,
            scratch_dir: config.scratch_dir,
            region: config.region,
            init_timeout: config.init_timeout,
            max_output_bytes: config.max_output_bytes,
            // Two, so one slow cgroup move does not hold up every cold start.
            spawner: spawner::Spawner::new(2),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Kills whatever is left in this node's cgroups and removes them: for
    /// the end of a graceful shutdown.
    pub fn shutdown(&self) {
        self.sandbox.remove_all();
    }

    /// The ARN functions are told they were invoked as.
    pub fn function_arn(&self, name: &str) -> String {
        format!("arn:aws:lambda:{}:000000000000:function:{name}", self.region)
    }
}

/// Everything an instance of one deployed function is started with.
pub struct FunctionContext {
    pub runtime: Arc<ProcessRuntime>,
    pub name: String,
    pub version: u64,
    pub command: Vec<String>,
    pub handler: Option<String>,
    pub code_dir: PathBuf,
    pub memory_mb: u32,
    pub env: Vec<(String, String)>,
}

impl FunctionContext {
    fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_mb) * 1024 * 1024
    }

    /// The environment of an instance: what a Lambda runtime expects, then
    /// the manifest's variables. Nothing of the node's own environment.
    fn environment(
        &self,
        port: u16,
        init_type: InitType,
        instance: u64,
        tmp_dir: Option<&Path>,
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TZ".into(), ":UTC".into()),
            ("AWS_REGION".into(), self.runtime.region.clone()),
            ("AWS_DEFAULT_REGION".into(), self.runtime.region.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/{}", self.name)),
            ("AWS_LAMBDA_LOG_STREAM_NAME".into(), format!("{}/[$LATEST]{instance:032x}", today())),
            ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), init_type.as_env().into()),
            ("AWS_EXECUTION_ENV".into(), "AWS_Lambda_nimbus".into()),
            ("LAMBDA_RUNTIME_DIR".into(), self.code_dir.display().to_string()),
            ("NIMBUS_FUNCTION_VERSION".into(), self.version.to_string()),
        ];
        if let Some(tmp) = tmp_dir {
            env.push(("TMPDIR".into(), tmp.display().to_string()));
        }
        env.extend(self.env.iter().cloned());
        env.extend([
            ("AWS_LAMBDA_RUNTIME_API".into(), format!("127.0.0.1:{port}")),
            ("_HANDLER".into(), self.handler.clone().unwrap_or_default()),
            ("LAMBDA_TASK_ROOT".into(), self.code_dir.display().to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME".into(), self.name.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), self.memory_mb.to_string()),
        ]);
        env
    }
}

/// Today's date as `YYYY/MM/DD` (UTC), for log stream names.
fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}/{m:02}/{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
