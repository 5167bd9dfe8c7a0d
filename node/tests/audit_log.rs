//! The audit log file: appending and reopening, torn tails, every kind of tampering `verify`
//! must catch, the transparency report's counts, and `porchlight audit` through the real
//! binary on a good and a tampered log.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use porchlight_core::audit::{AuditEvent, GENESIS_HASH, GrantEnd, RequestOutcome};
use porchlight_core::{AuditEntry, verify_chain};
use porchlight_node::audit_log::{
    AuditLog, AuditLogError, AuditRecordView, MAX_RECORD_LEN, RecordProblem, SignedAuditRecord,
    TornTail, TransparencyReport, VerifyReport, list_line, read_all, verify,
};
use porchlight_node::data_dir::DataDir;
use porchlight_node::keys::NodeKeys;
use porchlight_protocol::{
    ClipId, PeerId, RejectCode, RequestId, SigningIdentity, Timestamp, TokenId,
};

/// 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + secs * 1000)
}

fn identity() -> SigningIdentity {
    SigningIdentity::from_secret_bytes(&[1; 32])
}

fn peer(n: u8) -> PeerId {
    SigningIdentity::from_secret_bytes(&[n; 32]).peer_id()
}

fn request(n: u8) -> RequestId {
    RequestId::from_bytes([n; 32])
}

fn token(n: u8) -> TokenId {
    TokenId::from_bytes([n; 16])
}

fn clip(n: u8) -> ClipId {
    ClipId::from_bytes([n; 32])
}

/// Chains `events` from `first` (None: from the genesis), one second apart.
fn chain_from(first: Option<&AuditEntry>, events: Vec<AuditEvent>) -> Vec<AuditEntry> {
    let (mut seq, mut prev_hash, mut secs) = match first {
        Some(last) => (
            last.seq + 1,
            last.hash,
            (last.at.as_unix_millis() - T0) / 1000 + 1,
        ),
        None => (0, GENESIS_HASH, 0),
    };
    events
        .into_iter()
        .map(|event| {
            let hash = AuditEntry::compute_hash(seq, at(secs), &prev_hash, &event);
            let entry = AuditEntry {
                seq,
                at: at(secs),
                prev_hash,
                event,
                hash,
            };
            seq += 1;
            secs += 1;
            prev_hash = hash;
            entry
        })
        .collect()
}

fn denials(range: std::ops::Range<u8>) -> Vec<AuditEvent> {
    range
        .map(|n| AuditEvent::Denied {
            request_id: request(n),
            message_sent: n % 2 == 0,
        })
        .collect()
}

/// A log of `n` signed denials at `dir/audit.log`; returns its path and entries.
fn log_of(dir: &Path, n: u8) -> (PathBuf, Vec<AuditEntry>) {
    let path = dir.join("audit.log");
    let entries = chain_from(None, denials(0..n));
    let mut log = AuditLog::open(&path).expect("a new log opens");
    for entry in &entries {
        log.append(entry, &identity())
            .expect("an entry that continues the log");
    }
    (path, entries)
}

/// The stored bytes of each record, in order.
fn record_bytes(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("the log is readable");
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let len =
            u32::from_be_bytes(rest[..4].try_into().expect("a length prefix is 4 bytes")) as usize;
        out.push(rest[..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

fn write_records(path: &Path, records: &[Vec<u8>]) {
    std::fs::write(path, records.concat()).expect("the log is writable");
}

fn failure(report: &VerifyReport) -> (u64, Option<u64>, RecordProblem) {
    let failure = report
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure: {report:?}"));
    (failure.index, failure.seq, failure.problem.clone())
}

#[test]
fn append_then_reopen_continues_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, first) = log_of(tmp.path(), 3);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the log is the owner's alone");

    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.next_seq(), 3);
    assert_eq!(log.last_entry(), first.last());
    assert_eq!(log.torn_tail(), None);
    let more = chain_from(log.last_entry(), denials(3..5));
    for entry in &more {
        log.append(entry, &identity()).unwrap();
    }
    drop(log);

    let records = read_all(&path).unwrap();
    let entries: Vec<_> = records.iter().map(|r| r.entry.clone()).collect();
    let expected: Vec<_> = first.iter().chain(&more).cloned().collect();
    assert_eq!(entries, expected);
    assert_eq!(verify_chain(&entries), Ok(()));
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.verified, 5);
    assert_eq!(report.head.as_ref(), expected.last());
    assert_eq!(report.torn_tail, None);
}

#[test]
fn a_new_log_is_empty_and_starts_at_seq_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    assert_eq!((log.next_seq(), log.last_entry()), (0, None));
    assert!(read_all(&path).unwrap().is_empty());
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert!(report.is_intact() && report.verified == 0 && report.head.is_none());
}

