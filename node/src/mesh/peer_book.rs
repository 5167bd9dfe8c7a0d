//! The addresses of peers this node has met, kept across restarts (`peers.json`).
//!
//! A home that restarts should find its neighbors again without a bootstrap node: on start
//! the swarm feeds these addresses to Kademlia and dials a few. Only addresses a peer
//! announced itself (identify's listen addresses) or that this node dialed successfully
//! are kept, bounded per peer and in total, so a hostile peer cannot grow the file without
//! limit. A missing or unreadable file is an empty book (logged), never a failed start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libp2p::{Multiaddr, PeerId};

use crate::data_dir::replace_file;

/// At most this many peers are remembered.
pub const MAX_PEERS: usize = 512;
/// At most this many addresses per peer.
pub const MAX_ADDRESSES_PER_PEER: usize = 8;

/// Peer id -> known addresses, newest last.
#[derive(Debug, Default)]
pub struct PeerBook {
    path: PathBuf,
    peers: BTreeMap<PeerId, Vec<Multiaddr>>,
    dirty: bool,
}

impl PeerBook {
    /// Loads `path`; an absent or malformed file gives an empty book.
    pub fn load(path: &Path) -> PeerBook {
        let mut book = PeerBook {
            path: path.to_owned(),
            ..PeerBook::default()
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return book,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read the peer book; starting without it");
                return book;
            }
        };
        let raw: BTreeMap<String, Vec<String>> = match serde_json::from_str(&text) {
            Ok(raw) => raw,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "the peer book is not valid JSON; starting without it");
                return book;
            }
        };
        for (peer, addresses) in raw {
            let Ok(peer) = peer.parse::<PeerId>() else {
                continue;
            };
            for address in addresses {
                if let Ok(address) = address.parse::<Multiaddr>() {
                    book.add(peer, address);
                }
            }
        }
        book.dirty = false;
        book
    }

    /// Remembers `address` for `peer`, dropping its oldest address or an arbitrary other
    /// peer when a bound is reached.
    pub fn add(&mut self, peer: PeerId, address: Multiaddr) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            let Some(evict) = self.peers.keys().next().copied() else {
                return;
            };
            self.peers.remove(&evict);
        }
        let addresses = self.peers.entry(peer).or_default();
        if let Some(known) = addresses.iter().position(|known| *known == address) {
            if known + 1 == addresses.len() {
                return;
            }
            addresses.remove(known);
        }
        addresses.push(address);
        if addresses.len() > MAX_ADDRESSES_PER_PEER {
            addresses.remove(0);
        }
        self.dirty = true;
    }

    /// Every (peer, addresses) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &Vec<Multiaddr>)> {
        self.peers.iter()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Writes the book if it changed since the last save.
    pub fn save(&mut self) -> anyhow::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let raw: BTreeMap<String, Vec<String>> = self
            .peers
            .iter()
            .map(|(peer, addresses)| {
                (
                    peer.to_string(),
                    addresses.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        let json = serde_json::to_vec_pretty(&raw)?;
        replace_file(&self.path, &json, 0o600)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn address(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn the_book_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let mut book = PeerBook::load(&path);
        let (a, b) = (peer(), peer());
        book.add(a, address(1));
        book.add(a, address(2));
        book.add(b, address(3));
        book.save().unwrap();
        let loaded = PeerBook::load(&path);
        assert_eq!(loaded.len(), 2);
        let addresses: Vec<_> = loaded.iter().find(|(p, _)| **p == a).unwrap().1.clone();
        assert_eq!(addresses, vec![address(1), address(2)]);
    }

    #[test]
    fn addresses_per_peer_and_peers_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = PeerBook::load(&dir.path().join("peers.json"));
        let a = peer();
        for port in 0..(MAX_ADDRESSES_PER_PEER as u16 + 5) {
            book.add(a, address(port));
        }
        assert_eq!(book.iter().next().unwrap().1.len(), MAX_ADDRESSES_PER_PEER);
        for _ in 0..MAX_PEERS + 10 {
            book.add(peer(), address(1));
        }
        assert_eq!(book.len(), MAX_PEERS);
    }

    #[test]
    fn a_corrupt_file_is_an_empty_book() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(PeerBook::load(&path).is_empty());
        std::fs::write(
            &path,
            br#"{"not a peer": ["/ip4/1.2.3.4/tcp/1"], "12D3": ["junk"]}"#,
        )
        .unwrap();
        assert!(PeerBook::load(&path).is_empty());
    }
}
