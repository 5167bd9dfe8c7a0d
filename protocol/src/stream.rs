//! STREAM encryption of clip payloads (spec/crypto.md#stream).
//!
//! The construction is the age file format's payload encryption with Porchlight labels:
//!
//! ```text
//! payload_key = HKDF-SHA-256(ikm = file_key, salt = payload_nonce,
//!                            info = "porchlight/v1/clip-payload", L = 32)
//! nonce(i)    = i as 11-byte big-endian || (0x01 if last chunk else 0x00)
//! aad         = SHA-256(header bytes)
//! chunk(i)    = ChaCha20-Poly1305(payload_key, nonce(i), plaintext[64 KiB * i ..], aad)
//! ```
//!
//! The counter stops reordering, the last-chunk flag stops truncation at a chunk boundary,
//! the header hash as associated data stops moving a payload under another header, and the
//! AEAD tag stops tampering. The last chunk may be short, and is empty only when the whole
//! plaintext is empty, so every plaintext has exactly one ciphertext layout.
//!
//! Both directions stream: [`ClipSealer`] takes segments as the muxer produces them and
//! [`ClipOpener`] takes ciphertext as a fetch delivers it, while [`ClipCipher`] opens any one
//! chunk for random access. A streaming opener releases each chunk's plaintext as soon as
//! it authenticates; the stream as a whole is only proven complete when `finish` succeeds,
//! so callers write to a temporary place and publish only after `finish`.

use std::ops::Range;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::clip::{ClipHeader, ClipId, FileKey};
use crate::error::{CryptoError, ProtocolError};

/// HKDF `info` label of the payload key (spec/crypto.md#stream).
pub const PAYLOAD_KEY_INFO: &[u8] = b"porchlight/v1/clip-payload";
/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 65_536;
/// ChaCha20-Poly1305 tag length.
pub const TAG_SIZE: usize = 16;
/// A full chunk as it appears in the ciphertext.
pub const SEALED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_SIZE;
/// Last byte of the nonce of the final chunk.
pub const LAST_CHUNK_FLAG: u8 = 0x01;

/// The payload key and associated data of one clip: enough to seal or open any chunk.
pub struct ClipCipher {
    aead: ChaCha20Poly1305,
    aad: [u8; 32],
}

impl std::fmt::Debug for ClipCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClipCipher(<redacted>)")
    }
}

/// The nonce of chunk `index` (spec/crypto.md#chunk-nonce).
pub fn chunk_nonce(index: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = if last { LAST_CHUNK_FLAG } else { 0x00 };
    nonce
}

impl ClipCipher {
    /// Derives the payload key for the clip whose header is `header_bytes`. The header must
    /// parse: a payload is never opened under bytes that are not a valid header.
    pub fn new(file_key: &FileKey, header_bytes: &[u8]) -> Result<ClipCipher, ProtocolError> {
        let header = ClipHeader::decode(header_bytes)?;
        Ok(ClipCipher::from_parts(file_key, &header, header_bytes))
    }

    fn from_parts(file_key: &FileKey, header: &ClipHeader, header_bytes: &[u8]) -> ClipCipher {
        let mut payload_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(&header.payload_nonce), file_key.as_bytes())
            .expand(PAYLOAD_KEY_INFO, payload_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        ClipCipher {
            aead: ChaCha20Poly1305::new(Key::from_slice(payload_key.as_ref())),
            aad: Sha256::digest(header_bytes).into(),
        }
    }

    /// Seals `chunk` in place and returns its tag.
    fn seal_in_place(&self, index: u64, last: bool, chunk: &mut [u8]) -> Tag {
        self.aead
            .encrypt_in_place_detached(
                Nonce::from_slice(&chunk_nonce(index, last)),
                &self.aad,
                chunk,
            )
            .expect("a chunk of at most 64 KiB is far below ChaCha20-Poly1305's message limit")
    }

