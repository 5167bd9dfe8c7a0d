//! The clip file: one clip at rest, exactly as spec/wire.md#clip-file lays it out.
//!
//! ```text
//! clip file = "PLSTORE1" || ephemeral_public (32) || wrapped (48) || header bytes || ciphertext
//! ```
//!
//! This module owns those bytes: writing a clip file so that a crash never leaves a
//! half-written file under a clip's name (seal into `<random>.partial`, put the wrapped key
//! in, fsync, rename to `<clip id>.plclip`, fsync the directory), parsing and verifying one,
//! reading its ciphertext for a fetch, and crypto-shredding it by overwriting the wrapped key
//! in place. It does not own the index, hold flags or retention policy (see the sibling
//! modules), and it never sees plaintext outside memory: the sealer's input and the opener's
//! output are zeroized buffers, and only ciphertext reaches a file. Writing seals on the
//! calling thread and hashes and writes on a second one (`super::pipeline`).
//!
//! The wrapped key sits at a fixed offset ahead of the header because it is bound to the
//! clip id, which hashes the header and ciphertext: it can only be computed once the last
//! chunk is sealed, so the writer leaves 80 zero bytes there and fills them in before the
//! rename. Zero bytes in that field therefore mean "no key": a partial file or a shredded
//! clip, neither of which can ever be opened.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;

use porchlight_protocol::clip::MAX_HEADER_LEN;
use porchlight_protocol::stream::ChunkLayout;
use porchlight_protocol::wrap::WRAPPED_KEY_LEN;
use porchlight_protocol::{
    AgreementPublic, AgreementSecret, ClipHeader, ClipId, ClipIdHasher, ClipOpener, CryptoError,
    FileKey, PayloadSealer, ProtocolError, WrappedFileKey, unwrap_file_key, wrap_file_key,
};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::error::StoreError;
use super::pipeline::SealPipeline;

/// The first eight bytes of every clip file (spec/wire.md#clip-file).
pub const STORE_MAGIC: [u8; 8] = *b"PLSTORE1";
/// Where the vault-wrapped file key starts.
pub const WRAPPED_KEY_OFFSET: u64 = 8;
/// The wrapped key's length on disk: `ephemeral_public` (32) then `wrapped` (48).
pub const WRAPPED_KEY_FIELD_LEN: usize = 32 + WRAPPED_KEY_LEN;
/// Where the clip header starts.
pub const HEADER_OFFSET: u64 = WRAPPED_KEY_OFFSET + WRAPPED_KEY_FIELD_LEN as u64;
/// Extension of a complete clip file, named `<clip id>.plclip`.
pub const CLIP_EXTENSION: &str = "plclip";
/// Extension of a clip file still being written (or abandoned by a crash).
pub const PARTIAL_EXTENSION: &str = "partial";
/// How much plaintext or ciphertext the store moves per read: memory stays constant however
/// large the clip is.
pub(crate) const IO_BLOCK: usize = 1 << 20;

