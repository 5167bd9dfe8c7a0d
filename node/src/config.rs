//! The node's settings: `config.toml`, then the environment, then command-line flags.
//!
//! Parsed raw (a serde struct that mirrors the file, unknown keys refused), then validated
//! into [`Settings`]: every later layer overrides the one before, and whatever came from
//! where, the daemon only ever sees checked values.
//!
//! Besides the recording settings the file holds the mesh settings (`listen`, `bootstrap`,
//! `relay_server`, `location`), an authority node's `credential` files, and the owner's
//! standing rules (`[rules]`, validated into the core's [`StandingRules`]) and the limits on
//! incoming requests and fetches (`[limits]`, validated into the core's [`RateLimits`] and
//! [`FetchLimits`]). Multiaddrs stay
//! checked strings here: libp2p types belong to the swarm, not to the config.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use porchlight_core::{
    BucketConfig, ByteBudget, FetchLimits, PreAuthorization, RateLimits, StandingRules,
};
use porchlight_protocol::CellId;
use porchlight_protocol::validate::{MAX_REQUEST_WINDOW, MAX_TOKEN_LIFETIME};
use serde::Deserialize;

use crate::authority::parse_role;
use crate::data_dir::DataDir;
use crate::trust::parse_public_key;

/// Where the local API listens unless told otherwise.
pub const DEFAULT_API: &str = "127.0.0.1:7878";
/// How long clips are kept unless told otherwise.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Seconds per clip unless told otherwise.
pub const DEFAULT_CLIP_SECONDS: u64 = 60;
/// Where the mesh listens unless told otherwise: TCP and QUIC on port 4001, every interface.
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"];
/// Longest multiaddr accepted, in bytes (a relayed address with two peer ids is ~200).
const MAX_MULTIADDR_LEN: usize = 512;
/// The largest burst `[limits]` accepts. Each admitted request holds a replay-cache entry
/// for two minutes, so the global limit also bounds that cache: at this burst and the
/// fastest refill, about 220,000 entries (tens of MiB).
const MAX_BURST: u32 = 100_000;
/// The fastest refill `[limits]` accepts: the core counts refills in whole milliseconds.
const MIN_REFILL: Duration = Duration::from_millis(1);
/// The slowest refill `[limits]` accepts; slower than one a day is a block, which
/// `rules.blocked` says plainly.
const MAX_REFILL: Duration = Duration::from_secs(24 * 3600);

/// The smallest byte budget `[limits]` accepts for fetches (a fraction of one clip: a
/// smaller one only refuses sooner, after the debt of the first clip).
const MIN_FETCH_BYTES: u64 = 1 << 20;
/// The largest byte budget `[limits]` accepts for fetches: 1 PiB, far past any disk.
const MAX_FETCH_BYTES: u64 = 1 << 50;
/// The fastest a fetch byte budget may refill from empty.
const MIN_BYTES_REFILL: Duration = Duration::from_secs(1);

/// The file's shape. Every field is optional: a missing one keeps the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub name: Option<String>,
    pub cameras: Option<Vec<String>>,
    pub clip_seconds: Option<u64>,
    pub api: Option<String>,
    /// Mesh multiaddrs to listen on.
    pub listen: Option<Vec<String>>,
    /// Mesh multiaddrs to dial at start (with `/p2p/PEER_ID`).
    pub bootstrap: Option<Vec<String>>,
    /// Serve as a relay (v2) for neighbors behind NAT.
    pub relay_server: Option<bool>,
    /// Find homes on the LAN by mDNS (default true).
    pub mdns: Option<bool>,
    /// "LAT,LON" in degrees; opt-in to area requests.
    pub location: Option<String>,
    /// This node's credential chain, leaf first. [`RawConfig::load`] makes relative paths
    /// relative to the data dir.
    pub credential: Option<Vec<PathBuf>>,
    pub retention: Option<RawRetention>,
    pub rules: Option<RawRules>,
    pub limits: Option<RawLimits>,
}

/// The `[limits]` table: how many requests the node admits, per sending peer and in all,
/// before it checks a signature. Each is a token bucket: `*_burst` at once, then one more
/// every `*_refill`. A missing key keeps the default ([`RateLimits::default`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub per_peer_burst: Option<u32>,
    /// A duration such as "6s".
    pub per_peer_refill: Option<String>,
    pub global_burst: Option<u32>,
    /// A duration such as "100ms".
    pub global_refill: Option<String>,
    /// Fetch streams per peer ([`FetchLimits::per_peer`]).
    pub fetch_per_peer_burst: Option<u32>,
    pub fetch_per_peer_refill: Option<String>,
    /// Fetch streams from peers holding no live token, together ([`FetchLimits::strangers`]).
    pub fetch_strangers_burst: Option<u32>,
    pub fetch_strangers_refill: Option<String>,
    /// Ciphertext bytes served to one peer, and how long the budget takes to refill from
    /// empty (a duration such as "1h").
    pub fetch_per_peer_bytes: Option<u64>,
    pub fetch_per_peer_bytes_refill: Option<String>,
    /// Ciphertext bytes served to everyone, and how long that budget takes to refill.
    pub fetch_global_bytes: Option<u64>,
    pub fetch_global_bytes_refill: Option<String>,
}

