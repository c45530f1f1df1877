//! What confines an instance, decided once per node from what the kernel
//! allows, and applied between fork and exec:
//!
//! - a new process group (so it can be killed as a whole) that dies
//!   with the node (`PR_SET_PDEATHSIG`);
//! - a cgroup per instance with a memory limit (no swap), a pids limit and an
//!   OOM counter: cgroup v2 where its controllers are available, else v1,
//!   else `RLIMIT_AS`/`RLIMIT_NPROC` as a weaker fallback;
//! - new mount, IPC and UTS namespaces with a private tmpfs on `/tmp` and the
//!   code directory bind-mounted read-only; without namespaces, a private
//!   `TMPDIR` instead (with a warning);
//! - optionally another uid/gid; always no core dumps.

// This module is system calls between fork and exec: unsafe by nature, each
// block commented with why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How instances' memory and process counts are limited on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitBackend {
    CgroupV2 {
        root: PathBuf,
    },
    CgroupV1 {
        memory: PathBuf,
        pids: PathBuf,
    },
    /// `RLIMIT_AS` (address space, not resident memory) and `RLIMIT_NPROC`
    /// (per user; ignored for root).
    Rlimits,
}

/// What this node can do to confine instances.
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub limits: LimitBackend,
    pub namespaces: bool,
    /// Run instances as this uid/gid (`--process-user`).
    pub user: Option<(u32, u32)>,
    /// Most processes and threads one instance may have.
    pub max_pids: u32,
}

impl Sandbox {
    /// Probes the kernel: cgroups we can create and write, and whether a
    /// child can enter new mount namespaces. `scope` names this node's
    /// cgroup directory (unique per node process).
    pub fn detect(scope: &str, user: Option<(u32, u32)>, max_pids: u32) -> Self {
        let limits = detect_cgroups(scope).unwrap_or(LimitBackend::Rlimits);
        let namespaces = probe_namespaces();
        Self { limits, namespaces, user, max_pids }
    }

    /// One line for the node log and `/healthz`-style reports.
    pub fn describe(&self) -> String {
        let limits = match &self.limits {
            LimitBackend::CgroupV2 { .. } => "cgroup v2 (memory.max, pids.max)",
            LimitBackend::CgroupV1 { .. } => "cgroup v1 (memory.limit_in_bytes, pids.max)",
            LimitBackend::Rlimits => "rlimits only (RLIMIT_AS, RLIMIT_NPROC): memory is address space, not resident",
        };
        let ns = if self.namespaces {
            "mount+ipc+uts namespaces, private /tmp, read-only code"
        } else {
            "no namespaces (private TMPDIR only; code is not read-only)"
        };
        format!("limits: {limits}; isolation: {ns}; max {} pids per instance", self.max_pids)
    }

    /// Kills what is left in this node's cgroups and removes them.
    pub fn remove_all(&self) {
        let scopes: Vec<&Path> = match &self.limits {
            LimitBackend::CgroupV2 { root } => vec![root],
            LimitBackend::CgroupV1 { memory, pids } => vec![memory, pids],
            LimitBackend::Rlimits => return,
        };
        for scope in scopes {
            remove_scope(scope);
        }
    }

    pub fn has_cgroups(&self) -> bool {
        !matches!(self.limits, LimitBackend::Rlimits)
    }
}

fn detect_cgroups(scope: &str) -> Option<LimitBackend> {
    let v2 = Path::new("/sys/fs/cgroup");
    if let Ok(controllers) = fs::read_to_string(v2.join("cgroup.controllers"))
        && controllers.split_whitespace().any(|c| c == "memory")
        && controllers.split_whitespace().any(|c| c == "pids")
    {
        let root = v2.join("nimbus");
        let ok = fs::create_dir_all(&root).is_ok()
            && fs::write(root.join("cgroup.subtree_control"), "+memory +pids").is_ok()
            && fs::create_dir_all(root.join(scope)).is_ok()
            && fs::write(root.join(scope).join("cgroup.subtree_control"), "+memory +pids").is_ok();
        if ok {
            remove_stale(&root, scope);
            return Some(LimitBackend::CgroupV2 { root: root.join(scope) });
        }
    }
    let memory = Path::new("/sys/fs/cgroup/memory/nimbus");
    let pids = Path::new("/sys/fs/cgroup/pids/nimbus");
    let ok = fs::create_dir_all(memory.join(scope)).is_ok()
        && fs::create_dir_all(pids.join(scope)).is_ok()
        && memory.join(scope).join("memory.limit_in_bytes").exists()
        && pids.join(scope).join("pids.max").exists();
    if ok {
        remove_stale(memory, scope);
        remove_stale(pids, scope);
        return Some(LimitBackend::CgroupV1 { memory: memory.join(scope), pids: pids.join(scope) });
    }
    None
}

