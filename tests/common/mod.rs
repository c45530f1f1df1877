//! Test harness: builds the guest programs from source, starts real
//! `nimbus server` processes on ephemeral loopback ports, and talks to them
//! over HTTP and through the real CLI binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use nimbus_cli::ApiClient;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds `test-programs/` for wasm32-wasip2 (once per test process; cargo
/// makes repeated builds no-ops) and returns the path of `<name>.wasm`.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target = repo_root().join("target/test-programs");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(&target)
            .current_dir(repo_root().join("test-programs"))
            .status()
            .expect("cannot run cargo to build test-programs");
        assert!(status.success(), "building test-programs for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)");
        target.join("wasm32-wasip2/release")
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Builds `examples/<name>` for wasm32-wasip2, as its build.sh does, and
/// returns the component's path.
pub fn example(name: &str) -> PathBuf {
    let target = repo_root().join("target/examples");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target)
        .current_dir(repo_root().join("examples").join(name))
        .status()
        .expect("cannot run cargo to build the example");
    assert!(status.success(), "building examples/{name} failed");
    target.join(format!("wasm32-wasip2/release/{name}.wasm"))
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nimbus-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a function directory: `nimbus.toml` plus a copy of the component.
pub fn function_dir(parent: &Path, manifest: &str, wasm: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent.join(format!("fn{n}"));
    std::fs::create_dir_all(&dir).expect("create function dir");
    std::fs::write(dir.join("nimbus.toml"), manifest).expect("write manifest");
    std::fs::copy(wasm, dir.join("app.wasm")).expect("copy component");
    dir
}

/// A manifest for the probe guest with the given extra lines.
pub fn probe_manifest(name: &str, extra: &str) -> String {
    format!("name = \"{name}\"\nruntime = \"wasm\"\ncomponent = \"app.wasm\"\n{extra}\n")
}

/// A running `nimbus server` process.
pub struct Node {
    pub child: Child,
    pub gateway: String,
    pub api: String,
    pub data_dir: PathBuf,
    pub token: Option<String>,
    pub stdout_lines: Vec<String>,
    _temp: Option<TempDir>,
}

impl Node {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Self {
        let temp = TempDir::new("node");
        let data_dir = temp.path().join("data");
        let mut node = Self::start_in(&data_dir, args);
        node._temp = Some(temp);
        node
    }

