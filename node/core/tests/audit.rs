//! The audit events the shell reports (a fetch completed, a clip received) and resuming the
//! chain after a restart, between two in-memory nodes.

mod harness;

use std::time::Duration;

use harness::*;
use porchlight_core::audit::{AuditEvent, GrantEnd};
use porchlight_core::{AuditEntry, CoreError, Input, Node, NodeConfig, Output, verify_chain};
use porchlight_protocol::{ConsentToken, Signed, TokenId};

/// Ask, approve clip 1 for an hour, fetch it; both logs taken (the audit entries so far are
/// returned, owner's first).
fn fetched_pair() -> (Pair, Signed<ConsentToken>, Vec<AuditEntry>, Vec<AuditEntry>) {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    pair.owner_do(Input::Approve {
        request_id,
        duration: Duration::from_secs(3600),
        clips: Some(vec![clip(1)]),
        retain: false,
    })
    .expect("pending request");
    let token = pair
        .requester_log
        .iter()
        .find_map(|output| match output {
            Output::Granted { token, .. } => Some(token.clone()),
            _ => None,
        })
        .expect("the requester received a grant");
    pair.owner_do(Input::FetchAsked {
        from: identity(REQUESTER).peer_id(),
        token_bytes: token.to_bytes(),
        clip_id: clip(1),
    })
    .expect("network input never errs");
    let (owner_log, requester_log) = pair.take();
    (
        pair,
        token,
        audit_entries(&owner_log),
        audit_entries(&requester_log),
    )
}

#[test]
fn a_completed_fetch_is_recorded_with_its_bytes_and_peer() {
    let (mut pair, token, mut owner_audit, _) = fetched_pair();
    let token_id = token.body().token_id;
    pair.owner_do(Input::FetchCompleted {
        to: identity(REQUESTER).peer_id(),
        token_id,
        clip_id: clip(1),
        bytes: 1_234_567,
    })
    .expect("recording a completed fetch cannot fail");
    let (owner_log, requester_log) = pair.take();
    assert!(actions(&owner_log).is_empty(), "{owner_log:#?}");
    assert!(requester_log.is_empty());
    let entries = audit_entries(&owner_log);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].event,
        AuditEvent::FetchCompleted {
            token_id,
            clip_id: clip(1),
            peer: identity(REQUESTER).peer_id(),
            bytes: 1_234_567,
        }
    );
    owner_audit.extend(entries);
    assert_eq!(verify_chain(&owner_audit), Ok(()));
}

#[test]
fn a_fetch_completed_under_a_revoked_token_is_still_recorded() {
    // The stream began before the revocation; its bytes left all the same.
    let (mut pair, token, _, _) = fetched_pair();
    let token_id = token.body().token_id;
    pair.owner_do(Input::Revoke { token_id })
        .expect("issued token");
    pair.take();
    pair.owner_do(Input::FetchCompleted {
        to: identity(REQUESTER).peer_id(),
        token_id,
        clip_id: clip(1),
        bytes: 10,
    })
    .expect("recording a completed fetch cannot fail");
    let (owner_log, _) = pair.take();
    assert!(matches!(
        &audit_entries(&owner_log)[..],
        [AuditEntry {
            event: AuditEvent::FetchCompleted { bytes: 10, .. },
            ..
        }]
    ));
}

#[test]
fn a_fetch_completed_after_its_token_was_forgotten_is_still_recorded() {
    // A slow stream can outlive the token: the core forgets it past not_after and the skew,
    // and the bytes that left must be in the log all the same.
    let (mut pair, token, _, _) = fetched_pair();
    let token_id = token.body().token_id;
    pair.advance(Duration::from_secs(3600 + 120));
    pair.take();
    pair.owner_do(Input::FetchAsked {
        from: identity(REQUESTER).peer_id(),
        token_bytes: token.to_bytes(),
        clip_id: clip(1),
    })
    .expect("network input never errs");
    let (owner_log, _) = pair.take();
    assert!(
        !owner_log
            .iter()
            .any(|o| matches!(o, Output::ServeFetch { .. })),
        "the token is gone: {owner_log:#?}"
    );
    pair.owner_do(Input::FetchCompleted {
        to: identity(REQUESTER).peer_id(),
        token_id,
        clip_id: clip(1),
        bytes: 99,
    })
    .expect("recording a completed fetch cannot fail");
    let (owner_log, _) = pair.take();
    assert!(matches!(
        &audit_entries(&owner_log)[..],
        [AuditEntry {
            event: AuditEvent::FetchCompleted { bytes: 99, .. },
            ..
        }]
    ));
}

