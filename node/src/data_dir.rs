//! The node's data directory: where it is, what is in it, and who may use it.
//!
//! ```text
//! <data dir>/
//!   identity.key   Ed25519 seed (0600): the node's identity and libp2p key
//!   vault.key      X25519 secret (0600): every clip's file key is wrapped to it
//!   config.toml    the owner's settings
//!   trust.toml     the authority trust roots the owner chose (`porchlight trust`; 0600)
//!   api.json       where the running daemon's HTTP API listens (written by the daemon)
//!   api-token      the admin token for that API (0600, written by the daemon)
//!   audit.log      the signed, hash-chained audit log (0600, appended by the daemon)
//!   index/         the store's sled index
//!   clips/         sealed clip files, the store's source of truth
//! ```
//!
//! The directory is resolved as: `--data-dir`, then `PORCHLIGHT_DATA_DIR`, then
//! `$XDG_DATA_HOME/porchlight`, then `~/.local/share/porchlight`. A directory owned by another
//! user is refused: its keys are not ours to use and its owner could swap them.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use zeroize::Zeroizing;

/// Environment variable that sets the data directory.
pub const DATA_DIR_ENV: &str = "PORCHLIGHT_DATA_DIR";

/// A resolved data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Resolves the data directory from the flag, the environment and the XDG default.
    pub fn resolve(flag: Option<PathBuf>) -> anyhow::Result<DataDir> {
        let root = match flag {
            Some(dir) => dir,
            None => match std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir),
                None => default_data_dir()?,
            },
        };
        Ok(DataDir { root })
    }

    pub fn at(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn identity_key(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    pub fn vault_key(&self) -> PathBuf {
        self.root.join("vault.key")
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The owner's trust roots (see [`crate::trust`]).
    pub fn trust_list(&self) -> PathBuf {
        self.root.join("trust.toml")
    }

    /// The consent core's durable state (see `consent_state`).
    pub fn consent_state(&self) -> PathBuf {
        self.root.join(crate::consent_state::CONSENT_STATE_FILE)
    }

    /// Addresses of peers met before, kept across restarts (see `mesh::peer_book`).
    pub fn peer_book(&self) -> PathBuf {
        self.root.join("peers.json")
    }

    pub fn api_address(&self) -> PathBuf {
        self.root.join("api.json")
    }

    pub fn api_token(&self) -> PathBuf {
        self.root.join("api-token")
    }

    /// The audit log (spec/wire.md#audit-log-file).
    pub fn audit_log(&self) -> PathBuf {
        self.root.join(crate::audit_log::AUDIT_LOG_FILE)
    }

    /// Checks the directory exists, is a directory, and belongs to the user running us.
    pub fn check_usable(&self) -> anyhow::Result<()> {
        let meta = match fs::metadata(&self.root) {
            Ok(meta) => meta,
            Err(err) if err.kind() == ErrorKind::NotFound => bail!(
                "data dir {} does not exist; create it with `porchlight init --data-dir {}`",
                self.root.display(),
                self.root.display()
            ),
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot read data dir {}", self.root.display()));
            }
        };
        if !meta.is_dir() {
            bail!("data dir {} is not a directory", self.root.display());
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            bail!(
                "data dir {} belongs to uid {}, not to you (uid {me}); run porchlight as its owner",
                self.root.display(),
                meta.uid()
            );
        }
        Ok(())
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("porchlight"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/porchlight")),
        None => bail!("cannot find a data dir: set --data-dir, {DATA_DIR_ENV} or HOME"),
    }
}

/// Writes a secret file that must not exist yet, readable by the owner only (0600), and
/// flushes it to disk. Refuses to overwrite: keys are never replaced by accident.
pub fn write_new_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_new(path, bytes, 0o600)
}

/// Replaces a secret file (0600) atomically: the daemon's admin token on each start.
pub fn replace_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    replace_file(path, bytes, 0o600)
}

/// Replaces a file atomically (a flushed temporary beside it, then a rename), with `mode`.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, mode)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Creates a new file with `mode`, writes `bytes` and flushes them to disk; an existing
/// file is an error (`create_new`), never overwritten.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a secret file of exactly `N` bytes, refusing one that others can read.
pub fn read_secret<const N: usize>(path: &Path) -> anyhow::Result<Zeroizing<[u8; N]>> {
    let meta = fs::metadata(path).with_context(|| {
        format!(
            "cannot read {}; is this a porchlight data dir? (create one with `porchlight init`)",
            path.display()
        )
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); fix it with `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    let bytes =
        Zeroizing::new(fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    let mut out = Zeroizing::new([0u8; N]);
    if bytes.len() != N {
        bail!(
            "{} is {} bytes, expected {N}: the key file is corrupt",
            path.display(),
            bytes.len()
        );
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new_secret(&path, &[7; 32]).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_new_secret(&path, &[8; 32]).is_err());
        assert_eq!(*read_secret::<32>(&path).unwrap(), [7; 32]);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret::<32>(&path).unwrap_err().to_string();
        assert!(err.contains("readable by other users"), "{err}");
    }

    #[test]
    fn wrong_size_key_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_new_secret(&path, &[1; 5]).unwrap();
        assert!(
            read_secret::<32>(&path)
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );
    }

    #[test]
    fn missing_dir_names_the_fix() {
        let err = DataDir::at("/nonexistent/porchlight")
            .check_usable()
            .unwrap_err()
            .to_string();
        assert!(err.contains("porchlight init"), "{err}");
    }
}