    /// Starts a node on `data_dir` (kept after the node stops).
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nimbus"));
        cmd.arg("server").arg("--data-dir").arg(data_dir);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--api-listen") {
            cmd.args(["--api-listen", "127.0.0.1:0"]);
        }
        cmd.args(args).env_remove("NIMBUS_TOKEN").stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn nimbus server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let token = args.iter().position(|a| *a == "--token").map(|i| args[i + 1].to_string());
        let (mut gateway, mut api, mut lines) = (String::new(), String::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("nimbus server did not become ready; output so far: {lines:?}"));
            if let Some(url) = line.strip_prefix("nimbus: gateway listening on ") {
                gateway = url.to_string();
            }
            if let Some(url) = line.strip_prefix("nimbus: control API listening on ") {
                api = url.to_string();
            }
            let ready = line.starts_with("nimbus: ready");
            lines.push(line);
            if ready {
                break;
            }
        }
        Node { child, gateway, api, data_dir: data_dir.to_path_buf(), token, stdout_lines: lines, _temp: None }
    }

    pub fn api_client(&self) -> ApiClient {
        ApiClient::new(&self.api, self.token.clone()).expect("api client")
    }

    pub fn gateway_client(&self) -> ApiClient {
        ApiClient::new(&self.gateway, None).expect("gateway client")
    }

    /// Runs the real CLI against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nimbus"));
        cmd.args(args).env("NIMBUS_API", &self.api).env_remove("NIMBUS_TOKEN");
        if let Some(t) = &self.token {
            cmd.env("NIMBUS_TOKEN", t);
        }
        cmd.output().expect("run nimbus")
    }

    /// Runs the CLI and asserts it succeeded; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "nimbus {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deploys a function directory through the CLI.
    pub fn deploy(&self, dir: &Path) -> String {
        self.cli_ok(&["deploy", dir.to_str().expect("utf-8 path")])
    }

    /// Deploys the probe guest under `name` with extra manifest lines.
    pub fn deploy_probe(&self, scratch: &TempDir, name: &str, extra: &str) {
        let dir = function_dir(scratch.path(), &probe_manifest(name, extra), &guest("probe"));
        self.deploy(&dir);
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Resp {
        let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let r = self.gateway_client().request(method, path, &headers, body).await.expect("gateway request");
        Resp { status: r.status.as_u16(), headers: r.headers, body: String::from_utf8_lossy(&r.body).into_owned() }
    }

    pub async fn api_get(&self, path: &str) -> Resp {
        let r = self.api_client().request(Method::GET, path, &[], Bytes::new()).await.expect("api request");
        Resp { status: r.status.as_u16(), headers: r.headers, body: String::from_utf8_lossy(&r.body).into_owned() }
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway or API answer, body as text.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The platform error code of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_string()
    }
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Builds the components made by other toolchains (JavaScript via jco /
/// componentize-js, Python via componentize-py) with
/// `test-programs/build-foreign.sh`, once per test process; the script skips
/// work when nothing changed. Returns the path of `<name>.wasm`.
pub fn foreign(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let out = BUILT.get_or_init(|| {
        let out = repo_root().join("target/test-programs/foreign");
        let status = Command::new("bash")
            .arg(repo_root().join("test-programs/build-foreign.sh"))
            .arg(&out)
            .status()
            .expect("cannot run test-programs/build-foreign.sh");
        assert!(
            status.success(),
            "building the JavaScript and Python components failed: they need node 20+ with npm and python3 with pip"
        );
        out
    });
    let path = out.join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Builds and stages the native Lambda fixtures (`test-programs/lambda/`:
/// Python for awslambdaric, a shell bootstrap, a Rust `lambda_runtime`
/// binary) with `test-programs/build-native.sh`, once per test process.
/// Returns the directory of one of them: `python`, `shell` or `rust`.
pub fn lambda_fixture(kind: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let out = BUILT.get_or_init(|| {
        let out = repo_root().join("target/test-programs/native");
        let status = Command::new("bash")
            .arg(repo_root().join("test-programs/build-native.sh"))
            .arg(&out)
            .env("CARGO", env!("CARGO"))
            .status()
            .expect("cannot run test-programs/build-native.sh");
        assert!(status.success(), "building the native Lambda fixtures failed");
        out
    });
    let dir = out.join(kind);
    assert!(dir.is_dir(), "{} was not staged", dir.display());
    dir
}

/// The absolute path of a python3 that can import the official runtime
/// interface client, `awslambdaric` (`scripts/test` installs it).
pub fn python_with_ric() -> String {
    static FOUND: OnceLock<String> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let out = Command::new("python3")
                .args(["-c", "import awslambdaric, sys; print(sys.executable)"])
                .output()
                .expect("python3 is needed for the process-function tests");
            assert!(
                out.status.success(),
                "python3 cannot import awslambdaric: run `pip install awslambdaric==4.2.2` (scripts/test does): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .clone()
}

/// A process function's directory: a copy of `fixture` (modes kept) plus
/// `nimbus.toml`.
pub fn process_function_dir(parent: &Path, manifest: &str, fixture: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent.join(format!("proc{n}"));
    let status = Command::new("cp").arg("-a").arg(fixture).arg(&dir).status().expect("cp");
    assert!(status.success(), "copying {} failed", fixture.display());
    std::fs::write(dir.join("nimbus.toml"), manifest).expect("write manifest");
    dir
}

impl Node {
    /// Did this node find cgroups to limit process functions with?
    pub fn has_cgroups(&self) -> bool {
        self.sandbox_line().contains("cgroup v")
    }

    /// Does this node run process functions in their own mount namespaces?
    pub fn has_namespaces(&self) -> bool {
        self.sandbox_line().contains("mount+ipc+uts namespaces")
    }

    fn sandbox_line(&self) -> &str {
        self.stdout_lines.iter().find(|l| l.starts_with("nimbus: process sandbox:")).map(String::as_str).unwrap_or("")
    }

    /// The log entries of `function`, oldest first.
    pub async fn log_entries(&self, function: &str) -> Vec<serde_json::Value> {
        let r = self.api_get(&format!("/v1/functions/{function}/logs?limit=100")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let mut entries = r.json()["entries"].as_array().cloned().unwrap_or_default();
        entries.sort_by_key(|e| e["seq"].as_i64());
        entries
    }

    /// Invokes through the control API (`nimbus invoke`'s path) with a JSON event.
    pub async fn invoke_event(&self, function: &str, event: &str) -> Resp {
        let r = self
            .api_client()
            .request(
                Method::POST,
                &format!("/v1/functions/{function}/invoke"),
                &[("content-type".into(), "application/json".into())],
                Bytes::from(event.to_owned()),
            )
            .await
            .expect("api request");
        Resp { status: r.status.as_u16(), headers: r.headers, body: String::from_utf8_lossy(&r.body).into_owned() }
    }
}

/// Skips the rest of a test, loudly, when the machine lacks what it proves.
#[macro_export]
macro_rules! skip_unless {
    ($cond:expr, $why:expr) => {
        if !$cond {
            eprintln!("SKIPPED (loudly): {} — {}", module_path!(), $why);
            return;
        }
    };
}
