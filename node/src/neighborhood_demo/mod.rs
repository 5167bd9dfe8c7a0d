//! `porchlight demo`: a small neighborhood on this machine, and one consent request told
//! as a story.
//!
//! Three homes with test cameras and a police node holding a credential from a demo trust
//! root run as real `porchlight node` processes ([`local_node`]), talking libp2p over
//! loopback. The demo drives them through their local APIs, exactly as `porchlight request`,
//! `requests approve`, `tokens revoke` and `fetch` would: the police send an area request;
//! every home is prompted and sees the police as verified; one owner approves, one denies,
//! one never answers; the police node fetches by itself and exports the MP4 on request; the
//! owner revokes, the police node deletes what it received and its next fetch is refused;
//! each home's signed audit log is verified and summarized.
//!
//! It sets up with the same code as `porchlight init`, `authority root-keygen|issue` and
//! `trust add`, ends by itself, and leaves every file (data dirs, daemon logs, the exported
//! MP4) in a directory it names. The same flow is asserted in detail by
//! `node/tests/mesh.rs`; this module is for a person reading a terminal.

mod local_node;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use porchlight_core::AuditEvent;
use porchlight_protocol::{AuthorityRole, PeerId};
use rand_core::{OsRng, RngCore};

use self::local_node::{LocalNode, Stopped, stop_all, watch_for_interrupt};
use crate::api::consent::{
    ApproveBody, DenyBody, FetchAnswer, FetchBody, IdAnswer, SendRequestBody,
};
use crate::api::views::{ClipView, rfc3339};
use crate::audit_log::{TransparencyReport, describe_event, read_all, verify};
use crate::authority::{
    CredentialTerms, DEFAULT_CREDENTIAL_VALIDITY, generate_root_key, issue_credential,
    load_signing_key, write_credential,
};
use crate::cli::init_node;
use crate::clock;
use crate::data_dir::DataDir;
use crate::ledger::{IncomingView, RequestsView, TokenView, TokensView};
use crate::mesh::MeshStatus;
use crate::trust::TrustList;

/// The homes' spot: each opts in to area requests here (only its ~1 km cell is shared).
const LOCATION: &str = "52.3702,4.8952";
/// The police ask every home within 300 m of it.
const AREA: &str = "52.3702,4.8952,300";
const CAMERA: &str = "porch=test:320x240@10";
const CLIP_SECONDS: &str = "2";
const HOMES: [&str; 3] = ["home1", "home2", "home3"];
const AUTHORITY: &str = "authority";
const AUTHORITY_NAME: &str = "Springfield Police Dept.";
const JURISDICTION: &str = "Springfield";
const REASON: &str = "hit and run on Elm St; a grey hatchback was seen driving off";
const CASE: &str = "SPD-2026-1142";
const EXPORT_DIR: &str = "authority-export";

/// How long a node may take to listen on the mesh and serve its API.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a home may take to record its first clip and announce its cell.
const FIRST_CLIP_LIMIT: Duration = Duration::from_secs(30);
/// How long a message may take to cross the mesh and be acted on.
const MESH_LIMIT: Duration = Duration::from_secs(30);
/// How long the granted clips may take to arrive.
const TRANSFER_LIMIT: Duration = Duration::from_secs(60);

/// Runs the demo, leaving its files in `dir` (a new or empty directory) or in a fresh
/// directory under the system temporary directory.
pub fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = demo_dir(dir)?;
    watch_for_interrupt()?;
    tell(&dir).with_context(|| {
        format!(
            "the demo stopped early; its nodes are stopped and their files and logs are in {}",
            dir.display()
        )
    })
}

