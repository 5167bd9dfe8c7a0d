//! The owner's trust roots: the keys whose credential chains make a requester *verified*.
//!
//! They live in `<data dir>/trust.toml`, edited by `porchlight trust add/list/remove` and
//! readable by hand:
//!
//! ```toml
//! [[root]]
//! public_key = "12D3KooW..."        # the root's peer id, as `authority root-keygen` printed it
//! label = "Springfield County"      # the owner's own name for it
//! added_at = "2026-11-29T14:00:00Z"
//! ```
//!
//! A missing file is an empty list: a fresh node trusts no authority, so every requester is
//! shown as unverified whatever name it claims. The file is checked whole on load (keys,
//! labels, no duplicates) and replaced atomically on every change, so a crash leaves the old
//! list or the new one, never half of either. A running node reads it when it starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use porchlight_protocol::validate::check_text;
use porchlight_protocol::{PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::api::views::{parse_rfc3339, rfc3339};
use crate::data_dir::{DataDir, replace_file};

/// Longest label, in UTF-8 bytes.
pub const MAX_LABEL_LEN: usize = 128;

const HEADER: &str = "# Authority trust roots: a requester whose credential chain ends at one of these keys\n\
# is shown as verified. Edit with `porchlight trust add|remove`; a running node reads this\n\
# file when it starts.\n\n";

/// One trusted root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustEntry {
    pub public_key: PeerId,
    pub label: String,
    pub added_at: Timestamp,
}

/// A trust entry as text: its form in `trust.toml` and in `trust list --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustEntryRecord {
    pub public_key: String,
    pub label: String,
    /// RFC 3339, UTC.
    pub added_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    #[serde(default)]
    root: Vec<TrustEntryRecord>,
}

impl TrustEntry {
    pub fn to_record(&self) -> TrustEntryRecord {
        TrustEntryRecord {
            public_key: self.public_key.to_string(),
            label: self.label.clone(),
            added_at: rfc3339(self.added_at),
        }
    }
}

/// The trust list of one data dir.
#[derive(Debug, Clone)]
pub struct TrustList {
    path: PathBuf,
    entries: Vec<TrustEntry>,
}

/// Parses a root's public key as a user typed it.
pub fn parse_public_key(text: &str) -> anyhow::Result<PeerId> {
    text.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "{text:?} is not a public key; expected a peer id such as 12D3KooW... \
             (the one `porchlight authority root-keygen` printed)"
        )
    })
}

/// Checks a label: not empty, at most [`MAX_LABEL_LEN`] bytes, no control or invisible
/// formatting characters (it is printed to terminals).
pub fn check_label(label: &str) -> anyhow::Result<()> {
    check_text("label", label, MAX_LABEL_LEN, false)?;
    Ok(())
}

impl TrustList {
    /// Reads `<dir>/trust.toml`; a missing file is an empty list.
    pub fn load(dir: &DataDir) -> anyhow::Result<TrustList> {
        TrustList::load_from(dir.trust_list())
    }

    /// Reads a trust list from `path`; a missing file is an empty list.
    pub fn load_from(path: PathBuf) -> anyhow::Result<TrustList> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(TrustList {
                    path,
                    entries: Vec::new(),
                });
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot read trust list {}", path.display()));
            }
        };
        let entries = parse_entries(&text).with_context(|| {
            format!(
                "trust list {} is not valid; fix it by hand, or move it away and add the roots again",
                path.display()
            )
        })?;
        Ok(TrustList { path, entries })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, in the order they were added.
    pub fn list(&self) -> &[TrustEntry] {
        &self.entries
    }

    /// The trusted keys, for the node core's `NodeConfig::trust_roots`.
    pub fn roots(&self) -> Vec<PeerId> {
        self.entries.iter().map(|entry| entry.public_key).collect()
    }

    /// Adds a root and saves the file. A key or label already in the list is refused; on
    /// any error, neither the file nor the list changes.
    pub fn add(
        &mut self,
        public_key: PeerId,
        label: &str,
        now: Timestamp,
    ) -> anyhow::Result<TrustEntry> {
        let label = label.trim();
        check_label(label)?;
        if let Some(existing) = self.entries.iter().find(|e| e.public_key == public_key) {
            bail!(
                "{public_key} is already trusted, as {:?}; remove it first to change its label",
                existing.label
            );
        }
        if self.entries.iter().any(|e| e.label == label) {
            bail!("another trust root is already labelled {label:?}; choose another label");
        }
        let entry = TrustEntry {
            public_key,
            label: label.to_owned(),
            added_at: now,
        };
        let mut entries = self.entries.clone();
        entries.push(entry.clone());
        self.save(entries)?;
        Ok(entry)
    }

    /// Removes the root whose public key or label is `key_or_label` and saves the file.
    pub fn remove(&mut self, key_or_label: &str) -> anyhow::Result<TrustEntry> {
        let wanted = key_or_label.trim();
        let key = wanted.parse::<PeerId>().ok();
        let matches: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let entry = &self.entries[i];
                Some(entry.public_key) == key || entry.label == wanted
            })
            .collect();
        let index = match matches.as_slice() {
            [index] => *index,
            [] => bail!(
                "no trust root has the public key or label {wanted:?}; see `porchlight trust list`"
            ),
            _ => bail!(
                "{wanted:?} is one root's public key and another's label; remove by the public key"
            ),
        };
        let mut entries = self.entries.clone();
        let removed = entries.remove(index);
        self.save(entries)?;
        Ok(removed)
    }

    fn save(&mut self, entries: Vec<TrustEntry>) -> anyhow::Result<()> {
        let file = TrustFile {
            root: entries.iter().map(TrustEntry::to_record).collect(),
        };
        let body = toml::to_string(&file).context("cannot encode the trust list")?;
        replace_file(&self.path, format!("{HEADER}{body}").as_bytes(), 0o600)?;
        self.entries = entries;
        Ok(())
    }
}

