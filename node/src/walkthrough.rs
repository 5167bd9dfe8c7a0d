//! `porchlight demo`: the consent flow, end to end, in one process.
//!
//! Until the mesh and the home node land, this is the honest demonstration of what exists:
//! every step runs the real protocol code (signatures, credential chains, consent tokens,
//! STREAM clip encryption, key wrapping) and leaves its artefacts on disk, encrypted, in a
//! directory it names. A stand-in byte string plays the part of a recorded MP4 segment.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use porchlight_protocol::clip::MEDIA_TYPE_MP4;
use porchlight_protocol::time::duration_millis;
use porchlight_protocol::{
    AgreementSecret, AuthorityCredential, AuthorityRole, ClipHeader, ConsentToken, DecisionOutcome,
    FileKey, FootageRequest, OwnerDecision, PeerId, RequestId, RequestTarget, Revocation, Signed,
    SigningIdentity, TimeWindow, Timestamp, TokenId, open_clip, seal_clip, unwrap_file_key,
    verify_credential_chain, wrap_file_key,
};
use rand_core::{OsRng, RngCore};

use crate::clock;

const MINUTE: Duration = Duration::from_secs(60);

/// Runs the walkthrough, leaving files in `dir` (or a fresh temporary directory).
pub fn run(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = match dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("porchlight-demo-{:08x}", OsRng.next_u32())),
    };
    fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create demo directory {}", dir.display()))?;
    let now = clock::now()?;
    let rng = &mut OsRng;

    println!(
        "Porchlight consent walkthrough (files in {})",
        dir.display()
    );
    println!();

    // The cast.
    let home = SigningIdentity::generate(rng);
    let vault = AgreementSecret::generate(rng);
    let trust_root = SigningIdentity::generate(rng);
    let fire = SigningIdentity::generate(rng);
    let stranger = SigningIdentity::generate(rng);
    println!("home        {}", home.peer_id());
    println!("fire dept   {}", fire.peer_id());
    println!(
        "trust root  {} (the home owner chose to trust it)",
        trust_root.peer_id()
    );
    println!();

    // 1. The home records a clip: sealed at once, its file key wrapped to the home's vault.
    let recorded_from = now.saturating_sub(30 * MINUTE);
    let recorded_to = recorded_from.saturating_add(MINUTE);
    let footage = stand_in_footage(3 << 20);
    let header = ClipHeader::new(
        "front-door",
        MEDIA_TYPE_MP4,
        recorded_from,
        recorded_to,
        rng,
    );
    let file_key = FileKey::generate(rng);
    let sealed = seal_clip(&file_key, &header, &footage)?;
    let at_rest = wrap_file_key(
        &file_key,
        &vault.public(),
        &sealed.clip_id,
        AgreementSecret::generate(rng),
    )?;
    drop(file_key);
    let clip_path = dir.join(format!("home-{}.plclip", &sealed.clip_id.to_string()[..16]));
    write_clip(&clip_path, &sealed.header_bytes, &sealed.ciphertext)?;
    println!(
        "1. home sealed {} KiB of front-door footage as clip {} ({})",
        footage.len() / 1024,
        short(&sealed.clip_id.to_string()),
        clip_path.display()
    );

    // 2. The fire department asks, with a credential from the trust root.
    let credential = Signed::sign(
        AuthorityCredential {
            issuer: trust_root.peer_id(),
            subject: fire.peer_id(),
            display_name: "Springfield Fire Department".into(),
            jurisdiction: "Springfield".into(),
            role: AuthorityRole::Fire,
            not_before: now.saturating_sub(MINUTE),
            not_after: now.saturating_add(Duration::from_secs(365 * 24 * 3600)),
            may_issue: false,
        },
        &trust_root,
    )?;
    let reply_key = AgreementSecret::generate(rng);
    let request = Signed::sign(
        FootageRequest {
            requester: fire.peer_id(),
            target: RequestTarget::Peer(home.peer_id()),
            window: TimeWindow {
                from: now.saturating_sub(45 * MINUTE),
                to: now.saturating_sub(15 * MINUTE),
            },
            reason: "house fire at 14 Elm Street; looking for who was seen leaving".into(),
            case_number: Some("SFD-2026-1142".into()),
            access_ms: duration_millis(2 * 60 * MINUTE),
            nonce: random_bytes(),
            issued_at: now,
            reply_key: reply_key.public(),
            credential_chain: vec![credential.to_bytes()],
        },
        &fire,
    )?;
    let request_bytes = request.to_bytes();
    println!(
        "2. fire dept sent a signed request ({} bytes)",
        request_bytes.len()
    );

    // 3. The home checks it: signature, freshness, and the credential against its roots.
    let received = Signed::<FootageRequest>::verify(&request_bytes, clock::now()?)?;
    let roots = [trust_root.peer_id()];
    let requester = received.body().requester;
    let shown_as = describe(&received.body().credential_chain, &requester, &roots, now);
    println!("3. home verified the request; requester shown as: {shown_as}");
    println!("   reason: {}", received.body().reason);

    // The same credential presented by someone else does not make them the fire department.
    let imposter = describe(
        &received.body().credential_chain,
        &stranger.peer_id(),
        &roots,
        now,
    );
    println!("   (the same credential presented by another peer shows as: {imposter})");

    // 4. The owner approves for 2 hours: a token for this one clip, this one requester.
    let token = Signed::sign(
        ConsentToken {
            token_id: TokenId::from_bytes(random_bytes()),
            request_id: RequestId::of(&received),
            owner: home.peer_id(),
            grantee: requester,
            grantee_key: received.body().reply_key,
            clips: vec![sealed.clip_id],
            not_before: now,
            not_after: now.saturating_add(received.body().access()),
            retain: false,
        },
        &home,
    )?;
    let decision = Signed::sign(
        OwnerDecision {
            owner: home.peer_id(),
            request_id: RequestId::of(&received),
            decided_at: now,
            outcome: DecisionOutcome::Grant {
                token: token.to_bytes(),
            },
        },
        &home,
    )?;
    println!(
        "4. owner approved: token {} for 1 clip, valid 2 h, no retention",
        token.body().token_id
    );

    // 5. The fire department fetches: the home checks the token and the presenter, then
    //    re-wraps the file key from its vault to the request's reply key.
    let granted = Signed::<OwnerDecision>::verify(&decision.to_bytes(), clock::now()?)?
        .into_body()
        .granted_token(clock::now()?)?
        .context("the decision should carry a token")?;
    granted
        .body()
        .check_fetch(&fire.peer_id(), &sealed.clip_id)?;
    if granted
        .body()
        .check_fetch(&stranger.peer_id(), &sealed.clip_id)
        .is_ok()
    {
        bail!("a stranger presenting the token must be refused");
    }
    let file_key = unwrap_file_key(&at_rest, &vault, &sealed.clip_id)?;
    let for_grantee = wrap_file_key(
        &file_key,
        &granted.body().grantee_key,
        &sealed.clip_id,
        AgreementSecret::generate(rng),
    )?;
    drop(file_key);
    let (header_bytes, ciphertext) = read_clip(&clip_path)?;
    let fire_key = unwrap_file_key(&for_grantee, &reply_key, &sealed.clip_id)?;
    let opened = open_clip(&fire_key, &header_bytes, &ciphertext, &sealed.clip_id)?;
    if opened != footage {
        bail!("the opened clip differs from what was recorded");
    }
    println!(
        "5. fire dept fetched and opened the clip: byte-identical ({} bytes)",
        opened.len()
    );
    println!("   a stranger presenting the same token was refused");

    // 6. Tampering is caught: one flipped bit in the stored ciphertext.
    let mut tampered = ciphertext.clone();
    tampered[ciphertext.len() / 2] ^= 0x01;
    let caught = open_clip(&fire_key, &header_bytes, &tampered, &sealed.clip_id).is_err();
    println!(
        "6. one flipped bit in the stored clip: {}",
        if caught {
            "detected, nothing released"
        } else {
            "NOT DETECTED"
        }
    );
    if !caught {
        bail!("tampering went undetected");
    }

    // 7. The owner revokes.
    let revocation = Signed::sign(
        Revocation {
            owner: home.peer_id(),
            token_id: token.body().token_id,
            revoked_at: clock::now()?,
            reason: Some("case closed".into()),
        },
        &home,
    )?;
    let notice = Signed::<Revocation>::verify(&revocation.to_bytes(), clock::now()?)?;
    println!(
        "7. owner revoked token {}; the grantee's node verified the signed notice",
        notice.body().token_id
    );
    println!();
    println!(
        "Every file in {} is ciphertext; the demo leaves it there.",
        dir.display()
    );
    Ok(())
}