#[test]
fn a_cut_fetch_is_recorded_with_its_bytes_and_why_even_after_the_token_is_forgotten() {
    let (mut pair, token, mut owner_audit, _) = fetched_pair();
    let token_id = token.body().token_id;
    let cut = |bytes, why| Input::FetchCut {
        to: identity(REQUESTER).peer_id(),
        token_id,
        clip_id: clip(1),
        bytes,
        why,
    };
    pair.owner_do(Input::Revoke { token_id })
        .expect("issued token");
    pair.owner_do(cut(65_552, GrantEnd::Revoked))
        .expect("recording a cut fetch cannot fail");
    pair.advance(Duration::from_secs(3600 + 120));
    pair.owner_do(cut(7, GrantEnd::Expired))
        .expect("recording a cut fetch cannot fail");
    let (owner_log, _) = pair.take();
    let entries = audit_entries(&owner_log);
    let cuts: Vec<&AuditEvent> = entries
        .iter()
        .map(|entry| &entry.event)
        .filter(|event| matches!(event, AuditEvent::FetchCut { .. }))
        .collect();
    assert_eq!(
        cuts,
        [
            &AuditEvent::FetchCut {
                token_id,
                clip_id: clip(1),
                peer: identity(REQUESTER).peer_id(),
                bytes: 65_552,
                why: GrantEnd::Revoked,
            },
            &AuditEvent::FetchCut {
                token_id,
                clip_id: clip(1),
                peer: identity(REQUESTER).peer_id(),
                bytes: 7,
                why: GrantEnd::Expired,
            },
        ]
    );
    owner_audit.extend(entries);
    assert_eq!(verify_chain(&owner_audit), Ok(()));
}

#[test]
fn a_received_clip_is_recorded_on_the_requester_side() {
    let (mut pair, token, _, mut requester_audit) = fetched_pair();
    let token_id = token.body().token_id;
    pair.requester_do(Input::ClipReceived {
        token_id,
        clip_id: clip(1),
        bytes: 4096,
    })
    .expect("the grant is held");
    let (owner_log, requester_log) = pair.take();
    assert!(owner_log.is_empty());
    assert!(actions(&requester_log).is_empty());
    let entries = audit_entries(&requester_log);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].event,
        AuditEvent::ClipReceived {
            token_id,
            clip_id: clip(1),
            bytes: 4096,
        }
    );
    requester_audit.extend(entries);
    assert_eq!(verify_chain(&requester_audit), Ok(()));
}

#[test]
fn a_received_clip_without_a_live_grant_is_a_caller_mistake() {
    let (mut pair, token, _, _) = fetched_pair();
    let unknown = TokenId::from_bytes([0xee; 16]);
    let received = |token_id| Input::ClipReceived {
        token_id,
        clip_id: clip(1),
        bytes: 1,
    };
    assert_eq!(
        pair.requester_do(received(unknown)),
        Err(CoreError::UnknownGrant(unknown))
    );
    // The owner issued the token but holds no grant under it.
    let token_id = token.body().token_id;
    assert_eq!(
        pair.owner_do(received(token_id)),
        Err(CoreError::UnknownGrant(token_id))
    );
    // After the grant ends (expiry), it is unknown too.
    pair.advance(Duration::from_secs(3600));
    pair.take();
    assert_eq!(
        pair.requester_do(received(token_id)),
        Err(CoreError::UnknownGrant(token_id))
    );
    let (owner_log, requester_log) = pair.take();
    assert!(
        owner_log.is_empty() && requester_log.is_empty(),
        "a refused command changes nothing"
    );
}

