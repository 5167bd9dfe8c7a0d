//! What a person sees in the terminal: one-shot commands print their answer and no log
//! lines; the daemon's log is plain text when it is not a terminal (a file, the journal),
//! opens with one "ready" summary, and says once, in its own words, that a lone node has
//! no peers yet.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::wait_for;

fn porchlight(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porchlight"));
    // As a user runs it: no RUST_LOG.
    command.arg("--data-dir").arg(dir).env_remove("RUST_LOG");
    command
}

/// A data dir made with `porchlight init`, in a temporary directory kept while the first
/// value lives.
fn new_home() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("home");
    assert!(
        porchlight(&dir)
            .arg("init")
            .status()
            .expect("init")
            .success()
    );
    (root, dir)
}

/// `porchlight node` on loopback with one camera (or `none`), as a user runs it.
fn node(dir: &std::path::Path, camera: &str) -> Command {
    let mut command = porchlight(dir);
    command.args([
        "node",
        "--camera",
        camera,
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
    ]);
    command
}

#[test]
fn one_shot_commands_print_no_log_lines() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("home");
    let out = porchlight(&dir)
        .args(["init", "--name", "home"])
        .output()
        .expect("init runs");
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "init wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("12D3KooW"));
    let out = porchlight(&dir)
        .args(["trust", "list"])
        .output()
        .expect("trust list runs");
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_daemon_log_is_plain_and_opens_with_one_ready_summary() {
    let (_root, dir) = new_home();
    let log = dir.join("daemon.log");
    let mut child = node(&dir, "none")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("the daemon starts");
    let text = wait_for(Duration::from_secs(30), "the ready summary", || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("is ready").then_some(text)
    });
    // Long enough for Kademlia's first bootstrap attempt on an empty routing table.
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).unwrap_or(text);
    let _ = child.kill();
    let _ = child.wait();

    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{text}"
    );
    assert_eq!(text.matches("is ready").count(), 1, "{text}");
    assert!(text.contains("  api      127.0.0.1:"), "{text}");
    assert!(text.contains("  mesh     /ip4/127.0.0.1/tcp/"), "{text}");
    assert!(text.contains("  cameras  none"), "{text}");
    assert!(text.contains("  stop     Ctrl-C"), "{text}");
    assert!(!text.contains("Failed to trigger bootstrap"), "{text}");
    assert_eq!(text.matches("no known peers yet").count(), 1, "{text}");
}

#[test]
fn a_file_camera_whose_file_is_missing_is_refused_at_start_naming_the_path() {
    let (_root, dir) = new_home();
    let out = node(&dir, "porch=file:/nonexistent/porchlight/clip.mp4")
        .output()
        .expect("the daemon runs");
    assert!(!out.status.success(), "it started with a missing file");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("camera porch: the file /nonexistent/porchlight/clip.mp4 does not exist"),
        "{stderr}"
    );
}

#[test]
fn status_exits_non_zero_with_the_reason_while_a_camera_fails() {
    let (_root, dir) = new_home();
    let _ = std::fs::remove_file(dir.join("api.json"));
    let mut child = node(&dir, "broken=v4l2:/dev/video99")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the daemon starts");
    let (code, status) = wait_for(Duration::from_secs(30), "the camera to fail", || {
        if !dir.join("api.json").exists() {
            return None;
        }
        let out = porchlight(&dir).args(["status", "--json"]).output().ok()?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (!status["degraded"].as_array()?.is_empty()).then_some((out.status.code(), status))
    });
    let text = porchlight(&dir)
        .arg("status")
        .output()
        .expect("status runs");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, Some(1), "{status}");
    assert_eq!(
        status["degraded"][0]["component"], "camera broken",
        "{status}"
    );
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("DEGRADED camera broken"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&text.stderr).contains("the node is degraded: camera broken"),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
}

