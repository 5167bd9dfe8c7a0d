//! Authorities and trust through the real `porchlight` binary: a root key, an owner trusting
//! it, a credential issued to an authority's node that verifies against that owner's trust
//! list (directly and through an intermediate), a credential for another node refused at
//! start, files never overwritten, and every bad input one clear error that changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use porchlight_node::authority::load_credential_chain;
use porchlight_node::clock;
use porchlight_node::data_dir::DataDir;
use porchlight_node::trust::TrustList;
use porchlight_protocol::{AuthorityRole, PeerId, ValidationError, verify_credential_chain};

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

/// Runs a command that must succeed and returns its stdout.
fn ok(command: &mut Command) -> String {
    let out = run(command);
    assert!(out.status.success(), "{command:?} failed: {}", stderr(&out));
    stdout(&out)
}

/// Runs a command that must fail with exactly one error line, and returns that line.
fn one_error(command: &mut Command) -> String {
    let out = run(command);
    assert!(
        !out.status.success(),
        "{command:?} succeeded: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    lines[0].to_owned()
}

/// The value printed after `label` on a line of `text`.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in: {text}"))
        .trim()
        .to_owned()
}

/// `porchlight init` in `dir`; returns the node's peer id.
fn init(dir: &Path) -> PeerId {
    let out = ok(porchlight(dir).args(["init", "--name", "test"]));
    field(&out, "peer id")
        .parse()
        .expect("init prints a peer id")
}

fn root_keygen(tmp: &Path, file: &str) -> (PathBuf, PeerId) {
    let path = tmp.join(file);
    let out = ok(porchlight(tmp)
        .args(["authority", "root-keygen", "-o"])
        .arg(&path));
    (
        path,
        field(&out, "public key").parse().expect("a public key"),
    )
}

fn issue(tmp: &Path, key: &Path, peer: &PeerId, extra: &[&str], output: &Path) -> Output {
    run(porchlight(tmp)
        .args(["authority", "issue", "--root-key"])
        .arg(key)
        .args(["--peer", &peer.to_string()])
        .args(["--name", "Springfield Fire Department"])
        .args(["--jurisdiction", "Springfield"])
        .args(extra)
        .arg("-o")
        .arg(output))
}

