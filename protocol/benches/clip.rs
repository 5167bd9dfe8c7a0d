//! Clip sealing and opening over a 64 MiB plaintext, measured next to raw ChaCha20-Poly1305.
//!
//! The group `clip-64MiB` holds five benchmarks, each reported as bytes of plaintext per
//! second:
//!
//! - `raw-aead-seal` / `raw-aead-open`: the baseline. ChaCha20-Poly1305 in place over the
//!   same 64 KiB pieces, with the same payload key, nonces and associated data the clip uses,
//!   and nothing else: no header, no HKDF, no clip-id hashing, no copies, no allocation.
//!   Setup checks that the baseline's bytes are exactly the clip's ciphertext, so the two
//!   sides do the same AEAD work.
//! - `seal_clip` / `open_clip`: the public whole-clip API as a caller uses it, including its
//!   64 MiB output allocation (dropping the output is not timed). `open_clip` also checks
//!   the clip id before it opens anything.
//! - `seal-streaming`: a [`ClipSealer`] fed 1 MiB segments, as the muxer feeds it, into an
//!   output buffer allocated once outside the timed loop.
//!
//! After criterion finishes, `main` reads the medians criterion wrote to
//! `<target>/criterion/clip-64MiB/<id>/new/estimates.json` and prints each API's throughput as
//! a ratio of the baseline's (1.00 means no overhead over raw AEAD), with the CPU model.
//!
//! Run it with
//!
//! ```text
//! cargo bench -p porchlight-protocol --bench clip            # full run, ~1 minute
//! cargo bench -p porchlight-protocol --bench clip -- --test  # each benchmark once
//! ```
//!
//! The output directory is `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
//! workspace's `target/criterion`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group};
use hkdf::Hkdf;
use porchlight_protocol::clip::MEDIA_TYPE_MP4;
use porchlight_protocol::stream::{
    CHUNK_SIZE, ChunkLayout, PAYLOAD_KEY_INFO, SEALED_CHUNK_SIZE, TAG_SIZE, chunk_nonce,
};
use porchlight_protocol::{
    ClipHeader, ClipIdHasher, ClipSealer, FileKey, PayloadSealer, Timestamp, open_clip, seal_clip,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Plaintext bytes per benchmark iteration.
const PLAINTEXT_LEN: usize = 64 * 1024 * 1024;
/// The segment size `seal-streaming` pushes, standing in for the muxer's output.
const SEGMENT_LEN: usize = 1024 * 1024;
const GROUP: &str = "clip-64MiB";

/// Each API benchmark and the baseline it is compared with.
const RATIOS: [(&str, &str); 4] = [
    ("seal_clip", "raw-aead-seal"),
    ("open_clip", "raw-aead-open"),
    ("seal-streaming", "raw-aead-seal"),
    ("seal-two-cores", "raw-aead-seal"),
];

/// The workspace root: the protocol crate's parent directory.
fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}

/// Where criterion writes its estimates; `main` reads them back from the same place.
fn output_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        // cargo resolves a relative CARGO_TARGET_DIR against the directory it was run from,
        // which the bench cannot see; the workspace root is the usual one.
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    };
    target.join("criterion")
}

fn config() -> Criterion {
    Criterion::default()
        .output_directory(&output_directory())
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
}

/// The payload key and associated data `ClipCipher` derives (spec/crypto.md#stream), so the
/// baseline seals with the clip's own AEAD state.
fn clip_aead(
    file_key: &FileKey,
    header: &ClipHeader,
    header_bytes: &[u8],
) -> (ChaCha20Poly1305, [u8; 32]) {
    let mut payload_key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&header.payload_nonce), file_key.as_bytes())
        .expand(PAYLOAD_KEY_INFO, &mut payload_key)
        .expect("32 bytes is a valid HKDF-SHA-256 output length");
    let aead = ChaCha20Poly1305::new(Key::from_slice(&payload_key));
    (aead, Sha256::digest(header_bytes).into())
}

