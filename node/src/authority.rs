//! Authority credentials as files: trust-root keys, issuing credentials, and loading the
//! credential chain an authority's node presents with its requests.
//!
//! A trust root is an Ed25519 key kept by whoever vouches for authorities (a county, a
//! neighborhood association): `porchlight authority root-keygen` writes its 32-byte secret
//! seed (0600, never overwritten) and prints its public key, which owners pass to
//! `porchlight trust add`. `porchlight authority issue` signs an [`AuthorityCredential`] for
//! an authority node's peer id and writes the signed envelope's bytes, exactly as they
//! travel (spec/wire.md#authority-credential), to a file the authority keeps beside its node.
//!
//! [`load_credential_chain`] is what `porchlight node --credential` runs: it checks the chain
//! is for *this* node and is valid now before the node starts presenting it, so a wrong or
//! expired file is one clear error at startup rather than silent "unverified" requests later.
//! It does not check the chain against any trust list: which roots count is each receiving
//! owner's choice (`porchlight trust`), never the sender's.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use porchlight_protocol::credential::{MAX_CREDENTIAL_BODY_LEN, MAX_CREDENTIAL_LIFETIME};
use porchlight_protocol::envelope::ENVELOPE_OVERHEAD;
use porchlight_protocol::validate::{MAX_CREDENTIAL_CHAIN, MAX_NAME_LEN, check_text};
use porchlight_protocol::{
    AuthorityCredential, AuthorityRole, PeerId, ProtocolError, Signed, SigningIdentity, Timestamp,
    ValidationError, verify_credential_chain,
};
use rand_core::OsRng;

use crate::api::views::rfc3339;
use crate::data_dir::{read_secret, write_new, write_new_secret};

/// How long `porchlight authority issue` makes a credential valid unless told otherwise.
pub const DEFAULT_CREDENTIAL_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Every role, in the order help text lists them.
pub const ROLES: [AuthorityRole; 5] = [
    AuthorityRole::Police,
    AuthorityRole::Fire,
    AuthorityRole::Medical,
    AuthorityRole::EmergencyManagement,
    AuthorityRole::Other,
];

/// The largest file that can hold one credential envelope.
const MAX_CREDENTIAL_FILE_LEN: u64 = (MAX_CREDENTIAL_BODY_LEN + ENVELOPE_OVERHEAD) as u64;

/// Parses a role by its label (`police`, `fire`, `medical`, `emergency-management`,
/// `other`), as the CLI and `config.toml` spell it.
pub fn parse_role(text: &str) -> anyhow::Result<AuthorityRole> {
    let wanted = text.trim();
    match ROLES.into_iter().find(|role| role.label() == wanted) {
        Some(role) => Ok(role),
        None => bail!(
            "{text:?} is not an authority role; use one of {}",
            ROLES.map(AuthorityRole::label).join(", ")
        ),
    }
}

/// Creates a new trust-root key at `path` (0600; an existing file is never overwritten) and
/// returns its public key, the peer id owners trust with `porchlight trust add`.
pub fn generate_root_key(path: &Path) -> anyhow::Result<PeerId> {
    refuse_existing(path, "key")?;
    let identity = SigningIdentity::generate(&mut OsRng);
    write_new_secret(path, identity.to_secret_bytes().as_ref())?;
    Ok(identity.peer_id())
}

/// Loads a signing key file: a trust root's from `root-keygen`, or an intermediate's (a key
/// that holds a credential with `may_issue`). Refused if other users can read it.
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningIdentity> {
    let secret = read_secret::<32>(path)
        .with_context(|| format!("cannot load the signing key {}", path.display()))?;
    Ok(SigningIdentity::from_secret_bytes(&secret))
}

/// What a new credential says about its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialTerms {
    /// The authority node's peer id (from its `porchlight id` or `porchlight init`).
    pub subject: PeerId,
    pub display_name: String,
    pub jurisdiction: String,
    pub role: AuthorityRole,
    /// From the moment of issue; at most the protocol's [`MAX_CREDENTIAL_LIFETIME`].
    pub valid_for: Duration,
    /// Whether the subject may issue credentials in turn (an intermediate).
    pub may_issue: bool,
}

