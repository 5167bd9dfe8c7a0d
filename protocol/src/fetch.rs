//! The fetch stream's messages and framing (spec/wire.md#fetch-stream).
//!
//! A grantee fetches one clip per stream of the `/porchlight/fetch/1` protocol:
//!
//! ```text
//! requester -> owner   frame(FetchRequest)                  token, clip id, from_chunk
//! owner -> requester   frame(FetchReply)                    Accepted { header, wrapped key, lengths } | Rejected(code)
//! owner -> requester   frame(chunk from_chunk) ... frame(chunk n - 1), then the owner closes
//!                      or, when the token expires or is revoked mid-stream, between chunks:
//! owner -> requester   END_OF_CHUNKS || frame(FetchReply::Rejected(code)), then the owner closes
//! frame                = length: u32 big-endian || that many bytes
//! ```
//!
//! This module owns the bytes: the two messages in the canonical encoding, their limits, and
//! the frame prefix. It does not do the I/O (the node's `fetch` module reads and writes
//! frames on whatever stream the transport gives it) and it does not decide whether a fetch
//! may be served (the node core checks the token). The reply always carries the whole clip
//! header, the file key wrapped to the token's `grantee_key` and the ciphertext length, even
//! when a fetch resumes: the requester re-verifies what it already holds against them, so
//! resuming trusts nothing that was not authenticated on this stream.

use serde::{Deserialize, Serialize};

use crate::clip::{ClipHeader, ClipId, MAX_HEADER_LEN};
use crate::codec;
use crate::envelope::ENVELOPE_OVERHEAD;
use crate::error::{DecodeError, ProtocolError, RejectCode};
use crate::stream::{ChunkLayout, SEALED_CHUNK_SIZE};
use crate::token::MAX_TOKEN_BODY_LEN;
use crate::wrap::{WRAPPED_KEY_LEN, WrappedFileKey};

/// The stream protocol's name, as the transport negotiates it.
pub const FETCH_PROTOCOL: &str = "/porchlight/fetch/1";
/// Length of a frame's length prefix.
pub const FRAME_PREFIX_LEN: usize = 4;
/// Largest consent-token envelope a request may carry.
pub const MAX_FETCH_TOKEN_LEN: usize = MAX_TOKEN_BODY_LEN + ENVELOPE_OVERHEAD;
/// Largest encoded [`FetchRequest`]: the token's length prefix and bytes, the clip id and
/// `from_chunk`.
pub const MAX_FETCH_REQUEST_LEN: usize = 8 + MAX_FETCH_TOKEN_LEN + 32 + 8;
/// Largest encoded [`FetchReply`]: the variant index, the header's length prefix and bytes,
/// the wrapped key, `chunk_count` and `ciphertext_len`.
pub const MAX_FETCH_REPLY_LEN: usize = 4 + 8 + MAX_HEADER_LEN + 32 + WRAPPED_KEY_LEN + 8 + 8;
/// Largest chunk frame: one sealed STREAM chunk (64 KiB and its tag).
pub const MAX_CHUNK_FRAME_LEN: usize = SEALED_CHUNK_SIZE;
/// The end frame: a zero length where a chunk frame is due (a sealed chunk is never empty,
/// it holds at least its tag). A `Rejected` reply frame follows it (spec/wire.md#fetch-end).
pub const END_OF_CHUNKS: [u8; FRAME_PREFIX_LEN] = [0; FRAME_PREFIX_LEN];

/// What a grantee asks for: one clip under one token, from a chunk index on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The complete signed consent-token envelope, as the owner's node issued it.
    #[serde(with = "codec::bytes")]
    pub token: Vec<u8>,
    pub clip_id: ClipId,
    /// The first chunk wanted: 0 for a new fetch, the count of chunks already held to resume.
    pub from_chunk: u64,
}

impl FetchRequest {
    /// The request's canonical bytes. Refuses a token larger than any valid token envelope.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        check_token_len(self.token.len())?;
        Ok(codec::encode(self))
    }

    /// Parses exactly one request of at most [`MAX_FETCH_REQUEST_LEN`] bytes. The token is
    /// only size-checked here; verifying it is the owner's node's job.
    pub fn decode(bytes: &[u8]) -> Result<FetchRequest, ProtocolError> {
        let request: FetchRequest = codec::decode(bytes, MAX_FETCH_REQUEST_LEN, "fetch request")?;
        check_token_len(request.token.len())?;
        Ok(request)
    }
}

