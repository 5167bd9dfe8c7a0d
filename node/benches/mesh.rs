//! `make bench-mesh`: the consent flow's two headline numbers, measured between real
//! `porchlight node` daemons (the release build) talking libp2p over loopback TCP.
//!
//! 1. Request-to-token latency under a pre-authorization rule (no human in the loop): an
//!    authority with a police credential from a demo root sends direct requests to a home
//!    that trusts the root and pre-authorizes police for the last 30 minutes. Each
//!    request's latency is read from the authority's own signed audit log, `request_sent`
//!    to `grant_received`, so neither the API call nor any polling is in the figure. The
//!    load is open-loop: one request every 1/RATE s from one long-lived API client, so the
//!    CLI's process start is not measured and a slow answer does not slow the sender.
//!    Every grant makes the authority fetch its clips (2 s clips of a 160x120 test camera),
//!    as it would in use.
//! 2. Fetch throughput of one 1 GiB clip from a second home, side by side in the same run
//!    with `scp` of the same bytes to a private `sshd` on 127.0.0.1 (alternating, 3 rounds
//!    each, medians). The clip is imported straight into the home's store before its daemon
//!    starts (random bytes, explicit times: no media probe), requested, approved through the
//!    API, and timed from the authority's `grant_received` to its `clip_received` (which
//!    includes storing and fsyncing the clip) and, on the owner's side, from `fetch_served`
//!    to `fetch_completed`. After each round the grant is revoked, so the authority deletes
//!    the copy. `scp` is timed from start to exit, and again with an fsync of the copy; it
//!    runs with the cipher ssh negotiates by default and again with aes128-gcm forced (if
//!    offered), since the cipher decides much of scp's speed.
//!
//! Run with `make bench-mesh` (which installs `openssh-server` if `sshd` is missing and
//! builds the release binary first). Knobs: `PORCHLIGHT_BENCH_REQUESTS` (default 1000),
//! `PORCHLIGHT_BENCH_RATE` (requests per second, default 20), `PORCHLIGHT_BENCH_BYTES`
//! (default 1 GiB), `PORCHLIGHT_BENCH_SKIP_SCP=1`, `PORCHLIGHT_BENCH_TRANSPORT=quic` (the
//! mesh over QUIC instead of TCP), `PORCHLIGHT_BENCH_BIN` (another `porchlight` binary, to
//! compare builds), `PORCHLIGHT_BENCH_OUT` (where the raw numbers go; default
//! `target/tmp/bench-mesh.json`). Everything else lives in a temporary
//! directory that is removed at the end; every child process is killed when the bench ends.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use porchlight_node::api::client::ApiClient;
use porchlight_node::api::consent::{ApproveBody, IdAnswer, SendRequestBody};
use porchlight_node::data_dir::DataDir;
use porchlight_node::keys::NodeKeys;
use porchlight_node::store::{Store, StoreConfig};
use porchlight_protocol::Timestamp;
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};

/// The `porchlight` binary: this build's, or `PORCHLIGHT_BENCH_BIN` (to compare builds).
fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var_os("PORCHLIGHT_BENCH_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_porchlight")),
            PathBuf::from,
        )
    })
}
const ROUNDS: usize = 3;
const CAMERA: &str = "porch=test:160x120@5";
const CLIP_SECONDS: &str = "2";
/// The request window: the last few seconds, so one or two 2 s clips match.
const WINDOW: Duration = Duration::from_secs(4);
const CONFIG_RULES: &str =
    "\n[[rules.pre_authorize]]\nrole = \"police\"\nmax_lookback = \"30m\"\ngrant_for = \"1h\"\n";
/// Raised for the bench: the default per-peer limit (10 at once, then one per 6 s) is what
/// a home wants, and would refuse most of 1,000 requests from one authority.
/// They go under the `[limits]` header `porchlight init` writes.
const CONFIG_LIMITS: &str = "[limits]\nper_peer_burst = 5000\nper_peer_refill = \"1ms\"\nglobal_burst = 5000\nglobal_refill = \"1ms\"\n";

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|arg| arg == "--list" || arg == "--test") {
        // `cargo test --benches` and `cargo bench -- --list` expect no measurement.
        return Ok(());
    }
    let knobs = Knobs::from_env()?;
    let machine = machine();
    println!("porchlight mesh bench on {machine}");
    println!("binary: {}, mesh over {}", bin().display(), knobs.transport);
    let tmp = tempfile::tempdir().context("cannot make a temporary directory")?;
    let root = tmp.path();

    let hood = Hood::build(root, &knobs)?;
    println!(
        "home {} (pre-authorizes police), fetch home {}, authority {}",
        hood.home.peer_id, hood.fetch_home.peer_id, hood.authority.peer_id
    );

    let latency = measure_latency(&hood, &knobs)?;
    latency.print();

    let fetch = measure_fetch(&hood, &knobs, root)?;
    for daemon in [&hood.home, &hood.fetch_home, &hood.authority] {
        run_ok(daemon.cmd().args(["audit", "verify"]))
            .with_context(|| format!("the audit log of {} does not verify", daemon.name))?;
    }
    println!("every node's audit log verifies");

    let report = json!({
        "machine": machine,
        "date": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "binary": bin(),
        "transport": knobs.transport,
        "latency": latency.to_json(),
        "fetch": fetch.to_json(),
    });
    std::fs::write(
        &knobs.out,
        serde_json::to_vec_pretty(&report).context("cannot encode the raw numbers")?,
    )
    .with_context(|| format!("cannot write {}", knobs.out.display()))?;

    println!();
    println!("Summary ({machine})");
    latency.print_summary();
    fetch.print_summary();
    println!("raw numbers: {}", knobs.out.display());
    Ok(())
}

