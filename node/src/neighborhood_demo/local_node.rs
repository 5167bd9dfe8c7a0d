//! One `porchlight node` child process of the demo: started, waited on, asked through its
//! local API, and always stopped.
//!
//! The demo runs the real daemon, from the binary it is itself (`current_exe`, so `cargo
//! run -- demo` and an installed `porchlight` both work): what it shows is what a home
//! runs. Each child's stderr goes to `<data dir>/daemon.log`, and every wait names that file
//! when it gives up or the child dies.
//!
//! A [`LocalNode`] is a guard: dropping it stops its process (SIGTERM, then SIGKILL after a
//! grace period), so every way out of the demo (success, an error, a timeout) leaves no
//! daemon behind. SIGINT or SIGTERM to the demo itself sets a flag that every wait checks
//! ([`watch_for_interrupt`]), turning Ctrl-C into an error that unwinds through those guards.

use std::cell::{OnceCell, RefCell};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use porchlight_protocol::PeerId;
use rustix::process::{Pid, Signal, kill_process};

use crate::api::client::ApiClient;
use crate::data_dir::DataDir;

/// How often a wait asks again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Set when the demo is asked to stop (SIGINT, SIGTERM).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Catches SIGINT and SIGTERM for the rest of the process, so that Ctrl-C makes the
/// current wait fail (and the guards stop every child) instead of killing the demo with
/// its children still running. Returns once the handlers are installed.
pub fn watch_for_interrupt() -> anyhow::Result<()> {
    let (installed_tx, installed_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = installed_tx.send(Err(err));
                    return;
                }
            };
            runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let streams = signal(SignalKind::interrupt())
                    .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
                let (mut interrupt, mut terminate) = match streams {
                    Ok(streams) => {
                        let _ = installed_tx.send(Ok(()));
                        streams
                    }
                    Err(err) => {
                        let _ = installed_tx.send(Err(err));
                        return;
                    }
                };
                tokio::select! {
                    Some(()) = interrupt.recv() => {}
                    Some(()) = terminate.recv() => {}
                    else => return,
                }
                INTERRUPTED.store(true, Ordering::SeqCst);
            });
        })
        .context("cannot start the demo's signal watcher")?;
    installed_rx
        .recv()
        .context("the demo's signal watcher stopped before it started")?
        .context("cannot catch Ctrl-C for the demo")
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// A running `porchlight node` with its own data dir.
pub struct LocalNode {
    name: String,
    data: DataDir,
    peer_id: PeerId,
    log: PathBuf,
    /// `None` once the process has been waited for.
    child: RefCell<Option<Child>>,
    api: OnceCell<ApiClient>,
}

/// How a node ended when the demo stopped it.
#[derive(Debug)]
pub enum Stopped {
    /// It exited by itself after SIGTERM.
    Exited(ExitStatus),
    /// It did not stop within the grace period and was killed.
    Killed,
    /// It could not be waited for.
    Lost(std::io::Error),
}

impl LocalNode {
    /// Starts `porchlight --data-dir <data> node <args>` from this very binary. The
    /// environment's `PORCHLIGHT_*` settings are not passed on: the demo's nodes are
    /// configured by their flags alone.
    pub fn start(
        name: &str,
        data: DataDir,
        peer_id: PeerId,
        args: &[String],
    ) -> anyhow::Result<LocalNode> {
        let exe = std::env::current_exe()
            .context("cannot find the porchlight binary to start the demo's nodes")?;
        let log = data.root().join("daemon.log");
        let stderr =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(&exe);
        command
            .arg("--data-dir")
            .arg(data.root())
            .arg("node")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // daemon.log is a file for people to read: no terminal colour codes.
            .env("NO_COLOR", "1");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PORCHLIGHT_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}'s node ({})", exe.display()))?;
        Ok(LocalNode {
            name: name.to_owned(),
            data,
            peer_id,
            log,
            child: RefCell::new(Some(child)),
            api: OnceCell::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data(&self) -> &DataDir {
        &self.data
    }

    pub fn peer_id(&self) -> &PeerId {
        &self.peer_id
    }

    /// The node's local API, found through its data dir (once the daemon has written it).
    pub fn api(&self) -> anyhow::Result<&ApiClient> {
        if let Some(api) = self.api.get() {
            return Ok(api);
        }
        let api = ApiClient::connect(&self.data)?;
        Ok(self.api.get_or_init(|| api))
    }

    /// Asks `ready` until it gives a value, for at most `limit`. An error from `ready`
    /// counts as "not yet" (a daemon still starting refuses connections) and is reported
    /// if time runs out. Fails at once if the node's process has exited or the demo was
    /// interrupted.
    pub fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut ready: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let started = Instant::now();
        loop {
            if interrupted() {
                bail!("interrupted while waiting on {} ({what})", self.name);
            }
            self.check_running()?;
            let last_error = match ready() {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => None,
                Err(err) => Some(err),
            };
            if started.elapsed() >= limit {
                let why = last_error.map_or_else(String::new, |err| format!(" (last: {err:#})"));
                bail!(
                    "gave up after {} s waiting on {} ({what}){why}; its log {} may say why",
                    limit.as_secs(),
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn check_running(&self) -> anyhow::Result<()> {
        let mut child = self.child.borrow_mut();
        let Some(process) = child.as_mut() else {
            bail!("{}'s node was already stopped", self.name);
        };
        if let Some(status) = process
            .try_wait()
            .with_context(|| format!("cannot check on {}'s node", self.name))?
        {
            *child = None;
            bail!(
                "{}'s node stopped unexpectedly ({status}); read {} for why",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// Sends SIGTERM, which the daemon answers by stopping gracefully.
    fn terminate(&self) {
        // Only a process not yet waited for: its pid cannot have been reused.
        if let Some(process) = self.child.borrow().as_ref() {
            let _ = kill_process(Pid::from_child(process), Signal::TERM);
        }
    }

    /// Waits for the process until `deadline`, then kills it.
    fn reap(&self, deadline: Instant) -> Option<Stopped> {
        let mut process = self.child.borrow_mut().take()?;
        loop {
            match process.try_wait() {
                Ok(Some(status)) => return Some(Stopped::Exited(status)),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Ok(None) => {
                    let _ = process.kill();
                    let _ = process.wait();
                    return Some(Stopped::Killed);
                }
                Err(err) => {
                    let _ = process.kill();
                    return Some(Stopped::Lost(err));
                }
            }
        }
    }
}

/// Stops every node at once (SIGTERM to all, then waits), and says how each ended. Nodes
/// already stopped are left out.
pub fn stop_all<'a>(nodes: impl IntoIterator<Item = &'a LocalNode>) -> Vec<(&'a str, Stopped)> {
    let nodes: Vec<&LocalNode> = nodes.into_iter().collect();
    for node in &nodes {
        node.terminate();
    }
    let deadline = Instant::now() + STOP_GRACE;
    nodes
        .into_iter()
        .filter_map(|node| Some((node.name(), node.reap(deadline)?)))
        .collect()
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.reap(Instant::now() + STOP_GRACE);
    }
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("name", &self.name)
            .field("data", &self.data.root())
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}
