//! Property tests: any single-bit change to a clip header, chunk body, tag, token or
//! signature is rejected, and no byte string makes a parser panic (fetch messages included).

mod common;

use common::*;
use porchlight_protocol::stream::{SEALED_CHUNK_SIZE, TAG_SIZE};
use porchlight_protocol::{
    AuthorityCredential, ClipHeader, ClipOpener, ConsentToken, FetchReply, FetchRequest, FileKey,
    FootageRequest, OwnerDecision, ProtocolError, Revocation, Signed, Timestamp, seal_clip,
};
use proptest::prelude::*;

fn header() -> ClipHeader {
    ClipHeader {
        camera: "front-door".into(),
        media_type: "video/mp4".into(),
        start: NOW,
        end: at(60_000),
        payload_nonce: [9; 16],
    }
}

/// Opens with the streaming opener, which does not know the clip id: only the
/// cryptography can catch the change.
fn open_streaming(
    key: &FileKey,
    header_bytes: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, ProtocolError> {
    let mut opener = ClipOpener::new(key, header_bytes)?;
    let mut out = Vec::new();
    opener.push(ciphertext, &mut out)?;
    opener.finish(&mut out)?;
    Ok(out)
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_header_bit_flip_is_rejected(len in 0usize..140_000, seed: u8, bit in any::<prop::sample::Index>()) {
        let key = FileKey::from_bytes([seed; 32]);
        let sealed = seal_clip(&key, &header(), &plaintext(len, seed)).unwrap();
        let mut tampered = sealed.header_bytes.clone();
        let bit = bit.index(tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(open_streaming(&key, &tampered, &sealed.ciphertext).is_err());
    }

    #[test]
    fn any_ciphertext_bit_flip_is_rejected(len in 0usize..140_000, seed: u8, bit in any::<prop::sample::Index>()) {
        let key = FileKey::from_bytes([seed; 32]);
        let sealed = seal_clip(&key, &header(), &plaintext(len, seed)).unwrap();
        let mut tampered = sealed.ciphertext.clone();
        let bit = bit.index(tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(open_streaming(&key, &sealed.header_bytes, &tampered).is_err());
    }

    #[test]
    fn any_tag_bit_flip_is_rejected(len in 1usize..140_000, seed: u8, chunk in any::<prop::sample::Index>(), bit in 0usize..TAG_SIZE * 8) {
        let key = FileKey::from_bytes([seed; 32]);
        let sealed = seal_clip(&key, &header(), &plaintext(len, seed)).unwrap();
        let chunks = sealed.ciphertext.len().div_ceil(SEALED_CHUNK_SIZE);
        let chunk = chunk.index(chunks);
        let chunk_end = ((chunk + 1) * SEALED_CHUNK_SIZE).min(sealed.ciphertext.len());
        let mut tampered = sealed.ciphertext.clone();
        tampered[chunk_end - TAG_SIZE + bit / 8] ^= 1 << (bit % 8);
        prop_assert!(open_streaming(&key, &sealed.header_bytes, &tampered).is_err());
    }

    #[test]
    fn any_token_bit_flip_is_rejected(bit in any::<prop::sample::Index>()) {
        let mut bytes = token().to_bytes();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Signed::<ConsentToken>::verify(&bytes, NOW).is_err());
    }

    #[test]
    fn any_signature_bit_flip_is_rejected(bit in 0usize..512) {
        for mut bytes in [request().to_bytes(), token().to_bytes(), credential().to_bytes()] {
            let start = bytes.len() - 64;
            bytes[start + bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Signed::<FootageRequest>::verify(&bytes, NOW).is_err());
            prop_assert!(Signed::<ConsentToken>::verify(&bytes, NOW).is_err());
            prop_assert!(Signed::<AuthorityCredential>::verify(&bytes, NOW).is_err());
        }
    }

    #[test]
    fn any_request_bit_flip_is_rejected(bit in any::<prop::sample::Index>()) {
        let mut bytes = request().to_bytes();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Signed::<FootageRequest>::verify(&bytes, NOW).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), now: u64) {
        let now = Timestamp::from_unix_millis(now);
        let _ = Signed::<FootageRequest>::verify(&bytes, now);
        let _ = Signed::<ConsentToken>::verify(&bytes, now);
        let _ = Signed::<OwnerDecision>::verify(&bytes, now);
        let _ = Signed::<Revocation>::verify(&bytes, now);
        let _ = Signed::<AuthorityCredential>::verify(&bytes, now);
        let _ = ClipHeader::decode(&bytes);
        let _ = FetchRequest::decode(&bytes);
        let _ = FetchReply::decode(&bytes);
        let key = FileKey::from_bytes([1; 32]);
        let header_bytes = header().encode().unwrap();
        prop_assert!(open_streaming(&key, &header_bytes, &bytes).is_err());
    }

    #[test]
    fn mutated_valid_envelopes_never_panic(cut in any::<prop::sample::Index>(), junk in prop::collection::vec(any::<u8>(), 0..64)) {
        // Truncate a real envelope and splice junk on: deep inside the parser, not just at
        // its first byte.
        let grant = Signed::sign(grant_body(), &owner()).unwrap().to_bytes();
        let mut bytes = grant[..cut.index(grant.len())].to_vec();
        bytes.extend_from_slice(&junk);
        prop_assert!(Signed::<OwnerDecision>::verify(&bytes, NOW).is_err() || bytes == grant);
    }
}