/// The file-name-safe form of a camera name, used as its directory under `clips/`.
///
/// The clip header allows any non-blank text without control characters, so a name may hold
/// `/`, `..` or anything else a path would misread. ASCII letters, digits, `-`, `_` and `.`
/// pass through; every other byte (and a leading `.`) becomes `%XX`; `%` itself is always
/// escaped, so the mapping is injective and never yields `.`, `..` or a separator. The name
/// is only a place on disk: the camera of record is the one in the header.
pub fn camera_dir_name(camera: &str) -> String {
    let mut out = String::with_capacity(camera.len());
    for (i, byte) in camera.bytes().enumerate() {
        let plain = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
        if plain && !(i == 0 && byte == b'.') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Why a file is not a usable clip file. Diagnostic: shown in logs and recovery reports.
#[derive(Debug)]
pub(crate) enum FileFault {
    TooShort(u64),
    BadMagic,
    Header(ProtocolError),
    Length(CryptoError),
    /// The wrapped-key field is all zero: a partial write or an interrupted shred.
    KeyErased,
    /// The file name is not a clip id.
    BadName,
    /// The wrapped key does not open for the clip the file is named after.
    Unwrap,
    Ciphertext(CryptoError),
    /// Reading the file failed: a problem with the disk, not with the contents.
    Read(io::Error),
}

impl FileFault {
    /// Whether the contents are at fault (quarantine the file) rather than the reading of it.
    pub(crate) fn is_content(&self) -> bool {
        !matches!(self, FileFault::Read(_))
    }
}

impl fmt::Display for FileFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileFault::TooShort(len) => write!(f, "file is too short to be a clip ({len} bytes)"),
            FileFault::BadMagic => f.write_str("not a porchlight clip file (bad magic)"),
            FileFault::Header(err) => write!(f, "bad clip header: {err}"),
            FileFault::Length(err) => write!(f, "bad ciphertext length: {err}"),
            FileFault::KeyErased => f.write_str("its wrapped key is erased (deletion in progress)"),
            FileFault::BadName => f.write_str("its file name is not a clip id"),
            FileFault::Unwrap => f.write_str(
                "its wrapped key does not open for this clip id with this node's vault key \
                 (renamed, altered, or from another node)",
            ),
            FileFault::Ciphertext(CryptoError::ClipIdMismatch) => {
                f.write_str("its contents do not match its clip id (altered)")
            }
            FileFault::Ciphertext(err) => write!(f, "ciphertext does not verify: {err}"),
            FileFault::Read(err) => write!(f, "could not read it: {err}"),
        }
    }
}

/// What the fixed-size front of a clip file says, checked but not yet verified against the
/// ciphertext.
#[derive(Debug, Clone)]
pub(crate) struct ClipFilePrefix {
    /// `None` when the field is all zero (never written, or shredded).
    pub wrapped: Option<WrappedFileKey>,
    pub header: ClipHeader,
    pub header_bytes: Vec<u8>,
    pub ciphertext_offset: u64,
    pub layout: ChunkLayout,
    pub file_len: u64,
}

/// Parses the front of a clip file: magic, wrapped key, header, and a ciphertext length that
/// some STREAM output could have. Reads at most `88 + 1024` bytes.
pub(crate) fn read_prefix(file: &File) -> Result<ClipFilePrefix, FileFault> {
    let file_len = file.metadata().map_err(FileFault::Read)?.len();
    if file_len < HEADER_OFFSET + STORE_MAGIC.len() as u64 {
        return Err(FileFault::TooShort(file_len));
    }
    let want = file_len.min(HEADER_OFFSET + MAX_HEADER_LEN as u64);
    let mut front = vec![0u8; usize::try_from(want).map_err(|_| FileFault::TooShort(file_len))?];
    file.read_exact_at(&mut front, 0).map_err(FileFault::Read)?;
    // spec/wire.md#clip-file: the magic first, so a stray file gets a clear error.
    if front[..STORE_MAGIC.len()] != STORE_MAGIC {
        return Err(FileFault::BadMagic);
    }
    let key_field = &front[WRAPPED_KEY_OFFSET as usize..HEADER_OFFSET as usize];
    let wrapped = decode_wrapped_key(key_field);
    let (header, header_len) =
        ClipHeader::decode_prefix(&front[HEADER_OFFSET as usize..]).map_err(FileFault::Header)?;
    let header_bytes = front[HEADER_OFFSET as usize..HEADER_OFFSET as usize + header_len].to_vec();
    let ciphertext_offset = HEADER_OFFSET + header_len as u64;
    let layout =
        ChunkLayout::for_ciphertext_len(file_len - ciphertext_offset).map_err(FileFault::Length)?;
    Ok(ClipFilePrefix {
        wrapped,
        header,
        header_bytes,
        ciphertext_offset,
        layout,
        file_len,
    })
}

fn decode_wrapped_key(field: &[u8]) -> Option<WrappedFileKey> {
    if field.iter().all(|&b| b == 0) {
        return None;
    }
    let ephemeral: [u8; 32] = field.get(..32)?.try_into().ok()?;
    let wrapped: [u8; WRAPPED_KEY_LEN] = field.get(32..)?.try_into().ok()?;
    Some(WrappedFileKey {
        ephemeral_public: AgreementPublic::from_bytes(ephemeral),
        wrapped,
    })
}

