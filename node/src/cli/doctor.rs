//! `porchlight doctor`: checks what a node needs to do its job and says, for each thing
//! wrong, what to do about it, the way `brew doctor` or `tailscale netcheck` do.
//!
//! It reads the data dir itself (config, keys, trust list, audit log, free space) and,
//! when a daemon is running, asks it how the cameras, the mesh and its writes are doing; a
//! node that is not running is checked as far as the files allow. It changes nothing. A
//! check that failed makes the command exit non-zero; a warning does not.

use std::process::Command as Process;

use serde::Serialize;

use crate::api::client::ApiClient;
use crate::api::views::StatusView;
use crate::capture;
use crate::config::{Overrides, RawConfig, Settings, environment_overrides};
use crate::data_dir::DataDir;
use crate::keys::NodeKeys;
use crate::mesh::MeshStatus;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One check: what was checked, what was found, and the fix when something is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub verdict: Verdict,
    pub what: String,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(what: impl Into<String>, found: impl Into<String>) -> Check {
    Check {
        verdict: Verdict::Ok,
        what: what.into(),
        found: found.into(),
        fix: None,
    }
}

fn warn(what: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        verdict: Verdict::Warn,
        what: what.into(),
        found: found.into(),
        fix: Some(fix.into()),
    }
}

fn fail(what: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        verdict: Verdict::Fail,
        what: what.into(),
        found: found.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check on the node in `dir`.
pub fn checks(dir: &DataDir) -> Vec<Check> {
    let mut checks = Vec::new();
    let settings = match RawConfig::load(dir)
        .and_then(|raw| Settings::layer(raw, environment_overrides()?, Overrides::default()))
    {
        Ok(settings) => {
            checks.push(ok("config", dir.config().display().to_string()));
            Some(settings)
        }
        Err(err) => {
            checks.push(fail(
                "config",
                format!("{err:#}"),
                "fix config.toml (or run `porchlight init` for a new node)",
            ));
            None
        }
    };
    let daemon = ApiClient::connect(dir).ok();
    let status: Option<StatusView> = daemon.as_ref().and_then(|api| api.get("/v1/status").ok());
    checks.push(match &status {
        Some(status) => ok("daemon", format!("running, version {}", status.version)),
        None => warn(
            "daemon",
            "not running; the cameras, the mesh and the node's writes are checked only while it runs",
            format!("start it: porchlight node --data-dir {}", dir.root().display()),
        ),
    });
    if let Some(settings) = &settings {
        checks.extend(camera_checks(settings, status.as_ref()));
        checks.push(disk_check(dir, settings, status.as_ref()));
    }
    checks.push(clock_check());
    if let Some(api) = &daemon {
        if let Ok(mesh) = api.get::<MeshStatus>("/v1/mesh") {
            checks.push(mesh_check(&mesh));
        }
    }
    checks.push(trust_check(dir));
    checks.push(audit_check(dir));
    if let Some(status) = &status {
        for problem in &status.degraded {
            checks.push(fail(
                format!("health: {}", problem.component),
                problem.error.clone(),
                problem.effect.clone(),
            ));
        }
    }
    checks
}

fn camera_checks(settings: &Settings, status: Option<&StatusView>) -> Vec<Check> {
    // A running node may have been started with other cameras than the file names (flags,
    // the environment): check the ones it runs.
    let specs: Vec<String> = match status {
        Some(status) => status
            .cameras
            .iter()
            .map(|camera| format!("{}={}", camera.name, camera.source))
            .collect(),
        None => settings.cameras.clone(),
    };
    let cameras = match capture::parse_cameras(&specs) {
        Ok(cameras) => cameras,
        Err(err) => {
            return vec![fail(
                "cameras",
                err.to_string(),
                "fix `cameras` in config.toml (see `porchlight node --help`)",
            )];
        }
    };
    if cameras.is_empty() || (status.is_some() && specs.is_empty()) {
        return vec![ok("cameras", "none (a requester-only node)")];
    }
    if let Err(err) = capture::init() {
        return vec![fail(
            "gstreamer",
            err.to_string(),
            "install GStreamer: scripts/install-deps.sh",
        )];
    }
    cameras
        .iter()
        .map(|camera| {
            let what = format!("camera {}", camera.name());
            if let Err(err) = capture::check_elements(camera.source()) {
                return fail(what, err.to_string(), "install the package named above");
            }
            if let Some(path) = camera.missing_file() {
                return fail(
                    what,
                    format!("{} does not exist", path.display()),
                    "give an existing file to --camera file:PATH",
                );
            }
            let running = status.and_then(|status| {
                status
                    .cameras
                    .iter()
                    .find(|view| view.name == camera.name().as_str())
            });
            match running {
                Some(view) if view.state == "retrying" => fail(
                    what,
                    view.detail.clone().unwrap_or_else(|| "it fails to open".into()),
                    "check the device, the file or the stream (and its password); the node keeps retrying",
                ),
                Some(view) => ok(what, format!("{} ({})", view.state, camera.redacted())),
                None => ok(
                    what,
                    format!("plugins installed ({}); opened only by a running node", camera.redacted()),
                ),
            }
        })
        .collect()
}

fn disk_check(dir: &DataDir, settings: &Settings, status: Option<&StatusView>) -> Check {
    let free = match fs2::available_space(dir.root()) {
        Ok(free) => free,
        Err(err) => {
            return fail(
                "disk",
                format!("cannot measure free space: {err}"),
                "check the data dir's file system",
            );
        }
    };
    if free < 1 << 20 {
        return fail(
            "disk",
            format!("{free} bytes free"),
            "free space on the data dir's disk: below 64 KiB the node records nothing, and so releases nothing",
        );
    }
    let used = status.map_or(0, |status| status.clips.bytes);
    match settings.max_bytes {
        Some(max) if max > free.saturating_add(used) => warn(
            "disk",
            format!(
                "retention keeps up to {max} bytes, but the disk holds at most {} for clips",
                free.saturating_add(used)
            ),
            "lower retention.max_bytes in config.toml, or free space; until then the oldest clips go when the disk fills",
        ),
        _ => ok("disk", format!("{free} bytes free")),
    }
}

/// Requests carry their time and are refused outside ±60 s, so a clock that drifts makes
/// a node refuse honest requests, or send ones others refuse.
fn clock_check() -> Check {
    let answer = Process::new("timedatectl")
        .args(["show", "-p", "NTPSynchronized", "--value"])
        .output();
    match answer {
        Ok(out) if out.status.success() => match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => ok("clock", "synchronized (NTP)"),
            _ => fail(
                "clock",
                "not synchronized; requests are refused beyond ±60 s of skew",
                "turn on time synchronization: timedatectl set-ntp true",
            ),
        },
        _ => warn(
            "clock",
            "cannot tell whether the clock is synchronized (no systemd timedatectl here)",
            "make sure NTP (chrony, systemd-timesyncd) keeps this clock within a few seconds",
        ),
    }
}

