//! The consent flow between two in-memory nodes: grant, fetch, deny, silence, standing
//! rules, revocation, expiry, the audit chain and determinism.

mod harness;

use std::time::Duration;

use harness::*;
use porchlight_core::audit::{AuditEvent, RequestOutcome};
use porchlight_core::{
    CoreError, Input, NodeConfig, Output, PreAuthorization, Requester, StandingRules, verify_chain,
};
use porchlight_protocol::{AuthorityRole, ConsentToken, RejectCode, Signed};

/// Runs ask + approve(clip 1, 1 h) and returns the pair with the grantee's token.
fn granted_pair(retain: bool) -> (Pair, Signed<ConsentToken>) {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    pair.owner_do(Input::Approve {
        request_id,
        duration: Duration::from_secs(3600),
        clips: Some(vec![clip(1)]),
        retain,
    })
    .expect("pending request");
    let token = granted_token(&pair.requester_log);
    (pair, token)
}

#[test]
fn grant_flow_end_to_end() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, summary) = pair.ask_and_prompt();
    assert_eq!(summary.requester_peer, identity(REQUESTER).peer_id());
    assert_eq!(
        summary.requester,
        Requester::Unverified {
            presented_credentials: false
        }
    );
    let offered: Vec<_> = summary.matching_clips.iter().map(|c| c.clip_id).collect();
    assert_eq!(
        offered,
        vec![clip(1), clip(2)],
        "clip 3 is outside the window"
    );
    assert_eq!(summary.case_number.as_deref(), Some("SFD-42"));

    pair.owner_do(Input::Approve {
        request_id,
        duration: Duration::from_secs(3600),
        clips: Some(vec![clip(1)]),
        retain: false,
    })
    .expect("pending request");
    assert!(pair.owner.pending_requests().next().is_none());

    let token = granted_token(&pair.requester_log);
    let body = token.body();
    assert_eq!(body.request_id, request_id);
    assert_eq!(body.owner, identity(OWNER).peer_id());
    assert_eq!(body.grantee, identity(REQUESTER).peer_id());
    assert_eq!(body.clips, vec![clip(1)]);
    assert_eq!((body.not_before, body.not_after), (t(0), t(3600)));
    let reply_public = pair
        .requester
        .reply_secret(&request_id)
        .expect("the requester remembers its reply key")
        .public();
    assert_eq!(body.grantee_key, reply_public);
    assert!(pair.owner_log.iter().any(|o| matches!(
        o,
        Output::TokenIssued { token_id, .. } if *token_id == body.token_id
    )));

    pair.owner_do(Input::FetchAsked {
        from: identity(REQUESTER).peer_id(),
        token_bytes: token.to_bytes(),
        clip_id: clip(1),
    })
    .expect("network input never errs");
    let served = pair
        .owner_log
        .iter()
        .rev()
        .find(|o| matches!(o, Output::ServeFetch { .. }));
    assert_eq!(
        served,
        Some(&Output::ServeFetch {
            to: identity(REQUESTER).peer_id(),
            clip_id: clip(1),
            token_id: body.token_id,
            grantee_key: reply_public,
            not_after: body.not_after,
        })
    );

    let (owner_log, requester_log) = pair.take();
    let owner_audit = audit_entries(&owner_log);
    assert_eq!(verify_chain(&owner_audit), Ok(()));
    assert!(matches!(
        owner_audit[0].event,
        AuditEvent::RequestReceived {
            outcome: RequestOutcome::Prompted,
            ..
        }
    ));
    assert!(matches!(
        owner_audit[1].event,
        AuditEvent::Granted { by_rule: false, .. }
    ));
    assert!(matches!(
        owner_audit[2].event,
        AuditEvent::FetchServed { .. }
    ));
    assert_eq!(verify_chain(&audit_entries(&requester_log)), Ok(()));
}

#[test]
fn approving_without_clips_grants_every_matching_clip() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    pair.owner_do(Input::Approve {
        request_id,
        duration: Duration::from_secs(90 * 24 * 3600),
        clips: None,
        retain: false,
    })
    .expect("pending request");
    let token = granted_token(&pair.requester_log);
    assert_eq!(token.body().clips, vec![clip(1), clip(2)]);
    assert_eq!(
        token.body().not_after,
        t(30 * 24 * 3600),
        "capped at 30 days"
    );
}

