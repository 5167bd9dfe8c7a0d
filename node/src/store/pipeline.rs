//! The clip write path on two threads: the thread that has the plaintext seals it, a second
//! thread computes the clip id and writes.
//!
//! Storing a clip makes two full passes over its bytes, ChaCha20-Poly1305 and the SHA-256
//! clip id (spec/crypto.md#clip-id), and then writes them. [`SealPipeline`] runs the first
//! on the calling thread ([`PayloadSealer`], into batches of about 1 MiB of ciphertext) and
//! hands each batch over a bounded channel to a writer thread, which appends it to the
//! partial file, feeds it to the [`ClipIdHasher`] and sends the emptied batch back for reuse.
//! The clip id is the writer's: it hashes exactly the bytes it wrote, in the order written.
//!
//! What this keeps of the one-thread path:
//!
//! - **Plaintext stays on the calling thread**, in its zeroized buffers (the caller's and
//!   the sealer's). A batch holds ciphertext only by the time it is sent: each chunk is
//!   copied into it and sealed in place there before the hand-off.
//! - **Constant memory**: [`BATCHES`] batches exist. The sealer takes an empty one back
//!   before it seals more, so at most `BATCHES - 1` are sent and not yet written.
//! - **The same bytes**: one STREAM, its chunks written and hashed in the order sealed, so
//!   the file and the clip id are those [`porchlight_protocol::ClipSealer`] would give.
//! - **Errors**: a write error ends the writer, which drops its channel ends; the sealer sees
//!   that at its next hand-off (having sealed a batch or two more at most) and returns the
//!   writer's own [`StoreError`]. The caller's partial file is removed as before.

use std::io;
use std::panic;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{self, Scope, ScopedJoinHandle};

use porchlight_protocol::{ClipId, ClipIdHasher, PayloadSealer};

use super::clip_file::{IO_BLOCK, PartialFile};
use super::error::StoreError;

/// How many batches exist per clip being written: one being filled, the rest queued for or
/// in the writer.
pub(super) const BATCHES: usize = 3;
/// Room for the ciphertext of one [`IO_BLOCK`] of plaintext, a chunk held back by the
/// previous push and every tag, so a batch never reallocates.
const BATCH_CAPACITY: usize = IO_BLOCK + 2 * IO_BLOCK / 64;

type WriterResult = Result<ClipId, StoreError>;

/// Seals on the calling thread; hashes and writes on a scoped writer thread (module docs).
///
/// Made by [`start`](Self::start) inside a [`thread::scope`]; fed by [`push`](Self::push);
/// ended by [`finish`](Self::finish), which returns the clip id, or by
/// [`abandon`](Self::abandon) when the caller's own source failed.
pub(crate) struct SealPipeline<'scope> {
    sealer: PayloadSealer,
    /// The batch being filled. Empty between calls: whatever a push seals is handed off.
    batch: Vec<u8>,
    /// Full batches, to the writer. Dropping it tells the writer the stream is over.
    full: SyncSender<Vec<u8>>,
    /// Emptied batches, back from the writer. Disconnected once the writer has stopped.
    empty: Receiver<Vec<u8>>,
    /// `None` once joined early, after the writer stopped with an error.
    writer: Option<ScopedJoinHandle<'scope, WriterResult>>,
    /// The partial file, for an error message.
    path: PathBuf,
}

