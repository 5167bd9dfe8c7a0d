//! Clips: the header, the clip id and the file key (spec/wire.md#clip-header,
//! spec/crypto.md#clip-id).
//!
//! A clip on disk or on the wire is `header bytes || ciphertext`, where the ciphertext is the
//! STREAM encryption of the MP4 (see [`crate::stream`]). The header is self-delimiting, so a
//! clip file can be read back without any index: that is what lets the store rebuild its
//! index from the files after a crash. The clip id is the SHA-256 of both parts, so it names
//! one exact ciphertext; consent tokens list clip ids.

use std::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec;
use crate::error::{DecodeError, ProtocolError, ValidationError};
use crate::time::Timestamp;
use crate::validate::check_text;

/// The first eight bytes of every clip header (spec/wire.md#clip-header).
pub const CLIP_MAGIC: [u8; 8] = *b"PLCLIPv1";
/// Largest encoded header accepted.
pub const MAX_HEADER_LEN: usize = 1024;
/// Longest camera name, in UTF-8 bytes.
pub const MAX_CAMERA_NAME_LEN: usize = 64;
/// Longest media type, in UTF-8 bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 64;
/// Length of the payload nonce (the HKDF salt of the payload key).
pub const PAYLOAD_NONCE_LEN: usize = 16;

/// The media type of a recorded clip.
pub const MEDIA_TYPE_MP4: &str = "video/mp4";

/// What a clip is: which camera, when, in what format, and the payload nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipHeader {
    pub camera: String,
    pub media_type: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub payload_nonce: [u8; PAYLOAD_NONCE_LEN],
}

/// The header's wire form: the same fields behind the magic bytes.
#[derive(Serialize, Deserialize)]
struct ClipHeaderWire {
    #[serde(with = "codec::fixed")]
    magic: [u8; 8],
    camera: String,
    media_type: String,
    start: Timestamp,
    end: Timestamp,
    #[serde(with = "codec::fixed")]
    payload_nonce: [u8; PAYLOAD_NONCE_LEN],
}

impl ClipHeader {
    /// A header with a fresh random payload nonce.
    pub fn new(
        camera: impl Into<String>,
        media_type: impl Into<String>,
        start: Timestamp,
        end: Timestamp,
        rng: &mut impl CryptoRngCore,
    ) -> ClipHeader {
        let mut payload_nonce = [0u8; PAYLOAD_NONCE_LEN];
        rng.fill_bytes(&mut payload_nonce);
        ClipHeader {
            camera: camera.into(),
            media_type: media_type.into(),
            start,
            end,
            payload_nonce,
        }
    }

    /// Checks the header's rules: a named camera, a media type, `start <= end`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_text("camera name", &self.camera, MAX_CAMERA_NAME_LEN, false)?;
        check_text("media type", &self.media_type, MAX_MEDIA_TYPE_LEN, false)?;
        if self.end < self.start {
            return Err(ValidationError::EmptyWindow);
        }
        Ok(())
    }

    /// The header's canonical bytes, after checking it.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        self.validate()?;
        let bytes = codec::encode(&ClipHeaderWire {
            magic: CLIP_MAGIC,
            camera: self.camera.clone(),
            media_type: self.media_type.clone(),
            start: self.start,
            end: self.end,
            payload_nonce: self.payload_nonce,
        });
        if bytes.len() > MAX_HEADER_LEN {
            return Err(DecodeError::TooLarge {
                what: "clip header",
                len: bytes.len(),
                max: MAX_HEADER_LEN,
            }
            .into());
        }
        Ok(bytes)
    }

    /// Parses exactly one header.
    pub fn decode(bytes: &[u8]) -> Result<ClipHeader, ProtocolError> {
        let (header, used) = ClipHeader::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                what: "clip header",
                extra: bytes.len() - used,
            }
            .into());
        }
        Ok(header)
    }

    /// Parses the header at the front of a clip file and returns it with its length.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(ClipHeader, usize), ProtocolError> {
        // The magic is checked first so a file that is not a clip gets a clear error.
        if !bytes.starts_with(&CLIP_MAGIC) {
            return Err(DecodeError::Malformed {
                what: "clip header (bad magic)",
            }
            .into());
        }
        let (wire, used) =
            codec::decode_prefix::<ClipHeaderWire>(bytes, MAX_HEADER_LEN, "clip header")?;
        let header = ClipHeader {
            camera: wire.camera,
            media_type: wire.media_type,
            start: wire.start,
            end: wire.end,
            payload_nonce: wire.payload_nonce,
        };
        header.validate()?;
        Ok((header, used))
    }
}