#[test]
fn deny_is_silent_by_default() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    pair.take();
    pair.owner_do(Input::Deny {
        request_id,
        message: None,
    })
    .expect("pending request");
    let (owner_log, requester_log) = pair.take();
    assert!(actions(&owner_log).is_empty(), "{owner_log:#?}");
    assert!(requester_log.is_empty(), "{requester_log:#?}");
    assert!(matches!(
        audit_entries(&owner_log)[..],
        [porchlight_core::AuditEntry {
            event: AuditEvent::Denied {
                message_sent: false,
                ..
            },
            ..
        }]
    ));
}

#[test]
fn deny_with_a_message_tells_the_requester() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    pair.take();
    pair.owner_do(Input::Deny {
        request_id,
        message: Some("camera faces the yard, not the street".into()),
    })
    .expect("pending request");
    let (_, requester_log) = pair.take();
    assert_eq!(
        actions(&requester_log),
        vec![&Output::Denied {
            request_id,
            owner: identity(OWNER).peer_id(),
            message: Some("camera faces the yard, not the street".into()),
        }]
    );
}

#[test]
fn no_matching_clips_is_silent() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    for n in 1..=3 {
        pair.owner_do(Input::ClipRemoved { clip_id: clip(n) })
            .expect("remove");
    }
    pair.requester_do(ask(pair.owner.peer_id()))
        .expect("valid request");
    assert!(actions(&pair.owner_log).is_empty(), "{:#?}", pair.owner_log);
    assert!(matches!(
        audit_entries(&pair.owner_log)[..],
        [porchlight_core::AuditEntry {
            event: AuditEvent::RequestReceived {
                outcome: RequestOutcome::NoMatchingClips,
                ..
            },
            ..
        }]
    ));
}

#[test]
fn caller_mistakes_are_typed_errors() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    let approve = |clips, duration| Input::Approve {
        request_id,
        duration,
        clips,
        retain: false,
    };
    assert_eq!(
        pair.owner_do(approve(Some(vec![clip(3)]), Duration::from_secs(60))),
        Err(CoreError::ClipNotOffered {
            request: request_id,
            clip: clip(3)
        })
    );
    assert_eq!(
        pair.owner_do(approve(Some(vec![]), Duration::from_secs(60))),
        Err(CoreError::NoClips)
    );
    assert_eq!(
        pair.owner_do(approve(None, Duration::ZERO)),
        Err(CoreError::ZeroDuration)
    );
    let other = porchlight_protocol::RequestId::from_bytes([5; 32]);
    assert_eq!(
        pair.owner_do(Input::Deny {
            request_id: other,
            message: None
        }),
        Err(CoreError::UnknownRequest(other))
    );
    // None of that changed anything: the request still waits.
    assert_eq!(pair.owner.pending_requests().count(), 1);
}

#[test]
fn verified_and_unverified_authorities_are_summarized_apart() {
    let root = identity(ROOT);
    let requester_id = identity(REQUESTER).peer_id();
    let chain = vec![credential(&root, requester_id, AuthorityRole::Fire)];
    let requester_config = NodeConfig {
        credential_chain: chain,
        ..NodeConfig::default()
    };

    let trusting = NodeConfig {
        trust_roots: vec![root.peer_id()],
        ..NodeConfig::default()
    };
    let mut pair = Pair::new(trusting, requester_config.clone());
    let (_, summary) = pair.ask_and_prompt();
    match summary.requester {
        Requester::Verified(authority) => {
            assert_eq!(authority.display_name, "Springfield Fire Department");
            assert_eq!(authority.issuer, root.peer_id());
            assert_eq!(authority.role, AuthorityRole::Fire);
        }
        other => panic!("expected verified, got {other:?}"),
    }

    // The same chain, read by a node that does not trust the root: unverified, no name.
    let mut pair = Pair::new(NodeConfig::default(), requester_config);
    let (_, summary) = pair.ask_and_prompt();
    assert_eq!(
        summary.requester,
        Requester::Unverified {
            presented_credentials: true
        }
    );
}

