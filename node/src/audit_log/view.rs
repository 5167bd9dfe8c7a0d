//! How audit records look to people and scripts: the JSON mirror of `porchlight audit list
//! --json` and its one-line human form.
//!
//! The core's types carry no serde (the node alone knows JSON), so the entry is mirrored
//! here: ids in hex, peers in their `12D3KooW…` form, times as RFC 3339 and unix ms, and the
//! event as an object tagged by `"type"`.

use porchlight_core::AuditEvent;
use porchlight_core::audit::{FetchRefusalCause, GrantEnd, RefusedPeers, RequestOutcome};
use porchlight_protocol::{ClipId, PeerId, RejectCode, RequestId, TokenId};
use serde::Serialize;

use super::SignedAuditRecord;
use crate::api::views::rfc3339;

/// One record as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecordView {
    pub seq: u64,
    pub at: String,
    pub at_ms: u64,
    pub event: AuditEventView,
    pub hash: String,
    pub prev_hash: String,
    pub signature: String,
}

/// The event of a record, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEventView {
    RequestReceived {
        request_id: RequestId,
        requester: PeerId,
        verified: bool,
        outcome: &'static str,
    },
    RequestSent {
        request_id: RequestId,
        area: bool,
    },
    Granted {
        request_id: RequestId,
        token_id: TokenId,
        grantee: PeerId,
        clips: Vec<ClipId>,
        not_after: String,
        retain: bool,
        by_rule: bool,
    },
    Denied {
        request_id: RequestId,
        message_sent: bool,
    },
    FetchServed {
        token_id: TokenId,
        clip_id: ClipId,
        peer: PeerId,
    },
    FetchRefused {
        peer: PeerId,
        code: &'static str,
    },
    Revoked {
        token_id: TokenId,
        grantee: PeerId,
    },
    GrantReceived {
        request_id: RequestId,
        token_id: TokenId,
        owner: PeerId,
    },
    DenialReceived {
        request_id: RequestId,
        owner: PeerId,
    },
    /// `message` is the owner's text, checked as peer text (no control or invisible
    /// characters); show it as text, never as markup.
    DenialReceivedWithMessage {
        request_id: RequestId,
        owner: PeerId,
        message: String,
    },
    GrantEnded {
        token_id: TokenId,
        why: &'static str,
        deleted: bool,
    },
    FetchCompleted {
        token_id: TokenId,
        clip_id: ClipId,
        peer: PeerId,
        bytes: u64,
    },
    ClipReceived {
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
    },
    /// `peer` is absent for the peers past the per-interval limit, summed; `code` is
    /// `"over_limit"` for fetches closed by a fetch limit.
    FetchRefusalsCounted {
        since: String,
        since_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<PeerId>,
        code: &'static str,
        count: u64,
    },
    /// This chain began when the owner set a damaged log aside.
    LogSetAside {
        verified: u64,
        /// Hex.
        last_hash: String,
    },
    FetchCut {
        token_id: TokenId,
        clip_id: ClipId,
        peer: PeerId,
        bytes: u64,
        why: &'static str,
    },
}

impl AuditRecordView {
    pub fn of(record: &SignedAuditRecord) -> AuditRecordView {
        let entry = &record.entry;
        AuditRecordView {
            seq: entry.seq,
            at: rfc3339(entry.at),
            at_ms: entry.at.as_unix_millis(),
            event: AuditEventView::of(&entry.event),
            hash: hex::encode(entry.hash),
            prev_hash: hex::encode(entry.prev_hash),
            signature: hex::encode(record.signature),
        }
    }
}

