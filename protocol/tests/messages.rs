//! Every rejection path of signed messages: each test breaks one thing and checks the typed
//! error it gets.

mod common;

use common::*;
use porchlight_protocol::envelope::{ENVELOPE_OVERHEAD, PROTOCOL_VERSION, peek_kind};
use porchlight_protocol::request::MAX_REQUEST_BODY_LEN;
use porchlight_protocol::validate::{MAX_CLIPS_PER_TOKEN, MAX_CREDENTIAL_CHAIN, MAX_REASON_LEN};
use porchlight_protocol::{
    AuthorityCredential, ConsentToken, CryptoError, DecisionOutcome, DecodeError, FootageRequest,
    Kind, OwnerDecision, ProtocolError, RejectCode, RequestId, RequestTarget, Revocation, Signed,
    ValidationError, verify_credential_chain,
};

fn invalid(err: ProtocolError) -> ValidationError {
    match err {
        ProtocolError::Invalid(inner) => inner,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn every_kind_round_trips() {
    let request = request();
    assert_eq!(
        Signed::<FootageRequest>::verify(&request.to_bytes(), NOW).unwrap(),
        request
    );
    let token = token();
    assert_eq!(
        Signed::<ConsentToken>::verify(&token.to_bytes(), NOW).unwrap(),
        token
    );
    for decision in [grant_body(), deny_body()] {
        let signed = Signed::sign(decision, &owner()).unwrap();
        assert_eq!(
            Signed::<OwnerDecision>::verify(&signed.to_bytes(), NOW).unwrap(),
            signed
        );
    }
    let revocation = Signed::sign(revocation_body(), &owner()).unwrap();
    assert_eq!(
        Signed::<Revocation>::verify(&revocation.to_bytes(), NOW).unwrap(),
        revocation
    );
    let credential = credential();
    assert_eq!(
        Signed::<AuthorityCredential>::verify(&credential.to_bytes(), NOW).unwrap(),
        credential
    );
    let area = Signed::sign(area_request_body(), &requester()).unwrap();
    assert_eq!(
        Signed::<FootageRequest>::verify(&area.to_bytes(), NOW).unwrap(),
        area
    );
}

#[test]
fn signed_message_starts_with_its_domain() {
    let request = request();
    assert!(
        request
            .signed_message()
            .starts_with(b"porchlight/v1/request")
    );
    assert!(
        token()
            .signed_message()
            .starts_with(b"porchlight/v1/consent-token")
    );
    assert_eq!(peek_kind(&request.to_bytes()), Ok(Kind::Request));
}

#[test]
fn bad_signature_is_rejected() {
    let mut bytes = token().to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert_eq!(
        Signed::<ConsentToken>::verify(&bytes, NOW),
        Err(ProtocolError::Crypto(CryptoError::BadSignature))
    );
}

#[test]
fn signature_by_someone_else_is_rejected() {
    // The requester signs a token that names the owner: the signer is not the owner.
    let err = Signed::sign(token_body(), &requester()).unwrap_err();
    assert!(matches!(
        invalid(err),
        ValidationError::SignerMismatch { .. }
    ));
    // Forged at the byte level: a body naming the owner with the requester's signature.
    let honest = token();
    let forged_sig = Signed::sign(
        ConsentToken {
            owner: requester().peer_id(),
            grantee: owner().peer_id(),
            ..token_body()
        },
        &requester(),
    )
    .unwrap();
    let mut bytes = honest.to_bytes();
    let len = bytes.len();
    bytes[len - 64..].copy_from_slice(forged_sig.signature());
    assert_eq!(
        Signed::<ConsentToken>::verify(&bytes, NOW),
        Err(ProtocolError::Crypto(CryptoError::BadSignature))
    );
}

#[test]
fn wrong_kind_is_rejected_even_with_a_valid_signature() {
    let bytes = request().to_bytes();
    assert_eq!(
        Signed::<ConsentToken>::verify(&bytes, NOW),
        Err(ProtocolError::Decode(DecodeError::WrongKind {
            expected: "consent-token",
            found: Kind::Request.code()
        }))
    );
    // Relabelling the kind byte makes the domain differ, so the signature fails.
    let mut relabelled = token().to_bytes();
    relabelled[1] = Kind::Revocation.code();
    assert!(Signed::<Revocation>::verify(&relabelled, NOW).is_err());
}

#[test]
fn unsupported_version_is_rejected() {
    let mut bytes = request().to_bytes();
    bytes[0] = PROTOCOL_VERSION + 1;
    let err = Signed::<FootageRequest>::verify(&bytes, NOW).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::Decode(DecodeError::UnsupportedVersion {
            found: PROTOCOL_VERSION + 1,
            supported: PROTOCOL_VERSION
        })
    );
    assert_eq!(err.reject_code(), RejectCode::Unsupported);
}

#[test]
fn too_large_is_rejected_before_parsing() {
    let mut bytes = request().to_bytes();
    bytes.resize(MAX_REQUEST_BODY_LEN + ENVELOPE_OVERHEAD + 1, 0);
    assert!(matches!(
        Signed::<FootageRequest>::verify(&bytes, NOW),
        Err(ProtocolError::Decode(DecodeError::TooLarge { .. }))
    ));
    // And the signer refuses to produce one.
    let mut huge = request_body();
    huge.reason = "x".repeat(MAX_REASON_LEN + 1);
    assert!(Signed::sign(huge, &requester()).is_err());
}

#[test]
fn malformed_and_truncated_envelopes_are_rejected() {
    let bytes = request().to_bytes();
    for cut in [0, 1, 2, 9, 10, bytes.len() / 2, bytes.len() - 1] {
        let err = Signed::<FootageRequest>::verify(&bytes[..cut], NOW).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Decode(_)),
            "cut at {cut}: {err:?}"
        );
        assert_eq!(err.reject_code(), RejectCode::Malformed);
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Signed::<FootageRequest>::verify(&trailing, NOW),
        Err(ProtocolError::Decode(DecodeError::TrailingBytes { .. }))
    ));
}

