//! Wrapping a clip's file key to an X25519 recipient (spec/crypto.md#key-wrap).
//!
//! The same construction serves two recipients: the node's own vault key (at rest) and a
//! requester's reply key (in a grant). The clip id is the associated data, so a wrapped key
//! opens only for the clip it was made for: it cannot be replayed against another clip.
//!
//! ```text
//! shared   = X25519(ephemeral_secret, recipient_public)        ; all-zero is refused
//! wrap_key = HKDF-SHA-256(ikm = shared,
//!                         salt = ephemeral_public || recipient_public,
//!                         info = "porchlight/v1/key-wrap", L = 32)
//! wrapped  = ChaCha20-Poly1305(wrap_key, nonce = 0^12, plaintext = file_key, aad = clip_id)
//! ```
//!
//! A fixed zero nonce is safe because every wrap uses a fresh ephemeral key, so no wrap key
//! is ever used twice.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::agreement::{AgreementPublic, AgreementSecret};
use crate::clip::{ClipId, FileKey};
use crate::error::CryptoError;

/// HKDF `info` label of the wrap key (spec/crypto.md#key-wrap).
pub const KEY_WRAP_INFO: &[u8] = b"porchlight/v1/key-wrap";

/// Length of a wrapped file key: 32 key bytes and a 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = 48;

/// A file key wrapped to one recipient, with the ephemeral public key that travels beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedFileKey {
    pub ephemeral_public: AgreementPublic,
    #[serde(with = "crate::codec::fixed")]
    pub wrapped: [u8; WRAPPED_KEY_LEN],
}

fn wrap_cipher(
    shared: &[u8; 32],
    ephemeral_public: &AgreementPublic,
    recipient_public: &AgreementPublic,
) -> ChaCha20Poly1305 {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral_public.as_bytes());
    salt[32..].copy_from_slice(recipient_public.as_bytes());
    let mut wrap_key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(KEY_WRAP_INFO, wrap_key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    ChaCha20Poly1305::new(Key::from_slice(wrap_key.as_ref()))
}

/// Wraps `file_key` for `recipient`, bound to `clip_id`. The caller supplies the ephemeral
/// secret (fresh from a CSPRNG, used once) so that test vectors can cover wrapping too.
pub fn wrap_file_key(
    file_key: &FileKey,
    recipient: &AgreementPublic,
    clip_id: &ClipId,
    ephemeral: AgreementSecret,
) -> Result<WrappedFileKey, CryptoError> {
    let ephemeral_public = ephemeral.public();
    let shared = ephemeral.agree(recipient)?;
    let cipher = wrap_cipher(&shared, &ephemeral_public, recipient);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: file_key.as_bytes(),
                aad: clip_id.as_bytes(),
            },
        )
        .expect("ChaCha20-Poly1305 encryption of 32 bytes cannot fail");
    let wrapped: [u8; WRAPPED_KEY_LEN] = sealed
        .try_into()
        .expect("32-byte plaintext seals to 48 bytes");
    Ok(WrappedFileKey {
        ephemeral_public,
        wrapped,
    })
}

/// Opens a wrapped file key with the recipient's secret, checking it was made for `clip_id`.
pub fn unwrap_file_key(
    wrapped: &WrappedFileKey,
    recipient: &AgreementSecret,
    clip_id: &ClipId,
) -> Result<FileKey, CryptoError> {
    let shared = recipient.agree(&wrapped.ephemeral_public)?;
    let cipher = wrap_cipher(&shared, &wrapped.ephemeral_public, &recipient.public());
    let opened = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &wrapped.wrapped,
                    aad: clip_id.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::UnwrapFailed)?,
    );
    let key: [u8; 32] = opened
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::UnwrapFailed)?;
    Ok(FileKey::from_bytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (FileKey, AgreementSecret, ClipId, WrappedFileKey) {
        let file_key = FileKey::from_bytes([3; 32]);
        let recipient = AgreementSecret::from_bytes([4; 32]);
        let clip_id = ClipId::from_bytes([5; 32]);
        let wrapped = wrap_file_key(
            &file_key,
            &recipient.public(),
            &clip_id,
            AgreementSecret::from_bytes([6; 32]),
        )
        .unwrap();
        (file_key, recipient, clip_id, wrapped)
    }

    #[test]
    fn wrap_then_unwrap_returns_the_file_key() {
        let (file_key, recipient, clip_id, wrapped) = setup();
        let opened = unwrap_file_key(&wrapped, &recipient, &clip_id).unwrap();
        assert_eq!(opened.as_bytes(), file_key.as_bytes());
    }

    #[test]
    fn wrong_clip_id_or_recipient_or_bit_flip_fails() {
        let (_, recipient, clip_id, wrapped) = setup();
        let other_clip = ClipId::from_bytes([9; 32]);
        assert_eq!(
            unwrap_file_key(&wrapped, &recipient, &other_clip).map(|_| ()),
            Err(CryptoError::UnwrapFailed)
        );
        let stranger = AgreementSecret::from_bytes([8; 32]);
        assert!(unwrap_file_key(&wrapped, &stranger, &clip_id).is_err());
        for bit in 0..WRAPPED_KEY_LEN * 8 {
            let mut tampered = wrapped.clone();
            tampered.wrapped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                unwrap_file_key(&tampered, &recipient, &clip_id).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn low_order_recipient_is_refused() {
        let err = wrap_file_key(
            &FileKey::from_bytes([1; 32]),
            &AgreementPublic::from_bytes([0; 32]),
            &ClipId::from_bytes([0; 32]),
            AgreementSecret::from_bytes([2; 32]),
        );
        assert_eq!(err, Err(CryptoError::NonContributory));
    }
}