fn parse_entries(text: &str) -> anyhow::Result<Vec<TrustEntry>> {
    let file: TrustFile = toml::from_str(text)?;
    let mut entries: Vec<TrustEntry> = Vec::with_capacity(file.root.len());
    for (i, record) in file.root.into_iter().enumerate() {
        let entry = entry_of(&record).with_context(|| format!("root {}", i + 1))?;
        if entries.iter().any(|e| e.public_key == entry.public_key) {
            bail!("root {}: {} is listed twice", i + 1, entry.public_key);
        }
        if entries.iter().any(|e| e.label == entry.label) {
            bail!("root {}: the label {:?} is used twice", i + 1, entry.label);
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn entry_of(record: &TrustEntryRecord) -> anyhow::Result<TrustEntry> {
    let public_key = parse_public_key(&record.public_key)?;
    check_label(&record.label)?;
    let added_at = parse_rfc3339(&record.added_at).map_err(anyhow::Error::msg)?;
    Ok(TrustEntry {
        public_key,
        label: record.label.clone(),
        added_at,
    })
}

#[cfg(test)]
mod tests {
    use porchlight_protocol::SigningIdentity;

    use super::*;

    fn key(byte: u8) -> PeerId {
        SigningIdentity::from_secret_bytes(&[byte; 32]).peer_id()
    }

    const NOW: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

    fn list_in(dir: &Path) -> TrustList {
        TrustList::load_from(dir.join("trust.toml")).unwrap()
    }

    #[test]
    fn add_list_remove_round_trip_through_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut list = list_in(tmp.path());
        assert!(list.list().is_empty(), "a missing file is an empty list");
        list.add(key(1), " Springfield County ", NOW).unwrap();
        list.add(key(2), "State police", NOW).unwrap();

        let reread = list_in(tmp.path());
        assert_eq!(reread.roots(), [key(1), key(2)]);
        assert_eq!(reread.list()[0].label, "Springfield County");
        assert_eq!(reread.list()[0].added_at, NOW);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(reread.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut list = reread;
        assert_eq!(list.remove("State police").unwrap().public_key, key(2));
        assert_eq!(
            list.remove(&key(1).to_string()).unwrap().label,
            "Springfield County"
        );
        assert!(list_in(tmp.path()).list().is_empty());
    }

    #[test]
    fn duplicates_and_bad_labels_are_refused_and_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut list = list_in(tmp.path());
        list.add(key(1), "County", NOW).unwrap();
        let before = std::fs::read(list.path()).unwrap();
        let err = list.add(key(1), "Other", NOW).unwrap_err().to_string();
        assert!(err.contains("is already trusted, as \"County\""), "{err}");
        let err = list.add(key(2), "County", NOW).unwrap_err().to_string();
        assert!(err.contains("already labelled"), "{err}");
        for bad in ["", "  ", "a\nb", "Cou\u{202E}nty"] {
            assert!(list.add(key(3), bad, NOW).is_err(), "{bad:?}");
        }
        let err = list
            .add(key(3), &"x".repeat(MAX_LABEL_LEN + 1), NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the limit of 128"), "{err}");
        assert_eq!(std::fs::read(list.path()).unwrap(), before);
        assert_eq!(list.roots(), [key(1)]);
        let err = list.remove("nobody").unwrap_err().to_string();
        assert!(err.contains("porchlight trust list"), "{err}");
    }

    #[test]
    fn a_hand_broken_file_is_one_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("trust.toml");
        let one = |k: PeerId, label: &str| {
            format!(
                "[[root]]\npublic_key = \"{k}\"\nlabel = \"{label}\"\nadded_at = \"2026-11-29T14:00:00Z\"\n"
            )
        };
        for (text, expect) in [
            (one(key(1), "a") + &one(key(1), "b"), "listed twice"),
            (one(key(1), "a") + &one(key(2), "a"), "used twice"),
            (
                one(key(1), "a").replace("12D3", "xx"),
                "is not a public key",
            ),
            (one(key(1), "a").replace("2026-", "soon-"), "RFC 3339"),
            (one(key(1), "a") + "colour = 1\n", "unknown field"),
        ] {
            std::fs::write(&path, &text).unwrap();
            let err = format!("{:#}", TrustList::load_from(path.clone()).unwrap_err());
            assert!(err.contains("trust list"), "{err}");
            assert!(err.contains(expect), "{expect}: {err}");
        }
    }

    #[test]
    fn public_keys_parse_or_say_what_is_expected() {
        assert_eq!(parse_public_key(&format!(" {} ", key(1))).unwrap(), key(1));
        let err = parse_public_key("hello").unwrap_err().to_string();
        assert!(err.contains("is not a public key"), "{err}");
    }
}