/// Signs a credential for `terms.subject`, valid from `now` for `terms.valid_for`. Each
/// input is checked first, so a bad one is named in the error rather than surfacing as a
/// protocol rule.
pub fn issue_credential(
    issuer: &SigningIdentity,
    terms: CredentialTerms,
    now: Timestamp,
) -> anyhow::Result<Signed<AuthorityCredential>> {
    check_text("--name", &terms.display_name, MAX_NAME_LEN, false)?;
    check_text("--jurisdiction", &terms.jurisdiction, MAX_NAME_LEN, false)?;
    if terms.valid_for.is_zero() {
        bail!("--valid must be longer than zero");
    }
    if terms.valid_for > MAX_CREDENTIAL_LIFETIME {
        bail!(
            "--valid is longer than a credential may last; use at most {}d",
            MAX_CREDENTIAL_LIFETIME.as_secs() / (24 * 3600)
        );
    }
    if terms.subject == issuer.peer_id() {
        bail!(
            "--peer {} is the signing key itself; a credential is for another key",
            terms.subject
        );
    }
    let credential = AuthorityCredential {
        issuer: issuer.peer_id(),
        subject: terms.subject,
        display_name: terms.display_name,
        jurisdiction: terms.jurisdiction,
        role: terms.role,
        not_before: now,
        not_after: now.saturating_add(terms.valid_for),
        may_issue: terms.may_issue,
    };
    Signed::sign(credential, issuer).context("cannot sign the credential")
}

/// Writes a signed credential's envelope bytes to a new file; an existing file is never
/// overwritten.
pub fn write_credential(
    path: &Path,
    credential: &Signed<AuthorityCredential>,
) -> anyhow::Result<()> {
    refuse_existing(path, "file")?;
    write_new(path, &credential.to_bytes(), 0o644)
}

/// Reads one credential file and checks its signature and structure, but not its time or
/// its issuer's trust: for `porchlight authority show` and for [`load_credential_chain`].
pub fn read_credential(path: &Path) -> anyhow::Result<(Vec<u8>, AuthorityCredential)> {
    let len = fs::metadata(path)
        .with_context(|| format!("cannot read credential {}", path.display()))?
        .len();
    if len > MAX_CREDENTIAL_FILE_LEN {
        bail!(
            "{} is {len} bytes, too large for a credential (at most {MAX_CREDENTIAL_FILE_LEN}); \
             is it the file `porchlight authority issue` wrote?",
            path.display()
        );
    }
    let bytes =
        fs::read(path).with_context(|| format!("cannot read credential {}", path.display()))?;
    let credential = Signed::<AuthorityCredential>::verify_untimed(&bytes)
        .map_err(anyhow::Error::new)
        .with_context(|| {
            format!(
                "{} is not a valid porchlight credential; is it the file `porchlight authority issue` wrote?",
                path.display()
            )
        })?
        .into_body();
    Ok((bytes, credential))
}

/// Loads this node's credential chain, leaf first (the leaf is the credential for this
/// node; each next one is the credential of the previous one's issuer), for `porchlight node
/// --credential`. No paths is no chain: a neighbor's node presents none.
///
/// Checks that every file is a well-signed credential, that the leaf was issued to `me`,
/// that every link is valid at `now`, and that the links form a chain. Which root the chain
/// ends at is the receiving owners' business, not checked here.
pub fn load_credential_chain(
    paths: &[PathBuf],
    me: &PeerId,
    now: Timestamp,
) -> anyhow::Result<Vec<Vec<u8>>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    if paths.len() > MAX_CREDENTIAL_CHAIN {
        bail!(
            "{} credentials were given, but a chain has at most {MAX_CREDENTIAL_CHAIN}; \
             give the node's own credential first, then each issuer's",
            paths.len()
        );
    }
    let mut chain = Vec::with_capacity(paths.len());
    let mut links = Vec::with_capacity(paths.len());
    for path in paths {
        let (bytes, credential) = read_credential(path)?;
        chain.push(bytes);
        links.push((path, credential));
    }
    let (leaf_path, leaf) = &links[0];
    if &leaf.subject != me {
        bail!(
            "the credential {} was issued to {}, but this node is {me}; \
             ask the issuer for a credential for {me}",
            leaf_path.display(),
            leaf.subject
        );
    }
    for (path, credential) in &links {
        check_link_time(path, credential, now)?;
    }
    // The chain's structure is the protocol's rule; checked as if its last issuer were
    // trusted, which leaves only the trust decision to the receiving owner.
    let last_issuer = links[links.len() - 1].1.issuer;
    verify_credential_chain(&chain, me, &[last_issuer], now)
        .map_err(|err| chain_error(err, paths))?;
    Ok(chain)
}

