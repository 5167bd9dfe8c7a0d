//! The home node end to end, through the real `porchlight` binary: `init`, `node` recording a
//! test camera into encrypted clips, the CLI talking to the daemon, export to a playable
//! MP4, no plaintext on disk, graceful stop, kill -9 and restart, and every bad-input case
//! giving one clear error and changing nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CAMERA: &str = "front=test:320x240@10";
const CLIP_SECONDS: &str = "2";

fn porchlight(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porchlight"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        // Loopback on a free port and no mDNS: tests run side by side on one machine.
        .env("PORCHLIGHT_LISTEN", "/ip4/127.0.0.1/tcp/0")
        .env("PORCHLIGHT_MDNS", "false");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the porchlight binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn init(data_dir: &Path) {
    let out = run(porchlight(data_dir).args(["init", "--name", "test-home"]));
    assert!(out.status.success(), "init failed: {}", stderr(&out));
}

/// A running daemon, stopped (SIGKILL) if the test panics.
struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with_camera(data_dir, CAMERA)
    }

    fn start_with_camera(data_dir: &Path, camera: &str) -> Daemon {
        let _ = std::fs::remove_file(data_dir.join("api.json"));
        let child = porchlight(data_dir)
            .args([
                "node",
                "--camera",
                camera,
                "--clip-seconds",
                CLIP_SECONDS,
                "--api",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the daemon starts");
        let daemon = Daemon { child: Some(child) };
        wait_for(Duration::from_secs(20), "the daemon's api.json", || {
            data_dir.join("api.json").exists()
        });
        daemon
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&mut self, signal: &str) -> Output {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.child
            .take()
            .expect("running")
            .wait_with_output()
            .expect("the daemon exits")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn clips(data_dir: &Path) -> Vec<serde_json::Value> {
    let out = run(porchlight(data_dir).args(["clips", "list", "--json"]));
    assert!(out.status.success(), "clips list failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("clips list --json prints JSON")
}

fn wait_for_clips(data_dir: &Path, count: usize) -> Vec<serde_json::Value> {
    let mut list = Vec::new();
    wait_for(Duration::from_secs(40), &format!("{count} clips"), || {
        list = clips(data_dir);
        list.len() >= count
    });
    list
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Fails on any MP4 box signature or H.264 SPS start code anywhere under `dir`.
fn assert_no_plaintext_video(dir: &Path) {
    let needles: [&[u8]; 4] = [b"ftypisom", b"ftypmp4", b"moov\0", b"\0\0\0\x01\x67"];
    for file in all_files(dir) {
        let bytes = std::fs::read(&file).expect("readable file");
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext video signature {needle:?} in {}",
                file.display()
            );
        }
    }
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (scripts/install-deps.sh installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe rejected {}: {}",
        path.display(),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe prints JSON")
}

#[test]
fn records_lists_exports_and_keeps_only_ciphertext() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("home");
    init(&data);
    let mut daemon = Daemon::start(&data);
    let list = wait_for_clips(&data, 2);

    let status = run(porchlight(&data).args(["status", "--json"]));
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(status["cameras"][0]["name"], "front");
    assert_eq!(status["cameras"][0]["state"], "recording");
    assert!(status["clips"]["count"].as_u64().expect("count") >= 2);
    let human = stdout(&run(porchlight(&data).arg("status")));
    assert!(
        human.contains("front") && human.contains("recording"),
        "{human}"
    );

    let id = run(porchlight(&data).args(["id", "--json"]));
    let id: serde_json::Value = serde_json::from_slice(&id.stdout).expect("JSON");
    assert!(
        id["peer_id"]
            .as_str()
            .expect("peer id")
            .starts_with("12D3KooW")
    );

    // Export the first whole clip by a prefix of its id; ffprobe reads H.264 of ~2 s.
    let clip_id = list[0]["id"].as_str().expect("id").to_owned();
    let mp4 = tmp.path().join("out.mp4");
    let out = run(porchlight(&data)
        .args(["clips", "export", &clip_id[..12], "-o"])
        .arg(&mp4));
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    let probe = ffprobe(&mp4);
    assert_eq!(probe["streams"][0]["codec_name"], "h264", "{probe}");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .expect("duration")
        .parse()
        .expect("number");
    assert!(
        (1.5..=2.6).contains(&duration),
        "clip lasts {duration} s, expected about 2"
    );

    // Hold and release round-trip through the daemon.
    let held = run(porchlight(&data).args(["clips", "hold", &clip_id, "--json"]));
    assert!(held.status.success(), "{}", stderr(&held));
    assert!(
        clips(&data)
            .iter()
            .any(|c| c["id"] == clip_id.as_str() && c["held"] == true)
    );
    assert!(
        run(porchlight(&data).args(["clips", "release", &clip_id]))
            .status
            .success()
    );

    // Graceful stop: exit 0, and the clip in progress is sealed and listed on restart.
    let before = clips(&data).len();
    let stopped = daemon.signal("-TERM");
    assert!(
        stopped.status.success(),
        "SIGTERM exit: {:?}\n{}",
        stopped.status,
        stderr(&stopped)
    );
    assert!(
        !data.join("api.json").exists(),
        "api.json is removed on a clean stop"
    );
    assert_no_plaintext_video(&data);

    let _daemon = Daemon::start(&data);
    let after = clips(&data);
    assert!(
        after.len() > before,
        "the clip in progress at SIGTERM was kept ({before} -> {})",
        after.len()
    );
}

#[test]
fn kill_9_at_any_moment_leaves_every_earlier_clip_readable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("home");
    init(&data);
    for round in 0..3u64 {
        let mut daemon = Daemon::start(&data);
        let have = clips(&data).len();
        wait_for_clips(&data, have + 1);
        // Land the kill at a different point of the clip cycle each round.
        std::thread::sleep(Duration::from_millis(300 + 700 * round));
        let _ = daemon.signal("-KILL");
    }
    let _daemon = Daemon::start(&data);
    let list = clips(&data);
    assert!(list.len() >= 3, "{} clips survived", list.len());
    for (i, clip) in list.iter().enumerate() {
        let id = clip["id"].as_str().expect("id");
        let out_path = tmp.path().join(format!("clip{i}.mp4"));
        let out = run(porchlight(&data)
            .args(["clips", "export", id, "-o"])
            .arg(&out_path));
        assert!(
            out.status.success(),
            "clip {id} does not export after kill -9: {}",
            stderr(&out)
        );
        assert_eq!(ffprobe(&out_path)["streams"][0]["codec_name"], "h264");
    }
    assert!(
        all_files(&data)
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".partial")),
        "half-written files are removed on restart"
    );
    assert_no_plaintext_video(&data);
}

