//! Signed envelopes: how every signed message travels (spec/wire.md#envelope,
//! spec/crypto.md#signatures).
//!
//! ```text
//! envelope = version: u8 || kind: u8 || body: u64-length-prefixed bytes || signature: 64 bytes
//! signed   = "porchlight/v1/" || <kind label> || body
//! ```
//!
//! One domain per kind means a signature over a request can never be replayed as a token or a
//! credential, even if the bodies happened to share bytes. The version is bound too, because
//! it is part of the domain string. The signer's key is always a field of the body (the
//! requester, the owner, the issuer), so what was signed says who signed it.
//!
//! [`Signed::verify`] follows "full recognition before processing": size limit, envelope
//! structure, version, kind, canonical body, signature, the kind's structural rules, and only
//! then the time checks against the caller's `now`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec;
use crate::error::{DecodeError, ProtocolError, ValidationError};
use crate::identity::{PeerId, SigningIdentity};
use crate::time::Timestamp;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Every signature domain starts with this.
pub const SIGNATURE_DOMAIN_PREFIX: &str = "porchlight/v1/";
/// Bytes an envelope adds around its body: version, kind, length prefix, signature.
pub const ENVELOPE_OVERHEAD: usize = 1 + 1 + 8 + 64;

/// The kinds of signed message, each with its own signature domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    Decision = 2,
    ConsentToken = 3,
    Revocation = 4,
    AuthorityCredential = 5,
}

impl Kind {
    /// Every kind, in wire-code order.
    pub const ALL: [Kind; 5] = [
        Kind::Request,
        Kind::Decision,
        Kind::ConsentToken,
        Kind::Revocation,
        Kind::AuthorityCredential,
    ];

    /// The label in the signature domain (spec/crypto.md#signatures).
    pub const fn label(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Decision => "decision",
            Kind::ConsentToken => "consent-token",
            Kind::Revocation => "revocation",
            Kind::AuthorityCredential => "authority-credential",
        }
    }

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.code() == code)
    }

    /// `"porchlight/v1/<label>"`.
    pub fn domain(self) -> String {
        format!("{SIGNATURE_DOMAIN_PREFIX}{}", self.label())
    }

    /// The exact bytes that are signed: the domain followed by the body.
    pub fn signed_message(self, body: &[u8]) -> Vec<u8> {
        let mut message = self.domain().into_bytes();
        message.extend_from_slice(body);
        message
    }
}

/// A message body that travels signed.
pub trait SignedBody: Serialize + DeserializeOwned + Sized {
    /// This body's kind and signature domain.
    const KIND: Kind;
    /// Largest encoded body accepted.
    const MAX_BODY_LEN: usize;
    /// The peer whose key must have signed the body.
    fn signer(&self) -> &PeerId;
    /// The rules that do not depend on the time.
    fn validate(&self) -> Result<(), ValidationError>;
    /// The rules that depend on the time (freshness, validity windows).
    fn check_time(&self, now: Timestamp) -> Result<(), ValidationError>;
}

#[derive(Serialize, Deserialize)]
struct EnvelopeWire {
    version: u8,
    kind: u8,
    body: Vec<u8>,
    #[serde(with = "codec::fixed")]
    signature: [u8; 64],
}

/// A message whose signature, structure and (at verification time) validity were checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed<T> {
    body: T,
    body_bytes: Vec<u8>,
    signature: [u8; 64],
}

impl<T: SignedBody + fmt::Debug> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl<T: SignedBody> Signed<T> {
    /// Signs `body` with `identity`, which must be the body's signer. The body must satisfy
    /// its kind's rules: a node never signs something it would refuse to accept.
    pub fn sign(body: T, identity: &SigningIdentity) -> Result<Signed<T>, ProtocolError> {
        if body.signer() != &identity.peer_id() {
            return Err(ValidationError::SignerMismatch {
                role: T::KIND.label(),
            }
            .into());
        }
        body.validate()?;
        let body_bytes = codec::encode(&body);
        if body_bytes.len() > T::MAX_BODY_LEN {
            return Err(DecodeError::TooLarge {
                what: T::KIND.label(),
                len: body_bytes.len(),
                max: T::MAX_BODY_LEN,
            }
            .into());
        }
        let signature = identity.sign(&T::KIND.signed_message(&body_bytes));
        Ok(Signed {
            body,
            body_bytes,
            signature,
        })
    }

    /// Parses and checks an envelope, including the time rules at `now`.
    pub fn verify(bytes: &[u8], now: Timestamp) -> Result<Signed<T>, ProtocolError> {
        let signed = Signed::<T>::verify_untimed(bytes)?;
        signed.body.check_time(now)?;
        Ok(signed)
    }

    /// Parses and checks an envelope without the time rules: for records read back from
    /// the node's own store and for the test vectors, never for fresh network input.
    pub fn verify_untimed(bytes: &[u8]) -> Result<Signed<T>, ProtocolError> {
        let max = T::MAX_BODY_LEN + ENVELOPE_OVERHEAD;
        let what = T::KIND.label();
        if bytes.len() > max {
            return Err(DecodeError::TooLarge {
                what,
                len: bytes.len(),
                max,
            }
            .into());
        }
        // Version and kind are read before the rest so that a newer or different message
        // gets a precise error rather than "malformed".
        match bytes.first() {
            Some(&PROTOCOL_VERSION) => {}
            Some(&found) => {
                return Err(DecodeError::UnsupportedVersion {
                    found,
                    supported: PROTOCOL_VERSION,
                }
                .into());
            }
            None => return Err(DecodeError::Malformed { what }.into()),
        }
        match bytes.get(1) {
            Some(&code) if code == T::KIND.code() => {}
            Some(&found) => {
                return Err(DecodeError::WrongKind {
                    expected: what,
                    found,
                }
                .into());
            }
            None => return Err(DecodeError::Malformed { what }.into()),
        }
        let wire: EnvelopeWire = codec::decode(bytes, max, what)?;
        let body: T = codec::decode(&wire.body, T::MAX_BODY_LEN, what)?;
        body.signer()
            .verify(&T::KIND.signed_message(&wire.body), &wire.signature)?;
        body.validate()?;
        Ok(Signed {
            body,
            body_bytes: wire.body,
            signature: wire.signature,
        })
    }

    pub fn body(&self) -> &T {
        &self.body
    }

    pub fn into_body(self) -> T {
        self.body
    }

    /// The canonical body bytes that were signed (after the domain).
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The whole signed byte string: domain followed by body.
    pub fn signed_message(&self) -> Vec<u8> {
        T::KIND.signed_message(&self.body_bytes)
    }

    /// SHA-256 of the signed message: a stable name for this exact message.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.signed_message()).into()
    }

    /// The envelope's wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&EnvelopeWire {
            version: PROTOCOL_VERSION,
            kind: T::KIND.code(),
            body: self.body_bytes.clone(),
            signature: self.signature,
        })
    }
}

/// Reads the kind of an envelope without verifying it, so a receiver can dispatch.
pub fn peek_kind(bytes: &[u8]) -> Result<Kind, DecodeError> {
    match bytes {
        [PROTOCOL_VERSION, code, ..] => Kind::from_code(*code).ok_or(DecodeError::Malformed {
            what: "envelope kind",
        }),
        [found, _, ..] => Err(DecodeError::UnsupportedVersion {
            found: *found,
            supported: PROTOCOL_VERSION,
        }),
        _ => Err(DecodeError::Malformed { what: "envelope" }),
    }
}