/// Removes the cgroups of nodes that are no longer running (scopes are
/// named `node-PID`), killing anything left in them.
fn remove_stale(root: &Path, own: &str) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("node-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if name == own || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        remove_scope(&entry.path());
    }
}

/// Kills everything in a node's cgroup scope and removes its instance
/// cgroups and then the scope itself.
fn remove_scope(scope: &Path) {
    if let Ok(children) = fs::read_dir(scope) {
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            kill_procs(&child.path());
            // The kernel refuses rmdir until the killed processes are gone.
            for _ in 0..40 {
                if fs::remove_dir(child.path()).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    let _ = fs::remove_dir(scope);
}

fn kill_procs(dir: &Path) {
    for _ in 0..100 {
        let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else { return };
        let pids: Vec<i32> = procs.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Forks `/bin/true` into new mount namespaces with a tmpfs, to learn whether
/// this kernel and our privileges allow it.
fn probe_namespaces() -> bool {
    use std::os::unix::process::CommandExt;
    let Ok(tmp) = CString::new("/tmp") else { return false };
    let mut cmd = std::process::Command::new("true");
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    // SAFETY: the closure only makes system calls with pre-built C strings.
    unsafe {
        cmd.pre_exec(move || enter_namespaces(&tmp, None));
    }
    matches!(cmd.status(), Ok(status) if status.success())
}

/// The cgroup of one instance; removed (after killing what is left in it)
/// when dropped.
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
}

impl Cgroup {
    /// Creates the cgroup for instance `name` with the memory and pids limits.
    pub fn create(backend: &LimitBackend, name: &str, memory_bytes: u64, max_pids: u32) -> io::Result<Option<Self>> {
        match backend {
            LimitBackend::Rlimits => Ok(None),
            LimitBackend::CgroupV2 { root } => {
                let dir = root.join(name);
                fs::create_dir(&dir)?;
                let cg = Self { dirs: vec![dir.clone()], v2: true };
                fs::write(dir.join("memory.max"), memory_bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
                fs::write(dir.join("pids.max"), max_pids.to_string())?;
                Ok(Some(cg))
            }
            LimitBackend::CgroupV1 { memory, pids } => {
                let (mem_dir, pids_dir) = (memory.join(name), pids.join(name));
                fs::create_dir(&mem_dir)?;
                fs::create_dir(&pids_dir)?;
                let cg = Self { dirs: vec![mem_dir.clone(), pids_dir.clone()], v2: false };
                fs::write(mem_dir.join("memory.limit_in_bytes"), memory_bytes.to_string())?;
                // Without swap accounting this file is absent; the limit then
                // covers RAM only.
                let _ = fs::write(mem_dir.join("memory.memsw.limit_in_bytes"), memory_bytes.to_string());
                fs::write(pids_dir.join("pids.max"), max_pids.to_string())?;
                Ok(Some(cg))
            }
        }
    }

    /// Open handles on `cgroup.procs`, written to by the child before exec.
    pub fn procs_files(&self) -> io::Result<Vec<OwnedFd>> {
        self.dirs
            .iter()
            .map(|d| fs::OpenOptions::new().write(true).open(d.join("cgroup.procs")).map(OwnedFd::from))
            .collect()
    }

    /// How many times the kernel's OOM killer has killed a process here.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 { "memory.events" } else { "memory.oom_control" };
        let text = fs::read_to_string(self.dirs[0].join(file)).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok())).unwrap_or(0)
    }

    /// Kills every process in the cgroup, including those that left the
    /// process group.
    pub fn kill_all(&self) {
        if self.v2 && fs::write(self.dirs[0].join("cgroup.kill"), "1").is_ok() {
            return;
        }
        kill_procs(&self.dirs[0]);
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        let dirs = std::mem::take(&mut self.dirs);
        // The kernel refuses rmdir until the killed processes are gone.
        let _ = std::thread::Builder::new().name("nimbus-cgroup-rm".into()).spawn(move || {
            for _ in 0..200 {
                if dirs.iter().all(|d| fs::remove_dir(d).is_ok() || !d.exists()) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        });
    }
}

/// Everything the child needs between fork and exec, prepared beforehand
/// so that the child only makes system calls (no allocation after fork).
pub struct ChildSetup {
    pub cgroup_procs: Vec<OwnedFd>,
    pub namespaces: Option<(CString, CodeMount)>,
    pub address_space: Option<u64>,
    pub nproc: Option<u64>,
    pub user: Option<(u32, u32)>,
}

impl ChildSetup {
    pub fn new(sandbox: &Sandbox, cgroup: Option<&Cgroup>, code_dir: &Path, memory_bytes: u64) -> io::Result<Self> {
        let cgroup_procs = match cgroup {
            Some(cg) => cg.procs_files()?,
            None => Vec::new(),
        };
        let namespaces = if sandbox.namespaces {
            let tmp = CString::new("/tmp").map_err(io::Error::other)?;
            Some((tmp, CodeMount::new(code_dir)?))
        } else {
            None
        };
        let rlimits = cgroup.is_none();
        Ok(Self {
            cgroup_procs,
            namespaces,
            // Runtimes reserve address space well beyond what they touch; a
            // margin keeps small limits usable.
            address_space: rlimits.then_some(memory_bytes.saturating_mul(2).max(256 << 20)),
            nproc: rlimits.then_some(u64::from(sandbox.max_pids)),
            user: sandbox.user,
        })
    }

    /// Runs in the child after fork, before exec.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: plain system calls on values prepared before fork.
        unsafe {
            // A process group of its own (so the tree can be killed), not a
            // session: with scheduler autogroups every session is a group
            // of its own, and hundreds of them starve each other in bursts.
            if libc::setpgid(0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            for fd in &self.cgroup_procs {
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        if let Some((tmp, code)) = &self.namespaces {
            enter_namespaces(tmp, Some(code))?;
        }
        set_rlimit(libc::RLIMIT_CORE, 0)?;
        if let Some(bytes) = self.address_space {
            set_rlimit(libc::RLIMIT_AS, bytes)?;
        }
        if let Some(n) = self.nproc {
            set_rlimit(libc::RLIMIT_NPROC, n)?;
        }
        if let Some((uid, gid)) = self.user {
            // SAFETY: plain system calls.
            unsafe {
                if libc::setgroups(0, std::ptr::null()) < 0 || libc::setgid(gid) < 0 || libc::setuid(uid) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: a plain system call with a valid pointer.
    if unsafe { libc::setrlimit(resource, &limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The code directory, to be bind-mounted read-only even where the new
/// `/tmp` hides its path.
pub struct CodeMount {
    path: CString,
    /// Directories to create inside the new /tmp, outermost first.
    recreate: Vec<CString>,
}

impl CodeMount {
    fn new(code_dir: &Path) -> io::Result<Self> {
        let code_dir = fs::canonicalize(code_dir)?;
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
        let mut recreate: Vec<CString> = Vec::new();
        if code_dir.starts_with("/tmp") {
            let mut ancestors: Vec<&Path> = code_dir.ancestors().take_while(|a| *a != Path::new("/tmp")).collect();
            ancestors.reverse();
            recreate = ancestors.into_iter().map(c).collect::<io::Result<_>>()?;
        }
        Ok(Self { path: c(&code_dir)?, recreate })
    }
}

/// `/proc/self/fd/N` in a stack buffer: no allocation after fork.
fn fd_path(fd: libc::c_int, buf: &mut [u8; 32]) -> *const libc::c_char {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (fd.unsigned_abs(), 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
    buf.as_ptr().cast()
}

/// New mount, IPC and UTS namespaces; mounts private to them; a fresh tmpfs
/// on /tmp; `code` bind-mounted read-only onto itself.
fn enter_namespaces(tmp: &CString, code: Option<&CodeMount>) -> io::Result<()> {
    let check = |r: libc::c_int| if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: plain system calls with NUL-terminated strings built before fork.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        // Opened inside the new namespace (a bind source must be in the
        // caller's namespace), before the tmpfs can hide its path.
        let code_fd = match code {
            Some(code) => {
                let fd = libc::open(code.path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                fd
            }
            None => -1,
        };
        check(libc::mount(
            c"tmpfs".as_ptr(),
            tmp.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"size=512m,mode=1777".as_ptr().cast(),
        ))?;
        if let Some(code) = code {
            // The code directory may itself be under /tmp, now hidden by the
            // new tmpfs: recreate its path there and bind it from the
            // descriptor opened before fork.
            for dir in &code.recreate {
                if libc::mkdir(dir.as_ptr(), 0o755) < 0 && *libc::__errno_location() != libc::EEXIST {
                    return Err(io::Error::last_os_error());
                }
            }
            let mut buf = [0u8; 32];
            check(libc::mount(
                fd_path(code_fd, &mut buf),
                code.path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            libc::close(code_fd);
            check(libc::mount(
                std::ptr::null(),
                code.path.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                std::ptr::null(),
            ))?;
        }
        check(libc::sethostname(c"nimbus".as_ptr(), 6))?;
    }
    Ok(())
}