/// The baseline seal: each 64 KiB piece in place, tags kept aside.
fn raw_seal(aead: &ChaCha20Poly1305, aad: &[u8], buf: &mut [u8], tags: &mut [Tag]) {
    let chunks = buf.len().div_ceil(CHUNK_SIZE);
    for (index, (chunk, tag)) in buf.chunks_mut(CHUNK_SIZE).zip(tags).enumerate() {
        let nonce = chunk_nonce(index as u64, index + 1 == chunks);
        *tag = aead
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, chunk)
            .expect("a 64 KiB chunk is far below ChaCha20-Poly1305's message limit");
    }
}

/// The baseline open: each 64 KiB piece in place against its tag.
fn raw_open(aead: &ChaCha20Poly1305, aad: &[u8], buf: &mut [u8], tags: &[Tag]) {
    let chunks = buf.len().div_ceil(CHUNK_SIZE);
    for (index, (chunk, tag)) in buf.chunks_mut(CHUNK_SIZE).zip(tags).enumerate() {
        let nonce = chunk_nonce(index as u64, index + 1 == chunks);
        aead.decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, chunk, tag)
            .expect("the baseline ciphertext was sealed with this key and these nonces");
    }
}

fn bench_clip(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(0x706f_7263_686c_6974);
    let mut plaintext = vec![0u8; PLAINTEXT_LEN];
    rng.fill_bytes(&mut plaintext);
    let file_key = FileKey::generate(&mut rng);
    let header = ClipHeader::new(
        "porch",
        MEDIA_TYPE_MP4,
        Timestamp::from_unix_millis(1_700_000_000_000),
        Timestamp::from_unix_millis(1_700_000_060_000),
        &mut rng,
    );
    let layout = ChunkLayout::for_plaintext_len(PLAINTEXT_LEN as u64);
    let chunks = usize::try_from(layout.chunk_count()).expect("1024 chunks fit in usize");
    let ciphertext_len =
        usize::try_from(layout.ciphertext_len()).expect("a 64 MiB clip fits in usize");

    // Setup, untimed: the clip and the baseline ciphertext, checked against each other so
    // both sides do the same AEAD work.
    let sealed = seal_clip(&file_key, &header, &plaintext).expect("the bench header is valid");
    let (aead, aad) = clip_aead(&file_key, &header, &sealed.header_bytes);
    let mut raw_sealed = plaintext.clone();
    let mut raw_tags = vec![Tag::default(); chunks];
    raw_seal(&aead, &aad, &mut raw_sealed, &mut raw_tags);
    for (index, (body, tag)) in raw_sealed.chunks(CHUNK_SIZE).zip(&raw_tags).enumerate() {
        let start = index * SEALED_CHUNK_SIZE;
        let clip_chunk = &sealed.ciphertext[start..start + body.len() + TAG_SIZE];
        assert!(
            clip_chunk[..body.len()] == *body && clip_chunk[body.len()..] == tag[..],
            "baseline chunk {index} differs from the clip's: the baseline would not be like for like"
        );
    }
    let mut work = raw_sealed.clone();
    raw_open(&aead, &aad, &mut work, &raw_tags);
    assert!(
        work == plaintext,
        "baseline open did not restore the plaintext"
    );

    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Bytes(PLAINTEXT_LEN as u64));
    // Every iteration takes tens of milliseconds: equal-sized samples fit the time budget,
    // where linear sampling's growing samples overrun it.
    group.sampling_mode(SamplingMode::Flat);

    // Sealing the same buffer over and over costs the same as sealing fresh plaintext.
    let mut scratch_tags = raw_tags.clone();
    group.bench_function("raw-aead-seal", |b| {
        b.iter(|| {
            raw_seal(&aead, &aad, black_box(&mut work), &mut scratch_tags);
            black_box(&scratch_tags);
        });
    });

    // Opening works in place, so each iteration first restores the ciphertext, untimed.
    group.bench_function("raw-aead-open", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                work.copy_from_slice(&raw_sealed);
                let start = Instant::now();
                raw_open(&aead, &aad, black_box(&mut work), &raw_tags);
                elapsed += start.elapsed();
                black_box(&work);
            }
            elapsed
        });
    });

    group.bench_function("seal_clip", |b| {
        b.iter_batched(
            || (),
            |()| {
                seal_clip(&file_key, &header, black_box(&plaintext))
                    .expect("the bench header is valid")
            },
            BatchSize::PerIteration,
        );
    });

    group.bench_function("open_clip", |b| {
        b.iter_batched(
            || (),
            |()| {
                open_clip(
                    &file_key,
                    &sealed.header_bytes,
                    black_box(&sealed.ciphertext),
                    &sealed.clip_id,
                )
                .expect("the clip was sealed under this key and header")
            },
            BatchSize::PerIteration,
        );
    });

    let mut out = Vec::with_capacity(ciphertext_len);
    let seal_streaming = |out: &mut Vec<u8>| {
        out.clear();
        let (mut sealer, header_bytes) =
            ClipSealer::new(&file_key, &header).expect("the bench header is valid");
        for segment in plaintext.chunks(SEGMENT_LEN) {
            sealer.push(segment, out);
        }
        (header_bytes, sealer.finish(out))
    };
    let (_, clip_id) = seal_streaming(&mut out);
    assert!(
        clip_id == sealed.clip_id && out == sealed.ciphertext,
        "streaming and whole-clip sealing disagree"
    );
    group.bench_function("seal-streaming", |b| {
        b.iter(|| seal_streaming(black_box(&mut out)));
    });

    // The same work on two cores, as a store writer does it: this thread seals 1 MiB
    // segments, the other hashes each sealed batch and appends it to the output.
    let seal_two_cores = |out: &mut Vec<u8>| {
        out.clear();
        let (mut payload, header_bytes) =
            PayloadSealer::new(&file_key, &header).expect("the bench header is valid");
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                let mut id = ClipIdHasher::new(&header_bytes);
                for batch in full_rx {
                    id.update(&batch);
                    out.extend_from_slice(&batch);
                    // The sealer may already be done; a closed return channel is fine.
                    let _ = empty_tx.send(batch);
                }
                id.finish()
            });
            let mut segments = plaintext.chunks(SEGMENT_LEN).peekable();
            while let Some(segment) = segments.next() {
                let mut batch = empty_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(2 * SEGMENT_LEN));
                batch.clear();
                payload.push(segment, &mut batch);
                if segments.peek().is_none() {
                    payload.finish(&mut batch);
                    full_tx
                        .send(batch)
                        .expect("the writer runs until the channel closes");
                    break;
                }
                full_tx
                    .send(batch)
                    .expect("the writer runs until the channel closes");
            }
            drop(full_tx);
            writer.join().expect("the writer does not panic")
        })
    };
    let mut two_core_out = Vec::with_capacity(sealed.ciphertext.len());
    let id = seal_two_cores(&mut two_core_out);
    assert!(
        id == sealed.clip_id && two_core_out == sealed.ciphertext,
        "two-core and whole-clip sealing disagree"
    );
    group.bench_function("seal-two-cores", |b| {
        b.iter(|| seal_two_cores(black_box(&mut two_core_out)));
    });

    // The clip id is SHA-256 over the whole ciphertext (spec/crypto.md#clip-id): a second
    // pass the raw AEAD baseline does not make. Measured on its own so the table can show
    // how much of sealing is the AEAD and how much is the id.
    group.bench_function("raw-sha256", |b| {
        b.iter(|| Sha256::digest(black_box(&sealed.ciphertext)));
    });

    group.finish();
}