#[test]
fn request_freshness_is_plus_or_minus_sixty_seconds() {
    let bytes = request().to_bytes();
    assert!(Signed::<FootageRequest>::verify(&bytes, at(60_000)).is_ok());
    assert!(Signed::<FootageRequest>::verify(&bytes, at(-60_000)).is_ok());
    for now in [at(60_001), at(-60_001)] {
        let err = Signed::<FootageRequest>::verify(&bytes, now).unwrap_err();
        assert_eq!(invalid(err.clone()), ValidationError::NotFresh);
        assert_eq!(err.reject_code(), RejectCode::OutOfWindow);
    }
}

#[test]
fn token_expired_and_not_yet_valid() {
    let bytes = token().to_bytes();
    let expired = Signed::<ConsentToken>::verify(&bytes, at(2 * HOUR + 60_001)).unwrap_err();
    assert_eq!(invalid(expired), ValidationError::Expired);
    let early = Signed::<ConsentToken>::verify(&bytes, at(-60_001)).unwrap_err();
    assert_eq!(invalid(early), ValidationError::NotYetValid);
}

#[test]
fn token_rules() {
    let too_long = ConsentToken {
        not_after: at(31 * 24 * HOUR),
        ..token_body()
    };
    assert!(matches!(
        invalid(Signed::sign(too_long, &owner()).unwrap_err()),
        ValidationError::TooLong { .. }
    ));
    let reversed = ConsentToken {
        not_after: at(-1),
        ..token_body()
    };
    assert_eq!(
        invalid(Signed::sign(reversed, &owner()).unwrap_err()),
        ValidationError::EmptyWindow
    );
    let none = ConsentToken {
        clips: vec![],
        ..token_body()
    };
    assert!(Signed::sign(none, &owner()).is_err());
    let dup = ConsentToken {
        clips: vec![clip(1), clip(1)],
        ..token_body()
    };
    assert!(matches!(
        invalid(Signed::sign(dup, &owner()).unwrap_err()),
        ValidationError::Duplicate { .. }
    ));
    let many = ConsentToken {
        clips: (0..=MAX_CLIPS_PER_TOKEN)
            .map(|i| clip(0).with_index(i))
            .collect(),
        ..token_body()
    };
    assert!(Signed::sign(many, &owner()).is_err());
    let to_self = ConsentToken {
        grantee: owner().peer_id(),
        ..token_body()
    };
    assert!(Signed::sign(to_self, &owner()).is_err());
}

trait WithIndex {
    fn with_index(self, i: usize) -> Self;
}

impl WithIndex for porchlight_protocol::ClipId {
    fn with_index(self, i: usize) -> Self {
        let mut bytes = *self.as_bytes();
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        porchlight_protocol::ClipId::from_bytes(bytes)
    }
}

#[test]
fn token_fetch_is_for_the_grantee_and_named_clips_only() {
    let token = token_body();
    assert_eq!(token.check_fetch(&requester().peer_id(), &clip(1)), Ok(()));
    assert!(token.check_fetch(&root().peer_id(), &clip(1)).is_err());
    assert!(token.check_fetch(&requester().peer_id(), &clip(3)).is_err());
}