#[test]
fn append_refuses_an_entry_that_does_not_continue_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, entries) = log_of(tmp.path(), 2);
    let before = std::fs::read(&path).unwrap();
    let mut log = AuditLog::open(&path).unwrap();
    // A core that was not resumed starts a second chain at seq 0.
    let fresh = chain_from(None, denials(9..10));
    let err = log.append(&fresh[0], &identity()).unwrap_err();
    assert!(
        matches!(
            err,
            AuditLogError::DoesNotFollow {
                seq: 0,
                next_seq: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("resume"), "{err}");
    // The right seq but a broken link.
    let mut forked = chain_from(entries.last(), denials(9..10)).remove(0);
    forked.prev_hash = [9; 32];
    forked.hash = AuditEntry::compute_hash(forked.seq, forked.at, &forked.prev_hash, &forked.event);
    assert!(matches!(
        log.append(&forked, &identity()),
        Err(AuditLogError::DoesNotFollow {
            problem: RecordProblem::BrokenLink,
            ..
        })
    ));
    drop(log);
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing was written");
}

#[test]
fn a_second_writer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let _first = AuditLog::open(&path).unwrap();
    let err = AuditLog::open(&path).unwrap_err();
    assert!(matches!(err, AuditLogError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("another porchlight node"), "{err}");
    // Readers need no lock.
    assert!(read_all(&path).is_ok());
}

#[test]
fn verify_detects_an_edited_event() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = log_of(tmp.path(), 4);
    let mut records = record_bytes(&path);
    // Byte 4 + 73 + 1 is the first byte of the denied request id.
    records[2][4 + 74] ^= 0x01;
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(failure(&report), (2, Some(2), RecordProblem::HashMismatch));
    assert_eq!(report.verified, 2);
    // The daemon will not extend it.
    let err = AuditLog::open(&path).unwrap_err();
    assert!(
        matches!(err, AuditLogError::Damaged { index: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("porchlight audit verify"), "{err}");
}

#[test]
fn verify_detects_an_edited_hash_or_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = log_of(tmp.path(), 3);
    let pristine = record_bytes(&path);

    let mut records = pristine.clone();
    let len = records[1].len();
    records[1][len - 64 - 1] ^= 0x80; // the last byte of the stored hash
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(failure(&report), (1, Some(1), RecordProblem::HashMismatch));

    let mut records = pristine;
    let len = records[1].len();
    records[1][len - 1] ^= 0x01; // the signature
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(failure(&report), (1, Some(1), RecordProblem::BadSignature));
}

#[test]
fn verify_detects_a_deleted_middle_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = log_of(tmp.path(), 5);
    let mut records = record_bytes(&path);
    records.remove(2);
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(
        failure(&report),
        (
            2,
            Some(3),
            RecordProblem::SeqGap {
                expected: 2,
                found: 3
            }
        )
    );
}

#[test]
fn verify_detects_a_deleted_first_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = log_of(tmp.path(), 3);
    let mut records = record_bytes(&path);
    records.remove(0);
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(
        failure(&report),
        (0, Some(1), RecordProblem::NotTheStart { seq: 1 })
    );
}

#[test]
fn verify_detects_swapped_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = log_of(tmp.path(), 4);
    let mut records = record_bytes(&path);
    records.swap(1, 2);
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(
        failure(&report),
        (
            1,
            Some(2),
            RecordProblem::SeqGap {
                expected: 1,
                found: 2
            }
        )
    );
}

#[test]
fn verify_detects_an_inserted_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = log_of(tmp.path(), 3);
    let mut records = record_bytes(&path);
    let copy = records[1].clone();
    records.insert(2, copy);
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(
        failure(&report),
        (
            2,
            Some(1),
            RecordProblem::SeqGap {
                expected: 2,
                found: 1
            }
        )
    );
}

#[test]
fn verify_detects_a_record_signed_by_another_key() {
    // A forger without the node's key rewrites entry 1 and re-chains the rest: the hashes
    // and links all check out, the signatures do not.
    let tmp = tempfile::tempdir().unwrap();
    let (path, entries) = log_of(tmp.path(), 3);
    let forger = SigningIdentity::from_secret_bytes(&[66; 32]);
    let mut forged = entries[..1].to_vec();
    forged.extend(chain_from(
        Some(&entries[0]),
        vec![
            AuditEvent::Denied {
                request_id: request(42),
                message_sent: false,
            },
            entries[2].event.clone(),
        ],
    ));
    assert_eq!(verify_chain(&forged), Ok(()));
    let mut records = record_bytes(&path);
    for i in 1..3 {
        records[i] = SignedAuditRecord::sign(forged[i].clone(), &forger).to_bytes();
    }
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(failure(&report), (1, Some(1), RecordProblem::BadSignature));

    // And a whole log checked against the wrong node fails at its first entry.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (path, _) = log_of(&other, 2);
    let report = verify(&path, &forger.peer_id()).unwrap();
    assert_eq!(failure(&report), (0, Some(0), RecordProblem::BadSignature));
}