criterion_group! {
    name = clip_benches;
    config = config();
    targets = bench_clip
}

fn main() {
    let started = SystemTime::now();
    clip_benches();
    config().configure_from_args().final_summary();
    if !std::env::args().any(|arg| arg == "--list") {
        print_ratios(&output_directory(), started);
    }
}

/// Why a median could not be read.
enum Missing {
    /// Not measured in this run (`--test`, a filter, or a fresh output directory).
    NotMeasured,
    /// A file from an earlier run: this run did not measure it.
    Stale,
    Unreadable(String),
}

/// The median time per iteration, in nanoseconds, that criterion wrote for `id` during this
/// run.
fn median_ns(dir: &Path, id: &str, started: SystemTime) -> Result<f64, Missing> {
    let path = dir.join(GROUP).join(id).join("new").join("estimates.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Missing::NotMeasured);
        }
        Err(err) => return Err(Missing::Unreadable(format!("{}: {err}", path.display()))),
    };
    let fresh = std::fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|modified| modified >= started);
    if !fresh {
        return Err(Missing::Stale);
    }
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| Missing::Unreadable(format!("{}: {err}", path.display())))?;
    value["median"]["point_estimate"]
        .as_f64()
        .filter(|ns| ns.is_finite() && *ns > 0.0)
        .ok_or_else(|| Missing::Unreadable(format!("{}: no median.point_estimate", path.display())))
}