#[test]
fn request_rules() {
    let cases: Vec<(&str, FootageRequest)> = vec![
        (
            "reversed window",
            FootageRequest {
                window: porchlight_protocol::TimeWindow {
                    from: NOW,
                    to: at(-1),
                },
                ..request_body()
            },
        ),
        (
            "window over 7 days",
            FootageRequest {
                window: porchlight_protocol::TimeWindow {
                    from: at(-8 * 24 * HOUR),
                    to: NOW,
                },
                ..request_body()
            },
        ),
        (
            "empty reason",
            FootageRequest {
                reason: " ".into(),
                ..request_body()
            },
        ),
        (
            "control character in reason",
            FootageRequest {
                reason: "ok\u{1b}[31m".into(),
                ..request_body()
            },
        ),
        (
            "long case number",
            FootageRequest {
                case_number: Some("c".repeat(65)),
                ..request_body()
            },
        ),
        (
            "zero access",
            FootageRequest {
                access_ms: 0,
                ..request_body()
            },
        ),
        (
            "access over 30 days",
            FootageRequest {
                access_ms: 31 * 24 * HOUR_MS,
                ..request_body()
            },
        ),
        (
            "asks itself",
            FootageRequest {
                target: RequestTarget::Peer(requester().peer_id()),
                ..request_body()
            },
        ),
        (
            "no cells",
            FootageRequest {
                target: RequestTarget::Area(vec![]),
                ..request_body()
            },
        ),
        (
            "chain too long",
            FootageRequest {
                credential_chain: vec![credential().to_bytes(); MAX_CREDENTIAL_CHAIN + 1],
                ..request_body()
            },
        ),
    ];
    for (name, body) in cases {
        let err = Signed::sign(body, &requester()).expect_err(name);
        assert_eq!(err.reject_code(), RejectCode::Invalid, "{name}: {err:?}");
    }
}

#[test]
fn decision_must_carry_a_token_for_its_own_request_from_its_own_owner() {
    let grant = Signed::sign(grant_body(), &owner()).unwrap();
    let token = grant.body().granted_token(NOW).unwrap().unwrap();
    assert_eq!(token, common::token());
    assert_eq!(
        Signed::sign(deny_body(), &owner())
            .unwrap()
            .body()
            .granted_token(NOW),
        Ok(None)
    );

    let other_request = OwnerDecision {
        request_id: RequestId::from_bytes([0; 32]),
        ..grant_body()
    };
    assert!(Signed::sign(other_request, &owner()).is_err());

    let mut garbage_token = grant_body();
    garbage_token.outcome = DecisionOutcome::Grant {
        token: vec![1, 3, 0],
    };
    assert!(Signed::sign(garbage_token, &owner()).is_err());

    // A token signed by someone else inside the owner's decision.
    let foreign = Signed::sign(
        ConsentToken {
            owner: root().peer_id(),
            ..token_body()
        },
        &root(),
    )
    .unwrap();
    let mut smuggled = grant_body();
    smuggled.outcome = DecisionOutcome::Grant {
        token: foreign.to_bytes(),
    };
    assert!(matches!(
        invalid(Signed::sign(smuggled, &owner()).unwrap_err()),
        ValidationError::SignerMismatch { .. }
    ));
}

#[test]
fn decision_from_the_future_is_rejected() {
    let later = Signed::sign(
        OwnerDecision {
            decided_at: at(HOUR),
            ..deny_body()
        },
        &owner(),
    )
    .unwrap();
    assert_eq!(
        invalid(Signed::<OwnerDecision>::verify(&later.to_bytes(), NOW).unwrap_err()),
        ValidationError::NotYetValid
    );
}

#[test]
fn credential_chain_direct_from_root_verifies() {
    let roots = [root().peer_id()];
    let verified = verify_credential_chain(
        &[credential().to_bytes()],
        &requester().peer_id(),
        &roots,
        NOW,
    )
    .unwrap();
    assert_eq!(verified.display_name, "Springfield Fire Department");
    assert_eq!(verified.root, root().peer_id());
}

#[test]
fn credential_chain_through_an_intermediate() {
    let roots = [root().peer_id()];
    let leaf = Signed::sign(
        credential_body(&intermediate(), requester().peer_id(), false),
        &intermediate(),
    )
    .unwrap();
    let allowed = Signed::sign(
        credential_body(&root(), intermediate().peer_id(), true),
        &root(),
    )
    .unwrap();
    let chain = [leaf.to_bytes(), allowed.to_bytes()];
    assert!(verify_credential_chain(&chain, &requester().peer_id(), &roots, NOW).is_ok());

    let not_allowed = Signed::sign(
        credential_body(&root(), intermediate().peer_id(), false),
        &root(),
    )
    .unwrap();
    let chain = [leaf.to_bytes(), not_allowed.to_bytes()];
    assert!(matches!(
        invalid(verify_credential_chain(&chain, &requester().peer_id(), &roots, NOW).unwrap_err()),
        ValidationError::BrokenChain { link: 1, .. }
    ));

    // The parent is a credential for someone other than the leaf's issuer.
    let unrelated =
        Signed::sign(credential_body(&root(), owner().peer_id(), true), &root()).unwrap();
    let chain = [leaf.to_bytes(), unrelated.to_bytes()];
    assert!(matches!(
        invalid(verify_credential_chain(&chain, &requester().peer_id(), &roots, NOW).unwrap_err()),
        ValidationError::BrokenChain { link: 1, .. }
    ));
}

