//! The `/porchlight/request/1` request-response codec: one signed envelope out, one status
//! byte back.
//!
//! Requests, decisions and revocations all travel as a request carrying the envelope bytes;
//! the answer is a single byte that says only "received" — never whether the frame was
//! accepted, so an owner's silence and an owner's refusal look the same from outside. Both
//! directions are length-limited before any allocation: a frame is at most
//! [`MAX_FRAME_LEN`] bytes, the answer exactly one.

use std::io;

use async_trait::async_trait;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use porchlight_protocol::fetch::{FRAME_PREFIX_LEN, frame_len, frame_prefix};

/// The protocol name on the wire.
pub const REQUEST_PROTOCOL: StreamProtocol = StreamProtocol::new("/porchlight/request/1");

/// The largest envelope a peer may send: a request with a full credential chain or a grant
/// carrying a token fits many times over.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// The one answer byte: the frame arrived (not: it was accepted).
const RECEIVED: u8 = 1;

/// Envelope bytes, length-prefixed (u32 big-endian) on the stream.
#[derive(Debug, Clone, Default)]
pub struct FrameCodec;

/// The acknowledgement a receiver sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received;

#[async_trait]
impl Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Received;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Received>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await?;
        if byte[0] != RECEIVED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unknown answer byte",
            ));
        }
        Ok(Received)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        frame: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &frame).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        _: Received,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&[RECEIVED]).await?;
        io.close().await
    }
}

/// Reads one length-prefixed frame, refusing a declared length over [`MAX_FRAME_LEN`]
/// before allocating for it. The framing is the fetch stream's (`frame_len`), one rule for
/// both protocols.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    io.read_exact(&mut prefix).await?;
    let len = frame_len(prefix, MAX_FRAME_LEN, "frame")
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
    let mut frame = vec![0u8; len];
    io.read_exact(&mut frame).await?;
    Ok(frame)
}

/// Writes one length-prefixed frame and closes the write side.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, frame: &[u8]) -> io::Result<()> {
    let prefix = frame_prefix(frame.len())
        .filter(|_| frame.len() <= MAX_FRAME_LEN)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large to send"))?;
    io.write_all(&prefix).await?;
    io.write_all(frame).await?;
    io.close().await
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;

    use super::*;

    #[test]
    fn a_frame_round_trips() {
        let mut wire = Cursor::new(Vec::new());
        block_on(write_frame(&mut wire, b"envelope")).unwrap();
        let mut wire = Cursor::new(wire.into_inner());
        assert_eq!(block_on(read_frame(&mut wire)).unwrap(), b"envelope");
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let mut bytes = u32::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"x");
        let error = block_on(read_frame(&mut Cursor::new(bytes))).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        let mut bytes = 10u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"short");
        assert!(block_on(read_frame(&mut Cursor::new(bytes))).is_err());
    }

    #[test]
    fn sending_an_oversized_frame_is_refused() {
        let mut wire = Cursor::new(Vec::new());
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert!(block_on(write_frame(&mut wire, &big)).is_err());
        assert!(wire.into_inner().is_empty());
    }
}