#[test]
fn a_torn_tail_is_reported_cut_off_at_open_and_appends_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, entries) = log_of(tmp.path(), 3);
    let whole = std::fs::metadata(&path).unwrap().len();
    // A crash halfway through appending the fourth record.
    let next = chain_from(entries.last(), denials(3..4)).remove(0);
    let record = SignedAuditRecord::sign(next.clone(), &identity()).to_bytes();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&record[..record.len() / 2]);
    std::fs::write(&path, &bytes).unwrap();

    let torn = TornTail {
        offset: whole,
        bytes: (record.len() / 2) as u64,
    };
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert!(
        report.is_intact(),
        "a torn tail is not tampering: {report:?}"
    );
    assert_eq!((report.verified, report.torn_tail), (3, Some(torn)));
    assert_eq!(read_all(&path).unwrap().len(), 3);

    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.torn_tail(), Some(torn));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    assert_eq!(log.next_seq(), 3);
    log.append(&next, &identity()).unwrap();
    drop(log);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert!(
        report.is_intact() && report.torn_tail.is_none(),
        "{report:?}"
    );
    assert_eq!(report.verified, 4);
}

#[test]
fn a_tail_of_zeros_or_a_cut_length_prefix_is_torn_too() {
    let tmp = tempfile::tempdir().unwrap();
    for tail in [vec![0u8; 300], vec![0u8, 0], vec![0u8, 0, 1]] {
        let (path, _) = log_of(tmp.path(), 2);
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let report = verify(&path, &identity().peer_id()).unwrap();
        assert_eq!(
            report.torn_tail,
            Some(TornTail {
                offset: whole,
                bytes: tail.len() as u64
            }),
            "tail {tail:?}"
        );
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.next_seq(), 2);
        drop(log);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn an_impossible_length_is_damage_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = log_of(tmp.path(), 3);
    let mut records = record_bytes(&path);
    records[1][..4].copy_from_slice(&u32::MAX.to_be_bytes());
    write_records(&path, &records);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert_eq!(
        failure(&report),
        (1, None, RecordProblem::BadLength { len: u32::MAX })
    );
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditLogError::Damaged { index: 1, .. })
    ));
    assert!(matches!(
        read_all(&path),
        Err(AuditLogError::Damaged { index: 1, .. })
    ));
}

#[test]
fn garbage_is_never_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in [1usize, 3, 4, 5, 170, 171, 500, 9000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let _ = verify(&path, &identity().peer_id()).unwrap();
        let _ = read_all(&path);
        let _ = AuditLog::open(&path);
    }
}

#[test]
fn a_missing_log_is_its_own_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    assert!(matches!(
        read_all(&path),
        Err(AuditLogError::Missing { .. })
    ));
    assert!(matches!(
        verify(&path, &identity().peer_id()),
        Err(AuditLogError::Missing { .. })
    ));
}

/// A crafted owner and requester history with every kind of outcome.
fn crafted_history() -> Vec<AuditEntry> {
    let owner = |n: u8, verified: bool, outcome: RequestOutcome| AuditEvent::RequestReceived {
        request_id: request(n),
        requester: peer(n),
        verified,
        outcome,
    };
    let granted = |n: u8, t: u8, not_after: Timestamp, by_rule: bool| AuditEvent::Granted {
        request_id: request(n),
        token_id: token(t),
        grantee: peer(n),
        clips: vec![clip(1), clip(2)],
        not_after,
        retain: false,
        by_rule,
    };
    let served = |t: u8, c: u8| AuditEvent::FetchServed {
        token_id: token(t),
        clip_id: clip(c),
        peer: peer(1),
    };
    let completed = |t: u8, c: u8, bytes: u64| AuditEvent::FetchCompleted {
        token_id: token(t),
        clip_id: clip(c),
        peer: peer(1),
        bytes,
    };
    chain_from(
        None,
        vec![
            // Verified authority, prompted, granted by the owner; still active.
            owner(1, true, RequestOutcome::Prompted),
            granted(1, 1, at(100_000), false),
            // Unverified, prompted, denied.
            owner(2, false, RequestOutcome::Prompted),
            AuditEvent::Denied {
                request_id: request(2),
                message_sent: false,
            },
            owner(3, false, RequestOutcome::NoMatchingClips),
            // Verified, pre-authorized, already expired.
            owner(4, true, RequestOutcome::PreAuthorized),
            granted(4, 4, at(10), true),
            owner(5, false, RequestOutcome::Blocked),
            owner(6, false, RequestOutcome::Prompted),
            owner(7, false, RequestOutcome::DeniedUnverified),
            owner(8, true, RequestOutcome::DeniedNoCaseNumber),
            // Verified, granted, then revoked.
            owner(9, true, RequestOutcome::Prompted),
            granted(9, 9, at(100_000), false),
            AuditEvent::Revoked {
                token_id: token(9),
                grantee: peer(9),
            },
            served(1, 1),
            completed(1, 1, 1000),
            served(1, 2),
            completed(1, 2, 500),
            served(1, 1),
            completed(1, 1, 1000),
            AuditEvent::FetchRefused {
                peer: peer(9),
                code: RejectCode::Invalid,
            },
            // The node as a requester.
            AuditEvent::RequestSent {
                request_id: request(20),
                area: true,
            },
            AuditEvent::RequestSent {
                request_id: request(21),
                area: false,
            },
            AuditEvent::GrantReceived {
                request_id: request(20),
                token_id: token(20),
                owner: peer(30),
            },
            AuditEvent::DenialReceived {
                request_id: request(21),
                owner: peer(31),
            },
            AuditEvent::ClipReceived {
                token_id: token(20),
                clip_id: clip(7),
                bytes: 100,
            },
            AuditEvent::ClipReceived {
                token_id: token(20),
                clip_id: clip(8),
                bytes: 200,
            },
            AuditEvent::GrantEnded {
                token_id: token(20),
                why: GrantEnd::Expired,
                deleted: true,
            },
            AuditEvent::GrantEnded {
                token_id: token(22),
                why: GrantEnd::Revoked,
                deleted: false,
            },
        ],
    )
}