fn mesh_check(mesh: &MeshStatus) -> Check {
    if mesh.listen_addresses.is_empty() {
        return fail(
            "mesh",
            "not listening on any address",
            "check --listen (and that the port is free)",
        );
    }
    if mesh.connected_peers.is_empty() {
        return warn(
            "mesh",
            format!(
                "listening, reachability {}, but no peer is connected",
                mesh.nat.to_lowercase()
            ),
            "give --bootstrap MULTIADDR of a neighbor's node, or enable mDNS on the LAN",
        );
    }
    if mesh.nat.to_lowercase().contains("private") {
        return warn(
            "mesh",
            format!(
                "{} peers connected, but this node is behind NAT",
                mesh.connected_peers.len()
            ),
            "others reach it only through a relay: --bootstrap a node started with --relay-server",
        );
    }
    ok(
        "mesh",
        format!(
            "{} peers connected, reachability {}",
            mesh.connected_peers.len(),
            mesh.nat.to_lowercase()
        ),
    )
}

fn trust_check(dir: &DataDir) -> Check {
    match crate::trust::TrustList::load(dir) {
        Ok(trust) if trust.list().is_empty() => warn(
            "trust roots",
            "none: every authority's request shows as unverified",
            "add the root your county or association publishes: porchlight trust add KEY --label NAME",
        ),
        Ok(trust) => ok("trust roots", format!("{} trusted", trust.list().len())),
        Err(err) => fail(
            "trust roots",
            format!("{err:#}"),
            "fix or remove trust.toml (porchlight trust list shows it)",
        ),
    }
}

fn audit_check(dir: &DataDir) -> Check {
    let path = dir.audit_log();
    if !path.exists() {
        return ok(
            "audit log",
            "no entries yet (it starts with the first request)",
        );
    }
    let peer = match NodeKeys::load(dir) {
        Ok(keys) => keys.identity.peer_id(),
        Err(err) => {
            return fail(
                "audit log",
                format!("cannot read the node's key to check signatures: {err:#}"),
                "check the data dir's key files",
            );
        }
    };
    match crate::audit_log::verify(&path, &peer) {
        Ok(report) => match &report.failure {
            None => ok(
                "audit log",
                format!("{} entries, all signed and chained", report.verified),
            ),
            Some(failure) => fail(
                "audit log",
                format!(
                    "damaged: {} entries verify, then record {} fails",
                    report.verified, failure.index
                ),
                "see `porchlight audit verify`; keep the file as evidence, and `porchlight audit set-aside` to start a new log",
            ),
        },
        Err(err) => fail(
            "audit log",
            format!("{err:#}"),
            "see `porchlight audit verify`",
        ),
    }
}

/// The human lines: one per check, the fix below each one that is not ok.
pub fn print(checks: &[Check]) {
    let width = checks
        .iter()
        .map(|check| check.what.len())
        .max()
        .unwrap_or(0);
    for check in checks {
        let verdict = match check.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        println!("{verdict}  {:<width$}  {}", check.what, check.found);
        if let Some(fix) = &check.fix {
            println!("      {:<width$}  fix: {fix}", "");
        }
    }
}
