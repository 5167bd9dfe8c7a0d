//! `Node::undo_step`: a step the shell could not make durable is undone whole, so the core
//! never disagrees with the durable log about the chain's head, and the owner's retried
//! command, or the peer's resent frame, finds the node as it was.

mod harness;

use std::time::Duration;

use harness::*;
use porchlight_core::audit::AuditEvent;
use porchlight_core::{AuditEntry, Input, Node, NodeConfig, Output, verify_chain};
use porchlight_protocol::{PeerId, RequestId, Timestamp};

/// What a step may change and an undo must put back, in comparable form.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    generation: u64,
    pending: Vec<RequestId>,
    issued: Vec<String>,
    outgoing: Vec<String>,
    received: Vec<String>,
    nonces: Vec<String>,
}

fn fingerprint(node: &Node) -> Fingerprint {
    let state = node.durable_state();
    Fingerprint {
        generation: node.durable_generation(),
        pending: node.pending_requests().map(|(id, _)| *id).collect(),
        issued: state.issued.iter().map(|t| format!("{t:?}")).collect(),
        outgoing: state
            .outgoing
            .iter()
            .map(|o| format!("{} {:?}", o.request_id, o.target))
            .collect(),
        received: state.received.iter().map(|g| format!("{g:?}")).collect(),
        nonces: state.seen_nonces.iter().map(|n| format!("{n:?}")).collect(),
    }
}

fn entries(outputs: &[Output]) -> Vec<AuditEntry> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Audit(entry) => Some(entry.clone()),
            _ => None,
        })
        .collect()
}

/// A shell whose disk fails once for every step: it handles `input`, "fails to write",
/// undoes, checks the node is as before, then handles `input` again and returns that
/// step's outputs, checking the retried entries continue the chain exactly where the
/// failed ones would have.
fn fail_once_then_retry(node: &mut Node, now: Timestamp, input: Input) -> Vec<Output> {
    let before = fingerprint(node);
    let _ = node.handle(now, input.clone());
    let failed = node.drain();
    node.undo_step();
    assert_eq!(fingerprint(node), before, "undo of {input:?}");
    let _ = node.handle(now, input.clone());
    let retried = node.drain();
    let (failed, retried_entries) = (entries(&failed), entries(&retried));
    assert_eq!(failed.len(), retried_entries.len(), "{input:?}");
    for (a, b) in failed.iter().zip(&retried_entries) {
        assert_eq!((a.seq, a.prev_hash), (b.seq, b.prev_hash), "{input:?}");
    }
    retried
}

fn frames_to(outputs: &[Output], peer: PeerId) -> Vec<Vec<u8>> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send { to, bytes } if *to == peer => Some(bytes.clone()),
            Output::PublishArea { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

/// Delivers frames to `node`, each through a failed and a retried step.
fn deliver(node: &mut Node, log: &mut Vec<Output>, from: PeerId, frames: Vec<Vec<u8>>) {
    for bytes in frames {
        log.extend(fail_once_then_retry(
            node,
            t(1),
            Input::FrameReceived { from, bytes },
        ));
    }
}

fn nodes() -> (Node, Node) {
    let pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    (pair.owner, pair.requester)
}

#[test]
fn every_step_of_the_flow_undone_leaves_both_nodes_as_they_were() {
    let (mut owner, mut requester) = nodes();
    let (owner_id, requester_id) = (owner.peer_id(), requester.peer_id());
    let mut owner_log = Vec::new();
    let mut requester_log = Vec::new();

    // Two requests: one to approve, then revoke; one to deny.
    for _ in 0..2 {
        let sent = fail_once_then_retry(&mut requester, t(0), ask(owner_id));
        deliver(
            &mut owner,
            &mut owner_log,
            requester_id,
            frames_to(&sent, owner_id),
        );
        requester_log.extend(sent);
    }
    let pending: Vec<RequestId> = owner.pending_requests().map(|(id, _)| *id).collect();
    assert_eq!(pending.len(), 2);

    let approved = fail_once_then_retry(
        &mut owner,
        t(2),
        Input::Approve {
            request_id: pending[0],
            duration: Duration::from_secs(600),
            clips: None,
            retain: false,
        },
    );
    deliver(
        &mut requester,
        &mut requester_log,
        owner_id,
        frames_to(&approved, requester_id),
    );
    owner_log.extend(approved);
    let token = granted_token(&requester_log);

    owner_log.extend(fail_once_then_retry(
        &mut owner,
        t(3),
        Input::Deny {
            request_id: pending[1],
            message: Some("not this time".into()),
        },
    ));
    owner_log.extend(fail_once_then_retry(
        &mut owner,
        t(4),
        Input::FetchAsked {
            from: requester_id,
            token_bytes: token.to_bytes(),
            clip_id: clip(1),
        },
    ));
    let revoked = fail_once_then_retry(
        &mut owner,
        t(5),
        Input::Revoke {
            token_id: token.body().token_id,
        },
    );
    deliver(
        &mut requester,
        &mut requester_log,
        owner_id,
        frames_to(&revoked, requester_id),
    );
    owner_log.extend(revoked);
    // Timers: the owner forgets the token and the nonces, both through undo and retry.
    for node in [&mut owner, &mut requester] {
        fail_once_then_retry(node, t(7200), Input::Timeout);
    }
    assert!(owner.durable_state().issued.is_empty());

    // What the retried steps recorded is one unbroken chain on each side.
    for log in [&owner_log, &requester_log] {
        assert_eq!(verify_chain(&entries(log)), Ok(()));
    }
    let recorded = entries(&owner_log);
    let has = |wanted: fn(&AuditEvent) -> bool| recorded.iter().any(|e| wanted(&e.event));
    assert!(has(|e| matches!(e, AuditEvent::Granted { .. })));
    assert!(has(|e| matches!(e, AuditEvent::Denied { .. })));
    assert!(has(|e| matches!(e, AuditEvent::FetchServed { .. })));
    assert!(has(|e| matches!(e, AuditEvent::Revoked { .. })));
    assert!(
        entries(&requester_log)
            .iter()
            .any(|e| matches!(e.event, AuditEvent::GrantEnded { .. }))
    );
}

#[test]
fn an_undone_approval_leaves_the_request_pending_and_sends_nothing_later() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    let approve = Input::Approve {
        request_id,
        duration: Duration::from_secs(600),
        clips: None,
        retain: false,
    };
    pair.owner
        .handle(pair.now, approve.clone())
        .expect("pending");
    let failed = pair.owner.drain();
    assert!(
        failed
            .iter()
            .any(|o| matches!(o, Output::TokenIssued { .. }))
    );
    pair.owner.undo_step();
    // Undone: still pending, nothing queued, no token known.
    assert_eq!(pair.owner.pending_requests().count(), 1);
    assert!(pair.owner.drain().is_empty());
    assert!(pair.owner.durable_state().issued.is_empty());
    // The owner's retry works.
    pair.owner_do(approve)
        .expect("still pending after the undo");
    assert!(
        pair.requester_log
            .iter()
            .any(|o| matches!(o, Output::Granted { .. }))
    );
}