    /// Opens `body` in place, given its tag.
    fn open_in_place(
        &self,
        index: u64,
        last: bool,
        body: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        self.aead
            .decrypt_in_place_detached(
                Nonce::from_slice(&chunk_nonce(index, last)),
                &self.aad,
                body,
                Tag::from_slice(tag),
            )
            .map_err(|_| CryptoError::ChunkAuthentication { index })
    }

    /// Opens one sealed chunk for random access. `layout` says whether it is the last.
    pub fn open_chunk(
        &self,
        layout: &ChunkLayout,
        index: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let range = layout.chunk_range(index).ok_or(CryptoError::Truncated)?;
        if sealed.len() as u64 != range.end - range.start {
            return Err(CryptoError::Truncated);
        }
        let (body, tag) = sealed.split_at(sealed.len() - TAG_SIZE);
        let mut plaintext = body.to_vec();
        self.open_in_place(index, layout.is_last(index), &mut plaintext, tag)?;
        Ok(plaintext)
    }
}

/// Where each chunk sits in a ciphertext of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    ciphertext_len: u64,
    chunks: u64,
}

impl ChunkLayout {
    /// The layout of a ciphertext of `ciphertext_len` bytes, or an error if no valid
    /// STREAM output has that length.
    pub fn for_ciphertext_len(ciphertext_len: u64) -> Result<ChunkLayout, CryptoError> {
        let sealed = SEALED_CHUNK_SIZE as u64;
        if ciphertext_len < TAG_SIZE as u64 {
            return Err(CryptoError::Truncated);
        }
        let chunks = ciphertext_len.div_ceil(sealed);
        let last_len = ciphertext_len - (chunks - 1) * sealed;
        if chunks > 1 && last_len == TAG_SIZE as u64 {
            return Err(CryptoError::EmptyLastChunk);
        }
        if last_len < TAG_SIZE as u64 {
            return Err(CryptoError::Truncated);
        }
        Ok(ChunkLayout {
            ciphertext_len,
            chunks,
        })
    }

    /// The layout of the ciphertext of a `plaintext_len`-byte plaintext.
    pub fn for_plaintext_len(plaintext_len: u64) -> ChunkLayout {
        let chunks = plaintext_len.div_ceil(CHUNK_SIZE as u64).max(1);
        ChunkLayout {
            ciphertext_len: plaintext_len + chunks * TAG_SIZE as u64,
            chunks,
        }
    }

    pub fn chunk_count(&self) -> u64 {
        self.chunks
    }

    pub fn ciphertext_len(&self) -> u64 {
        self.ciphertext_len
    }

    pub fn plaintext_len(&self) -> u64 {
        self.ciphertext_len - self.chunks * TAG_SIZE as u64
    }

    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunks
    }

    /// The byte range of chunk `index` within the ciphertext.
    pub fn chunk_range(&self, index: u64) -> Option<Range<u64>> {
        if index >= self.chunks {
            return None;
        }
        let start = index * SEALED_CHUNK_SIZE as u64;
        Some(start..(start + SEALED_CHUNK_SIZE as u64).min(self.ciphertext_len))
    }
}

/// STREAM-seals a clip's payload as its plaintext arrives, without computing the clip id.
///
/// [`ClipSealer`] is this plus a [`ClipIdHasher`], on one thread. A shell with a second core
/// can run the two apart (seal here, hash the ciphertext on the other core as it is
/// written), since the id is a second full pass over the ciphertext.
#[derive(Debug)]
pub struct PayloadSealer {
    cipher: ClipCipher,
    index: u64,
    pending: Zeroizing<Vec<u8>>,
}

impl PayloadSealer {
    /// Starts sealing a payload under `header`; returns the sealer and the header bytes.
    pub fn new(
        file_key: &FileKey,
        header: &ClipHeader,
    ) -> Result<(PayloadSealer, Vec<u8>), ProtocolError> {
        let header_bytes = header.encode()?;
        let sealer = PayloadSealer {
            cipher: ClipCipher::from_parts(file_key, header, &header_bytes),
            index: 0,
            pending: Zeroizing::new(Vec::with_capacity(CHUNK_SIZE)),
        };
        Ok((sealer, header_bytes))
    }

