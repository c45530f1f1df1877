//! One instance: a process started in its sandbox, its own Runtime API
//! server, and its captured output. Dropping an instance kills its whole
//! process tree.

// Pipes, signals and the pre-exec hook are system calls: unsafe by nature,
// each block commented with why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_core::{CapturedOutput, ErrorCode, PlatformError};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::FunctionContext;
use crate::runtime_api::{Event, InitState, RuntimeApi};
use crate::sandbox::{Cgroup, ChildSetup};

/// How an instance came to be, as `AWS_LAMBDA_INITIALIZATION_TYPE` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitType {
    OnDemand,
    Provisioned,
}

impl InitType {
    pub(crate) fn as_env(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::Provisioned => "provisioned-concurrency",
        }
    }
}

/// How an instance's process ended.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl Exit {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (_, Some(signal)) => format!("was killed by signal {signal} ({})", signal_name(signal)),
            _ => "ended".to_owned(),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Instance {
    pub id: u64,
    pid: i32,
    pub events: mpsc::Sender<Event>,
    api: Arc<RuntimeApi>,
    exit: watch::Receiver<Option<Exit>>,
    /// Set as soon as the process is reaped, before its last output is read.
    dead: Arc<std::sync::atomic::AtomicBool>,
    /// Readable once the process has terminated, even before it is reaped.
    pidfd: Option<OwnedFd>,
    pub output: Arc<OutputPipe>,
    cgroup: Option<Cgroup>,
    /// A private TMPDIR when there are no mount namespaces.
    tmp_dir: Option<PathBuf>,
    server: tokio::task::JoinHandle<()>,
    pub init_duration: Duration,
    pub last_used: Instant,
    oom_kills_before: u64,
}

impl Instance {
    /// Starts an instance and waits until its runtime asks for the first
    /// event. On failure the error comes with what the process printed.
    pub async fn start(
        ctx: &FunctionContext,
        init_type: InitType,
    ) -> Result<Instance, (PlatformError, CapturedOutput)> {
        let started = Instant::now();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let fail =
            |message: String| (PlatformError::new(ErrorCode::FunctionInitError, message), CapturedOutput::default());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| fail(format!("cannot open the instance's Runtime API port: {e}")))?;
        let port = listener.local_addr().map_err(|e| fail(e.to_string()))?.port();
        let (api, events, mut init) = RuntimeApi::new();
        let server = tokio::spawn(api.clone().serve(listener));

        let name = format!("{}-{id}", ctx.name);
        let cgroup =
            Cgroup::create(&ctx.runtime.sandbox.limits, &name, ctx.memory_bytes(), ctx.runtime.sandbox.max_pids)
                .map_err(|e| fail(format!("cannot create the instance's cgroup: {e}")))?;
        let tmp_dir = if ctx.runtime.sandbox.namespaces {
            None
        } else {
            let dir = ctx.runtime.scratch_dir.join(&name);
            std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
            Some(dir)
        };
        let setup = ChildSetup::new(&ctx.runtime.sandbox, cgroup.as_ref(), &ctx.code_dir, ctx.memory_bytes())
            .map_err(|e| fail(format!("cannot prepare the sandbox: {e}")))?;
        let (reader, writer) = pipe().map_err(|e| fail(format!("cannot create the output pipe: {e}")))?;
        let output = Arc::new(OutputPipe::new(reader, ctx.runtime.max_output_bytes).map_err(|e| fail(e.to_string()))?);