#[test]
fn a_credential_from_a_trusted_root_verifies_against_the_owners_trust_list() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let station = tmp.path().join("station");
    let home_id = init(&home);
    let station_id = init(&station);

    let (root_key, root) = root_keygen(tmp.path(), "county-root.key");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&root_key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let printed = ok(porchlight(tmp.path())
        .args(["authority", "public-key"])
        .arg(&root_key));
    assert_eq!(printed.trim(), root.to_string());

    let added = ok(porchlight(&home).args([
        "trust",
        "add",
        &root.to_string(),
        "--label",
        "Springfield County",
    ]));
    assert!(added.contains("restart it"), "{added}");

    let cred = tmp.path().join("fire.cred");
    let out = issue(
        tmp.path(),
        &root_key,
        &station_id,
        &["--role", "fire", "--valid", "90d"],
        &cred,
    );
    assert!(out.status.success(), "issue failed: {}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("Springfield Fire Department"), "{summary}");
    assert!(summary.contains("fire"), "{summary}");

    // What the station's node will present, checked as the home's node will check it.
    let now = clock::now().unwrap();
    let chain = load_credential_chain(std::slice::from_ref(&cred), &station_id, now).unwrap();
    let trust = TrustList::load(&DataDir::at(&home)).unwrap();
    assert_eq!(trust.roots(), [root]);
    let verified = verify_credential_chain(&chain, &station_id, &trust.roots(), now).unwrap();
    assert_eq!(verified.display_name, "Springfield Fire Department");
    assert_eq!(verified.jurisdiction, "Springfield");
    assert_eq!(verified.role, AuthorityRole::Fire);
    assert_eq!(verified.root, root);
    let days = verified.valid_until.duration_since(now).as_secs() / (24 * 3600);
    assert!((89..=90).contains(&days), "valid for {days} days");
    // A home that does not trust the root sees an unverified requester.
    assert_eq!(
        verify_credential_chain(&chain, &station_id, &[home_id], now),
        Err(ValidationError::UntrustedRoot.into())
    );

    let shown = ok(porchlight(tmp.path())
        .args(["authority", "show"])
        .arg(&cred));
    assert!(shown.contains("signature checks out"), "{shown}");
    assert_eq!(field(&shown, "  subject"), station_id.to_string());

    // The same file given to another node: refused at start, naming both peers.
    let err = load_credential_chain(std::slice::from_ref(&cred), &home_id, now)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "was issued to {station_id}, but this node is {home_id}"
        )),
        "{err}"
    );
    let line = one_error(
        porchlight(&home)
            .args([
                "node",
                "--camera",
                "none",
                "--api",
                "127.0.0.1:0",
                "--credential",
            ])
            .arg(&cred),
    );
    assert!(
        line.starts_with("porchlight: ")
            && line.contains(&format!(
                "issued to {station_id}, but this node is {home_id}"
            )),
        "{line}"
    );

    // Listing and removing.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(porchlight(&home).args(["trust", "list", "--json"]))).unwrap();
    assert_eq!(listed[0]["public_key"], root.to_string());
    assert_eq!(listed[0]["label"], "Springfield County");
    assert!(listed[0]["added_at"].as_str().unwrap().ends_with('Z'));
    let human = ok(porchlight(&home).args(["trust", "list"]));
    assert!(human.contains("Springfield County"), "{human}");
    ok(porchlight(&home).args(["trust", "remove", &root.to_string()]));
    assert!(
        TrustList::load(&DataDir::at(&home))
            .unwrap()
            .roots()
            .is_empty()
    );
    let human = ok(porchlight(&home).args(["trust", "list"]));
    assert!(human.contains("no trust roots"), "{human}");
    let line = one_error(porchlight(&home).args(["trust", "remove", &root.to_string()]));
    assert!(line.contains("porchlight trust list"), "{line}");
}

#[test]
fn an_intermediate_chain_loads_leaf_first_and_verifies_to_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let station = tmp.path().join("station");
    let station_id = init(&station);
    let (root_key, root) = root_keygen(tmp.path(), "state.key");
    let (county_key, county) = root_keygen(tmp.path(), "county.key");
    let county_cred = tmp.path().join("county.cred");
    let out = run(porchlight(tmp.path())
        .args(["authority", "issue", "--root-key"])
        .arg(&root_key)
        .args(["--peer", &county.to_string()])
        .args([
            "--name",
            "Springfield County",
            "--jurisdiction",
            "Springfield",
        ])
        .args(["--role", "emergency-management", "--may-issue", "-o"])
        .arg(&county_cred));
    assert!(out.status.success(), "{}", stderr(&out));
    let leaf = tmp.path().join("station.cred");
    let out = issue(
        tmp.path(),
        &county_key,
        &station_id,
        &["--role", "police"],
        &leaf,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let now = clock::now().unwrap();
    let chain =
        load_credential_chain(&[leaf.clone(), county_cred.clone()], &station_id, now).unwrap();
    let verified = verify_credential_chain(&chain, &station_id, &[root], now).unwrap();
    assert_eq!(verified.role, AuthorityRole::Police);
    assert_eq!(verified.issuer, county);
    assert_eq!(verified.root, root);

    // Root first is the wrong order: the leaf must come first.
    let err = load_credential_chain(&[county_cred.clone(), leaf.clone()], &station_id, now)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("issued to {county}")), "{err}");
    // Long after the default 365 days, the station's own credential has expired.
    let later = now.saturating_add(Duration::from_secs(400 * 24 * 3600));
    let err = load_credential_chain(&[leaf, county_cred], &station_id, later)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired at"), "{err}");
}