/// The `[rules]` table: the owner's standing rules, all off by default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    pub deny_unverified: Option<bool>,
    pub deny_without_case_number: Option<bool>,
    /// Peer ids (`12D3KooW...`) whose requests are dropped.
    pub blocked: Option<Vec<String>>,
    /// `[[rules.pre_authorize]]` entries.
    pub pre_authorize: Option<Vec<RawPreAuthorization>>,
}

/// One `[[rules.pre_authorize]]` entry: `{ role = "fire", max_lookback = "30m",
/// grant_for = "2h" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreAuthorization {
    pub role: String,
    pub max_lookback: String,
    pub grant_for: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// A duration such as "7d" or "36h".
    pub max_age: Option<String>,
    /// Bytes of clips to keep at most.
    pub max_bytes: Option<u64>,
}

/// Overrides from the command line (flags) or the environment. An empty list or `None`
/// keeps the layer below.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub cameras: Vec<String>,
    pub clip_seconds: Option<u64>,
    pub api: Option<String>,
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub relay_server: Option<bool>,
    pub mdns: Option<bool>,
    /// "LAT,LON".
    pub location: Option<String>,
    pub credentials: Vec<PathBuf>,
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    /// Raw camera arguments, checked by capture's parser when the daemon starts them.
    pub cameras: Vec<String>,
    pub clip_seconds: u64,
    pub api: SocketAddr,
    pub max_age: Duration,
    pub max_bytes: Option<u64>,
    /// Mesh multiaddrs to listen on (never empty; syntax checked loosely, parsed by the swarm).
    pub listen: Vec<String>,
    /// Mesh multiaddrs to dial at start.
    pub bootstrap: Vec<String>,
    pub relay_server: bool,
    pub mdns: bool,
    /// (latitude, longitude) in degrees, in range; `None` unless the owner opted in. Only
    /// its cell ever leaves the node.
    pub location: Option<(f64, f64)>,
    /// This node's credential chain files, leaf first (see `authority::load_credential_chain`).
    pub credentials: Vec<PathBuf>,
    pub rules: StandingRules,
    /// Admission limits on incoming requests (`[limits]`; the core's defaults unless set).
    pub limits: RateLimits,
    /// Admission limits on incoming fetches (`[limits]`'s `fetch_*` keys).
    pub fetch_limits: FetchLimits,
}

impl RawConfig {
    /// Reads `config.toml`. A missing file is an error: `porchlight init` writes one.
    pub fn load(dir: &DataDir) -> anyhow::Result<RawConfig> {
        let path = dir.config();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read config {}; run `porchlight init` to create it",
                path.display()
            )
        })?;
        let mut raw = RawConfig::parse(&text, &path)?;
        // A credential named in the file lives beside it unless the path says otherwise.
        if let Some(paths) = &mut raw.credential {
            for path in paths {
                *path = dir.root().join(&*path);
            }
        }
        Ok(raw)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<RawConfig> {
        toml::from_str(text).with_context(|| format!("config {} is not valid", path.display()))
    }
}

/// The environment's overrides: `PORCHLIGHT_CAMERAS`, `PORCHLIGHT_LISTEN` and
/// `PORCHLIGHT_BOOTSTRAP` (comma-separated), `PORCHLIGHT_CLIP_SECONDS`, `PORCHLIGHT_API`,
/// `PORCHLIGHT_RELAY_SERVER` (true/false), `PORCHLIGHT_LOCATION` (LAT,LON).
pub fn environment_overrides() -> anyhow::Result<Overrides> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let list = |name: &str| {
        var(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let clip_seconds = match var("PORCHLIGHT_CLIP_SECONDS") {
        Some(text) => Some(text.trim().parse().with_context(|| {
            format!("PORCHLIGHT_CLIP_SECONDS={text:?} is not a whole number of seconds")
        })?),
        None => None,
    };
    let flag = |name: &str| -> anyhow::Result<Option<bool>> {
        match var(name) {
            Some(text) => Ok(Some(match text.trim() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => bail!("{name}={text:?} is not true or false"),
            })),
            None => Ok(None),
        }
    };
    let relay_server = flag("PORCHLIGHT_RELAY_SERVER")?;
    let mdns = flag("PORCHLIGHT_MDNS")?;
    Ok(Overrides {
        cameras: list("PORCHLIGHT_CAMERAS"),
        clip_seconds,
        api: var("PORCHLIGHT_API"),
        listen: list("PORCHLIGHT_LISTEN"),
        bootstrap: list("PORCHLIGHT_BOOTSTRAP"),
        relay_server,
        mdns,
        location: var("PORCHLIGHT_LOCATION"),
        credentials: Vec::new(),
    })
}