        let mut cmd = tokio::process::Command::new(&ctx.command[0]);
        cmd.args(&ctx.command[1..])
            .current_dir(&ctx.code_dir)
            .env_clear()
            .envs(ctx.environment(port, init_type, id, tmp_dir.as_deref()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer.try_clone().map_err(|e| fail(e.to_string()))?))
            .stderr(Stdio::from(writer))
            .kill_on_drop(false);
        // SAFETY: `apply` only makes system calls on data prepared before fork.
        unsafe {
            cmd.pre_exec(move || setup.apply());
        }
        let mut child = ctx.runtime.spawner.spawn(cmd).await.map_err(|e| {
            fail(format!("cannot start {:?} in {}: {e}", ctx.command.join(" "), ctx.code_dir.display()))
        })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let pidfd = match unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } {
            // SAFETY: the kernel just gave us this descriptor.
            fd if fd >= 0 && pid > 0 => Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
            _ => None,
        };
        let pump = tokio::spawn(output.clone().pump());
        let (exit_tx, exit) = watch::channel(None);
        let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reaped = dead.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            reaped.store(true, Ordering::SeqCst);
            // Let the reader see everything the process wrote before it ended.
            let _ = tokio::time::timeout(Duration::from_millis(100), pump).await;
            let exit = match status {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    Exit { code: status.code(), signal: status.signal() }
                }
                Err(_) => Exit { code: None, signal: None },
            };
            let _ = exit_tx.send(Some(exit));
        });

        let oom_kills_before = cgroup.as_ref().map_or(0, Cgroup::oom_kills);
        let mut instance = Instance {
            id,
            pid,
            events,
            api,
            exit,
            dead,
            pidfd,
            output,
            cgroup,
            tmp_dir,
            server,
            init_duration: Duration::ZERO,
            last_used: Instant::now(),
            oom_kills_before,
        };
        let deadline = tokio::time::sleep(ctx.runtime.init_timeout);
        tokio::pin!(deadline);
        let failure = loop {
            tokio::select! {
                changed = init.changed() => {
                    if changed.is_err() {
                        break "the Runtime API stopped".to_owned();
                    }
                    let state = init.borrow_and_update().clone();
                    match state {
                        InitState::Ready => {
                            instance.init_duration = started.elapsed();
                            return Ok(instance);
                        }
                        InitState::Failed(reported) => {
                            instance.kill();
                            let output = instance.wait_and_take_output().await;
                            return Err((PlatformError::reported(ErrorCode::FunctionInitError, reported), output));
                        }
                        InitState::Starting => {}
                    }
                }
                exit = instance.exited() => {
                    let output = instance.output.take();
                    let why = if instance.out_of_memory() { "ran out of memory".to_owned() } else { exit.describe() };
                    let message = format!("the runtime {why} before asking for its first event (Runtime.ExitError)");
                    return Err((PlatformError::new(ErrorCode::FunctionInitError, message), output));
                }
                _ = &mut deadline => {
                    break format!("the runtime did not ask for its first event within {:?}", ctx.runtime.init_timeout);
                }
            }
        };
        instance.kill();
        let output = instance.wait_and_take_output().await;
        Err((PlatformError::new(ErrorCode::FunctionInitError, failure), output))
    }

    /// Resolves when the process has ended.
    pub async fn exited(&mut self) -> Exit {
        loop {
            if let Some(exit) = *self.exit.borrow_and_update() {
                return exit;
            }
            if self.exit.changed().await.is_err() {
                return Exit { code: None, signal: None };
            }
        }
    }

    /// Has the runtime taken invocation `request_id` from `next`?
    pub fn took_event(&self, request_id: &str) -> bool {
        self.api.current_request_id().as_deref() == Some(request_id)
    }

    /// Has the process ended? Exact even in the moments between its death
    /// and its reaping, where a pidfd is available (Linux 5.3+).
    pub fn has_exited(&self) -> bool {
        if self.dead.load(Ordering::SeqCst) || self.exit.borrow().is_some() {
            return true;
        }
        let Some(pidfd) = &self.pidfd else { return false };
        let mut poll = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no waiting.
        unsafe { libc::poll(&mut poll, 1, 0) > 0 && poll.revents & libc::POLLIN != 0 }
    }

    /// Did the kernel's OOM killer act in this instance's cgroup?
    pub fn out_of_memory(&self) -> bool {
        self.cgroup.as_ref().is_some_and(|cg| cg.oom_kills() > self.oom_kills_before)
    }

    /// Kills the whole process tree: the process group, and with cgroups
    /// every process that left it.
    pub fn kill(&self) {
        if self.pid > 0 {
            // SAFETY: signals have no memory-safety preconditions; the
            // process group id is the instance's pid (it called setpgid).
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    async fn wait_and_take_output(&mut self) -> CapturedOutput {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.exited()).await;
        self.output.take()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        self.server.abort();
        if let Some(dir) = self.tmp_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The read end of an instance's stdout+stderr pipe (one pipe, so lines keep
/// their order), read as it fills and drained on demand: `take` reads what
/// is already in the pipe, so output written before a response is never
/// attributed to the next invocation.
pub struct OutputPipe {
    fd: AsyncFd<OwnedFd>,
    captured: Mutex<Captured>,
}

struct Captured {
    text: Vec<u8>,
    dropped: u64,
    limit: usize,
    eof: bool,
}

impl OutputPipe {
    fn new(fd: OwnedFd, limit: usize) -> io::Result<Self> {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok(Self {
            // SAFETY: we own `fd`; it stays open as long as the AsyncFd.
            fd: unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?,
            captured: Mutex::new(Captured { text: Vec::new(), dropped: 0, limit, eof: false }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.captured.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what the pipe holds now. Returns false at end of file.
    fn drain(&self) -> io::Result<bool> {
        let mut captured = self.lock();
        let mut buf = [0u8; 16 * 1024];
        loop {
            if captured.eof {
                return Ok(false);
            }
            // SAFETY: reading into a valid buffer from a descriptor we own.
            let n = unsafe { libc::read(self.fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => {
                    captured.eof = true;
                    return Ok(false);
                }
                n if n > 0 => {
                    let n = n as usize;
                    let room = captured.limit.saturating_sub(captured.text.len());
                    let kept = n.min(room);
                    captured.text.extend_from_slice(&buf[..kept]);
                    captured.dropped += (n - kept) as u64;
                }
                _ => {
                    let e = io::Error::last_os_error();
                    return match e.kind() {
                        io::ErrorKind::WouldBlock => Ok(true),
                        io::ErrorKind::Interrupted => continue,
                        _ => Err(e),
                    };
                }
            }
        }
    }

    /// Reads the pipe until every writer has closed it.
    async fn pump(self: Arc<Self>) {
        loop {
            let Ok(mut guard) = self.fd.readable().await else { return };
            match self.drain() {
                Ok(true) => guard.clear_ready(),
                Ok(false) | Err(_) => return,
            }
        }
    }

    /// Everything captured since the last `take`.
    pub fn take(&self) -> CapturedOutput {
        let _ = self.drain();
        let mut captured = self.lock();
        let text = String::from_utf8_lossy(&std::mem::take(&mut captured.text)).into_owned();
        let truncated_bytes = std::mem::take(&mut captured.dropped);
        CapturedOutput { text, truncated_bytes }
    }
}