pub(crate) fn encode_wrapped_key(key: &WrappedFileKey) -> [u8; WRAPPED_KEY_FIELD_LEN] {
    let mut field = [0u8; WRAPPED_KEY_FIELD_LEN];
    field[..32].copy_from_slice(key.ephemeral_public.as_bytes());
    field[32..].copy_from_slice(&key.wrapped);
    field
}

/// The clip id a clip file claims by its name (`<clip id>.plclip`).
pub(crate) fn clip_id_from_path(path: &Path) -> Option<ClipId> {
    if path.extension()? != CLIP_EXTENSION {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// Unwraps a clip's file key with the vault key, bound to `clip_id`.
pub(crate) fn unwrap_key(
    prefix: &ClipFilePrefix,
    vault: &AgreementSecret,
    clip_id: &ClipId,
) -> Result<FileKey, FileFault> {
    let wrapped = prefix.wrapped.as_ref().ok_or(FileFault::KeyErased)?;
    unwrap_file_key(wrapped, vault, clip_id).map_err(|_| FileFault::Unwrap)
}

/// Why streaming a clip's plaintext out stopped.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    Fault(FileFault),
    /// The consumer of the plaintext failed, after `written` bytes.
    Sink {
        written: u64,
        source: io::Error,
    },
}

/// Decrypts a clip file end to end, handing each authenticated piece of plaintext to `sink`
/// (`None` only verifies). The stream is complete and is the clip named `clip_id` only when
/// this returns `Ok`: plaintext handed out before an error must be discarded
/// (spec/crypto.md#stream-opening). Returns the plaintext length.
pub(crate) fn open_stream(
    file: &File,
    prefix: &ClipFilePrefix,
    vault: &AgreementSecret,
    clip_id: &ClipId,
    mut sink: Option<&mut dyn Write>,
) -> Result<u64, OpenFailure> {
    let key = unwrap_key(prefix, vault, clip_id).map_err(OpenFailure::Fault)?;
    let mut opener = ClipOpener::new(&key, &prefix.header_bytes)
        .map_err(|err| OpenFailure::Fault(FileFault::Header(err)))?;
    let mut reader = CiphertextSource::new(file, prefix);
    let mut ciphertext = vec![0u8; IO_BLOCK];
    // Large enough that pushing one block never reallocates (a reallocation would leave
    // plaintext behind in freed memory); zeroized when dropped.
    let mut plaintext = Zeroizing::new(Vec::with_capacity(IO_BLOCK + 2 * IO_BLOCK / 64));
    let mut written = 0u64;
    let mut emit = |plaintext: &mut Zeroizing<Vec<u8>>, written: &mut u64| {
        if let Some(out) = sink.as_mut() {
            out.write_all(plaintext)
                .map_err(|source| OpenFailure::Sink {
                    written: *written,
                    source,
                })?;
        }
        *written += plaintext.len() as u64;
        plaintext.clear();
        Ok(())
    };
    loop {
        let n = reader
            .read(&mut ciphertext)
            .map_err(|err| OpenFailure::Fault(FileFault::Read(err)))?;
        if n == 0 {
            break;
        }
        opener
            .push(&ciphertext[..n], &mut plaintext)
            .map_err(|err| OpenFailure::Fault(FileFault::Ciphertext(err)))?;
        emit(&mut plaintext, &mut written)?;
    }
    opener
        .finish_expecting(clip_id, &mut plaintext)
        .map_err(|err| OpenFailure::Fault(FileFault::Ciphertext(err)))?;
    emit(&mut plaintext, &mut written)?;
    Ok(written)
}

/// Sequential reads of a clip file's ciphertext, by position (no shared seek state).
struct CiphertextSource<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> CiphertextSource<'a> {
    fn new(file: &'a File, prefix: &ClipFilePrefix) -> Self {
        CiphertextSource {
            file,
            pos: prefix.ciphertext_offset,
            end: prefix.file_len,
        }
    }
}