/// Creates the demo's directory; an existing one must be empty, so nothing is overwritten.
fn demo_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => {
            if dir.exists() {
                let mut entries =
                    fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
                if entries.next().is_some() {
                    bail!(
                        "{} is not empty; give `porchlight demo --dir` a new or empty directory",
                        dir.display()
                    );
                }
            } else {
                fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            dir
        }
        None => {
            let dir =
                std::env::temp_dir().join(format!("porchlight-demo-{:08x}", OsRng.next_u32()));
            fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            dir
        }
    };
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// A node's data dir, made by `porchlight init`'s code, before its process starts.
struct Prepared {
    name: &'static str,
    data: DataDir,
    peer_id: PeerId,
}

fn tell(dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("Porchlight demo: a neighborhood of three homes and a police node on this machine");
    println!(
        "(real `porchlight node` processes on loopback; files in {})",
        dir.display()
    );
    println!();

    // 1. The cast: a trust root vouches for the police; the homes trust that root.
    let (homes, authority, credential) = set_up(dir)?;
    println!("1. Setting up");
    println!(
        "   A demo trust root (demo-root.key) issued the police node a credential:\n   \
         \"{AUTHORITY_NAME}\", role police, {JURISDICTION} (authority.cred)."
    );
    println!(
        "   {}, {} and {} each add that root to their trust list.",
        HOMES[0], HOMES[1], HOMES[2]
    );
    println!();

    // 2. Four daemons: the first home is everyone's bootstrap peer.
    println!("2. Starting the nodes (each logs to <name>/daemon.log)");
    let [first, rest @ ..] = homes.as_slice() else {
        bail!("the demo has no homes");
    };
    let home1 = start_home(first, None)?;
    let bootstrap = listening_address(&home1)?;
    let others = rest
        .iter()
        .map(|home| start_home(home, Some(&bootstrap)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let authority = LocalNode::start(
        authority.name,
        authority.data,
        authority.peer_id,
        &[
            node_flags(),
            vec![
                "--camera".into(),
                "none".into(),
                "--credential".into(),
                credential.display().to_string(),
                "--bootstrap".into(),
                bootstrap.clone(),
            ],
        ]
        .concat(),
    )?;
    let [home2, home3] = others.as_slice() else {
        bail!("the demo expects three homes");
    };
    let homes = [&home1, home2, home3];
    for node in [home2, home3, &authority] {
        listening_address(node)?;
    }
    for home in homes {
        let clips = home.wait_for("its first recorded clip", FIRST_CLIP_LIMIT, || {
            let clips: Vec<ClipView> = home.api()?.get("/v1/clips")?;
            Ok((!clips.is_empty()).then_some(clips.len()))
        })?;
        home.wait_for("its area cell to be announced", MESH_LIMIT, || {
            let status: MeshStatus = home.api()?.get("/v1/mesh")?;
            Ok((status.cells_announced >= 1).then_some(()))
        })?;
        println!("   {:<9} {}", home.name(), home.peer_id());
        println!(
            "   {:<9} records camera \"porch\" (a test pattern) in {CLIP_SECONDS} s clips, {} so far;",
            "",
            count(clips as u64, "clip", "clips")
        );
        println!("   {:<9} opted in to area requests near {LOCATION}", "");
    }
    println!("   {:<9} {}", authority.name(), authority.peer_id());
    println!(
        "   {:<9} no camera; presents its police credential with every request",
        ""
    );
    println!("   Every clip is encrypted the moment it is cut; no plaintext video touches a disk.");
    println!();

    // 3. The police ask the area.
    let now = clock::now()?;
    let from = rfc3339(now.saturating_sub(Duration::from_secs(600)));
    let to = rfc3339(now.saturating_add(Duration::from_secs(60)));
    let sent: IdAnswer = authority.api()?.post(
        "/v1/requests",
        &SendRequestBody {
            peer: None,
            area: Some(AREA.into()),
            from: from.clone(),
            to: to.clone(),
            reason: REASON.into(),
            case: Some(CASE.into()),
            access: Some("1h".into()),
        },
    )?;
    let request_id = sent.id;
    println!("3. The police send a signed area request over the mesh");
    println!("   to       every opted-in home within 300 m of {LOCATION}");
    println!("   footage  {from} .. {to}");
    println!("   reason   {REASON}");
    println!("   case     {CASE}, access asked for 1 hour");
    println!();

    // 4. Every home is prompted.
    println!("4. Every home in the area is prompted. What each owner sees:");
    for home in homes {
        let prompt = home.wait_for("the police request's prompt", MESH_LIMIT, || {
            let view: RequestsView = home.api()?.get("/v1/requests")?;
            Ok(view
                .incoming
                .into_iter()
                .find(|r| r.request_id == request_id))
        })?;
        let [who, why, what] = describe_prompt(&prompt);
        println!("   {:<9} {who}", home.name());
        println!("   {:<9} {why}", "");
        println!("   {:<9} {what}", "");
    }
    println!();

    // 5. The owners decide.
    println!("5. The owners decide");
    let granted: IdAnswer = home1.api()?.post(
        &format!("/v1/requests/{request_id}/approve"),
        &ApproveBody {
            duration: Some("1h".into()),
            clips: None,
            retain: false,
        },
    )?;
    let token_id = granted.id;
    println!(
        "   {:<9} approves for 1 hour: token {}, for those clips and this requester only",
        home1.name(),
        short(&token_id)
    );
    let _: IdAnswer = home2.api()?.post(
        &format!("/v1/requests/{request_id}/deny"),
        &DenyBody { message: None },
    )?;
    println!(
        "   {:<9} denies, silently: the police are not even told {} said no",
        home2.name(),
        home2.name()
    );
    println!(
        "   {:<9} never answers; the prompt just waits, and nothing is sent",
        home3.name()
    );
    println!();

    // 6. The police node fetches by itself; the police export for their case.
    let token = authority.wait_for("the granted clips to arrive", TRANSFER_LIMIT, || {
        let view: TokensView = authority.api()?.get("/v1/tokens")?;
        Ok(view
            .tokens
            .into_iter()
            .find(|t| t.token_id == token_id)
            .filter(|t| !t.clips.is_empty() && t.clips_transferred.len() == t.clips.len()))
    })?;
    let plaintext = files_with_mp4_boxes(&authority.data().root().join("received"))?;
    if let Some(file) = plaintext.first() {
        bail!(
            "{} holds a plaintext MP4 box; received footage must stay encrypted",
            file.display()
        );
    }
    println!("6. The police node fetches the granted clips by itself");
    println!(
        "   {} arrived from {}, checked chunk by chunk and stored still encrypted",
        count(token.clips.len() as u64, "clip", "clips"),
        home1.name()
    );
    let export_dir = dir.join(EXPORT_DIR);
    fs::create_dir_all(&export_dir)
        .with_context(|| format!("cannot create {}", export_dir.display()))?;
    let exported: FetchAnswer = authority.api()?.post(
        &format!("/v1/fetch/{request_id}"),
        &FetchBody {
            output_dir: Some(export_dir.display().to_string()),
        },
    )?;
    if exported.exported.is_empty() {
        bail!("the police node exported no clip for request {request_id}");
    }
    println!("   The police export them for the case file, decrypted (`porchlight fetch -o`):");
    for path in &exported.exported {
        let path = Path::new(path);
        let bytes = check_mp4(path)?;
        println!("     {}  {bytes} bytes, MP4", path.display());
    }
    println!();

    // 7. The owner revokes; the police node deletes; a new fetch is refused.
    println!(
        "7. {} changes their mind and revokes the token",
        home1.name()
    );
    let _: IdAnswer = home1.api()?.post(
        &format!("/v1/tokens/{token_id}/revoke"),
        &serde_json::json!({}),
    )?;
    authority.wait_for("the revoked footage to be deleted", MESH_LIMIT, || {
        Ok(received_token(&authority, &token_id)?.filter(|t| t.state == "deleted"))
    })?;
    println!(
        "   The police node got the signed revocation and deleted the footage it had received."
    );
    println!(
        "   (A copy exported during the grant stays where the police put it: no protocol can\n   \
         reach it. That is why every release is in the owner's signed log.)"
    );
    let _: FetchAnswer = authority
        .api()?
        .post(&format!("/v1/fetch/{token_id}"), &FetchBody::default())?;
    let refusal = home1.wait_for("the refused fetch in its audit log", MESH_LIMIT, || {
        Ok(read_all(&home1.data().audit_log())?
            .into_iter()
            .find(|record| matches!(record.entry.event, AuditEvent::FetchRefused { .. })))
    })?;
    println!(
        "   The police node tries to fetch again; {} refuses: the token is revoked.\n   \
         Its audit log: \"{}\"",
        home1.name(),
        describe_event(&refusal.entry.event)
    );
    println!();

    // 8. The records.
    println!("8. Each home's transparency report, from its own signed audit log");
    let now = clock::now()?;
    for home in homes {
        let path = home.data().audit_log();
        let check = verify(&path, home.peer_id())?;
        if !check.is_intact() {
            bail!(
                "{}'s audit log {} does not verify; `porchlight audit verify --data-dir {}` says where",
                home.name(),
                path.display(),
                home.data().root().display()
            );
        }
        let report = TransparencyReport::from_records(&read_all(&path)?, now);
        println!();
        println!(
            "   == {}: {}, every signature and hash link verifies. Left the house: {}, {}",
            home.name(),
            count(check.verified, "entry", "entries"),
            count(report.released.distinct_clips_released, "clip", "clips"),
            count(report.released.bytes_released, "byte", "bytes")
        );
        for line in report.to_string().lines() {
            println!("{}", format!("   | {line}").trim_end());
        }
    }
    let check = verify(&authority.data().audit_log(), authority.peer_id())?;
    if !check.is_intact() {
        bail!("the police node's audit log does not verify");
    }
    println!();
    println!(
        "   The police node's own log verifies too ({}: request sent, grant received, clips \
         received, grant ended).",
        count(check.verified, "entry", "entries")
    );
    println!();

    // 9. Done: stop everything, say where the files are.
    println!("9. Stopping the nodes");
    let stopped = stop_all(homes.into_iter().chain([&authority]));
    for (name, how) in &stopped {
        match how {
            Stopped::Exited(status) if status.success() => {
                println!("   {name:<9} stopped cleanly")
            }
            Stopped::Exited(status) => println!("   {name:<9} stopped ({status})"),
            Stopped::Killed => println!("   {name:<9} did not stop in time and was killed"),
            Stopped::Lost(err) => println!("   {name:<9} could not be waited for ({err})"),
        }
    }
    println!();
    println!(
        "Done in {} s. Everything is left in {}:",
        started.elapsed().as_secs(),
        dir.display()
    );
    println!("   home1/ home2/ home3/ authority/  each node's data dir: keys, encrypted clips,");
    println!("                                    audit.log, daemon.log");
    println!(
        "   {:<33}the decrypted MP4 the police exported",
        format!("{EXPORT_DIR}/")
    );
    println!("   demo-root.key, authority.cred    the demo trust root and the police credential");
    println!(
        "Try: porchlight audit list --data-dir {}",
        dir.join(HOMES[0]).display()
    );
    Ok(())
}

/// Makes the root, the four data dirs, the police credential and the homes' trust lists.
fn set_up(dir: &Path) -> anyhow::Result<(Vec<Prepared>, Prepared, PathBuf)> {
    let root_key = dir.join("demo-root.key");
    let root = generate_root_key(&root_key)?;
    let prepare = |name: &'static str| -> anyhow::Result<Prepared> {
        let data = DataDir::at(dir.join(name));
        let report = init_node(&data, Some(name.to_owned()))?;
        Ok(Prepared {
            name,
            data,
            peer_id: report.peer_id,
        })
    };
    let homes = HOMES
        .into_iter()
        .map(prepare)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let authority = prepare(AUTHORITY)?;
    let now = clock::now()?;
    let signed = issue_credential(
        &load_signing_key(&root_key)?,
        CredentialTerms {
            subject: authority.peer_id,
            display_name: AUTHORITY_NAME.into(),
            jurisdiction: JURISDICTION.into(),
            role: AuthorityRole::Police,
            valid_for: DEFAULT_CREDENTIAL_VALIDITY,
            may_issue: false,
        },
        now,
    )?;
    let credential = dir.join("authority.cred");
    write_credential(&credential, &signed)?;
    for home in &homes {
        TrustList::load(&home.data)?.add(root, "demo root", now)?;
    }
    Ok((homes, authority, credential))
}

/// The flags every demo node shares: loopback only, ephemeral ports, no LAN discovery.
fn node_flags() -> Vec<String> {
    [
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--clip-seconds",
        CLIP_SECONDS,
    ]
    .map(String::from)
    .to_vec()
}

fn start_home(home: &Prepared, bootstrap: Option<&str>) -> anyhow::Result<LocalNode> {
    let mut flags = node_flags();
    flags.extend(["--camera", CAMERA, "--location", LOCATION].map(String::from));
    if let Some(address) = bootstrap {
        flags.extend(["--bootstrap".to_owned(), address.to_owned()]);
    }
    LocalNode::start(home.name, home.data.clone(), home.peer_id, &flags)
}

/// Waits until `node` listens on the mesh, and returns its dialable address.
fn listening_address(node: &LocalNode) -> anyhow::Result<String> {
    let address = node.wait_for("its API and mesh to start", START_LIMIT, || {
        let status: MeshStatus = node.api()?.get("/v1/mesh")?;
        Ok(status.listen_addresses.into_iter().next())
    })?;
    Ok(format!("{address}/p2p/{}", node.peer_id()))
}

/// What the owner's prompt shows: who asks (verified against the owner's own trust list,
/// or not), why, and what it covers.
fn describe_prompt(prompt: &IncomingView) -> [String; 3] {
    let who = match &prompt.authority {
        Some(authority) => format!(
            "from \"{}\" ({}, {}), verified by the owner's trust list",
            authority.name, authority.role, authority.jurisdiction
        ),
        None => format!("from {}, UNVERIFIED", prompt.requester_peer),
    };
    let state = prompt.state.label();
    let what = format!(
        "case {}, {}, {state}",
        prompt.case_number.as_deref().unwrap_or("none"),
        count(
            prompt.matching_clips.len() as u64,
            "matching clip",
            "matching clips"
        )
    );
    [who, format!("\"{}\"", prompt.reason), what]
}

/// `1 clip`, `2 clips`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn received_token(node: &LocalNode, token_id: &str) -> anyhow::Result<Option<TokenView>> {
    let view: TokensView = node.api()?.get("/v1/tokens")?;
    Ok(view.tokens.into_iter().find(|t| t.token_id == token_id))
}

/// Checks an exported file starts like an MP4 (an `ftyp` box) and returns its size.
fn check_mp4(path: &Path) -> anyhow::Result<u64> {
    let mut head = [0u8; 8];
    fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut head))
        .with_context(|| format!("cannot read the exported clip {}", path.display()))?;
    if &head[4..8] != b"ftyp" {
        bail!("the exported clip {} is not an MP4", path.display());
    }
    Ok(fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len())
}

/// Files under `dir` holding an MP4 `ftyp` box: there must be none among received clips.
fn files_with_mp4_boxes(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry
                .with_context(|| format!("cannot read {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if fs::read(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .windows(4)
                .any(|window| window == b"ftyp")
            {
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// The first 16 hex digits of an id, as `porchlight audit list` shows them.
fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}
