//! The clip store from the outside: round trips, no plaintext on disk, crash recovery (with a
//! writer process killed with SIGKILL at random moments), retention and crypto-shredding,
//! rebuilds, streaming imports, a really full disk, and bad input.
//!
//! Two tests re-run this test binary as a child process (selected by `CHILD_ENV`): the crash
//! test, whose child writes clips until it is killed, and the memory test, whose child
//! imports 20 MB and reports its peak memory. Nothing here needs a camera or the network.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use porchlight_node::recording::Segment;
use porchlight_node::store::{
    ClipFilter, ClipRecord, DeleteReason, Store, StoreConfig, StoreError, erase_wrapped_key,
};
use porchlight_protocol::{AgreementSecret, ClipId, Timestamp};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

const CHILD_ENV: &str = "PORCHLIGHT_STORE_TEST_CHILD";
const DIR_ENV: &str = "PORCHLIGHT_STORE_TEST_DIR";
const VAULT_ENV: &str = "PORCHLIGHT_STORE_TEST_VAULT";
const ROUND_ENV: &str = "PORCHLIGHT_STORE_TEST_ROUND";

const SECOND: u64 = 1_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// A fixed "now" for the retention tests: 2026-11-29T12:00:00Z.
const NOW: u64 = 1_795_953_600_000;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn vault_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

fn open(dir: &Path, seed: [u8; 32], config: StoreConfig) -> Store {
    Store::open(dir, AgreementSecret::from_bytes(seed), config).expect("store opens")
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

fn segment(camera: &str, start: u64, end: u64, mp4: Vec<u8>) -> Segment {
    Segment {
        camera: camera.into(),
        start: ts(start),
        end: ts(end),
        mp4: Zeroizing::new(mp4),
    }
}

fn export(store: &Store, clip_id: &ClipId) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    store.export(clip_id, &mut out)?;
    Ok(out)
}

fn ids(records: &[ClipRecord]) -> Vec<ClipId> {
    records.iter().map(|r| r.clip_id).collect()
}

fn all(store: &Store) -> Vec<ClipRecord> {
    store.list(&ClipFilter::default()).expect("list")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn partial_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "partial"))
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------

#[test]
fn add_list_export_round_trip_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let seed = vault_seed();
    let store = open(dir.path(), seed, StoreConfig::default());
    // Sizes around the 64 KiB chunk boundary and a multi-chunk clip; added out of order.
    let cases = [
        ("porch", 30 * SECOND, 65_536),
        ("porch", 10 * SECOND, 1),
        ("garage", 20 * SECOND, 65_537),
        ("porch", 40 * SECOND, 300_001),
    ];
    let mut added = Vec::new();
    for (camera, start, len) in cases {
        let mp4 = random_bytes(len);
        let record = store
            .add_segment(&segment(camera, start, start + 10 * SECOND, mp4.clone()))
            .unwrap();
        assert_eq!(record.camera, camera);
        assert_eq!(record.media_len, len as u64);
        assert_eq!(record.size, fs::metadata(&record.path).unwrap().len());
        assert!(record.path.starts_with(dir.path().join("clips")));
        added.push((record, mp4));
    }

    let listed = all(&store);
    let starts: Vec<u64> = listed.iter().map(|r| r.start.as_unix_millis()).collect();
    assert_eq!(
        starts,
        [10, 20, 30, 40].map(|s| s * SECOND),
        "sorted by start"
    );
    for (record, mp4) in &added {
        assert_eq!(&store.get(&record.clip_id).unwrap(), record);
        assert_eq!(
            &export(&store, &record.clip_id).unwrap(),
            mp4,
            "byte-identical"
        );
        assert!(listed.contains(record));
    }

    let porch = store
        .list(&ClipFilter {
            camera: Some("porch".into()),
            ..ClipFilter::default()
        })
        .unwrap();
    assert_eq!(porch.len(), 3);
    let window = store
        .list(&ClipFilter {
            camera: None,
            from: Some(ts(25 * SECOND)),
            to: Some(ts(40 * SECOND)),
        })
        .unwrap();
    let window_starts: Vec<u64> = window.iter().map(|r| r.start.as_unix_millis()).collect();
    assert_eq!(
        window_starts,
        [20 * SECOND, 30 * SECOND],
        "[25 s, 40 s) overlaps two clips"
    );

    let stats = store.stats().unwrap();
    assert_eq!(stats.clips, 4);
    assert_eq!(stats.bytes, added.iter().map(|(r, _)| r.size).sum::<u64>());
    assert_eq!(stats.oldest, Some(ts(10 * SECOND)));
    assert_eq!(stats.newest, Some(ts(50 * SECOND)));
    assert_eq!(stats.per_camera["porch"].clips, 3);
    assert_eq!(stats.per_camera["garage"].clips, 1);
    assert!(stats.available_bytes > 0);

    // The ciphertext reader serves exactly the bytes on disk, whole or by chunk.
    let (big, _) = &added[3];
    let on_disk = fs::read(&big.path).unwrap();
    let mut reader = store.read_ciphertext(&big.clip_id).unwrap();
    let header_len = reader.header_bytes().len();
    assert_eq!(reader.header_bytes(), &on_disk[88..88 + header_len]);
    let mut ciphertext = Vec::new();
    reader.read_to_end(&mut ciphertext).unwrap();
    assert_eq!(ciphertext, on_disk[88 + header_len..]);
    assert_eq!(reader.layout().chunk_count(), 5);
    let last = reader.read_chunk(4).unwrap().unwrap();
    assert_eq!(last, on_disk[on_disk.len() - last.len()..]);
    assert!(reader.read_chunk(5).unwrap().is_none());
    // Into a reused buffer (how a fetch reads), which must be exactly the chunk's length.
    let first_len = reader.chunk_len(0).unwrap().unwrap();
    let mut buffer = vec![0u8; first_len];
    reader.read_chunk_into(0, &mut buffer).unwrap();
    assert_eq!(buffer, ciphertext[..first_len]);
    assert_eq!(reader.chunk_len(4).unwrap(), Some(last.len()));
    assert_eq!(reader.chunk_len(5).unwrap(), None);
    for (index, len) in [(0, first_len - 1), (0, first_len + 1), (5, first_len)] {
        let err = reader
            .read_chunk_into(index, &mut vec![0u8; len])
            .unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidInput,
            "{index} {len}"
        );
    }

    // Another vault key is refused before anything is touched.
    drop(store);
    let err = Store::open(
        dir.path(),
        AgreementSecret::from_bytes([9; 32]),
        StoreConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::WrongVault { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is this the right key file?"),
        "{err}"
    );
    assert!(added.iter().all(|(record, _)| record.path.exists()));
    // The right one finds everything as it was.
    let store = open(dir.path(), seed, StoreConfig::default());
    assert!(store.recovery().is_clean(), "{:#?}", store.recovery());
    assert_eq!(all(&store), listed);
}

