//! Revocations (spec/wire.md#revocation).
//!
//! An owner revokes a token by recording it in its own node, which refuses further fetches at
//! once, and by sending the grantee this signed notice, on which a compliant grantee deletes
//! what it received (unless the token granted retention). The notice cannot recall bytes a
//! grantee already holds; spec/threat-model.md says so.

use serde::{Deserialize, Serialize};

use crate::envelope::{Kind, SignedBody};
use crate::error::ValidationError;
use crate::identity::PeerId;
use crate::time::Timestamp;
use crate::token::TokenId;
use crate::validate::{MAX_DENY_MESSAGE_LEN, check_not_future, check_text};

/// Largest encoded revocation body.
pub const MAX_REVOCATION_BODY_LEN: usize = 1_024;

/// The owner's signed notice that a token no longer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub owner: PeerId,
    pub token_id: TokenId,
    pub revoked_at: Timestamp,
    pub reason: Option<String>,
}

impl SignedBody for Revocation {
    const KIND: Kind = Kind::Revocation;
    const MAX_BODY_LEN: usize = MAX_REVOCATION_BODY_LEN;

    fn signer(&self) -> &PeerId {
        &self.owner
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match &self.reason {
            Some(text) => check_text("revocation reason", text, MAX_DENY_MESSAGE_LEN, false),
            None => Ok(()),
        }
    }

    fn check_time(&self, now: Timestamp) -> Result<(), ValidationError> {
        check_not_future(self.revoked_at, now)
    }
}
