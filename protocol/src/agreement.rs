//! X25519 key-agreement keys (spec/crypto.md#agreement-keys).
//!
//! Two roles use the same types. Each node has one static *vault* key: every clip's file key
//! is wrapped to it at rest, so only that node can open its own footage. Each request
//! carries a fresh *reply* key from the requester: a grant wraps file keys to it, so what one
//! request was granted cannot be opened with the keys of another.

use std::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgreementPublic(#[serde(with = "crate::codec::fixed")] [u8; 32]);

impl AgreementPublic {
    pub const fn from_bytes(bytes: [u8; 32]) -> AgreementPublic {
        AgreementPublic(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for AgreementPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgreementPublic({})", hex::encode(self.0))
    }
}

/// An X25519 secret key (a vault key or a reply key). Zeroized on drop; `Debug` shows only
/// the public half.
pub struct AgreementSecret(StaticSecret);

impl AgreementSecret {
    pub fn generate(rng: &mut impl CryptoRngCore) -> AgreementSecret {
        AgreementSecret(StaticSecret::random_from_rng(rng))
    }

    /// Rebuilds a secret from its 32 bytes (as stored in a key file). X25519 clamps the
    /// scalar, so every 32-byte string is a usable secret.
    pub fn from_bytes(bytes: [u8; 32]) -> AgreementSecret {
        AgreementSecret(StaticSecret::from(bytes))
    }

    /// The secret's 32 bytes for writing to a key file. Zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public(&self) -> AgreementPublic {
        AgreementPublic(PublicKey::from(&self.0).to_bytes())
    }

    /// X25519 with `peer`, refusing an all-zero result (spec/crypto.md#key-wrap): a
    /// low-order peer key would otherwise force a shared secret an attacker knows.
    pub(crate) fn agree(&self, peer: &AgreementPublic) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let shared = self.0.diffie_hellman(&PublicKey::from(peer.0));
        if !shared.was_contributory() {
            return Err(CryptoError::NonContributory);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

impl fmt::Debug for AgreementSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgreementSecret")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_is_symmetric() {
        let a = AgreementSecret::from_bytes([1; 32]);
        let b = AgreementSecret::from_bytes([2; 32]);
        assert_eq!(
            *a.agree(&b.public()).unwrap(),
            *b.agree(&a.public()).unwrap()
        );
    }

    #[test]
    fn low_order_point_is_refused() {
        let a = AgreementSecret::from_bytes([1; 32]);
        assert_eq!(
            a.agree(&AgreementPublic::from_bytes([0; 32])).map(|_| ()),
            Err(CryptoError::NonContributory)
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let secret = AgreementSecret::from_bytes([0x5a; 32]);
        let debug = format!("{secret:?}");
        assert!(!debug.contains("5a5a5a"), "{debug}");
    }
}