fn check_link_time(
    path: &Path,
    credential: &AuthorityCredential,
    now: Timestamp,
) -> anyhow::Result<()> {
    match porchlight_protocol::validate::check_validity(
        credential.not_before,
        credential.not_after,
        now,
    ) {
        Ok(()) => Ok(()),
        Err(ValidationError::NotYetValid) => bail!(
            "the credential {} is not valid until {}; check this machine's clock",
            path.display(),
            rfc3339(credential.not_before)
        ),
        Err(_) => bail!(
            "the credential {} expired at {}; ask its issuer {} for a new one",
            path.display(),
            rfc3339(credential.not_after),
            credential.issuer
        ),
    }
}

fn chain_error(err: ProtocolError, paths: &[PathBuf]) -> anyhow::Error {
    let hint = "give the node's own credential first, then the credential of its issuer, and so on";
    match err {
        ProtocolError::Invalid(ValidationError::BrokenChain { link, why }) => {
            let path = paths
                .get(link)
                .map_or_else(String::new, |p| p.display().to_string());
            anyhow::anyhow!("the credential chain is broken at {path}: {why}; {hint}")
        }
        other => anyhow::Error::new(other)
            .context(format!("the credential chain does not verify; {hint}")),
    }
}

/// Refuses a path that exists, with a message that says what to do.
fn refuse_existing(path: &Path, what: &str) -> anyhow::Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        bail!(
            "{} already exists; porchlight never overwrites a {what} (choose another path, or move the old one away yourself)",
            path.display()
        );
    }
    Ok(())
}

