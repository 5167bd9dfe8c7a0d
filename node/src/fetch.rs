//! Both ends of the fetch stream (`/porchlight/fetch/1`, spec/wire.md#fetch-stream), over any
//! byte stream that implements the `futures` I/O traits.
//!
//! The owner's end reads the request ([`read_fetch_request`]), and after the node core has
//! checked the token, either refuses ([`send_rejection`]) or streams the clip's header, its
//! file key wrapped to the grantee and its ciphertext chunks from the store
//! ([`send_clip`]). The requester's end ([`fetch_clip`]) sends the request, unwraps the file
//! key with the request's reply secret, and hands each chunk to a
//! [`ReceivingClip`](crate::received::ReceivingClip), which authenticates it before it
//! touches the disk: a tampering owner or a middle box is caught at the first bad chunk, and
//! a clip that is not the one named is caught at the last.
//!
//! Nothing here knows the transport: the mesh gives a libp2p stream, the tests a TCP
//! connection, and both are `AsyncRead + AsyncWrite + Unpin`. Timeouts are the caller's (wrap
//! the future), as is deciding whether a fetch may be served (the node core). Chunk reads
//! and writes are blocking file I/O done inline, one sealed chunk (64 KiB) between awaits:
//! that keeps the code a straight loop and holds a runtime worker for about as long as a
//! 64 KiB copy from the page cache, far less than moving the chunk through the network
//! stack. A caller that expects a slow disk can run the whole fetch on a blocking thread.
//!
//! A stream being served ends early when its token expires or is revoked
//! ([`send_clip_until`]'s stop): nothing is written once the stop has come, not even the
//! rest of a chunk whose write a slow reader was holding up. Between chunks the stream ends
//! with an explicit end frame and the refusal's code, which [`fetch_clip`] reads as a final
//! [`FetchError::Rejected`]; part-way through a chunk it can only be dropped.

use std::future::Future;
use std::task::Poll;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use porchlight_protocol::fetch::{
    END_OF_CHUNKS, FRAME_PREFIX_LEN, MAX_CHUNK_FRAME_LEN, MAX_FETCH_REPLY_LEN,
    MAX_FETCH_REQUEST_LEN, frame_len, frame_prefix,
};
use porchlight_protocol::stream::SEALED_CHUNK_SIZE;
use porchlight_protocol::{
    AgreementSecret, ClipId, CryptoError, DecodeError, FetchAccepted, FetchReply, FetchRequest,
    ProtocolError, RejectCode, WrappedFileKey, unwrap_file_key,
};
use thiserror::Error;

use crate::received::{ReceivedError, ReceivingClip};
use crate::store::CiphertextReader;

/// Why a fetch, on either end, stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The stream failed or ended early (a dropped connection is `UnexpectedEof`). Chunks
    /// received before it are kept: fetch again to resume.
    #[error("the fetch stream broke; fetch again to resume from the chunks already received")]
    Io(#[from] std::io::Error),

    /// The owner's node refused the fetch.
    #[error("the owner refused the fetch: {}", describe(.0))]
    Rejected(RejectCode),

    /// The peer sent bytes that are not the fetch protocol.
    #[error("the peer broke the fetch protocol")]
    Protocol(#[source] ProtocolError),

    /// The peer announced a frame longer than the protocol allows; it was not read.
    #[error("the peer sent a {what} of {len} bytes, more than the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },

    /// What the owner sent does not authenticate: the wrapped key, a chunk, or the clip as
    /// a whole. Nothing unauthenticated was stored.
    #[error("clip {clip_id} failed verification; nothing unauthenticated was stored")]
    Tampered {
        clip_id: ClipId,
        #[source]
        source: ProtocolError,
    },

    /// The requester asked to resume past the clip's last chunk. It was told `Invalid`.
    #[error("the fetch asked for chunk {from_chunk} of a clip of {chunk_count} chunks")]
    PastTheEnd { from_chunk: u64, chunk_count: u64 },

    /// The caller's token is larger than any valid token envelope; nothing was sent.
    #[error("the token is not a valid consent-token envelope; nothing was sent")]
    BadToken(#[source] ProtocolError),

    /// Reading the clip from this node's store failed (owner side).
    #[error("could not read clip {clip_id} from the store")]
    Store {
        clip_id: ClipId,
        #[source]
        source: std::io::Error,
    },

    /// Storing what arrived failed (requester side).
    #[error(transparent)]
    Received(ReceivedError),
}

impl FetchError {
    /// The reject code an owner may send back for a request that failed this way, if the
    /// peer is at fault (spec/wire.md#reject-codes).
    pub fn reject_code(&self) -> Option<RejectCode> {
        match self {
            FetchError::Protocol(err) => Some(err.reject_code()),
            FetchError::TooLarge { .. } => Some(RejectCode::Malformed),
            _ => None,
        }
    }
}

impl From<ReceivedError> for FetchError {
    fn from(err: ReceivedError) -> FetchError {
        match err {
            ReceivedError::Tampered { clip_id, source } => FetchError::Tampered { clip_id, source },
            other => FetchError::Received(other),
        }
    }
}

/// What a reject code means to the person who asked.
fn describe(code: &RejectCode) -> &'static str {
    match code {
        RejectCode::Unsupported => "it speaks another protocol version",
        RejectCode::Unauthenticated => "the token's signature did not verify",
        RejectCode::OutOfWindow => "the token has expired or is not valid yet",
        RejectCode::Invalid => {
            "the token was revoked, is not for this node, or does not name this clip"
        }
        _ => "it could not read the request",
    }
}

/// A finished fetch, for the log and the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The chunk this stream started at (0 unless it resumed).
    pub from_chunk: u64,
    /// Chunks that arrived on this stream.
    pub chunks_received: u64,
    /// Ciphertext bytes that arrived on this stream (frame bodies).
    pub bytes_received: u64,
    /// The clip's chunks in all.
    pub chunk_count: u64,
}

