//! The transparency report (`porchlight audit report`): what the log says this node did, in
//! numbers a neighbor or a journalist can read.
//!
//! As an owner: requests received by requester class (a verified authority or not) and by
//! final outcome (a prompted request counts as granted or denied once the owner decided),
//! grants, revocations, fetches, bytes and distinct clips released (a stream cut at expiry
//! or revocation counts the bytes sent before the cut), and the grants still
//! active. As a requester: requests sent, grants and denials received, clips and bytes
//! received, grants ended. Counted from the entries alone; run `porchlight audit verify`
//! to know the entries are the node's own and complete up to their head.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use porchlight_core::AuditEntry;
use porchlight_core::audit::{AuditEvent, FetchRefusalCause, GrantEnd, RequestOutcome};
use porchlight_protocol::{ClipId, PeerId, RequestId, Timestamp, TokenId};
use serde::Serialize;

use super::SignedAuditRecord;
use crate::api::views::rfc3339;

/// What the log says, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransparencyReport {
    /// The time "active" is judged at.
    pub generated_at: String,
    pub entries: u64,
    pub first_entry_at: Option<String>,
    pub last_entry_at: Option<String>,
    pub requests_received: RequestsReceived,
    pub released: Releases,
    /// Grants issued here that are neither expired nor revoked at `generated_at`.
    pub active_grants: Vec<ActiveGrant>,
    /// Who asked this home, how often, and what they got; most requests first.
    pub by_requester: Vec<RequesterSummary>,
    pub as_requester: RequesterSide,
}

/// One requester's history with this home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequesterSummary {
    pub requester: PeerId,
    /// Whether any of its requests came with a credential chain that verified.
    pub verified: bool,
    pub requests: u64,
    /// Grants issued to it, by the owner or a pre-authorization.
    pub granted: u64,
    /// Requests the owner, or a standing rule, denied.
    pub denied: u64,
    /// Distinct clips served to it, and the bytes that left.
    pub clips_released: u64,
    pub bytes_released: u64,
}

/// Incoming requests by who asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestsReceived {
    pub total: u64,
    /// Requesters whose credential chain verified against this node's trust roots.
    pub verified_authority: OutcomeCounts,
    /// Everyone else, whatever they claimed.
    pub unverified: OutcomeCounts,
}

/// Requests by final outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub total: u64,
    /// The owner was asked and granted.
    pub granted_by_owner: u64,
    /// The owner was asked and denied.
    pub denied_by_owner: u64,
    /// The owner was asked and has not decided (yet).
    pub awaiting_decision: u64,
    /// Granted by one of the owner's pre-authorizations, without a prompt.
    pub pre_authorized: u64,
    /// Denied by the "deny unverified requesters" rule.
    pub denied_unverified_rule: u64,
    /// Denied by the "deny requests without a case number" rule.
    pub denied_no_case_number_rule: u64,
    /// The requester is blocked.
    pub blocked: u64,
    /// No stored clip overlapped the window; nothing was said.
    pub no_matching_clips: u64,
}

/// What left this home.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Releases {
    pub grants_issued: u64,
    /// Of those, issued by a pre-authorization rather than a prompt.
    pub grants_by_rule: u64,
    pub revocations: u64,
    /// Fetches that passed every check and were allowed to start.
    pub fetches_allowed: u64,
    /// Fetches refused with a reject code: one by one and in the interval summaries.
    pub fetches_refused: u64,
    /// Fetches closed unanswered because a fetch limit was reached.
    pub fetches_over_limit: u64,
    /// Fetches whose stream finished.
    pub fetches_completed: u64,
    /// Fetches whose stream was ended early because the token expired or was revoked.
    pub fetches_cut: u64,
    /// Bytes of clips sent, from finished fetches and from cut ones up to the cut.
    pub bytes_released: u64,
    /// Distinct clips a fetch was allowed for.
    pub distinct_clips_released: u64,
}