impl Settings {
    /// File, then environment, then flags; then validated.
    pub fn layer(file: RawConfig, env: Overrides, flags: Overrides) -> anyhow::Result<Settings> {
        let mut cameras = file.cameras.unwrap_or_default();
        let mut clip_seconds = file.clip_seconds.unwrap_or(DEFAULT_CLIP_SECONDS);
        let mut api = file.api.unwrap_or_else(|| DEFAULT_API.to_owned());
        let mut listen = file.listen.unwrap_or_default();
        let mut bootstrap = file.bootstrap.unwrap_or_default();
        let mut relay_server = file.relay_server.unwrap_or(false);
        let mut mdns = file.mdns.unwrap_or(true);
        let mut location = file.location;
        let mut credentials = file.credential.unwrap_or_default();
        for layer in [env, flags] {
            if !layer.cameras.is_empty() {
                cameras = layer.cameras;
            }
            clip_seconds = layer.clip_seconds.unwrap_or(clip_seconds);
            api = layer.api.unwrap_or(api);
            if !layer.listen.is_empty() {
                listen = layer.listen;
            }
            if !layer.bootstrap.is_empty() {
                bootstrap = layer.bootstrap;
            }
            relay_server = layer.relay_server.unwrap_or(relay_server);
            mdns = layer.mdns.unwrap_or(mdns);
            location = layer.location.or(location);
            if !layer.credentials.is_empty() {
                credentials = layer.credentials;
            }
        }
        if listen.is_empty() {
            listen = DEFAULT_LISTEN.map(str::to_owned).to_vec();
        }
        for address in &listen {
            check_multiaddr("listen", address)?;
        }
        for address in &bootstrap {
            check_multiaddr("bootstrap", address)?;
        }
        let location = location.as_deref().map(parse_location).transpose()?;
        if cameras.is_empty() {
            cameras.push("test".to_owned());
        }
        if !(1..=3600).contains(&clip_seconds) {
            bail!("clip length {clip_seconds}s is out of range; use 1 to 3600 seconds");
        }
        let api: SocketAddr = api.parse().with_context(|| {
            format!("api address {api:?} is not an IP:PORT such as {DEFAULT_API}")
        })?;
        let retention = file.retention.unwrap_or_default();
        let max_age = match retention.max_age {
            Some(text) => humantime::parse_duration(&text).with_context(|| {
                format!("retention max_age {text:?} is not a duration such as \"7d\"")
            })?,
            None => DEFAULT_MAX_AGE,
        };
        if max_age < Duration::from_secs(60) {
            bail!("retention max_age must be at least one minute");
        }
        if retention.max_bytes == Some(0) {
            bail!("retention max_bytes must be more than 0 (leave it out for no limit)");
        }
        let limits = file.limits.unwrap_or_default();
        let fetch_limits = fetch_limits(&limits)?;
        Ok(Settings {
            name: file.name.unwrap_or_else(|| "porchlight".to_owned()),
            cameras,
            clip_seconds,
            api,
            max_age,
            max_bytes: retention.max_bytes,
            listen,
            bootstrap,
            relay_server,
            mdns,
            location,
            credentials,
            rules: standing_rules(file.rules.unwrap_or_default())?,
            limits: rate_limits(limits)?,
            fetch_limits,
        })
    }
}

/// A loose multiaddr check: the swarm parses it for real; this catches a host:port or a
/// stray space with a message that names the setting.
fn check_multiaddr(setting: &str, address: &str) -> anyhow::Result<()> {
    if !address.starts_with('/')
        || address.len() > MAX_MULTIADDR_LEN
        || address.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("{setting} address {address:?} is not a multiaddr such as /ip4/192.0.2.7/tcp/4001");
    }
    Ok(())
}

/// Parses "LAT,LON" in degrees, checking both are in range.
pub fn parse_location(text: &str) -> anyhow::Result<(f64, f64)> {
    let usage = || format!("location {text:?} is not LAT,LON in degrees, such as 52.5200,13.4050");
    let (lat, lon) = text.split_once(',').with_context(usage)?;
    let lat: f64 = lat.trim().parse().with_context(usage)?;
    let lon: f64 = lon.trim().parse().with_context(usage)?;
    if CellId::containing(lat, lon).is_err() {
        bail!("location {text:?} is out of range; latitude is -90 to 90 and longitude -180 to 180");
    }
    Ok((lat, lon))
}

