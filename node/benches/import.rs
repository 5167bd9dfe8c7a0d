//! `clips import` throughput: the store sealing and writing a 1 GiB file, side by side in
//! one run with the two things it cannot beat: raw ChaCha20-Poly1305 over the same bytes
//! (read from the same file, 64 KiB at a time) and a plain `cp` of the file followed by
//! `sync`. Each is run 3 times, alternating, and the medians and ratios are printed.
//!
//! Run with `make bench-import` (or `cargo bench -p porchlight-node --bench import`); set
//! `PORCHLIGHT_BENCH_BYTES` to measure another size. The files live in a temporary
//! directory on the filesystem of `TMPDIR` and are removed afterwards.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use porchlight_node::store::{Store, StoreConfig};
use porchlight_protocol::{AgreementSecret, Timestamp};
use rand_core::{OsRng, RngCore};

const ROUNDS: usize = 3;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|arg| arg == "--list" || arg == "--test") {
        // `cargo test --benches` and `cargo bench -- --list` expect no measurement.
        return Ok(());
    }
    let bytes: u64 = std::env::var("PORCHLIGHT_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let tmp = tempfile::tempdir()?;
    let source = tmp.path().join("source.mp4");
    write_random_file(&source, bytes)?;
    let vault = AgreementSecret::generate(&mut OsRng);
    let vault_bytes = vault.to_bytes();

    let mut import = Vec::new();
    let mut aead = Vec::new();
    let mut copy = Vec::new();
    for round in 0..ROUNDS {
        let store_dir = tmp.path().join(format!("store{round}"));
        let store = Store::open(
            &store_dir,
            AgreementSecret::from_bytes(*vault_bytes),
            StoreConfig::default(),
        )?;
        let started = Instant::now();
        let record = store.import(
            File::open(&source)?,
            "bench",
            Timestamp::from_unix_millis(1_795_953_600_000),
            Timestamp::from_unix_millis(1_795_953_660_000),
        )?;
        import.push(started.elapsed());
        assert!(record.media_len == bytes, "the store imported every byte");
        drop(store);
        std::fs::remove_dir_all(&store_dir)?;

        aead.push(raw_aead(&source)?);

        let dest = tmp.path().join("copy.mp4");
        let started = Instant::now();
        let status = Command::new("cp").arg(&source).arg(&dest).status()?;
        anyhow::ensure!(status.success(), "cp failed");
        let status = Command::new("sync").status()?;
        anyhow::ensure!(status.success(), "sync failed");
        copy.push(started.elapsed());
        std::fs::remove_file(&dest)?;
    }

    let gbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    let (import, aead, copy) = (median(import), median(aead), median(copy));
    println!("clips import of {bytes} bytes, median of {ROUNDS} rounds each, same run:");
    println!(
        "  store import (read, seal, write, fsync)  {:>8.2} s  {:.2} GB/s",
        import.as_secs_f64(),
        gbps(import)
    );
    println!(
        "  raw ChaCha20-Poly1305 (read + encrypt)   {:>8.2} s  {:.2} GB/s",
        aead.as_secs_f64(),
        gbps(aead)
    );
    println!(
        "  cp + sync                                {:>8.2} s  {:.2} GB/s",
        copy.as_secs_f64(),
        gbps(copy)
    );
    println!(
        "  import / raw AEAD throughput ratio: {:.2}",
        aead.as_secs_f64() / import.as_secs_f64()
    );
    println!(
        "  import / cp+sync throughput ratio:  {:.2}",
        copy.as_secs_f64() / import.as_secs_f64()
    );
    Ok(())
}

fn write_random_file(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut file = File::create(path)?;
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        OsRng.fill_bytes(&mut block);
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(())
}

/// Reads the file and encrypts it in place, 64 KiB per AEAD call, discarding the output.
fn raw_aead(path: &Path) -> anyhow::Result<Duration> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&[7u8; 32]));
    let mut file = File::open(path)?;
    let mut block = vec![0u8; 1 << 16];
    let started = Instant::now();
    let mut counter = 0u64;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_be_bytes());
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", &mut block[..n])
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        std::hint::black_box(tag);
        counter += 1;
    }
    Ok(started.elapsed())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
