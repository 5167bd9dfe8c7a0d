//! The mesh and the consent flow end to end: real `porchlight` daemons on loopback, talking
//! libp2p over real TCP, driven through the real CLI.
//!
//! A neighborhood of three homes (test cameras, one cell, trusting a demo root) and an
//! authority (a credential from that root) proves, with the same commands an owner types:
//! an area request reaches every home; one grants, one denies, one stays silent; the
//! authority fetches, and the decrypted MP4 is byte-identical to the owner's own export;
//! revocation deletes what was received and refuses the next fetch; a direct request by
//! multiaddr; a grant that expires deletes its footage; a replayed request is refused once
//! and never prompts the owner twice; an owner's raised `[limits]` let through a burst the
//! defaults stop; the requester is shown the owner's deny message, a revoked grant as
//! revoked (also after a restart, and in `fetch`'s refusal), and a window still being
//! recorded, which the owner's node matches once the clip in progress is sealed; and every
//! node's audit log verifies.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::{Peer, json, porchlight, rfc3339, run_ok, token_of, wait_for};

/// Homes opt in to this spot; the area request covers it.
const LOCATION: &str = "52.3702,4.8952";
const AREA: &str = "52.3702,4.8952,300";
const CAMERA: &str = "porch=test:160x120@5";

/// What only these tests ask of a node.
impl Peer {
    fn mesh(&self) -> Value {
        json(self.cmd().arg("mesh"))
    }

    fn clips(&self) -> Vec<Value> {
        json(self.cmd().args(["clips", "list"]))
            .as_array()
            .expect("a list")
            .clone()
    }
}

/// The authority's root, its credential, and homes that trust the root.
struct Neighborhood {
    _root: tempfile::TempDir,
    authority: Peer,
    homes: Vec<Peer>,
}

fn neighborhood(homes: usize, home_flags: &[&str]) -> Neighborhood {
    let root = tempfile::tempdir().expect("temp dir");
    let root_key = root.path().join("root.key");
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_porchlight"))
            .args(["authority", "root-keygen", "-o"])
            .arg(&root_key),
    );
    let root_public = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|word| word.starts_with("12D3KooW"))
        .expect("root-keygen prints the root's public key")
        .to_owned();

    // The authority's peer id must be known before its credential can be issued.
    let (authority_dir, authority_id) = Peer::init(root.path(), "authority");
    let credential = root.path().join("authority.cred");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_porchlight"))
            .args(["authority", "issue", "--root-key"])
            .arg(&root_key)
            .args([
                "--peer",
                &authority_id,
                "--name",
                "Springfield Police",
                "--jurisdiction",
                "Springfield",
                "--role",
                "police",
                "-o",
            ])
            .arg(&credential),
    );

    let mut started = Vec::new();
    let mut bootstrap: Option<String> = None;
    for index in 0..homes {
        let (dir, _) = Peer::init(root.path(), &format!("home{index}"));
        run_ok(porchlight(&dir).args(["trust", "add", &root_public, "--label", "demo root"]));
        let mut flags: Vec<&str> = vec!["--camera", CAMERA, "--location", LOCATION];
        flags.extend_from_slice(home_flags);
        let boot;
        if let Some(address) = &bootstrap {
            boot = address.clone();
            flags.extend_from_slice(&["--bootstrap", &boot]);
        }
        let home = Peer::start(dir, &flags);
        if bootstrap.is_none() {
            bootstrap = Some(home.address.clone());
        }
        started.push(home);
    }
    let boot = bootstrap.expect("at least one home");
    let authority = Peer::start(
        authority_dir,
        &[
            "--camera",
            "none",
            "--credential",
            credential.to_str().expect("utf-8 path"),
            "--bootstrap",
            &boot,
        ],
    );
    // Every home has recorded something and announced its cell.
    for home in &started {
        wait_for(Duration::from_secs(60), "a recorded clip", || {
            (!home.clips().is_empty()).then_some(())
        });
        wait_for(Duration::from_secs(60), "the cell announced", || {
            (home.mesh()["cells_announced"].as_u64()? >= 1).then_some(())
        });
    }
    Neighborhood {
        _root: root,
        authority,
        homes: started,
    }
}

fn window() -> (String, String) {
    let now = SystemTime::now();
    (
        rfc3339(now - Duration::from_secs(600)),
        rfc3339(now + Duration::from_secs(60)),
    )
}

