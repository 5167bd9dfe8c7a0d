//! Runs the real `porchlight` binary: `--help` lists the commands that exist, and `demo`
//! completes the consent walkthrough leaving only ciphertext on disk.

use std::path::Path;
use std::process::Command;

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
fn demo_completes_and_leaves_no_plaintext() {
    let dir = std::env::temp_dir().join(format!("porchlight-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = porchlight()
        .args(["demo", "--dir"])
        .arg(&dir)
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "verified Springfield Fire Department",
        "shows as: unverified",
        "byte-identical",
        "stranger presenting the same token was refused",
        "detected, nothing released",
        "owner revoked token",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    let files = files_under(&dir);
    assert!(!files.is_empty(), "the demo should leave its clip behind");
    for file in files {
        let bytes = std::fs::read(&file).expect("readable");
        // The stand-in footage starts with an MP4 `ftyp` box; it must never reach the disk.
        assert!(
            !bytes.windows(8).any(|w| w == b"ftypisom"),
            "plaintext MP4 box in {}",
            file.display()
        );
        assert!(
            bytes.starts_with(b"PLCLIPv1"),
            "{} is not a sealed clip",
            file.display()
        );
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("demo dir exists")
        .map(|entry| entry.expect("dir entry").path())
        .collect()
}