// ---------------------------------------------------------------------------------------
// No plaintext on disk
// ---------------------------------------------------------------------------------------

/// Everything the plaintext scan looks for. Start codes are checked with their NAL header
/// byte (SPS 0x67, IDR slice 0x65) so random ciphertext cannot match them by chance at
/// these sizes; the four-byte box names are checked over about 150 KB of ciphertext, a
/// chance match of roughly 1 in 10^4.
fn plaintext_signatures(marker: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("marker", marker.to_vec()),
        ("ftyp box", b"ftyp".to_vec()),
        ("moov box", b"moov".to_vec()),
        ("mdat box", b"mdat".to_vec()),
        ("H.264 SPS start code", vec![0, 0, 0, 1, 0x67]),
        ("H.264 IDR start code", vec![0, 0, 0, 1, 0x65]),
    ]
}

fn scan_for_plaintext(dir: &Path, marker: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for path in files_under(dir) {
        let bytes = fs::read(&path).expect("read a file under the data dir");
        for (what, needle) in plaintext_signatures(marker) {
            if let Some(at) = find(&bytes, &needle) {
                found.push(format!("{what} in {} at {at}", path.display()));
            }
        }
    }
    found
}

fn fake_mp4(marker: &[u8]) -> Vec<u8> {
    let mut mp4 = Vec::new();
    mp4.extend_from_slice(&[0, 0, 0, 0x20]);
    mp4.extend_from_slice(b"ftypisom");
    mp4.extend_from_slice(marker);
    mp4.extend_from_slice(&[0, 0, 0x10, 0]);
    mp4.extend_from_slice(b"moov");
    mp4.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f]);
    mp4.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
    mp4.extend_from_slice(&[0, 1, 0, 0]);
    mp4.extend_from_slice(b"mdat");
    mp4.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
    // Repetitive "video" so the plaintext spans more than one chunk.
    for i in 0..70_000u32 {
        mp4.push((i % 7) as u8);
    }
    mp4.extend_from_slice(marker);
    mp4
}

#[test]
fn no_plaintext_reaches_any_file_in_the_data_dir() {
    let marker: Vec<u8> = [b"ftypisom".as_slice(), &random_bytes(32)].concat();
    let mp4 = fake_mp4(&marker);

    // The scanner itself must be able to fail: it finds a planted plaintext file.
    let control = tempfile::tempdir().unwrap();
    fs::create_dir_all(control.path().join("deep/er")).unwrap();
    fs::write(control.path().join("deep/er/leak.bin"), &mp4).unwrap();
    let planted = scan_for_plaintext(control.path(), &marker);
    assert_eq!(
        planted.len(),
        6,
        "the scanner sees every signature: {planted:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vault_seed(), StoreConfig::default());
    let recorded = store
        .add_segment(&segment("porch", 0, 60 * SECOND, mp4.clone()))
        .unwrap();
    let imported = store
        .import(&mp4[..], "garage", ts(0), ts(60 * SECOND))
        .unwrap();
    store.hold(&recorded.clip_id).unwrap();
    // Exporting to memory writes nothing to the store.
    assert_eq!(export(&store, &imported.clip_id).unwrap(), mp4);
    // A failed write leaves nothing readable either.
    let failing = FailingReader {
        inner: &mp4[..],
        fail_after: 40_000,
        served: 0,
    };
    assert!(store.import(failing, "porch", ts(0), ts(1)).is_err());
    store.apply_retention(ts(0)).unwrap();
    drop(store);

    let files = files_under(dir.path());
    assert!(
        files
            .iter()
            .any(|p| p.starts_with(dir.path().join("index")))
    );
    assert!(
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "plclip"))
            .count()
            == 2
    );
    let found = scan_for_plaintext(dir.path(), &marker);
    assert!(found.is_empty(), "plaintext on disk: {found:?}");
}