    /// Takes more plaintext and appends every chunk that is now known not to be the last
    /// to `out`. A full chunk is held back until more input shows it is not the last.
    pub fn push(&mut self, mut plaintext: &[u8], out: &mut Vec<u8>) {
        while !plaintext.is_empty() {
            if self.pending.len() == CHUNK_SIZE {
                self.seal_pending(false, out);
            }
            // Fast path: nothing held back and more than a chunk left, so the next chunk is
            // known not to be the last. Copy it straight into `out` and seal it there.
            if self.pending.is_empty() && plaintext.len() > CHUNK_SIZE {
                let (chunk, rest) = plaintext.split_at(CHUNK_SIZE);
                let start = out.len();
                out.extend_from_slice(chunk);
                self.seal_tail(start, false, out);
                plaintext = rest;
                continue;
            }
            let take = (CHUNK_SIZE - self.pending.len()).min(plaintext.len());
            self.pending.extend_from_slice(&plaintext[..take]);
            plaintext = &plaintext[take..];
        }
    }

    /// Seals the final chunk into `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.seal_pending(true, out);
    }

    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        self.seal_tail(start, last, out);
    }

    /// Seals `out[start..]` (one chunk of plaintext) in place as chunk `self.index`.
    fn seal_tail(&mut self, start: usize, last: bool, out: &mut Vec<u8>) {
        let tag = self
            .cipher
            .seal_in_place(self.index, last, &mut out[start..]);
        out.extend_from_slice(&tag);
        self.index += 1;
    }
}

/// Computes a clip id, `SHA-256(header bytes || ciphertext)`, as the ciphertext goes by
/// (spec/crypto.md#clip-id).
#[derive(Debug, Clone)]
pub struct ClipIdHasher(Sha256);

impl ClipIdHasher {
    pub fn new(header_bytes: &[u8]) -> ClipIdHasher {
        let mut hash = Sha256::new();
        hash.update(header_bytes);
        ClipIdHasher(hash)
    }

    pub fn update(&mut self, ciphertext: &[u8]) {
        self.0.update(ciphertext);
    }

    pub fn finish(self) -> ClipId {
        ClipId::from_bytes(self.0.finalize().into())
    }
}

/// Seals a clip as its plaintext arrives, computing its id on the way.
#[derive(Debug)]
pub struct ClipSealer {
    payload: PayloadSealer,
    id: ClipIdHasher,
}

impl ClipSealer {
    /// Starts sealing a clip with `header`; returns the sealer and the header bytes, which
    /// come first in the clip file.
    pub fn new(
        file_key: &FileKey,
        header: &ClipHeader,
    ) -> Result<(ClipSealer, Vec<u8>), ProtocolError> {
        let (payload, header_bytes) = PayloadSealer::new(file_key, header)?;
        let id = ClipIdHasher::new(&header_bytes);
        Ok((ClipSealer { payload, id }, header_bytes))
    }

    /// Takes more plaintext and appends every chunk that is now known not to be the last
    /// to `out`.
    pub fn push(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        self.payload.push(plaintext, out);
        self.id.update(&out[start..]);
    }

    /// Seals the final chunk into `out` and returns the clip id.
    pub fn finish(mut self, out: &mut Vec<u8>) -> ClipId {
        let start = out.len();
        self.payload.finish(out);
        self.id.update(&out[start..]);
        self.id.finish()
    }
}

/// Opens a clip as its ciphertext arrives.
#[derive(Debug)]
pub struct ClipOpener {
    cipher: ClipCipher,
    header: ClipHeader,
    index: u64,
    /// Holds ciphertext, and briefly the plaintext of a chunk opened in place: wiped on drop.
    pending: Zeroizing<Vec<u8>>,
    /// `None` when the caller already checked the clip id (see [`open_clip`]).
    id_hash: Option<ClipIdHasher>,
    failed: bool,
}