/// What the environment may change.
struct Knobs {
    requests: usize,
    rate: f64,
    bytes: u64,
    skip_scp: bool,
    /// "tcp" or "quic": what every node listens on.
    transport: String,
    out: PathBuf,
}

impl Knobs {
    fn from_env() -> anyhow::Result<Knobs> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .ok()
                    .with_context(|| format!("{name}={text:?} is not a number")),
                Err(_) => Ok(default),
            }
        }
        let knobs = Knobs {
            requests: var("PORCHLIGHT_BENCH_REQUESTS", 1000)?,
            rate: var("PORCHLIGHT_BENCH_RATE", 20.0)?,
            bytes: var("PORCHLIGHT_BENCH_BYTES", 1 << 30)?,
            skip_scp: std::env::var("PORCHLIGHT_BENCH_SKIP_SCP").is_ok_and(|v| v == "1"),
            transport: std::env::var("PORCHLIGHT_BENCH_TRANSPORT").unwrap_or_else(|_| "tcp".into()),
            out: std::env::var_os("PORCHLIGHT_BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-mesh.json")),
        };
        ensure!(
            knobs.requests > 0,
            "PORCHLIGHT_BENCH_REQUESTS must be at least 1"
        );
        ensure!(
            knobs.rate > 0.0 && knobs.rate <= 1000.0,
            "PORCHLIGHT_BENCH_RATE must be more than 0 and at most 1000"
        );
        ensure!(knobs.bytes > 0, "PORCHLIGHT_BENCH_BYTES must be at least 1");
        ensure!(
            knobs.transport == "tcp" || knobs.transport == "quic",
            "PORCHLIGHT_BENCH_TRANSPORT must be tcp or quic"
        );
        Ok(knobs)
    }
}

/// `nproc`, the CPU model and the memory, for the record.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or("unknown CPU", |(_, model)| model.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cpus} logical CPUs, {mem_gib:.0} GiB, Linux {}",
        kernel.trim()
    )
}

// ---------------------------------------------------------------------------------------
// The nodes
// ---------------------------------------------------------------------------------------

fn porchlight(data_dir: &Path) -> Command {
    let mut command = Command::new(bin());
    command.arg("--data-dir").arg(data_dir);
    command
}

fn run_ok(command: &mut Command) -> anyhow::Result<Output> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// The first `12D3KooW...` word a command printed (a peer id or a root's public key).
fn printed_key(out: &Output) -> anyhow::Result<String> {
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|word| word.starts_with("12D3KooW"))
        .map(str::to_owned)
        .context("the command printed no peer id")
}

fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = ready()? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// One `porchlight node` process, killed when dropped.
struct Daemon {
    name: String,
    dir: PathBuf,
    child: Killed,
    peer_id: String,
    /// `/ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID`.
    address: String,
    api: ApiClient,
}

impl Daemon {
    fn init(root: &Path, name: &str) -> anyhow::Result<(PathBuf, String)> {
        let dir = root.join(name);
        let out = run_ok(porchlight(&dir).args(["init", "--name", name]))?;
        Ok((dir, printed_key(&out)?))
    }

