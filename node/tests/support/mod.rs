//! What the multi-daemon tests share: running the real `porchlight` binary, and a
//! `porchlight node` child per home with its own data dir, driven through the CLI.
#![allow(dead_code)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// The binary with `--data-dir` set and logs a test can read.
pub fn porchlight(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porchlight"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn,porchlight_node=info");
    command
}

pub fn run_ok(command: &mut Command) -> Output {
    let out = command.output().expect("the porchlight binary runs");
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json(command: &mut Command) -> Value {
    let out = run_ok(command.arg("--json"));
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

pub fn wait_for<T>(limit: Duration, what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// One `porchlight node` process with its own data dir.
pub struct Peer {
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub peer_id: String,
    /// Its first mesh address, with `/p2p/`.
    pub address: String,
    pub log: PathBuf,
}

impl Peer {
    /// `porchlight init`: the new node's data dir and the peer id it printed.
    pub fn init(root: &Path, name: &str) -> (PathBuf, String) {
        let dir = root.join(name);
        let out = run_ok(porchlight(&dir).args(["init", "--name", name]));
        let peer_id = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find(|word| word.starts_with("12D3KooW"))
            .expect("init prints the peer id")
            .to_owned();
        (dir, peer_id)
    }

    /// `porchlight node` on loopback (API, TCP, no mDNS, 1 s clips) with `extra` flags and
    /// environment, once its mesh listens. Its stderr goes to `daemon.log` in the data dir.
    pub fn start_with_env(dir: PathBuf, extra: &[&str], env: &[(&str, &Path)]) -> Peer {
        let log = dir.join("daemon.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let _ = std::fs::remove_file(dir.join("api.json"));
        let mut command = porchlight(&dir);
        command
            .args([
                "node",
                "--api",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
                "--clip-seconds",
                "1",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("the daemon starts");
        let mut peer = Peer {
            dir,
            child: Some(child),
            peer_id: String::new(),
            address: String::new(),
            log,
        };
        let status = wait_for(Duration::from_secs(30), "the mesh to listen", || {
            if !peer.dir.join("api.json").exists() {
                return None;
            }
            let out = porchlight(&peer.dir)
                .args(["mesh", "--json"])
                .output()
                .ok()?;
            let status: Value = serde_json::from_slice(&out.stdout).ok()?;
            (!status["listen_addresses"].as_array()?.is_empty()).then_some(status)
        });
        peer.peer_id = status["peer_id"].as_str().expect("peer id").to_owned();
        let address = status["listen_addresses"][0].as_str().expect("an address");
        peer.address = format!("{address}/p2p/{}", peer.peer_id);
        peer
    }

    pub fn start(dir: PathBuf, extra: &[&str]) -> Peer {
        Peer::start_with_env(dir, extra, &[])
    }

    pub fn cmd(&self) -> Command {
        porchlight(&self.dir)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-TERM`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    pub fn requests(&self) -> Value {
        json(self.cmd().args(["requests", "list"]))
    }

    pub fn tokens(&self) -> Value {
        json(self.cmd().args(["tokens", "list"]))
    }

    pub fn incoming(&self, request_id: &str) -> Option<Value> {
        self.requests()["incoming"]
            .as_array()?
            .iter()
            .find(|r| r["request_id"] == request_id)
            .cloned()
    }

    /// Sends a direct request from this node to `owner` for the window `from`..`to`
    /// (`extra`: more `request` flags) and waits until the owner is prompted: the request
    /// id and the owner's view of it.
    pub fn ask_directly(
        &self,
        owner: &Peer,
        (from, to): (&str, &str),
        reason: &str,
        extra: &[&str],
    ) -> (String, Value) {
        let sent = json(
            self.cmd()
                .args([
                    "request",
                    "--peer",
                    &owner.address,
                    "--from",
                    from,
                    "--to",
                    to,
                    "--reason",
                    reason,
                ])
                .args(extra),
        );
        let request_id = sent["id"].as_str().expect("request id").to_owned();
        let incoming = wait_for(Duration::from_secs(30), "the prompt", || {
            owner.incoming(&request_id)
        });
        (request_id, incoming)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit log's entries as `audit list --json` prints them.
    pub fn audit(&self) -> Vec<Value> {
        json(self.cmd().args(["audit", "list"]))
            .as_array()
            .expect("a list")
            .clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process must be continued before it can die of SIGKILL's reaping.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A token's entry in `tokens list --json`.
pub fn token_of<'a>(tokens: &'a Value, token_id: &str) -> Option<&'a Value> {
    tokens["tokens"]
        .as_array()?
        .iter()
        .find(|t| t["token_id"] == token_id)
}
