//! Signatures on audit log entries (spec/crypto.md#audit-signatures).
//!
//! ```text
//! signed message = "porchlight/v1/audit-entry-signature" || entry hash (32 bytes)
//! ```
//!
//! The node signs each audit entry's 32-byte chain hash with its identity key, so a log can
//! be checked against the node's [`PeerId`] alone. The domain is its own label under
//! `"porchlight/v1/"`, prefix-free with every envelope label, so an audit signature can never
//! verify as a request, a token or any other message, nor a message signature as an audit
//! signature. What the hash covers (the entry's position, time, predecessor and event) is the
//! node core's business (`porchlight-core`'s `audit` module, spec/wire.md#audit-log-file);
//! this module only fixes the bytes that are signed.

use crate::error::CryptoError;
use crate::identity::{PeerId, SigningIdentity};

/// The signature domain of an audit entry (spec/crypto.md#audit-signatures).
pub const AUDIT_ENTRY_SIGNATURE_DOMAIN: &[u8] = b"porchlight/v1/audit-entry-signature";

/// Length of the signed message: the domain and the 32-byte entry hash.
const SIGNED_LEN: usize = AUDIT_ENTRY_SIGNATURE_DOMAIN.len() + 32;

/// The exact bytes an audit signature covers: the domain followed by the entry hash.
pub fn audit_signed_message(entry_hash: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNED_LEN);
    message.extend_from_slice(AUDIT_ENTRY_SIGNATURE_DOMAIN);
    message.extend_from_slice(entry_hash);
    message
}

impl SigningIdentity {
    /// Signs an audit entry's hash under the audit domain (spec/crypto.md#audit-signatures).
    pub fn sign_audit_entry(&self, entry_hash: &[u8; 32]) -> [u8; 64] {
        self.sign(&audit_signed_message(entry_hash))
    }
}

impl PeerId {
    /// Checks a strict Ed25519 signature by this peer over an audit entry's hash, under the
    /// audit domain (spec/crypto.md#audit-signatures).
    pub fn verify_audit_entry(
        &self,
        entry_hash: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), CryptoError> {
        self.verify(&audit_signed_message(entry_hash), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Kind, SIGNATURE_DOMAIN_PREFIX};

    const HASH: [u8; 32] = [0x5a; 32];

    #[test]
    fn a_signature_verifies_under_the_signer() {
        let identity = SigningIdentity::from_secret_bytes(&[3; 32]);
        let signature = identity.sign_audit_entry(&HASH);
        assert_eq!(
            identity.peer_id().verify_audit_entry(&HASH, &signature),
            Ok(())
        );
    }

    #[test]
    fn a_flipped_bit_in_the_hash_or_the_signature_fails() {
        let identity = SigningIdentity::from_secret_bytes(&[3; 32]);
        let peer = identity.peer_id();
        let signature = identity.sign_audit_entry(&HASH);
        for bit in 0..256 {
            let mut hash = HASH;
            hash[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                peer.verify_audit_entry(&hash, &signature),
                Err(CryptoError::BadSignature),
                "hash bit {bit}"
            );
        }
        for bit in 0..512 {
            let mut bad = signature;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                peer.verify_audit_entry(&HASH, &bad),
                Err(CryptoError::BadSignature),
                "signature bit {bit}"
            );
        }
    }

    #[test]
    fn another_key_fails() {
        let signature = SigningIdentity::from_secret_bytes(&[3; 32]).sign_audit_entry(&HASH);
        let other = SigningIdentity::from_secret_bytes(&[4; 32]).peer_id();
        assert_eq!(
            other.verify_audit_entry(&HASH, &signature),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn the_signed_message_is_the_domain_then_the_hash() {
        let message = audit_signed_message(&HASH);
        assert_eq!(&message[..35], b"porchlight/v1/audit-entry-signature");
        assert_eq!(&message[35..], &HASH);
        assert_eq!(message.len(), SIGNED_LEN);
    }

    #[test]
    fn the_domain_is_prefix_free_with_every_envelope_domain() {
        let audit = AUDIT_ENTRY_SIGNATURE_DOMAIN;
        assert!(audit.starts_with(SIGNATURE_DOMAIN_PREFIX.as_bytes()));
        for kind in Kind::ALL {
            let domain = kind.domain().into_bytes();
            assert!(
                !audit.starts_with(&domain) && !domain.starts_with(audit),
                "{} and the audit domain overlap",
                kind.label()
            );
        }
    }

    #[test]
    fn an_envelope_signature_is_not_an_audit_signature_and_back() {
        // The same 32 bytes signed as a message body of every kind never verify as an audit
        // signature, and an audit signature never verifies as any kind's body.
        let identity = SigningIdentity::from_secret_bytes(&[3; 32]);
        let peer = identity.peer_id();
        let audit_signature = identity.sign_audit_entry(&HASH);
        for kind in Kind::ALL {
            let envelope_signature = identity.sign(&kind.signed_message(&HASH));
            assert_eq!(
                peer.verify_audit_entry(&HASH, &envelope_signature),
                Err(CryptoError::BadSignature)
            );
            assert_eq!(
                peer.verify(&kind.signed_message(&HASH), &audit_signature),
                Err(CryptoError::BadSignature)
            );
        }
    }
}