// ---------------------------------------------------------------------------------------
// Crash recovery
// ---------------------------------------------------------------------------------------

#[test]
fn leftovers_of_a_crash_are_repaired_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let seed = vault_seed();
    let store = open(dir.path(), seed, StoreConfig::default());
    let kept = store
        .add_segment(&segment("porch", 0, SECOND, random_bytes(5_000)))
        .unwrap();
    let lost = store
        .add_segment(&segment("porch", SECOND, 2 * SECOND, random_bytes(5_000)))
        .unwrap();
    let half_deleted = store
        .add_segment(&segment(
            "porch",
            2 * SECOND,
            3 * SECOND,
            random_bytes(5_000),
        ))
        .unwrap();
    store.hold(&lost.clip_id).unwrap();
    drop(store);

    // A write interrupted before its rename: ciphertext under a `.partial` name.
    let camera_dir = dir.path().join("clips/porch");
    let partial = camera_dir.join("0123456789abcdef0123456789abcdef.partial");
    fs::write(&partial, random_bytes(70_000)).unwrap();
    // An index entry whose file is gone.
    fs::remove_file(&lost.path).unwrap();
    // A deletion interrupted after its shred.
    erase_wrapped_key(&half_deleted.path).unwrap();
    // A write interrupted after its rename but before its index entry: a valid clip file of
    // this node (same vault) that the index does not know.
    let other = tempfile::tempdir().unwrap();
    let other_store = open(other.path(), seed, StoreConfig::default());
    let orphan_mp4 = random_bytes(80_000);
    let orphan = other_store
        .add_segment(&segment(
            "garage",
            5 * SECOND,
            6 * SECOND,
            orphan_mp4.clone(),
        ))
        .unwrap();
    drop(other_store);
    let orphan_dir = dir.path().join("clips/garage");
    fs::create_dir_all(&orphan_dir).unwrap();
    fs::copy(
        &orphan.path,
        orphan_dir.join(orphan.path.file_name().unwrap()),
    )
    .unwrap();
    // A clip file from another node (another vault key): it never verifies here.
    let foreign = tempfile::tempdir().unwrap();
    let foreign_store = open(foreign.path(), vault_seed(), StoreConfig::default());
    let alien = foreign_store
        .add_segment(&segment(
            "porch",
            7 * SECOND,
            8 * SECOND,
            random_bytes(1_000),
        ))
        .unwrap();
    drop(foreign_store);
    let alien_path = camera_dir.join(alien.path.file_name().unwrap());
    fs::copy(&alien.path, &alien_path).unwrap();
    // Not ours at all.
    fs::write(camera_dir.join("README"), b"hello").unwrap();

    let store = open(dir.path(), seed, StoreConfig::default());
    let report = store.recovery().clone();
    assert_eq!(report.partials_removed, vec![partial.clone()]);
    assert!(!partial.exists());
    assert_eq!(report.entries_dropped.len(), 1, "{report:#?}");
    assert_eq!(report.entries_dropped[0].what, lost.clip_id.to_string());
    assert_eq!(report.deletions_finished, vec![half_deleted.path.clone()]);
    assert!(!half_deleted.path.exists());
    assert_eq!(report.reindexed, [orphan.clip_id]);
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].from, alien_path);
    assert!(
        report.quarantined[0]
            .to
            .starts_with(dir.path().join("quarantine"))
    );
    assert!(
        report.quarantined[0].reason.contains("vault"),
        "{report:#?}"
    );
    assert_eq!(report.ignored, [camera_dir.join("README")]);
    assert_eq!(report.stale_marks_removed, 1, "the hold of the lost clip");
    assert_eq!(report.clips_ok, 1);

    assert_eq!(ids(&all(&store)), [kept.clip_id, orphan.clip_id]);
    assert_eq!(export(&store, &orphan.clip_id).unwrap(), orphan_mp4);
    assert!(export(&store, &kept.clip_id).is_ok());
    drop(store);

    // Recovery is complete: the next open has nothing to do.
    let store = open(dir.path(), seed, StoreConfig::default());
    assert!(store.recovery().is_clean(), "{:#?}", store.recovery());
    assert_eq!(store.recovery().clips_ok, 2);
}

