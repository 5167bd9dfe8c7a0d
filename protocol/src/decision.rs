//! Owner decisions (spec/wire.md#decision).
//!
//! The owner's node answers a request with a signed decision: a grant, which carries the
//! consent token, or a deny, with an optional message. Nodes deny silently by default (they
//! send nothing); an explicit deny is the owner's choice.

use serde::{Deserialize, Serialize};

use crate::envelope::{Kind, Signed, SignedBody};
use crate::error::{ProtocolError, ValidationError};
use crate::identity::PeerId;
use crate::request::RequestId;
use crate::time::Timestamp;
use crate::token::{ConsentToken, MAX_TOKEN_BODY_LEN};
use crate::validate::{MAX_DENY_MESSAGE_LEN, check_not_future, check_text};

/// Largest encoded decision body.
pub const MAX_DECISION_BODY_LEN: usize = MAX_TOKEN_BODY_LEN + 1_024;

/// What the owner decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionOutcome {
    /// Granted: the signed consent token's envelope bytes.
    Grant {
        #[serde(with = "crate::codec::bytes")]
        token: Vec<u8>,
    },
    /// Denied, optionally with a message for the requester.
    Deny { message: Option<String> },
}

/// A signed answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerDecision {
    pub owner: PeerId,
    pub request_id: RequestId,
    pub decided_at: Timestamp,
    pub outcome: DecisionOutcome,
}

impl OwnerDecision {
    /// The granted token, verified at `now`; `None` for a deny.
    pub fn granted_token(
        &self,
        now: Timestamp,
    ) -> Result<Option<Signed<ConsentToken>>, ProtocolError> {
        match &self.outcome {
            DecisionOutcome::Grant { token } => Signed::verify(token, now).map(Some),
            DecisionOutcome::Deny { .. } => Ok(None),
        }
    }
}

impl SignedBody for OwnerDecision {
    const KIND: Kind = Kind::Decision;
    const MAX_BODY_LEN: usize = MAX_DECISION_BODY_LEN;

    fn signer(&self) -> &PeerId {
        &self.owner
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match &self.outcome {
            DecisionOutcome::Grant { token } => {
                // The token must itself be valid, from the same owner, for the same request.
                let token = Signed::<ConsentToken>::verify_untimed(token).map_err(|_| {
                    ValidationError::NotAllowed {
                        what: "granted token",
                        why: "it does not verify",
                    }
                })?;
                if token.body().owner != self.owner {
                    return Err(ValidationError::SignerMismatch {
                        role: "token owner",
                    });
                }
                if token.body().request_id != self.request_id {
                    return Err(ValidationError::NotAllowed {
                        what: "granted token",
                        why: "it answers a different request",
                    });
                }
                Ok(())
            }
            DecisionOutcome::Deny { message } => match message {
                Some(text) => check_text("deny message", text, MAX_DENY_MESSAGE_LEN, false),
                None => Ok(()),
            },
        }
    }

    fn check_time(&self, now: Timestamp) -> Result<(), ValidationError> {
        check_not_future(self.decided_at, now)
    }
}
