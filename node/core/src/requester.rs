//! The requester side: signing and sending requests, receiving grants, denies and
//! revocations, and ending grants at expiry.
//!
//! A decision is accepted only from the owner the transport authenticated, for a request
//! this node sent (and, for a direct request, from the peer it was sent to), and a grant
//! only if its token names this node and this request's reply key. Ending a grant emits
//! [`Output::DeleteReceived`] unless the token allowed retention; the deletion itself is the
//! store's job.

use std::time::Duration;

use porchlight_protocol::time::duration_millis;
use porchlight_protocol::{
    AgreementSecret, ClipId, ConsentToken, DecisionOutcome, FootageRequest, Kind, OwnerDecision,
    PeerId, RequestId, RequestTarget, Revocation, Signed, TimeWindow, Timestamp, TokenId,
};

use crate::audit::{AuditEvent, GrantEnd};
use crate::error::{CoreError, Misbehavior};
use crate::node::{Node, Outgoing, Received, due};
use crate::output::Output;

impl Node {
    /// Builds, signs and sends a request with a fresh reply key. On error nothing is sent or
    /// remembered (the RNG has moved on, deterministically).
    pub(crate) fn send_request(
        &mut self,
        target: RequestTarget,
        window: TimeWindow,
        reason: String,
        case_number: Option<String>,
        access: Duration,
    ) -> Result<(), CoreError> {
        let reply_secret = AgreementSecret::generate(&mut self.rng);
        let request = FootageRequest {
            requester: self.me,
            target: target.clone(),
            window,
            reason,
            case_number,
            access_ms: duration_millis(access),
            nonce: self.random_bytes(),
            issued_at: self.now,
            reply_key: reply_secret.public(),
            credential_chain: self.config.credential_chain.clone(),
        };
        let signed =
            Signed::sign(request, &self.identity).map_err(|source| CoreError::Refused {
                what: "request",
                source,
            })?;
        let request_id = RequestId::of(&signed);
        let bytes = signed.to_bytes();
        let (peer, area) = match target {
            RequestTarget::Peer(peer) => {
                self.emit(Output::Send { to: peer, bytes });
                (Some(peer), false)
            }
            RequestTarget::Area(cells) => {
                self.emit(Output::PublishArea { cells, bytes });
                (None, true)
            }
        };
        self.outgoing.insert(
            request_id,
            Outgoing {
                reply_secret,
                target: peer,
            },
        );
        self.changed();
        self.emit(Output::RequestSent { request_id });
        self.record(AuditEvent::RequestSent { request_id, area });
        Ok(())
    }

    pub(crate) fn on_decision(&mut self, from: PeerId, bytes: &[u8]) {
        let now = self.now;
        let decision = match Signed::<OwnerDecision>::verify(bytes, now) {
            Ok(decision) => decision.into_body(),
            Err(error) => {
                return self.misbehaved(
                    from,
                    Misbehavior::Invalid {
                        kind: Some(Kind::Decision),
                        error,
                    },
                );
            }
        };
        if decision.owner != from {
            return self.misbehaved(
                from,
                Misbehavior::SignerMismatch {
                    kind: Kind::Decision,
                },
            );
        }
        let request_id = decision.request_id;
        let Some(outgoing) = self.outgoing.get(&request_id) else {
            return self.misbehaved(
                from,
                Misbehavior::Unsolicited {
                    kind: Kind::Decision,
                },
            );
        };
        if outgoing.target.is_some_and(|target| target != from) {
            return self.misbehaved(
                from,
                Misbehavior::Unsolicited {
                    kind: Kind::Decision,
                },
            );
        }
        let reply_key = outgoing.reply_secret.public();
        let token_bytes = match decision.outcome {
            DecisionOutcome::Grant { token } => token,
            DecisionOutcome::Deny { message } => {
                // The decision's own checks passed the message as peer text. Without one,
                // the entry stays tag 9, as every older log has it.
                let event = match &message {
                    Some(message) => AuditEvent::DenialReceivedWithMessage {
                        request_id,
                        owner: from,
                        message: message.clone(),
                    },
                    None => AuditEvent::DenialReceived {
                        request_id,
                        owner: from,
                    },
                };
                self.emit(Output::Denied {
                    request_id,
                    owner: from,
                    message,
                });
                return self.record(event);
            }
        };
        // The decision's own checks already tied the token to this owner and request.
        let token = match Signed::<ConsentToken>::verify(&token_bytes, now) {
            Ok(token) => token,
            Err(error) => {
                return self.misbehaved(
                    from,
                    Misbehavior::Invalid {
                        kind: Some(Kind::ConsentToken),
                        error,
                    },
                );
            }
        };
        let body = token.body();
        if body.grantee != self.me || body.grantee_key != reply_key {
            return self.misbehaved(from, Misbehavior::ForeignGrant(request_id));
        }
        if self.received.contains_key(&body.token_id) {
            // The same grant delivered twice: already handled.
            return;
        }
        let token_id = body.token_id;
        self.checkpoint();
        self.received.insert(
            token_id,
            Received {
                owner: from,
                not_after: body.not_after,
                retain: body.retain,
            },
        );
        self.changed();
        self.emit(Output::Granted { request_id, token });
        self.record(AuditEvent::GrantReceived {
            request_id,
            token_id,
            owner: from,
        });
    }

    pub(crate) fn on_revocation(&mut self, from: PeerId, bytes: &[u8]) {
        let revocation = match Signed::<Revocation>::verify(bytes, self.now) {
            Ok(revocation) => revocation.into_body(),
            Err(error) => {
                return self.misbehaved(
                    from,
                    Misbehavior::Invalid {
                        kind: Some(Kind::Revocation),
                        error,
                    },
                );
            }
        };
        if revocation.owner != from {
            return self.misbehaved(
                from,
                Misbehavior::SignerMismatch {
                    kind: Kind::Revocation,
                },
            );
        }
        let ours = self
            .received
            .get(&revocation.token_id)
            .is_some_and(|grant| grant.owner == from);
        if !ours {
            return self.misbehaved(
                from,
                Misbehavior::Unsolicited {
                    kind: Kind::Revocation,
                },
            );
        }
        self.end_grant(revocation.token_id, GrantEnd::Revoked);
    }

    pub(crate) fn expire_received(&mut self, now: Timestamp) {
        for token_id in due(&self.received, now, |grant| grant.not_after) {
            self.end_grant(token_id, GrantEnd::Expired);
        }
    }

    /// Records a clip stored under a grant this node holds.
    pub(crate) fn on_clip_received(
        &mut self,
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
    ) -> Result<(), CoreError> {
        if !self.received.contains_key(&token_id) {
            return Err(CoreError::UnknownGrant(token_id));
        }
        self.record(AuditEvent::ClipReceived {
            token_id,
            clip_id,
            bytes,
        });
        Ok(())
    }

    fn end_grant(&mut self, token_id: TokenId, why: GrantEnd) {
        self.checkpoint();
        let Some(grant) = self.received.remove(&token_id) else {
            return;
        };
        self.changed();
        let deleted = !grant.retain;
        if deleted {
            self.emit(Output::DeleteReceived { token_id });
        }
        self.record(AuditEvent::GrantEnded {
            token_id,
            why,
            deleted,
        });
    }
}
