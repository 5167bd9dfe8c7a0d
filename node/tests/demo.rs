//! Runs the real `porchlight` binary: `--help` lists the commands that exist, and `demo`
//! runs the neighborhood end to end (four daemons on loopback), tells the story, exports a
//! real MP4, leaves audit logs that verify and no plaintext in any data dir, and stops every
//! daemon it started.

use std::path::{Path, PathBuf};
use std::process::Command;

use porchlight_core::AuditEvent;
use porchlight_node::audit_log::{read_all, verify};
use porchlight_node::data_dir::DataDir;
use porchlight_node::keys::NodeKeys;

fn porchlight() -> Command {
    Command::new(env!("CARGO_BIN_EXE_porchlight"))
}

#[test]
fn help_lists_the_demo_command() {
    let out = porchlight().arg("--help").output().expect("binary runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo"), "{text}");
    assert!(text.contains("consent"), "{text}");
}

#[test]
fn unknown_command_is_one_clear_error() {
    let out = porchlight()
        .arg("frobnicate")
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

#[test]
fn demo_runs_the_neighborhood_and_leaves_its_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("demo");
    let out = porchlight()
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "the demo's story is on stdout: {stderr}");
    // The demo names its directory as it resolved it.
    let dir = dir.canonicalize().expect("the demo's directory stays");

    // The story: who asked, what each owner saw and did, what left, what was refused.
    for (line, times) in [
        ("verified by the owner's trust list", 3),
        ("\"Springfield Police Dept.\" (police, Springfield)", 3),
        ("case SPD-2026-1142", 3),
        ("home1     approves for 1 hour", 1),
        ("home2     denies", 1),
        ("home3     never answers", 1),
        ("deleted the footage it had received", 1),
        ("home1 refuses", 1),
        ("fetch refused for", 1),
        ("every signature and hash link verifies", 3),
        ("transparency report at", 3),
        ("stopped cleanly", 4),
    ] {
        assert_eq!(
            stdout.matches(line).count(),
            times,
            "{line:?} should appear {times} time(s) in:\n{stdout}"
        );
    }
    // The request's window ends in the future, so each home matched it once the clip being
    // recorded was sealed: one exported MP4 per clip recorded by then, at least one.
    assert!(stdout.matches("bytes, MP4").count() >= 1, "{stdout}");
    assert!(stdout.contains(&dir.display().to_string()), "{stdout}");

    // The police's export: real MP4 files, named in the output.
    let exported = files_under(&dir.join("authority-export"));
    assert!(!exported.is_empty(), "no export in:\n{stdout}");
    for file in &exported {
        let bytes = std::fs::read(file).expect("readable export");
        assert!(bytes.len() > 1000, "{} is too small", file.display());
        assert_eq!(&bytes[4..8], b"ftyp", "{} is not an MP4", file.display());
        assert!(stdout.contains(&file.display().to_string()), "{stdout}");
    }

    // Each node's audit log verifies against its own key and records its part.
    let events = |name: &str| -> Vec<AuditEvent> {
        let data = DataDir::at(dir.join(name));
        let peer = NodeKeys::load(&data).expect("keys").identity.peer_id();
        let report = verify(&data.audit_log(), &peer).expect("a log");
        assert!(report.is_intact(), "{name}: {report:?}");
        assert!(report.verified > 0, "{name}'s log is empty");
        read_all(&data.audit_log())
            .expect("a log")
            .into_iter()
            .map(|record| record.entry.event)
            .collect()
    };
    let granting = events("home1");
    for (what, found) in [
        (
            "granted",
            granting
                .iter()
                .any(|e| matches!(e, AuditEvent::Granted { .. })),
        ),
        (
            "fetch completed",
            granting
                .iter()
                .any(|e| matches!(e, AuditEvent::FetchCompleted { .. })),
        ),
        (
            "revoked",
            granting
                .iter()
                .any(|e| matches!(e, AuditEvent::Revoked { .. })),
        ),
        (
            "fetch refused",
            granting
                .iter()
                .any(|e| matches!(e, AuditEvent::FetchRefused { .. })),
        ),
    ] {
        assert!(found, "home1's log lacks {what}: {granting:?}");
    }
    let denying = events("home2");
    assert!(
        denying
            .iter()
            .any(|e| matches!(e, AuditEvent::Denied { .. }))
    );
    let silent = events("home3");
    assert!(
        silent
            .iter()
            .all(|e| matches!(e, AuditEvent::RequestReceived { .. })),
        "home3 never answered: {silent:?}"
    );
    let police = events("authority");
    assert!(
        police
            .iter()
            .any(|e| matches!(e, AuditEvent::GrantEnded { deleted: true, .. })),
        "{police:?}"
    );

    // No plaintext video in any data dir (the export is the one place it may be).
    for name in ["home1", "home2", "home3", "authority"] {
        for file in all_files(&dir.join(name)) {
            let bytes = std::fs::read(&file).expect("readable");
            assert!(
                !bytes.windows(4).any(|w| w == b"ftyp"),
                "plaintext MP4 box in {}",
                file.display()
            );
        }
    }

    // Every daemon it started has stopped.
    let marker = dir.display().to_string();
    let running: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&marker) && cmdline.contains(" node "))
        .collect();
    assert!(running.is_empty(), "still running: {running:?}");
}

#[test]
fn demo_refuses_a_directory_that_is_not_empty() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let keep = tmp.path().join("notes.txt");
    std::fs::write(&keep, "mine").expect("write");
    let out = porchlight()
        .args(["demo", "--dir"])
        .arg(tmp.path())
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(files_under(tmp.path()), [keep]);
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for path in files_under(&dir) {
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