    fn start(dir: PathBuf, name: &str, listen: &str, extra: &[&str]) -> anyhow::Result<Daemon> {
        let log = File::create(dir.join("daemon.log")).context("cannot create a daemon log")?;
        let _ = std::fs::remove_file(DataDir::at(&dir).api_address());
        let child = porchlight(&dir)
            .args([
                "node",
                "--api",
                "127.0.0.1:0",
                "--listen",
                listen,
                "--no-mdns",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start porchlight node")?;
        let mut child = Killed(child);
        let (api, status) = wait_for(Duration::from_secs(60), "the daemon to listen", || {
            if let Some(status) = child.0.try_wait()? {
                let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
                bail!("{name}'s daemon exited ({status}):\n{log}");
            }
            let Ok(api) = ApiClient::connect(&DataDir::at(&dir)) else {
                return Ok(None);
            };
            let Ok(status) = api.get::<Value>("/v1/mesh") else {
                return Ok(None);
            };
            let listening = status["listen_addresses"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            Ok(listening.then_some((api, status)))
        })?;
        let peer_id = status["peer_id"]
            .as_str()
            .context("the mesh status has no peer id")?
            .to_owned();
        let address = status["listen_addresses"][0]
            .as_str()
            .context("the mesh status has no address")?;
        Ok(Daemon {
            name: name.to_owned(),
            address: format!("{address}/p2p/{peer_id}"),
            peer_id,
            dir,
            child,
            api,
        })
    }

    fn cmd(&self) -> Command {
        porchlight(&self.dir)
    }

    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(self.child.0.id(), false)
    }

    /// The node's audit log, through `porchlight audit list --json` (it reads the file).
    fn audit(&self) -> anyhow::Result<Vec<Value>> {
        let out = run_ok(self.cmd().args(["audit", "list", "--json"]))?;
        let list: Value =
            serde_json::from_slice(&out.stdout).context("audit list --json is not JSON")?;
        Ok(list.as_array().cloned().unwrap_or_default())
    }

    fn connected_to(&self, peer: &str) -> anyhow::Result<bool> {
        let status: Value = self.api.get("/v1/mesh")?;
        Ok(status["connected_peers"]
            .as_array()
            .is_some_and(|peers| peers.iter().any(|p| p == peer)))
    }
}

/// A child process that is killed when dropped (the daemons and sshd).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The neighborhood: a home with a test camera that pre-authorizes police, a home with one
/// large imported clip and no camera, and an authority with a police credential.
struct Hood {
    home: Daemon,
    fetch_home: Daemon,
    authority: Daemon,
    /// The large clip in `fetch_home`'s store.
    clip_id: String,
    clip_start: SystemTime,
    /// The plaintext the clip was imported from (what scp copies).
    source: PathBuf,
}

impl Hood {
    fn build(root: &Path, knobs: &Knobs) -> anyhow::Result<Hood> {
        let listen = match knobs.transport.as_str() {
            "quic" => "/ip4/127.0.0.1/udp/0/quic-v1",
            _ => "/ip4/127.0.0.1/tcp/0",
        };
        let root_key = root.join("root.key");
        let out = run_ok(
            Command::new(bin())
                .args(["authority", "root-keygen", "-o"])
                .arg(&root_key),
        )?;
        let root_public = printed_key(&out)?;
        let (authority_dir, authority_id) = Daemon::init(root, "authority")?;
        let credential = root.join("authority.cred");
        run_ok(
            Command::new(bin())
                .args(["authority", "issue", "--root-key"])
                .arg(&root_key)
                .args([
                    "--peer",
                    &authority_id,
                    "--name",
                    "Bench Police",
                    "--jurisdiction",
                    "Loopback",
                    "--role",
                    "police",
                    "-o",
                ])
                .arg(&credential),
        )?;

        let (home_dir, _) = Daemon::init(root, "home")?;
        let (fetch_dir, _) = Daemon::init(root, "fetch-home")?;
        for dir in [&home_dir, &fetch_dir] {
            run_ok(porchlight(dir).args(["trust", "add", &root_public, "--label", "bench root"]))?;
        }
        let config_path = DataDir::at(&home_dir).config();
        let config = std::fs::read_to_string(&config_path).context("cannot read config.toml")?;
        ensure!(
            config.contains("\n[limits]\n"),
            "the config porchlight init wrote has no [limits] table"
        );
        let config = config.replacen("[limits]\n", CONFIG_LIMITS, 1) + CONFIG_RULES;
        std::fs::write(&config_path, config).context("cannot write config.toml")?;

        // The large clip goes into the fetch home's store before its daemon starts.
        let source = root.join("footage.bin");
        let started = Instant::now();
        write_random_file(&source, knobs.bytes)?;
        let clip_end = SystemTime::now();
        let clip_start = clip_end - Duration::from_secs(60);
        let keys = NodeKeys::load(&DataDir::at(&fetch_dir))?;
        let store = Store::open(&fetch_dir, keys.vault, StoreConfig::default())
            .context("cannot open the fetch home's store")?;
        let record = store
            .import(
                File::open(&source).context("cannot open the footage")?,
                "bench",
                timestamp(clip_start)?,
                timestamp(clip_end)?,
            )
            .context("cannot import the footage")?;
        drop(store);
        println!(
            "wrote and imported {} bytes of random footage in {:.1} s",
            knobs.bytes,
            started.elapsed().as_secs_f64()
        );

        let home = Daemon::start(
            home_dir,
            "home",
            listen,
            &["--camera", CAMERA, "--clip-seconds", CLIP_SECONDS],
        )?;
        let fetch_home = Daemon::start(fetch_dir, "fetch-home", listen, &["--camera", "none"])?;
        let credential = credential
            .to_str()
            .context("the temporary directory is not UTF-8")?;
        let authority = Daemon::start(
            authority_dir,
            "authority",
            listen,
            &[
                "--camera",
                "none",
                "--credential",
                credential,
                "--bootstrap",
                &home.address,
                "--bootstrap",
                &fetch_home.address,
            ],
        )?;
        wait_for(Duration::from_secs(60), "two recorded clips", || {
            let clips: Value = home.api.get("/v1/clips")?;
            Ok((clips.as_array().map_or(0, Vec::len) >= 2).then_some(()))
        })?;
        wait_for(Duration::from_secs(30), "the authority to connect", || {
            Ok((authority.connected_to(&home.peer_id)?
                && authority.connected_to(&fetch_home.peer_id)?)
            .then_some(()))
        })?;
        Ok(Hood {
            home,
            fetch_home,
            authority,
            clip_id: record.clip_id.to_string(),
            clip_start,
            source,
        })
    }
}

fn timestamp(time: SystemTime) -> anyhow::Result<Timestamp> {
    let ms = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis();
    Ok(Timestamp::from_unix_millis(u64::try_from(ms)?))
}

fn write_random_file(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64))?;
        OsRng.fill_bytes(&mut block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// Every audit record of one `event.type`, by the value of `key` in its event.
fn events_by(records: &[Value], kind: &str, key: &str) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    for record in records {
        let event = &record["event"];
        if event["type"] == kind {
            if let Some(id) = event[key].as_str() {
                found.entry(id.to_owned()).or_insert_with(|| record.clone());
            }
        }
    }
    found
}

fn at_ms(record: &Value) -> anyhow::Result<u64> {
    record["at_ms"]
        .as_u64()
        .context("an audit record without at_ms")
}

// ---------------------------------------------------------------------------------------
// 1. Request-to-token latency
// ---------------------------------------------------------------------------------------

struct Latency {
    sent: usize,
    rate: f64,
    send_seconds: f64,
    /// request_sent -> grant_received, ms, sorted.
    latencies_ms: Vec<u64>,
    /// How long each POST /v1/requests took, ms.
    post_ms: Vec<f64>,
    clips_granted: usize,
    clips_fetched: usize,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn measure_latency(hood: &Hood, knobs: &Knobs) -> anyhow::Result<Latency> {
    let (authority, home) = (&hood.authority, &hood.home);
    println!(
        "\n1. request-to-token latency: {} direct requests, open loop at {}/s from one API client",
        knobs.requests, knobs.rate
    );
    let interval = Duration::from_secs_f64(1.0 / knobs.rate);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(knobs.requests);
    let mut post_ms = Vec::with_capacity(knobs.requests);
    for index in 0..knobs.requests {
        let due = started + interval.mul_f64(index as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = SystemTime::now();
        let body = SendRequestBody {
            peer: Some(home.address.clone()),
            area: None,
            from: rfc3339(now - WINDOW),
            to: rfc3339(now),
            reason: "bench: porch camera, last seconds".to_owned(),
            case: Some(format!("BENCH-{index}")),
            access: Some("1h".to_owned()),
        };
        let posted = Instant::now();
        let answer: IdAnswer = authority.api.post("/v1/requests", &body)?;
        post_ms.push(posted.elapsed().as_secs_f64() * 1e3);
        ids.push(answer.id);
    }
    let send_seconds = started.elapsed().as_secs_f64();
    println!(
        "   sent {} in {send_seconds:.1} s; waiting for the grants",
        ids.len()
    );

    // Every grant, or whatever has arrived 60 s after the last send.
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records = authority.audit()?;
        let granted = events_by(&records, "grant_received", "request_id");
        if ids.iter().all(|id| granted.contains_key(id)) || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let sent = events_by(&records, "request_sent", "request_id");
    let granted = events_by(&records, "grant_received", "request_id");
    let mut latencies_ms = Vec::new();
    for id in &ids {
        if let (Some(sent), Some(granted)) = (sent.get(id), granted.get(id)) {
            latencies_ms.push(at_ms(granted)?.saturating_sub(at_ms(sent)?));
        }
    }
    latencies_ms.sort_unstable();

    // The automatic fetches of every grant, so they are done before the fetch bench.
    let (clips_granted, clips_fetched) = wait_for(
        Duration::from_secs(180),
        "the granted clips to arrive",
        || {
            let tokens: Value = authority.api.get("/v1/tokens")?;
            let (mut granted, mut fetched) = (0, 0);
            for token in tokens["tokens"].as_array().into_iter().flatten() {
                if token["direction"] == "received" && token["owner"] == home.peer_id.as_str() {
                    granted += token["clips"].as_array().map_or(0, Vec::len);
                    fetched += token["clips_transferred"].as_array().map_or(0, Vec::len);
                }
            }
            Ok((fetched >= granted).then_some((granted, fetched)))
        },
    )?;
    Ok(Latency {
        sent: ids.len(),
        rate: knobs.rate,
        send_seconds,
        latencies_ms,
        post_ms,
        clips_granted,
        clips_fetched,
    })
}

impl Latency {
    fn p(&self, p: f64) -> u64 {
        percentile(&self.latencies_ms, p)
    }

    fn print(&self) {
        let mut post = self.post_ms.clone();
        post.sort_by(f64::total_cmp);
        let post_median = post.get(post.len() / 2).copied().unwrap_or(0.0);
        println!(
            "   granted {} of {}; request_sent -> grant_received: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms, min {} ms",
            self.latencies_ms.len(),
            self.sent,
            self.p(50.0),
            self.p(90.0),
            self.p(99.0),
            self.latencies_ms.last().copied().unwrap_or(0),
            self.latencies_ms.first().copied().unwrap_or(0),
        );
        println!(
            "   (the API call that sends a request took {post_median:.1} ms at the median; {} of {} granted clips fetched)",
            self.clips_fetched, self.clips_granted
        );
    }

    fn print_summary(&self) {
        println!(
            "  request -> token (pre-authorized, {} requests at {}/s): p50 {} ms  p99 {} ms  max {} ms  granted {}/{}",
            self.sent,
            self.rate,
            self.p(50.0),
            self.p(99.0),
            self.latencies_ms.last().copied().unwrap_or(0),
            self.latencies_ms.len(),
            self.sent
        );
    }

    fn to_json(&self) -> Value {
        json!({
            "requests": self.sent,
            "rate_per_second": self.rate,
            "send_seconds": self.send_seconds,
            "granted": self.latencies_ms.len(),
            "p50_ms": self.p(50.0),
            "p90_ms": self.p(90.0),
            "p99_ms": self.p(99.0),
            "max_ms": self.latencies_ms.last(),
            "latencies_ms_sorted": self.latencies_ms,
            "post_ms": self.post_ms,
            "clips_granted": self.clips_granted,
            "clips_fetched": self.clips_fetched,
        })
    }
}

// ---------------------------------------------------------------------------------------
// 2. Fetch throughput against scp
// ---------------------------------------------------------------------------------------

struct FetchRound {
    /// CPU seconds both daemons used from the request until the clip was stored.
    cpu_seconds: f64,
    /// grant_received -> clip_received at the authority, ms.
    requester_ms: u64,
    /// fetch_served -> fetch_completed at the owner, ms.
    owner_ms: u64,
    /// Ciphertext bytes the owner reported sending.
    bytes_sent: u64,
}

struct ScpRound {
    /// CPU seconds of scp and ssh (client) and of sshd's processes for the connection.
    cpu_seconds: f64,
    copy: Duration,
    /// The copy and then `sync FILE` (an fsync of it), as porchlight's receiver does.
    copy_and_fsync: Duration,
}

/// The scp rounds with one cipher.
struct ScpSeries {
    /// The cipher ssh negotiated, or the one forced with `-c`.
    cipher: String,
    /// Whether this is ssh's own choice (the baseline) or a forced faster cipher.
    default: bool,
    rounds: Vec<ScpRound>,
}

/// The cipher forced for the second scp series, if this OpenSSH offers it: with AES-NI it
/// is usually faster than the default chacha20-poly1305.
const FAST_CIPHER: &str = "aes128-gcm@openssh.com";

struct Fetch {
    media_bytes: u64,
    rounds: Vec<FetchRound>,
    scp: Vec<ScpSeries>,
    /// `ssh true`: the connection setup inside every scp time (porchlight's connection
    /// already exists when the grant arrives).
    ssh_handshake: Option<Duration>,
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn measure_fetch(hood: &Hood, knobs: &Knobs, root: &Path) -> anyhow::Result<Fetch> {
    println!(
        "\n2. fetch of one {} byte clip, fetch home -> authority, against scp of the same bytes; {ROUNDS} rounds each, alternating",
        knobs.bytes
    );
    let sshd = if knobs.skip_scp {
        None
    } else {
        Some(Sshd::start(&root.join("sshd"))?)
    };
    let mut scp = Vec::new();
    let mut ssh_handshake = None;
    if let Some(sshd) = &sshd {
        let cipher = sshd.negotiated_cipher()?;
        let handshake = sshd.handshake()?;
        println!(
            "   scp negotiates cipher {cipher} by default; `ssh host true` takes {:.2} s",
            handshake.as_secs_f64()
        );
        ssh_handshake = Some(handshake);
        let fast = cipher != FAST_CIPHER && sshd.offers_cipher(FAST_CIPHER)?;
        scp.push(ScpSeries {
            cipher,
            default: true,
            rounds: Vec::new(),
        });
        if fast {
            scp.push(ScpSeries {
                cipher: FAST_CIPHER.to_owned(),
                default: false,
                rounds: Vec::new(),
            });
        }
    }
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        sync_all()?;
        let fetched = fetch_round(hood)?;
        println!(
            "   round {round}: porchlight {:.2} s (owner's side {:.2} s), {:.1} CPU s",
            fetched.requester_ms as f64 / 1e3,
            fetched.owner_ms as f64 / 1e3,
            fetched.cpu_seconds
        );
        rounds.push(fetched);
        if let Some(sshd) = &sshd {
            for series in &mut scp {
                sync_all()?;
                let forced = (!series.default).then_some(series.cipher.as_str());
                let copied =
                    sshd.copy(&hood.source, &root.join("sshd").join("copy.bin"), forced)?;
                println!(
                    "   round {round}: scp ({}) {:.2} s (then fsync: {:.2} s), {:.1} CPU s",
                    series.cipher,
                    copied.copy.as_secs_f64(),
                    copied.copy_and_fsync.as_secs_f64(),
                    copied.cpu_seconds
                );
                series.rounds.push(copied);
            }
        }
    }
    drop(sshd);
    Ok(Fetch {
        media_bytes: knobs.bytes,
        rounds,
        scp,
        ssh_handshake,
    })
}

fn sync_all() -> anyhow::Result<()> {
    let status = Command::new("sync").status().context("cannot run sync")?;
    ensure!(status.success(), "sync failed");
    Ok(())
}

/// CPU seconds process `pid` has used (user + system), plus, with `children`, those of its
/// children it has waited for (how scp's and sshd's per-connection processes are counted).
fn cpu_seconds(pid: u32, children: bool) -> anyhow::Result<f64> {
    static TICKS: OnceLock<f64> = OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after "PID (COMM) ": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let fields: Vec<f64> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .context("an unexpected /proc/PID/stat")?
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    let field = |n: usize| fields.get(n - 4).copied().unwrap_or(0.0);
    let mut total = field(14) + field(15);
    if children {
        total += field(16) + field(17);
    }
    Ok(total / ticks)
}

/// One request, approval, fetch and revocation of the large clip.
fn fetch_round(hood: &Hood) -> anyhow::Result<FetchRound> {
    let (authority, owner) = (&hood.authority, &hood.fetch_home);
    let body = SendRequestBody {
        peer: Some(owner.address.clone()),
        area: None,
        from: rfc3339(hood.clip_start - Duration::from_secs(1)),
        to: rfc3339(SystemTime::now()),
        reason: "bench: the large clip".to_owned(),
        case: None,
        access: Some("1h".to_owned()),
    };
    let cpu_before = authority.cpu_seconds()? + owner.cpu_seconds()?;
    let request: IdAnswer = authority.api.post("/v1/requests", &body)?;
    wait_for(Duration::from_secs(30), "the request at the owner", || {
        let requests: Value = owner.api.get("/v1/requests")?;
        Ok(requests["incoming"]
            .as_array()
            .is_some_and(|list| list.iter().any(|r| r["request_id"] == request.id.as_str()))
            .then_some(()))
    })?;
    let token: IdAnswer = owner.api.post(
        &format!("/v1/requests/{}/approve", request.id),
        &ApproveBody {
            duration: Some("1h".to_owned()),
            clips: Some(vec![hood.clip_id.clone()]),
            retain: false,
        },
    )?;
    let records = wait_for(Duration::from_secs(600), "the clip to arrive", || {
        let records = authority.audit()?;
        Ok(events_by(&records, "clip_received", "token_id")
            .contains_key(&token.id)
            .then_some(records))
    })?;
    let granted = events_by(&records, "grant_received", "token_id");
    let received = events_by(&records, "clip_received", "token_id");
    let owner_records = wait_for(Duration::from_secs(30), "the owner's record", || {
        let records = owner.audit()?;
        Ok(events_by(&records, "fetch_completed", "token_id")
            .contains_key(&token.id)
            .then_some(records))
    })?;
    let served = events_by(&owner_records, "fetch_served", "token_id");
    let completed = events_by(&owner_records, "fetch_completed", "token_id");
    let (Some(granted), Some(received), Some(served), Some(completed)) = (
        granted.get(&token.id),
        received.get(&token.id),
        served.get(&token.id),
        completed.get(&token.id),
    ) else {
        bail!("the audit logs lack a record of token {}", token.id);
    };
    let cpu_seconds = authority.cpu_seconds()? + owner.cpu_seconds()? - cpu_before;
    let round = FetchRound {
        cpu_seconds,
        requester_ms: at_ms(received)?.saturating_sub(at_ms(granted)?),
        owner_ms: at_ms(completed)?.saturating_sub(at_ms(served)?),
        bytes_sent: completed["event"]["bytes"].as_u64().unwrap_or(0),
    };
    // Revoke, so the authority deletes its copy before the next round.
    let _: IdAnswer = owner
        .api
        .post(&format!("/v1/tokens/{}/revoke", token.id), &json!({}))?;
    wait_for(Duration::from_secs(60), "the copy to be deleted", || {
        let tokens: Value = authority.api.get("/v1/tokens")?;
        Ok(tokens["tokens"]
            .as_array()
            .is_some_and(|list| {
                list.iter()
                    .any(|t| t["token_id"] == token.id.as_str() && t["state"] == "deleted")
            })
            .then_some(()))
    })?;
    Ok(round)
}

impl ScpSeries {
    fn median(&self) -> f64 {
        median_of(self.rounds.iter().map(|r| r.copy.as_secs_f64()).collect())
    }

    fn median_with_fsync(&self) -> f64 {
        median_of(
            self.rounds
                .iter()
                .map(|r| r.copy_and_fsync.as_secs_f64())
                .collect(),
        )
    }

    fn median_cpu(&self) -> f64 {
        median_of(self.rounds.iter().map(|r| r.cpu_seconds).collect())
    }
}

impl Fetch {
    fn mb_per_s(&self, seconds: f64) -> f64 {
        self.media_bytes as f64 / seconds / 1e6
    }

    /// Medians of the requester's and the owner's timings, in seconds.
    fn medians(&self) -> (f64, f64) {
        let seconds = |ms: fn(&FetchRound) -> u64| {
            median_of(self.rounds.iter().map(|r| ms(r) as f64 / 1e3).collect())
        };
        (seconds(|r| r.requester_ms), seconds(|r| r.owner_ms))
    }

    fn median_cpu(&self) -> f64 {
        median_of(self.rounds.iter().map(|r| r.cpu_seconds).collect())
    }

    fn print_summary(&self) {
        let (requester, owner) = self.medians();
        let gib = self.media_bytes as f64 / f64::from(1u32 << 30);
        println!(
            "  fetch of a {gib:.2} GiB clip, medians of {ROUNDS}:          {:>7}  {:>6}  {:>13}  {:>5}",
            "seconds", "MB/s", "porchlight/it", "CPU s"
        );
        let line = |what: &str, seconds: f64, ratio: Option<f64>, cpu: Option<f64>| {
            println!(
                "    {what:<54}  {seconds:>7.2}  {:>6.0}  {:>13}  {:>5}",
                self.mb_per_s(seconds),
                ratio.map_or("—".to_owned(), |r| format!("{r:.2}")),
                cpu.map_or(String::new(), |c| format!("{c:.1}"))
            );
        };
        line(
            "porchlight, grant_received -> clip_received (fsynced)",
            requester,
            None,
            Some(self.median_cpu()),
        );
        line(
            "porchlight, owner's fetch_served -> fetch_completed",
            owner,
            None,
            None,
        );
        for series in &self.scp {
            let how = if series.default { "default" } else { "forced" };
            let (scp, fsynced) = (series.median(), series.median_with_fsync());
            line(
                &format!("scp, {how} cipher {}", series.cipher),
                scp,
                Some(scp / requester),
                Some(series.median_cpu()),
            );
            line(
                "  the same, then fsync of the copy",
                fsynced,
                Some(fsynced / requester),
                None,
            );
        }
        if let Some(handshake) = self.ssh_handshake {
            println!(
                "    (each scp time includes ssh's connection setup, {:.2} s alone; CPU s is both ends together)",
                handshake.as_secs_f64()
            );
        }
    }

    fn to_json(&self) -> Value {
        let (requester, owner) = self.medians();
        json!({
            "media_bytes": self.media_bytes,
            "rounds": self.rounds.iter().map(|r| json!({
                "cpu_seconds": r.cpu_seconds,
                "requester_ms": r.requester_ms,
                "owner_ms": r.owner_ms,
                "bytes_sent": r.bytes_sent,
            })).collect::<Vec<_>>(),
            "median_requester_seconds": requester,
            "median_owner_seconds": owner,
            "median_requester_mb_per_s": self.mb_per_s(requester),
            "median_cpu_seconds": self.median_cpu(),
            "ssh_handshake_seconds": self.ssh_handshake.map(|d| d.as_secs_f64()),
            "scp": self.scp.iter().map(|series| json!({
                "cipher": series.cipher,
                "default_cipher": series.default,
                "rounds_seconds": series.rounds.iter().map(|r| r.copy.as_secs_f64()).collect::<Vec<_>>(),
                "rounds_with_fsync_seconds": series.rounds.iter().map(|r| r.copy_and_fsync.as_secs_f64()).collect::<Vec<_>>(),
                "rounds_cpu_seconds": series.rounds.iter().map(|r| r.cpu_seconds).collect::<Vec<_>>(),
                "median_seconds": series.median(),
                "median_with_fsync_seconds": series.median_with_fsync(),
                "median_mb_per_s": self.mb_per_s(series.median()),
                "ratio_porchlight_over_scp": series.median() / requester,
            })).collect::<Vec<_>>(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// A private sshd on loopback
// ---------------------------------------------------------------------------------------

/// `sshd -D` on 127.0.0.1 and a free port, with its own host key, one authorized key and
/// no PAM, from a temporary config directory; killed when dropped.
struct Sshd {
    child: Killed,
    port: u16,
    dir: PathBuf,
    user: String,
}

impl Sshd {
    fn start(dir: &Path) -> anyhow::Result<Sshd> {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .context("sshd is not installed; run `make bench-mesh`, which installs openssh-server, or set PORCHLIGHT_BENCH_SKIP_SCP=1")?;
        std::fs::create_dir_all(dir)?;
        // sshd refuses to start without its privilege-separation directory.
        let privsep = Path::new("/run/sshd");
        if !privsep.exists() {
            std::fs::create_dir_all(privsep)
                .with_context(|| format!("sshd needs {}; create it as root", privsep.display()))?;
        }
        for key in ["host_key", "client_key"] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(dir.join(key)),
            )?;
        }
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let user = run_ok(Command::new("id").arg("-un"))?;
        let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
        let config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_key\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PidFile {dir}/sshd.pid\n\
             UsePAM no\n\
             StrictModes no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             AllowUsers {user}\n\
             Subsystem sftp internal-sftp\n\
             LogLevel ERROR\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config)?;
        let log = File::create(dir.join("sshd.log"))?;
        let child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", sshd.display()))?;
        let mut sshd = Sshd {
            child: Killed(child),
            port,
            dir: dir.to_owned(),
            user,
        };
        wait_for(Duration::from_secs(10), "sshd to listen", || {
            if let Some(status) = sshd.child.0.try_wait()? {
                bail!(
                    "sshd exited ({status}): {}",
                    std::fs::read_to_string(sshd.dir.join("sshd.log")).unwrap_or_default()
                );
            }
            Ok(TcpStream::connect(("127.0.0.1", sshd.port))
                .ok()
                .map(|_| ()))
        })?;
        Ok(sshd)
    }

    fn client_options(&self, command: &mut Command) {
        command.arg("-i").arg(self.dir.join("client_key")).args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ]);
    }

    /// The cipher `ssh` negotiates with this sshd by default (from `ssh -v`).
    fn negotiated_cipher(&self) -> anyhow::Result<String> {
        let mut ssh = Command::new("ssh");
        ssh.args(["-v", "-p", &self.port.to_string()]);
        self.client_options(&mut ssh);
        let out = run_ok(ssh.arg(format!("{}@127.0.0.1", self.user)).arg("true"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        log.lines()
            .find_map(|line| {
                line.split_once("server->client cipher: ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
            })
            .map(str::to_owned)
            .context("ssh -v did not say which cipher it negotiated")
    }

    /// How long `ssh HOST true` takes (connect, key exchange, authenticate, run, close):
    /// the part of each scp that is not moving the file. Median of `ROUNDS`.
    fn handshake(&self) -> anyhow::Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let mut ssh = Command::new("ssh");
            ssh.args(["-p", &self.port.to_string()]);
            self.client_options(&mut ssh);
            ssh.arg(format!("{}@127.0.0.1", self.user)).arg("true");
            let started = Instant::now();
            run_ok(&mut ssh)?;
            times.push(started.elapsed().as_secs_f64());
        }
        Ok(Duration::from_secs_f64(median_of(times)))
    }

    /// Whether this OpenSSH client supports `cipher` (`ssh -Q cipher`).
    fn offers_cipher(&self, cipher: &str) -> anyhow::Result<bool> {
        let out = run_ok(Command::new("ssh").args(["-Q", "cipher"]))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|line| line.trim() == cipher))
    }

    /// Copies `source` to `dest` through this sshd, with `cipher` if given.
    fn copy(&self, source: &Path, dest: &Path, cipher: Option<&str>) -> anyhow::Result<ScpRound> {
        let _ = std::fs::remove_file(dest);
        let mut scp = Command::new("scp");
        scp.args(["-q", "-P", &self.port.to_string()]);
        if let Some(cipher) = cipher {
            scp.args(["-c", cipher]);
        }
        self.client_options(&mut scp);
        scp.arg(source)
            .arg(format!("{}@127.0.0.1:{}", self.user, dest.display()));
        let cpu_before =
            cpu_seconds(std::process::id(), true)? + cpu_seconds(self.child.0.id(), true)?;
        let started = Instant::now();
        run_ok(&mut scp)?;
        let copy = started.elapsed();
        run_ok(Command::new("sync").arg(dest))?;
        let copy_and_fsync = started.elapsed();
        // sshd's per-connection processes are counted once reaped, just after they exit.
        std::thread::sleep(Duration::from_millis(300));
        let cpu_seconds = cpu_seconds(std::process::id(), true)?
            + cpu_seconds(self.child.0.id(), true)?
            - cpu_before;
        let copied = std::fs::metadata(dest)?.len();
        let expected = std::fs::metadata(source)?.len();
        ensure!(
            copied == expected,
            "scp copied {copied} of {expected} bytes"
        );
        std::fs::remove_file(dest)?;
        Ok(ScpRound {
            cpu_seconds,
            copy,
            copy_and_fsync,
        })
    }
}
