//! Capture against real GStreamer, with the test camera only (no hardware, no network).
//!
//! Covers what the home-node issue asks of capture: clips are standalone H.264 MP4s of the
//! requested length (checked with ffprobe), times are contiguous, a graceful stop delivers
//! the partial clip, camera specs parse or fail with clear errors, a failing camera retries
//! with backoff while another keeps recording, and recording writes nothing to TMPDIR or
//! the working directory.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use porchlight_node::capture::{
    CameraSpec, CameraStatus, CaptureOptions, CaptureSupervisor, ClipLength, Segment, Source,
    SpecError, TestMode, parse_cameras,
};

fn options(clip_seconds: u64) -> CaptureOptions {
    CaptureOptions {
        clip_length: ClipLength::from_secs(clip_seconds).expect("valid clip length"),
        ..CaptureOptions::default()
    }
}

fn cameras(specs: &[&str]) -> Vec<CameraSpec> {
    parse_cameras(specs).expect("valid camera specs")
}

/// Receives segments until `count` arrived or `timeout` passed.
fn collect(rx: &mpsc::Receiver<Segment>, count: usize, timeout: Duration) -> Vec<Segment> {
    let deadline = Instant::now() + timeout;
    let mut segments = Vec::new();
    while segments.len() < count {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(remaining) {
            Ok(segment) => segments.push(segment),
            Err(_) => break,
        }
    }
    segments
}

/// What ffprobe says about an MP4: its video codec and its duration in seconds.
#[derive(Debug)]
struct Probe {
    codec: String,
    duration: f64,
    json: String,
}

/// Runs ffprobe on the bytes (written to a temp file: in this test only, never by capture).
fn ffprobe(mp4: &[u8]) -> Probe {
    let mut file = tempfile::Builder::new()
        .suffix(".mp4")
        .tempfile()
        .expect("create a temp file for ffprobe");
    file.write_all(mp4).expect("write the clip for ffprobe");
    file.flush().expect("flush the clip for ffprobe");
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-show_entries",
            "format=duration",
            "-of",
            "json",
        ])
        .arg(file.path())
        .output()
        .expect("run ffprobe (install ffmpeg: scripts/install-deps.sh)");
    let json = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "ffprobe rejected the clip: {}\n{json}",
        String::from_utf8_lossy(&output.stderr)
    );
    Probe {
        codec: json_string(&json, "codec_name").expect("ffprobe reports a codec"),
        duration: json_string(&json, "duration")
            .and_then(|d| d.parse().ok())
            .expect("ffprobe reports a duration"),
        json,
    }
}