impl Read for CiphertextSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A clip file's ciphertext, for the fetch protocol: the header bytes, the chunk layout, any
/// one sealed chunk by index, or the whole ciphertext as a [`Read`]. Nothing here decrypts;
/// what a peer receives is exactly what is on disk.
pub struct CiphertextReader {
    clip_id: ClipId,
    file: File,
    prefix: ClipFilePrefix,
    pos: u64,
}

impl fmt::Debug for CiphertextReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CiphertextReader")
            .field("clip_id", &self.clip_id)
            .field("layout", &self.prefix.layout)
            .finish_non_exhaustive()
    }
}

impl CiphertextReader {
    pub(crate) fn new(clip_id: ClipId, file: File, prefix: ClipFilePrefix) -> Self {
        let pos = prefix.ciphertext_offset;
        CiphertextReader {
            clip_id,
            file,
            prefix,
            pos,
        }
    }

    pub fn clip_id(&self) -> &ClipId {
        &self.clip_id
    }

    /// The clip's header bytes: what a fetch sends first.
    pub fn header_bytes(&self) -> &[u8] {
        &self.prefix.header_bytes
    }

    pub fn header(&self) -> &ClipHeader {
        &self.prefix.header
    }

    /// Where each sealed chunk sits in the ciphertext.
    pub fn layout(&self) -> ChunkLayout {
        self.prefix.layout
    }

    /// The sealed bytes of chunk `index` (body and tag), for
    /// `ClipCipher::open_chunk` on the receiving side. `Ok(None)` past the last chunk.
    pub fn read_chunk(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(len) = self.chunk_len(index)? else {
            return Ok(None);
        };
        let mut sealed = vec![0u8; len];
        self.read_chunk_into(index, &mut sealed)?;
        Ok(Some(sealed))
    }

    /// The length of sealed chunk `index` (body and tag); `Ok(None)` past the last chunk.
    pub fn chunk_len(&self, index: u64) -> io::Result<Option<usize>> {
        let Some(range) = self.prefix.layout.chunk_range(index) else {
            return Ok(None);
        };
        usize::try_from(range.end - range.start)
            .map(Some)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk too large"))
    }

    /// Reads sealed chunk `index` into `out`, which must be exactly [`Self::chunk_len`]
    /// long: a fetch reads every chunk into one reused buffer instead of a new one each.
    pub fn read_chunk_into(&self, index: u64, out: &mut [u8]) -> io::Result<()> {
        let range = self
            .prefix
            .layout
            .chunk_range(index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such chunk"))?;
        if out.len() as u64 != range.end - range.start {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the buffer is not the chunk's length",
            ));
        }
        self.file
            .read_exact_at(out, self.prefix.ciphertext_offset + range.start)
    }
}

impl Read for CiphertextReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left =
            usize::try_from(self.prefix.file_len.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A clip file as returned by [`PartialClip::write`]: durable under its final name.
#[derive(Debug)]
pub(crate) struct WrittenClip {
    pub clip_id: ClipId,
    pub header: ClipHeader,
    pub path: PathBuf,
    pub file_len: u64,
    pub layout: ChunkLayout,
}

/// A clip file being written. Until [`write`](PartialClip::write) succeeds it lives under a
/// random `.partial` name that nothing lists, and dropping it removes the file: every failed
/// write, disk full included, leaves nothing behind.
pub(crate) struct PartialClip {
    out: PartialFile,
    dir: PathBuf,
    sealer: PayloadSealer,
    /// Already fed the header bytes; the writer thread feeds it the ciphertext.
    hasher: ClipIdHasher,
    file_key: FileKey,
    header: ClipHeader,
    header_len: u64,
}

impl fmt::Debug for PartialClip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartialClip")
            .field("path", &self.out.path)
            .field("written", &self.out.written)
            .finish_non_exhaustive()
    }
}