#[test]
fn pre_authorization_grants_without_a_prompt_and_notifies() {
    let root = identity(ROOT);
    let requester_id = identity(REQUESTER).peer_id();
    let owner_config = NodeConfig {
        trust_roots: vec![root.peer_id()],
        rules: StandingRules {
            pre_authorizations: vec![PreAuthorization {
                role: AuthorityRole::Fire,
                max_lookback: Duration::from_secs(30 * 60),
                grant_for: Duration::from_secs(2 * 3600),
            }],
            ..StandingRules::default()
        },
        ..NodeConfig::default()
    };
    let requester_config = NodeConfig {
        credential_chain: vec![credential(&root, requester_id, AuthorityRole::Fire)],
        ..NodeConfig::default()
    };
    let mut pair = Pair::new(owner_config, requester_config);
    pair.requester_do(ask(pair.owner.peer_id()))
        .expect("valid request");
    assert!(prompts(&pair.owner_log).is_empty());
    let notified = pair
        .owner_log
        .iter()
        .find_map(|o| match o {
            Output::NotifyOwner { token_id, .. } => Some(*token_id),
            _ => None,
        })
        .expect("the owner is notified");
    let token = granted_token(&pair.requester_log);
    assert_eq!(token.body().token_id, notified);
    // Clip 1 ended 14 minutes ago and clip 2 four minutes ago: both in the last 30 minutes.
    assert_eq!(token.body().clips, vec![clip(1), clip(2)]);
    assert_eq!(token.body().not_after, t(2 * 3600));
}

#[test]
fn pre_authorization_does_not_apply_to_another_role() {
    let root = identity(ROOT);
    let owner_config = NodeConfig {
        trust_roots: vec![root.peer_id()],
        rules: StandingRules {
            pre_authorizations: vec![PreAuthorization {
                role: AuthorityRole::Fire,
                max_lookback: Duration::from_secs(30 * 60),
                grant_for: Duration::from_secs(3600),
            }],
            ..StandingRules::default()
        },
        ..NodeConfig::default()
    };
    let requester_config = NodeConfig {
        credential_chain: vec![credential(
            &root,
            identity(REQUESTER).peer_id(),
            AuthorityRole::Police,
        )],
        ..NodeConfig::default()
    };
    let mut pair = Pair::new(owner_config, requester_config);
    pair.ask_and_prompt();
    assert!(
        !pair
            .requester_log
            .iter()
            .any(|o| matches!(o, Output::Granted { .. }))
    );
}

#[test]
fn standing_denials_and_blocks_are_silent() {
    let cases = [
        (
            StandingRules {
                deny_unverified: true,
                ..StandingRules::default()
            },
            RequestOutcome::DeniedUnverified,
        ),
        (
            StandingRules {
                blocked: [identity(REQUESTER).peer_id()].into(),
                ..StandingRules::default()
            },
            RequestOutcome::Blocked,
        ),
    ];
    for (rules, outcome) in cases {
        let owner_config = NodeConfig {
            rules,
            ..NodeConfig::default()
        };
        let mut pair = Pair::new(owner_config, NodeConfig::default());
        pair.requester_do(ask(pair.owner.peer_id()))
            .expect("valid request");
        assert!(actions(&pair.owner_log).is_empty(), "{:#?}", pair.owner_log);
        let audit = audit_entries(&pair.owner_log);
        assert!(
            matches!(&audit[..], [entry] if matches!(entry.event, AuditEvent::RequestReceived { outcome: o, .. } if o == outcome)),
            "{audit:#?}"
        );
    }
}

#[test]
fn deny_without_case_number_rule() {
    let owner_config = NodeConfig {
        rules: StandingRules {
            deny_without_case_number: true,
            ..StandingRules::default()
        },
        ..NodeConfig::default()
    };
    let mut pair = Pair::new(owner_config, NodeConfig::default());
    pair.requester_do(Input::SendRequest {
        target: porchlight_protocol::RequestTarget::Peer(pair.owner.peer_id()),
        window: window(),
        reason: "lost cat".into(),
        case_number: None,
        access: Duration::from_secs(60),
    })
    .expect("valid request");
    assert!(prompts(&pair.owner_log).is_empty());
    // With a case number the same node prompts.
    pair.ask_and_prompt();
}

