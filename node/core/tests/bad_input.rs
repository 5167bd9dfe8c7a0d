//! Bad input from the network: replays, forgeries, stale requests, floods, garbage, and
//! tokens presented by the wrong peer, for the wrong clip or signed by another owner. Each
//! is refused without a prompt, reported once, and never makes `handle` fail.

mod harness;

use std::time::Duration;

use harness::*;
use porchlight_core::{Input, Misbehavior, MisbehaviorCause, Node, NodeConfig, Output};
use porchlight_protocol::{
    AgreementPublic, ConsentToken, ProtocolError, RejectCode, RequestId, Signed, TokenId,
    ValidationError,
};

fn owner() -> Node {
    let mut node = Node::new(NodeConfig::default(), identity(OWNER), [11; 32], t(0));
    node.handle(
        t(0),
        Input::ClipAdded {
            clip_id: clip(1),
            camera: "porch".into(),
            start: t(-600),
            end: t(-540),
        },
    )
    .expect("adding a clip cannot fail");
    node
}

fn deliver(node: &mut Node, from: u8, bytes: Vec<u8>) -> Vec<Output> {
    let frame = Input::FrameReceived {
        from: identity(from).peer_id(),
        bytes,
    };
    node.handle(node.now(), frame)
        .expect("network input never errs");
    node.drain()
}