/// The child side of the crash test: writes clips (and runs retention, so some deletions
/// are in flight too) until it is killed. Prints `ACK <id>` only after `add_segment`
/// returned, and `DEL <id>` only after retention returned.
fn crash_writer() {
    let dir = PathBuf::from(env::var(DIR_ENV).expect("dir"));
    let seed = decode_seed(&env::var(VAULT_ENV).expect("vault"));
    let round: u64 = env::var(ROUND_ENV).expect("round").parse().expect("round");
    let config = StoreConfig {
        max_bytes: Some(2_000_000),
        ..StoreConfig::default()
    };
    let store = open(&dir, seed, config);
    let stdout = io::stdout();
    // libtest has printed "test <name> ... " without a newline: start a fresh line.
    writeln!(stdout.lock()).expect("stdout");
    for i in 0u64.. {
        let start = round * 10_000_000 + i * SECOND;
        let len = 20_000 + (OsRng.next_u32() % 380_000) as usize;
        let camera = if i % 3 == 0 { "garage" } else { "porch" };
        let record = store
            .add_segment(&segment(camera, start, start + SECOND, random_bytes(len)))
            .expect("child writes");
        writeln!(stdout.lock(), "ACK {}", record.clip_id).expect("stdout");
        if i % 4 == 3 {
            let report = store.apply_retention(ts(start)).expect("retention");
            for deleted in report.deleted {
                writeln!(stdout.lock(), "DEL {}", deleted.clip_id).expect("stdout");
            }
        }
    }
}

fn encode_seed(seed: &[u8; 32]) -> String {
    seed.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_seed(text: &str) -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex");
    }
    seed
}

fn child(test: &str, mode: &str, dir: &Path) -> Command {
    let mut command = Command::new(env::current_exe().expect("test binary path"));
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn kill_9_at_random_moments_never_loses_an_acknowledged_clip() {
    if env::var(CHILD_ENV).as_deref() == Ok("writer") {
        crash_writer();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = vault_seed();
    let mut acked: Vec<ClipId> = Vec::new();
    let mut deleted: BTreeSet<ClipId> = BTreeSet::new();
    let mut repaired = 0;
    for round in 0..6u64 {
        let mut child = child(
            "kill_9_at_random_moments_never_loses_an_acknowledged_clip",
            "writer",
            dir.path(),
        )
        .env(VAULT_ENV, encode_seed(&seed))
        .env(ROUND_ENV, round.to_string())
        .spawn()
        .expect("spawn the writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        // Wait for the first acknowledged clip, then kill at a random moment after it.
        let mut round_lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !round_lines.iter().any(|l: &String| l.starts_with("ACK ")) {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => round_lines.push(line),
                Err(_) if Instant::now() > deadline => break,
                Err(_) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "writer exited by itself ({status}): {}",
                    errors.join().unwrap()
                );
            }
        }
        let delay = Duration::from_millis(u64::from(OsRng.next_u32() % 400));
        std::thread::sleep(delay);
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "writer exited by itself ({status}): {}",
                errors.join().unwrap()
            );
        }
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");
        reader.join().expect("stdout reader");
        let _ = errors.join();
        round_lines.extend(lines.try_iter());
        let mut round_acks = 0;
        for line in &round_lines {
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.parse().expect("clip id"));
                round_acks += 1;
            } else if let Some(id) = line.strip_prefix("DEL ") {
                deleted.insert(id.parse().expect("clip id"));
            }
        }
        assert!(
            round_acks > 0,
            "round {round}: the writer acknowledged nothing"
        );

        // Restart: recovery runs, and the store is consistent.
        let store = open(dir.path(), seed, StoreConfig::default());
        if !store.recovery().is_clean() {
            repaired += 1;
        }
        eprintln!(
            "round {round}: killed {delay:?} after the first ack; {round_acks} acks; recovery: {}",
            store.recovery()
        );
        assert!(
            partial_files(dir.path()).is_empty(),
            "no partial file survives open"
        );
        assert!(
            store.recovery().quarantined.is_empty(),
            "{:#?}",
            store.recovery()
        );
        let listed = all(&store);
        for record in &listed {
            export(&store, &record.clip_id).unwrap_or_else(|err| {
                panic!(
                    "round {round}: listed clip {} does not export: {err}",
                    record.clip_id
                )
            });
        }
        let present: BTreeSet<ClipId> = ids(&listed).into_iter().collect();
        // Every acknowledged clip is there, except those retention deleted, which go oldest
        // first: so once one acknowledged clip is present, every later one is.
        let first_present = acked
            .iter()
            .position(|id| present.contains(id))
            .expect("the newest acknowledged clip at least is present");
        for id in &acked[first_present..] {
            assert!(
                present.contains(id),
                "round {round}: acknowledged clip {id} was lost"
            );
        }
        for id in &deleted {
            assert!(
                !present.contains(id),
                "round {round}: deleted clip {id} came back"
            );
        }
    }
    eprintln!(
        "{} clips acknowledged over 6 kills; {repaired} restarts had something to repair",
        acked.len()
    );
    // Finally every file verifies end to end.
    let store = open(dir.path(), seed, StoreConfig::default());
    let before = ids(&all(&store));
    let report = store.rebuild().unwrap();
    assert!(report.quarantined.is_empty(), "{report:#?}");
    assert_eq!(ids(&all(&store)), before);
}

// ---------------------------------------------------------------------------------------
// Retention and crypto-shredding
// ---------------------------------------------------------------------------------------

