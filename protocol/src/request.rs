//! Footage requests (spec/wire.md#request).
//!
//! A request names who asks (the signer), whom (one peer, or the homes of some cells), which
//! span of footage, why, for how long they want access, and the reply key that any grant
//! will wrap file keys to. Authorities attach a credential chain; whether it makes them
//! *verified* depends on the trust roots of the node that reads it
//! ([`crate::credential::verify_credential_chain`]), so the request itself only carries it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agreement::AgreementPublic;
use crate::codec;
use crate::envelope::{ENVELOPE_OVERHEAD, Kind, Signed, SignedBody};
use crate::error::ValidationError;
use crate::geo::CellId;
use crate::identity::PeerId;
use crate::time::{TimeWindow, Timestamp, duration_millis};
use crate::validate::{
    MAX_CASE_NUMBER_LEN, MAX_CELLS_PER_REQUEST, MAX_CREDENTIAL_CHAIN, MAX_REASON_LEN,
    MAX_REQUEST_WINDOW, MAX_TOKEN_LIFETIME, check_count, check_fresh, check_text, check_unique,
    check_window,
};

/// Largest encoded request body.
pub const MAX_REQUEST_BODY_LEN: usize = 8_192;

/// Who a request is addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestTarget {
    /// One home, by peer id.
    Peer(PeerId),
    /// Every home that opted in within these cells.
    Area(Vec<CellId>),
}

/// A signed ask for footage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FootageRequest {
    pub requester: PeerId,
    pub target: RequestTarget,
    /// The footage asked about.
    pub window: TimeWindow,
    pub reason: String,
    pub case_number: Option<String>,
    /// How long the requester asks to have access, in milliseconds.
    pub access_ms: u64,
    /// Random, so two identical asks are two requests and a replay is recognisable.
    #[serde(with = "codec::fixed")]
    pub nonce: [u8; 16],
    pub issued_at: Timestamp,
    /// The requester's fresh X25519 key for this request.
    pub reply_key: AgreementPublic,
    /// Authority credentials, leaf first, each a signed credential envelope. Empty for a
    /// neighbor.
    #[serde(with = "codec::bytes_list")]
    pub credential_chain: Vec<Vec<u8>>,
}

impl FootageRequest {
    pub fn access(&self) -> Duration {
        Duration::from_millis(self.access_ms)
    }
}

impl SignedBody for FootageRequest {
    const KIND: Kind = Kind::Request;
    const MAX_BODY_LEN: usize = MAX_REQUEST_BODY_LEN;

    fn signer(&self) -> &PeerId {
        &self.requester
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match &self.target {
            RequestTarget::Peer(peer) if peer == &self.requester => {
                return Err(ValidationError::NotAllowed {
                    what: "request target",
                    why: "a node cannot ask itself",
                });
            }
            RequestTarget::Peer(_) => {}
            RequestTarget::Area(cells) => {
                check_count("cells", cells.len(), MAX_CELLS_PER_REQUEST)?;
                check_unique("cells", cells)?;
                if !cells.iter().all(CellId::is_valid) {
                    return Err(ValidationError::BadCoordinates);
                }
            }
        }
        check_window(
            "request window",
            self.window.from,
            self.window.to,
            MAX_REQUEST_WINDOW,
        )?;
        check_text("reason", &self.reason, MAX_REASON_LEN, false)?;
        if let Some(case) = &self.case_number {
            check_text("case number", case, MAX_CASE_NUMBER_LEN, false)?;
        }
        if self.access_ms == 0 {
            return Err(ValidationError::EmptyWindow);
        }
        if self.access_ms > duration_millis(MAX_TOKEN_LIFETIME) {
            return Err(ValidationError::TooLong {
                what: "requested access",
                max_ms: duration_millis(MAX_TOKEN_LIFETIME),
            });
        }
        if self.credential_chain.len() > MAX_CREDENTIAL_CHAIN {
            return Err(ValidationError::TooMany {
                field: "credential chain",
                count: self.credential_chain.len(),
                max: MAX_CREDENTIAL_CHAIN,
            });
        }
        let max_link = crate::credential::MAX_CREDENTIAL_BODY_LEN + ENVELOPE_OVERHEAD;
        if self
            .credential_chain
            .iter()
            .any(|link| link.len() > max_link)
        {
            return Err(ValidationError::NotAllowed {
                what: "credential",
                why: "larger than a credential can be",
            });
        }
        Ok(())
    }

    fn check_time(&self, now: Timestamp) -> Result<(), ValidationError> {
        check_fresh(self.issued_at, now)
    }
}

/// A request's name: SHA-256 of its signed message (spec/wire.md#request-id).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(#[serde(with = "codec::fixed")] [u8; 32]);

impl RequestId {
    pub const fn from_bytes(bytes: [u8; 32]) -> RequestId {
        RequestId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id of a signed request.
    pub fn of(request: &Signed<FootageRequest>) -> RequestId {
        RequestId(request.digest())
    }
}

crate::codec::hex_id_text!(RequestId, 32, "request id");