/// A one-screen description of a credential, for the CLI.
pub fn describe(credential: &AuthorityCredential) -> Vec<(&'static str, String)> {
    vec![
        ("subject", credential.subject.to_string()),
        ("name", credential.display_name.clone()),
        ("jurisdiction", credential.jurisdiction.clone()),
        ("role", credential.role.label().to_owned()),
        ("issuer", credential.issuer.to_string()),
        (
            "valid",
            format!(
                "{} to {}",
                rfc3339(credential.not_before),
                rfc3339(credential.not_after)
            ),
        ),
        (
            "may issue",
            if credential.may_issue { "yes" } else { "no" }.to_owned(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(byte: u8) -> SigningIdentity {
        SigningIdentity::from_secret_bytes(&[byte; 32])
    }

    fn terms(subject: PeerId) -> CredentialTerms {
        CredentialTerms {
            subject,
            display_name: "Springfield Fire Department".into(),
            jurisdiction: "Springfield".into(),
            role: AuthorityRole::Fire,
            valid_for: DEFAULT_CREDENTIAL_VALIDITY,
            may_issue: false,
        }
    }

    const NOW: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);

    #[test]
    fn roles_parse_by_label_and_a_typo_lists_them() {
        for role in ROLES {
            assert_eq!(parse_role(role.label()).unwrap(), role);
        }
        let err = parse_role("fireman").unwrap_err().to_string();
        assert!(
            err.contains("police, fire, medical, emergency-management, other"),
            "{err}"
        );
    }

    #[test]
    fn issue_checks_each_input_by_name() {
        let root = identity(1);
        let subject = identity(2).peer_id();
        let mut bad = terms(subject);
        bad.display_name = "Fire\u{202E}Dept".into();
        let err = issue_credential(&root, bad, NOW).unwrap_err().to_string();
        assert!(err.contains("--name contains a control character"), "{err}");
        let mut bad = terms(subject);
        bad.jurisdiction = "x".repeat(MAX_NAME_LEN + 1);
        let err = issue_credential(&root, bad, NOW).unwrap_err().to_string();
        assert!(err.contains("--jurisdiction is 129 bytes"), "{err}");
        let mut bad = terms(subject);
        bad.valid_for = MAX_CREDENTIAL_LIFETIME + Duration::from_secs(1);
        let err = issue_credential(&root, bad, NOW).unwrap_err().to_string();
        assert!(err.contains("use at most 732d"), "{err}");
        let err = issue_credential(&root, terms(root.peer_id()), NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is the signing key itself"), "{err}");
    }

    #[test]
    fn an_issued_credential_verifies_against_its_root() {
        let root = identity(1);
        let subject = identity(2).peer_id();
        let signed = issue_credential(&root, terms(subject), NOW).unwrap();
        let chain = vec![signed.to_bytes()];
        let verified = verify_credential_chain(&chain, &subject, &[root.peer_id()], NOW).unwrap();
        assert_eq!(verified.display_name, "Springfield Fire Department");
        assert_eq!(verified.role, AuthorityRole::Fire);
        assert_eq!(
            verified.valid_until,
            NOW.saturating_add(DEFAULT_CREDENTIAL_VALIDITY)
        );
    }

    #[test]
    fn load_checks_subject_time_and_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = identity(1);
        let county = identity(2);
        let station = identity(3).peer_id();
        let mut county_terms = terms(county.peer_id());
        county_terms.may_issue = true;
        let county_cred = issue_credential(&root, county_terms, NOW).unwrap();
        let leaf = issue_credential(&county, terms(station), NOW).unwrap();
        let leaf_path = tmp.path().join("leaf.cred");
        let county_path = tmp.path().join("county.cred");
        write_credential(&leaf_path, &leaf).unwrap();
        write_credential(&county_path, &county_cred).unwrap();

        let chain = load_credential_chain(&[leaf_path.clone(), county_path.clone()], &station, NOW)
            .unwrap();
        assert_eq!(chain, [leaf.to_bytes(), county_cred.to_bytes()]);
        assert!(
            load_credential_chain(&[], &station, NOW)
                .unwrap()
                .is_empty()
        );

        let other = identity(4).peer_id();
        let err = load_credential_chain(std::slice::from_ref(&leaf_path), &other, NOW)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "was issued to {station}, but this node is {other}"
            )),
            "{err}"
        );

        let later = NOW.saturating_add(DEFAULT_CREDENTIAL_VALIDITY + Duration::from_secs(3600));
        let err = load_credential_chain(std::slice::from_ref(&leaf_path), &station, later)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expired at"), "{err}");
        let earlier = NOW.saturating_sub(Duration::from_secs(3600));
        let err = load_credential_chain(std::slice::from_ref(&leaf_path), &station, earlier)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid until"), "{err}");

        // The county's credential where the leaf's issuer should be: not a chain.
        let unrelated = issue_credential(&root, terms(identity(5).peer_id()), NOW).unwrap();
        let unrelated_path = tmp.path().join("unrelated.cred");
        write_credential(&unrelated_path, &unrelated).unwrap();
        let err = load_credential_chain(&[leaf_path, unrelated_path.clone()], &station, NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chain is broken at"), "{err}");
        assert!(err.contains(&unrelated_path.display().to_string()), "{err}");
    }

    #[test]
    fn garbage_files_are_one_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.cred");
        fs::write(&path, b"not a credential").unwrap();
        let err = format!("{:#}", read_credential(&path).unwrap_err());
        assert!(
            err.contains("is not a valid porchlight credential"),
            "{err}"
        );
        fs::write(&path, vec![1u8; 4096]).unwrap();
        let err = format!("{:#}", read_credential(&path).unwrap_err());
        assert!(err.contains("too large for a credential"), "{err}");
        let missing = tmp.path().join("missing.cred");
        assert!(read_credential(&missing).is_err());
    }

    #[test]
    fn keys_and_credentials_are_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("root.key");
        let root = generate_root_key(&key).unwrap();
        assert_eq!(load_signing_key(&key).unwrap().peer_id(), root);
        let before = fs::read(&key).unwrap();
        let err = generate_root_key(&key).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(fs::read(&key).unwrap(), before);

        let cred = tmp.path().join("c.cred");
        let signed = issue_credential(
            &load_signing_key(&key).unwrap(),
            terms(identity(2).peer_id()),
            NOW,
        )
        .unwrap();
        write_credential(&cred, &signed).unwrap();
        let err = write_credential(&cred, &signed).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }
}
