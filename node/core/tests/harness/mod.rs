//! A tiny in-memory pair of nodes for the integration tests (quinn's `Pair`, reduced): an
//! owner and a requester on one virtual clock, with every `Send` between them delivered by
//! hand, and every output kept in a per-node log for the test to inspect.

// Each test file uses a different subset of the helpers.
#![allow(dead_code)]

use std::time::Duration;

use porchlight_core::{CoreError, Input, Node, NodeConfig, Output, RequestSummary};
use porchlight_protocol::{
    AgreementPublic, AuthorityCredential, AuthorityRole, ClipId, FootageRequest, PeerId, RequestId,
    RequestTarget, Signed, SigningIdentity, TimeWindow, Timestamp,
};

/// 2023-11-14T22:13:20Z: an arbitrary fixed "now".
pub const T0: u64 = 1_700_000_000_000;

/// `T0` plus (or minus) whole seconds.
pub fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0.saturating_add_signed(secs * 1000))
}

pub fn identity(n: u8) -> SigningIdentity {
    SigningIdentity::from_secret_bytes(&[n; 32])
}

pub fn clip(n: u8) -> ClipId {
    ClipId::from_bytes([n; 32])
}

pub const OWNER: u8 = 1;
pub const REQUESTER: u8 = 2;
pub const ROOT: u8 = 100;

/// A signed credential for `subject` from `issuer`, valid around `T0`.
pub fn credential(issuer: &SigningIdentity, subject: PeerId, role: AuthorityRole) -> Vec<u8> {
    let body = AuthorityCredential {
        issuer: issuer.peer_id(),
        subject,
        display_name: "Springfield Fire Department".into(),
        jurisdiction: "Springfield".into(),
        role,
        not_before: t(-3600),
        not_after: t(365 * 24 * 3600),
        may_issue: false,
    };
    Signed::sign(body, issuer)
        .expect("valid credential")
        .to_bytes()
}

/// A request signed by `signer`, built by hand (for bad-input tests).
pub fn raw_request(
    signer: &SigningIdentity,
    target: PeerId,
    issued_at: Timestamp,
    nonce: u8,
) -> Vec<u8> {
    let body = FootageRequest {
        requester: signer.peer_id(),
        target: RequestTarget::Peer(target),
        window: window(),
        reason: "hit and run".into(),
        case_number: None,
        access_ms: 3_600_000,
        nonce: [nonce; 16],
        issued_at,
        reply_key: AgreementPublic::from_bytes([9; 32]),
        credential_chain: Vec::new(),
    };
    Signed::sign(body, signer)
        .expect("valid request")
        .to_bytes()
}

/// The window every test asks about: the 20 minutes before `T0`.
pub fn window() -> TimeWindow {
    TimeWindow {
        from: t(-1200),
        to: t(0),
    }
}

pub fn ask(target: PeerId) -> Input {
    Input::SendRequest {
        target: RequestTarget::Peer(target),
        window: window(),
        reason: "hit and run on Elm Street".into(),
        case_number: Some("SFD-42".into()),
        access: Duration::from_secs(3600),
    }
}

#[derive(Debug)]
pub struct Pair {
    pub owner: Node,
    pub requester: Node,
    pub now: Timestamp,
    pub owner_log: Vec<Output>,
    pub requester_log: Vec<Output>,
}

impl Pair {
    /// An owner holding clips 1 and 2 inside [`window`] and clip 3 well before it.
    pub fn new(owner_config: NodeConfig, requester_config: NodeConfig) -> Pair {
        let now = t(0);
        let mut owner = Node::new(owner_config, identity(OWNER), [11; 32], now);
        let requester = Node::new(requester_config, identity(REQUESTER), [22; 32], now);
        for (n, start) in [(1, -900), (2, -300), (3, -7200)] {
            owner
                .handle(
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
        Pair {
            owner,
            requester,
            now,
            owner_log: Vec::new(),
            requester_log: Vec::new(),
        }
    }

    pub fn owner_do(&mut self, input: Input) -> Result<(), CoreError> {
        let result = self.owner.handle(self.now, input);
        self.step();
        result
    }

    pub fn requester_do(&mut self, input: Input) -> Result<(), CoreError> {
        let result = self.requester.handle(self.now, input);
        self.step();
        result
    }

    /// Drains both nodes, logging every output and delivering sends, until quiet.
    pub fn step(&mut self) {
        loop {
            let mut moved = false;
            let (owner_id, requester_id) = (self.owner.peer_id(), self.requester.peer_id());
            for output in self.owner.drain() {
                if let Output::Send { to, bytes } = &output {
                    if *to == requester_id {
                        let frame = Input::FrameReceived {
                            from: owner_id,
                            bytes: bytes.clone(),
                        };
                        self.requester
                            .handle(self.now, frame)
                            .expect("network input never errs");
                        moved = true;
                    }
                }
                self.owner_log.push(output);
            }
            for output in self.requester.drain() {
                let bytes = match &output {
                    Output::Send { to, bytes } if *to == owner_id => Some(bytes.clone()),
                    Output::PublishArea { bytes, .. } => Some(bytes.clone()),
                    _ => None,
                };
                if let Some(bytes) = bytes {
                    let frame = Input::FrameReceived {
                        from: requester_id,
                        bytes,
                    };
                    self.owner
                        .handle(self.now, frame)
                        .expect("network input never errs");
                    moved = true;
                }
                self.requester_log.push(output);
            }
            if !moved {
                break;
            }
        }
    }

    /// Moves the clock forward, firing both nodes' due timers.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        for node in [&mut self.owner, &mut self.requester] {
            if node.poll_timeout().is_some_and(|at| at <= self.now) {
                node.handle(self.now, Input::Timeout)
                    .expect("timeouts never err");
            }
        }
        self.step();
    }

    /// Takes both logs, leaving them empty.
    pub fn take(&mut self) -> (Vec<Output>, Vec<Output>) {
        (
            std::mem::take(&mut self.owner_log),
            std::mem::take(&mut self.requester_log),
        )
    }

    /// Sends [`ask`] from the requester and returns the owner's prompt.
    pub fn ask_and_prompt(&mut self) -> (RequestId, RequestSummary) {
        self.requester_do(ask(self.owner.peer_id()))
            .expect("valid request");
        let prompts = prompts(&self.owner_log);
        assert_eq!(prompts.len(), 1, "owner log: {:#?}", self.owner_log);
        prompts.into_iter().next().expect("one prompt")
    }
}

pub fn prompts(log: &[Output]) -> Vec<(RequestId, RequestSummary)> {
    log.iter()
        .filter_map(|output| match output {
            Output::PromptOwner {
                request_id,
                summary,
            } => Some((*request_id, summary.clone())),
            _ => None,
        })
        .collect()
}

/// Every output that is not an audit entry.
pub fn actions(log: &[Output]) -> Vec<&Output> {
    log.iter()
        .filter(|output| !matches!(output, Output::Audit(_)))
        .collect()
}

pub fn audit_entries(log: &[Output]) -> Vec<porchlight_core::AuditEntry> {
    log.iter()
        .filter_map(|output| match output {
            Output::Audit(entry) => Some(entry.clone()),
            _ => None,
        })
        .collect()
}

/// The token of the first grant in `log` (a requester's outputs).
pub fn granted_token(
    log: &[Output],
) -> porchlight_protocol::Signed<porchlight_protocol::ConsentToken> {
    log.iter()
        .find_map(|output| match output {
            Output::Granted { token, .. } => Some(token.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no grant in {log:#?}"))
}