/// A grant still in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveGrant {
    pub token_id: TokenId,
    pub request_id: RequestId,
    pub grantee: PeerId,
    pub clips: usize,
    pub not_after: String,
    pub retain: bool,
    pub by_rule: bool,
}

/// This node as a requester.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequesterSide {
    pub requests_sent: u64,
    pub direct_requests: u64,
    pub area_requests: u64,
    pub grants_received: u64,
    pub denials_received: u64,
    /// Of `denials_received`, those that came with the owner's message.
    pub denials_with_message: u64,
    pub clips_received: u64,
    pub bytes_received: u64,
    pub grants_expired: u64,
    pub grants_revoked: u64,
    /// Ended grants whose footage was kept because retention was granted.
    pub grants_retained: u64,
}

/// How an incoming request ended, as far as the log knows.
#[derive(Debug, Clone, Copy)]
enum Final {
    Auto(RequestOutcome),
    GrantedByOwner,
    DeniedByOwner,
}

impl TransparencyReport {
    /// Counts `records` in log order; grants are active if `now` is before their end and
    /// they were not revoked.
    pub fn from_records(records: &[SignedAuditRecord], now: Timestamp) -> TransparencyReport {
        TransparencyReport::from_entries(records.iter().map(|record| &record.entry), now)
    }