/// A clip's name: `SHA-256(header bytes || ciphertext)` (spec/crypto.md#clip-id).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClipId(#[serde(with = "codec::fixed")] [u8; 32]);

impl ClipId {
    pub const fn from_bytes(bytes: [u8; 32]) -> ClipId {
        ClipId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Computes the id of a whole clip held in memory.
    pub fn of(header_bytes: &[u8], ciphertext: &[u8]) -> ClipId {
        let mut hash = Sha256::new();
        hash.update(header_bytes);
        hash.update(ciphertext);
        ClipId(hash.finalize().into())
    }

    /// Compares in constant time. Clip ids are not secret, but a check that gates release
    /// of footage should not leak how many bytes matched.
    pub fn ct_eq(&self, other: &ClipId) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

crate::codec::hex_id_text!(ClipId, 32, "clip id");

/// A clip's 32-byte file key: random per clip, never stored unwrapped. Zeroized on drop;
/// `Debug` never prints it.
pub struct FileKey(Zeroizing<[u8; 32]>);

impl FileKey {
    pub fn generate(rng: &mut impl CryptoRngCore) -> FileKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        FileKey(key)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> FileKey {
        FileKey(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ClipHeader {
        ClipHeader {
            camera: "porch".into(),
            media_type: MEDIA_TYPE_MP4.into(),
            start: Timestamp::from_unix_millis(1_000),
            end: Timestamp::from_unix_millis(61_000),
            payload_nonce: [7; 16],
        }
    }

    #[test]
    fn header_round_trips_and_is_self_delimiting() {
        let bytes = header().encode().unwrap();
        assert!(bytes.starts_with(&CLIP_MAGIC));
        assert_eq!(ClipHeader::decode(&bytes).unwrap(), header());
        let mut file = bytes.clone();
        file.extend_from_slice(b"ciphertext follows");
        assert_eq!(
            ClipHeader::decode_prefix(&file).unwrap(),
            (header(), bytes.len())
        );
    }

    #[test]
    fn header_rules_are_enforced_both_ways() {
        let mut h = header();
        h.camera = String::new();
        assert!(h.encode().is_err());
        let mut h = header();
        h.camera = "x".repeat(MAX_CAMERA_NAME_LEN + 1);
        assert!(h.encode().is_err());
        let mut h = header();
        h.camera = "bad\u{1b}[2J".into();
        assert!(h.encode().is_err());
        let mut h = header();
        h.end = Timestamp::EPOCH;
        assert!(h.encode().is_err());
        // Bytes that bypass `encode` are checked on decode too.
        let mut bytes = header().encode().unwrap();
        bytes[0] = b'X';
        assert!(ClipHeader::decode(&bytes).is_err());
    }

    #[test]
    fn a_corrupt_header_in_a_large_file_is_malformed_not_too_large() {
        let mut file = header().encode().unwrap();
        // A length prefix that is impossible, then a megabyte of ciphertext.
        file[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        file.extend(std::iter::repeat_n(0xa5, 1 << 20));
        assert_eq!(
            ClipHeader::decode_prefix(&file).unwrap_err(),
            ProtocolError::Decode(DecodeError::Malformed {
                what: "clip header"
            })
        );
    }

    #[test]
    fn clip_id_text_round_trips() {
        let id = ClipId::of(b"h", b"c");
        assert_eq!(id.to_string().parse::<ClipId>().unwrap(), id);
        assert!("zz".parse::<ClipId>().is_err());
        assert!(id.ct_eq(&id) && !id.ct_eq(&ClipId::of(b"h", b"d")));
    }

    #[test]
    fn file_key_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", FileKey::from_bytes([1; 32])),
            "FileKey(<redacted>)"
        );
    }
}