impl ClipOpener {
    /// Starts opening the clip whose header is `header_bytes`.
    pub fn new(file_key: &FileKey, header_bytes: &[u8]) -> Result<ClipOpener, ProtocolError> {
        let header = ClipHeader::decode(header_bytes)?;
        Ok(ClipOpener {
            cipher: ClipCipher::from_parts(file_key, &header, header_bytes),
            header,
            index: 0,
            pending: Zeroizing::new(Vec::with_capacity(SEALED_CHUNK_SIZE)),
            id_hash: Some(ClipIdHasher::new(header_bytes)),
            failed: false,
        })
    }

    pub fn header(&self) -> &ClipHeader {
        &self.header
    }

    /// Takes more ciphertext and appends the plaintext of every chunk that authenticates and
    /// is known not to be the last. After any error the opener refuses further input.
    pub fn push(&mut self, mut ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.failed {
            return Err(CryptoError::StreamClosed);
        }
        while !ciphertext.is_empty() {
            if self.pending.len() == SEALED_CHUNK_SIZE {
                self.open_pending(false, out)?;
            }
            let take = (SEALED_CHUNK_SIZE - self.pending.len()).min(ciphertext.len());
            self.pending.extend_from_slice(&ciphertext[..take]);
            ciphertext = &ciphertext[take..];
        }
        Ok(())
    }

    /// Opens the final chunk and returns the id of the clip that was read.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<ClipId, CryptoError> {
        self.open_last(out)?;
        match self.id_hash {
            Some(hash) => Ok(hash.finish()),
            // Only open_clip builds an opener without the hash, and it calls finish_unhashed.
            None => Err(CryptoError::StreamClosed),
        }
    }

    fn finish_unhashed(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.open_last(out)
    }

    fn open_last(&mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.failed {
            return Err(CryptoError::StreamClosed);
        }
        if self.pending.len() < TAG_SIZE {
            return Err(CryptoError::Truncated);
        }
        if self.index > 0 && self.pending.len() == TAG_SIZE {
            return Err(CryptoError::EmptyLastChunk);
        }
        self.open_pending(true, out)
    }

    /// Like [`finish`](Self::finish), and also checks the clip is the one expected.
    pub fn finish_expecting(self, expected: &ClipId, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let id = self.finish(out)?;
        if !id.ct_eq(expected) {
            return Err(CryptoError::ClipIdMismatch);
        }
        Ok(())
    }

    fn open_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(hash) = &mut self.id_hash {
            hash.update(&self.pending);
        }
        let body_len = self.pending.len() - TAG_SIZE;
        let (body, tag) = self.pending.split_at_mut(body_len);
        if let Err(err) = self.cipher.open_in_place(self.index, last, body, tag) {
            self.failed = true;
            return Err(err);
        }
        out.extend_from_slice(body);
        self.pending.clear();
        self.index += 1;
        Ok(())
    }
}

/// A clip sealed in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedClip {
    pub header_bytes: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub clip_id: ClipId,
}

/// Seals a whole plaintext held in memory.
pub fn seal_clip(
    file_key: &FileKey,
    header: &ClipHeader,
    plaintext: &[u8],
) -> Result<SealedClip, ProtocolError> {
    let (mut sealer, header_bytes) = ClipSealer::new(file_key, header)?;
    let layout = ChunkLayout::for_plaintext_len(plaintext.len() as u64);
    let mut ciphertext = Vec::with_capacity(usize::try_from(layout.ciphertext_len()).unwrap_or(0));
    sealer.push(plaintext, &mut ciphertext);
    let clip_id = sealer.finish(&mut ciphertext);
    Ok(SealedClip {
        header_bytes,
        ciphertext,
        clip_id,
    })
}