#[test]
fn the_report_counts_a_crafted_history() {
    let records: Vec<_> = crafted_history()
        .into_iter()
        .map(|entry| SignedAuditRecord::sign(entry, &identity()))
        .collect();
    let report = TransparencyReport::from_records(&records, at(1000));
    assert_eq!(report.entries, 29);

    let requests = &report.requests_received;
    assert_eq!(requests.total, 9);
    let verified = &requests.verified_authority;
    assert_eq!(verified.total, 4);
    assert_eq!(verified.granted_by_owner, 2);
    assert_eq!(verified.pre_authorized, 1);
    assert_eq!(verified.denied_no_case_number_rule, 1);
    assert_eq!(verified.denied_by_owner + verified.awaiting_decision, 0);
    let unverified = &requests.unverified;
    assert_eq!(unverified.total, 5);
    assert_eq!(unverified.denied_by_owner, 1);
    assert_eq!(unverified.awaiting_decision, 1);
    assert_eq!(unverified.no_matching_clips, 1);
    assert_eq!(unverified.blocked, 1);
    assert_eq!(unverified.denied_unverified_rule, 1);
    assert_eq!(unverified.granted_by_owner + unverified.pre_authorized, 0);

    let released = &report.released;
    assert_eq!(released.grants_issued, 3);
    assert_eq!(released.grants_by_rule, 1);
    assert_eq!(released.revocations, 1);
    assert_eq!(released.fetches_allowed, 3);
    assert_eq!(released.fetches_completed, 3);
    assert_eq!(released.fetches_refused, 1);
    assert_eq!(released.bytes_released, 2500);
    assert_eq!(released.distinct_clips_released, 2);

    // Token 4 expired, token 9 was revoked: only token 1 is active.
    let active: Vec<_> = report.active_grants.iter().map(|g| g.token_id).collect();
    assert_eq!(active, vec![token(1)]);
    assert_eq!(report.active_grants[0].grantee, peer(1));
    assert_eq!(report.active_grants[0].clips, 2);

    let mine = &report.as_requester;
    assert_eq!(
        (mine.requests_sent, mine.direct_requests, mine.area_requests),
        (2, 1, 1)
    );
    assert_eq!((mine.grants_received, mine.denials_received), (1, 1));
    assert_eq!((mine.clips_received, mine.bytes_received), (2, 300));
    assert_eq!(
        (
            mine.grants_expired,
            mine.grants_revoked,
            mine.grants_retained
        ),
        (1, 1, 1)
    );

    // Once token 1's window has passed, nothing is active.
    let later = TransparencyReport::from_records(&records, at(100_000));
    assert!(later.active_grants.is_empty());

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["released"]["bytes_released"], 2500);
    assert_eq!(json["requests_received"]["unverified"]["blocked"], 1);
    assert_eq!(
        json["active_grants"][0]["token_id"],
        token(1).to_string().as_str()
    );
    let text = report.to_string();
    assert!(
        text.contains("released                      2 distinct clips, 2500 bytes"),
        "{text}"
    );
    assert!(text.contains("active grants                 1"), "{text}");
    // Rows that count nothing are folded away.
    assert!(!text.contains("awaiting a decision           0"), "{text}");
    assert!(!text.contains(" 0 "), "a zero row or part: {text}");

    // Who asked, how often, and what they got.
    let first = &report.by_requester[0];
    assert!(first.requests >= report.by_requester[1].requests);
    let total: u64 = report.by_requester.iter().map(|p| p.requests).sum();
    assert_eq!(total, 9);
    let granted: u64 = report.by_requester.iter().map(|p| p.granted).sum();
    assert_eq!(granted, 3);
    let bytes: u64 = report.by_requester.iter().map(|p| p.bytes_released).sum();
    assert_eq!(bytes, 2500);
    assert!(text.contains("by requester\n"), "{text}");
    assert!(text.contains("request(s), "), "{text}");
}

#[test]
fn records_render_as_json_and_lines() {
    let entries = chain_from(
        None,
        vec![AuditEvent::FetchCompleted {
            token_id: token(1),
            clip_id: clip(2),
            peer: peer(3),
            bytes: 4096,
        }],
    );
    let record = SignedAuditRecord::sign(entries[0].clone(), &identity());
    let json = serde_json::to_value(AuditRecordView::of(&record)).unwrap();
    assert_eq!(json["seq"], 0);
    assert_eq!(json["at"], "2023-11-14T22:13:20Z");
    assert_eq!(json["event"]["type"], "fetch_completed");
    assert_eq!(json["event"]["bytes"], 4096);
    assert_eq!(json["event"]["peer"], peer(3).to_string().as_str());
    assert_eq!(json["hash"], hex::encode(record.entry.hash).as_str());
    let line = list_line(&record);
    assert!(
        line.contains("sent clip 0202020202020202 (4096 bytes)"),
        "{line}"
    );
}