impl AuditEventView {
    pub fn of(event: &AuditEvent) -> AuditEventView {
        match event.clone() {
            AuditEvent::RequestReceived {
                request_id,
                requester,
                verified,
                outcome,
            } => AuditEventView::RequestReceived {
                request_id,
                requester,
                verified,
                outcome: outcome_name(outcome),
            },
            AuditEvent::RequestSent { request_id, area } => {
                AuditEventView::RequestSent { request_id, area }
            }
            AuditEvent::Granted {
                request_id,
                token_id,
                grantee,
                clips,
                not_after,
                retain,
                by_rule,
            } => AuditEventView::Granted {
                request_id,
                token_id,
                grantee,
                clips,
                not_after: rfc3339(not_after),
                retain,
                by_rule,
            },
            AuditEvent::Denied {
                request_id,
                message_sent,
            } => AuditEventView::Denied {
                request_id,
                message_sent,
            },
            AuditEvent::FetchServed {
                token_id,
                clip_id,
                peer,
            } => AuditEventView::FetchServed {
                token_id,
                clip_id,
                peer,
            },
            AuditEvent::FetchRefused { peer, code } => AuditEventView::FetchRefused {
                peer,
                code: reject_code_name(code),
            },
            AuditEvent::Revoked { token_id, grantee } => {
                AuditEventView::Revoked { token_id, grantee }
            }
            AuditEvent::GrantReceived {
                request_id,
                token_id,
                owner,
            } => AuditEventView::GrantReceived {
                request_id,
                token_id,
                owner,
            },
            AuditEvent::DenialReceived { request_id, owner } => {
                AuditEventView::DenialReceived { request_id, owner }
            }
            AuditEvent::DenialReceivedWithMessage {
                request_id,
                owner,
                message,
            } => AuditEventView::DenialReceivedWithMessage {
                request_id,
                owner,
                message,
            },
            AuditEvent::GrantEnded {
                token_id,
                why,
                deleted,
            } => AuditEventView::GrantEnded {
                token_id,
                why: grant_end_name(why),
                deleted,
            },
            AuditEvent::FetchCompleted {
                token_id,
                clip_id,
                peer,
                bytes,
            } => AuditEventView::FetchCompleted {
                token_id,
                clip_id,
                peer,
                bytes,
            },
            AuditEvent::ClipReceived {
                token_id,
                clip_id,
                bytes,
            } => AuditEventView::ClipReceived {
                token_id,
                clip_id,
                bytes,
            },
            AuditEvent::FetchRefusalsCounted {
                since,
                peers,
                cause,
                count,
            } => AuditEventView::FetchRefusalsCounted {
                since: rfc3339(since),
                since_ms: since.as_unix_millis(),
                peer: match peers {
                    RefusedPeers::One(peer) => Some(peer),
                    RefusedPeers::Others => None,
                },
                code: refusal_cause_name(cause),
                count,
            },
            AuditEvent::LogSetAside {
                verified,
                last_hash,
            } => AuditEventView::LogSetAside {
                verified,
                last_hash: hex::encode(last_hash),
            },
            AuditEvent::FetchCut {
                token_id,
                clip_id,
                peer,
                bytes,
                why,
            } => AuditEventView::FetchCut {
                token_id,
                clip_id,
                peer,
                bytes,
                why: grant_end_name(why),
            },
        }
    }
}

fn refusal_cause_name(cause: FetchRefusalCause) -> &'static str {
    match cause {
        FetchRefusalCause::Rejected(code) => reject_code_name(code),
        FetchRefusalCause::OverLimit => "over_limit",
    }
}

pub(super) fn outcome_name(outcome: RequestOutcome) -> &'static str {
    match outcome {
        RequestOutcome::Prompted => "prompted",
        RequestOutcome::NoMatchingClips => "no_matching_clips",
        RequestOutcome::Blocked => "blocked",
        RequestOutcome::DeniedUnverified => "denied_unverified",
        RequestOutcome::DeniedNoCaseNumber => "denied_no_case_number",
        RequestOutcome::PreAuthorized => "pre_authorized",
    }
}

fn reject_code_name(code: RejectCode) -> &'static str {
    match code {
        RejectCode::Malformed => "malformed",
        RejectCode::Unsupported => "unsupported",
        RejectCode::Unauthenticated => "unauthenticated",
        RejectCode::OutOfWindow => "out_of_window",
        RejectCode::Invalid => "invalid",
        // A code the protocol adds later: the log stores its byte, the report its category.
        _ => "other",
    }
}

fn grant_end_name(why: GrantEnd) -> &'static str {
    match why {
        GrantEnd::Expired => "expired",
        GrantEnd::Revoked => "revoked",
    }
}

/// The first 16 hex digits of an id: enough to tell entries apart on a terminal; `--json`
/// has the whole id.
fn short(id: impl std::fmt::Display) -> String {
    let mut text = id.to_string();
    text.truncate(16);
    text
}