#[test]
fn an_undone_revocation_leaves_the_token_live_and_can_be_retried() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    pair.owner_do(Input::Approve {
        request_id,
        duration: Duration::from_secs(600),
        clips: Some(vec![clip(1)]),
        retain: false,
    })
    .expect("pending");
    let token_id = granted_token(&pair.requester_log).body().token_id;
    pair.owner
        .handle(pair.now, Input::Revoke { token_id })
        .expect("issued here");
    pair.owner.drain();
    pair.owner.undo_step();
    assert!(!pair.owner.is_revoked(&token_id));
    // The owner was told the revocation failed; the retry must not say "already revoked".
    pair.owner_do(Input::Revoke { token_id })
        .expect("the undone revocation can be made again");
    assert!(pair.owner.is_revoked(&token_id));
}

#[test]
fn an_undone_request_from_a_peer_is_not_a_replay_when_it_comes_again() {
    let (mut owner, mut requester) = nodes();
    requester.handle(t(0), ask(owner.peer_id())).expect("valid");
    let frames = frames_to(&requester.drain(), owner.peer_id());
    let frame = Input::FrameReceived {
        from: requester.peer_id(),
        bytes: frames[0].clone(),
    };
    owner.handle(t(0), frame.clone()).expect("network input");
    assert!(
        owner
            .drain()
            .iter()
            .any(|o| matches!(o, Output::PromptOwner { .. }))
    );
    owner.undo_step();
    assert_eq!(owner.pending_requests().count(), 0);
    owner.handle(t(0), frame).expect("network input");
    let again = owner.drain();
    assert!(
        again
            .iter()
            .any(|o| matches!(o, Output::PromptOwner { .. })),
        "{again:#?}"
    );
}

#[test]
fn undo_without_a_step_or_twice_changes_nothing() {
    let (mut owner, _) = nodes();
    let before = fingerprint(&owner);
    owner.undo_step();
    owner.undo_step();
    assert_eq!(fingerprint(&owner), before);
}

#[test]
fn an_undone_fetch_refusal_is_recorded_again_not_only_counted() {
    let (mut owner, _) = nodes();
    let junk = Input::FetchAsked {
        from: identity(9).peer_id(),
        token_bytes: b"not a token".to_vec(),
        clip_id: clip(1),
    };
    let refused = |outputs: &[Output]| {
        entries(outputs)
            .iter()
            .any(|e| matches!(e.event, AuditEvent::FetchRefused { .. }))
    };
    owner.handle(t(1), junk.clone()).expect("network input");
    assert!(refused(&owner.drain()));
    owner.undo_step();
    owner.handle(t(1), junk).expect("network input");
    assert!(
        refused(&owner.drain()),
        "the first refusal's entry was lost with the undone step"
    );
}