    /// [`TransparencyReport::from_records`] over bare entries.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = &'a AuditEntry>,
        now: Timestamp,
    ) -> TransparencyReport {
        let mut count = 0u64;
        let mut first_at = None;
        let mut last_at = None;
        // Request id -> (verified, how it ended so far).
        let mut incoming: BTreeMap<RequestId, (bool, Final)> = BTreeMap::new();
        let mut asked_by: BTreeMap<RequestId, PeerId> = BTreeMap::new();
        let mut people: BTreeMap<PeerId, RequesterSummary> = BTreeMap::new();
        let mut served_to: BTreeSet<(PeerId, ClipId)> = BTreeSet::new();
        let mut released = Releases::default();
        let mut clips_released: BTreeSet<ClipId> = BTreeSet::new();
        let mut grants: BTreeMap<TokenId, (u64, ActiveGrant, Timestamp)> = BTreeMap::new();
        let mut revoked: BTreeSet<TokenId> = BTreeSet::new();
        let mut mine = RequesterSide::default();

        for entry in entries {
            count += 1;
            first_at.get_or_insert(entry.at);
            last_at = Some(entry.at);
            match &entry.event {
                AuditEvent::RequestReceived {
                    request_id,
                    requester,
                    verified,
                    outcome,
                } => {
                    incoming.insert(*request_id, (*verified, Final::Auto(*outcome)));
                    asked_by.insert(*request_id, *requester);
                    let summary = summary_of(&mut people, *requester);
                    summary.requests += 1;
                    summary.verified |= *verified;
                    if matches!(
                        outcome,
                        RequestOutcome::Blocked
                            | RequestOutcome::DeniedUnverified
                            | RequestOutcome::DeniedNoCaseNumber
                    ) {
                        summary.denied += 1;
                    }
                }
                AuditEvent::Granted {
                    request_id,
                    token_id,
                    grantee,
                    clips,
                    not_after,
                    retain,
                    by_rule,
                } => {
                    released.grants_issued += 1;
                    summary_of(&mut people, *grantee).granted += 1;
                    if *by_rule {
                        released.grants_by_rule += 1;
                    } else if let Some((_, outcome)) = incoming.get_mut(request_id) {
                        *outcome = Final::GrantedByOwner;
                    }
                    let grant = ActiveGrant {
                        token_id: *token_id,
                        request_id: *request_id,
                        grantee: *grantee,
                        clips: clips.len(),
                        not_after: rfc3339(*not_after),
                        retain: *retain,
                        by_rule: *by_rule,
                    };
                    grants.insert(*token_id, (entry.seq, grant, *not_after));
                }
                AuditEvent::Denied { request_id, .. } => {
                    if let Some((_, outcome)) = incoming.get_mut(request_id) {
                        *outcome = Final::DeniedByOwner;
                    }
                    if let Some(summary) = asked_by
                        .get(request_id)
                        .and_then(|requester| people.get_mut(requester))
                    {
                        summary.denied += 1;
                    }
                }
                AuditEvent::FetchServed { clip_id, peer, .. } => {
                    released.fetches_allowed += 1;
                    clips_released.insert(*clip_id);
                    if served_to.insert((*peer, *clip_id)) {
                        summary_of(&mut people, *peer).clips_released += 1;
                    }
                }
                AuditEvent::FetchRefused { .. } => released.fetches_refused += 1,
                AuditEvent::FetchRefusalsCounted { cause, count, .. } => {
                    let counter = match cause {
                        FetchRefusalCause::Rejected(_) => &mut released.fetches_refused,
                        FetchRefusalCause::OverLimit => &mut released.fetches_over_limit,
                    };
                    *counter = counter.saturating_add(*count);
                }
                AuditEvent::FetchCut {
                    clip_id,
                    bytes,
                    peer,
                    ..
                } => {
                    released.fetches_cut += 1;
                    released.bytes_released = released.bytes_released.saturating_add(*bytes);
                    clips_released.insert(*clip_id);
                    if let Some(summary) = people.get_mut(peer) {
                        summary.bytes_released = summary.bytes_released.saturating_add(*bytes);
                    }
                }
                AuditEvent::FetchCompleted {
                    clip_id,
                    bytes,
                    peer,
                    ..
                } => {
                    released.fetches_completed += 1;
                    released.bytes_released = released.bytes_released.saturating_add(*bytes);
                    clips_released.insert(*clip_id);
                    if let Some(summary) = people.get_mut(peer) {
                        summary.bytes_released = summary.bytes_released.saturating_add(*bytes);
                    }
                }
                AuditEvent::Revoked { token_id, .. } => {
                    released.revocations += 1;
                    revoked.insert(*token_id);
                }
                AuditEvent::RequestSent { area, .. } => {
                    mine.requests_sent += 1;
                    if *area {
                        mine.area_requests += 1;
                    } else {
                        mine.direct_requests += 1;
                    }
                }
                AuditEvent::GrantReceived { .. } => mine.grants_received += 1,
                AuditEvent::DenialReceived { .. } => mine.denials_received += 1,
                AuditEvent::DenialReceivedWithMessage { .. } => {
                    mine.denials_received += 1;
                    mine.denials_with_message += 1;
                }
                AuditEvent::ClipReceived { bytes, .. } => {
                    mine.clips_received += 1;
                    mine.bytes_received = mine.bytes_received.saturating_add(*bytes);
                }
                AuditEvent::GrantEnded { why, deleted, .. } => {
                    match why {
                        GrantEnd::Expired => mine.grants_expired += 1,
                        GrantEnd::Revoked => mine.grants_revoked += 1,
                    }
                    if !deleted {
                        mine.grants_retained += 1;
                    }
                }
                // The start of this chain, not an event of consent: nothing to count (what
                // the set-aside log recorded is in that file).
                AuditEvent::LogSetAside { .. } => {}
            }
        }
        released.distinct_clips_released = clips_released.len() as u64;

        let mut requests = RequestsReceived::default();
        for (verified, outcome) in incoming.values() {
            requests.total += 1;
            let counts = if *verified {
                &mut requests.verified_authority
            } else {
                &mut requests.unverified
            };
            counts.total += 1;
            let slot = match outcome {
                Final::GrantedByOwner => &mut counts.granted_by_owner,
                Final::DeniedByOwner => &mut counts.denied_by_owner,
                Final::Auto(RequestOutcome::Prompted) => &mut counts.awaiting_decision,
                Final::Auto(RequestOutcome::PreAuthorized) => &mut counts.pre_authorized,
                Final::Auto(RequestOutcome::DeniedUnverified) => &mut counts.denied_unverified_rule,
                Final::Auto(RequestOutcome::DeniedNoCaseNumber) => {
                    &mut counts.denied_no_case_number_rule
                }
                Final::Auto(RequestOutcome::Blocked) => &mut counts.blocked,
                Final::Auto(RequestOutcome::NoMatchingClips) => &mut counts.no_matching_clips,
            };
            *slot += 1;
        }

        // Active grants in the order they were issued.
        let mut active: Vec<(u64, ActiveGrant)> = grants
            .into_iter()
            .filter(|(token_id, (_, _, not_after))| *not_after > now && !revoked.contains(token_id))
            .map(|(_, (seq, grant, _))| (seq, grant))
            .collect();
        active.sort_by_key(|(seq, _)| *seq);

        TransparencyReport {
            generated_at: rfc3339(now),
            entries: count,
            first_entry_at: first_at.map(rfc3339),
            last_entry_at: last_at.map(rfc3339),
            requests_received: requests,
            released,
            active_grants: active.into_iter().map(|(_, grant)| grant).collect(),
            by_requester: {
                let mut people: Vec<RequesterSummary> = people.into_values().collect();
                people.sort_by(|a, b| {
                    b.requests
                        .cmp(&a.requests)
                        .then(a.requester.cmp(&b.requester))
                });
                people
            },
            as_requester: mine,
        }
    }
}