impl PartialClip {
    /// Checks the header, then creates `dir/<random>.partial` holding the magic, a zeroed key
    /// field and the header. The header is checked before anything touches the disk.
    pub(crate) fn create(
        dir: &Path,
        header: ClipHeader,
        budget: Option<u64>,
    ) -> Result<PartialClip, StoreError> {
        let file_key = FileKey::generate(&mut OsRng);
        let (sealer, header_bytes) =
            PayloadSealer::new(&file_key, &header).map_err(|source| StoreError::InvalidClip {
                camera: header.camera.clone(),
                source,
            })?;
        create_private_dir(dir)?;
        let mut name = [0u8; 16];
        OsRng.fill_bytes(&mut name);
        let name: String = name.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{name}.{PARTIAL_EXTENSION}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|err| StoreError::io("create clip file", &path, err))?;
        let mut out = PartialFile {
            file,
            path,
            written: 0,
            budget,
            kept: false,
        };
        out.write(&STORE_MAGIC)?;
        out.write(&[0u8; WRAPPED_KEY_FIELD_LEN])?;
        out.write(&header_bytes)?;
        Ok(PartialClip {
            out,
            dir: dir.to_path_buf(),
            sealer,
            hasher: ClipIdHasher::new(&header_bytes),
            file_key,
            header,
            header_len: header_bytes.len() as u64,
        })
    }

    /// Writes the clip: seals what `fill` pushes on this thread while a second thread
    /// computes the clip id and writes the ciphertext ([`SealPipeline`]), then writes the
    /// file key wrapped to `vault` into its field, fsyncs, renames the file to
    /// `<clip id>.plclip` and fsyncs the directory. When this returns `Ok` the clip file is
    /// durable; on any error, `fill`'s included, the file is removed.
    pub(crate) fn write(
        self,
        vault: &AgreementPublic,
        fill: impl FnOnce(&mut SealPipeline<'_>) -> Result<(), StoreError>,
    ) -> Result<WrittenClip, StoreError> {
        let PartialClip {
            mut out,
            dir,
            sealer,
            hasher,
            file_key,
            header,
            header_len,
        } = self;
        let sink = &mut out;
        let clip_id = thread::scope(move |scope| {
            let mut pipeline = SealPipeline::start(scope, sealer, hasher, sink)?;
            match fill(&mut pipeline) {
                Ok(()) => pipeline.finish(),
                Err(err) => Err(pipeline.abandon(err)),
            }
        })?;
        let ephemeral = AgreementSecret::generate(&mut OsRng);
        let wrapped =
            wrap_file_key(&file_key, vault, &clip_id, ephemeral).map_err(|err| StoreError::Io {
                action: "wrap the file key for",
                path: out.path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, err),
            })?;
        out.file
            .write_all_at(&encode_wrapped_key(&wrapped), WRAPPED_KEY_OFFSET)
            .map_err(|err| StoreError::io("write the wrapped key of", &out.path, err))?;
        out.file
            .sync_all()
            .map_err(|err| StoreError::io("sync clip file", &out.path, err))?;
        let final_path = dir.join(format!("{clip_id}.{CLIP_EXTENSION}"));
        fs::rename(&out.path, &final_path)
            .map_err(|err| StoreError::io("rename clip file", &out.path, err))?;
        out.path = final_path;
        sync_dir(&dir)?;
        let layout = ChunkLayout::for_ciphertext_len(out.written - HEADER_OFFSET - header_len)
            .map_err(|err| StoreError::Io {
                action: "check the ciphertext length of",
                path: out.path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, err),
            })?;
        out.kept = true;
        Ok(WrittenClip {
            clip_id,
            header,
            path: out.path.clone(),
            file_len: out.written,
            layout,
        })
    }
}

/// The file under a [`PartialClip`]: appends that count against the fault-injection budget,
/// and removal on drop unless it was kept.
pub(crate) struct PartialFile {
    file: File,
    /// The partial file; after the rename, the final file (removed too if a later step fails).
    path: PathBuf,
    written: u64,
    /// Fault-injection seam: fail with "no space" once this many bytes are written.
    budget: Option<u64>,
    /// Set once the clip is durable under its final name.
    kept: bool,
}