#[test]
fn retention_by_age_skips_held_and_protected_clips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vault_seed(), StoreConfig::default());
    let old = |n: u64| NOW - 8 * DAY + n * SECOND;
    let add = |start: u64| {
        store
            .add_segment(&segment(
                "porch",
                start,
                start + SECOND,
                random_bytes(2_000),
            ))
            .unwrap()
    };
    let expired = add(old(0));
    let held = add(old(1));
    let protected = add(old(2));
    let fresh = add(NOW - DAY);
    store.hold(&held.clip_id).unwrap();
    store.protect(&protected.clip_id, ts(NOW + HOUR)).unwrap();
    store.protect(&protected.clip_id, ts(NOW + 1)).unwrap(); // an earlier end never shortens it

    let report = store.apply_retention(ts(NOW)).unwrap();
    let deleted: Vec<(ClipId, DeleteReason)> = report
        .deleted
        .iter()
        .map(|d| (d.clip_id, d.reason))
        .collect();
    assert_eq!(deleted, [(expired.clip_id, DeleteReason::Age)]);
    assert_eq!(report.freed_bytes, expired.size);
    assert_eq!(report.kept.len(), 2);
    assert!(!expired.path.exists());
    assert!(matches!(
        export(&store, &expired.clip_id),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        ids(&all(&store)),
        [held.clip_id, protected.clip_id, fresh.clip_id]
    );
    let listed = all(&store);
    assert!(listed[0].held);
    assert_eq!(listed[1].protected_until, Some(ts(NOW + HOUR)));

    // The owner cannot delete them either, and is told why.
    let err = store.delete(&held.clip_id, ts(NOW)).unwrap_err();
    assert!(err.to_string().contains("on hold"), "{err}");
    let err = store.delete(&protected.clip_id, ts(NOW)).unwrap_err();
    assert!(err.to_string().contains("active grant"), "{err}");

    // Released, and after the grant ended, both go.
    store.release(&held.clip_id).unwrap();
    let report = store.apply_retention(ts(NOW + HOUR)).unwrap();
    let mut gone: Vec<ClipId> = report.deleted.iter().map(|d| d.clip_id).collect();
    gone.sort();
    let mut want = vec![held.clip_id, protected.clip_id];
    want.sort();
    assert_eq!(gone, want);
    assert_eq!(ids(&all(&store)), [fresh.clip_id]);
    assert!(!held.path.exists() && !protected.path.exists());
}

#[test]
fn retention_by_bytes_deletes_the_oldest_first_but_never_a_held_clip() {
    let dir = tempfile::tempdir().unwrap();
    let seed = vault_seed();
    let store = open(dir.path(), seed, StoreConfig::default());
    let clips: Vec<ClipRecord> = (0..4)
        .map(|n| {
            let start = NOW - HOUR + n * SECOND;
            store
                .add_segment(&segment(
                    "porch",
                    start,
                    start + SECOND,
                    random_bytes(10_000),
                ))
                .unwrap()
        })
        .collect();
    let size = clips[0].size;
    assert!(clips.iter().all(|c| c.size == size));
    store.hold(&clips[0].clip_id).unwrap();
    drop(store);

    let config = StoreConfig {
        max_bytes: Some(2 * size),
        ..StoreConfig::default()
    };
    let store = open(dir.path(), seed, config);
    let report = store.apply_retention(ts(NOW)).unwrap();
    let deleted: Vec<(ClipId, DeleteReason)> = report
        .deleted
        .iter()
        .map(|d| (d.clip_id, d.reason))
        .collect();
    assert_eq!(
        deleted,
        [
            (clips[1].clip_id, DeleteReason::Bytes),
            (clips[2].clip_id, DeleteReason::Bytes)
        ]
    );
    assert_eq!((report.bytes_after, report.over_budget_by), (2 * size, 0));
    assert_eq!(ids(&all(&store)), [clips[0].clip_id, clips[3].clip_id]);
    assert_eq!(store.stats().unwrap().bytes, 2 * size);
}