fn misbehaviors(log: &[Output]) -> Vec<&Misbehavior> {
    log.iter()
        .filter_map(|output| match output {
            Output::PeerMisbehaved { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_replayed_request_is_refused_without_a_second_prompt() {
    let mut node = owner();
    let bytes = raw_request(&identity(REQUESTER), node.peer_id(), t(0), 1);
    let first = deliver(&mut node, REQUESTER, bytes.clone());
    assert_eq!(prompts(&first).len(), 1);
    let second = deliver(&mut node, REQUESTER, bytes);
    assert!(prompts(&second).is_empty());
    assert!(
        matches!(misbehaviors(&second)[..], [Misbehavior::Replay(_)]),
        "{second:#?}"
    );
    assert_eq!(node.replay_entries(), 1);
    // The cache forgets the pair once the request could no longer be fresh.
    assert_eq!(node.poll_timeout(), Some(t(120)));
    node.handle(t(120), Input::Timeout).expect("timeout");
    assert_eq!(node.replay_entries(), 0);
}

#[test]
fn a_forged_signature_is_refused() {
    let mut node = owner();
    let mut bytes = raw_request(&identity(REQUESTER), node.peer_id(), t(0), 1);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let log = deliver(&mut node, REQUESTER, bytes);
    assert!(prompts(&log).is_empty());
    assert!(
        matches!(
            misbehaviors(&log)[..],
            [Misbehavior::Invalid {
                error: ProtocolError::Crypto(_),
                ..
            }]
        ),
        "{log:#?}"
    );
}

#[test]
fn a_stale_request_is_refused() {
    let mut node = owner();
    let bytes = raw_request(&identity(REQUESTER), node.peer_id(), t(-61), 1);
    let log = deliver(&mut node, REQUESTER, bytes);
    assert!(prompts(&log).is_empty());
    assert!(
        matches!(
            misbehaviors(&log)[..],
            [Misbehavior::Invalid {
                error: ProtocolError::Invalid(ValidationError::NotFresh),
                ..
            }]
        ),
        "{log:#?}"
    );
}

#[test]
fn a_request_relayed_by_another_peer_is_refused() {
    let mut node = owner();
    let bytes = raw_request(&identity(REQUESTER), node.peer_id(), t(0), 1);
    let log = deliver(&mut node, 7, bytes);
    assert!(prompts(&log).is_empty());
    assert!(matches!(
        misbehaviors(&log)[..],
        [Misbehavior::SignerMismatch { .. }]
    ));
}

#[test]
fn a_request_for_another_peer_is_ignored() {
    let mut node = owner();
    let bytes = raw_request(&identity(REQUESTER), identity(9).peer_id(), t(0), 1);
    let log = deliver(&mut node, REQUESTER, bytes);
    assert!(log.is_empty(), "{log:#?}");
}

#[test]
fn a_flood_is_rate_limited_and_reported_once() {
    let mut node = owner();
    let mut log = Vec::new();
    for nonce in 0..30 {
        let bytes = raw_request(&identity(REQUESTER), node.peer_id(), t(0), nonce);
        log.extend(deliver(&mut node, REQUESTER, bytes));
    }
    assert_eq!(prompts(&log).len(), 10, "the default burst is 10");
    assert!(
        matches!(misbehaviors(&log)[..], [Misbehavior::RateLimited]),
        "{log:#?}"
    );
    let peer = identity(REQUESTER).peer_id();
    assert_eq!(
        node.misbehavior_count(&peer, MisbehaviorCause::RateLimited),
        20
    );

    // Six seconds later one more is let through.
    node.handle(t(6), Input::Timeout).expect("timeout");
    let bytes = raw_request(&identity(REQUESTER), node.peer_id(), t(6), 200);
    assert_eq!(prompts(&deliver(&mut node, REQUESTER, bytes)).len(), 1);
}

#[test]
fn garbage_is_reported_once_and_never_panics() {
    let mut node = owner();
    let mut log = Vec::new();
    let frames: [&[u8]; 6] = [
        &[],
        &[1],
        &[9, 9, 9],
        &[1, 1, 0xff],
        &[1, 3, 0],
        &[1, 2, 0, 0],
    ];
    for frame in frames {
        log.extend(deliver(&mut node, 7, frame.to_vec()));
    }
    let reported = misbehaviors(&log);
    assert!(!reported.is_empty() && reported.len() <= 3, "{log:#?}");
    assert!(prompts(&log).is_empty());
}

#[test]
fn an_unsolicited_decision_is_reported() {
    // The owner sends a real deny to a requester that never asked.
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    pair.owner_do(Input::Deny {
        request_id,
        message: Some("no".into()),
    })
    .expect("pending request");
    let sent = pair
        .owner_log
        .iter()
        .find_map(|o| match o {
            Output::Send { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .expect("a deny with a message is sent");
    let mut stranger = Node::new(NodeConfig::default(), identity(REQUESTER), [5; 32], t(0));
    let log = deliver(&mut stranger, OWNER, sent);
    assert!(
        matches!(misbehaviors(&log)[..], [Misbehavior::Unsolicited { .. }]),
        "{log:#?}"
    );
}

/// A token for clip 1 held by the requester, issued by the pair's owner.
fn granted() -> (Pair, Signed<ConsentToken>) {
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
        .find_map(|o| match o {
            Output::Granted { token, .. } => Some(token.clone()),
            _ => None,
        })
        .expect("granted");
    pair.take();
    (pair, token)
}

fn fetch(pair: &mut Pair, from: u8, token_bytes: Vec<u8>, clip_n: u8) -> Vec<Output> {
    pair.owner_do(Input::FetchAsked {
        from: identity(from).peer_id(),
        token_bytes,
        clip_id: clip(clip_n),
    })
    .expect("network input never errs");
    pair.take().0
}

fn rejected(log: &[Output], from: u8, code: RejectCode) -> bool {
    let expected = Output::RejectFetch {
        to: identity(from).peer_id(),
        code,
    };
    actions(log).contains(&&expected) && !log.iter().any(|o| matches!(o, Output::ServeFetch { .. }))
}

#[test]
fn a_token_presented_by_a_non_grantee_is_refused() {
    let (mut pair, token) = granted();
    let log = fetch(&mut pair, 7, token.to_bytes(), 1);
    assert!(rejected(&log, 7, RejectCode::Invalid), "{log:#?}");
}

#[test]
fn a_fetch_for_a_clip_not_in_the_token_is_refused() {
    let (mut pair, token) = granted();
    let log = fetch(&mut pair, REQUESTER, token.to_bytes(), 2);
    assert!(rejected(&log, REQUESTER, RejectCode::Invalid), "{log:#?}");
}

#[test]
fn a_fetch_for_a_removed_clip_is_refused() {
    let (mut pair, token) = granted();
    pair.owner_do(Input::ClipRemoved { clip_id: clip(1) })
        .expect("remove");
    let log = fetch(&mut pair, REQUESTER, token.to_bytes(), 1);
    assert!(rejected(&log, REQUESTER, RejectCode::Invalid), "{log:#?}");
}

#[test]
fn a_tampered_token_is_refused_as_unauthenticated() {
    let (mut pair, token) = granted();
    let mut bytes = token.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    let log = fetch(&mut pair, REQUESTER, bytes, 1);
    assert!(
        rejected(&log, REQUESTER, RejectCode::Unauthenticated),
        "{log:#?}"
    );
    assert!(matches!(misbehaviors(&log)[..], [Misbehavior::BadToken(_)]));
}

#[test]
fn a_token_signed_by_another_owner_is_refused() {
    let (mut pair, _) = granted();
    let other = identity(8);
    let foreign = ConsentToken {
        token_id: TokenId::from_bytes([3; 16]),
        request_id: RequestId::from_bytes([4; 32]),
        owner: other.peer_id(),
        grantee: identity(REQUESTER).peer_id(),
        grantee_key: AgreementPublic::from_bytes([9; 32]),
        clips: vec![clip(1)],
        not_before: t(0),
        not_after: t(3600),
        retain: false,
    };
    let bytes = Signed::sign(foreign, &other)
        .expect("valid token")
        .to_bytes();
    let log = fetch(&mut pair, REQUESTER, bytes, 1);
    assert!(rejected(&log, REQUESTER, RejectCode::Invalid), "{log:#?}");
}

#[test]
fn the_owners_queue_is_bounded_and_undecided_requests_expire() {
    use porchlight_core::{BucketConfig, MAX_PENDING_REQUESTS, PENDING_FOR, RateLimits};
    // Many requesters, each within its own limits: the queue stops at its bound.
    let unlimited = BucketConfig {
        burst: u32::MAX,
        refill_every: Duration::from_millis(1),
    };
    let config = NodeConfig {
        limits: RateLimits {
            per_peer: unlimited,
            global: unlimited,
        },
        ..NodeConfig::default()
    };
    let mut owner = Node::new(config, identity(OWNER), [3; 32], t(0));
    owner
        .handle(
            t(0),
            Input::ClipAdded {
                clip_id: clip(1),
                camera: "porch".into(),
                start: t(-900),
                end: t(-840),
            },
        )
        .expect("clip");
    let extra = 5;
    for n in 0..(MAX_PENDING_REQUESTS + extra) {
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&(n as u64 + 1000).to_be_bytes());
        let requester = porchlight_protocol::SigningIdentity::from_secret_bytes(&secret);
        let frame = Input::FrameReceived {
            from: requester.peer_id(),
            bytes: raw_request(&requester, identity(OWNER).peer_id(), t(0), 1),
        };
        owner.handle(t(0), frame).expect("network input never errs");
    }
    owner.drain();
    assert_eq!(owner.pending_requests().count(), MAX_PENDING_REQUESTS);
    assert_eq!(owner.pending_overflow_drops(), extra as u64);

    // A week later, undecided requests are gone and the timer said when.
    let expiry = owner.poll_timeout().expect("a timer for the queue");
    assert!(expiry <= t(0).saturating_add(PENDING_FOR));
    owner
        .handle(t(0).saturating_add(PENDING_FOR), Input::Timeout)
        .expect("timeout");
    assert_eq!(owner.pending_requests().count(), 0);
}