/// Opens a whole clip held in memory. The clip id is checked *before* any chunk is opened,
/// so a clip that is not the one named never yields a byte of plaintext.
pub fn open_clip(
    file_key: &FileKey,
    header_bytes: &[u8],
    ciphertext: &[u8],
    expected: &ClipId,
) -> Result<Vec<u8>, ProtocolError> {
    if !ClipId::of(header_bytes, ciphertext).ct_eq(expected) {
        return Err(CryptoError::ClipIdMismatch.into());
    }
    let mut opener = ClipOpener::new(file_key, header_bytes)?;
    // The id was just checked over these exact bytes; hashing them again would double the
    // cost of opening for nothing.
    opener.id_hash = None;
    let mut plaintext = Vec::with_capacity(ciphertext.len());
    opener.push(ciphertext, &mut plaintext)?;
    opener.finish_unhashed(&mut plaintext)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::MEDIA_TYPE_MP4;
    use crate::time::Timestamp;

    fn header() -> ClipHeader {
        ClipHeader {
            camera: "porch".into(),
            media_type: MEDIA_TYPE_MP4.into(),
            start: Timestamp::from_unix_millis(0),
            end: Timestamp::from_unix_millis(60_000),
            payload_nonce: [1; 16],
        }
    }

    fn key() -> FileKey {
        FileKey::from_bytes([2; 32])
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn nonce_layout_matches_spec() {
        assert_eq!(chunk_nonce(0, false), [0; 12]);
        assert_eq!(chunk_nonce(1, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(chunk_nonce(0x0102, false)[9..], [1, 2, 0]);
    }

    #[test]
    fn chunk_boundaries_round_trip() {
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            2 * CHUNK_SIZE,
            3 * CHUNK_SIZE + 5,
        ] {
            let data = plaintext(len);
            let sealed = seal_clip(&key(), &header(), &data).unwrap();
            let layout = ChunkLayout::for_plaintext_len(len as u64);
            assert_eq!(
                sealed.ciphertext.len() as u64,
                layout.ciphertext_len(),
                "len {len}"
            );
            assert_eq!(
                ChunkLayout::for_ciphertext_len(layout.ciphertext_len()).unwrap(),
                layout
            );
            let opened = open_clip(
                &key(),
                &sealed.header_bytes,
                &sealed.ciphertext,
                &sealed.clip_id,
            )
            .unwrap();
            assert_eq!(opened, data, "len {len}");
            assert_eq!(
                sealed.clip_id,
                ClipId::of(&sealed.header_bytes, &sealed.ciphertext)
            );
        }
    }

    #[test]
    fn streaming_in_odd_pieces_matches_one_shot() {
        let data = plaintext(3 * CHUNK_SIZE + 77);
        let one_shot = seal_clip(&key(), &header(), &data).unwrap();
        let (mut sealer, header_bytes) = ClipSealer::new(&key(), &header()).unwrap();
        let mut ciphertext = Vec::new();
        for piece in data.chunks(10_007) {
            sealer.push(piece, &mut ciphertext);
        }
        let id = sealer.finish(&mut ciphertext);
        assert_eq!(
            (header_bytes.clone(), ciphertext.clone(), id),
            (one_shot.header_bytes, one_shot.ciphertext, one_shot.clip_id)
        );

        let mut opener = ClipOpener::new(&key(), &header_bytes).unwrap();
        let mut out = Vec::new();
        for piece in ciphertext.chunks(4_099) {
            opener.push(piece, &mut out).unwrap();
        }
        opener.finish_expecting(&id, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn payload_sealer_and_id_hasher_compose_to_clip_sealer() {
        let data = plaintext(2 * CHUNK_SIZE + 3);
        let whole = seal_clip(&key(), &header(), &data).unwrap();
        let (mut payload, header_bytes) = PayloadSealer::new(&key(), &header()).unwrap();
        let mut ciphertext = Vec::new();
        payload.push(&data, &mut ciphertext);
        payload.finish(&mut ciphertext);
        let mut id = ClipIdHasher::new(&header_bytes);
        for piece in ciphertext.chunks(777) {
            id.update(piece);
        }
        assert_eq!((ciphertext, id.finish()), (whole.ciphertext, whole.clip_id));
    }

    #[test]
    fn random_access_opens_any_chunk() {
        let data = plaintext(2 * CHUNK_SIZE + 10);
        let sealed = seal_clip(&key(), &header(), &data).unwrap();
        let layout = ChunkLayout::for_ciphertext_len(sealed.ciphertext.len() as u64).unwrap();
        let cipher = ClipCipher::new(&key(), &sealed.header_bytes).unwrap();
        for index in (0..layout.chunk_count()).rev() {
            let range = layout.chunk_range(index).unwrap();
            let chunk = &sealed.ciphertext[range.start as usize..range.end as usize];
            let opened = cipher.open_chunk(&layout, index, chunk).unwrap();
            let start = index as usize * CHUNK_SIZE;
            assert_eq!(opened, data[start..start + opened.len()]);
        }
        assert_eq!(layout.chunk_range(3), None);
    }

    #[test]
    fn truncation_reordering_and_wrong_header_are_detected() {
        let data = plaintext(2 * CHUNK_SIZE + 10);
        let sealed = seal_clip(&key(), &header(), &data).unwrap();
        let open = |header_bytes: &[u8], ct: &[u8]| {
            let mut opener = ClipOpener::new(&key(), header_bytes)?;
            let mut out = Vec::new();
            opener.push(ct, &mut out)?;
            opener.finish(&mut out)?;
            Ok::<_, ProtocolError>(out)
        };
        // Dropping the final chunk leaves a non-last chunk at the end.
        let cut = 2 * SEALED_CHUNK_SIZE;
        assert!(matches!(
            open(&sealed.header_bytes, &sealed.ciphertext[..cut]),
            Err(ProtocolError::Crypto(CryptoError::ChunkAuthentication {
                index: 1
            }))
        ));
        // Cutting inside a tag.
        assert!(open(&sealed.header_bytes, &sealed.ciphertext[..5]).is_err());
        assert!(open(&sealed.header_bytes, &[]).is_err());
        // Swapping the two full chunks.
        let mut swapped = sealed.ciphertext.clone();
        swapped[..SEALED_CHUNK_SIZE].copy_from_slice(&sealed.ciphertext[SEALED_CHUNK_SIZE..cut]);
        swapped[SEALED_CHUNK_SIZE..cut].copy_from_slice(&sealed.ciphertext[..SEALED_CHUNK_SIZE]);
        assert!(matches!(
            open(&sealed.header_bytes, &swapped),
            Err(ProtocolError::Crypto(CryptoError::ChunkAuthentication {
                index: 0
            }))
        ));
        // The same payload under another (valid) header.
        let mut other = header();
        other.camera = "garage".into();
        assert!(open(&other.encode().unwrap(), &sealed.ciphertext).is_err());
        // Appending an empty final chunk (even a correctly sealed one) is not canonical.
        assert_eq!(
            ChunkLayout::for_ciphertext_len((2 * SEALED_CHUNK_SIZE + TAG_SIZE) as u64),
            Err(CryptoError::EmptyLastChunk)
        );
    }

    #[test]
    fn opener_refuses_input_after_failure() {
        let sealed = seal_clip(&key(), &header(), &plaintext(3 * CHUNK_SIZE)).unwrap();
        let mut ct = sealed.ciphertext.clone();
        ct[10] ^= 1;
        let mut opener = ClipOpener::new(&key(), &sealed.header_bytes).unwrap();
        let mut out = Vec::new();
        assert!(opener.push(&ct, &mut out).is_err());
        assert!(out.is_empty(), "no plaintext from a chunk that failed");
        assert_eq!(opener.push(&ct, &mut out), Err(CryptoError::StreamClosed));
    }

    #[test]
    fn open_clip_checks_clip_id_first() {
        let sealed = seal_clip(&key(), &header(), &plaintext(100)).unwrap();
        let wrong = ClipId::from_bytes([0; 32]);
        assert_eq!(
            open_clip(&key(), &sealed.header_bytes, &sealed.ciphertext, &wrong),
            Err(ProtocolError::Crypto(CryptoError::ClipIdMismatch))
        );
    }
}