fn check_token_len(len: usize) -> Result<(), DecodeError> {
    if len > MAX_FETCH_TOKEN_LEN {
        return Err(DecodeError::TooLarge {
            what: "fetch request token",
            len,
            max: MAX_FETCH_TOKEN_LEN,
        });
    }
    Ok(())
}

/// The owner's answer to a [`FetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchReply {
    /// The fetch is granted; chunk frames follow.
    Accepted(FetchAccepted),
    /// The fetch is refused, with the coarse code of spec/wire.md#reject-codes.
    Rejected(RejectCode),
}

/// What a granted fetch starts with. Checked on decode: the header parses, the ciphertext
/// length is one STREAM can produce, and `chunk_count` agrees with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAccepted {
    /// The clip header bytes, exactly as sealed.
    pub header: Vec<u8>,
    /// The clip's file key wrapped to the token's `grantee_key`, bound to the clip id.
    pub wrapped_key: WrappedFileKey,
    pub chunk_count: u64,
    pub ciphertext_len: u64,
}

impl FetchAccepted {
    /// Builds the reply for a clip with `header` bytes and a ciphertext laid out as `layout`.
    pub fn new(header: Vec<u8>, wrapped_key: WrappedFileKey, layout: ChunkLayout) -> Self {
        FetchAccepted {
            header,
            wrapped_key,
            chunk_count: layout.chunk_count(),
            ciphertext_len: layout.ciphertext_len(),
        }
    }

    /// Where each chunk sits, from `ciphertext_len` (checked on decode).
    pub fn layout(&self) -> Result<ChunkLayout, ProtocolError> {
        let layout = ChunkLayout::for_ciphertext_len(self.ciphertext_len)?;
        if layout.chunk_count() != self.chunk_count {
            return Err(DecodeError::Malformed {
                what: "fetch reply (chunk count does not match the ciphertext length)",
            }
            .into());
        }
        Ok(layout)
    }

    fn check(&self) -> Result<(), ProtocolError> {
        ClipHeader::decode(&self.header)?;
        self.layout().map(|_| ())
    }
}

/// The reply's wire form: the reject code travels as its byte, so that an unknown code from
/// a newer peer decodes (as `Malformed`, spec/wire.md#reject-codes) instead of failing.
#[derive(Serialize, Deserialize)]
enum FetchReplyWire {
    Accepted {
        #[serde(with = "codec::bytes")]
        header: Vec<u8>,
        wrapped_key: WrappedFileKey,
        chunk_count: u64,
        ciphertext_len: u64,
    },
    Rejected {
        code: u8,
    },
}

impl FetchReply {
    /// The reply's canonical bytes. Refuses an `Accepted` whose header does not parse or
    /// whose lengths disagree: a node never sends what it would refuse to accept.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let wire = match self {
            FetchReply::Accepted(accepted) => {
                accepted.check()?;
                FetchReplyWire::Accepted {
                    header: accepted.header.clone(),
                    wrapped_key: accepted.wrapped_key.clone(),
                    chunk_count: accepted.chunk_count,
                    ciphertext_len: accepted.ciphertext_len,
                }
            }
            FetchReply::Rejected(code) => FetchReplyWire::Rejected {
                code: code.to_byte(),
            },
        };
        Ok(codec::encode(&wire))
    }

    /// Parses exactly one reply of at most [`MAX_FETCH_REPLY_LEN`] bytes and checks an
    /// `Accepted` one (header, lengths) before returning it.
    pub fn decode(bytes: &[u8]) -> Result<FetchReply, ProtocolError> {
        match codec::decode::<FetchReplyWire>(bytes, MAX_FETCH_REPLY_LEN, "fetch reply")? {
            FetchReplyWire::Accepted {
                header,
                wrapped_key,
                chunk_count,
                ciphertext_len,
            } => {
                let accepted = FetchAccepted {
                    header,
                    wrapped_key,
                    chunk_count,
                    ciphertext_len,
                };
                accepted.check()?;
                Ok(FetchReply::Accepted(accepted))
            }
            FetchReplyWire::Rejected { code } => {
                Ok(FetchReply::Rejected(RejectCode::from_byte(code)))
            }
        }
    }
}