#[test]
fn init_twice_keeps_the_keys_and_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("home");
    init(&data);
    assert!(
        data.join("index").is_dir() && data.join("clips").is_dir(),
        "init creates the store"
    );
    let key = std::fs::read(data.join("identity.key")).expect("key");
    let again = run(porchlight(&data).arg("init"));
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("nothing was overwritten"),
        "{}",
        stdout(&again)
    );
    assert_eq!(std::fs::read(data.join("identity.key")).expect("key"), key);
    use std::os::unix::fs::PermissionsExt;
    let dir_mode = std::fs::metadata(&data)
        .expect("data dir")
        .permissions()
        .mode();
    assert_eq!(
        dir_mode & 0o077,
        0,
        "a new data dir is private (mode {dir_mode:o})"
    );
    for file in ["identity.key", "vault.key"] {
        let mode = std::fs::metadata(data.join(file))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

/// Runs `args` and checks it fails with one `porchlight:` line containing `expect`.
fn assert_clear_error(command: &mut Command, expect: &str) {
    let out = run(command);
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("porchlight:") || l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "want one error line, got: {err}");
    assert!(
        err.contains(expect),
        "error {err:?} does not mention {expect:?}"
    );
}

#[test]
fn bad_input_gets_one_clear_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("home");

    // No data dir yet, and no daemon.
    assert_clear_error(porchlight(&data).arg("status"), "porchlight init");
    init(&data);
    assert_clear_error(
        porchlight(&data).arg("status"),
        "no porchlight daemon is running",
    );

    // An unknown camera spec, a bad clip length.
    assert_clear_error(
        porchlight(&data).args(["node", "--camera", "webcam:7", "--api", "127.0.0.1:0"]),
        "webcam:7",
    );
    assert_clear_error(
        porchlight(&data).args(["node", "--clip-seconds", "0", "--api", "127.0.0.1:0"]),
        "clip",
    );

    // A corrupt config, then a missing one.
    let config = data.join("config.toml");
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, "cameras = [\n").expect("write");
    assert_clear_error(
        porchlight(&data).args(["node", "--api", "127.0.0.1:0"]),
        "config",
    );
    std::fs::remove_file(&config).expect("remove");
    assert_clear_error(
        porchlight(&data).args(["node", "--api", "127.0.0.1:0"]),
        "porchlight init",
    );
    std::fs::write(&config, good).expect("restore");

    let _daemon = Daemon::start(&data);
    wait_for_clips(&data, 1);
    let before = clips(&data);

    // A second daemon on the same data dir.
    assert_clear_error(
        porchlight(&data).args(["node", "--camera", CAMERA, "--api", "127.0.0.1:0"]),
        "another porchlight",
    );
    // A clip id that does not exist, and one that is not an id.
    assert_clear_error(
        porchlight(&data)
            .args(["clips", "export", &"ab".repeat(32), "-o"])
            .arg(tmp.path().join("x.mp4")),
        "not found",
    );
    assert!(
        !tmp.path().join("x.mp4").exists(),
        "a failed export writes nothing"
    );
    assert_clear_error(
        porchlight(&data).args(["clips", "hold", "not-an-id"]),
        "not a clip id",
    );
    // An unreadable import file, and one that is not video.
    assert_clear_error(
        porchlight(&data).args(["clips", "import", "/nonexistent/clip.mp4"]),
        "cannot read import file",
    );
    let junk = tmp.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video").expect("write");
    assert_clear_error(
        porchlight(&data).args(["clips", "import"]).arg(&junk),
        "junk.mp4",
    );

    // Nothing stored changed (the camera may have added clips meanwhile, never removed any).
    let after = clips(&data);
    for clip in &before {
        assert!(
            after.contains(clip),
            "clip {} changed or vanished",
            clip["id"]
        );
    }
    assert!(
        after.iter().all(|c| c["camera"] == "front"),
        "no import was stored"
    );
}