impl std::fmt::Debug for SealPipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealPipeline")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<'scope> SealPipeline<'scope> {
    /// Starts the writer thread, which appends to `out` and hashes into `hasher` (already
    /// fed the header bytes), and returns the sealing end.
    pub(crate) fn start(
        scope: &'scope Scope<'scope, '_>,
        sealer: PayloadSealer,
        hasher: ClipIdHasher,
        out: &'scope mut PartialFile,
    ) -> Result<SealPipeline<'scope>, StoreError> {
        let path = out.path().to_path_buf();
        let (full, to_write) = mpsc::sync_channel(BATCHES - 1);
        let (emptied, empty) = mpsc::channel();
        for _ in 1..BATCHES {
            // Cannot fail: `empty` is alive. Capacity only: pages are touched when first used.
            let _ = emptied.send(Vec::with_capacity(BATCH_CAPACITY));
        }
        let writer = thread::Builder::new()
            .name("clip-writer".into())
            .spawn_scoped(scope, move || write_batches(out, hasher, to_write, emptied))
            .map_err(|err| StoreError::io("start the writer thread for", &path, err))?;
        Ok(SealPipeline {
            sealer,
            batch: Vec::with_capacity(BATCH_CAPACITY),
            full,
            empty,
            writer: Some(writer),
            path,
        })
    }

    /// Seals more plaintext and hands every chunk that is complete to the writer, at most
    /// one [`IO_BLOCK`] of plaintext per batch. Waits while all batches are in flight. A
    /// write error from an earlier batch comes back here.
    pub(crate) fn push(&mut self, plaintext: &[u8]) -> Result<(), StoreError> {
        for piece in plaintext.chunks(IO_BLOCK) {
            self.sealer.push(piece, &mut self.batch);
            if !self.batch.is_empty() {
                self.hand_off()?;
            }
        }
        Ok(())
    }

    /// Sends the batch to the writer and takes an emptied one back, waiting for it if the
    /// writer has every other batch.
    fn hand_off(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut self.batch);
        if self.full.send(batch).is_err() {
            return Err(self.writer_error());
        }
        match self.empty.recv() {
            Ok(batch) => {
                self.batch = batch;
                Ok(())
            }
            Err(_) => Err(self.writer_error()),
        }
    }

    /// The writer hung up, which it does only when a write fails: its error.
    fn writer_error(&mut self) -> StoreError {
        match self.writer.take().map(join) {
            Some(Err(err)) => err,
            // Not reached: the writer stops early only with an error, and nothing pushes
            // again after an error.
            _ => writer_gone(&self.path),
        }
    }

    /// Seals the final chunk, waits for the writer to write everything and returns the clip
    /// id it computed over what it wrote (or its write error).
    pub(crate) fn finish(self) -> Result<ClipId, StoreError> {
        let SealPipeline {
            sealer,
            mut batch,
            full,
            writer,
            path,
            ..
        } = self;
        sealer.finish(&mut batch);
        // If the writer has stopped, the send fails and joining it gives its error.
        let _ = full.send(batch);
        drop(full);
        match writer {
            Some(writer) => join(writer),
            None => Err(writer_gone(&path)),
        }
    }

    /// Stops after the caller failed with `err` (its reader, say). The writer writes what it
    /// was already sent; if that fails, its error is returned instead, as one thread would
    /// have hit it before reading on.
    pub(crate) fn abandon(self, err: StoreError) -> StoreError {
        let SealPipeline { full, writer, .. } = self;
        drop(full);
        match writer.map(join) {
            Some(Err(write_err)) => write_err,
            _ => err,
        }
    }
}

/// The writer thread: append each batch, hash it, send it back empty; return the clip id
/// once the sealer hangs up. Returning early (a write error) drops both channel ends, which
/// is what stops the sealer.
fn write_batches(
    out: &mut PartialFile,
    mut hasher: ClipIdHasher,
    full: Receiver<Vec<u8>>,
    empty: Sender<Vec<u8>>,
) -> WriterResult {
    for mut batch in full {
        out.write(&batch)?;
        hasher.update(&batch);
        batch.clear();
        // Fails only when the sealer has finished and needs no more batches.
        let _ = empty.send(batch);
    }
    Ok(hasher.finish())
}

/// The error for pushing to a writer already joined (after its error was returned).
fn writer_gone(path: &Path) -> StoreError {
    let gone = io::Error::new(io::ErrorKind::BrokenPipe, "the clip writer has stopped");
    StoreError::io("write clip file", path, gone)
}

fn join(writer: ScopedJoinHandle<'_, WriterResult>) -> WriterResult {
    writer
        .join()
        .unwrap_or_else(|payload| panic::resume_unwind(payload))
}
