//! Signing identities and peer ids (spec/wire.md#peer-id, spec/crypto.md#signatures).
//!
//! A node's identity is one Ed25519 key: the same key that libp2p uses for the node's
//! transport identity, so the peer a Noise handshake authenticated and the peer that signed
//! a request or a token are provably the same. [`PeerId`] holds the 32-byte public key and
//! prints in libp2p's textual form (`12D3KooW…`), so ids in the CLI, the logs and libp2p agree,
//! without this crate depending on libp2p.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::{CryptoError, DecodeError};

/// The prefix of a libp2p peer id for an Ed25519 key: identity multihash (code 0x00, length
/// 36) of the protobuf `PublicKey { Type: Ed25519 (1), Data: <32 bytes> }`.
const LIBP2P_ED25519_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// A peer's identity: its Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// Wraps 32 public-key bytes. Whether they are a valid curve point is checked when a
    /// signature is verified against them.
    pub const fn from_public_key_bytes(bytes: [u8; 32]) -> PeerId {
        PeerId(bytes)
    }

    /// The Ed25519 public key bytes.
    pub const fn public_key_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The peer id in libp2p's binary form (an identity multihash of the protobuf-encoded
    /// public key), as `libp2p::PeerId::from_bytes` accepts it.
    pub fn to_libp2p_bytes(&self) -> [u8; 38] {
        let mut out = [0u8; 38];
        out[..6].copy_from_slice(&LIBP2P_ED25519_PREFIX);
        out[6..].copy_from_slice(&self.0);
        out
    }

    /// Parses libp2p's binary form; only Ed25519 peer ids are Porchlight peers.
    pub fn from_libp2p_bytes(bytes: &[u8]) -> Result<PeerId, DecodeError> {
        let malformed = DecodeError::Malformed { what: "peer id" };
        let key = bytes
            .strip_prefix(&LIBP2P_ED25519_PREFIX[..])
            .ok_or(malformed.clone())?;
        let key: [u8; 32] = key.try_into().map_err(|_| malformed)?;
        Ok(PeerId(key))
    }

    /// Verifies a strict Ed25519 signature by this peer over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), CryptoError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| CryptoError::InvalidPublicKey)?;
        key.verify_strict(message, &Signature::from_bytes(signature))
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.to_libp2p_bytes()).into_string())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<PeerId, DecodeError> {
        let bytes = bs58::decode(text)
            .into_vec()
            .map_err(|_| DecodeError::Malformed { what: "peer id" })?;
        PeerId::from_libp2p_bytes(&bytes)
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            crate::codec::fixed::serialize(&self.0, serializer)
        }
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PeerId, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            crate::codec::fixed::deserialize(deserializer).map(PeerId)
        }
    }
}

/// A node's Ed25519 signing key. Zeroized on drop; its `Debug` shows only the peer id.
pub struct SigningIdentity {
    key: SigningKey,
}

impl SigningIdentity {
    /// Generates a fresh identity from a cryptographic RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> SigningIdentity {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        SigningIdentity::from_secret_bytes(&seed)
    }

    /// Rebuilds an identity from its 32-byte secret seed (as stored in the key file, and as
    /// libp2p's `ed25519::SecretKey` holds it).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> SigningIdentity {
        SigningIdentity {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// The 32-byte secret seed, for writing to a key file. Zeroized when dropped.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// This identity's peer id.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.key.verifying_key().to_bytes())
    }

    /// Signs `message` (already domain-separated by the caller).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_text_round_trips_and_looks_like_libp2p() {
        let id = SigningIdentity::from_secret_bytes(&[7; 32]).peer_id();
        let text = id.to_string();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(text.parse::<PeerId>().unwrap(), id);
    }

    #[test]
    fn peer_id_parse_rejects_other_key_types_and_garbage() {
        assert!("not-base58-0OIl".parse::<PeerId>().is_err());
        // A valid base58 string that is not an Ed25519 identity multihash.
        let other = bs58::encode([0x12, 0x20, 1, 2, 3]).into_string();
        assert!(other.parse::<PeerId>().is_err());
        assert!(PeerId::from_libp2p_bytes(&LIBP2P_ED25519_PREFIX).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let identity = SigningIdentity::from_secret_bytes(&[0xab; 32]);
        let debug = format!("{identity:?}");
        assert!(
            !debug.contains("ab, ab") && !debug.contains("abab"),
            "{debug}"
        );
        assert!(debug.contains("12D3KooW"));
    }

    #[test]
    fn verify_rejects_wrong_message_and_invalid_key() {
        let identity = SigningIdentity::from_secret_bytes(&[1; 32]);
        let signature = identity.sign(b"hello");
        let id = identity.peer_id();
        assert_eq!(id.verify(b"hello", &signature), Ok(()));
        assert_eq!(
            id.verify(b"hellO", &signature),
            Err(CryptoError::BadSignature)
        );
        // y = 2 does not decompress to a curve point.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(
            PeerId::from_public_key_bytes(bad).verify(b"hello", &signature),
            Err(CryptoError::InvalidPublicKey)
        );
    }
}