/// An owner restarted after one request: the second request's entries chain onto the first's.
#[test]
fn a_resumed_node_continues_the_chain_of_its_durable_log() {
    let before = {
        let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
        let (request_id, _) = pair.ask_and_prompt();
        pair.owner_do(Input::Deny {
            request_id,
            message: None,
        })
        .expect("pending request");
        let (owner_log, _) = pair.take();
        audit_entries(&owner_log)
    };
    assert_eq!(before.len(), 2);
    let last = before.last().expect("two entries");

    // The restarted owner: a fresh core resumed from the log's tail.
    let mut owner = Node::new(NodeConfig::default(), identity(OWNER), [33; 32], t(10));
    owner.resume_audit(last).expect("a fresh node resumes");
    let requester = Node::new(NodeConfig::default(), identity(REQUESTER), [44; 32], t(10));
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    // Keep the harness's clips: move them into the resumed owner by replaying ClipAdded.
    for (n, start) in [(1, -900), (2, -300)] {
        owner
            .handle(
                t(10),
                Input::ClipAdded {
                    clip_id: clip(n),
                    camera: "porch".into(),
                    start: t(start),
                    end: t(start + 60),
                },
            )
            .expect("adding a clip cannot fail");
    }
    pair.owner = owner;
    pair.requester = requester;
    pair.now = t(10);
    let (request_id, _) = pair.ask_and_prompt();
    pair.owner_do(Input::Deny {
        request_id,
        message: None,
    })
    .expect("pending request");
    let (owner_log, _) = pair.take();
    let after = audit_entries(&owner_log);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].seq, 2);
    assert_eq!(after[0].prev_hash, last.hash);

    let whole: Vec<_> = before.iter().chain(&after).cloned().collect();
    assert_eq!(verify_chain(&whole), Ok(()));
    // Without the resume the new entries would start a second chain.
    assert!(verify_chain(&after).is_err());
}

#[test]
fn a_resumed_node_never_dates_an_entry_before_the_log_ends() {
    // The wall clock went back an hour while the node was down.
    let mut first = Node::new(NodeConfig::default(), identity(OWNER), [1; 32], t(3600));
    first
        .handle(t(3600), ask(identity(REQUESTER).peer_id()))
        .expect("valid request");
    let entries = audit_entries(&first.drain());
    let last = entries.last().expect("a request sent");
    let mut restarted = Node::new(NodeConfig::default(), identity(OWNER), [2; 32], t(0));
    restarted.resume_audit(last).expect("a fresh node resumes");
    assert_eq!(restarted.now(), t(3600));
    restarted
        .handle(t(0), ask(identity(REQUESTER).peer_id()))
        .expect("valid request");
    let whole: Vec<_> = entries
        .iter()
        .cloned()
        .chain(audit_entries(&restarted.drain()))
        .collect();
    assert_eq!(whole.len(), 2);
    assert_eq!(verify_chain(&whole), Ok(()));
}

#[test]
fn resuming_is_refused_after_recording_or_from_a_damaged_entry() {
    let mut source = Node::new(NodeConfig::default(), identity(OWNER), [1; 32], t(0));
    source
        .handle(t(0), ask(identity(REQUESTER).peer_id()))
        .expect("valid request");
    let last = audit_entries(&source.drain())
        .pop()
        .expect("a request sent");

    let mut node = Node::new(NodeConfig::default(), identity(OWNER), [2; 32], t(0));
    let mut edited = last.clone();
    edited.seq += 1;
    assert_eq!(
        node.resume_audit(&edited),
        Err(CoreError::AuditResume),
        "an entry whose hash does not match its fields"
    );
    let mut last_possible = last.clone();
    last_possible.seq = u64::MAX;
    last_possible.hash = AuditEntry::compute_hash(
        u64::MAX,
        last.at,
        &last_possible.prev_hash,
        &last_possible.event,
    );
    assert_eq!(
        node.resume_audit(&last_possible),
        Err(CoreError::AuditResume),
        "no seq can follow it"
    );
    node.resume_audit(&last).expect("an intact entry");
    assert_eq!(
        node.resume_audit(&last),
        Err(CoreError::AuditResume),
        "only once"
    );

    // A node that already recorded something would fork its chain.
    assert_eq!(source.resume_audit(&last), Err(CoreError::AuditResume));
}
