//! The node's settings: `config.toml`, then the environment, then command-line flags.
//!
//! Parsed raw (a serde struct that mirrors the file, unknown keys refused), then validated
//! into [`Settings`]: every later layer overrides the one before, and whatever came from
//! where, the daemon only ever sees checked values.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::data_dir::DataDir;

/// Where the local API listens unless told otherwise.
pub const DEFAULT_API: &str = "127.0.0.1:7878";
/// How long clips are kept unless told otherwise.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Seconds per clip unless told otherwise.
pub const DEFAULT_CLIP_SECONDS: u64 = 60;

/// The file's shape. Every field is optional: a missing one keeps the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub name: Option<String>,
    pub cameras: Option<Vec<String>>,
    pub clip_seconds: Option<u64>,
    pub api: Option<String>,
    pub retention: Option<RawRetention>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// A duration such as "7d" or "36h".
    pub max_age: Option<String>,
    /// Bytes of clips to keep at most.
    pub max_bytes: Option<u64>,
}

/// Overrides from the command line (flags) or the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub cameras: Vec<String>,
    pub clip_seconds: Option<u64>,
    pub api: Option<String>,
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
        RawConfig::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<RawConfig> {
        toml::from_str(text).with_context(|| format!("config {} is not valid", path.display()))
    }
}

/// The environment's overrides: `PORCHLIGHT_CAMERAS` (comma-separated),
/// `PORCHLIGHT_CLIP_SECONDS`, `PORCHLIGHT_API`.
pub fn environment_overrides() -> anyhow::Result<Overrides> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let clip_seconds = match var("PORCHLIGHT_CLIP_SECONDS") {
        Some(text) => Some(text.trim().parse().with_context(|| {
            format!("PORCHLIGHT_CLIP_SECONDS={text:?} is not a whole number of seconds")
        })?),
        None => None,
    };
    Ok(Overrides {
        cameras: var("PORCHLIGHT_CAMERAS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        clip_seconds,
        api: var("PORCHLIGHT_API"),
    })
}

impl Settings {
    /// File, then environment, then flags; then validated.
    pub fn layer(file: RawConfig, env: Overrides, flags: Overrides) -> anyhow::Result<Settings> {
        let mut cameras = file.cameras.unwrap_or_default();
        let mut clip_seconds = file.clip_seconds.unwrap_or(DEFAULT_CLIP_SECONDS);
        let mut api = file.api.unwrap_or_else(|| DEFAULT_API.to_owned());
        for layer in [env, flags] {
            if !layer.cameras.is_empty() {
                cameras = layer.cameras;
            }
            clip_seconds = layer.clip_seconds.unwrap_or(clip_seconds);
            api = layer.api.unwrap_or(api);
        }
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
        Ok(Settings {
            name: file.name.unwrap_or_else(|| "porchlight".to_owned()),
            cameras,
            clip_seconds,
            api,
            max_age,
            max_bytes: retention.max_bytes,
        })
    }
}

/// The config file `porchlight init` writes.
pub fn default_config_text(name: &str) -> String {
    let name = toml::Value::String(name.to_owned());
    format!(
        "# Porchlight node settings. Environment variables (PORCHLIGHT_CAMERAS, PORCHLIGHT_API,\n\
         # PORCHLIGHT_CLIP_SECONDS) override this file, and command-line flags override both.\n\
         name = {name}\n\
         \n\
         # Cameras as NAME=SPEC; SPEC is test, test:WIDTHxHEIGHT@FPS, v4l2:/dev/videoN,\n\
         # rtsp://..., file:PATH or none.\n\
         cameras = [\"front=test\"]\n\
         clip_seconds = {DEFAULT_CLIP_SECONDS}\n\
         api = \"{DEFAULT_API}\"\n\
         \n\
         [retention]\n\
         max_age = \"7d\"\n\
         # max_bytes = 100_000_000_000\n"
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
    }

    #[test]
    fn flags_override_environment_override_file() {
        let raw =
            parse("clip_seconds = 30\napi = \"127.0.0.1:1\"\ncameras = [\"a=test\"]").unwrap();
        let env = Overrides {
            clip_seconds: Some(20),
            api: Some("127.0.0.1:2".into()),
            cameras: vec![],
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
}