#[test]
fn deletion_zeroes_the_wrapped_key_before_unlinking_and_leaves_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vault_seed(), StoreConfig::default());
    let record = store
        .add_segment(&segment("porch", 0, SECOND, random_bytes(100_000)))
        .unwrap();
    // A second name for the same inode survives the unlink and shows what was written to
    // the file before it: the shred must have zeroed the key in place.
    let witness = dir.path().join("witness");
    fs::hard_link(&record.path, &witness).unwrap();
    let before = fs::read(&witness).unwrap();
    let wrapped_key = before[8..88].to_vec();
    assert!(wrapped_key.iter().any(|&b| b != 0));

    store.delete(&record.clip_id, ts(NOW)).unwrap();
    assert!(!record.path.exists(), "the clip file is unlinked");
    assert!(matches!(
        store.get(&record.clip_id),
        Err(StoreError::NotFound(_))
    ));
    let after = fs::read(&witness).unwrap();
    assert!(after[8..88].iter().all(|&b| b == 0), "key zeroed in place");
    assert_eq!(after[..8], before[..8]);
    assert_eq!(after[88..], before[88..]);
    drop(store);

    // The wrapped key exists nowhere else: not in sled (the index never held it), not in any
    // other file of the data dir.
    for path in files_under(dir.path()) {
        let bytes = fs::read(&path).unwrap();
        assert!(
            find(&bytes, &wrapped_key).is_none(),
            "the wrapped key survives in {}",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Rebuild
// ---------------------------------------------------------------------------------------

#[test]
fn rebuild_recreates_the_index_from_the_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let seed = vault_seed();
    let store = open(dir.path(), seed, StoreConfig::default());
    let mut originals = Vec::new();
    for (n, camera) in ["porch", "porch", "side gate/../../x"].iter().enumerate() {
        let mp4 = random_bytes(50_000 + n);
        let start = n as u64 * SECOND;
        let record = store
            .add_segment(&segment(camera, start, start + SECOND, mp4.clone()))
            .unwrap();
        originals.push((record, mp4));
    }
    let clip = |n: usize| originals[n].0.clip_id;
    store.hold(&clip(1)).unwrap();
    store.protect(&clip(2), ts(NOW)).unwrap();
    // A camera name that looks like a path stays inside clips/.
    assert!(originals[2].0.path.starts_with(dir.path().join("clips")));
    let before = all(&store);

    // On demand, with the store open: holds and protections survive.
    let report = store.rebuild().unwrap();
    assert_eq!(report.reindexed.len(), 3);
    assert!(report.quarantined.is_empty() && report.entries_dropped.is_empty());
    assert_eq!(all(&store), before);
    drop(store);

    // From nothing but the clip files.
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open(dir.path(), seed, StoreConfig::default());
    let mut reindexed = store.recovery().reindexed.clone();
    reindexed.sort();
    let mut want: Vec<ClipId> = (0..3).map(clip).collect();
    want.sort();
    assert_eq!(reindexed, want);
    let after = all(&store);
    assert_eq!(ids(&after), ids(&before));
    for (a, b) in after.iter().zip(&before) {
        // Everything but the hold and grant marks, which lived only in the deleted index.
        assert_eq!(
            (&a.camera, a.start, a.end, a.size, a.media_len, &a.path),
            (&b.camera, b.start, b.end, b.size, b.media_len, &b.path)
        );
    }
    for (record, mp4) in &originals {
        assert_eq!(&export(&store, &record.clip_id).unwrap(), mp4);
    }
}

// ---------------------------------------------------------------------------------------
// Streaming import
// ---------------------------------------------------------------------------------------

const IMPORT_LEN: u64 = 20 * 1024 * 1024;

/// Pseudo-random bytes made on the fly (xorshift), so 20 MB never exist at once.
struct Generated {
    state: u64,
    left: u64,
    served: u64,
    /// Called with the number of bytes served so far, before each read.
    on_read: Option<Box<dyn FnMut(u64)>>,
}

impl Generated {
    fn new(seed: u64, len: u64) -> Generated {
        Generated {
            state: seed | 1,
            left: len,
            served: 0,
            on_read: None,
        }
    }

    fn next_byte(&mut self) -> u8 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 24) as u8
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(hook) = self.on_read.as_mut() {
            hook(self.served);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for byte in &mut buf[..n] {
            *byte = self.next_byte();
        }
        self.left -= n as u64;
        self.served += n as u64;
        Ok(n)
    }
}

/// A writer that checks what it is given against a second generator, holding nothing.
struct Compare {
    expected: Generated,
    seen: u64,
}