#[test]
fn keys_and_credentials_are_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (root_key, _) = root_keygen(tmp.path(), "root.key");
    let key_before = std::fs::read(&root_key).unwrap();
    let line = one_error(
        porchlight(tmp.path())
            .args(["authority", "root-keygen", "-o"])
            .arg(&root_key),
    );
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(std::fs::read(&root_key).unwrap(), key_before);

    let subject = init(&tmp.path().join("station"));
    let cred = tmp.path().join("a.cred");
    std::fs::write(&cred, b"keep me").unwrap();
    let out = issue(tmp.path(), &root_key, &subject, &[], &cred);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&cred).unwrap(), b"keep me");
}

#[test]
fn bad_input_is_one_clear_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let home_id = init(&home);
    let (root_key, root) = root_keygen(tmp.path(), "root.key");

    // Trust list.
    let line = one_error(porchlight(&home).args(["trust", "add", "hello", "--label", "x"]));
    assert!(
        line.starts_with("porchlight: \"hello\" is not a public key"),
        "{line}"
    );
    assert!(!home.join("trust.toml").exists(), "nothing was written");
    let line = one_error(porchlight(&home).args([
        "trust",
        "add",
        &root.to_string(),
        "--label",
        "bad\u{202E}label",
    ]));
    assert!(
        line.contains("label contains a control character"),
        "{line}"
    );
    assert!(!home.join("trust.toml").exists(), "nothing was written");
    ok(porchlight(&home).args(["trust", "add", &root.to_string(), "--label", "County"]));
    let before = std::fs::read(home.join("trust.toml")).unwrap();
    let line =
        one_error(porchlight(&home).args(["trust", "add", &root.to_string(), "--label", "Again"]));
    assert!(line.contains("is already trusted"), "{line}");
    assert_eq!(std::fs::read(home.join("trust.toml")).unwrap(), before);
    ok(porchlight(&home).args(["trust", "remove", "County"]));
    assert!(
        TrustList::load(&DataDir::at(&home))
            .unwrap()
            .roots()
            .is_empty()
    );

    // Issuing.
    let cred = tmp.path().join("x.cred");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--name", "Fire\nDept"],
            "--name contains a control character",
        ),
        (&["--valid", "1000d"], "use at most 732d"),
        (&["--valid", "a while"], "--valid"),
        (
            &["--role", "sheriff"],
            "police, fire, medical, emergency-management, other",
        ),
    ];
    for (args, expect) in cases {
        let mut command = porchlight(tmp.path());
        command
            .args(["authority", "issue", "--root-key"])
            .arg(&root_key)
            .args(["--peer", &home_id.to_string()])
            .args(["--jurisdiction", "Springfield"]);
        if !args.contains(&"--name") {
            command.args(["--name", "Fire"]);
        }
        command.args(args).arg("-o").arg(&cred);
        let out = run(&mut command);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(expect), "{args:?}: {}", stderr(&out));
        assert!(!cred.exists(), "{args:?} wrote a file");
    }
    let line = one_error(
        porchlight(tmp.path())
            .args(["authority", "issue", "--root-key"])
            .arg(&root_key)
            .args(["--peer", "12D3KooWnope", "--name", "Fire"])
            .args(["--jurisdiction", "Springfield", "-o"])
            .arg(&cred),
    );
    assert!(line.contains("bad --peer"), "{line}");
    assert!(!cred.exists());

    // A key file others can read is refused, and so is a file that is not a credential.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = issue(tmp.path(), &root_key, &home_id, &[], &cred);
    assert!(
        stderr(&out).contains("readable by other users"),
        "{}",
        stderr(&out)
    );
    assert!(!cred.exists());
    let line = one_error(
        porchlight(tmp.path())
            .args(["authority", "show"])
            .arg(&root_key),
    );
    assert!(
        line.contains("is not a valid porchlight credential"),
        "{line}"
    );
}
