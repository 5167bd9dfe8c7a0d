//! A node restarted from its durable state keeps its word: grants it made still serve,
//! revocations still refuse, a replay is still a replay, a pending grant still arrives,
//! and received footage is still deleted at expiry.

mod harness;

use std::time::Duration;

use harness::*;
use porchlight_core::{CoreError, Input, Node, NodeConfig, Output};
use porchlight_protocol::{ConsentToken, RejectCode, Signed};

/// A new process: a node with the same key and config but a fresh seed, given back the
/// durable state and the clips of the old one.
fn restarted(old: &Node, me: u8, now: porchlight_protocol::Timestamp) -> Node {
    let mut node = Node::new(NodeConfig::default(), identity(me), [99; 32], now);
    node.restore(old.durable_state()).expect("a fresh node");
    for (n, start) in [(1, -900), (2, -300), (3, -7200)] {
        node.handle(
            now,
            Input::ClipAdded {
                clip_id: clip(n),
                camera: "porch".into(),
                start: t(start),
                end: t(start + 60),
            },
        )
        .expect("adding a clip cannot fail");
    }
    node.drain();
    node
}

fn fetch(node: &mut Node, token: &Signed<ConsentToken>) -> Vec<Output> {
    node.handle(
        t(10),
        Input::FetchAsked {
            from: identity(REQUESTER).peer_id(),
            token_bytes: token.to_bytes(),
            clip_id: clip(1),
        },
    )
    .expect("network input never errs");
    node.drain()
}

#[test]
fn an_owner_restarted_from_its_state_still_serves_its_grants_and_refuses_revoked_ones() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    let generation = pair.owner.durable_generation();
    pair.owner_do(Input::Approve {
        request_id,
        duration: Duration::from_secs(3600),
        clips: Some(vec![clip(1)]),
        retain: false,
    })
    .expect("pending request");
    assert!(
        pair.owner.durable_generation() > generation,
        "issuing changes the durable state"
    );
    let token = granted_token(&pair.requester_log);

    let mut owner = restarted(&pair.owner, OWNER, t(5));
    assert!(
        fetch(&mut owner, &token)
            .iter()
            .any(|o| matches!(o, Output::ServeFetch { .. })),
        "a grant made before the restart still serves"
    );

    owner
        .handle(
            t(20),
            Input::Revoke {
                token_id: token.body().token_id,
            },
        )
        .expect("the restored token can be revoked");
    owner.drain();
    let mut again = restarted(&owner, OWNER, t(30));
    assert!(again.is_revoked(&token.body().token_id));
    let outputs = fetch(&mut again, &token);
    assert!(
        outputs.iter().any(|o| matches!(
            o,
            Output::RejectFetch {
                code: RejectCode::Invalid,
                ..
            }
        )),
        "a revocation survives the restart: {outputs:#?}"
    );
}

#[test]
fn a_replay_after_a_restart_is_still_a_replay() {
    let mut owner = Node::new(NodeConfig::default(), identity(OWNER), [1; 32], t(0));
    let request = raw_request(&identity(REQUESTER), identity(OWNER).peer_id(), t(0), 7);
    let frame = |bytes: &Vec<u8>| Input::FrameReceived {
        from: identity(REQUESTER).peer_id(),
        bytes: bytes.clone(),
    };
    owner.handle(t(0), frame(&request)).expect("network input");
    owner.drain();
    assert_eq!(owner.replay_entries(), 1);

    let mut restarted = Node::new(NodeConfig::default(), identity(OWNER), [2; 32], t(1));
    restarted.restore(owner.durable_state()).expect("fresh");
    assert_eq!(restarted.replay_entries(), 1);
    restarted
        .handle(t(1), frame(&request))
        .expect("network input");
    let outputs = restarted.drain();
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::PeerMisbehaved { .. })),
        "the replay is refused: {outputs:#?}"
    );
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::PromptOwner { .. }))
    );
}

#[test]
fn a_requester_restarted_from_its_state_accepts_its_grant_and_deletes_it_at_expiry() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    // The requester restarts while the owner is deciding.
    let mut requester = Node::new(NodeConfig::default(), identity(REQUESTER), [5; 32], t(1));
    requester
        .restore(pair.requester.durable_state())
        .expect("fresh");
    pair.requester = requester;
    pair.owner_do(Input::Approve {
        request_id,
        duration: Duration::from_secs(600),
        clips: None,
        retain: false,
    })
    .expect("pending request");
    let token = granted_token(&pair.requester_log);
    let token_id = token.body().token_id;

    // And restarts again while holding the grant: expiry still deletes.
    let mut requester = Node::new(NodeConfig::default(), identity(REQUESTER), [6; 32], t(2));
    requester
        .restore(pair.requester.durable_state())
        .expect("fresh");
    assert_eq!(requester.poll_timeout(), Some(t(600)));
    requester.handle(t(600), Input::Timeout).expect("timeout");
    assert!(
        requester
            .drain()
            .contains(&Output::DeleteReceived { token_id })
    );
}

#[test]
fn restoring_into_a_node_that_already_ran_is_refused() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    pair.ask_and_prompt();
    let state = pair.requester.durable_state();
    assert_eq!(
        pair.requester.restore(state),
        Err(CoreError::RestoreTooLate)
    );
}

#[test]
fn a_node_restarted_with_its_clock_set_back_resumes_from_where_its_clock_was() {
    let mut owner = Node::new(NodeConfig::default(), identity(OWNER), [1; 32], t(0));
    let request = raw_request(&identity(REQUESTER), identity(OWNER).peer_id(), t(0), 7);
    let frame = Input::FrameReceived {
        from: identity(REQUESTER).peer_id(),
        bytes: request,
    };
    owner.handle(t(0), frame.clone()).expect("network input");
    owner.drain();
    // Long after the request's freshness window, its nonce is forgotten.
    owner
        .handle(t(600), Input::Timeout)
        .expect("timeouts never err");
    owner.drain();
    assert_eq!(owner.replay_entries(), 0);

    // Restarted with the wall clock back at t(0): the node's own time stays at t(600), so the
    // forgotten request is stale, not new, and an approval cannot date a token before what
    // the node already did.
    let mut restarted = Node::new(NodeConfig::default(), identity(OWNER), [2; 32], t(0));
    restarted.restore(owner.durable_state()).expect("fresh");
    assert_eq!(restarted.now(), t(600));
    restarted.handle(t(0), frame).expect("network input");
    let outputs = restarted.drain();
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::PromptOwner { .. })),
        "a request whose nonce was forgotten was accepted again: {outputs:#?}"
    );
    assert_eq!(restarted.replay_entries(), 0);
}