fn describe(chain: &[Vec<u8>], requester: &PeerId, roots: &[PeerId], now: Timestamp) -> String {
    if chain.is_empty() {
        return "unverified (no credential)".into();
    }
    match verify_credential_chain(chain, requester, roots, now) {
        Ok(authority) => format!(
            "verified {} ({}, {})",
            authority.display_name,
            authority.role.label(),
            authority.jurisdiction
        ),
        Err(err) => format!("unverified ({err})"),
    }
}

/// Stand-in bytes for a recorded MP4 segment: an `ftyp` box, then noise.
fn stand_in_footage(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    bytes[..12].copy_from_slice(b"\0\0\0\x0cftypisom");
    bytes
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

fn short(id: &str) -> &str {
    &id[..16.min(id.len())]
}

fn write_clip(path: &Path, header: &[u8], ciphertext: &[u8]) -> anyhow::Result<()> {
    let mut bytes = Vec::with_capacity(header.len() + ciphertext.len());
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(ciphertext);
    fs::write(path, bytes).with_context(|| format!("cannot write clip {}", path.display()))
}

/// Reads a clip file back: the header is self-delimiting, so no index is needed.
fn read_clip(path: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut bytes =
        fs::read(path).with_context(|| format!("cannot read clip {}", path.display()))?;
    let (_, header_len) = ClipHeader::decode_prefix(&bytes)
        .with_context(|| format!("{} is not a porchlight clip", path.display()))?;
    let ciphertext = bytes.split_off(header_len);
    Ok((bytes, ciphertext))
}