/// The 4-byte prefix of a frame of `len` bytes. `None` if `len` does not fit in a `u32`
/// (far beyond every limit of this protocol).
pub fn frame_prefix(len: usize) -> Option<[u8; FRAME_PREFIX_LEN]> {
    u32::try_from(len).ok().map(u32::to_be_bytes)
}

/// The length a frame prefix announces, refused if it exceeds `max` so that a reader never
/// allocates or reads more than the frame it expects.
pub fn frame_len(
    prefix: [u8; FRAME_PREFIX_LEN],
    max: usize,
    what: &'static str,
) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(DecodeError::TooLarge {
            what,
            len: usize::try_from(len).unwrap_or(usize::MAX),
            max,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::AgreementPublic;
    use crate::clip::MEDIA_TYPE_MP4;
    use crate::error::CryptoError;
    use crate::stream::TAG_SIZE;
    use crate::time::Timestamp;

    fn header_bytes() -> Vec<u8> {
        // The example header of spec/wire.md#clip-header.
        ClipHeader {
            camera: "porch".into(),
            media_type: MEDIA_TYPE_MP4.into(),
            start: Timestamp::from_unix_millis(1_795_953_600_000),
            end: Timestamp::from_unix_millis(1_795_953_660_000),
            payload_nonce: [7; 16],
        }
        .encode()
        .unwrap()
    }

    fn wrapped_key() -> WrappedFileKey {
        WrappedFileKey {
            ephemeral_public: AgreementPublic::from_bytes([0xee; 32]),
            wrapped: [0xaa; WRAPPED_KEY_LEN],
        }
    }

    fn request() -> FetchRequest {
        FetchRequest {
            token: vec![0x01, 0x03, 0xab],
            clip_id: ClipId::from_bytes([0xcc; 32]),
            from_chunk: 2,
        }
    }

    fn accepted() -> FetchAccepted {
        // 1 MiB of media: 16 chunks (spec/wire.md#clip-file example).
        FetchAccepted::new(
            header_bytes(),
            wrapped_key(),
            ChunkLayout::for_plaintext_len(1 << 20),
        )
    }

    #[test]
    fn request_layout_matches_the_spec_example() {
        // spec/wire.md#fetch-stream, example request.
        let mut expected = vec![3, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x03, 0xab];
        expected.extend([0xcc; 32]);
        expected.extend([2, 0, 0, 0, 0, 0, 0, 0]);
        let bytes = request().encode().unwrap();
        assert_eq!(bytes, expected);
        assert_eq!(FetchRequest::decode(&bytes).unwrap(), request());
    }

    #[test]
    fn reply_layouts_match_the_spec_examples() {
        let bytes = FetchReply::Accepted(accepted()).encode().unwrap();
        let mut expected = vec![0, 0, 0, 0, 70, 0, 0, 0, 0, 0, 0, 0];
        expected.extend(header_bytes());
        expected.extend([0xee; 32]);
        expected.extend([0xaa; 48]);
        expected.extend(16u64.to_le_bytes());
        expected.extend(1_048_832u64.to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 178);
        assert_eq!(
            FetchReply::decode(&bytes).unwrap(),
            FetchReply::Accepted(accepted())
        );

        let rejected = FetchReply::Rejected(RejectCode::Invalid).encode().unwrap();
        assert_eq!(rejected, [1, 0, 0, 0, 5]);
        assert_eq!(
            FetchReply::decode(&rejected).unwrap(),
            FetchReply::Rejected(RejectCode::Invalid)
        );
    }

    #[test]
    fn limits_are_the_largest_valid_messages() {
        let largest = FetchRequest {
            token: vec![0; MAX_FETCH_TOKEN_LEN],
            ..request()
        };
        assert_eq!(largest.encode().unwrap().len(), MAX_FETCH_REQUEST_LEN);
        assert_eq!(MAX_FETCH_REQUEST_LEN, 16_506);
        assert_eq!(MAX_FETCH_REPLY_LEN, 1_132);
        assert_eq!(MAX_CHUNK_FRAME_LEN, 65_552);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = request().encode().unwrap();
        bytes.push(0);
        assert_eq!(
            FetchRequest::decode(&bytes),
            Err(DecodeError::TrailingBytes {
                what: "fetch request",
                extra: 1
            }
            .into())
        );
        let mut bytes = FetchReply::Accepted(accepted()).encode().unwrap();
        bytes.push(0);
        assert!(matches!(
            FetchReply::decode(&bytes),
            Err(ProtocolError::Decode(DecodeError::TrailingBytes { .. }))
        ));
    }

    #[test]
    fn oversized_messages_are_refused_both_ways() {
        let too_big = FetchRequest {
            token: vec![0; MAX_FETCH_TOKEN_LEN + 1],
            ..request()
        };
        assert!(matches!(
            too_big.encode(),
            Err(ProtocolError::Decode(DecodeError::TooLarge { .. }))
        ));
        // The same bytes, built by hand, are refused on decode before parsing.
        let bytes = codec::encode(&too_big);
        assert!(matches!(
            FetchRequest::decode(&bytes),
            Err(ProtocolError::Decode(DecodeError::TooLarge { .. }))
        ));
        let reply = vec![0u8; MAX_FETCH_REPLY_LEN + 1];
        assert!(matches!(
            FetchReply::decode(&reply),
            Err(ProtocolError::Decode(DecodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn unknown_variant_and_truncation_are_malformed() {
        let mut bytes = FetchReply::Rejected(RejectCode::Invalid).encode().unwrap();
        bytes[0] = 2;
        assert_eq!(
            FetchReply::decode(&bytes),
            Err(DecodeError::Malformed {
                what: "fetch reply"
            }
            .into())
        );
        let bytes = request().encode().unwrap();
        assert!(FetchRequest::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(FetchRequest::decode(&[]).is_err());
        assert!(FetchReply::decode(&[]).is_err());
    }

    #[test]
    fn an_unknown_reject_code_reads_as_malformed() {
        assert_eq!(
            FetchReply::decode(&[1, 0, 0, 0, 0xee]).unwrap(),
            FetchReply::Rejected(RejectCode::Malformed)
        );
    }

    #[test]
    fn an_accepted_reply_must_be_consistent() {
        let mut bad = accepted();
        bad.chunk_count += 1;
        assert!(FetchReply::Accepted(bad.clone()).encode().is_err());
        let bytes = codec::encode(&FetchReplyWire::Accepted {
            header: bad.header.clone(),
            wrapped_key: bad.wrapped_key.clone(),
            chunk_count: bad.chunk_count,
            ciphertext_len: bad.ciphertext_len,
        });
        assert!(matches!(
            FetchReply::decode(&bytes),
            Err(ProtocolError::Decode(DecodeError::Malformed { .. }))
        ));
        // A length no STREAM output has.
        let mut bad = accepted();
        bad.ciphertext_len = (TAG_SIZE - 1) as u64;
        assert_eq!(
            FetchReply::Accepted(bad).encode(),
            Err(CryptoError::Truncated.into())
        );
        // A header that does not parse.
        let mut bad = accepted();
        bad.header[0] ^= 1;
        assert!(FetchReply::Accepted(bad).encode().is_err());
    }

    #[test]
    fn frames_announce_their_length_big_endian_and_are_capped() {
        assert_eq!(frame_prefix(0x0102), Some([0, 0, 1, 2]));
        assert_eq!(
            frame_len([0, 1, 0, 0x10], MAX_CHUNK_FRAME_LEN, "chunk"),
            Ok(65_552)
        );
        assert_eq!(
            frame_len([0, 1, 0, 0x11], MAX_CHUNK_FRAME_LEN, "chunk"),
            Err(DecodeError::TooLarge {
                what: "chunk",
                len: 65_553,
                max: 65_552
            })
        );
        assert!(frame_len([0xff; 4], MAX_FETCH_REQUEST_LEN, "request").is_err());
    }
}
