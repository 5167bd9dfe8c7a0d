//! The node fails closed when it cannot write its records: on a real, full tmpfs, an
//! approval and a fetch are refused, `status` says the node is degraded, and once space
//! is back the node recovers by itself, the refused steps can be taken, and the audit log
//! verifies with an entry for every clip that left. Also through the fault-injection seam
//! (`PORCHLIGHT_FAULTS_FILE`): a state file that cannot be written refuses a revocation,
//! and the token stays live, as the owner was told.
//!
//! Runs as root (it mounts a tmpfs), as CI does.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::{Peer, json, rfc3339, run_ok, token_of, wait_for};

/// A tmpfs mounted for one test, unmounted when dropped (after the daemons on it stop).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&path).expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} (this test needs root, as CI has)",
            path.display()
        );
        Tmpfs { path }
    }

    /// Writes a filler file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            if file.write_all(&block).is_err() {
                break;
            }
        }
        // Then small writes, so not even a page is left.
        while file.write_all(&[0u8; 512]).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A short H.264 MP4, made with ffmpeg (installed by scripts/install-deps.sh).
fn sample_mp4(dir: &Path) -> PathBuf {
    let path = dir.join("sample.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=5",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (scripts/install-deps.sh installs it)");
    assert!(status.success(), "ffmpeg made no sample clip");
    path
}

/// Imports a clip (through the owner's running daemon) that started `ago` seconds back, so
/// a request for the last ten minutes matches it.
fn import_clip(owner_dir: &Path, file: &Path, ago: u64) {
    let start = rfc3339(SystemTime::now() - Duration::from_secs(ago));
    run_ok(
        support::porchlight(owner_dir)
            .args(["clips", "import"])
            .arg(file)
            .args(["--camera", "porch", "--start", &start]),
    );
}

/// A direct request from `requester` to `owner` for the last ten minutes; its id, once the
/// owner is prompted.
fn ask(requester: &Peer, owner: &Peer, reason: &str) -> String {
    let now = SystemTime::now();
    let window = (rfc3339(now - Duration::from_secs(600)), rfc3339(now));
    requester
        .ask_directly(owner, (&window.0, &window.1), reason, &[])
        .0
}

fn events(peer: &Peer) -> Vec<Value> {
    peer.audit()
        .into_iter()
        .map(|entry| entry["event"].clone())
        .collect()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

fn status_json(peer: &Peer) -> (bool, Value) {
    let out = peer
        .cmd()
        .args(["status", "--json"])
        .output()
        .expect("status runs");
    let status = serde_json::from_slice(&out.stdout).expect("status prints JSON");
    (out.status.success(), status)
}

fn all_clips_fetched(requester: &Peer, token_id: &str) -> bool {
    let tokens = requester.tokens();
    token_of(&tokens, token_id).is_some_and(|token| {
        let want = token["clips"].as_array().map_or(usize::MAX, Vec::len);
        token["clips_transferred"]
            .as_array()
            .is_some_and(|done| done.len() == want)
    })
}

/// Every clip the owner's log says left (`fetch_completed`) was first recorded as served,
/// under the same token, to the same peer.
fn every_release_was_recorded_first(events: &[Value]) {
    for (index, completed) in events.iter().enumerate() {
        if completed["type"] != "fetch_completed" {
            continue;
        }
        let served_before = events[..index].iter().any(|e| {
            e["type"] == "fetch_served"
                && e["token_id"] == completed["token_id"]
                && e["clip_id"] == completed["clip_id"]
                && e["peer"] == completed["peer"]
        });
        assert!(served_before, "released without a prior entry: {completed}");
    }
}

#[test]
fn a_full_disk_refuses_approvals_and_fetches_and_the_node_recovers_by_itself() {
    let root = tempfile::tempdir().expect("temp dir");
    let disk = Tmpfs::mount(root.path().join("owner-disk"), "8m");
    let (owner_dir, _) = Peer::init(&disk.path, "owner");
    let owner = Peer::start(owner_dir, &["--camera", "none"]);
    import_clip(&owner.dir, &sample_mp4(root.path()), 120);
    let (requester_dir, _) = Peer::init(root.path(), "requester");
    let requester = Peer::start(requester_dir, &["--camera", "none"]);

    let first = ask(&requester, &owner, "a parcel went missing");
    let second = ask(&requester, &owner, "and another one");
    // States in words on both sides, not Rust names.
    let listed =
        String::from_utf8(run_ok(owner.cmd().args(["requests", "list"])).stdout).expect("text");
    assert!(listed.contains("awaiting a decision"), "{listed}");
    let asked =
        String::from_utf8(run_ok(requester.cmd().args(["requests", "list"])).stdout).expect("text");
    assert!(asked.contains("sent, no grant yet"), "{asked}");
    for rust_name in ["Pending", "Sent", "GrantedByRule"] {
        assert!(
            !listed.contains(rust_name) && !asked.contains(rust_name),
            "{rust_name}"
        );
    }

    // The requester is paused, so the grant waits in its socket and nothing is fetched
    // until the owner's disk is full.
    requester.signal("-STOP");
    let granted = json(
        owner
            .cmd()
            .args(["requests", "approve", &first, "--for", "1h"]),
    );
    let first_token = granted["id"].as_str().expect("token id").to_owned();
    let filler = disk.fill();

    // An approval now is refused, with the reason, and the request stays pending.
    let refused = owner
        .cmd()
        .args(["requests", "approve", &second, "--for", "1h"])
        .output()
        .expect("approve runs");
    assert!(
        !refused.status.success(),
        "an unrecordable approval went through"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot write its") && stderr.contains("nothing left this home"),
        "{stderr}"
    );
    assert_eq!(
        owner.incoming(&second).expect("still listed")["state"],
        "pending"
    );
    let (healthy, status) = status_json(&owner);
    assert!(!healthy, "status exits non-zero while degraded");
    assert!(
        !status["degraded"].as_array().expect("degraded").is_empty(),
        "{status}"
    );

    // The requester wakes up and tries to fetch: the owner cannot record it, so nothing
    // is served (the streams are closed unanswered and the requester backs off).
    requester.signal("-CONT");
    wait_for(Duration::from_secs(20), "a refused fetch attempt", || {
        let log = requester.log_text();
        (log.contains("fetch interrupted") || log.contains("fetch failed")).then_some(())
    });
    let during = events(&owner);
    assert_eq!(count(&during, "fetch_served"), 0, "{during:#?}");
    assert!(!all_clips_fetched(&requester, &first_token));

    // Space comes back: the node is healthy again with no restart, the refused approval
    // can be made, and the fetches go through.
    std::fs::remove_file(filler).expect("free the disk");
    wait_for(Duration::from_secs(15), "the node to recover", || {
        status_json(&owner).0.then_some(())
    });
    let granted = json(
        owner
            .cmd()
            .args(["requests", "approve", &second, "--for", "1h"]),
    );
    let second_token = granted["id"].as_str().expect("token id").to_owned();
    run_ok(requester.cmd().args(["fetch", &first]));
    wait_for(Duration::from_secs(30), "both grants fetched", || {
        (all_clips_fetched(&requester, &first_token)
            && all_clips_fetched(&requester, &second_token))
        .then_some(())
    });

    // The chain continues with no gap, and every clip that left has its entries.
    run_ok(owner.cmd().args(["audit", "verify"]));
    let after = events(&owner);
    assert_eq!(count(&after, "granted"), 2, "{after:#?}");
    every_release_was_recorded_first(&after);
    wait_for(
        Duration::from_secs(10),
        "the completed fetches recorded",
        || (count(&events(&owner), "fetch_completed") >= 2).then_some(()),
    );

    // The human list fits a terminal; --wide shows whole peer ids.
    let narrow =
        String::from_utf8(run_ok(owner.cmd().args(["audit", "list"])).stdout).expect("text");
    assert!(
        narrow.lines().all(|line| line.chars().count() <= 100),
        "{narrow}"
    );
    assert!(!narrow.contains(&requester.peer_id), "{narrow}");
    let wide = String::from_utf8(run_ok(owner.cmd().args(["audit", "list", "--wide"])).stdout)
        .expect("text");
    assert!(wide.contains(&requester.peer_id), "{wide}");
    drop((owner, requester));
}

#[test]
fn a_revocation_that_cannot_be_saved_is_refused_and_the_token_stays_live() {
    let root = tempfile::tempdir().expect("temp dir");
    let faults = root.path().join("faults");
    std::fs::write(&faults, "").expect("fault file");
    let (owner_dir, _) = Peer::init(root.path(), "owner");
    let owner = Peer::start_with_env(
        owner_dir,
        &["--camera", "none"],
        &[("PORCHLIGHT_FAULTS_FILE", &faults)],
    );
    import_clip(&owner.dir, &sample_mp4(root.path()), 120);
    let (requester_dir, _) = Peer::init(root.path(), "requester");
    let requester = Peer::start(requester_dir, &["--camera", "none"]);
    let request_id = ask(&requester, &owner, "a broken window");
    let granted = json(
        owner
            .cmd()
            .args(["requests", "approve", &request_id, "--for", "1h"]),
    );
    let token_id = granted["id"].as_str().expect("token id").to_owned();
    wait_for(Duration::from_secs(30), "the fetch", || {
        all_clips_fetched(&requester, &token_id).then_some(())
    });
    let before = owner.audit().len();

    // The state file cannot be written: the revocation is refused and recorded nowhere.
    std::fs::write(&faults, "state-save\n").expect("fault on");
    let refused = owner
        .cmd()
        .args(["tokens", "revoke", &token_id])
        .output()
        .expect("revoke runs");
    assert!(
        !refused.status.success(),
        "an unsaved revocation was confirmed"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("consent state"));
    assert_eq!(owner.audit().len(), before, "a refused step left an entry");
    let tokens = owner.tokens();
    assert_eq!(
        token_of(&tokens, &token_id).expect("listed")["state"],
        "active"
    );
    assert!(!status_json(&owner).0);

    // Fault off: the node recovers, the same revocation goes through and reaches the
    // requester, which deletes its copy.
    std::fs::write(&faults, "").expect("fault off");
    wait_for(Duration::from_secs(15), "the node to recover", || {
        status_json(&owner).0.then_some(())
    });
    run_ok(owner.cmd().args(["tokens", "revoke", &token_id]));
    wait_for(
        Duration::from_secs(30),
        "the revocation at the requester",
        || {
            let tokens = requester.tokens();
            (token_of(&tokens, &token_id)?["state"] == "deleted").then_some(())
        },
    );
    run_ok(owner.cmd().args(["audit", "verify"]));
}
