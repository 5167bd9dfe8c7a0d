//! Authority credentials and chains (spec/wire.md#authority-credential,
//! spec/crypto.md#credential-chains).
//!
//! A credential says "this peer is the Springfield Fire Department, role fire, until then",
//! signed by an issuer. A trust root is just an Ed25519 key that an owner chose to trust; it
//! may sign credentials directly, or for intermediates with `may_issue` set, up to
//! [`MAX_CREDENTIAL_CHAIN`] links. A requester is shown as *verified* only when
//! [`verify_credential_chain`] succeeds against the reading node's own roots; otherwise it is
//! unverified, whatever name it claims. A credential proves who asks; it never compels a
//! release.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::envelope::{Kind, Signed, SignedBody};
use crate::error::{ProtocolError, ValidationError};
use crate::identity::PeerId;
use crate::time::Timestamp;
use crate::validate::{
    MAX_CREDENTIAL_CHAIN, MAX_NAME_LEN, check_count, check_text, check_validity, check_window,
};

/// Largest encoded credential body.
pub const MAX_CREDENTIAL_BODY_LEN: usize = 1_024;
/// The longest a credential may be valid.
pub const MAX_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(2 * 366 * 24 * 3600);

/// The kind of authority a credential names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthorityRole {
    Police,
    Fire,
    Medical,
    EmergencyManagement,
    Other,
}

impl AuthorityRole {
    pub const fn label(self) -> &'static str {
        match self {
            AuthorityRole::Police => "police",
            AuthorityRole::Fire => "fire",
            AuthorityRole::Medical => "medical",
            AuthorityRole::EmergencyManagement => "emergency-management",
            AuthorityRole::Other => "other",
        }
    }
}

/// An issuer's signed statement of who a peer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityCredential {
    pub issuer: PeerId,
    pub subject: PeerId,
    pub display_name: String,
    pub jurisdiction: String,
    pub role: AuthorityRole,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// Whether the subject may itself issue credentials (an intermediate).
    pub may_issue: bool,
}

impl SignedBody for AuthorityCredential {
    const KIND: Kind = Kind::AuthorityCredential;
    const MAX_BODY_LEN: usize = MAX_CREDENTIAL_BODY_LEN;

    fn signer(&self) -> &PeerId {
        &self.issuer
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.issuer == self.subject {
            return Err(ValidationError::NotAllowed {
                what: "credential",
                why: "a credential cannot be issued to its own issuer",
            });
        }
        check_text("display name", &self.display_name, MAX_NAME_LEN, false)?;
        check_text("jurisdiction", &self.jurisdiction, MAX_NAME_LEN, false)?;
        check_window(
            "credential validity",
            self.not_before,
            self.not_after,
            MAX_CREDENTIAL_LIFETIME,
        )
    }

    fn check_time(&self, now: Timestamp) -> Result<(), ValidationError> {
        check_validity(self.not_before, self.not_after, now)
    }
}

/// An authority whose chain checked out against this node's trust roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAuthority {
    pub subject: PeerId,
    pub display_name: String,
    pub jurisdiction: String,
    pub role: AuthorityRole,
    /// The leaf credential's issuer.
    pub issuer: PeerId,
    /// The trusted root the chain ends at.
    pub root: PeerId,
    pub valid_until: Timestamp,
}

/// Verifies a credential chain (leaf first) for `subject` against `trusted_roots` at `now`.
///
/// Every link must verify and be valid now; link `i + 1` must be a credential for the issuer
/// of link `i` with `may_issue` set; the last link's issuer must be a trusted root.
pub fn verify_credential_chain(
    chain: &[Vec<u8>],
    subject: &PeerId,
    trusted_roots: &[PeerId],
    now: Timestamp,
) -> Result<VerifiedAuthority, ProtocolError> {
    check_count("credential chain", chain.len(), MAX_CREDENTIAL_CHAIN)?;
    let links = chain
        .iter()
        .map(|bytes| Signed::<AuthorityCredential>::verify(bytes, now).map(Signed::into_body))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = &links[0];
    if &leaf.subject != subject {
        return Err(ValidationError::BrokenChain {
            link: 0,
            why: "the credential is for another peer",
        }
        .into());
    }
    for (i, pair) in links.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if parent.subject != child.issuer {
            return Err(ValidationError::BrokenChain {
                link: i + 1,
                why: "it is not a credential for the previous link's issuer",
            }
            .into());
        }
        if !parent.may_issue {
            return Err(ValidationError::BrokenChain {
                link: i + 1,
                why: "its subject may not issue credentials",
            }
            .into());
        }
    }
    let root = links[links.len() - 1].issuer;
    if !trusted_roots.contains(&root) {
        return Err(ValidationError::UntrustedRoot.into());
    }
    let valid_until = links
        .iter()
        .map(|link| link.not_after)
        .min()
        .unwrap_or(leaf.not_after);
    Ok(VerifiedAuthority {
        subject: leaf.subject,
        display_name: leaf.display_name.clone(),
        jurisdiction: leaf.jurisdiction.clone(),
        role: leaf.role,
        issuer: leaf.issuer,
        root,
        valid_until,
    })
}