/// Writes one frame: its length, big-endian, then the bytes, in one write so a multiplexed
/// stream does not carry a four-byte frame of its own.
async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FetchError> {
    let prefix = frame_prefix(body.len()).ok_or(FetchError::TooLarge {
        what: "frame",
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    out.clear();
    out.extend_from_slice(&prefix);
    out.extend_from_slice(body);
    stream.write_all(out).await?;
    Ok(())
}

/// Reads a frame's length prefix, refusing one over `max` before reading anything else.
async fn read_frame_len<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
    what: &'static str,
) -> Result<usize, FetchError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    stream.read_exact(&mut prefix).await?;
    frame_len(prefix, max, what).map_err(|err| match err {
        DecodeError::TooLarge { what, len, max } => FetchError::TooLarge { what, len, max },
        other => FetchError::Protocol(other.into()),
    })
}

async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, FetchError> {
    let len = read_frame_len(stream, max, what).await?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

// ---------------------------------------------------------------------------------------
// The owner's end
// ---------------------------------------------------------------------------------------

/// Reads and decodes the request that opens a fetch stream (at most
/// `MAX_FETCH_REQUEST_LEN` bytes are read). The token inside is not checked here: feed it
/// to the node core. On a `Protocol` or `TooLarge` error, answer with
/// [`send_rejection`] and [`FetchError::reject_code`].
pub async fn read_fetch_request<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<FetchRequest, FetchError> {
    let bytes = read_frame(stream, MAX_FETCH_REQUEST_LEN, "fetch request").await?;
    FetchRequest::decode(&bytes).map_err(FetchError::Protocol)
}

/// Refuses a fetch with one reply frame and closes the stream.
pub async fn send_rejection<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: RejectCode,
) -> Result<(), FetchError> {
    write_refusal(stream, code, &[]).await
}

/// Serves a fetch the node core allowed: the reply (header, `wrapped_key` from
/// `Store::wrap_key_for`, lengths), then every chunk from `from_chunk` to the last, then
/// closes the stream. Returns the ciphertext bytes sent (chunk bodies), for the audit log.
///
/// A `from_chunk` past the last chunk is refused with `Invalid`
/// ([`FetchError::PastTheEnd`]); `from_chunk` equal to the chunk count sends the reply alone.
/// [`send_clip_until`] is the same with a stop, which the daemon always uses.
pub async fn send_clip<S: AsyncWrite + Unpin>(
    stream: &mut S,
    reader: &CiphertextReader,
    wrapped_key: WrappedFileKey,
    from_chunk: u64,
) -> Result<u64, FetchError> {
    match send_clip_until(
        stream,
        reader,
        wrapped_key,
        from_chunk,
        std::future::pending(),
    )
    .await?
    {
        Served::Complete { bytes } | Served::Stopped { bytes, .. } => Ok(bytes),
    }
}

/// How a served fetch ended, when the stream did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Every chunk went out and the stream is closed. `bytes`: the chunk bodies sent.
    Complete { bytes: u64 },
    /// The stop fired first, with `code`; no byte was written after it. `bytes`: the chunk
    /// bodies handed to the stream by then, a partial chunk's included. When `reset`, a
    /// chunk was abandoned part-way: the stream cannot be framed any more, so drop it (the
    /// requester sees a broken stream, and its resume is refused with the same code).
    /// Otherwise the stop came between chunks: end the stream with [`send_end`].
    Stopped {
        code: RejectCode,
        bytes: u64,
        reset: bool,
    },
}