impl PartialFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if let Some(budget) = self.budget {
            let room = budget.saturating_sub(self.written);
            if room < bytes.len() as u64 {
                // Like a real ENOSPC: what fits is written, then the write fails.
                let fit = usize::try_from(room)
                    .unwrap_or(bytes.len())
                    .min(bytes.len());
                let _ = self.file.write_all(&bytes[..fit]);
                self.written += fit as u64;
                let injected = io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (injected by the store's write budget)",
                );
                return Err(StoreError::io("write clip file", &self.path, injected));
            }
        }
        self.file
            .write_all(bytes)
            .map_err(|err| StoreError::io("write clip file", &self.path, err))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.kept {
            match fs::remove_file(&self.path) {
                Ok(()) => {
                    tracing::debug!(path = %self.path.display(), "removed unfinished clip file")
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(
                    path = %self.path.display(),
                    "could not remove unfinished clip file ({err}); it is removed at the next start"
                ),
            }
        }
    }
}

/// Crypto-shreds a clip file in place: overwrites the 80-byte wrapped-key field with zeros
/// and fsyncs, so the ciphertext can never be opened again, even with the vault key. The
/// file itself is left for the caller to unlink. Refuses a file that is not a clip file.
pub fn erase_wrapped_key(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0)?;
    if magic != STORE_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a porchlight clip file (bad magic); refusing to overwrite it",
        ));
    }
    file.write_all_at(&[0u8; WRAPPED_KEY_FIELD_LEN], WRAPPED_KEY_OFFSET)?;
    file.sync_all()
}

