//! Starting instances off the async workers. Forking the node and moving
//! the child into its cgroups takes milliseconds (a cgroup v1 move waits for
//! an RCU grace period), and `Command::spawn` blocks its thread until the
//! child has exec'd. Spawns therefore run on dedicated threads that live as
//! long as the node: a child's `PR_SET_PDEATHSIG` fires when the *thread*
//! that forked it ends, so the blocking pool (whose threads retire when
//! idle) would kill instances at random.

use std::io;
use std::sync::Mutex;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

type Job = (Command, oneshot::Sender<io::Result<Child>>);

pub struct Spawner {
    jobs: Option<Mutex<mpsc::Sender<Job>>>,
}

impl Spawner {
    /// Starts `threads` spawner threads in the current tokio runtime's
    /// context; outside a runtime, spawns happen on the caller's thread.
    pub fn new(threads: usize) -> Self {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return Self { jobs: None } };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (handle, rx) = (handle.clone(), rx.clone());
            let started = std::thread::Builder::new().name(format!("nimbus-spawn-{i}")).spawn(move || {
                let _runtime = handle.enter();
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((mut command, reply)) = job else { return };
                    let _ = reply.send(command.spawn());
                }
            });
            if started.is_err() {
                return Self { jobs: None };
            }
        }
        Self { jobs: Some(Mutex::new(tx)) }
    }

    pub async fn spawn(&self, mut command: Command) -> io::Result<Child> {
        let Some(jobs) = &self.jobs else { return command.spawn() };
        let (reply, answer) = oneshot::channel();
        jobs.lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((command, reply))
            .map_err(|_| io::Error::other("the spawner threads have stopped"))?;
        answer.await.map_err(|_| io::Error::other("the spawner thread dropped the request"))?
    }
}