impl Write for Compare {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &byte in buf {
            if self.expected.next_byte() != byte {
                return Err(io::Error::other(format!("byte {} differs", self.seen)));
            }
            self.seen += 1;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn proc_status_kb(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The child side of the memory test: imports 20 MB and reports its peak RSS growth.
fn import_child() {
    let dir = PathBuf::from(env::var(DIR_ENV).expect("dir"));
    let store = open(&dir, vault_seed(), StoreConfig::default());
    // Reset the peak-RSS counter (Linux >= 4.0), so the peak measured is the import's.
    let reset = fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = proc_status_kb("VmRSS:").expect("VmRSS");
    let hwm_before = proc_status_kb("VmHWM:").expect("VmHWM");
    store
        .import(
            Generated::new(7, IMPORT_LEN),
            "porch",
            ts(0),
            ts(60 * SECOND),
        )
        .expect("import");
    let hwm_after = proc_status_kb("VmHWM:").expect("VmHWM");
    let baseline = if reset { rss_before } else { hwm_before };
    // On a line of its own: libtest has printed "test <name> ... " without a newline.
    println!("\nPEAK_GROWTH_KB {}", hwm_after.saturating_sub(baseline));
}

#[test]
fn import_of_20_mb_streams_in_constant_memory() {
    if env::var(CHILD_ENV).as_deref() == Ok("import") {
        import_child();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vault_seed(), StoreConfig::default());

    // In this process: halfway through reading, the ciphertext is already on disk (in the
    // partial file), not piling up in memory.
    let camera_dir = dir.path().join("clips/porch");
    let observed = std::rc::Rc::new(std::cell::Cell::new(None));
    let mut source = Generated::new(42, IMPORT_LEN);
    let seen = observed.clone();
    let watched = camera_dir.clone();
    source.on_read = Some(Box::new(move |served| {
        if served >= IMPORT_LEN / 2 && seen.get().is_none() {
            let on_disk: u64 = partial_files(&watched)
                .iter()
                .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
                .sum();
            seen.set(Some((served, on_disk)));
        }
    }));
    let record = store
        .import(source, "porch", ts(0), ts(60 * SECOND))
        .unwrap();
    let (served, on_disk) = observed.get().expect("the reader was watched");
    assert!(
        on_disk + 3 * 1024 * 1024 >= served,
        "only {on_disk} bytes on disk after reading {served}: the import is buffering"
    );
    assert_eq!(record.media_len, IMPORT_LEN);
    let mut compare = Compare {
        expected: Generated::new(42, IMPORT_LEN),
        seen: 0,
    };
    assert_eq!(
        store.export(&record.clip_id, &mut compare).unwrap(),
        IMPORT_LEN
    );
    assert_eq!(compare.seen, IMPORT_LEN);
    drop(store);

    // In a fresh process, measured: the peak memory growth of the import is a small
    // fraction of the 20 MB file.
    let child_dir = tempfile::tempdir().unwrap();
    let output = child(
        "import_of_20_mb_streams_in_constant_memory",
        "import",
        child_dir.path(),
    )
    .output()
    .expect("run the import child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let growth_kb: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_GROWTH_KB "))
        .expect("the child reports its peak")
        .trim()
        .parse()
        .expect("a number");
    eprintln!("peak RSS growth while importing 20 MiB: {growth_kb} KiB");
    assert!(
        growth_kb < 8 * 1024,
        "importing 20 MiB grew the peak RSS by {growth_kb} KiB"
    );
}

// ---------------------------------------------------------------------------------------
// A really full disk
// ---------------------------------------------------------------------------------------

/// Unmounts on drop, even when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_stores_nothing_then_retention_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    fs::create_dir_all(&clips).unwrap();
    // A 2 MiB tmpfs under clips/ makes ENOSPC real. Mounting needs privileges; where they
    // are missing, the same code path is covered by the injected fault in
    // `store::tests::injected_disk_full_stores_nothing_and_the_next_write_works`.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
        .arg(&clips)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "note: cannot mount a tmpfs here (not permitted); the real-ENOSPC test did not run, \
             the injected-fault unit test covers the write-failure path"
        );
        return;
    }
    let _unmount = Mounted(clips.clone());
    let store = open(dir.path(), vault_seed(), StoreConfig::default());
    let seg = |n: u64| {
        segment(
            "porch",
            n * SECOND,
            n * SECOND + SECOND,
            random_bytes(700_000),
        )
    };
    let first = store.add_segment(&seg(1)).unwrap();
    let second = store.add_segment(&seg(2)).unwrap();

    let third = seg(3);
    let err = store.add_segment(&third).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    let message = format!("{err}");
    assert!(message.starts_with("disk full while"), "{message}");
    assert!(message.contains("nothing was stored"), "{message}");
    assert!(
        partial_files(&clips).is_empty(),
        "the partial file is removed"
    );
    assert_eq!(ids(&all(&store)), [first.clip_id, second.clip_id]);
    // An import fails the same way.
    let err = store
        .import(&random_bytes(900_000)[..], "porch", ts(0), ts(1))
        .unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(partial_files(&clips).is_empty());

    // Retention makes room (the oldest clip goes), and the next write works.
    let report = store.free_space_for(800_000, ts(NOW)).unwrap();
    assert!(report.satisfied, "{report:?}");
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(report.deleted[0].clip_id, first.clip_id);
    assert_eq!(report.deleted[0].reason, DeleteReason::MakeRoom);
    let third = store.add_segment(&third).unwrap();
    assert_eq!(ids(&all(&store)), [second.clip_id, third.clip_id]);
    for record in all(&store) {
        assert!(export(&store, &record.clip_id).is_ok());
    }
    // Held clips are never deleted to make room: the report says so instead.
    store.hold(&second.clip_id).unwrap();
    store.hold(&third.clip_id).unwrap();
    let report = store.free_space_for(3_000_000, ts(NOW)).unwrap();
    assert!(!report.satisfied && report.deleted.is_empty(), "{report:?}");
    drop(store);
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

struct FailingReader<'a> {
    inner: &'a [u8],
    fail_after: usize,
    served: usize,
}

impl Read for FailingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.served >= self.fail_after {
            return Err(io::Error::other("the usb stick was unplugged"));
        }
        let n = buf
            .len()
            .min(self.fail_after - self.served)
            .min(self.inner.len() - self.served.min(self.inner.len()));
        buf[..n].copy_from_slice(&self.inner[self.served..self.served + n]);
        self.served += n;
        Ok(n)
    }
}

#[test]
fn export_of_a_clip_that_does_not_exist_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vault_seed(), StoreConfig::default());
    let missing = ClipId::from_bytes([0x3f; 32]);
    let mut out = Vec::new();
    let err = store.export(&missing, &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("clip {missing} not found; list clips with `porchlight clips list`")
    );
    assert!(out.is_empty());
    for result in [
        store.hold(&missing),
        store.release(&missing),
        store.protect(&missing, ts(NOW)),
        store.delete(&missing, ts(NOW)),
        store.get(&missing).map(|_| ()),
        store.read_ciphertext(&missing).map(|_| ()),
    ] {
        assert!(matches!(result, Err(StoreError::NotFound(id)) if id == missing));
    }
}