/// Creates `dir` (and missing parents) readable by the owner only, and makes a new entry
/// durable by syncing its parent.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| StoreError::io("create directory", dir, err))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Makes renames and unlinks in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| StoreError::io("sync directory", dir, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::pipeline::BATCHES;
    use porchlight_protocol::Timestamp;
    use porchlight_protocol::clip::MEDIA_TYPE_MP4;

    fn header(camera: &str) -> ClipHeader {
        ClipHeader::new(
            camera,
            MEDIA_TYPE_MP4,
            Timestamp::from_unix_millis(1_000),
            Timestamp::from_unix_millis(2_000),
            &mut OsRng,
        )
    }

    fn write_clip(dir: &Path, vault: &AgreementSecret, plaintext: &[u8]) -> WrittenClip {
        PartialClip::create(dir, header("porch"), None)
            .unwrap()
            .write(&vault.public(), |clip| clip.push(plaintext))
            .unwrap()
    }

    #[test]
    fn camera_dir_names_are_safe_and_distinct() {
        assert_eq!(camera_dir_name("porch-1_a.b"), "porch-1_a.b");
        assert_eq!(camera_dir_name(".."), "%2E.");
        assert_eq!(camera_dir_name("."), "%2E");
        assert_eq!(camera_dir_name("a/../b"), "a%2F..%2Fb");
        assert_eq!(camera_dir_name("100%"), "100%25");
        assert_eq!(camera_dir_name("front door"), "front%20door");
        assert_ne!(camera_dir_name("a%2Fb"), camera_dir_name("a/b"));
        let long = camera_dir_name(&"é".repeat(32));
        assert!(long.len() <= 255 && !long.contains('/'));
    }

    #[test]
    fn written_file_has_the_documented_layout_and_opens() {
        let dir = tempfile::tempdir().unwrap();
        let vault = AgreementSecret::generate(&mut OsRng);
        let plaintext = vec![0x42u8; 70_000];
        let written = write_clip(dir.path(), &vault, &plaintext);
        let bytes = fs::read(&written.path).unwrap();
        assert_eq!(&bytes[..8], b"PLSTORE1");
        assert!(bytes[8..88].iter().any(|&b| b != 0));
        let header_bytes = written.header.encode().unwrap();
        assert_eq!(&bytes[88..88 + header_bytes.len()], header_bytes);
        let ciphertext = &bytes[88 + header_bytes.len()..];
        assert_eq!(ClipId::of(&header_bytes, ciphertext), written.clip_id);
        assert_eq!(
            written.path.file_name().unwrap().to_str().unwrap(),
            format!("{}.plclip", written.clip_id)
        );
        assert_eq!(written.file_len, bytes.len() as u64);

        let file = File::open(&written.path).unwrap();
        let prefix = read_prefix(&file).unwrap();
        assert_eq!(prefix.header, written.header);
        let mut out = Vec::new();
        let len = open_stream(&file, &prefix, &vault, &written.clip_id, Some(&mut out)).unwrap();
        assert_eq!((len, out), (plaintext.len() as u64, plaintext));
        // No partial file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn file_sizes_match_the_spec_examples() {
        // spec/wire.md#clip-file: the example header of spec/wire.md#clip-header (70 bytes).
        let example = ClipHeader {
            camera: "porch".into(),
            media_type: MEDIA_TYPE_MP4.into(),
            start: Timestamp::from_unix_millis(1_795_953_600_000),
            end: Timestamp::from_unix_millis(1_795_953_660_000),
            payload_nonce: [7; 16],
        };
        assert_eq!(example.encode().unwrap().len(), 70);
        let dir = tempfile::tempdir().unwrap();
        let vault = AgreementSecret::generate(&mut OsRng).public();
        let empty = PartialClip::create(dir.path(), example.clone(), None)
            .unwrap()
            .write(&vault, |_| Ok(()))
            .unwrap();
        assert_eq!(empty.file_len, 174);
        assert_eq!(fs::metadata(&empty.path).unwrap().len(), 174);
        let mib = PartialClip::create(dir.path(), example, None)
            .unwrap()
            .write(&vault, |clip| clip.push(&vec![0u8; 1 << 20]))
            .unwrap();
        assert_eq!(mib.file_len, 1_048_990);
        assert_eq!(mib.layout.chunk_count(), 16);
    }

    #[test]
    fn erase_wrapped_key_zeroes_exactly_the_key_and_the_clip_no_longer_opens() {
        let dir = tempfile::tempdir().unwrap();
        let vault = AgreementSecret::generate(&mut OsRng);
        let written = write_clip(dir.path(), &vault, b"some footage");
        let before = fs::read(&written.path).unwrap();
        erase_wrapped_key(&written.path).unwrap();
        let after = fs::read(&written.path).unwrap();
        assert_eq!(before.len(), after.len());
        assert!(after[8..88].iter().all(|&b| b == 0), "key field zeroed");
        assert_eq!(before[..8], after[..8]);
        assert_eq!(before[88..], after[88..], "nothing but the key changes");
        let file = File::open(&written.path).unwrap();
        let prefix = read_prefix(&file).unwrap();
        assert!(prefix.wrapped.is_none());
        assert!(matches!(
            open_stream(&file, &prefix, &vault, &written.clip_id, None),
            Err(OpenFailure::Fault(FileFault::KeyErased))
        ));
        // A file that is not a clip file is never overwritten.
        let stray = dir.path().join("notes.txt");
        fs::write(&stray, vec![7u8; 200]).unwrap();
        assert!(erase_wrapped_key(&stray).is_err());
        assert_eq!(fs::read(&stray).unwrap(), vec![7u8; 200]);
    }

    #[test]
    fn a_failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let vault = AgreementSecret::generate(&mut OsRng).public();
        let partial = PartialClip::create(dir.path(), header("porch"), Some(1_000)).unwrap();
        let err = partial
            .write(&vault, |clip| clip.push(&[1u8; 200_000]))
            .unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_two_thread_write_gives_the_bytes_and_id_of_the_one_thread_sealer() {
        let dir = tempfile::tempdir().unwrap();
        let vault = AgreementSecret::generate(&mut OsRng);
        // Several batches, pushed in pieces that straddle chunk and batch boundaries, plus
        // the sizes around one chunk and one batch.
        let mut big = vec![0u8; 3 * IO_BLOCK + 70_001];
        OsRng.fill_bytes(&mut big);
        let cases: [(usize, usize); 6] = [
            (big.len(), 10_007),
            (big.len(), 3 * IO_BLOCK),
            (IO_BLOCK, IO_BLOCK),
            (IO_BLOCK + 1, 1 << 16),
            (1 << 16, 1),
            (1, 1),
        ];
        for (len, piece) in cases {
            let plaintext = &big[..len];
            let written = PartialClip::create(dir.path(), header("porch"), None)
                .unwrap()
                .write(&vault.public(), |clip| {
                    plaintext.chunks(piece).try_for_each(|p| clip.push(p))
                })
                .unwrap();
            let file = File::open(&written.path).unwrap();
            let prefix = read_prefix(&file).unwrap();
            let key = unwrap_key(&prefix, &vault, &written.clip_id).unwrap();
            let one_thread =
                porchlight_protocol::seal_clip(&key, &written.header, plaintext).unwrap();
            let bytes = fs::read(&written.path).unwrap();
            assert_eq!(
                &bytes[prefix.ciphertext_offset as usize..],
                &one_thread.ciphertext[..],
                "len {len}, pieces of {piece}"
            );
            assert_eq!(written.clip_id, one_thread.clip_id, "len {len}");
            assert_eq!(prefix.header_bytes, one_thread.header_bytes);
        }
    }

    #[test]
    fn a_write_error_stops_the_sealer_promptly_and_wins() {
        let dir = tempfile::tempdir().unwrap();
        let vault = AgreementSecret::generate(&mut OsRng).public();
        let budget = 2 * IO_BLOCK as u64;
        let block = vec![5u8; IO_BLOCK];
        let mut pushed = 0u64;
        let partial = PartialClip::create(dir.path(), header("porch"), Some(budget)).unwrap();
        let err = partial
            .write(&vault, |clip| {
                for _ in 0..64 {
                    clip.push(&block)?;
                    pushed += block.len() as u64;
                }
                Ok(())
            })
            .unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        // The writer failed on the batch crossing the budget; the sealer sealed at most the
        // batches in flight (and the block it was on) before it noticed.
        let bound = budget + (BATCHES as u64 + 1) * IO_BLOCK as u64;
        assert!(
            pushed <= bound,
            "sealed {pushed} bytes after the disk filled"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

        // The caller's own error after a write error: the write error is what happened
        // first, as on one thread.
        let partial = PartialClip::create(dir.path(), header("porch"), Some(1_000)).unwrap();
        let err = partial
            .write(&vault, |clip| {
                let _ = clip.push(&block);
                Err(StoreError::Empty {
                    camera: "porch".into(),
                })
            })
            .unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

        // The caller's error alone comes back as it is, and nothing is left.
        let partial = PartialClip::create(dir.path(), header("porch"), None).unwrap();
        let err = partial
            .write(&vault, |clip| {
                clip.push(&block)?;
                clip.push(&block)?;
                Err(StoreError::Empty {
                    camera: "porch".into(),
                })
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Empty { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn invalid_header_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("cam");
        let err = PartialClip::create(&target, header("bad\u{7}name"), None).unwrap_err();
        assert!(matches!(err, StoreError::InvalidClip { .. }), "{err}");
        assert!(!target.exists());
    }

    #[test]
    fn prefix_parsing_rejects_garbage_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let vault = AgreementSecret::generate(&mut OsRng);
        let written = write_clip(dir.path(), &vault, &[9u8; 1000]);
        let good = fs::read(&written.path).unwrap();
        let check = |bytes: &[u8]| {
            let path = dir.path().join("probe");
            fs::write(&path, bytes).unwrap();
            read_prefix(&File::open(&path).unwrap()).map(|_| ())
        };
        assert!(matches!(check(&[]), Err(FileFault::TooShort(0))));
        assert!(matches!(check(&good[..50]), Err(FileFault::TooShort(_))));
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(matches!(check(&bad), Err(FileFault::BadMagic)));
        let mut bad = good.clone();
        bad[88] ^= 1;
        assert!(matches!(check(&bad), Err(FileFault::Header(_))));
        // Cut inside the final tag: no valid STREAM output has that length.
        assert!(matches!(
            check(&good[..good.len() - 1010]),
            Err(FileFault::Length(_))
        ));
        // Every prefix length, and random bytes behind a good magic, parse or fail cleanly.
        for len in 0..good.len().min(400) {
            let _ = check(&good[..len]);
        }
        let mut noise = b"PLSTORE1".to_vec();
        noise.extend((0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        assert!(check(&noise).is_err());
    }
}
