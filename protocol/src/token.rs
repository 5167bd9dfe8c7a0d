//! Consent tokens (spec/wire.md#consent-token).
//!
//! The only thing that releases footage. A token is signed by the owner's node and names
//! exactly: the request it answers, the one grantee allowed to fetch (by peer id, checked
//! against the peer authenticated by the transport, and by reply key, which the file keys
//! are wrapped to), the clips, a validity window of at most 30 days, and whether the grantee
//! may keep what it fetched after expiry. Revocation is the owner node's state, not the
//! token's: a revoked token still verifies, and the node refuses it
//! ([`crate::revocation`]).

use serde::{Deserialize, Serialize};

use crate::agreement::AgreementPublic;
use crate::clip::ClipId;
use crate::codec;
use crate::envelope::{Kind, SignedBody};
use crate::error::ValidationError;
use crate::identity::PeerId;
use crate::request::RequestId;
use crate::time::Timestamp;
use crate::validate::{
    MAX_CLIPS_PER_TOKEN, MAX_TOKEN_LIFETIME, check_count, check_unique, check_validity,
    check_window,
};

/// Largest encoded token body.
pub const MAX_TOKEN_BODY_LEN: usize = 16_384;

/// A token's name: 16 random bytes chosen by the owner's node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TokenId(#[serde(with = "codec::fixed")] [u8; 16]);

impl TokenId {
    pub const fn from_bytes(bytes: [u8; 16]) -> TokenId {
        TokenId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

crate::codec::hex_id_text!(TokenId, 16, "token id");

/// The owner's signed permission for one grantee to fetch named clips for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentToken {
    pub token_id: TokenId,
    pub request_id: RequestId,
    pub owner: PeerId,
    pub grantee: PeerId,
    /// The request's reply key: every file key released under this token is wrapped to it.
    pub grantee_key: AgreementPublic,
    pub clips: Vec<ClipId>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// Whether the grantee may keep fetched footage after `not_after`.
    pub retain: bool,
}

impl ConsentToken {
    /// Checks that `presenter`, the peer the transport authenticated, may fetch `clip` under
    /// this token. The caller has already verified the token at the current time and checked
    /// it is not revoked.
    pub fn check_fetch(&self, presenter: &PeerId, clip: &ClipId) -> Result<(), ValidationError> {
        if presenter != &self.grantee {
            return Err(ValidationError::NotAllowed {
                what: "fetch",
                why: "the presenting peer is not the token's grantee",
            });
        }
        if !self.clips.iter().any(|listed| listed.ct_eq(clip)) {
            return Err(ValidationError::NotAllowed {
                what: "fetch",
                why: "the clip is not named in the token",
            });
        }
        Ok(())
    }
}

impl SignedBody for ConsentToken {
    const KIND: Kind = Kind::ConsentToken;
    const MAX_BODY_LEN: usize = MAX_TOKEN_BODY_LEN;

    fn signer(&self) -> &PeerId {
        &self.owner
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.owner == self.grantee {
            return Err(ValidationError::NotAllowed {
                what: "consent token",
                why: "owner and grantee are the same peer",
            });
        }
        check_count("clips", self.clips.len(), MAX_CLIPS_PER_TOKEN)?;
        check_unique("clips", &self.clips)?;
        check_window(
            "token lifetime",
            self.not_before,
            self.not_after,
            MAX_TOKEN_LIFETIME,
        )
    }

    fn check_time(&self, now: Timestamp) -> Result<(), ValidationError> {
        check_validity(self.not_before, self.not_after, now)
    }
}
