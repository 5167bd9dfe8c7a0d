//! `make install` puts the binary, its manual page and its shell completions where the
//! system looks for them; `porchlight completions` and `porchlight man` print them.

use std::path::Path;
use std::process::Command;

fn porchlight(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_porchlight"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("text")
}

#[test]
fn completions_know_the_commands_and_the_manual_page_names_them() {
    let bash = porchlight(&["completions", "bash"]);
    assert!(bash.contains("complete -F _porchlight"), "{bash}");
    for command in ["requests", "tokens", "audit", "completions"] {
        assert!(bash.contains(command), "bash completes {command}");
    }
    assert!(porchlight(&["completions", "zsh"]).starts_with("#compdef porchlight"));
    assert!(porchlight(&["completions", "fish"]).contains("complete -c porchlight"));
    let man = porchlight(&["man"]);
    assert!(man.contains(".TH porchlight 1"), "{man}");
    assert!(man.contains("requests"));

    // An unknown shell is one clear error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_porchlight"))
        .args(["completions", "tcsh"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'tcsh'"));
}

#[test]
fn make_install_files_lays_out_the_binary_page_and_completions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dest = tempfile::tempdir().expect("temp dir");
    let status = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(&root)
        .arg("install-files")
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_porchlight")))
        .arg(format!("DESTDIR={}", dest.path().display()))
        .arg("PREFIX=/usr")
        .status()
        .expect("make runs");
    assert!(status.success());
    let usr = dest.path().join("usr");
    for (path, starts) in [
        ("share/man/man1/porchlight.1", ".ie"),
        (
            "share/bash-completion/completions/porchlight",
            "_porchlight()",
        ),
        (
            "share/zsh/site-functions/_porchlight",
            "#compdef porchlight",
        ),
        (
            "share/fish/vendor_completions.d/porchlight.fish",
            "# Print an optspec",
        ),
    ] {
        let text =
            std::fs::read_to_string(usr.join(path)).unwrap_or_else(|err| panic!("{path}: {err}"));
        assert!(
            text.starts_with(starts),
            "{path} starts {:?}",
            &text[..text.len().min(40)]
        );
    }
    let installed = usr.join("bin/porchlight");
    let version = Command::new(&installed)
        .arg("--version")
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("porchlight "));
}