/// The string value of `"key": "value"` in ffprobe's JSON.
fn json_string(json: &str, key: &str) -> Option<String> {
    let after_key = &json[json.find(&format!("\"{key}\""))? + key.len() + 2..];
    let open = after_key.find('"')?;
    let rest = &after_key[open + 1..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn assert_standalone_mp4(segment: &Segment, expected_seconds: f64) -> Probe {
    assert_eq!(
        &segment.mp4[4..8],
        b"ftyp",
        "an MP4 starts with its ftyp box"
    );
    let probe = ffprobe(&segment.mp4);
    assert_eq!(probe.codec, "h264", "{}", probe.json);
    // Within a frame interval at 10 fps, or 10%, whichever is larger.
    let tolerance = (expected_seconds * 0.1).max(0.1);
    assert!(
        (probe.duration - expected_seconds).abs() <= tolerance,
        "clip lasts {} s, expected {expected_seconds} s: {}",
        probe.duration,
        probe.json
    );
    let wall = segment.end.duration_since(segment.start).as_secs_f64();
    assert!(
        (wall - probe.duration).abs() <= 0.1,
        "segment times span {wall} s but the MP4 lasts {} s",
        probe.duration
    );
    probe
}

fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

#[test]
fn test_camera_delivers_standalone_two_second_clips() {
    let (tx, rx) = mpsc::channel();
    let before = porchlight_node::clock::now().expect("clock");
    let supervisor = CaptureSupervisor::start(cameras(&["porch=test:320x240@10"]), options(2), tx)
        .expect("start capture");
    let segments = collect(&rx, 2, Duration::from_secs(12));
    let status = supervisor.status();
    supervisor.stop().expect("stop capture");

    assert!(
        segments.len() >= 2,
        "only {} segments in 12 s",
        segments.len()
    );
    for segment in &segments[..2] {
        assert_eq!(segment.camera, "porch");
        let probe = assert_standalone_mp4(segment, 2.0);
        eprintln!(
            "ffprobe: {}",
            probe.json.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        assert!(segment.start >= before.saturating_sub(Duration::from_secs(1)));
    }
    let (first, second) = (&segments[0], &segments[1]);
    assert!(first.start < first.end && first.end <= second.start);
    assert!(
        second.start.duration_since(first.end) <= Duration::from_millis(100),
        "clips are not contiguous: {:?} then {:?}",
        first,
        second
    );
    assert_eq!(status[0].name, "porch");
    assert_eq!(status[0].status, CameraStatus::Recording);
    assert!(status[0].clips_delivered >= 2);
    assert_eq!(status[0].last_clip_at, Some(segments[1].end));
}

#[test]
fn graceful_stop_delivers_the_partial_clip() {
    let (tx, rx) = mpsc::channel();
    let supervisor = CaptureSupervisor::start(cameras(&["test:320x240@10"]), options(10), tx)
        .expect("start capture");
    let handle = supervisor.status_handle();
    assert!(
        wait_for(Duration::from_secs(10), || handle
            .camera("test")
            .is_some_and(|c| c.status == CameraStatus::Recording)),
        "the test camera never started recording: {:?}",
        handle.snapshot()
    );
    std::thread::sleep(Duration::from_millis(1500));
    supervisor.stop().expect("a graceful stop reports no error");

    let segments: Vec<Segment> = rx.try_iter().collect();
    assert_eq!(segments.len(), 1, "exactly the partial clip: {segments:?}");
    let probe = ffprobe(&segments[0].mp4);
    assert_eq!(probe.codec, "h264");
    assert!(
        probe.duration > 0.9 && probe.duration < 5.0,
        "the partial clip should be shorter than 10 s: {}",
        probe.json
    );
    assert_standalone_mp4(&segments[0], probe.duration);
    let state = handle.camera("test").expect("camera listed");
    assert_eq!(state.status, CameraStatus::Stopped);
    assert_eq!(state.clips_delivered, 1);
}

#[test]
fn camera_specs_parse_into_checked_forms() {
    let spec = |s: &str| s.parse::<CameraSpec>().expect(s);

    let test = spec("test");
    assert_eq!(test.name().as_str(), "test");
    assert_eq!(
        test.source(),
        &Source::Test(TestMode {
            width: 1280,
            height: 720,
            fps: 15
        })
    );
    assert_eq!(
        spec("porch=test:320x240@10").source(),
        &Source::Test(TestMode {
            width: 320,
            height: 240,
            fps: 10
        })
    );
    assert_eq!(spec("porch=test:320x240@10").name().as_str(), "porch");
    assert_eq!(
        spec("test:@5").source(),
        &Source::Test(TestMode {
            width: 1280,
            height: 720,
            fps: 5
        })
    );
    assert_eq!(spec("test:640x480").to_string(), "test=test:640x480@15");

    let v4l2 = spec("v4l2:/dev/video2");
    assert_eq!(v4l2.name().as_str(), "video2");
    assert_eq!(
        v4l2.source(),
        &Source::V4l2 {
            device: "/dev/video2".into()
        }
    );
    assert_eq!(spec("v4l2").to_string(), "video0=v4l2:/dev/video0");

    let rtsp = spec("garage=rtsp://admin:hunter2@192.168.1.20:554/stream1?channel=1&password=x");
    assert_eq!(rtsp.name().as_str(), "garage");
    let Source::Rtsp(url) = rtsp.source() else {
        panic!("not rtsp: {rtsp:?}");
    };
    assert_eq!(url.user(), Some("admin"));
    assert_eq!(
        url.location(),
        "rtsp://192.168.1.20:554/stream1?channel=1&password=x"
    );
    let shown = format!("{rtsp} {rtsp:?} {}", rtsp.redacted());
    assert!(!shown.contains("hunter2"), "password leaked: {shown}");
    assert!(shown.contains("rtsp://admin:***@192.168.1.20:554/stream1?channel=1&password=***"));
    assert_eq!(spec("rtsp://cam.local/live").name().as_str(), "cam-local");
    let Source::Rtsp(v6) = spec("RTSPS://[::1]:8554/x").source().clone() else {
        panic!("not rtsp");
    };
    assert_eq!(v6.location(), "rtsps://[::1]:8554/x");

    let file = spec("file:/srv/demo/Front Door.mp4");
    assert_eq!(file.name().as_str(), "front-door");
    assert_eq!(
        file.source(),
        &Source::File {
            path: "/srv/demo/Front Door.mp4".into()
        }
    );
    assert_eq!(
        spec("file:///srv/a%20b.mp4").source(),
        &Source::File {
            path: "/srv/a b.mp4".into()
        }
    );
    assert_eq!(spec("clip=file:/x/a=b.mp4").name().as_str(), "clip");

    assert_eq!(parse_cameras::<&str>(&[]).expect("default").len(), 1);
    assert_eq!(
        parse_cameras::<&str>(&[]).expect("default")[0].to_string(),
        "test=test:1280x720@15"
    );
    assert!(parse_cameras(&["none"]).expect("none").is_empty());
    let two = parse_cameras(&["porch=test", "garage=rtsp://cam/1"]).expect("two cameras");
    assert_eq!(two.len(), 2);

    assert_eq!(ClipLength::default().as_secs(), 60);
    assert_eq!(ClipLength::from_secs(2).expect("2 s").as_secs(), 2);
}

#[test]
fn bad_camera_specs_get_clear_errors() {
    let err = |s: &str| s.parse::<CameraSpec>().expect_err(s).to_string();
    let list_err = |specs: &[&str]| parse_cameras(specs).expect_err("invalid list").to_string();

    let unknown = err("webcam");
    assert!(
        unknown.starts_with("unknown camera spec 'webcam'; use test"),
        "{unknown}"
    );
    assert!(
        unknown.contains("v4l2:/dev/videoN")
            && unknown.contains("rtsp://")
            && unknown.contains("file:PATH")
            && unknown.contains("none")
    );
    let typo = err("rtps://admin:hunter2@cam/x");
    assert!(
        typo.contains("'rtps://admin:***@cam/x'") && !typo.contains("hunter2"),
        "{typo}"
    );
    assert_eq!(
        err(""),
        format!(
            "empty camera spec; {}",
            porchlight_node::capture::ACCEPTED_FORMS
        )
    );
    assert!(err("porch=").starts_with("empty camera spec"));

    assert!(
        err("Porch=test").starts_with("bad camera name 'Porch': it may only hold lowercase"),
        "{}",
        err("Porch=test")
    );
    assert!(err("-x=test").contains("must start with a lowercase letter or a digit"));
    assert!(err(&format!("{}=test", "a".repeat(33))).contains("longer than 32 characters"));
    assert!(err("=test").starts_with("bad camera name '': it is empty"));

    let mode = err("test:320x241@10");
    assert!(
        mode.starts_with("bad test camera mode in 'test:320x241@10': 320x241 is odd"),
        "{mode}"
    );
    assert!(err("test:320by240").contains("'320by240' is not WIDTHxHEIGHT"));
    assert!(err("test:320x240@0").contains("frame rate 0 is out of range 1 to 60"));
    assert!(err("test:99999x240").contains("width 99999 is out of range"));
    assert!(err("test:").contains("the mode after 'test:' is empty"));
    assert!(err("test:axb").contains("width 'a' is not a whole number"));

    assert!(
        err("v4l2:video0")
            .starts_with("bad v4l2 camera 'v4l2:video0': the device path must be absolute")
    );
    assert!(err("v4l2:").contains("the device path is empty"));

    let rtsp = err("rtsp://admin:hunter2@:554/x");
    assert!(
        rtsp.starts_with("bad rtsp camera url 'rtsp://admin:***@:554/x': it has no host"),
        "{rtsp}"
    );
    assert!(!rtsp.contains("hunter2"));
    assert!(err("rtsp://cam:port/x").contains("the port is not a number"));
    assert!(err("rtsp://cam/a b").contains("spaces"));
    assert!(err("rtsp://u:p%zz@cam/x").contains("the password has a bad %-escape"));
    assert!(!err("rtsp://u:p%zz@cam/x").contains("p%zz"));

    assert!(err("file:").starts_with("bad file camera 'file:': the path is empty"));
    assert!(err("file:/srv/").contains("the path names a directory"));
    assert!(err("file://relative.mp4").contains("file:///"));

    assert!(err("none").contains("'none' means no camera"));
    assert_eq!(
        list_err(&["none", "test"]),
        "'none' cannot be combined with other cameras; drop 'none' or the other camera specs"
    );
    assert!(list_err(&["porch=none"]).contains("'porch=none' names a camera that does not exist"));
    assert_eq!(
        list_err(&["test", "test:320x240"]),
        "two cameras are named 'test'; give each its own name, e.g. front=test:320x240@15"
    );
    assert!(matches!(
        ClipLength::from_secs(0),
        Err(SpecError::ClipLength { seconds: 0 })
    ));
    assert_eq!(
        ClipLength::from_secs(3601)
            .expect_err("too long")
            .to_string(),
        "clip length of 3601 s is out of range; use 1 to 3600 seconds"
    );
}

#[test]
fn failing_camera_retries_with_backoff_while_another_keeps_recording() {
    let (tx, rx) = mpsc::channel();
    let supervisor = CaptureSupervisor::start(
        cameras(&[
            "porch=test:320x240@10",
            "broken=v4l2:/dev/video99",
            "missing=file:/nonexistent/porchlight-demo.mp4",
            "garage=rtsp://admin:hunter2@127.0.0.1:9/stream",
        ]),
        options(1),
        tx,
    )
    .expect("start capture");
    let handle = supervisor.status_handle();

    // The first retry comes after 1 s, the second after 2 s more: wait for attempt 2.
    let retried = wait_for(Duration::from_secs(8), || {
        ["broken", "missing"].iter().all(|name| {
            matches!(
                handle.camera(name).map(|c| c.status),
                Some(CameraStatus::Retrying { attempt, .. }) if attempt >= 2
            )
        })
    });
    let segments = collect(&rx, 2, Duration::from_secs(6));
    let status = handle.snapshot();
    supervisor.stop().expect("stop capture");

    assert!(retried, "failing cameras did not retry: {status:?}");
    assert!(
        segments.len() >= 2,
        "the healthy camera stalled: {status:?}"
    );
    assert!(segments.iter().all(|s| s.camera == "porch"));
    let porch = &status[0];
    assert_eq!(porch.status, CameraStatus::Recording);
    assert!(porch.clips_delivered >= 1);

    let now = porchlight_node::clock::now().expect("clock");
    for name in ["broken", "missing"] {
        let camera = status.iter().find(|c| c.name == name).expect("listed");
        let CameraStatus::Retrying {
            attempt,
            next_retry_at,
            last_error,
        } = &camera.status
        else {
            panic!("{name} is not retrying: {camera:?}");
        };
        assert!(*attempt >= 2);
        // Attempt n waits 2^(n-1) s: the next retry is in the future, at most that far.
        let wait = next_retry_at.duration_since(now);
        assert!(
            wait <= Duration::from_secs(1 << (attempt - 1)),
            "{camera:?}"
        );
        assert!(!last_error.is_empty());
        // In the owner's words, not GStreamer's element names.
        for element in ["filesrc", "v4l2src", "decodebin", "qtdemux", "src0", "bin0"] {
            assert!(!last_error.contains(element), "{name}: {last_error}");
        }
        assert_eq!(camera.clips_delivered, 0);
    }
    let broken = status.iter().find(|c| c.name == "broken").expect("listed");
    assert!(
        format!("{:?}", broken.status).contains("/dev/video99"),
        "{broken:?}"
    );

    let garage = status.iter().find(|c| c.name == "garage").expect("listed");
    let shown = format!("{garage:?}");
    assert!(
        !shown.contains("hunter2"),
        "password leaked into status: {shown}"
    );
    assert_eq!(garage.spec, "rtsp://admin:***@127.0.0.1:9/stream");
}

/// The child half of `capture_writes_nothing_to_tmpdir_or_cwd`.
const CHILD_ENV: &str = "PORCHLIGHT_CAPTURE_TEST_CHILD";
/// The signal a process gets when it writes past its file size limit (Linux).
const SIGXFSZ: i32 = 25;

#[test]
fn capture_writes_nothing_to_tmpdir_or_cwd() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // In the child: TMPDIR and the working directory are the parent's empty tempdir.
        let (tx, rx) = mpsc::channel();
        let supervisor = CaptureSupervisor::start(cameras(&["test:320x240@10"]), options(1), tx)
            .expect("start capture");
        let segments = collect(&rx, 2, Duration::from_secs(10));
        supervisor.stop().expect("stop capture");
        let segments: Vec<Segment> = segments.into_iter().chain(rx.try_iter()).collect();
        assert!(segments.len() >= 2, "only {} segments", segments.len());
        println!("child delivered {} segments", segments.len());
        return;
    }
    // The child must not need to write GStreamer's plugin registry cache: make it current.
    porchlight_node::capture::init().expect("initialize gstreamer");
    let dir = tempfile::tempdir().expect("create a tempdir");
    let test_binary = std::env::current_exe().expect("test binary path");
    // `ulimit -f 0`: the child may not write a single byte to any regular file anywhere
    // (a write raises SIGXFSZ and kills it), which also catches temp files that live only
    // for a moment. Pipes (its stdout and stderr) are not files, so they still work.
    // ORC_CODE=backup turns off ORC's SIMD JIT, the one writer this would otherwise trip
    // over: ORC maps its generated machine code through an unlinked temp file (in
    // XDG_RUNTIME_DIR, HOME or TMPDIR). That file holds code, never video.
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -f 0 && exec \"$0\" \"$@\""])
        .arg(&test_binary)
        .args([
            "capture_writes_nothing_to_tmpdir_or_cwd",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("GST_REGISTRY_UPDATE", "no")
        .env("ORC_CODE", "backup")
        .env("TMPDIR", dir.path())
        .env("TMP", dir.path())
        .env("TEMP", dir.path())
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the child test");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    // Watch while the child records, not just afterwards: a temp file that is deleted at
    // the end of each clip (mp4mux faststart does that) must be caught too.
    let mut seen = BTreeSet::new();
    let status = loop {
        seen.extend(list_files(dir.path()));
        if let Some(status) = child.try_wait().expect("wait for the child test") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    seen.extend(list_files(dir.path()));
    let stdout = stdout.join().expect("child stdout");
    let stderr = stderr.join().expect("child stderr");
    assert_ne!(
        status.signal(),
        Some(SIGXFSZ),
        "capture wrote to a file (the child exceeded its file size limit of 0):\n{stdout}\n{stderr}"
    );
    assert!(
        status.success() && stdout.contains("child delivered"),
        "child failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(seen.is_empty(), "capture wrote to disk: {seen:?}");
}

/// Reads a child's pipe to the end on a thread, so the child never blocks on it.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(list_files(&path));
        }
        found.push(path);
    }
    found
}