#[test]
fn refusal_summaries_render_and_count_in_the_report() {
    use porchlight_core::audit::{FetchRefusalCause, RefusedPeers};

    let entries = chain_from(
        None,
        vec![
            AuditEvent::FetchRefused {
                peer: peer(9),
                code: RejectCode::Invalid,
            },
            AuditEvent::FetchRefusalsCounted {
                since: at(0),
                peers: RefusedPeers::One(peer(9)),
                cause: FetchRefusalCause::Rejected(RejectCode::Invalid),
                count: 4,
            },
            AuditEvent::FetchRefusalsCounted {
                since: at(0),
                peers: RefusedPeers::Others,
                cause: FetchRefusalCause::OverLimit,
                count: 19_000,
            },
        ],
    );
    let records: Vec<_> = entries
        .into_iter()
        .map(|entry| SignedAuditRecord::sign(entry, &identity()))
        .collect();
    let report = TransparencyReport::from_records(&records, at(1000));
    assert_eq!(report.released.fetches_refused, 5);
    assert_eq!(report.released.fetches_over_limit, 19_000);
    assert!(
        report
            .to_string()
            .contains("fetches                       5 refused, 19000 closed over a limit"),
        "{report}"
    );

    let one = serde_json::to_value(AuditRecordView::of(&records[1])).unwrap();
    assert_eq!(one["event"]["type"], "fetch_refusals_counted");
    assert_eq!(one["event"]["peer"], peer(9).to_string().as_str());
    assert_eq!(one["event"]["code"], "invalid");
    assert_eq!(one["event"]["count"], 4);
    assert_eq!(one["event"]["since"], "2023-11-14T22:13:20Z");
    let others = serde_json::to_value(AuditRecordView::of(&records[2])).unwrap();
    assert!(others["event"].get("peer").is_none(), "{others}");
    assert_eq!(others["event"]["code"], "over_limit");
    let line = list_line(&records[2]);
    assert!(
        line.contains(
            "19000 more fetches refused for other peers (over limit) since 2023-11-14T22:13:20Z"
        ),
        "{line}"
    );
}

#[test]
fn a_cut_fetch_is_shown_and_its_bytes_count_as_released() {
    let cut = AuditEvent::FetchCut {
        token_id: token(1),
        clip_id: clip(2),
        peer: peer(3),
        bytes: 131_104,
        why: GrantEnd::Revoked,
    };
    let entries = chain_from(
        None,
        vec![
            AuditEvent::FetchServed {
                token_id: token(1),
                clip_id: clip(2),
                peer: peer(3),
            },
            cut.clone(),
        ],
    );
    let record = SignedAuditRecord::sign(entries[1].clone(), &identity());
    let json = serde_json::to_value(AuditRecordView::of(&record)).unwrap();
    assert_eq!(json["event"]["type"], "fetch_cut");
    assert_eq!(json["event"]["bytes"], 131_104);
    assert_eq!(json["event"]["why"], "revoked");
    let line = list_line(&record);
    assert!(
        line.contains("stopped sending clip 0202020202020202") && line.contains("131104 bytes"),
        "{line}"
    );

    let report = TransparencyReport::from_entries(&entries, at(1000));
    assert_eq!(report.released.fetches_cut, 1);
    assert_eq!(report.released.fetches_completed, 0);
    assert_eq!(report.released.bytes_released, 131_104);
    assert_eq!(report.released.distinct_clips_released, 1);
    let text = report.to_string();
    assert!(
        text.contains("fetches                       1 allowed, 1 cut\n"),
        "{text}"
    );
}

// ------------------------------------------------------------------------------------------
// `porchlight audit` through the binary
// ------------------------------------------------------------------------------------------