/// [`send_clip`], stopping early when `stop` resolves (the token expired or was revoked)
/// with the reject code to end with. `stop` is checked before every chunk, and a write
/// blocked on a slow reader is raced against it, so no chunk byte is written once it has
/// resolved. After [`Served::Stopped`] the stream is left to the caller: [`send_end`]
/// between chunks, a drop after a partial one.
pub async fn send_clip_until<S, F>(
    stream: &mut S,
    reader: &CiphertextReader,
    wrapped_key: WrappedFileKey,
    from_chunk: u64,
    stop: F,
) -> Result<Served, FetchError>
where
    S: AsyncWrite + Unpin,
    F: Future<Output = RejectCode>,
{
    let mut stop = std::pin::pin!(stop);
    let layout = reader.layout();
    if from_chunk > layout.chunk_count() {
        send_rejection(stream, RejectCode::Invalid).await?;
        return Err(FetchError::PastTheEnd {
            from_chunk,
            chunk_count: layout.chunk_count(),
        });
    }
    let accepted = FetchAccepted::new(reader.header_bytes().to_vec(), wrapped_key, layout);
    let reply = FetchReply::Accepted(accepted)
        .encode()
        .map_err(FetchError::Protocol)?;
    let mut frame = Vec::with_capacity(FRAME_PREFIX_LEN + SEALED_CHUNK_SIZE);
    write_frame(stream, &reply, &mut frame).await?;
    let mut sent = 0u64;
    let store_error = |source| FetchError::Store {
        clip_id: *reader.clip_id(),
        source,
    };
    for index in from_chunk..layout.chunk_count() {
        // Before every chunk: a stop that has come ends the stream here, cleanly.
        if let Some(code) = futures::FutureExt::now_or_never(stop.as_mut()) {
            return Ok(Served::Stopped {
                code,
                bytes: sent,
                reset: false,
            });
        }
        let len = reader
            .chunk_len(index)
            .and_then(|len| {
                len.ok_or_else(|| std::io::Error::other("the clip's layout has no such chunk"))
            })
            .map_err(store_error)?;
        let prefix = frame_prefix(len).ok_or(FetchError::TooLarge {
            what: "frame",
            len,
            max: u32::MAX as usize,
        })?;
        // The chunk is read straight into the frame after its length prefix, into the same
        // buffer every time: resizing to the length it already has neither allocates nor
        // zeroes. Blocking read of one chunk between awaits; see the module docs.
        frame.resize(FRAME_PREFIX_LEN + len, 0);
        frame[..FRAME_PREFIX_LEN].copy_from_slice(&prefix);
        reader
            .read_chunk_into(index, &mut frame[FRAME_PREFIX_LEN..])
            .map_err(store_error)?;
        match write_unless_stopped(stream, &frame, stop.as_mut()).await? {
            Ok(()) => sent += len as u64,
            Err((code, 0)) => {
                return Ok(Served::Stopped {
                    code,
                    bytes: sent,
                    reset: false,
                });
            }
            Err((code, written)) => {
                let body = written.saturating_sub(FRAME_PREFIX_LEN) as u64;
                return Ok(Served::Stopped {
                    code,
                    bytes: sent + body,
                    reset: true,
                });
            }
        }
    }
    stream.close().await?;
    Ok(Served::Complete { bytes: sent })
}

