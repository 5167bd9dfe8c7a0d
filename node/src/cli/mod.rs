//! The `porchlight` command line: argument shapes (clap) and what each command does.
//!
//! `init`, `node` and `audit` work on the data dir directly; every other operational command
//! asks the running daemon over its local API (so it sees the same store the daemon writes),
//! finds it through `--data-dir`, and prints human text or, with `--json`, the API's JSON.
//! `authority` works on key and credential files alone, `trust` on the data dir's trust list.

pub mod authority;
pub mod consent;
pub mod doctor;
pub mod trust;

pub mod audit;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use porchlight_protocol::PeerId;

use self::audit::AuditCommand;
use crate::api::client::ApiClient;
use crate::api::views::{ClipView, IdView, ImportRequest, RebuildView, StatusView, parse_rfc3339};
use crate::config::{Overrides, default_config_text};
use crate::data_dir::DataDir;
use crate::keys::{Created, NodeKeys};
use crate::store::{Store, StoreConfig};

/// Porchlight: a neighborhood camera mesh where footage leaves a home only with its
/// owner's explicit, time-limited consent.
#[derive(Debug, Parser)]
#[command(name = "porchlight", version)]
pub struct Cli {
    /// The node's data directory [default: $PORCHLIGHT_DATA_DIR, else
    /// $XDG_DATA_HOME/porchlight, else ~/.local/share/porchlight]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the node's identity, vault key, config and store
    Init {
        /// A name for this node, shown to its owner
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the home node: record the cameras into encrypted clips and serve the local API
    Node(NodeArgs),
    /// Show the running node's cameras, clips and disk
    Status {
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show the node's peer id and keys
    Id {
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// List, export, import, hold and release clips
    #[command(subcommand)]
    Clips(ClipsCommand),
    /// Maintain the clip store
    #[command(subcommand)]
    Store(StoreCommand),
    /// Create trust-root keys and issue authority credentials
    #[command(subcommand)]
    Authority(authority::AuthorityCommand),
    /// Choose which authority roots this node trusts
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// List, verify and summarize the node's signed audit log (no daemon needed)
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Ask a home (--peer) or every opted-in home of an area (--area) for footage
    Request(consent::RequestArgs),
    /// Incoming and outgoing requests; approve or deny one
    #[command(subcommand)]
    Requests(consent::RequestsCommand),
    /// Consent tokens issued and received; revoke one
    #[command(subcommand)]
    Tokens(consent::TokensCommand),
    /// Fetch granted footage now, or export it decrypted with -o DIR
    Fetch(consent::FetchArgs),
    /// The mesh: listen addresses, connected peers, cells
    Mesh {
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Run a small neighborhood on this machine and follow one consent request end to end
    ///
    /// Starts three homes with test cameras and a police node with a credential from a demo
    /// trust root, as `porchlight node` processes on loopback. The police ask the area for
    /// footage; one home approves, one denies, one never answers; the police fetch and
    /// export the MP4; the owner revokes and the next fetch is refused; each home's audit
    /// report is printed. Ends by itself in well under a minute.
    Demo {
        /// Where to leave the demo's files: a new or empty directory (default: a new
        /// directory under the system temporary directory, kept afterwards)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell)
    ///
    /// For example `porchlight completions bash > ~/.local/share/bash-completion/completions/porchlight`;
    /// `make install` puts bash, zsh and fish scripts where those shells look.
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `porchlight man | man -l -`
    Man,
    /// Check what this node needs (plugins, cameras, disk, clock, mesh, trust roots, audit
    /// log) and say how to fix what is wrong; exits non-zero if a check failed
    Doctor {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A camera as NAME=SPEC or SPEC (repeatable). SPEC: test, test:WIDTHxHEIGHT@FPS,
    /// v4l2:/dev/videoN, rtsp://..., file:PATH, none [default: test]
    #[arg(long = "camera", value_name = "SPEC")]
    pub cameras: Vec<String>,
    /// Seconds of video per clip [default: 60]
    #[arg(long, value_name = "N")]
    pub clip_seconds: Option<u64>,
    /// Address of the local HTTP API [default: 127.0.0.1:7878]
    #[arg(long, value_name = "ADDR")]
    pub api: Option<String>,
    /// A mesh multiaddr to listen on (repeatable) [default: /ip4/0.0.0.0/tcp/4001 and
    /// /ip4/0.0.0.0/udp/4001/quic-v1]
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// A mesh peer to dial at start, ending in /p2p/PEER_ID (repeatable)
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Relay connections for neighbors behind NAT
    #[arg(long)]
    pub relay_server: bool,
    /// Do not look for homes on the LAN with mDNS
    #[arg(long)]
    pub no_mdns: bool,
    /// Opt in to area requests near LAT,LON (degrees); only its ~1 km cell is shared
    #[arg(long, value_name = "LAT,LON", allow_hyphen_values = true)]
    pub location: Option<String>,
    /// This node's authority credential (repeatable: its own first, then each issuer's)
    #[arg(long = "credential", value_name = "CRED")]
    pub credentials: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ClipsCommand {
    /// List clips, oldest first
    List {
        /// Only this camera's clips
        #[arg(long)]
        camera: Option<String>,
        /// Only clips that end after this time (RFC 3339)
        #[arg(long)]
        from: Option<String>,
        /// Only clips that start before this time (RFC 3339)
        #[arg(long)]
        to: Option<String>,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Decrypt one of this node's clips to an MP4 file
    Export {
        /// The clip id, or its first 8 or more hex digits
        clip: String,
        /// The MP4 file to write
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Bring an existing video file into the encrypted store
    Import {
        /// The video file to seal into the store
        file: PathBuf,
        /// The camera name to file it under
        #[arg(long, default_value = "imported")]
        camera: String,
        /// When the recording started (RFC 3339) [default: the file's time minus its length]
        #[arg(long)]
        start: Option<String>,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Keep a clip past retention until it is released
    Hold {
        /// The clip id, or its first 8 or more hex digits
        clip: String,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Let retention delete a held clip again
    Release {
        /// The clip id, or its first 8 or more hex digits
        clip: String,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Rebuild the index from the clip files (they are the source of truth)
    Rebuild {
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { dir } => crate::neighborhood_demo::run(dir),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write (a closed pipe).
            let mut script = Vec::new();
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "porchlight", &mut script);
            print_bytes(&script)
        }
        Command::Doctor { json } => {
            let checks = doctor::checks(&DataDir::resolve(cli.data_dir)?);
            print(json, &checks, |checks| doctor::print(checks))?;
            let failed = checks
                .iter()
                .filter(|check| check.verdict == doctor::Verdict::Fail)
                .count();
            if failed > 0 {
                bail!("{failed} check(s) failed; the fixes are above");
            }
            Ok(())
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut page)
                .context("cannot render the manual page")?;
            print_bytes(&page)
        }
        Command::Init { name } => init(DataDir::resolve(cli.data_dir)?, name),
        Command::Node(args) => crate::daemon::run(
            DataDir::resolve(cli.data_dir)?,
            Overrides {
                cameras: args.cameras,
                clip_seconds: args.clip_seconds,
                api: args.api,
                listen: args.listen,
                bootstrap: args.bootstrap,
                relay_server: args.relay_server.then_some(true),
                mdns: args.no_mdns.then_some(false),
                location: args.location,
                credentials: args.credentials,
            },
        ),
        Command::Request(args) => consent::request(&client(cli.data_dir)?, args),
        Command::Requests(command) => consent::requests(&client(cli.data_dir)?, command),
        Command::Tokens(command) => consent::tokens(&client(cli.data_dir)?, command),
        Command::Fetch(args) => consent::fetch(&client(cli.data_dir)?, args),
        Command::Mesh { json } => {
            let status: crate::mesh::MeshStatus = client(cli.data_dir)?.get("/v1/mesh")?;
            print(json, &status, print_mesh)
        }
        Command::Status { json } => {
            let status: StatusView = client(cli.data_dir)?.get("/v1/status")?;
            print(json, &status, print_status)?;
            // A monitoring script can rely on the exit code; the reasons are above (and in
            // `--json`).
            if !status.degraded.is_empty() {
                let failing: Vec<&str> = status
                    .degraded
                    .iter()
                    .map(|problem| problem.component.as_str())
                    .collect();
                anyhow::bail!("the node is degraded: {}", failing.join(", "));
            }
            Ok(())
        }
        Command::Id { json } => {
            let id: IdView = client(cli.data_dir)?.get("/v1/id")?;
            print(json, &id, |id| {
                println!("peer id           {}", id.peer_id);
                println!("vault public key  {}", id.vault_public_key);
                println!("local api         {}", id.api);
                for address in &id.listen_addresses {
                    println!("listening on      {address}");
                }
            })
        }
        Command::Clips(command) => clips(cli.data_dir, command),
        Command::Authority(command) => authority::run(command),
        Command::Trust(command) => trust::run(cli.data_dir, command),
        Command::Audit(command) => audit::run(&DataDir::resolve(cli.data_dir)?, command),
        Command::Store(StoreCommand::Rebuild { json }) => {
            let report: RebuildView =
                client(cli.data_dir)?.post("/v1/store/rebuild", &serde_json::json!({}))?;
            print(json, &report, |report| println!("{}", report.summary))
        }
    }
}

/// Writes `bytes` to stdout; a reader that closed the pipe early (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

fn client(data_dir: Option<PathBuf>) -> anyhow::Result<ApiClient> {
    ApiClient::connect(&DataDir::resolve(data_dir)?)
}

pub(crate) fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T),
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).context("cannot print JSON")?
        );
    } else {
        human(value);
    }
    Ok(())
}

/// What [`init_node`] did to a data dir.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub peer_id: PeerId,
    /// Whether the keys are new or were already there (and kept).
    pub created: Created,
    /// The config file, if this run wrote it (an existing one is never replaced).
    pub config_written: Option<PathBuf>,
}

/// Creates a node in `dir`, or completes one that is partly there: the directory (0700),
/// identity and vault keys, the clip store, and a `config.toml` naming the node `name`.
/// Existing keys and config are kept, never overwritten. Prints nothing: `porchlight init`
/// and `porchlight demo` both use it.
pub fn init_node(dir: &DataDir, name: Option<String>) -> anyhow::Result<InitReport> {
    // Only the owner may look inside a new data dir: keys, the index and clip names live
    // there. An existing directory keeps its mode.
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.root())
        .with_context(|| format!("cannot create data dir {}", dir.root().display()))?;
    dir.check_usable()?;
    let (keys, created) = NodeKeys::create(dir)?;
    // Opening the store creates it (index, clips dir, the vault check); closing it at once
    // releases its lock for `porchlight node`.
    let peer_id = keys.identity.peer_id();
    drop(
        Store::open(dir.root(), keys.vault, StoreConfig::default())
            .context("cannot create the clip store; is a porchlight node already running here?")?,
    );
    let config = dir.config();
    let config_written = if config.exists() {
        None
    } else {
        let name = name.unwrap_or_else(|| "porchlight".to_owned());
        std::fs::write(&config, default_config_text(&name))
            .with_context(|| format!("cannot write {}", config.display()))?;
        Some(config)
    };
    Ok(InitReport {
        peer_id,
        created,
        config_written,
    })
}

fn init(dir: DataDir, name: Option<String>) -> anyhow::Result<()> {
    let report = init_node(&dir, name)?;
    match report.created {
        Created::New => println!("created a new node in {}", dir.root().display()),
        Created::AlreadyThere => println!(
            "{} already holds a node; its keys were kept, nothing was overwritten",
            dir.root().display()
        ),
    }
    println!("peer id  {}", report.peer_id);
    if let Some(config) = &report.config_written {
        println!("config   {}", config.display());
    }
    println!(
        "start it with: porchlight node --data-dir {}",
        dir.root().display()
    );
    Ok(())
}

fn clips(data_dir: Option<PathBuf>, command: ClipsCommand) -> anyhow::Result<()> {
    let api = client(data_dir)?;
    match command {
        ClipsCommand::List {
            camera,
            from,
            to,
            json,
        } => {
            let mut query = Vec::new();
            if let Some(camera) = camera {
                query.push(format!("camera={}", url_escape(&camera)));
            }
            for (key, value) in [("from", from), ("to", to)] {
                if let Some(value) = value {
                    parse_rfc3339(&value).map_err(anyhow::Error::msg)?;
                    query.push(format!("{key}={}", url_escape(&value)));
                }
            }
            let path = if query.is_empty() {
                "/v1/clips".to_owned()
            } else {
                format!("/v1/clips?{}", query.join("&"))
            };
            let clips: Vec<ClipView> = api.get(&path)?;
            print(json, &clips, |clips| {
                if clips.is_empty() {
                    println!("no clips");
                }
                for clip in clips {
                    print_clip(clip);
                }
            })
        }
        ClipsCommand::Export { clip, output } => {
            check_clip_arg(&clip)?;
            let bytes = api.download(&format!("/v1/clips/{clip}/mp4"), &output)?;
            println!("wrote {} ({bytes} bytes)", output.display());
            Ok(())
        }
        ClipsCommand::Import {
            file,
            camera,
            start,
            json,
        } => {
            let path = std::fs::canonicalize(&file)
                .with_context(|| format!("cannot read import file {}", file.display()))?;
            std::fs::File::open(&path)
                .with_context(|| format!("cannot read import file {}", path.display()))?;
            if let Some(start) = &start {
                parse_rfc3339(start).map_err(anyhow::Error::msg)?;
            }
            let request = ImportRequest {
                path: path.to_string_lossy().into_owned(),
                camera,
                start,
            };
            let clip: ClipView = api.post("/v1/clips/import", &request)?;
            print(json, &clip, |clip| {
                print!("imported ");
                print_clip(clip);
            })
        }
        ClipsCommand::Hold { clip, json } => {
            check_clip_arg(&clip)?;
            let clip: ClipView =
                api.post(&format!("/v1/clips/{clip}/hold"), &serde_json::json!({}))?;
            print(json, &clip, |clip| {
                println!("held {} (retention will keep it)", clip.id)
            })
        }
        ClipsCommand::Release { clip, json } => {
            check_clip_arg(&clip)?;
            let clip: ClipView =
                api.post(&format!("/v1/clips/{clip}/release"), &serde_json::json!({}))?;
            print(json, &clip, |clip| println!("released {}", clip.id))
        }
    }
}

/// A clip argument goes into a URL path: only hex digits may.
fn check_clip_arg(clip: &str) -> anyhow::Result<()> {
    if clip.is_empty() || !clip.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{clip:?} is not a clip id; copy one from `porchlight clips list`");
    }
    Ok(())
}

fn url_escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn print_clip(clip: &ClipView) {
    println!(
        "{}  {:<12} {}  {}  {:>10} bytes{}",
        &clip.id[..16.min(clip.id.len())],
        clip.camera,
        clip.start,
        clip.end,
        clip.bytes,
        if clip.held { "  held" } else { "" }
    );
}

fn print_mesh(status: &crate::mesh::MeshStatus) {
    println!("peer id      {}", status.peer_id);
    for address in &status.listen_addresses {
        println!("listening    {address}/p2p/{}", status.peer_id);
    }
    println!("reachability {}", status.nat);
    for cell in &status.cells {
        println!("cell         {cell}");
    }
    println!("remembered   {} peer(s)", status.known_peers);
    println!("connected    {} peer(s)", status.connected_peers.len());
    if status.peers.is_empty() {
        return;
    }
    let width = status
        .peers
        .iter()
        .map(|peer| peer.peer_id.len())
        .max()
        .unwrap_or(4);
    println!();
    println!(
        "  {:<width$}  {:<7}  {:<9}  {:<8}  ADDRESS",
        "PEER", "LINK", "DIRECTION", "MY CELLS"
    );
    for peer in &status.peers {
        for link in &peer.links {
            println!(
                "  {:<width$}  {:<7}  {:<9}  {:<8}  {}",
                peer.peer_id,
                link.kind,
                link.direction,
                if peer.in_my_cells { "yes" } else { "no" },
                link.address
            );
        }
    }
}

fn print_status(status: &StatusView) {
    println!("node     {} ({})", status.name, status.peer_id);
    println!(
        "running  since {}, version {}",
        status.started_at, status.version
    );
    println!(
        "clips    {} ({} bytes), oldest {}, newest {}",
        status.clips.count,
        status.clips.bytes,
        status.clips.oldest.as_deref().unwrap_or("-"),
        status.clips.newest.as_deref().unwrap_or("-")
    );
    if let Some(free) = status.disk.free_bytes {
        println!("disk     {free} bytes free");
    }
    for problem in &status.degraded {
        match &problem.since {
            Some(since) => println!(
                "DEGRADED {} since {since} ({} failed writes): {}",
                problem.component, problem.failures, problem.error
            ),
            None => println!("DEGRADED {}: {}", problem.component, problem.error),
        }
        println!("         {}", problem.effect);
    }

    if status.cameras.is_empty() {
        println!("cameras  none");
    }
    for camera in &status.cameras {
        println!(
            "camera   {:<12} {:<10} {} clips, last {}  ({})",
            camera.name,
            camera.state,
            camera.clips_recorded,
            camera.last_clip_at.as_deref().unwrap_or("-"),
            camera.source
        );
        if let Some(detail) = &camera.detail {
            println!("         {detail}");
        }
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument of every command, with the command path that holds it, that has no
    /// help text.
    fn undocumented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} --{id}"));
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_about().is_none()
                && sub.get_long_about().is_none()
                && sub.get_name() != "help"
            {
                missing.push(format!("{path} {} (the command)", sub.get_name()));
            }
            undocumented(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_flag_and_command_has_help_text() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "porchlight", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