fn porchlight(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porchlight"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the porchlight binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A data dir made by `porchlight init`, with a log of `crafted_history` signed by its key.
fn initialized_node_with_log(root: &Path) -> PathBuf {
    let data_dir = root.join("node");
    let out = run(porchlight(&data_dir).args(["init", "--name", "audited"]));
    assert!(out.status.success(), "init failed: {}", text(&out.stderr));
    let dir = DataDir::at(&data_dir);
    let keys = NodeKeys::load(&dir).expect("init wrote the keys");
    let mut log = AuditLog::open(dir.audit_log()).expect("a new log opens");
    for entry in crafted_history() {
        log.append(&entry, &keys.identity)
            .expect("an entry that continues the log");
    }
    data_dir
}

#[test]
fn the_cli_verifies_a_good_log_and_fails_on_a_tampered_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = initialized_node_with_log(tmp.path());

    let out = run(porchlight(&data_dir).args(["audit", "verify"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("is intact: 29 entries"), "{stdout}");
    assert!(stdout.contains("head: seq 28"), "{stdout}");

    let out = run(porchlight(&data_dir).args(["audit", "list"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 29);

    let out = run(porchlight(&data_dir).args(["audit", "report", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["released"]["bytes_released"], 2500);

    // Edit one byte of entry 5's event.
    let path = DataDir::at(&data_dir).audit_log();
    let mut records = record_bytes(&path);
    records[5][4 + 74] ^= 0x01;
    write_records(&path, &records);

    let out = run(porchlight(&data_dir).args(["audit", "verify"]));
    assert!(!out.status.success(), "a tampered log must fail verify");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("broken at entry 5"), "{stderr}");
    assert!(stderr.contains("edited"), "{stderr}");
    assert!(
        stderr.contains("the 5 entries before it verified"),
        "{stderr}"
    );

    let out = run(porchlight(&data_dir).args(["audit", "verify", "--json"]));
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["intact"], false);
    assert_eq!(json["failure"]["index"], 5);
    assert_eq!(json["failure"]["problem"], "hash_mismatch");
}

#[test]
fn the_cli_verifies_against_another_peer_and_handles_a_missing_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = initialized_node_with_log(tmp.path());
    let stranger = SigningIdentity::from_secret_bytes(&[77; 32]).peer_id();
    let out = run(porchlight(&data_dir).args(["audit", "verify", "--peer", &stranger.to_string()]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("signature does not verify"),
        "{}",
        text(&out.stderr)
    );

    let out = run(porchlight(&data_dir).args(["audit", "verify", "--peer", "not-a-peer"]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is not a peer id"));

    std::fs::remove_file(DataDir::at(&data_dir).audit_log()).unwrap();
    let out = run(porchlight(&data_dir).args(["audit", "verify"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no audit log"),
        "{}",
        text(&out.stderr)
    );
    let out = run(porchlight(&data_dir).args(["audit", "list"]));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("no audit entries"));
}

/// The security review's reproduction: record 5's length (of 30) set to the largest a length
/// may be, so that everything from record 5 on looked like one torn record.
#[test]
fn a_length_edited_to_the_maximum_is_damage_and_nothing_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = log_of(tmp.path(), 30);
    let mut records = record_bytes(&path);
    let true_len = records[5].len() - 4;
    let max = u32::try_from(MAX_RECORD_LEN).unwrap();
    records[5][..4].copy_from_slice(&max.to_be_bytes());
    write_records(&path, &records);
    let before = std::fs::read(&path).unwrap();

    let report = verify(&path, &identity().peer_id()).unwrap();
    assert!(!report.is_intact(), "a hidden tail is damage: {report:?}");
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.verified, 5);
    assert_eq!(
        failure(&report),
        (
            5,
            None,
            RecordProblem::LengthMismatch {
                len: max,
                actual: true_len
            }
        )
    );

    let err = AuditLog::open(&path).unwrap_err();
    assert!(
        matches!(err, AuditLogError::Damaged { index: 5, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("porchlight audit verify"), "{message}");
    assert!(message.contains("porchlight audit set-aside"), "{message}");
    assert!(matches!(
        read_all(&path),
        Err(AuditLogError::Damaged { index: 5, .. })
    ));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the damaged log is unchanged, byte for byte"
    );
}

/// What a crash mid-append leaves (a prefix of one record, perhaps then zeros where blocks
/// were never written) is a torn tail, cut at open; a "torn" record that is more than that
/// is damage, and stays.
#[test]
fn only_a_prefix_of_one_record_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, entries) = log_of(tmp.path(), 3);
    let whole = std::fs::read(&path).unwrap();
    let next = chain_from(entries.last(), denials(3..5));
    let record = SignedAuditRecord::sign(next[0].clone(), &identity()).to_bytes();
    let after = SignedAuditRecord::sign(next[1].clone(), &identity()).to_bytes();

    let mut torn_tails: Vec<Vec<u8>> = (1..record.len()).map(|n| record[..n].to_vec()).collect();
    // The first 60 bytes reached the disk, the rest of the record's blocks are zeros.
    let mut zeroed = record.clone();
    zeroed[60..].iter_mut().for_each(|byte| *byte = 0);
    torn_tails.push(zeroed[..record.len() - 1].to_vec());
    for tail in torn_tails {
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let report = verify(&path, &identity().peer_id()).unwrap();
        assert!(report.is_intact(), "{} bytes: {report:?}", tail.len());
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.next_seq(), 3);
        drop(log);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            whole,
            "{} bytes cut",
            tail.len()
        );
    }

    let mut longer = record.clone();
    let bigger = u32::try_from(record.len() - 4 + after.len()).unwrap() + 1;
    longer[..4].copy_from_slice(&bigger.to_be_bytes());
    let mut wrong_hash = record[..record.len() - 70].to_vec();
    let hash_at = record.len() - 96;
    wrong_hash[hash_at] ^= 1;
    // Record 4 whole, behind the start of record 3 whose length now covers the rest.
    let mut stranger_inside = record[..50].to_vec();
    stranger_inside[..4].copy_from_slice(&u32::try_from(MAX_RECORD_LEN).unwrap().to_be_bytes());
    stranger_inside.extend_from_slice(&after);
    let mut not_an_entry = record[..50].to_vec();
    not_an_entry[10] ^= 0x20;
    let damaged: [(&str, Vec<u8>, &str); 4] = [
        (
            "a length covering this record and the next",
            [longer, after.clone()].concat(),
            "length_mismatch",
        ),
        (
            "a whole entry with a wrong hash",
            wrong_hash,
            "hash_mismatch",
        ),
        (
            "a later record inside the tail",
            stranger_inside,
            "record_in_tail",
        ),
        (
            "bytes that start no entry",
            not_an_entry,
            "not_a_torn_record",
        ),
    ];
    for (what, tail, code) in damaged {
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let report = verify(&path, &identity().peer_id()).unwrap();
        assert!(!report.is_intact(), "{what}: {report:?}");
        let failure = report.failure.as_ref().unwrap();
        assert_eq!((failure.index, failure.problem.code()), (3, code), "{what}");
        assert!(
            matches!(
                AuditLog::open(&path),
                Err(AuditLogError::Damaged { index: 3, .. })
            ),
            "{what}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: nothing is cut"
        );
    }

    // Zeros longer than any one record are not a torn write either.
    let mut bytes = whole.clone();
    bytes.extend_from_slice(&vec![0; MAX_RECORD_LEN + 4]);
    std::fs::write(&path, &bytes).unwrap();
    assert!(!verify(&path, &identity().peer_id()).unwrap().is_intact());
    assert!(AuditLog::open(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_batch_is_appended_whole_and_checked_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, entries) = log_of(tmp.path(), 2);
    let before = std::fs::read(&path).unwrap();
    let mut log = AuditLog::open(&path).unwrap();
    let batch = chain_from(entries.last(), denials(2..5));
    // The third entry skips a seq: the whole batch is refused, the first two included.
    let mut gapped = batch.clone();
    gapped[2] = chain_from(Some(&batch[2]), denials(9..10)).remove(0);
    assert!(matches!(
        log.append_all(&gapped, &identity()),
        Err(AuditLogError::DoesNotFollow {
            seq: 5,
            next_seq: 4,
            ..
        })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing was written");
    assert_eq!(log.next_seq(), 2);

    log.append_all(&batch, &identity()).unwrap();
    assert_eq!(log.next_seq(), 5);
    assert_eq!(log.last_entry(), batch.last());
    log.append_all(&[], &identity()).unwrap();
    drop(log);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert!(report.is_intact() && report.verified == 5, "{report:?}");
}

/// A real, small file system: mounted for one test and unmounted when it ends, even by a
/// panic.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    fn mount(size: &str) -> SmallTmpfs {
        let dir = tempfile::tempdir().expect("a temporary directory to mount on");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root");
        SmallTmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system of `path` until a write fails.
fn fill(path: &Path) {
    use std::io::Write;
    let mut filler = std::fs::File::create(path).expect("room for the filler's name");
    let chunk = [0x55u8; 512];
    while filler.write_all(&chunk).is_ok() {}
    let _ = filler.sync_all();
}

#[test]
fn a_batch_that_fills_the_disk_leaves_the_log_as_it_was() {
    let disk = SmallTmpfs::mount("64k");
    let path = disk.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    let entries = chain_from(None, denials(0..18));
    log.append_all(&entries, &identity()).unwrap();
    let before = std::fs::read(&path).unwrap();
    // 18 records of 207 bytes end 370 bytes into the log's first page: room for one record
    // and most of a second of the batch of three, and then the disk is full.
    assert_eq!(before.len(), 18 * 207);
    fill(&disk.path().join("filler"));

    let batch = chain_from(entries.last(), denials(18..21));
    let err = log.append_all(&batch, &identity()).unwrap_err();
    assert!(matches!(err, AuditLogError::Io { .. }), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "exactly the records before the batch"
    );
    assert_eq!(log.next_seq(), 18, "the log's end did not move");

    std::fs::remove_file(disk.path().join("filler")).unwrap();
    log.append_all(&batch, &identity()).unwrap();
    drop(log);
    let report = verify(&path, &identity().peer_id()).unwrap();
    assert!(report.is_intact() && report.verified == 21, "{report:?}");
}

#[test]
fn the_cli_saves_a_head_and_notices_a_log_cut_or_rewritten_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = initialized_node_with_log(tmp.path());
    let path = DataDir::at(&data_dir).audit_log();
    let head_file = tmp.path().join("head.json");

    let out = run(porchlight(&data_dir).args(["audit", "head", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(&head_file, &out.stdout).unwrap();
    let head: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(head["seq"], 28);
    let records = read_all(&path).unwrap();
    assert_eq!(head["hash"], hex::encode(records[28].entry.hash));
    assert_eq!(head["signature"], hex::encode(records[28].signature));
    let out = run(porchlight(&data_dir).args(["audit", "head"]));
    assert!(
        text(&out.stdout).contains("seq:       28"),
        "{}",
        text(&out.stdout)
    );

    let verify_head = || {
        run(porchlight(&data_dir)
            .args(["audit", "verify", "--head"])
            .arg(&head_file))
    };
    let out = verify_head();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("still holds the saved head"));

    // More entries after the head: still holds it.
    let keys = NodeKeys::load(&DataDir::at(&data_dir)).unwrap();
    let mut log = AuditLog::open(&path).unwrap();
    let more = chain_from(log.last_entry(), denials(50..52));
    log.append_all(&more, &keys.identity).unwrap();
    drop(log);
    assert!(verify_head().status.success());

    // Cut back to 20 entries: intact, but the head is gone.
    let whole = std::fs::read(&path).unwrap();
    let kept: usize = record_bytes(&path)[..20].iter().map(Vec::len).sum();
    std::fs::write(&path, &whole[..kept]).unwrap();
    let out = run(porchlight(&data_dir).args(["audit", "verify"]));
    assert!(out.status.success(), "a cut log verifies on its own");
    let out = verify_head();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cut short"),
        "{}",
        text(&out.stderr)
    );
    let out = run(porchlight(&data_dir)
        .args(["audit", "verify", "--json", "--head"])
        .arg(&head_file));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["saved_head"], "cut");

    // Rewritten: a whole new chain of 30 entries, signed by the same key.
    std::fs::remove_file(&path).unwrap();
    let mut log = AuditLog::open(&path).unwrap();
    log.append_all(&chain_from(None, denials(100..130)), &keys.identity)
        .unwrap();
    drop(log);
    let out = verify_head();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("rewritten"),
        "{}",
        text(&out.stderr)
    );

    // A head whose signature was edited is not this node's.
    std::fs::write(&path, &whole).unwrap();
    let mut edited = head.clone();
    let signature = head["signature"].as_str().unwrap();
    let flipped = if signature.starts_with('0') { "1" } else { "0" };
    edited["signature"] = format!("{flipped}{}", &signature[1..]).into();
    std::fs::write(&head_file, edited.to_string()).unwrap();
    let out = verify_head();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("signature does not verify"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn set_aside_keeps_the_damaged_log_and_starts_a_chain_that_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = initialized_node_with_log(tmp.path());
    let dir = DataDir::at(&data_dir);
    let path = dir.audit_log();
    let records = read_all(&path).unwrap();

    let out = run(porchlight(&data_dir).args(["audit", "set-aside"]));
    assert!(!out.status.success(), "an intact log is not set aside");
    assert!(
        text(&out.stderr).contains("is intact"),
        "{}",
        text(&out.stderr)
    );

    let mut raw = record_bytes(&path);
    let max = u32::try_from(MAX_RECORD_LEN).unwrap();
    raw[5][..4].copy_from_slice(&max.to_be_bytes());
    write_records(&path, &raw);
    let damaged = std::fs::read(&path).unwrap();
    let out = run(porchlight(&data_dir).args(["audit", "verify"]));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("tampering"), "{stderr}");
    assert!(!stderr.contains("not tampering"), "{stderr}");
    assert!(stderr.contains("porchlight audit set-aside"), "{stderr}");

    let out = run(porchlight(&data_dir).args(["audit", "set-aside"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kept: Vec<PathBuf> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.log.set-aside-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        damaged,
        "kept byte for byte"
    );

    let new = read_all(&path).unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(
        new[0].entry.event,
        AuditEvent::LogSetAside {
            verified: 5,
            last_hash: records[4].entry.hash,
        }
    );
    assert_eq!(
        (new[0].entry.seq, new[0].entry.prev_hash),
        (0, GENESIS_HASH)
    );
    let keys = NodeKeys::load(&dir).unwrap();
    let report = verify(&path, &keys.identity.peer_id()).unwrap();
    assert!(report.is_intact() && report.verified == 1, "{report:?}");
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.next_seq(), 1, "the node goes on from the new chain");
    drop(log);
    let out = run(porchlight(&data_dir).args(["audit", "list", "--wide"]));
    assert!(
        text(&out.stdout).contains("set a damaged log aside, whose first 5 entries verified"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_denial_with_a_message_is_listed_with_it_and_counted_in_the_report() {
    let events = vec![
        AuditEvent::DenialReceived {
            request_id: request(1),
            owner: peer(1),
        },
        AuditEvent::DenialReceivedWithMessage {
            request_id: request(2),
            owner: peer(2),
            message: "sorry, nothing useful".into(),
        },
    ];
    let records: Vec<_> = chain_from(None, events)
        .into_iter()
        .map(|entry| SignedAuditRecord::sign(entry, &identity()))
        .collect();
    let line = list_line(&records[1]);
    assert!(line.contains("\"sorry, nothing useful\""), "{line}");
    let json = serde_json::to_value(AuditRecordView::of(&records[1])).unwrap();
    assert_eq!(json["event"]["type"], "denial_received_with_message");
    assert_eq!(json["event"]["message"], "sorry, nothing useful");
    let report = TransparencyReport::from_records(&records, at(1000));
    let mine = &report.as_requester;
    assert_eq!((mine.denials_received, mine.denials_with_message), (2, 1));
    assert!(report.to_string().contains("2 denials (1 with a message)"));
}