fn standing_rules(raw: RawRules) -> anyhow::Result<StandingRules> {
    let mut blocked = BTreeSet::new();
    for text in raw.blocked.unwrap_or_default() {
        let peer = parse_public_key(&text).context("bad rules.blocked entry")?;
        blocked.insert(peer);
    }
    let mut pre_authorizations: Vec<PreAuthorization> = Vec::new();
    for (i, rule) in raw
        .pre_authorize
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let rule = pre_authorization(&rule)
            .with_context(|| format!("bad rules.pre_authorize entry {}", i + 1))?;
        if pre_authorizations.iter().any(|r| r.role == rule.role) {
            bail!(
                "rules.pre_authorize has two entries for role {:?}; keep one",
                rule.role.label()
            );
        }
        pre_authorizations.push(rule);
    }
    Ok(StandingRules {
        deny_unverified: raw.deny_unverified.unwrap_or(false),
        deny_without_case_number: raw.deny_without_case_number.unwrap_or(false),
        blocked,
        pre_authorizations,
    })
}

fn pre_authorization(raw: &RawPreAuthorization) -> anyhow::Result<PreAuthorization> {
    let role = parse_role(&raw.role)?;
    let duration = |key: &str, text: &str, max: Duration| -> anyhow::Result<Duration> {
        let duration = humantime::parse_duration(text)
            .with_context(|| format!("{key} {text:?} is not a duration such as \"30m\""))?;
        if duration.is_zero() || duration > max {
            bail!(
                "{key} {text:?} is out of range; use more than 0 and at most {}",
                humantime::format_duration(max)
            );
        }
        Ok(duration)
    };
    Ok(PreAuthorization {
        role,
        max_lookback: duration("max_lookback", &raw.max_lookback, MAX_REQUEST_WINDOW)?,
        grant_for: duration("grant_for", &raw.grant_for, MAX_TOKEN_LIFETIME)?,
    })
}

fn rate_limits(raw: RawLimits) -> anyhow::Result<RateLimits> {
    let defaults = RateLimits::default();
    Ok(RateLimits {
        per_peer: bucket(
            "per_peer",
            raw.per_peer_burst,
            raw.per_peer_refill.as_deref(),
            defaults.per_peer,
        )?,
        global: bucket(
            "global",
            raw.global_burst,
            raw.global_refill.as_deref(),
            defaults.global,
        )?,
    })
}

fn fetch_limits(raw: &RawLimits) -> anyhow::Result<FetchLimits> {
    let defaults = FetchLimits::default();
    Ok(FetchLimits {
        per_peer: bucket(
            "fetch_per_peer",
            raw.fetch_per_peer_burst,
            raw.fetch_per_peer_refill.as_deref(),
            defaults.per_peer,
        )?,
        strangers: bucket(
            "fetch_strangers",
            raw.fetch_strangers_burst,
            raw.fetch_strangers_refill.as_deref(),
            defaults.strangers,
        )?,
        per_peer_bytes: byte_budget(
            "fetch_per_peer_bytes",
            raw.fetch_per_peer_bytes,
            raw.fetch_per_peer_bytes_refill.as_deref(),
            defaults.per_peer_bytes,
        )?,
        global_bytes: byte_budget(
            "fetch_global_bytes",
            raw.fetch_global_bytes,
            raw.fetch_global_bytes_refill.as_deref(),
            defaults.global_bytes,
        )?,
    })
}

/// One byte budget of `[limits]`: `{prefix}` bytes and `{prefix}_refill`, each checked for
/// range.
fn byte_budget(
    prefix: &str,
    bytes: Option<u64>,
    refill: Option<&str>,
    default: ByteBudget,
) -> anyhow::Result<ByteBudget> {
    let bytes = bytes.unwrap_or(default.bytes);
    if !(MIN_FETCH_BYTES..=MAX_FETCH_BYTES).contains(&bytes) {
        bail!(
            "limits.{prefix} {bytes} is out of range; use {MIN_FETCH_BYTES} (1 MiB) to {MAX_FETCH_BYTES} (1 PiB)"
        );
    }
    let refill_over = match refill {
        Some(text) => humantime::parse_duration(text.trim()).with_context(|| {
            format!("limits.{prefix}_refill {text:?} is not a duration such as \"1h\" or \"30m\"")
        })?,
        None => default.refill_over,
    };
    if !(MIN_BYTES_REFILL..=MAX_REFILL).contains(&refill_over) {
        bail!(
            "limits.{prefix}_refill {} is out of range; use 1s to 24h",
            humantime::format_duration(refill_over)
        );
    }
    Ok(ByteBudget { bytes, refill_over })
}