/// `peer`'s row of the by-requester breakdown, new and empty the first time.
fn summary_of(
    people: &mut BTreeMap<PeerId, RequesterSummary>,
    peer: PeerId,
) -> &mut RequesterSummary {
    people.entry(peer).or_insert(RequesterSummary {
        requester: peer,
        verified: false,
        requests: 0,
        granted: 0,
        denied: 0,
        clips_released: 0,
        bytes_released: 0,
    })
}

/// Width of the label column of the human report.
const LABEL_WIDTH: usize = 30;

/// One `label  value` line, the label indented by `depth` steps.
fn row(
    f: &mut fmt::Formatter<'_>,
    depth: usize,
    label: &str,
    value: impl fmt::Display,
) -> fmt::Result {
    let indent = "  ".repeat(depth);
    let width = LABEL_WIDTH.saturating_sub(indent.len());
    writeln!(f, "{indent}{label:<width$}{value}")
}

impl fmt::Display for TransparencyReport {
    /// The human report: one fact per line, with the rows that count nothing left out (the
    /// JSON keeps every field, for scripts that compare reports).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "transparency report at {}", self.generated_at)?;
        match (&self.first_entry_at, &self.last_entry_at) {
            (Some(first), Some(last)) => {
                writeln!(f, "audit log: {} entries, {first} to {last}", self.entries)?
            }
            _ => writeln!(f, "audit log: no entries")?,
        }
        let requests = &self.requests_received;
        writeln!(f)?;
        row(f, 0, "requests received", requests.total)?;
        for (class, counts) in [
            ("from verified authorities", &requests.verified_authority),
            ("from unverified requesters", &requests.unverified),
        ] {
            if counts.total == 0 {
                continue;
            }
            row(f, 1, class, counts.total)?;
            for (label, value) in [
                ("granted by the owner", counts.granted_by_owner),
                ("denied by the owner", counts.denied_by_owner),
                ("awaiting a decision", counts.awaiting_decision),
                ("pre-authorized", counts.pre_authorized),
                ("denied: unverified", counts.denied_unverified_rule),
                ("denied: no case number", counts.denied_no_case_number_rule),
                ("blocked", counts.blocked),
                ("no matching clips", counts.no_matching_clips),
            ] {
                if value > 0 {
                    row(f, 2, label, value)?;
                }
            }
        }
        let released = &self.released;
        writeln!(f)?;
        let by_rule = if released.grants_by_rule > 0 {
            format!(" ({} by pre-authorization)", released.grants_by_rule)
        } else {
            String::new()
        };
        row(
            f,
            0,
            "grants issued",
            format_args!("{}{by_rule}", released.grants_issued),
        )?;
        if released.revocations > 0 {
            row(f, 0, "revocations", released.revocations)?;
        }
        let fetches = counted(&[
            (released.fetches_allowed, "allowed"),
            (released.fetches_completed, "completed"),
            (released.fetches_cut, "cut"),
            (released.fetches_refused, "refused"),
            (released.fetches_over_limit, "closed over a limit"),
        ]);
        if !fetches.is_empty() {
            row(f, 0, "fetches", fetches)?;
        }
        row(
            f,
            0,
            "released",
            format_args!(
                "{} distinct clips, {} bytes",
                released.distinct_clips_released, released.bytes_released
            ),
        )?;
        row(f, 0, "active grants", self.active_grants.len())?;
        for grant in &self.active_grants {
            writeln!(
                f,
                "  token {} to {}: {} clip(s) until {}{}",
                grant.token_id,
                grant.grantee,
                grant.clips,
                grant.not_after,
                if grant.retain { ", may keep them" } else { "" }
            )?;
        }
        if !self.by_requester.is_empty() {
            writeln!(f)?;
            writeln!(f, "by requester")?;
            for person in &self.by_requester {
                let answers = counted(&[(person.granted, "granted"), (person.denied, "denied")]);
                writeln!(
                    f,
                    "  {} ({}): {} request(s){}{}",
                    person.requester,
                    if person.verified {
                        "verified authority"
                    } else {
                        "unverified"
                    },
                    person.requests,
                    if answers.is_empty() {
                        String::new()
                    } else {
                        format!(", {answers}")
                    },
                    if person.clips_released > 0 || person.bytes_released > 0 {
                        format!(
                            "; got {} clip(s), {} bytes",
                            person.clips_released, person.bytes_released
                        )
                    } else {
                        String::new()
                    }
                )?;
            }
        }
        let mine = &self.as_requester;
        let acted_as_requester = mine.requests_sent
            + mine.grants_received
            + mine.denials_received
            + mine.clips_received
            + mine.grants_expired
            + mine.grants_revoked;
        if acted_as_requester == 0 {
            return Ok(());
        }
        writeln!(f)?;
        if mine.requests_sent > 0 {
            row(
                f,
                0,
                "requests sent",
                format_args!(
                    "{} ({})",
                    mine.requests_sent,
                    counted(&[
                        (mine.direct_requests, "direct"),
                        (mine.area_requests, "area")
                    ])
                ),
            )?;
        }
        let mut answers = counted(&[
            (mine.grants_received, "grants"),
            (mine.denials_received, "denials"),
        ]);
        if mine.denials_with_message > 0 {
            answers.push_str(&format!(" ({} with a message)", mine.denials_with_message));
        }
        if !answers.is_empty() {
            row(f, 0, "answers received", answers)?;
        }
        if mine.clips_received > 0 {
            row(
                f,
                0,
                "clips received",
                format_args!("{} ({} bytes)", mine.clips_received, mine.bytes_received),
            )?;
        }
        let ended = counted(&[
            (mine.grants_expired, "expired"),
            (mine.grants_revoked, "revoked"),
            (mine.grants_retained, "kept under retention"),
        ]);
        if !ended.is_empty() {
            row(f, 0, "grants ended", ended)?;
        }
        Ok(())
    }
}

/// `"3 allowed, 1 refused"`: the non-zero counts of a list, in order; empty when all are 0.
fn counted(parts: &[(u64, &str)]) -> String {
    parts
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, label)| format!("{count} {label}"))
        .collect::<Vec<_>>()
        .join(", ")
}