#[test]
fn revoking_refuses_fetches_and_deletes_at_the_grantee() {
    let (mut pair, token) = granted_pair(false);
    let token_id = token.body().token_id;
    pair.take();
    pair.owner_do(Input::Revoke { token_id })
        .expect("issued token");
    let (_, requester_log) = pair.take();
    assert!(actions(&requester_log).contains(&&Output::DeleteReceived { token_id }));
    assert!(pair.owner.is_revoked(&token_id));
    assert_eq!(
        pair.owner_do(Input::Revoke { token_id }),
        Err(CoreError::AlreadyRevoked(token_id))
    );

    pair.owner_do(Input::FetchAsked {
        from: identity(REQUESTER).peer_id(),
        token_bytes: token.to_bytes(),
        clip_id: clip(1),
    })
    .expect("network input never errs");
    let (owner_log, _) = pair.take();
    assert_eq!(
        actions(&owner_log),
        vec![&Output::RejectFetch {
            to: identity(REQUESTER).peer_id(),
            code: RejectCode::Invalid
        }]
    );
}

#[test]
fn a_retained_grant_is_not_deleted_on_revocation() {
    let (mut pair, token) = granted_pair(true);
    pair.take();
    pair.owner_do(Input::Revoke {
        token_id: token.body().token_id,
    })
    .expect("issued token");
    let (_, requester_log) = pair.take();
    assert!(actions(&requester_log).is_empty(), "{requester_log:#?}");
    assert!(
        audit_entries(&requester_log)
            .iter()
            .any(|e| matches!(e.event, AuditEvent::GrantEnded { deleted: false, .. }))
    );
}

#[test]
fn expiry_deletes_at_the_grantee_and_refuses_fetches() {
    let (mut pair, token) = granted_pair(false);
    let token_id = token.body().token_id;
    pair.take();
    assert_eq!(pair.requester.poll_timeout(), Some(t(3600)));
    pair.advance(Duration::from_secs(3600));
    let (_, requester_log) = pair.take();
    assert_eq!(
        actions(&requester_log),
        vec![&Output::DeleteReceived { token_id }]
    );

    // Past the skew, the owner refuses the token as out of its window.
    pair.advance(Duration::from_secs(61));
    pair.owner_do(Input::FetchAsked {
        from: identity(REQUESTER).peer_id(),
        token_bytes: token.to_bytes(),
        clip_id: clip(1),
    })
    .expect("network input never errs");
    let (owner_log, _) = pair.take();
    assert_eq!(
        actions(&owner_log),
        vec![&Output::RejectFetch {
            to: identity(REQUESTER).peer_id(),
            code: RejectCode::OutOfWindow
        }]
    );
}

#[test]
fn time_never_goes_backwards() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    pair.owner.handle(t(100), Input::Timeout).expect("timeout");
    pair.owner.handle(t(50), Input::Timeout).expect("timeout");
    assert_eq!(pair.owner.now(), t(100));
}

/// Runs a scripted exchange and returns every output of both nodes, in order.
fn scripted_run() -> Vec<Output> {
    let (mut pair, token) = granted_pair(false);
    pair.owner_do(Input::FetchAsked {
        from: identity(REQUESTER).peer_id(),
        token_bytes: token.to_bytes(),
        clip_id: clip(1),
    })
    .expect("network input never errs");
    pair.owner_do(Input::Revoke {
        token_id: token.body().token_id,
    })
    .expect("issued token");
    pair.advance(Duration::from_secs(7200));
    let (mut owner_log, requester_log) = pair.take();
    owner_log.extend(requester_log);
    owner_log
}

#[test]
fn same_seed_and_inputs_give_identical_outputs() {
    let first = scripted_run();
    let second = scripted_run();
    assert!(first.len() > 10);
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
    assert_eq!(first, second);
}
