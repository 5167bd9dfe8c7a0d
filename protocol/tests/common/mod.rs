//! Fixtures shared by the protocol's integration tests and the vector generator: fixed
//! identities and one well-formed message of every kind, so each test changes only the one
//! field it is about.
#![allow(dead_code, clippy::unwrap_used)]

use porchlight_protocol::{
    AgreementSecret, AuthorityCredential, AuthorityRole, CellId, ClipId, ConsentToken,
    DecisionOutcome, FootageRequest, OwnerDecision, PeerId, RequestId, RequestTarget, Revocation,
    Signed, SigningIdentity, TimeWindow, Timestamp, TokenId,
};

/// 2026-11-29T12:00:00Z.
pub const NOW: Timestamp = Timestamp::from_unix_millis(1_795_953_600_000);
pub const HOUR_MS: u64 = 3_600_000;
pub const HOUR: i64 = 3_600_000;

pub fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(
        NOW.as_unix_millis()
            .checked_add_signed(offset_ms)
            .expect("test offsets are small"),
    )
}

pub fn owner() -> SigningIdentity {
    SigningIdentity::from_secret_bytes(&[0x11; 32])
}

pub fn requester() -> SigningIdentity {
    SigningIdentity::from_secret_bytes(&[0x22; 32])
}

pub fn root() -> SigningIdentity {
    SigningIdentity::from_secret_bytes(&[0x33; 32])
}

pub fn intermediate() -> SigningIdentity {
    SigningIdentity::from_secret_bytes(&[0x44; 32])
}

pub fn reply_secret() -> AgreementSecret {
    AgreementSecret::from_bytes([0x55; 32])
}

pub fn clip(n: u8) -> ClipId {
    ClipId::from_bytes([n; 32])
}

pub fn credential_body(
    issuer: &SigningIdentity,
    subject: PeerId,
    may_issue: bool,
) -> AuthorityCredential {
    AuthorityCredential {
        issuer: issuer.peer_id(),
        subject,
        display_name: "Springfield Fire Department".into(),
        jurisdiction: "Springfield".into(),
        role: AuthorityRole::Fire,
        not_before: at(-24 * HOUR),
        not_after: at(365 * 24 * HOUR),
        may_issue,
    }
}

/// A credential for the requester, signed directly by the root.
pub fn credential() -> Signed<AuthorityCredential> {
    Signed::sign(
        credential_body(&root(), requester().peer_id(), false),
        &root(),
    )
    .unwrap()
}

pub fn request_body() -> FootageRequest {
    FootageRequest {
        requester: requester().peer_id(),
        target: RequestTarget::Peer(owner().peer_id()),
        window: TimeWindow {
            from: at(-2 * HOUR),
            to: at(-HOUR),
        },
        reason: "hit-and-run on Elm Street, silver hatchback".into(),
        case_number: Some("SFD-2026-1142".into()),
        access_ms: 2 * HOUR_MS,
        nonce: [0x66; 16],
        issued_at: NOW,
        reply_key: reply_secret().public(),
        credential_chain: vec![credential().to_bytes()],
    }
}

pub fn area_request_body() -> FootageRequest {
    FootageRequest {
        target: RequestTarget::Area(vec![
            CellId {
                lat_index: 5252,
                lon_index: 1340,
            },
            CellId {
                lat_index: 5252,
                lon_index: 1341,
            },
        ]),
        case_number: None,
        credential_chain: vec![],
        ..request_body()
    }
}

pub fn request() -> Signed<FootageRequest> {
    Signed::sign(request_body(), &requester()).unwrap()
}

pub fn token_body() -> ConsentToken {
    ConsentToken {
        token_id: TokenId::from_bytes([0x77; 16]),
        request_id: RequestId::of(&request()),
        owner: owner().peer_id(),
        grantee: requester().peer_id(),
        grantee_key: reply_secret().public(),
        clips: vec![clip(1), clip(2)],
        not_before: NOW,
        not_after: at(2 * HOUR),
        retain: false,
    }
}

pub fn token() -> Signed<ConsentToken> {
    Signed::sign(token_body(), &owner()).unwrap()
}

pub fn grant_body() -> OwnerDecision {
    OwnerDecision {
        owner: owner().peer_id(),
        request_id: RequestId::of(&request()),
        decided_at: NOW,
        outcome: DecisionOutcome::Grant {
            token: token().to_bytes(),
        },
    }
}

pub fn deny_body() -> OwnerDecision {
    OwnerDecision {
        outcome: DecisionOutcome::Deny {
            message: Some("no footage of Elm Street".into()),
        },
        ..grant_body()
    }
}

pub fn revocation_body() -> Revocation {
    Revocation {
        owner: owner().peer_id(),
        token_id: TokenId::from_bytes([0x77; 16]),
        revoked_at: NOW,
        reason: Some("changed my mind".into()),
    }
}