#[test]
fn a_failing_import_source_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vault_seed(), StoreConfig::default());
    let kept = store
        .add_segment(&segment("porch", 0, SECOND, random_bytes(1_000)))
        .unwrap();
    let data = random_bytes(3_000_000);
    let reader = FailingReader {
        inner: &data,
        fail_after: 2_500_000,
        served: 0,
    };
    let err = store
        .import(reader, "porch", ts(0), ts(SECOND))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ImportRead {
                read: 2_500_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "reading the clip to import failed after 2500000 bytes; nothing was stored"
    );
    // An unreadable file, as the daemon would pass it: a directory opens but cannot be read.
    let unreadable = fs::File::open(dir.path()).unwrap();
    let err = store
        .import(unreadable, "porch", ts(0), ts(SECOND))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ImportRead { read: 0, .. }),
        "{err:?}"
    );
    // An empty source.
    let err = store
        .import(io::empty(), "porch", ts(0), ts(SECOND))
        .unwrap_err();
    assert!(matches!(err, StoreError::Empty { .. }), "{err:?}");
    // Header rules: a camera name with a control character, a reversed window.
    let err = store
        .import(&b"x"[..], "porch\u{1b}[2J", ts(0), ts(SECOND))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidClip { .. }), "{err:?}");
    let err = store
        .import(&b"x"[..], "porch", ts(SECOND), ts(0))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidClip { .. }), "{err:?}");
    let err = store
        .add_segment(&segment("", 0, SECOND, vec![1]))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidClip { .. }), "{err:?}");

    assert_eq!(ids(&all(&store)), [kept.clip_id]);
    assert_eq!(
        files_under(&dir.path().join("clips")),
        vec![kept.path.clone()]
    );
}

#[test]
fn a_corrupt_clip_file_is_caught_on_export_and_quarantined_by_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let seed = vault_seed();
    let store = open(dir.path(), seed, StoreConfig::default());
    let add = |n: u64| {
        store
            .add_segment(&segment(
                "porch",
                n * SECOND,
                n * SECOND + SECOND,
                random_bytes(150_000),
            ))
            .unwrap()
    };
    let damaged = add(0);
    let healthy = add(1);
    let header_damaged = add(2);

    // One flipped bit in the ciphertext, in the middle of the second chunk.
    let mut bytes = fs::read(&damaged.path).unwrap();
    let at = bytes.len() - 50_000;
    bytes[at] ^= 0x01;
    fs::write(&damaged.path, &bytes).unwrap();

    let mut sink = Vec::new();
    let err = store.export(&damaged.clip_id, &mut sink).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&damaged.clip_id.to_string()), "{message}");
    assert!(message.contains("porchlight store rebuild"), "{message}");
    assert!(export(&store, &healthy.clip_id).is_ok());

    let report = store.rebuild().unwrap();
    assert_eq!(report.quarantined.len(), 1, "{report:#?}");
    assert_eq!(report.quarantined[0].from, damaged.path);
    assert!(report.quarantined[0].to.exists());
    assert!(!damaged.path.exists());
    assert_eq!(ids(&all(&store)), [healthy.clip_id, header_damaged.clip_id]);
    assert!(matches!(
        export(&store, &damaged.clip_id),
        Err(StoreError::NotFound(_))
    ));
    drop(store);

    // Damage in the header is caught at the next open already (its front no longer parses).
    let mut bytes = fs::read(&header_damaged.path).unwrap();
    bytes[90] ^= 0xff;
    fs::write(&header_damaged.path, &bytes).unwrap();
    let store = open(dir.path(), seed, StoreConfig::default());
    let report = store.recovery();
    assert_eq!(report.entries_dropped.len(), 1, "{report:#?}");
    assert_eq!(report.quarantined.len(), 1, "{report:#?}");
    assert_eq!(report.quarantined[0].from, header_damaged.path);
    assert_eq!(ids(&all(&store)), [healthy.clip_id]);
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 2);
}

#[test]
fn a_second_store_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let seed = vault_seed();
    let store = open(dir.path(), seed, StoreConfig::default());
    let record = store
        .add_segment(&segment("porch", 0, SECOND, random_bytes(1_000)))
        .unwrap();
    // Leave something the second open's recovery would remove if it ran.
    let in_progress = dir
        .path()
        .join("clips/porch/feedfacefeedfacefeedfacefeedface.partial");
    fs::write(&in_progress, b"ciphertext of a write in progress").unwrap();

    let err = Store::open(
        dir.path(),
        AgreementSecret::from_bytes(seed),
        StoreConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "data dir {} is locked; is another porchlight already using this data dir?",
            dir.path().display()
        )
    );
    assert!(in_progress.exists(), "the refused open touched nothing");
    assert_eq!(ids(&all(&store)), [record.clip_id]);
    drop(store);

    let store = open(dir.path(), seed, StoreConfig::default());
    assert_eq!(store.recovery().partials_removed, [in_progress]);
    assert_eq!(ids(&all(&store)), [record.clip_id]);
}