fn print_ratios(dir: &Path, started: SystemTime) {
    println!();
    println!("{GROUP}: API throughput relative to raw ChaCha20-Poly1305 (1.00 = no overhead)");
    println!(
        "cpu: {}",
        cpu_model().unwrap_or_else(|| "unknown (/proc/cpuinfo unreadable)".into())
    );
    let mut skipped = false;
    for (api, baseline) in RATIOS {
        match (
            median_ns(dir, api, started),
            median_ns(dir, baseline, started),
        ) {
            (Ok(api_ns), Ok(base_ns)) => {
                // Bytes per nanosecond is GB/s.
                let gbps = |ns: f64| PLAINTEXT_LEN as f64 / ns;
                println!(
                    "{api} / {baseline} throughput ratio: {:.2} (median {:.1} ms vs {:.1} ms, {:.2} GB/s vs {:.2} GB/s)",
                    base_ns / api_ns,
                    api_ns / 1e6,
                    base_ns / 1e6,
                    gbps(api_ns),
                    gbps(base_ns),
                );
            }
            (api_result, base_result) => {
                skipped = true;
                let reasons: Vec<String> = [(api, api_result), (baseline, base_result)]
                    .into_iter()
                    .filter_map(|(id, result)| match result {
                        Ok(_) => None,
                        Err(Missing::NotMeasured) => Some(format!("{id} not measured")),
                        Err(Missing::Stale) => Some(format!(
                            "{id} not measured in this run (estimates are older)"
                        )),
                        Err(Missing::Unreadable(why)) => Some(format!("{id} unreadable ({why})")),
                    })
                    .collect();
                println!("{api} / {baseline}: skipped, {}", reasons.join(", "));
            }
        }
    }
    // The floor for any sealer that must both encrypt and hash on one core.
    if let (Ok(stream), Ok(aead), Ok(sha)) = (
        median_ns(dir, "seal-streaming", started),
        median_ns(dir, "raw-aead-seal", started),
        median_ns(dir, "raw-sha256", started),
    ) {
        println!(
            "seal-streaming / (raw-aead-seal + raw-sha256) throughput ratio: {:.2} (median {:.1} ms vs {:.1} + {:.1} ms)",
            (aead + sha) / stream,
            stream / 1e6,
            aead / 1e6,
            sha / 1e6,
        );
    }
    if skipped {
        println!(
            "note: no ratio without a full measurement run of both sides in this run; \
             estimates are read from {}",
            dir.display()
        );
    }
}

/// The first `model name` in /proc/cpuinfo, with the number of logical CPUs.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let model = info
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_owned())?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    Some(format!("{model} ({cpus} logical CPUs available)"))
}