#[test]
fn import_then_export_round_trips_through_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("home");
    init(&data);
    let _daemon = Daemon::start_with_camera(&data, "none");
    // Make a real MP4 with the recorder itself: export one from a second node.
    let source_home = tmp.path().join("source");
    init(&source_home);
    let source = Daemon::start(&source_home);
    let list = wait_for_clips(&source_home, 1);
    let original = tmp.path().join("original.mp4");
    let id = list[0]["id"].as_str().expect("id");
    assert!(
        run(porchlight(&source_home)
            .args(["clips", "export", id, "-o"])
            .arg(&original))
        .status
        .success()
    );
    drop(source);

    let out = run(porchlight(&data)
        .args(["clips", "import"])
        .arg(&original)
        .args([
            "--camera",
            "old-dvr",
            "--start",
            "2026-01-02T03:04:05Z",
            "--json",
        ]));
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    let clip: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(clip["camera"], "old-dvr");
    assert_eq!(clip["start"], "2026-01-02T03:04:05Z");
    let back = tmp.path().join("back.mp4");
    let id = clip["id"].as_str().expect("id");
    assert!(
        run(porchlight(&data)
            .args(["clips", "export", id, "-o"])
            .arg(&back))
        .status
        .success()
    );
    assert_eq!(
        std::fs::read(&back).expect("back"),
        std::fs::read(&original).expect("original")
    );
    assert_no_plaintext_video(&data);
}

#[test]
fn a_data_dir_owned_by_someone_else_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("home");
    init(&data);
    let foreign = if rustix::process::geteuid().is_root() {
        // As root (CI), give the data dir to `nobody`.
        let status = Command::new("chown")
            .args(["-R", "65534"])
            .arg(&data)
            .status()
            .expect("chown runs");
        assert!(status.success());
        data.clone()
    } else {
        // As anyone else, a directory root owns is someone else's.
        PathBuf::from("/")
    };
    for args in [
        &["status"][..],
        &["node", "--api", "127.0.0.1:0"][..],
        &["init"][..],
    ] {
        assert_clear_error(porchlight(&foreign).args(args), "not to you");
    }
}