/// What an event says, in one line of words.
pub fn describe_event(event: &AuditEvent) -> String {
    match event {
        AuditEvent::RequestReceived {
            request_id,
            requester,
            verified,
            outcome,
        } => {
            let who = if *verified {
                "verified authority"
            } else {
                "unverified requester"
            };
            let what = match outcome {
                RequestOutcome::Prompted => "asked the owner",
                RequestOutcome::NoMatchingClips => "no matching clips, not answered",
                RequestOutcome::Blocked => "peer blocked, not answered",
                RequestOutcome::DeniedUnverified => "denied by rule (unverified)",
                RequestOutcome::DeniedNoCaseNumber => "denied by rule (no case number)",
                RequestOutcome::PreAuthorized => "granted by pre-authorization",
            };
            format!(
                "request {} received from {who} {requester}: {what}",
                short(request_id)
            )
        }
        AuditEvent::RequestSent { request_id, area } => format!(
            "request {} sent ({})",
            short(request_id),
            if *area { "area" } else { "direct" }
        ),
        AuditEvent::Granted {
            request_id,
            token_id,
            grantee,
            clips,
            not_after,
            retain,
            by_rule,
        } => format!(
            "granted request {} as token {} to {grantee}: {} clip(s) until {}{}{}",
            short(request_id),
            short(token_id),
            clips.len(),
            rfc3339(*not_after),
            if *retain { ", may keep them" } else { "" },
            if *by_rule {
                ", by pre-authorization"
            } else {
                ""
            }
        ),
        AuditEvent::Denied {
            request_id,
            message_sent,
        } => format!(
            "denied request {}{}",
            short(request_id),
            if *message_sent {
                " (requester told)"
            } else {
                " (silently)"
            }
        ),
        AuditEvent::FetchServed {
            token_id,
            clip_id,
            peer,
        } => format!(
            "fetch of clip {} under token {} allowed for {peer}",
            short(clip_id),
            short(token_id)
        ),
        AuditEvent::FetchRefused { peer, code } => format!(
            "fetch refused for {peer} ({})",
            reject_code_name(*code).replace('_', " ")
        ),
        AuditEvent::Revoked { token_id, grantee } => {
            format!("revoked token {} of {grantee}", short(token_id))
        }
        AuditEvent::GrantReceived {
            request_id,
            token_id,
            owner,
        } => format!(
            "grant received for request {} from {owner}: token {}",
            short(request_id),
            short(token_id)
        ),
        AuditEvent::DenialReceived { request_id, owner } => format!(
            "denial received for request {} from {owner}",
            short(request_id)
        ),
        // Debug-quoted: the text passed the peer text check, and quoting keeps it visibly
        // the owner's words inside our line.
        AuditEvent::DenialReceivedWithMessage {
            request_id,
            owner,
            message,
        } => format!(
            "denial received for request {} from {owner}: {message:?}",
            short(request_id)
        ),
        AuditEvent::GrantEnded {
            token_id,
            why,
            deleted,
        } => format!(
            "grant under token {} {}: {}",
            short(token_id),
            grant_end_name(*why),
            if *deleted {
                "received footage deleted"
            } else {
                "received footage kept (retention granted)"
            }
        ),
        AuditEvent::FetchCompleted {
            token_id,
            clip_id,
            peer,
            bytes,
        } => format!(
            "sent clip {} ({bytes} bytes) to {peer} under token {}",
            short(clip_id),
            short(token_id)
        ),
        AuditEvent::ClipReceived {
            token_id,
            clip_id,
            bytes,
        } => format!(
            "received clip {} ({bytes} bytes) under token {}",
            short(clip_id),
            short(token_id)
        ),
        AuditEvent::FetchRefusalsCounted {
            since,
            peers,
            cause,
            count,
        } => format!(
            "{count} more fetches refused for {} ({}) since {}",
            match peers {
                RefusedPeers::One(peer) => peer.to_string(),
                RefusedPeers::Others => "other peers".to_owned(),
            },
            refusal_cause_name(*cause).replace('_', " "),
            rfc3339(*since)
        ),
        AuditEvent::LogSetAside {
            verified,
            last_hash,
        } => match verified.checked_sub(1) {
            Some(last_seq) => format!(
                "new log: the owner set a damaged log aside, whose first {verified} entries verified (last seq {last_seq}, hash {})",
                hex::encode(last_hash)
            ),
            None => {
                "new log: the owner set a damaged log aside, of which no entry verified".to_owned()
            }
        },
        AuditEvent::FetchCut {
            token_id,
            clip_id,
            peer,
            bytes,
            why,
        } => format!(
            "stopped sending clip {} to {peer} after {bytes} bytes: token {} {}",
            short(clip_id),
            short(token_id),
            grant_end_name(*why)
        ),
    }
}

/// One line of `porchlight audit list`: seq, time, what happened.
pub fn list_line(record: &SignedAuditRecord) -> String {
    let entry = &record.entry;
    format!(
        "{:>6}  {}  {}",
        entry.seq,
        rfc3339(entry.at),
        describe_event(&entry.event)
    )
}
