//! The test vectors in spec/vectors/: their generator and their checker.
//!
//! `generate_*` build every vector from fixed seeds, so the files are reproducible byte for
//! byte. `vectors_match_the_generator` fails when a checked-in file differs from what the
//! generator makes now; `UPDATE_VECTORS=1` (or `make vectors`) rewrites them instead. The
//! `*_vectors_verify` tests then read the files strictly, independently of the generator,
//! and check each vector through the public API, mapping every error to a coarse expected
//! outcome (as the age CCTV vectors do) so a parse error cannot hide behind a later MAC
//! failure.

mod common;

use std::path::PathBuf;

use common::*;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use porchlight_protocol::stream::{SEALED_CHUNK_SIZE, TAG_SIZE};
use porchlight_protocol::{
    AgreementPublic, AgreementSecret, AuthorityCredential, ClipHeader, ClipId, ClipOpener,
    ConsentToken, FileKey, FootageRequest, Kind, OwnerDecision, ProtocolError, Revocation, Signed,
    SignedBody, Timestamp, WrappedFileKey, open_clip, seal_clip, unwrap_file_key, wrap_file_key,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// File formats
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClipVector {
    description: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    reason: Option<String>,
    expect: String,
    file_key: String,
    payload_nonce: String,
    header: String,
    plaintext: String,
    ciphertext: String,
    clip_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyWrapVector {
    description: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    reason: Option<String>,
    expect: String,
    recipient_secret: String,
    recipient_public: String,
    ephemeral_secret: String,
    ephemeral_public: String,
    clip_id: String,
    file_key: String,
    wrapped: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureVector {
    description: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    reason: Option<String>,
    expect: String,
    kind: String,
    public_key: String,
    message: String,
    signature: String,
    envelope: String,
    fields: serde_json::Value,
}

const SUCCESS: &str = "success";
const HEADER_FAILURE: &str = "header failure";
const PAYLOAD_FAILURE: &str = "payload failure";
const UNWRAP_FAILURE: &str = "unwrap failure";
const SIGNATURE_FAILURE: &str = "signature failure";

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn to_json<T: Serialize>(vectors: &[T]) -> String {
    let mut text = serde_json::to_string_pretty(vectors).expect("vectors serialize");
    text.push('\n');
    text
}

/// A deterministic RNG per vector, seeded by its name.
fn rng_for(name: &str) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(Sha256::digest(format!("porchlight vectors: {name}")).into())
}

fn random<const N: usize>(rng: &mut ChaCha20Rng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

struct ClipCase {
    file_key: [u8; 32],
    header: ClipHeader,
    header_bytes: Vec<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
    clip_id: ClipId,
}

fn clip_case(name: &str, len: usize) -> ClipCase {
    let mut rng = rng_for(name);
    let file_key: [u8; 32] = random(&mut rng);
    let header = ClipHeader {
        camera: "front-door".into(),
        media_type: "video/mp4".into(),
        start: NOW,
        end: at(60_000),
        payload_nonce: random(&mut rng),
    };
    let mut plaintext = vec![0u8; len];
    rng.fill_bytes(&mut plaintext);
    let sealed = seal_clip(&FileKey::from_bytes(file_key), &header, &plaintext)
        .expect("fixture header is valid");
    ClipCase {
        file_key,
        header,
        header_bytes: sealed.header_bytes,
        plaintext,
        ciphertext: sealed.ciphertext,
        clip_id: sealed.clip_id,
    }
}

fn clip_vector(description: &str, case: &ClipCase) -> ClipVector {
    ClipVector {
        description: description.into(),
        valid: true,
        reason: None,
        expect: SUCCESS.into(),
        file_key: hex::encode(case.file_key),
        payload_nonce: hex::encode(case.header.payload_nonce),
        header: hex::encode(&case.header_bytes),
        plaintext: hex::encode(&case.plaintext),
        ciphertext: hex::encode(&case.ciphertext),
        clip_id: hex::encode(case.clip_id.as_bytes()),
    }
}

fn invalid_clip(description: &str, case: &ClipCase, reason: &str, expect: &str) -> ClipVector {
    ClipVector {
        valid: false,
        reason: Some(reason.into()),
        expect: expect.into(),
        // An invalid clip has no plaintext to recover.
        plaintext: String::new(),
        ..clip_vector(description, case)
    }
}

fn generate_clip_encryption() -> Vec<ClipVector> {
    let mut vectors = Vec::new();
    for (description, len) in [
        ("empty plaintext", 0),
        ("1 byte", 1),
        ("exactly one full chunk (65,536 bytes)", 65_536),
        ("one full chunk and one byte (65,537 bytes)", 65_537),
        ("over 200 KiB (204,801 bytes, four chunks)", 204_801),
    ] {
        vectors.push(clip_vector(description, &clip_case(description, len)));
    }

    let base = clip_case("negative cases: two chunks", 65_537);
    let mut tampered = base.ciphertext.clone();
    tampered[100] ^= 0x01;
    vectors.push(ClipVector {
        ciphertext: hex::encode(&tampered),
        ..invalid_clip(
            "tampered chunk",
            &base,
            "bit 0 of byte 100 of chunk 0 flipped; clip_id is the untampered clip's",
            PAYLOAD_FAILURE,
        )
    });
    vectors.push(ClipVector {
        ciphertext: hex::encode(&base.ciphertext[..SEALED_CHUNK_SIZE]),
        ..invalid_clip(
            "truncated stream",
            &base,
            "the last chunk is dropped, so the stream ends on a chunk sealed as not-last",
            PAYLOAD_FAILURE,
        )
    });
    vectors.push(ClipVector {
        ciphertext: hex::encode(&base.ciphertext[..base.ciphertext.len() - 1]),
        ..invalid_clip(
            "truncated inside the last tag",
            &base,
            "the final byte of the last chunk's tag is missing",
            PAYLOAD_FAILURE,
        )
    });
    let mut other = base.header.clone();
    other.camera = "garage".into();
    vectors.push(ClipVector {
        header: hex::encode(other.encode().expect("valid header")),
        ..invalid_clip(
            "wrong header",
            &base,
            "a valid header naming another camera, over the ciphertext sealed under the original",
            PAYLOAD_FAILURE,
        )
    });
    let mut bad_magic = base.header_bytes.clone();
    bad_magic[0] = b'X';
    vectors.push(ClipVector {
        header: hex::encode(bad_magic),
        ..invalid_clip(
            "bad header magic",
            &base,
            "the header does not start with PLCLIPv1",
            HEADER_FAILURE,
        )
    });

    let three = clip_case("negative cases: three chunks", 2 * 65_536 + 100);
    let mut swapped = three.ciphertext.clone();
    swapped[..SEALED_CHUNK_SIZE]
        .copy_from_slice(&three.ciphertext[SEALED_CHUNK_SIZE..2 * SEALED_CHUNK_SIZE]);
    swapped[SEALED_CHUNK_SIZE..2 * SEALED_CHUNK_SIZE]
        .copy_from_slice(&three.ciphertext[..SEALED_CHUNK_SIZE]);
    vectors.push(ClipVector {
        ciphertext: hex::encode(&swapped),
        ..invalid_clip(
            "swapped chunks",
            &three,
            "chunks 0 and 1 exchanged",
            PAYLOAD_FAILURE,
        )
    });
    vectors
}

fn key_wrap_vector(name: &str) -> (KeyWrapVector, AgreementSecret, [u8; 32]) {
    let mut rng = rng_for(name);
    let recipient_secret: [u8; 32] = random(&mut rng);
    let ephemeral_secret: [u8; 32] = random(&mut rng);
    let file_key: [u8; 32] = random(&mut rng);
    let clip_id = ClipId::from_bytes(random(&mut rng));
    let recipient = AgreementSecret::from_bytes(recipient_secret);
    let wrapped = wrap_file_key(
        &FileKey::from_bytes(file_key),
        &recipient.public(),
        &clip_id,
        AgreementSecret::from_bytes(ephemeral_secret),
    )
    .expect("random recipient is not low order");
    let vector = KeyWrapVector {
        description: name.into(),
        valid: true,
        reason: None,
        expect: SUCCESS.into(),
        recipient_secret: hex::encode(recipient_secret),
        recipient_public: hex::encode(recipient.public().as_bytes()),
        ephemeral_secret: hex::encode(ephemeral_secret),
        ephemeral_public: hex::encode(wrapped.ephemeral_public.as_bytes()),
        clip_id: hex::encode(clip_id.as_bytes()),
        file_key: hex::encode(file_key),
        wrapped: hex::encode(wrapped.wrapped),
    };
    (vector, recipient, file_key)
}

fn generate_key_wrap() -> Vec<KeyWrapVector> {
    let mut vectors = vec![
        key_wrap_vector("wrap to a vault key").0,
        key_wrap_vector("wrap to a request's reply key").0,
    ];
    let (base, _, _) = key_wrap_vector("negative cases");
    let mut rng = rng_for("negative cases: other clip");
    vectors.push(KeyWrapVector {
        description: "wrong clip id for an unwrap".into(),
        valid: false,
        reason: Some(
            "clip_id is not the clip the key was wrapped for (the associated data differs)".into(),
        ),
        expect: UNWRAP_FAILURE.into(),
        clip_id: hex::encode(random::<32>(&mut rng)),
        ..clone_wrap(&base)
    });
    let mut wrapped = hex::decode(&base.wrapped).expect("own hex");
    wrapped[47] ^= 0x80;
    vectors.push(KeyWrapVector {
        description: "tampered wrapped key".into(),
        valid: false,
        reason: Some("the top bit of the last tag byte is flipped".into()),
        expect: UNWRAP_FAILURE.into(),
        wrapped: hex::encode(wrapped),
        ..clone_wrap(&base)
    });
    vectors.push(KeyWrapVector {
        description: "low-order ephemeral key".into(),
        valid: false,
        reason: Some("the ephemeral public key is the all-zero point, so X25519 gives an all-zero shared secret".into()),
        expect: UNWRAP_FAILURE.into(),
        ephemeral_secret: String::new(),
        ephemeral_public: hex::encode([0u8; 32]),
        ..clone_wrap(&base)
    });
    vectors
}

fn clone_wrap(v: &KeyWrapVector) -> KeyWrapVector {
    serde_json::from_value(serde_json::to_value(v).expect("serializes")).expect("round trips")
}

fn signature_vector<T: SignedBody>(description: &str, signed: &Signed<T>) -> SignatureVector {
    SignatureVector {
        description: description.into(),
        valid: true,
        reason: None,
        expect: SUCCESS.into(),
        kind: T::KIND.label().into(),
        public_key: hex::encode(signed.body().signer().public_key_bytes()),
        message: hex::encode(signed.signed_message()),
        signature: hex::encode(signed.signature()),
        envelope: hex::encode(signed.to_bytes()),
        fields: serde_json::to_value(signed.body()).expect("bodies serialize to JSON"),
    }
}

fn generate_signatures() -> Vec<SignatureVector> {
    let mut vectors = vec![
        signature_vector(
            "request to one home, from a fire department with a credential",
            &request(),
        ),
        signature_vector(
            "area request from a neighbor, two cells",
            &Signed::sign(area_request_body(), &requester()).expect("valid fixture"),
        ),
        signature_vector(
            "decision: grant carrying a consent token",
            &Signed::sign(grant_body(), &owner()).expect("valid fixture"),
        ),
        signature_vector(
            "decision: deny with a message",
            &Signed::sign(deny_body(), &owner()).expect("valid fixture"),
        ),
        signature_vector("consent token for two clips, two hours", &token()),
        signature_vector(
            "revocation of that token",
            &Signed::sign(revocation_body(), &owner()).expect("valid fixture"),
        ),
        signature_vector("authority credential issued by a trust root", &credential()),
    ];

    let mut bad = signature_vector("bad signature", &token());
    let mut signature = hex::decode(&bad.signature).expect("own hex");
    signature[0] ^= 0x01;
    let mut envelope = hex::decode(&bad.envelope).expect("own hex");
    let len = envelope.len();
    envelope[len - 64..].copy_from_slice(&signature);
    bad.valid = false;
    bad.reason = Some("bit 0 of the signature's first byte flipped".into());
    bad.expect = SIGNATURE_FAILURE.into();
    bad.signature = hex::encode(&signature);
    bad.envelope = hex::encode(envelope);
    vectors.push(bad);

    // Domain separation: the owner's key signs the token's body under the revocation
    // domain. The Ed25519 signature is valid for those bytes, but no verifier of a consent
    // token (domain "porchlight/v1/consent-token") may accept it.
    let token = token();
    let key = SigningKey::from_bytes(&owner().to_secret_bytes());
    let cross = key.sign(&Kind::Revocation.signed_message(token.body_bytes()));
    let mut crossed = signature_vector("signature from another kind's domain", &token);
    let mut envelope = hex::decode(&crossed.envelope).expect("own hex");
    let len = envelope.len();
    envelope[len - 64..].copy_from_slice(&cross.to_bytes());
    crossed.valid = false;
    crossed.reason = Some(
        "the owner signed \"porchlight/v1/revocation\" || token body; as a consent token it must not verify".into(),
    );
    crossed.expect = SIGNATURE_FAILURE.into();
    crossed.signature = hex::encode(cross.to_bytes());
    crossed.envelope = hex::encode(envelope);
    vectors.push(crossed);
    vectors
}

// ---------------------------------------------------------------------------------------
// The generator check
// ---------------------------------------------------------------------------------------

#[test]
fn vectors_match_the_generator() {
    let files = [
        ("clip-encryption.json", to_json(&generate_clip_encryption())),
        ("key-wrap.json", to_json(&generate_key_wrap())),
        ("signatures.json", to_json(&generate_signatures())),
    ];
    let update = std::env::var_os("UPDATE_VECTORS").is_some();
    for (name, generated) in files {
        let path = vectors_dir().join(name);
        if update {
            std::fs::create_dir_all(vectors_dir()).expect("create spec/vectors");
            std::fs::write(&path, &generated).expect("write vectors");
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{} differs from what the generator makes now; if the change is intended, run `make vectors`",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// The checkers: they read the files, not the generator.
// ---------------------------------------------------------------------------------------

fn read<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    let text = std::fs::read_to_string(vectors_dir().join(name)).expect("vectors are checked in");
    serde_json::from_str(&text).expect("vectors parse strictly")
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).expect("vector hex is lowercase hex")
}

fn unhex32(text: &str) -> [u8; 32] {
    unhex(text).try_into().expect("a 32-byte field")
}

fn clip_outcome(
    key: &FileKey,
    header: &[u8],
    ciphertext: &[u8],
) -> (&'static str, Option<Vec<u8>>) {
    let mut opener = match ClipOpener::new(key, header) {
        Ok(opener) => opener,
        Err(_) => return (HEADER_FAILURE, None),
    };
    let mut out = Vec::new();
    let result = opener
        .push(ciphertext, &mut out)
        .and_then(|()| opener.finish(&mut out));
    match result {
        Ok(_) => (SUCCESS, Some(out)),
        Err(_) => (PAYLOAD_FAILURE, None),
    }
}

#[test]
fn clip_encryption_vectors_verify() {
    let vectors: Vec<ClipVector> = read("clip-encryption.json");
    let lengths: Vec<usize> = vectors
        .iter()
        .filter(|v| v.valid)
        .map(|v| v.plaintext.len() / 2)
        .collect();
    for required in [0, 1, 65_536, 65_537] {
        assert!(
            lengths.contains(&required),
            "a vector of {required} bytes is required"
        );
    }
    assert!(lengths.iter().any(|&len| len > 200 * 1024));
    for reason in [
        "tampered chunk",
        "truncated stream",
        "swapped chunks",
        "wrong header",
    ] {
        assert!(
            vectors.iter().any(|v| !v.valid && v.description == reason),
            "missing {reason}"
        );
    }

    for v in &vectors {
        let key = FileKey::from_bytes(unhex32(&v.file_key));
        let header = unhex(&v.header);
        let ciphertext = unhex(&v.ciphertext);
        let clip_id = ClipId::from_bytes(unhex32(&v.clip_id));
        let (outcome, plaintext) = clip_outcome(&key, &header, &ciphertext);
        assert_eq!(outcome, v.expect, "{}", v.description);
        assert_eq!(v.valid, v.expect == SUCCESS, "{}", v.description);
        if v.valid {
            let expected = unhex(&v.plaintext);
            assert_eq!(
                plaintext.as_deref(),
                Some(&expected[..]),
                "{}",
                v.description
            );
            assert_eq!(
                ClipId::of(&header, &ciphertext),
                clip_id,
                "{}",
                v.description
            );
            // Encryption is covered too: sealing the plaintext under the same key and header
            // gives the same bytes.
            let parsed = ClipHeader::decode(&header).expect("valid header");
            assert_eq!(hex::encode(parsed.payload_nonce), v.payload_nonce);
            let sealed = seal_clip(&key, &parsed, &expected).expect("seals");
            assert_eq!(sealed.ciphertext, ciphertext, "{}", v.description);
            assert_eq!(
                open_clip(&key, &header, &ciphertext, &clip_id).expect("opens"),
                expected
            );
        } else {
            assert!(
                open_clip(&key, &header, &ciphertext, &clip_id).is_err(),
                "{}",
                v.description
            );
        }
    }
}

#[test]
fn key_wrap_vectors_verify() {
    let vectors: Vec<KeyWrapVector> = read("key-wrap.json");
    assert!(
        vectors
            .iter()
            .any(|v| !v.valid && v.description == "wrong clip id for an unwrap")
    );
    for v in &vectors {
        let recipient = AgreementSecret::from_bytes(unhex32(&v.recipient_secret));
        assert_eq!(
            hex::encode(recipient.public().as_bytes()),
            v.recipient_public,
            "{}",
            v.description
        );
        let clip_id = ClipId::from_bytes(unhex32(&v.clip_id));
        let wrapped = WrappedFileKey {
            ephemeral_public: AgreementPublic::from_bytes(unhex32(&v.ephemeral_public)),
            wrapped: unhex(&v.wrapped).try_into().expect("48 bytes"),
        };
        let outcome = match unwrap_file_key(&wrapped, &recipient, &clip_id) {
            Ok(key) => {
                assert_eq!(hex::encode(key.as_bytes()), v.file_key, "{}", v.description);
                SUCCESS
            }
            Err(_) => UNWRAP_FAILURE,
        };
        assert_eq!(outcome, v.expect, "{}", v.description);
        assert_eq!(v.valid, v.expect == SUCCESS, "{}", v.description);
        if v.valid {
            let rewrapped = wrap_file_key(
                &FileKey::from_bytes(unhex32(&v.file_key)),
                &recipient.public(),
                &clip_id,
                AgreementSecret::from_bytes(unhex32(&v.ephemeral_secret)),
            )
            .expect("wraps");
            assert_eq!(rewrapped, wrapped, "{}", v.description);
        }
    }
}

fn verify_envelope(
    kind: &str,
    envelope: &[u8],
) -> Result<(Vec<u8>, serde_json::Value), ProtocolError> {
    fn check<T: SignedBody>(
        envelope: &[u8],
    ) -> Result<(Vec<u8>, serde_json::Value), ProtocolError> {
        let signed = Signed::<T>::verify_untimed(envelope)?;
        Ok((
            signed.signed_message(),
            serde_json::to_value(signed.body()).expect("serializes"),
        ))
    }
    match kind {
        "request" => check::<FootageRequest>(envelope),
        "decision" => check::<OwnerDecision>(envelope),
        "consent-token" => check::<ConsentToken>(envelope),
        "revocation" => check::<Revocation>(envelope),
        "authority-credential" => check::<AuthorityCredential>(envelope),
        other => panic!("unknown kind {other}"),
    }
}

#[test]
fn signature_vectors_verify() {
    let vectors: Vec<SignatureVector> = read("signatures.json");
    for kind in Kind::ALL {
        assert!(
            vectors.iter().any(|v| v.valid && v.kind == kind.label()),
            "no vector for {}",
            kind.label()
        );
    }
    for v in &vectors {
        let message = unhex(&v.message);
        let domain = format!("porchlight/v1/{}", v.kind);
        assert!(message.starts_with(domain.as_bytes()), "{}", v.description);
        // Plain Ed25519 over the message, independent of the envelope code.
        let key = VerifyingKey::from_bytes(&unhex32(&v.public_key)).expect("valid key");
        let signature = Signature::from_bytes(&unhex(&v.signature).try_into().expect("64 bytes"));
        let raw_ok = key.verify_strict(&message, &signature).is_ok()
            && key.verify(&message, &signature).is_ok();
        let outcome = match verify_envelope(&v.kind, &unhex(&v.envelope)) {
            Ok((signed_message, fields)) => {
                assert_eq!(signed_message, message, "{}", v.description);
                assert_eq!(fields, v.fields, "{}", v.description);
                SUCCESS
            }
            Err(ProtocolError::Crypto(_)) => SIGNATURE_FAILURE,
            Err(other) => panic!("{}: unexpected {other:?}", v.description),
        };
        assert_eq!(outcome, v.expect, "{}", v.description);
        assert_eq!(v.valid, v.expect == SUCCESS, "{}", v.description);
        // The cross-domain signature is valid Ed25519 for the revocation domain only; over this
        // consent-token message it fails like any other bad signature.
        assert_eq!(raw_ok, v.valid, "{}", v.description);
    }
}

#[test]
fn vector_times_are_the_fixture_clock() {
    // The vectors are generated at a fixed instant, so their timed checks are stable.
    assert_eq!(NOW, Timestamp::from_unix_millis(1_795_953_600_000));
    assert_eq!(TAG_SIZE, 16);
}
