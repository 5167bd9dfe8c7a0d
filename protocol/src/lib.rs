//! Porchlight's protocol: the messages homes and requesters exchange, and the cryptography
//! that keeps footage sealed until an owner consents.
//!
//! # Design overview
//!
//! This crate is deterministic and does no I/O: no sockets, no files, no clock, no OS
//! randomness, no async. Time arrives as a [`Timestamp`] argument and randomness as a
//! `CryptoRngCore` argument (or as explicit nonce and key bytes), which is what lets the node
//! core and the city simulator run this exact code under simulated time, and what lets the
//! test vectors in `spec/vectors/` cover encryption as well as decryption. It is the wire
//! format's **API boundary**: the module names follow the sections of `spec/`, and each check
//! cites the section it implements.
//!
//! - [`identity`], [`agreement`]: Ed25519 identities (the libp2p key; [`PeerId`]) and X25519
//!   vault and reply keys.
//! - [`audit_signature`]: the node's signature on its audit log entries, under its own
//!   domain.
//! - [`envelope`]: one signed envelope for every message kind, each kind with its own
//!   signature domain; [`Signed::verify`] checks size, version, kind, encoding, signature,
//!   rules and time, in that order.
//! - [`request`], [`decision`], [`token`], [`revocation`], [`credential`]: the messages.
//! - [`clip`], [`stream`], [`wrap`]: the clip format (age's STREAM construction) and the file
//!   key wrap; [`fetch`]: the messages and frames of the fetch stream that carries a clip to
//!   a grantee.
//! - [`validate`], [`geo`]: the shared limits and rules, and the geographic cells of area
//!   requests.
//! - [`codec`](crate::codec) (private): the single place bytes are encoded and decoded.
//!
//! Errors are [`ProtocolError`]: detailed for the local log, with a coarse
//! [`RejectCode`] for the wire that leaks nothing. No input, however malformed, panics.

mod codec;

pub mod agreement;
pub mod audit_signature;
pub mod clip;
pub mod credential;
pub mod decision;
pub mod envelope;
pub mod error;
pub mod fetch;
pub mod geo;
pub mod identity;
pub mod request;
pub mod revocation;
pub mod stream;
pub mod time;
pub mod token;
pub mod validate;
pub mod wrap;

pub use agreement::{AgreementPublic, AgreementSecret};
pub use audit_signature::AUDIT_ENTRY_SIGNATURE_DOMAIN;
pub use clip::{ClipHeader, ClipId, FileKey};
pub use credential::{
    AuthorityCredential, AuthorityRole, VerifiedAuthority, verify_credential_chain,
};
pub use decision::{DecisionOutcome, OwnerDecision};
pub use envelope::{Kind, Signed, SignedBody};
pub use error::{CryptoError, DecodeError, ProtocolError, RejectCode, ValidationError};
pub use fetch::{FetchAccepted, FetchReply, FetchRequest};
pub use geo::CellId;
pub use identity::{PeerId, SigningIdentity};
pub use request::{FootageRequest, RequestId, RequestTarget};
pub use revocation::Revocation;
pub use stream::{
    ClipIdHasher, ClipOpener, ClipSealer, PayloadSealer, SealedClip, open_clip, seal_clip,
};
pub use time::{TimeWindow, Timestamp};
pub use token::{ConsentToken, TokenId};
pub use wrap::{WrappedFileKey, unwrap_file_key, wrap_file_key};