fn audit_verifies(peer: &Peer) {
    let out = run_ok(peer.cmd().args(["audit", "verify"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.is_empty(), "audit verify says what it checked");
}

fn audit_events(peer: &Peer) -> Vec<String> {
    let list = json(peer.cmd().args(["audit", "list"]));
    list.as_array()
        .expect("a list")
        .iter()
        .map(|entry| {
            entry["event"]["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn outgoing(peer: &Peer, request_id: &str) -> Option<Value> {
    peer.requests()["outgoing"]
        .as_array()?
        .iter()
        .find(|r| r["request_id"] == request_id)
        .cloned()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for path in files_in(&dir) {
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn an_area_request_is_granted_by_one_home_denied_by_one_and_ignored_by_one() {
    let hood = neighborhood(3, &[]);
    let authority = &hood.authority;
    let [granting, denying, silent] = [&hood.homes[0], &hood.homes[1], &hood.homes[2]];
    let (from, to) = window();
    let sent = json(authority.cmd().args([
        "request",
        "--area",
        AREA,
        "--from",
        &from,
        "--to",
        &to,
        "--reason",
        "hit and run on Elm St",
        "--case",
        "SPD-2026-1142",
        "--for",
        "1h",
    ]));
    let request_id = sent["id"].as_str().expect("the request id").to_owned();

    // Every home in the cell is prompted, and sees the authority as verified.
    for home in &hood.homes {
        let incoming = wait_for(Duration::from_secs(60), "the prompt at every home", || {
            home.incoming(&request_id)
        });
        assert_eq!(incoming["state"], "pending");
        assert_eq!(incoming["requester_status"], "verified");
        assert_eq!(incoming["authority"]["name"], "Springfield Police");
        assert_eq!(incoming["requester_peer"], authority.peer_id.as_str());
        assert_eq!(incoming["case_number"], "SPD-2026-1142");
        assert!(incoming["area"].as_bool().expect("area flag"));
        assert!(
            !incoming["matching_clips"]
                .as_array()
                .expect("clips")
                .is_empty()
        );
    }

    let granted = json(
        granting
            .cmd()
            .args(["requests", "approve", &request_id, "--for", "1h"]),
    );
    let token_id = granted["id"].as_str().expect("a token id").to_owned();
    run_ok(denying.cmd().args(["requests", "deny", &request_id]));

    // The authority receives exactly the one grant and fetches every clip in it.
    let token = wait_for(Duration::from_secs(60), "the grant to be fetched", || {
        let tokens = authority.tokens();
        let token = token_of(&tokens, &token_id)?.clone();
        (token["clips_transferred"].as_array()?.len() == token["clips"].as_array()?.len())
            .then_some(token)
    });
    assert_eq!(token["direction"], "received");
    assert_eq!(token["owner"], granting.peer_id.as_str());
    let out = outgoing(authority, &request_id).expect("the outgoing request");
    assert_eq!(out["state"], "granted");
    assert_eq!(out["grants"].as_array().expect("grants").len(), 1);
    assert!(
        out["denied_by"].as_array().expect("denials").is_empty(),
        "a silent deny tells nothing"
    );

    // Received footage is stored encrypted: no MP4 box anywhere under the data dir.
    for file in all_files(&authority.dir.join("received")) {
        let bytes = std::fs::read(&file).expect("readable");
        assert!(
            !bytes.windows(4).any(|w| w == b"ftyp"),
            "plaintext MP4 in {}",
            file.display()
        );
    }

    // The decrypted export equals the owner's own export, byte for byte.
    let export = hood._root.path().join("export");
    let fetched = json(
        authority
            .cmd()
            .args(["fetch", &request_id, "-o"])
            .arg(&export),
    );
    let exported = fetched["exported"].as_array().expect("exported files");
    assert_eq!(
        exported.len(),
        token["clips"].as_array().expect("clips").len()
    );
    for clip in token["clips"].as_array().expect("clips") {
        let clip = clip.as_str().expect("clip id");
        let received = std::fs::read(export.join(format!("{clip}.mp4"))).expect("exported clip");
        let own = hood._root.path().join(format!("own-{clip}.mp4"));
        run_ok(
            granting
                .cmd()
                .args(["clips", "export", clip, "-o"])
                .arg(&own),
        );
        assert_eq!(
            received,
            std::fs::read(&own).expect("owner export"),
            "clip {clip} differs"
        );
        assert_eq!(&received[4..8], b"ftyp", "an MP4");
    }

    // Revocation: the authority deletes what it received, and a new fetch is refused.
    run_ok(granting.cmd().args(["tokens", "revoke", &token_id]));
    wait_for(
        Duration::from_secs(30),
        "the received footage to be deleted",
        || {
            let tokens = authority.tokens();
            (token_of(&tokens, &token_id)?["state"] == "deleted").then_some(())
        },
    );
    assert!(
        all_files(&authority.dir.join("received"))
            .iter()
            .all(|f| !f.to_string_lossy().contains(&token_id)),
        "received files remain after revocation"
    );
    run_ok(authority.cmd().args(["fetch", &token_id]));
    wait_for(
        Duration::from_secs(30),
        "the owner to refuse the fetch",
        || {
            audit_events(granting)
                .iter()
                .any(|e| e == "fetch_refused")
                .then_some(())
        },
    );

    // The records: each home's log verifies and says what it did.
    for peer in [granting, denying, silent, authority] {
        audit_verifies(peer);
    }
    let granting_events = audit_events(granting);
    for expected in [
        "request_received",
        "granted",
        "fetch_served",
        "fetch_completed",
        "revoked",
        "fetch_refused",
    ] {
        assert!(
            granting_events.iter().any(|e| e == expected),
            "granting home lacks {expected}: {granting_events:?}"
        );
    }
    assert!(audit_events(denying).iter().any(|e| e == "denied"));
    let silent_events = audit_events(silent);
    assert!(silent_events.iter().any(|e| e == "request_received"));
    assert!(
        !silent_events
            .iter()
            .any(|e| e == "granted" || e == "denied")
    );
    assert_eq!(
        silent.incoming(&request_id).expect("still listed")["state"],
        "pending"
    );
    let authority_events = audit_events(authority);
    for expected in [
        "request_sent",
        "grant_received",
        "clip_received",
        "grant_ended",
    ] {
        assert!(
            authority_events.iter().any(|e| e == expected),
            "authority lacks {expected}: {authority_events:?}"
        );
    }
}

#[test]
fn a_direct_request_by_multiaddr_expires_and_its_footage_is_deleted() {
    let hood = neighborhood(1, &[]);
    let (authority, home) = (&hood.authority, &hood.homes[0]);
    let (from, to) = window();
    let (request_id, incoming) =
        authority.ask_directly(home, (&from, &to), "package theft", &["--for", "10m"]);
    assert!(!incoming["area"].as_bool().expect("area flag"));
    let first_clip = incoming["matching_clips"][0]["clip_id"]
        .as_str()
        .expect("a clip")
        .to_owned();
    let granted = json(home.cmd().args([
        "requests",
        "approve",
        &request_id,
        "--for",
        "4s",
        "--clips",
        &first_clip,
    ]));
    let token_id = granted["id"].as_str().expect("token id").to_owned();
    wait_for(Duration::from_secs(30), "the clip to arrive", || {
        let tokens = authority.tokens();
        (token_of(&tokens, &token_id)?["clips_transferred"]
            .as_array()?
            .len()
            == 1)
            .then_some(())
    });
    assert!(
        all_files(&authority.dir.join("received"))
            .iter()
            .any(|f| f.to_string_lossy().contains(&first_clip))
    );
    // At expiry the requester deletes what it received, unprompted.
    wait_for(
        Duration::from_secs(30),
        "expiry to delete the footage",
        || {
            let tokens = authority.tokens();
            (token_of(&tokens, &token_id)?["state"] == "deleted").then_some(())
        },
    );
    assert!(
        !all_files(&authority.dir.join("received"))
            .iter()
            .any(|f| f.to_string_lossy().contains(&first_clip))
    );
    let events = audit_events(authority);
    assert!(events.iter().any(|e| e == "grant_ended"), "{events:?}");
    audit_verifies(authority);
    audit_verifies(home);
}

/// The lines the daemon logged about refused input (one per peer and cause, by design).
fn refusal_lines(peer: &Peer) -> Vec<String> {
    peer.log_text()
        .lines()
        .filter(|line| line.contains("refused input from a peer"))
        .map(str::to_owned)
        .collect()
}

/// A request to `home` for the last ten minutes, naming `requester` and signed by `signer`
/// (who may not be the requester), as envelope bytes.
fn signed_request(
    home: porchlight_protocol::PeerId,
    requester: porchlight_protocol::PeerId,
    signer: &porchlight_protocol::SigningIdentity,
) -> Vec<u8> {
    use porchlight_protocol::{
        AgreementSecret, FootageRequest, RequestTarget, Signed, TimeWindow, Timestamp,
    };
    use rand_core::{OsRng, RngCore};

    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let body = FootageRequest {
        requester,
        target: RequestTarget::Peer(home),
        window: TimeWindow {
            from: Timestamp::from_unix_millis(now_ms - 600_000),
            to: Timestamp::from_unix_millis(now_ms + 60_000),
        },
        reason: "who parked on my lawn".into(),
        case_number: None,
        access_ms: 3_600_000,
        nonce,
        issued_at: Timestamp::from_unix_millis(now_ms),
        reply_key: AgreementSecret::generate(&mut OsRng).public(),
        credential_chain: Vec::new(),
    };
    Signed::sign(body, signer)
        .expect("a valid request")
        .to_bytes()
}

/// The home's peer id and its address without `/p2p/`, for a raw swarm to dial.
fn dialable(home: &Peer) -> (porchlight_protocol::PeerId, libp2p::Multiaddr) {
    let peer = home.peer_id.parse().expect("peer id");
    let address = home
        .address
        .rsplit_once("/p2p/")
        .expect("an address with /p2p/")
        .0
        .parse()
        .expect("a multiaddr");
    (peer, address)
}

/// A bare libp2p swarm with `identity`, not a porchlight node: it sends whatever it is told.
fn raw_mesh(
    identity: &porchlight_protocol::SigningIdentity,
    peer_book: PathBuf,
) -> (porchlight_node::mesh::Mesh, tokio::task::JoinHandle<()>) {
    use porchlight_node::mesh::{Mesh, MeshConfig};
    Mesh::start(
        MeshConfig {
            identity_secret: identity.to_secret_bytes(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
            bootstrap: Vec::new(),
            relay_server: false,
            mdns: false,
            cells: Default::default(),
            peer_book,
        },
        |_| {},
    )
    .expect("the raw swarm starts")
}

/// The ids of the incoming requests at `home` from `peer`.
fn prompts_from(home: &Peer, peer: &str) -> Vec<String> {
    home.requests()["incoming"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["requester_peer"] == peer)
        .map(|r| r["request_id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn a_hostile_peer_is_refused_logged_once_per_cause_and_never_prompts_twice() {
    use porchlight_protocol::SigningIdentity;
    use rand_core::OsRng;

    let hood = neighborhood(1, &[]);
    let home = &hood.homes[0];
    let (home_peer, home_address) = dialable(home);
    let attacker = SigningIdentity::generate(&mut OsRng);
    let impostor = SigningIdentity::generate(&mut OsRng);
    let request =
        |requester, signer: &SigningIdentity| signed_request(home_peer, requester, signer);

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let peer_book = hood._root.path().join("attacker-peers.json");
    runtime.block_on(async {
        let (mesh, _task) = raw_mesh(&attacker, peer_book);
        mesh.add_address(home_peer, home_address);

        // One honest-looking request, then the same bytes again, a request whose signer is
        // not the sending peer, and garbage.
        let genuine = request(attacker.peer_id(), &attacker);
        mesh.send(home_peer, genuine.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        mesh.send(home_peer, genuine);
        mesh.send(home_peer, request(impostor.peer_id(), &impostor));
        mesh.send(home_peer, b"\x00\x01 not an envelope".to_vec());
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Then a flood of distinct, valid requests.
        for _ in 0..40 {
            mesh.send(home_peer, request(attacker.peer_id(), &attacker));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    });

    let incoming = home.requests()["incoming"]
        .as_array()
        .expect("a list")
        .clone();
    let from_attacker: Vec<&Value> = incoming
        .iter()
        .filter(|r| r["requester_peer"] == attacker.peer_id().to_string().as_str())
        .collect();
    // The replay prompted nothing new; the flood stopped at the per-peer burst (10).
    let mut ids: Vec<&str> = from_attacker
        .iter()
        .map(|r| r["request_id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), from_attacker.len(), "a request prompted twice");
    assert!(
        (2..=10).contains(&from_attacker.len()),
        "{} prompts from the flooding peer",
        from_attacker.len()
    );
    assert!(
        !incoming
            .iter()
            .any(|r| r["requester_peer"] == impostor.peer_id().to_string().as_str()),
        "a request signed by someone other than its sender reached the owner"
    );
    // Replay, forgery/garbage and flood: each refused cause logged once, not per message.
    let lines = refusal_lines(home);
    assert_eq!(lines.len(), 4, "one log line per cause: {lines:#?}");
    for cause in ["Replay", "SignerMismatch", "Invalid", "RateLimited"] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(cause)).count(),
            1,
            "{cause}: {lines:#?}"
        );
    }
    // The node is unharmed.
    run_ok(home.cmd().arg("status"));
    audit_verifies(home);
}

/// A direct request from `authority` to `home`, approved with `approve` (extra arguments to
/// `requests approve`), and fetched in full: the request id and the token id.
fn granted_and_fetched(
    authority: &Peer,
    home: &Peer,
    reason: &str,
    approve: &[&str],
) -> (String, String) {
    let (from, to) = window();
    let (request_id, _) = authority.ask_directly(home, (&from, &to), reason, &[]);
    let granted = json(
        home.cmd()
            .args(["requests", "approve", &request_id])
            .args(approve),
    );
    let token_id = granted["id"].as_str().expect("token id").to_owned();
    wait_for(Duration::from_secs(30), "the fetch", || {
        let tokens = authority.tokens();
        let token = token_of(&tokens, &token_id)?.clone();
        (token["clips_transferred"].as_array()?.len() == token["clips"].as_array()?.len())
            .then_some(())
    });
    (request_id, token_id)
}

impl Peer {
    /// SIGTERM, wait, and start again on the same data dir with the same flags.
    fn restart(mut self, extra: &[&str]) -> Peer {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = child.wait().expect("the daemon exits");
        assert!(exit.success(), "the daemon stopped cleanly: {exit}");
        Peer::start(self.dir.clone(), extra)
    }
}

#[test]
fn an_owner_restarted_keeps_its_grants_and_can_still_revoke_them() {
    let mut hood = neighborhood(1, &[]);
    let home = hood.homes.remove(0);
    let authority = &hood.authority;
    let (_, token_id) = granted_and_fetched(authority, &home, "graffiti", &["--for", "1h"]);

    let home = home.restart(&["--camera", CAMERA, "--location", LOCATION]);
    let tokens = home.tokens();
    let token = token_of(&tokens, &token_id).expect("the issued token is listed after a restart");
    assert_eq!(token["direction"], "issued");
    assert_eq!(token["state"], "active");

    run_ok(home.cmd().args(["tokens", "revoke", &token_id]));
    wait_for(
        Duration::from_secs(30),
        "the revocation to reach the authority",
        || {
            let tokens = authority.tokens();
            (token_of(&tokens, &token_id)?["state"] == "deleted").then_some(())
        },
    );
    audit_verifies(&home);
}

#[test]
fn a_grant_with_retention_keeps_the_footage_after_revocation_and_says_so() {
    let hood = neighborhood(1, &[]);
    let (authority, home) = (&hood.authority, &hood.homes[0]);
    let (_, token_id) = granted_and_fetched(authority, home, "insurance claim", &["--retain"]);
    assert!(
        authority.tokens()["tokens"][0]["retain"]
            .as_bool()
            .expect("retain flag")
    );
    run_ok(home.cmd().args(["tokens", "revoke", &token_id]));
    wait_for(Duration::from_secs(30), "the revocation to arrive", || {
        let tokens = authority.tokens();
        (token_of(&tokens, &token_id)?["state"] == "revoked").then_some(())
    });
    let received = all_files(&authority.dir.join("received"));
    assert!(
        received
            .iter()
            .any(|f| f.to_string_lossy().contains(&token_id)),
        "the footage was kept"
    );
    let export = hood._root.path().join("kept");
    let fetched = json(
        authority
            .cmd()
            .args(["fetch", &token_id, "-o"])
            .arg(&export),
    );
    assert!(!fetched["exported"].as_array().expect("exported").is_empty());
}

#[test]
fn limits_raised_in_the_config_let_through_a_burst_the_defaults_stop() {
    use porchlight_protocol::SigningIdentity;
    use rand_core::OsRng;

    let root = tempfile::tempdir().expect("temp dir");
    let (dir, _) = Peer::init(root.path(), "home");
    let config = dir.join("config.toml");
    let text = std::fs::read_to_string(&config)
        .expect("init wrote a config")
        .replacen(
            "[limits]\n",
            "[limits]\nper_peer_burst = 60\nper_peer_refill = \"1s\"\n",
            1,
        );
    assert!(
        text.contains("per_peer_burst = 60"),
        "init writes a [limits] table"
    );
    std::fs::write(&config, text).expect("config written");
    let home = Peer::start(dir, &["--camera", CAMERA]);
    wait_for(Duration::from_secs(60), "a recorded clip", || {
        (!home.clips().is_empty()).then_some(())
    });
    let (home_peer, home_address) = dialable(&home);
    let sender = SigningIdentity::generate(&mut OsRng);
    let sender_id = sender.peer_id().to_string();

    // 40 distinct, valid requests at once: four times the default per-peer burst.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let prompts = runtime.block_on(async {
        let (mesh, _task) = raw_mesh(&sender, root.path().join("sender-peers.json"));
        mesh.add_address(home_peer, home_address);
        for _ in 0..40 {
            mesh.send(
                home_peer,
                signed_request(home_peer, sender.peer_id(), &sender),
            );
        }
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let prompts = tokio::task::block_in_place(|| prompts_from(&home, &sender_id));
            if prompts.len() >= 40 || started.elapsed() > Duration::from_secs(30) {
                break prompts;
            }
        }
    });
    let mut distinct = prompts.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        40,
        "{} of 40 requests prompted",
        prompts.len()
    );
    assert_eq!(prompts.len(), 40, "a request prompted twice");
    assert!(
        refusal_lines(&home).is_empty(),
        "nothing was refused: {:#?}",
        refusal_lines(&home)
    );
}

#[test]
fn a_flood_of_junk_fetch_streams_leaves_the_owners_audit_log_bounded() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    use porchlight_core::refusals::MAX_REFUSAL_ENTRIES_PER_INTERVAL;
    use porchlight_protocol::SigningIdentity;
    use porchlight_protocol::fetch::{FETCH_PROTOCOL, FetchReply, FetchRequest, frame_prefix};
    use rand_core::OsRng;

    let root = tempfile::tempdir().expect("temp dir");
    let (dir, _) = Peer::init(root.path(), "home");
    let home = Peer::start(dir, &["--camera", "none"]);
    let (home_peer, home_address) = dialable(&home);
    let before = audit_events(&home).len();
    let attacker = SigningIdentity::generate(&mut OsRng);
    const STREAMS: usize = 300;

    // One stream after another (the owner serves only a few at once to one peer), each a
    // well-formed fetch request whose token is junk, so each reaches the node core.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let answered = runtime.block_on(async {
        let (mesh, _task) = raw_mesh(&attacker, root.path().join("attacker-peers.json"));
        mesh.add_address(home_peer, home_address);
        let mut control = mesh.control();
        let home_libp2p = porchlight_node::mesh::to_libp2p(&home_peer).expect("a libp2p id");
        let protocol = libp2p::StreamProtocol::new(FETCH_PROTOCOL);
        let mut answered = 0;
        for n in 0..STREAMS {
            // Junk that fails the same way every time (one reject code), differently each.
            let mut token = vec![0xEE; 40];
            token[39] = n as u8;
            let request = FetchRequest {
                token,
                clip_id: porchlight_protocol::ClipId::from_bytes([7; 32]),
                from_chunk: 0,
            }
            .encode()
            .expect("a small request");
            let Ok(mut stream) = control.open_stream(home_libp2p, protocol.clone()).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let prefix = frame_prefix(request.len()).expect("a small frame");
            if stream.write_all(&prefix).await.is_err() || stream.write_all(&request).await.is_err()
            {
                continue;
            }
            let _ = stream.flush().await;
            let mut reply = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
            if reply.len() > 4
                && matches!(FetchReply::decode(&reply[4..]), Ok(FetchReply::Rejected(_)))
            {
                answered += 1;
            }
        }
        answered
    });
    assert!(
        answered >= STREAMS / 2,
        "only {answered} of {STREAMS} junk fetches reached the core"
    );

    let events = audit_events(&home);
    let refusals = events[before..]
        .iter()
        .filter(|e| *e == "fetch_refused" || *e == "fetch_refusals_counted")
        .count();
    assert!(
        refusals <= MAX_REFUSAL_ENTRIES_PER_INTERVAL,
        "{refusals} refusal entries for {answered} refused fetches"
    );
    assert_eq!(
        refusals, 1,
        "one peer, one code: the first refusal is recorded, the rest counted"
    );
    audit_verifies(&home);
}

/// How a slow fetch stream ended, as the grantee saw it.
struct SlowFetch {
    home: Peer,
    /// Holds the home's data dir; dropped after the home has stopped.
    _root: tempfile::TempDir,
    ciphertext_len: u64,
    /// Chunk bytes of the chunks that arrived whole.
    received: u64,
    /// The code after the end frame, if the stream ended with one (it may be reset instead
    /// when the owner stopped part-way through a chunk).
    end: Option<porchlight_protocol::RejectCode>,
}

/// A home holding one 4 MiB clip grants it to a bare libp2p grantee (`approve`: arguments to
/// `requests approve`), which opens the fetch stream, reads the reply and one chunk, then
/// stops reading while `meanwhile` runs (a revocation, or waiting out the token), and only
/// then reads whatever the home still sends.
fn fetch_slowly(approve: &[&str], meanwhile: impl FnOnce(&Peer, &str)) -> SlowFetch {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    use porchlight_node::data_dir::DataDir;
    use porchlight_node::keys::NodeKeys;
    use porchlight_node::mesh::MeshEvent;
    use porchlight_node::store::{Store, StoreConfig};
    use porchlight_protocol::fetch::{FETCH_PROTOCOL, FetchReply, FetchRequest, frame_prefix};
    use porchlight_protocol::{
        AgreementSecret, DecisionOutcome, FootageRequest, OwnerDecision, RequestId, RequestTarget,
        Signed, SigningIdentity, TimeWindow, Timestamp,
    };
    use rand_core::{OsRng, RngCore};

    let root = tempfile::tempdir().expect("temp dir");
    let (dir, _) = Peer::init(root.path(), "home");
    // The clip goes into the store before the daemon starts; no camera adds others.
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let mut footage = vec![0u8; 4 << 20];
    OsRng.fill_bytes(&mut footage);
    let keys = NodeKeys::load(&DataDir::at(&dir)).expect("init wrote the keys");
    let store = Store::open(&dir, keys.vault, StoreConfig::default()).expect("the store opens");
    let record = store
        .import(
            &footage[..],
            "porch",
            Timestamp::from_unix_millis(now_ms - 120_000),
            Timestamp::from_unix_millis(now_ms - 60_000),
        )
        .expect("the clip is stored");
    drop(store);
    let ciphertext_len =
        porchlight_protocol::stream::ChunkLayout::for_plaintext_len(footage.len() as u64)
            .ciphertext_len();
    let home = Peer::start(dir, &["--camera", "none"]);
    let (home_peer, home_address) = dialable(&home);

    let grantee = SigningIdentity::generate(&mut OsRng);
    let reply_secret = AgreementSecret::generate(&mut OsRng);
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let request = Signed::sign(
        FootageRequest {
            requester: grantee.peer_id(),
            target: RequestTarget::Peer(home_peer),
            window: TimeWindow {
                from: Timestamp::from_unix_millis(now_ms - 600_000),
                to: Timestamp::from_unix_millis(now_ms),
            },
            reason: "who took the parcel".into(),
            case_number: None,
            access_ms: 3_600_000,
            nonce,
            issued_at: Timestamp::from_unix_millis(now_ms),
            reply_key: reply_secret.public(),
            credential_chain: Vec::new(),
        },
        &grantee,
    )
    .expect("a valid request");
    let request_id = RequestId::of(&request).to_string();

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (frames, inbox) = std::sync::mpsc::channel();
    runtime.block_on(async {
        let (mesh, _task) = porchlight_node::mesh::Mesh::start(
            porchlight_node::mesh::MeshConfig {
                identity_secret: grantee.to_secret_bytes(),
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
                bootstrap: Vec::new(),
                relay_server: false,
                mdns: false,
                cells: Default::default(),
                peer_book: root.path().join("grantee-peers.json"),
            },
            move |event| {
                let MeshEvent::Frame { bytes, .. } = event;
                let _ = frames.send(bytes);
            },
        )
        .expect("the grantee's swarm starts");
        mesh.add_address(home_peer, home_address);
        mesh.send(home_peer, request.to_bytes());
        let token_id = tokio::task::block_in_place(|| {
            wait_for(Duration::from_secs(30), "the prompt", || {
                home.incoming(&request_id)
            });
            let granted = json(
                home.cmd()
                    .args(["requests", "approve", &request_id, "--clips"])
                    .arg(record.clip_id.to_string())
                    .args(approve),
            );
            granted["id"].as_str().expect("token id").to_owned()
        });
        let token = tokio::task::block_in_place(|| {
            wait_for(Duration::from_secs(30), "the grant", || {
                let bytes = inbox.try_recv().ok()?;
                let decision = Signed::<OwnerDecision>::verify_untimed(&bytes).ok()?;
                match decision.into_body().outcome {
                    DecisionOutcome::Grant { token } => Some(token),
                    DecisionOutcome::Deny { .. } => None,
                }
            })
        });

        let mut stream = mesh
            .control()
            .open_stream(
                home_peer_libp2p(&home),
                libp2p::StreamProtocol::new(FETCH_PROTOCOL),
            )
            .await
            .expect("the fetch stream opens");
        let request = FetchRequest {
            token,
            clip_id: record.clip_id,
            from_chunk: 0,
        }
        .encode()
        .expect("a request");
        let mut framed = frame_prefix(request.len()).expect("small").to_vec();
        framed.extend_from_slice(&request);
        stream.write_all(&framed).await.expect("request sent");
        stream.flush().await.expect("request sent");

        async fn read_frame(stream: &mut libp2p::Stream) -> std::io::Result<Vec<u8>> {
            let mut prefix = [0u8; 4];
            stream.read_exact(&mut prefix).await?;
            let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
            stream.read_exact(&mut body).await?;
            Ok(body)
        }
        let reply = read_frame(&mut stream).await.expect("the reply");
        let Ok(FetchReply::Accepted(accepted)) = FetchReply::decode(&reply) else {
            panic!("the fetch was not accepted");
        };
        assert_eq!(accepted.ciphertext_len, ciphertext_len);
        let mut received = read_frame(&mut stream).await.expect("chunk 0").len() as u64;

        // The grantee stops reading; the home fills the stream's window and blocks.
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::block_in_place(|| meanwhile(&home, &token_id));

        // Then it reads everything the home still sends.
        let mut end = None;
        while let Ok(body) = read_frame(&mut stream).await {
            if body.is_empty() {
                let reply = read_frame(&mut stream).await.expect("the end's reply");
                match FetchReply::decode(&reply) {
                    Ok(FetchReply::Rejected(code)) => end = Some(code),
                    other => panic!("an end frame followed by {other:?}"),
                }
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
                assert!(rest.is_empty(), "bytes after the end: {}", rest.len());
                break;
            }
            received += body.len() as u64;
        }
        SlowFetch {
            home,
            _root: root,
            ciphertext_len,
            received,
            end,
        }
    })
}

fn home_peer_libp2p(home: &Peer) -> libp2p::PeerId {
    home.peer_id.parse().expect("a libp2p peer id")
}

/// The home's `fetch_cut` audit entry once it is there: (bytes, why).
fn fetch_cut_entry(home: &Peer) -> (u64, String) {
    wait_for(Duration::from_secs(30), "the fetch_cut entry", || {
        let list = json(home.cmd().args(["audit", "list"]));
        list.as_array()?
            .iter()
            .map(|entry| &entry["event"])
            .find(|event| event["type"] == "fetch_cut")
            .map(|event| {
                (
                    event["bytes"].as_u64().expect("bytes"),
                    event["why"].as_str().expect("why").to_owned(),
                )
            })
    })
}

#[test]
fn a_slow_grantee_gets_no_chunk_after_the_revocation_and_the_cut_is_recorded() {
    let fetch = fetch_slowly(&["--for", "1h"], |home, token_id| {
        run_ok(home.cmd().args(["tokens", "revoke", token_id]));
    });
    // Only what had left before the revocation arrived: the window in flight, far from
    // the whole clip.
    assert!(
        fetch.received < fetch.ciphertext_len / 2,
        "{} of {} bytes arrived after a revocation that came after the first chunk",
        fetch.received,
        fetch.ciphertext_len
    );
    if let Some(code) = fetch.end {
        assert_eq!(code, porchlight_protocol::RejectCode::Invalid);
    }
    let (bytes, why) = fetch_cut_entry(&fetch.home);
    assert_eq!(why, "revoked");
    assert!(
        fetch.received <= bytes && bytes < fetch.ciphertext_len,
        "the cut entry says {bytes} bytes left; {} arrived whole",
        fetch.received
    );
    audit_verifies(&fetch.home);
}

#[test]
fn a_slow_grantee_gets_no_chunk_after_the_token_expires_and_the_cut_is_recorded() {
    let fetch = fetch_slowly(&["--for", "4s"], |_, _| {
        std::thread::sleep(Duration::from_secs(5));
    });
    assert!(
        fetch.received < fetch.ciphertext_len / 2,
        "{} of {} bytes arrived after the token expired",
        fetch.received,
        fetch.ciphertext_len
    );
    if let Some(code) = fetch.end {
        assert_eq!(code, porchlight_protocol::RejectCode::OutOfWindow);
    }
    let (bytes, why) = fetch_cut_entry(&fetch.home);
    assert_eq!(why, "expired");
    assert!(fetch.received <= bytes && bytes < fetch.ciphertext_len);
    audit_verifies(&fetch.home);
}

/// `porchlight requests list` as a person reads it (no `--json`).
fn requests_text(peer: &Peer) -> String {
    String::from_utf8_lossy(&run_ok(peer.cmd().args(["requests", "list"])).stdout).into_owned()
}

#[test]
fn the_requester_is_told_the_owners_deny_message() {
    let hood = neighborhood(1, &[]);
    let (authority, home) = (&hood.authority, &hood.homes[0]);
    let (from, to) = window();
    let (request_id, _) = authority.ask_directly(home, (&from, &to), "noise", &[]);
    run_ok(home.cmd().args([
        "requests",
        "deny",
        &request_id,
        "--message",
        "sorry, nothing useful",
    ]));
    let out = wait_for(Duration::from_secs(30), "the denial to arrive", || {
        outgoing(authority, &request_id).filter(|out| out["state"] == "denied")
    });
    assert_eq!(out["denials"][0]["owner"], home.peer_id.as_str());
    assert_eq!(out["denials"][0]["message"], "sorry, nothing useful");
    assert!(
        requests_text(authority).contains(&format!(
            "denied by {}: \"sorry, nothing useful\"",
            home.peer_id
        )),
        "{}",
        requests_text(authority)
    );
    let list = json(authority.cmd().args(["audit", "list"]));
    let denial = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|entry| entry["event"]["type"] == "denial_received_with_message")
        .expect("the requester's audit entry keeps the message");
    assert_eq!(denial["event"]["message"], "sorry, nothing useful");
    audit_verifies(authority);
}

#[test]
fn a_revoked_grant_says_revoked_and_its_fetch_says_why_even_after_a_restart() {
    let mut hood = neighborhood(1, &[]);
    let home = &hood.homes[0];
    let (request_id, token_id) =
        granted_and_fetched(&hood.authority, home, "bike theft", &["--for", "1h"]);
    let out = outgoing(&hood.authority, &request_id).expect("the outgoing request");
    assert_eq!(out["grant_states"][0]["state"], "received");

    run_ok(home.cmd().args(["tokens", "revoke", &token_id]));
    let authority = &hood.authority;
    let state = wait_for(Duration::from_secs(30), "the revocation to arrive", || {
        let out = outgoing(authority, &request_id)?;
        (out["grant_states"][0]["state"] == "revoked").then(|| out["grant_states"][0].clone())
    });
    assert_eq!(state["footage_deleted"], true);
    assert!(state["ended_at"].is_string());
    let text = requests_text(authority);
    assert!(
        text.contains(&format!("token {token_id}: was revoked by the owner at")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{request_id}  ended: every grant was revoked or expired"
        )),
        "no longer said to be granted: {text}"
    );
    assert_eq!(
        outgoing(authority, &request_id).expect("listed")["state"],
        "ended"
    );

    let refused = |authority: &Peer| {
        let export = authority.dir.join("export");
        let out = authority
            .cmd()
            .args(["fetch", &token_id, "-o"])
            .arg(&export)
            .output()
            .expect("the porchlight binary runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let why = refused(authority);
    assert!(
        why.contains(&format!("token {token_id} was revoked by the owner at"))
            && why.contains("footage was deleted"),
        "{why}"
    );

    let authority = std::mem::replace(
        &mut hood.authority,
        Peer {
            dir: PathBuf::new(),
            child: None,
            peer_id: String::new(),
            address: String::new(),
            log: PathBuf::new(),
        },
    )
    .restart(&["--camera", "none"]);
    let tokens = authority.tokens();
    let token = token_of(&tokens, &token_id).expect("the revoked grant is listed after a restart");
    assert_eq!(token["direction"], "received");
    assert_eq!(token["grant_state"]["state"], "revoked");
    let listed = run_ok(authority.cmd().args(["tokens", "list"]));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("was revoked by the owner at"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let why = refused(&authority);
    assert!(
        why.contains(&format!("token {token_id} was revoked by the owner at")),
        "{why}"
    );
}

#[test]
fn a_request_for_footage_still_being_recorded_waits_for_the_clip_and_reaches_the_owner() {
    let hood = neighborhood(1, &[]);
    let (authority, home) = (&hood.authority, &hood.homes[0]);
    // Starts after every clip sealed by the time it arrives: only a clip recorded after
    // the request came in can match it (the homes record 1 s clips).
    let now = SystemTime::now();
    let (from, to) = (
        rfc3339(now + Duration::from_secs(2)),
        rfc3339(now + Duration::from_secs(4)),
    );
    let out = run_ok(authority.cmd().args([
        "request",
        "--peer",
        &home.address,
        "--from",
        &from,
        "--to",
        &to,
        "--reason",
        "live",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("note: the window ends in the future"),
        "the requester is told: {text}"
    );
    let request_id = text
        .lines()
        .find_map(|line| line.strip_prefix("request sent: "))
        .expect("the request id")
        .trim()
        .to_owned();
    let listed = outgoing(authority, &request_id).expect("the outgoing request");
    assert!(listed["window_note"].is_string());

    let incoming = wait_for(Duration::from_secs(30), "the owner's prompt", || {
        home.incoming(&request_id)
    });
    assert!(
        !incoming["matching_clips"]
            .as_array()
            .expect("clips")
            .is_empty(),
        "the clip recorded meanwhile is offered"
    );
}