#[test]
fn credential_chain_rejections() {
    let roots = [root().peer_id()];
    let subject = requester().peer_id();
    // Untrusted root: a self-appointed "authority".
    let self_made = Signed::sign(credential_body(&owner(), subject, false), &owner()).unwrap();
    assert_eq!(
        invalid(
            verify_credential_chain(&[self_made.to_bytes()], &subject, &roots, NOW).unwrap_err()
        ),
        ValidationError::UntrustedRoot
    );
    // A valid credential presented by another peer.
    assert!(matches!(
        invalid(
            verify_credential_chain(&[credential().to_bytes()], &owner().peer_id(), &roots, NOW)
                .unwrap_err()
        ),
        ValidationError::BrokenChain { link: 0, .. }
    ));
    // Expired.
    let late = at(366 * 24 * HOUR);
    assert_eq!(
        invalid(
            verify_credential_chain(&[credential().to_bytes()], &subject, &roots, late)
                .unwrap_err()
        ),
        ValidationError::Expired
    );
    // Empty and over-long chains.
    assert!(verify_credential_chain(&[], &subject, &roots, NOW).is_err());
    let long = vec![credential().to_bytes(); MAX_CREDENTIAL_CHAIN + 1];
    assert!(verify_credential_chain(&long, &subject, &roots, NOW).is_err());
    // No roots at all.
    assert_eq!(
        invalid(
            verify_credential_chain(&[credential().to_bytes()], &subject, &[], NOW).unwrap_err()
        ),
        ValidationError::UntrustedRoot
    );
}

#[test]
fn reject_codes_leak_only_the_category() {
    let cases = [
        (
            ProtocolError::Crypto(CryptoError::BadSignature),
            RejectCode::Unauthenticated,
        ),
        (
            ProtocolError::Crypto(CryptoError::UnwrapFailed),
            RejectCode::Unauthenticated,
        ),
        (
            ProtocolError::Invalid(ValidationError::Expired),
            RejectCode::OutOfWindow,
        ),
        (
            ProtocolError::Invalid(ValidationError::UntrustedRoot),
            RejectCode::Invalid,
        ),
        (
            ProtocolError::Decode(DecodeError::Malformed { what: "x" }),
            RejectCode::Malformed,
        ),
    ];
    for (err, code) in cases {
        assert_eq!(err.reject_code(), code, "{err:?}");
        assert_eq!(RejectCode::from_byte(code.to_byte()), code);
    }
    assert_eq!(RejectCode::from_byte(200), RejectCode::Malformed);
}

/// A deny message is peer text, checked on decode as well as on signing: a decision whose
/// message carries an escape, a bidi override or a zero-width space, signed correctly by
/// the owner, does not verify (the requester never shows or records it).
#[test]
fn a_deny_message_that_is_not_peer_text_does_not_verify() {
    use ed25519_dalek::Signer;
    let honest = Signed::sign(
        OwnerDecision {
            outcome: DecisionOutcome::Deny {
                message: Some("sorry XXX".into()),
            },
            ..deny_body()
        },
        &owner(),
    )
    .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32]);
    for bad in ["\x1b[2", "\u{202e}", "\u{200b}"] {
        assert_eq!(bad.len(), 3);
        let mut body = honest.body_bytes().to_vec();
        let at = body
            .windows(3)
            .position(|w| w == b"XXX")
            .expect("the message in the body");
        body[at..at + 3].copy_from_slice(bad.as_bytes());
        let signature = key.sign(&Kind::Decision.signed_message(&body)).to_bytes();
        let mut bytes = honest.to_bytes();
        let body_at = bytes
            .windows(honest.body_bytes().len())
            .position(|w| w == honest.body_bytes())
            .expect("the body in the envelope");
        bytes[body_at..body_at + body.len()].copy_from_slice(&body);
        let len = bytes.len();
        bytes[len - 64..].copy_from_slice(&signature);
        assert_eq!(
            Signed::<OwnerDecision>::verify(&bytes, NOW).map(|_| ()),
            Err(ProtocolError::Invalid(ValidationError::ControlCharacter {
                field: "deny message"
            })),
            "{bad:?}"
        );
    }
}
