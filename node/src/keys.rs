//! The node's two long-lived keys, as files in the data directory.
//!
//! The Ed25519 identity is the node's PeerId (and its libp2p key); the X25519 vault key is
//! what every stored clip's file key is wrapped to. Both are created once by
//! `porchlight init`, never overwritten, stored 0600, and zeroized in memory.

use anyhow::bail;
use porchlight_protocol::{AgreementSecret, SigningIdentity};
use rand_core::OsRng;

use crate::data_dir::{DataDir, read_secret, write_new_secret};

/// The keys of a node.
#[derive(Debug)]
pub struct NodeKeys {
    pub identity: SigningIdentity,
    pub vault: AgreementSecret,
}

/// Whether `init` made new keys or found them there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    AlreadyThere,
}

impl NodeKeys {
    /// Creates both keys unless they exist. A data dir with only one of them is refused:
    /// something removed a key, and a fresh one would orphan every clip or the identity.
    pub fn create(dir: &DataDir) -> anyhow::Result<(NodeKeys, Created)> {
        let identity_path = dir.identity_key();
        let vault_path = dir.vault_key();
        match (identity_path.exists(), vault_path.exists()) {
            (true, true) => return Ok((NodeKeys::load(dir)?, Created::AlreadyThere)),
            (false, false) => {}
            (true, false) => bail!(
                "{} exists but {} is missing; restore it from a backup (a new vault key could not open existing clips)",
                identity_path.display(),
                vault_path.display()
            ),
            (false, true) => bail!(
                "{} exists but {} is missing; restore it from a backup",
                vault_path.display(),
                identity_path.display()
            ),
        }
        let keys = NodeKeys {
            identity: SigningIdentity::generate(&mut OsRng),
            vault: AgreementSecret::generate(&mut OsRng),
        };
        write_new_secret(&vault_path, keys.vault.to_bytes().as_ref())?;
        write_new_secret(&identity_path, keys.identity.to_secret_bytes().as_ref())?;
        Ok((keys, Created::New))
    }

    /// Loads both keys.
    pub fn load(dir: &DataDir) -> anyhow::Result<NodeKeys> {
        let identity = read_secret::<32>(&dir.identity_key())?;
        let vault = read_secret::<32>(&dir.vault_key())?;
        Ok(NodeKeys {
            identity: SigningIdentity::from_secret_bytes(&identity),
            vault: AgreementSecret::from_bytes(*vault),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_twice_keeps_the_first_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::at(tmp.path());
        let (first, created) = NodeKeys::create(&dir).unwrap();
        assert_eq!(created, Created::New);
        let (second, created) = NodeKeys::create(&dir).unwrap();
        assert_eq!(created, Created::AlreadyThere);
        assert_eq!(first.identity.peer_id(), second.identity.peer_id());
        assert_eq!(first.vault.public(), second.vault.public());
    }

    #[test]
    fn a_missing_vault_key_is_not_silently_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::at(tmp.path());
        NodeKeys::create(&dir).unwrap();
        std::fs::remove_file(dir.vault_key()).unwrap();
        let err = NodeKeys::create(&dir).unwrap_err().to_string();
        assert!(err.contains("restore it from a backup"), "{err}");
    }
}