#[test]
fn doctor_names_each_problem_with_its_fix_and_fails_when_one_is_serious() {
    let (_root, dir) = new_home();

    // A new node with no daemon: warnings, no failure.
    let out = porchlight(&dir)
        .arg("doctor")
        .output()
        .expect("doctor runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    for line in [
        "ok    config",
        "warn  daemon",
        "warn  trust roots",
        "ok    audit log",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(text.contains("fix: start it: porchlight node"), "{text}");
    assert!(text.contains("fix: add the root"), "{text}");

    // A camera whose file is gone and an audit log that is not one: both fail, each with
    // its fix, and the exit code says so.
    let config = dir.join("config.toml");
    let original = std::fs::read_to_string(&config).expect("config");
    let edited: String = original
        .lines()
        .map(|line| {
            if line.starts_with("cameras") {
                "cameras = [\"porch=file:/nonexistent/porchlight/clip.mp4\"]".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(edited, original, "the config names its cameras");
    std::fs::write(&config, edited).expect("config");
    std::fs::write(dir.join("audit.log"), [0xab; 300]).expect("a damaged log");
    let out = porchlight(&dir)
        .args(["doctor", "--json"])
        .output()
        .expect("doctor runs");
    assert!(!out.status.success());
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let find = |what: &str| {
        checks
            .as_array()
            .expect("a list")
            .iter()
            .find(|check| check["what"] == what)
            .cloned()
            .unwrap_or_else(|| panic!("no {what} check: {checks}"))
    };
    let camera = find("camera porch");
    assert_eq!(camera["verdict"], "fail");
    assert!(
        camera["found"]
            .as_str()
            .expect("text")
            .contains("does not exist")
    );
    let audit = find("audit log");
    assert_eq!(audit["verdict"], "fail");
    assert!(
        audit["fix"]
            .as_str()
            .expect("a fix")
            .contains("porchlight audit verify")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("check(s) failed"));
}

#[test]
fn mesh_lists_each_peer_with_its_link_and_whether_it_shares_a_cell() {
    use support::Peer;
    const SPOT: &str = "52.3702,4.8952";
    let root = tempfile::tempdir().expect("temp dir");
    let (a_dir, _) = Peer::init(root.path(), "a");
    let a = Peer::start(a_dir, &["--camera", "none", "--location", SPOT]);
    let (b_dir, _) = Peer::init(root.path(), "b");
    let b = Peer::start(
        b_dir,
        &[
            "--camera",
            "none",
            "--location",
            SPOT,
            "--bootstrap",
            &a.address,
        ],
    );
    let (c_dir, _) = Peer::init(root.path(), "c");
    let c = Peer::start(c_dir, &["--camera", "none", "--bootstrap", &a.address]);
    let peers = wait_for(Duration::from_secs(30), "both peers listed at a", || {
        let status = support::json(a.cmd().arg("mesh"));
        let peers = status["peers"].as_array()?.clone();
        let b_seen = peers
            .iter()
            .any(|p| p["peer_id"] == b.peer_id.as_str() && p["in_my_cells"] == true);
        let c_seen = peers.iter().any(|p| p["peer_id"] == c.peer_id.as_str());
        (b_seen && c_seen).then_some(peers)
    });
    let c_entry = peers
        .iter()
        .find(|p| p["peer_id"] == c.peer_id.as_str())
        .expect("c listed");
    assert_eq!(c_entry["in_my_cells"], false, "c opted into no area");
    assert_eq!(c_entry["links"][0]["kind"], "direct");
    assert_eq!(c_entry["links"][0]["direction"], "inbound");

    let out = support::run_ok(a.cmd().arg("mesh"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PEER") && text.contains("MY CELLS"), "{text}");
    assert!(text.contains("reachability "), "{text}");
    for debug_name in ["Unknown", "Private", "Public("] {
        assert!(!text.contains(debug_name), "a Rust type name in: {text}");
    }
    let b_line = text
        .lines()
        .find(|line| line.contains(&b.peer_id))
        .expect("b's line");
    assert!(
        b_line.contains("direct") && b_line.contains("yes"),
        "{b_line}"
    );
}