/// Writes all of `bytes` (never empty) unless `stop` resolves first. `stop` is polled before
/// every write attempt, so once it has resolved nothing more is written. `Err((code, written))` says
/// how many bytes had been written when it did.
async fn write_unless_stopped<S, F>(
    stream: &mut S,
    bytes: &[u8],
    mut stop: std::pin::Pin<&mut F>,
) -> Result<Result<(), (RejectCode, usize)>, FetchError>
where
    S: AsyncWrite + Unpin,
    F: Future<Output = RejectCode>,
{
    let mut written = 0;
    std::future::poll_fn(|cx| {
        loop {
            // Done first: a chunk written whole counts as sent even if the stop came with
            // its last byte; the next chunk's check ends the stream cleanly.
            if written == bytes.len() {
                return Poll::Ready(Ok(Ok(())));
            }
            if let Poll::Ready(code) = stop.as_mut().poll(cx) {
                return Poll::Ready(Ok(Err((code, written))));
            }
            match std::pin::Pin::new(&mut *stream).poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(
                        std::io::Error::from(std::io::ErrorKind::WriteZero).into()
                    ));
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// Ends a stream that [`send_clip_until`] stopped between chunks: the end frame (length
/// zero where a chunk frame is due), the `Rejected` reply that says why, then close
/// (spec/wire.md#fetch-end). A reader that reads nothing can hold it up: bound it with a
/// timeout.
pub async fn send_end<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: RejectCode,
) -> Result<(), FetchError> {
    write_refusal(stream, code, &END_OF_CHUNKS).await
}

/// Writes `lead`, then a `Rejected(code)` reply frame, in one write as for every frame, and
/// closes the stream.
async fn write_refusal<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: RejectCode,
    lead: &[u8],
) -> Result<(), FetchError> {
    let reply = FetchReply::Rejected(code)
        .encode()
        .map_err(FetchError::Protocol)?;
    let prefix = frame_prefix(reply.len()).ok_or(FetchError::TooLarge {
        what: "frame",
        len: reply.len(),
        max: u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(lead.len() + FRAME_PREFIX_LEN + reply.len());
    out.extend_from_slice(lead);
    out.extend_from_slice(&prefix);
    out.extend_from_slice(&reply);
    stream.write_all(&out).await?;
    stream.close().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The requester's end
// ---------------------------------------------------------------------------------------

/// Fetches the clip `sink` is receiving, under the signed token envelope `token`, from
/// `sink.next_chunk()` on. The file key is unwrapped with `reply_secret` (the secret half of
/// the token's `grantee_key`) and every chunk is authenticated before the sink stores it;
/// the clip id is checked when the last arrives. On `Ok` the sink is complete: call
/// [`ReceivingClip::finish`]. On an `Io` error (a dropped connection) call this again with a
/// new stream to resume; the sink keeps every chunk verified so far. `Rejected` is final,
/// whether it came instead of the reply or after the chunks so far, when the owner ended
/// the stream at the token's expiry or revocation (spec/wire.md#fetch-end).
pub async fn fetch_clip<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    token: &[u8],
    reply_secret: &AgreementSecret,
    sink: &mut ReceivingClip,
) -> Result<FetchOutcome, FetchError> {
    let clip_id = *sink.clip_id();
    let from_chunk = sink.next_chunk();
    let request = FetchRequest {
        token: token.to_vec(),
        clip_id,
        from_chunk,
    }
    .encode()
    .map_err(FetchError::BadToken)?;
    let mut frame = Vec::with_capacity(FRAME_PREFIX_LEN + request.len());
    write_frame(stream, &request, &mut frame).await?;
    stream.flush().await?;

    let reply = read_frame(stream, MAX_FETCH_REPLY_LEN, "fetch reply").await?;
    let accepted = match FetchReply::decode(&reply).map_err(FetchError::Protocol)? {
        FetchReply::Accepted(accepted) => accepted,
        FetchReply::Rejected(code) => return Err(FetchError::Rejected(code)),
    };
    let layout = accepted.layout().map_err(FetchError::Protocol)?;
    let file_key = unwrap_file_key(&accepted.wrapped_key, reply_secret, &clip_id).map_err(
        |err: CryptoError| FetchError::Tampered {
            clip_id,
            source: err.into(),
        },
    )?;
    sink.start(&accepted.header, file_key, layout)?;

    let mut chunk = vec![0u8; MAX_CHUNK_FRAME_LEN];
    let mut bytes_received = 0u64;
    for index in from_chunk..layout.chunk_count() {
        let len = read_frame_len(stream, MAX_CHUNK_FRAME_LEN, "chunk frame").await?;
        if len == 0 {
            // The owner ended the stream early (the token expired or was revoked,
            // spec/wire.md#fetch-end): its reason follows, and it is final.
            return Err(read_end(stream).await);
        }
        let expected = layout
            .chunk_range(index)
            .map_or(0, |range| range.end - range.start);
        if len as u64 != expected {
            return Err(FetchError::Protocol(
                DecodeError::Malformed {
                    what: "chunk frame (its length is not the chunk's)",
                }
                .into(),
            ));
        }
        stream.read_exact(&mut chunk[..len]).await?;
        sink.write_chunk(index, &chunk[..len])?;
        bytes_received += len as u64;
    }
    if !sink.is_complete() {
        // Unreachable when the sink checks the clip id at the last chunk; kept as a typed
        // error rather than a panic.
        return Err(FetchError::Tampered {
            clip_id,
            source: CryptoError::ClipIdMismatch.into(),
        });
    }
    Ok(FetchOutcome {
        from_chunk,
        chunks_received: layout.chunk_count() - from_chunk,
        bytes_received,
        chunk_count: layout.chunk_count(),
    })
}

/// Reads the reply frame after an end frame: a `Rejected` code is the owner's final refusal;
/// anything else breaks the protocol.
async fn read_end<S: AsyncRead + Unpin>(stream: &mut S) -> FetchError {
    let reply = match read_frame(stream, MAX_FETCH_REPLY_LEN, "fetch end reply").await {
        Ok(reply) => reply,
        Err(err) => return err,
    };
    match FetchReply::decode(&reply) {
        Ok(FetchReply::Rejected(code)) => FetchError::Rejected(code),
        Ok(FetchReply::Accepted(_)) => FetchError::Protocol(
            DecodeError::Malformed {
                what: "fetch end (an acceptance after the end frame)",
            }
            .into(),
        ),
        Err(err) => FetchError::Protocol(err),
    }
}