/// One bucket of `[limits]`: `{prefix}_burst` and `{prefix}_refill`, each checked for range.
fn bucket(
    prefix: &str,
    burst: Option<u32>,
    refill: Option<&str>,
    default: BucketConfig,
) -> anyhow::Result<BucketConfig> {
    let burst = burst.unwrap_or(default.burst);
    if !(1..=MAX_BURST).contains(&burst) {
        bail!("limits.{prefix}_burst {burst} is out of range; use 1 to {MAX_BURST}");
    }
    let refill_every = match refill {
        Some(text) => humantime::parse_duration(text.trim()).with_context(|| {
            format!("limits.{prefix}_refill {text:?} is not a duration such as \"6s\" or \"100ms\"")
        })?,
        None => default.refill_every,
    };
    if !(MIN_REFILL..=MAX_REFILL).contains(&refill_every) {
        bail!(
            "limits.{prefix}_refill {} is out of range; use 1ms to 24h",
            humantime::format_duration(refill_every)
        );
    }
    Ok(BucketConfig {
        burst,
        refill_every,
    })
}

/// The config file `porchlight init` writes.
pub fn default_config_text(name: &str) -> String {
    let name = toml::Value::String(name.to_owned());
    let listen = DEFAULT_LISTEN.map(|a| format!("\"{a}\"")).join(", ");
    format!(
        "# Porchlight node settings. Environment variables (PORCHLIGHT_CAMERAS, PORCHLIGHT_API,\n\
         # PORCHLIGHT_CLIP_SECONDS, PORCHLIGHT_LISTEN, PORCHLIGHT_BOOTSTRAP,\n\
         # PORCHLIGHT_RELAY_SERVER, PORCHLIGHT_LOCATION) override this file, and command-line\n\
         # flags override both.\n\
         name = {name}\n\
         \n\
         # Cameras as NAME=SPEC; SPEC is test, test:WIDTHxHEIGHT@FPS, v4l2:/dev/videoN,\n\
         # rtsp://..., file:PATH or none.\n\
         cameras = [\"front=test\"]\n\
         clip_seconds = {DEFAULT_CLIP_SECONDS}\n\
         api = \"{DEFAULT_API}\"\n\
         \n\
         # The mesh (multiaddrs). bootstrap peers end in /p2p/PEER_ID.\n\
         # listen = [{listen}]\n\
         # bootstrap = [\"/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...\"]\n\
         # relay_server = false      # true: relay for neighbors behind NAT\n\
         # mdns = true               # find homes on the LAN\n\
         # Opt in to area requests near you. The coordinates stay on this machine; the mesh\n\
         # learns only the ~1 km cell they fall in.\n\
         # location = \"52.5200,13.4050\"\n\
         # An authority's node: its credential chain, leaf first, from `porchlight authority\n\
         # issue` (relative paths are relative to this directory).\n\
         # credential = [\"fire-department.cred\"]\n\
         \n\
         [retention]\n\
         max_age = \"7d\"\n\
         # max_bytes = 100_000_000_000\n\
         \n\
         # Standing rules, all off by default: without them every request that matches your\n\
         # footage waits for your decision.\n\
         [rules]\n\
         deny_unverified = false           # silently deny requesters no trust root vouches for\n\
         deny_without_case_number = false  # silently deny requests without a case number\n\
         blocked = []                      # peer ids whose requests are dropped\n\
         # Release without asking (you are notified at once) to a *verified* authority of a\n\
         # role (police, fire, medical, emergency-management, other): footage from the last\n\
         # max_lookback, under a token valid for grant_for.\n\
         # [[rules.pre_authorize]]\n\
         # role = \"fire\"\n\
         # max_lookback = \"30m\"\n\
         # grant_for = \"2h\"\n\
         \n\
         # How many requests are let in before any is checked: per sending peer and in all, a\n\
         # burst at once, then one more per refill interval. Raise them only for a node that\n\
         # must answer many requests from one peer (a benchmark, a busy relay's neighbors).\n\
         [limits]\n\
         # per_peer_burst = 10\n\
         # per_peer_refill = \"6s\"\n\
         # global_burst = 100\n\
         # global_refill = \"100ms\"\n\
         # Fetch streams, before any token is read: per peer, and from peers holding no live\n\
         # token of yours all together (a full 256-clip grant with a resume per clip fits the\n\
         # per-peer burst). Then the clip bytes served, per peer and in all, each a budget that\n\
         # refills from empty over its _refill time. A fetch over any of them is closed\n\
         # unanswered; the grantee's node retries.\n\
         # fetch_per_peer_burst = 512\n\
         # fetch_per_peer_refill = \"100ms\"\n\
         # fetch_strangers_burst = 1000\n\
         # fetch_strangers_refill = \"10ms\"\n\
         # fetch_per_peer_bytes = 17_179_869_184   # 16 GiB\n\
         # fetch_per_peer_bytes_refill = \"1h\"\n\
         # fetch_global_bytes = 68_719_476_736     # 64 GiB\n\
         # fetch_global_bytes_refill = \"1h\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<RawConfig> {
        RawConfig::parse(text, Path::new("config.toml"))
    }

    #[test]
    fn the_written_default_parses_to_the_defaults() {
        let raw = parse(&default_config_text("maple \"12\"")).unwrap();
        let settings = Settings::layer(raw, Overrides::default(), Overrides::default()).unwrap();
        assert_eq!(settings.name, "maple \"12\"");
        assert_eq!(settings.cameras, ["front=test"]);
        assert_eq!(settings.clip_seconds, 60);
        assert_eq!(settings.api.to_string(), DEFAULT_API);
        assert_eq!(settings.max_age, DEFAULT_MAX_AGE);
        assert_eq!(settings.listen, DEFAULT_LISTEN);
        assert!(settings.bootstrap.is_empty());
        assert!(!settings.relay_server);
        assert_eq!(settings.location, None);
        assert!(settings.credentials.is_empty());
        assert_eq!(
            settings.rules,
            StandingRules::default(),
            "every rule is off"
        );
        assert_eq!(settings.limits, RateLimits::default());
        assert_eq!(settings.fetch_limits, FetchLimits::default());
    }

    #[test]
    fn flags_override_environment_override_file() {
        let raw =
            parse("clip_seconds = 30\napi = \"127.0.0.1:1\"\ncameras = [\"a=test\"]").unwrap();
        let env = Overrides {
            clip_seconds: Some(20),
            api: Some("127.0.0.1:2".into()),
            ..Overrides::default()
        };
        let flags = Overrides {
            clip_seconds: Some(10),
            ..Overrides::default()
        };
        let settings = Settings::layer(raw, env, flags).unwrap();
        assert_eq!(settings.clip_seconds, 10);
        assert_eq!(settings.api.to_string(), "127.0.0.1:2");
        assert_eq!(settings.cameras, ["a=test"]);
    }

    #[test]
    fn bad_config_is_one_clear_error() {
        assert!(
            parse("clip_secnds = 3").is_err(),
            "unknown keys are refused"
        );
        assert!(parse("clip_seconds = \"x\"").is_err());
        assert!(parse("[[[").is_err());
        let raw = parse("api = \"localhost\"").unwrap();
        let err = Settings::layer(raw, Overrides::default(), Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("IP:PORT"), "{err:#}");
        let raw = parse("clip_seconds = 0").unwrap();
        assert!(Settings::layer(raw, Overrides::default(), Overrides::default()).is_err());
        let raw = parse("[retention]\nmax_age = \"soon\"").unwrap();
        assert!(Settings::layer(raw, Overrides::default(), Overrides::default()).is_err());
    }

    fn settings(text: &str) -> anyhow::Result<Settings> {
        Settings::layer(parse(text)?, Overrides::default(), Overrides::default())
    }

    fn peer(byte: u8) -> porchlight_protocol::PeerId {
        porchlight_protocol::SigningIdentity::from_secret_bytes(&[byte; 32]).peer_id()
    }

    #[test]
    fn a_rules_table_becomes_the_cores_standing_rules() {
        let text = format!(
            "[rules]\n\
             deny_unverified = true\n\
             deny_without_case_number = true\n\
             blocked = [\"{}\", \"{}\"]\n\
             [[rules.pre_authorize]]\n\
             role = \"fire\"\n\
             max_lookback = \"30m\"\n\
             grant_for = \"2h\"\n\
             [[rules.pre_authorize]]\n\
             role = \"medical\"\n\
             max_lookback = \"1h\"\n\
             grant_for = \"30d\"\n",
            peer(1),
            peer(2)
        );
        let rules = settings(&text).unwrap().rules;
        assert!(rules.deny_unverified);
        assert!(rules.deny_without_case_number);
        assert_eq!(rules.blocked, BTreeSet::from([peer(1), peer(2)]));
        assert_eq!(
            rules.pre_authorizations,
            [
                PreAuthorization {
                    role: porchlight_protocol::AuthorityRole::Fire,
                    max_lookback: Duration::from_secs(30 * 60),
                    grant_for: Duration::from_secs(2 * 3600),
                },
                PreAuthorization {
                    role: porchlight_protocol::AuthorityRole::Medical,
                    max_lookback: Duration::from_secs(3600),
                    grant_for: MAX_TOKEN_LIFETIME,
                },
            ]
        );
    }

    #[test]
    fn bad_rules_are_one_clear_error() {
        let rule = |role: &str, lookback: &str, grant: &str| {
            format!(
                "[[rules.pre_authorize]]\nrole = \"{role}\"\nmax_lookback = \"{lookback}\"\ngrant_for = \"{grant}\"\n"
            )
        };
        for (text, expect) in [
            (rule("firemen", "30m", "2h"), "is not an authority role"),
            (
                rule("fire", "half an hour", "2h"),
                "max_lookback \"half an hour\" is not a duration",
            ),
            (
                rule("fire", "30m", "soon"),
                "grant_for \"soon\" is not a duration",
            ),
            (rule("fire", "30m", "31d"), "at most 30days"),
            (rule("fire", "8d", "2h"), "at most 7days"),
            (rule("fire", "0s", "2h"), "more than 0"),
            (
                rule("fire", "30m", "2h") + &rule("fire", "1h", "1h"),
                "two entries for role \"fire\"",
            ),
            (
                "[rules]\nblocked = [\"12D3KooWnotapeer\"]".to_owned(),
                "is not a public key",
            ),
        ] {
            let err = format!("{:#}", settings(&text).unwrap_err());
            assert!(err.contains(expect), "{expect}: {err}");
        }
        // Unknown keys are refused at every level, so a typo never silently disables a rule.
        for text in [
            "[rules]\ndeny_unverifed = true",
            "[[rules.pre_authorize]]\nrole = \"fire\"\nmax_lookback = \"1m\"\ngrant_for = \"1h\"\nnotify = true",
            "[[rules.pre_authorize]]\nrole = \"fire\"\nmax_lookback = \"1m\"",
            "[rules]\ndeny_unverified = \"yes\"",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_limits_table_sets_the_cores_rate_limits_and_keeps_what_it_leaves_out() {
        let limits = settings(
            "[limits]\n\
             per_peer_burst = 2000\n\
             per_peer_refill = \"1ms\"\n\
             global_refill = \"5ms\"\n",
        )
        .unwrap()
        .limits;
        assert_eq!(
            limits,
            RateLimits {
                per_peer: BucketConfig {
                    burst: 2000,
                    refill_every: Duration::from_millis(1),
                },
                global: BucketConfig {
                    burst: RateLimits::default().global.burst,
                    refill_every: Duration::from_millis(5),
                },
            }
        );
        assert_eq!(
            settings("[limits]\n").unwrap().limits,
            RateLimits::default()
        );
    }

    #[test]
    fn the_limits_table_sets_the_fetch_limits_apart_from_the_request_limits() {
        let file = settings(
            "[limits]\n\
             fetch_per_peer_burst = 3\n\
             fetch_strangers_refill = \"1s\"\n\
             fetch_per_peer_bytes = 2_000_000\n\
             fetch_global_bytes_refill = \"10m\"\n",
        )
        .unwrap();
        assert_eq!(
            file.limits,
            RateLimits::default(),
            "request limits untouched"
        );
        let defaults = FetchLimits::default();
        assert_eq!(
            file.fetch_limits,
            FetchLimits {
                per_peer: BucketConfig {
                    burst: 3,
                    refill_every: defaults.per_peer.refill_every,
                },
                strangers: BucketConfig {
                    burst: defaults.strangers.burst,
                    refill_every: Duration::from_secs(1),
                },
                per_peer_bytes: ByteBudget {
                    bytes: 2_000_000,
                    refill_over: defaults.per_peer_bytes.refill_over,
                },
                global_bytes: ByteBudget {
                    bytes: defaults.global_bytes.bytes,
                    refill_over: Duration::from_secs(600),
                },
            }
        );
        assert_eq!(
            settings("[limits]\nper_peer_burst = 3\n")
                .unwrap()
                .fetch_limits,
            defaults,
            "request limits leave the fetch limits alone"
        );
    }

    #[test]
    fn bad_fetch_limits_are_one_clear_error() {
        for (text, expect) in [
            (
                "[limits]\nfetch_per_peer_burst = 0",
                "limits.fetch_per_peer_burst 0 is out of range",
            ),
            (
                "[limits]\nfetch_strangers_refill = \"25h\"",
                "limits.fetch_strangers_refill 1day 1h is out of range",
            ),
            (
                "[limits]\nfetch_per_peer_bytes = 1000",
                "limits.fetch_per_peer_bytes 1000 is out of range; use 1048576 (1 MiB)",
            ),
            (
                "[limits]\nfetch_global_bytes = 2_000_000_000_000_000",
                "limits.fetch_global_bytes 2000000000000000 is out of range",
            ),
            (
                "[limits]\nfetch_per_peer_bytes_refill = \"500ms\"",
                "limits.fetch_per_peer_bytes_refill 500ms is out of range; use 1s to 24h",
            ),
            (
                "[limits]\nfetch_global_bytes_refill = \"soon\"",
                "limits.fetch_global_bytes_refill \"soon\" is not a duration",
            ),
        ] {
            let err = format!("{:#}", settings(text).unwrap_err());
            assert!(err.contains(expect), "{expect}: {err}");
        }
        for text in [
            "[limits]\nfetch_per_peer_bytes = -1",
            "[limits]\nfetch_per_peer_bytes = \"16GiB\"",
            "[limits]\nfetch_bytes = 10",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn bad_limits_are_one_clear_error() {
        for (text, expect) in [
            (
                "[limits]\nper_peer_burst = 0",
                "limits.per_peer_burst 0 is out of range",
            ),
            (
                "[limits]\nglobal_burst = 100001",
                "limits.global_burst 100001 is out of range",
            ),
            (
                "[limits]\nper_peer_refill = \"0s\"",
                "limits.per_peer_refill 0s is out of range",
            ),
            (
                "[limits]\nglobal_refill = \"500us\"",
                "limits.global_refill 500us is out of range",
            ),
            (
                "[limits]\nglobal_refill = \"2days\"",
                "limits.global_refill 2days is out of range",
            ),
            (
                "[limits]\nper_peer_refill = \"often\"",
                "limits.per_peer_refill \"often\" is not a duration",
            ),
        ] {
            let err = format!("{:#}", settings(text).unwrap_err());
            assert!(err.contains(expect), "{expect}: {err}");
        }
        for text in [
            "[limits]\nper_peer_bust = 10",
            "[limits]\nper_peer_burst = -1",
            "[limits]\nper_peer_burst = \"10\"",
            "[limits]\nglobal_refill = 100",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn mesh_settings_layer_and_are_checked() {
        let text = "listen = [\"/ip4/127.0.0.1/tcp/0\"]\n\
                    bootstrap = [\"/ip4/192.0.2.7/tcp/4001\"]\n\
                    relay_server = true\n\
                    location = \"52.52, 13.405\"\n\
                    credential = [\"a.cred\"]\n";
        let file = settings(text).unwrap();
        assert_eq!(file.listen, ["/ip4/127.0.0.1/tcp/0"]);
        assert_eq!(file.bootstrap, ["/ip4/192.0.2.7/tcp/4001"]);
        assert!(file.relay_server);
        assert_eq!(file.location, Some((52.52, 13.405)));
        assert_eq!(file.credentials, [PathBuf::from("a.cred")]);

        let flags = Overrides {
            listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".into()],
            relay_server: Some(false),
            location: Some("-33.86,151.21".into()),
            credentials: vec!["leaf.cred".into(), "county.cred".into()],
            ..Overrides::default()
        };
        let layered = Settings::layer(parse(text).unwrap(), Overrides::default(), flags).unwrap();
        assert_eq!(layered.listen, ["/ip4/127.0.0.1/udp/0/quic-v1"]);
        assert_eq!(
            layered.bootstrap,
            ["/ip4/192.0.2.7/tcp/4001"],
            "kept from the file"
        );
        assert!(!layered.relay_server);
        assert_eq!(layered.location, Some((-33.86, 151.21)));
        assert_eq!(
            layered.credentials,
            [PathBuf::from("leaf.cred"), PathBuf::from("county.cred")]
        );

        for (text, expect) in [
            (
                "listen = [\"127.0.0.1:4001\"]",
                "listen address \"127.0.0.1:4001\" is not a multiaddr",
            ),
            ("bootstrap = [\"/ip4/1.2.3.4/tcp/1 \"]", "bootstrap address"),
            ("location = \"91,0\"", "out of range"),
            ("location = \"0,180.5\"", "out of range"),
            ("location = \"NaN,0\"", "out of range"),
            ("location = \"52.52\"", "is not LAT,LON"),
            ("location = \"north,east\"", "is not LAT,LON"),
        ] {
            let err = format!("{:#}", settings(text).unwrap_err());
            assert!(err.contains(expect), "{expect}: {err}");
        }
        assert!(parse("relay_server = \"yes\"").is_err());
    }

    #[test]
    fn credential_paths_in_the_file_are_relative_to_the_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::at(tmp.path());
        std::fs::write(
            dir.config(),
            "credential = [\"leaf.cred\", \"/etc/porchlight/county.cred\"]",
        )
        .unwrap();
        let raw = RawConfig::load(&dir).unwrap();
        assert_eq!(
            raw.credential.unwrap(),
            [
                tmp.path().join("leaf.cred"),
                PathBuf::from("/etc/porchlight/county.cred")
            ]
        );
    }
}
