//! The fetch stream end to end: an owner's store serving a clip and a requester's received
//! store taking it, over a real loopback TCP connection (and, for hand-made bad input, over
//! scripted bytes). Covers the byte-identical round trip, resuming after a dropped
//! connection and after a restart with a torn partial file, tampering, a substituted clip,
//! rejections, oversized and misframed frames, crypto-shredding and expiry.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite, Cursor};
use porchlight_node::fetch::{
    FetchError, Served, fetch_clip, read_fetch_request, send_clip, send_clip_until, send_end,
    send_rejection,
};
use porchlight_node::received::{ExportSelection, ReceivedError, ReceivedStore};
use porchlight_node::recording::Segment;
use porchlight_node::store::{Store, StoreConfig, StoreError};
use porchlight_node::transfers::ServeStop;
use porchlight_protocol::fetch::{FetchAccepted, FetchReply, frame_prefix};
use porchlight_protocol::stream::{CHUNK_SIZE, ChunkLayout, SEALED_CHUNK_SIZE};
use porchlight_protocol::{
    AgreementPublic, AgreementSecret, ClipHeader, ClipId, ConsentToken, CryptoError, FileKey,
    ProtocolError, RejectCode, RequestId, Signed, SigningIdentity, Timestamp, TokenId, seal_clip,
    unwrap_file_key, wrap_file_key,
};
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncRead as TokioRead, AsyncWrite as TokioWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use zeroize::Zeroizing;

/// 2026-11-29T12:00:00Z.
const NOW: u64 = 1_795_953_600_000;
const HOUR: u64 = 3_600_000;
/// Marks the plaintext, so a scan can prove none of it reached the requester's disk.
const MARKER: &[u8] = b"PORCHLIGHT-FETCH-PLAINTEXT-MARKER";

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn owner() -> SigningIdentity {
    SigningIdentity::from_secret_bytes(&[0x11; 32])
}

fn requester() -> SigningIdentity {
    SigningIdentity::from_secret_bytes(&[0x22; 32])
}

/// Six chunks, the last one short, with the marker at both ends.
fn video() -> Vec<u8> {
    let mut bytes = vec![0u8; 5 * CHUNK_SIZE + 1234];
    OsRng.fill_bytes(&mut bytes);
    bytes[..MARKER.len()].copy_from_slice(MARKER);
    let end = bytes.len() - MARKER.len();
    bytes[end..].copy_from_slice(MARKER);
    bytes
}

fn token(
    clips: Vec<ClipId>,
    grantee_key: &AgreementSecret,
    retain: bool,
    not_after: u64,
) -> Signed<ConsentToken> {
    let mut token_id = [0u8; 16];
    OsRng.fill_bytes(&mut token_id);
    Signed::sign(
        ConsentToken {
            token_id: TokenId::from_bytes(token_id),
            request_id: RequestId::from_bytes([0x42; 32]),
            owner: owner().peer_id(),
            grantee: requester().peer_id(),
            grantee_key: grantee_key.public(),
            clips,
            not_before: ts(NOW - HOUR),
            not_after: ts(not_after),
            retain,
        },
        &owner(),
    )
    .expect("a valid token signs")
}

/// Both homes of one fetch: the owner's store with one clip, the requester's received store.
struct World {
    _dir: tempfile::TempDir,
    owner_store: Arc<Store>,
    clip_id: ClipId,
    video: Vec<u8>,
    reply_secret: AgreementSecret,
    requester_vault: AgreementSecret,
    requester_dir: PathBuf,
    received: ReceivedStore,
    token: Signed<ConsentToken>,
}

impl World {
    fn new() -> World {
        World::with_video(video())
    }

    fn with_video(video: Vec<u8>) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let owner_store = Store::open(
            dir.path().join("owner"),
            AgreementSecret::generate(&mut OsRng),
            StoreConfig::default(),
        )
        .expect("owner store opens");
        let record = owner_store
            .add_segment(&Segment {
                camera: "porch".into(),
                start: ts(NOW - HOUR),
                end: ts(NOW - HOUR + 60_000),
                mp4: Zeroizing::new(video.clone()),
            })
            .expect("clip stored");
        let reply_secret = AgreementSecret::generate(&mut OsRng);
        let requester_vault = AgreementSecret::generate(&mut OsRng);
        let requester_dir = dir.path().join("requester");
        let received =
            ReceivedStore::open(&requester_dir, requester_vault.public()).expect("received store");
        let token = token(vec![record.clip_id], &reply_secret, false, NOW + HOUR);
        World {
            _dir: dir,
            owner_store: Arc::new(owner_store),
            clip_id: record.clip_id,
            video,
            reply_secret,
            requester_vault,
            requester_dir,
            received,
            token,
        }
    }

    /// The owner's bytes for a fetch from `from_chunk`, as `send_clip` writes them.
    async fn owner_bytes(&self, from_chunk: u64) -> Vec<u8> {
        let reader = self
            .owner_store
            .read_ciphertext(&self.clip_id)
            .expect("reader");
        let wrapped = self
            .owner_store
            .wrap_key_for(&self.clip_id, &self.reply_secret.public())
            .expect("wrap");
        let mut out = Cursor::new(Vec::new());
        send_clip(&mut out, &reader, wrapped, from_chunk)
            .await
            .expect("send into memory");
        out.into_inner()
    }

    fn export(&self) -> Vec<u8> {
        let out = tempfile::tempdir().expect("tempdir");
        let written = self
            .received
            .export(
                ExportSelection::Clip(self.clip_id),
                out.path(),
                &self.requester_vault,
            )
            .expect("export");
        assert_eq!(
            written,
            vec![out.path().join(format!("{}.mp4", self.clip_id))]
        );
        fs::read(&written[0]).expect("read export")
    }
}

/// The owner's end as the daemon will run it: read the request, serve the clip it names
/// from the offset it asks (the token check is the node core's and is not exercised here).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    store: &Store,
    grantee: &AgreementSecret,
) -> Result<u64, FetchError> {
    let request = read_fetch_request(stream).await?;
    let Ok(reader) = store.read_ciphertext(&request.clip_id) else {
        send_rejection(stream, RejectCode::Invalid).await?;
        return Ok(0);
    };
    let wrapped = store
        .wrap_key_for(&request.clip_id, &grantee.public())
        .expect("wrap");
    send_clip(stream, &reader, wrapped, request.from_chunk).await
}

async fn tcp_pair() -> (Tcp, Tcp) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
    (
        Tcp(client.expect("connect")),
        Tcp(server.expect("accept").0),
    )
}

/// tokio's TCP stream seen through the `futures` I/O traits, as libp2p's stream is.
struct Tcp(TcpStream);

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A stream whose writes fail once `budget` bytes have gone through: the owner's side of a
/// connection that drops mid-clip.
struct DropsAfter<S> {
    inner: S,
    budget: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for DropsAfter<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DropsAfter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.budget == 0 {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let take = buf.len().min(self.budget);
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, &buf[..take]) {
            Poll::Ready(Ok(n)) => {
                this.budget -= n;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// A requester's stream that reads prepared owner bytes and swallows what it writes.
struct Scripted {
    input: Cursor<Vec<u8>>,
    written: Vec<u8>,
}

impl Scripted {
    fn new(input: Vec<u8>) -> Scripted {
        Scripted {
            input: Cursor::new(input),
            written: Vec::new(),
        }
    }
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.input).poll_read(cx, buf)
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = frame_prefix(body.len()).expect("small frame").to_vec();
    out.extend_from_slice(body);
    out
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect()
}

/// Where chunk `index`'s body starts in what `send_clip` wrote from chunk 0.
fn chunk_body_offset(owner_bytes: &[u8], index: usize) -> usize {
    let reply_len = u32::from_be_bytes(owner_bytes[..4].try_into().expect("prefix")) as usize;
    4 + reply_len + index * (4 + SEALED_CHUNK_SIZE) + 4
}

#[tokio::test]
async fn a_clip_fetched_over_tcp_exports_byte_identical_and_nothing_plain_is_stored() {
    let world = World::new();
    let (mut client, mut server) = tcp_pair().await;
    let mut sink = world
        .received
        .begin(&world.token, &world.clip_id)
        .expect("begin");
    assert_eq!(sink.next_chunk(), 0);
    let token_bytes = world.token.to_bytes();
    let (sent, fetched) = tokio::join!(
        serve(&mut server, &world.owner_store, &world.reply_secret),
        fetch_clip(&mut client, &token_bytes, &world.reply_secret, &mut sink),
    );
    let layout = ChunkLayout::for_plaintext_len(world.video.len() as u64);
    let outcome = fetched.expect("fetch succeeds");
    assert_eq!(sent.expect("serve succeeds"), layout.ciphertext_len());
    assert_eq!(outcome.from_chunk, 0);
    assert_eq!(outcome.chunks_received, 6);
    assert_eq!(outcome.chunk_count, 6);
    assert_eq!(outcome.bytes_received, layout.ciphertext_len());
    assert!(sink.is_complete());
    let received = sink.finish().expect("finish");
    assert!(received.complete);

    // The received file is a clip file sealed to the requester's vault: same clip bytes as
    // the owner's, a different wrap.
    let done = with_extension(&world.requester_dir, "plclip");
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].file_name().unwrap().to_str().unwrap(),
        format!("{}.plclip", world.clip_id)
    );
    let mine = fs::read(&done[0]).unwrap();
    let theirs = fs::read(world.owner_store.get(&world.clip_id).unwrap().path).unwrap();
    assert_eq!(mine.len(), theirs.len());
    assert_eq!(received.bytes, mine.len() as u64);
    assert_eq!(&mine[..8], b"PLSTORE1");
    assert_ne!(mine[8..88], theirs[8..88], "wrapped to another vault");
    assert_eq!(
        mine[88..],
        theirs[88..],
        "the owner's clip bytes, unchanged"
    );
    assert_eq!(ClipId::of(&mine[88..158], &mine[158..]), world.clip_id);
    assert!(with_extension(&world.requester_dir, "partial").is_empty());

    let grants = world.received.list().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].token_id, world.token.body().token_id);
    assert_eq!(grants[0].token, world.token.to_bytes());
    assert_eq!(grants[0].clips, vec![received]);

    for path in files_under(&world.requester_dir) {
        let bytes = fs::read(&path).unwrap();
        assert!(
            find(&bytes, MARKER).is_none(),
            "plaintext in {}",
            path.display()
        );
    }
    assert!(
        world.export() == world.video,
        "the export is byte-identical"
    );
}

#[tokio::test]
async fn a_dropped_connection_and_a_restart_resume_from_the_next_whole_chunk() {
    let world = World::new();
    let token_bytes = world.token.to_bytes();
    let reply_frame_len = {
        let bytes = world.owner_bytes(0).await;
        4 + u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize
    };
    // The owner's connection drops halfway through chunk 3.
    let (mut client, server) = tcp_pair().await;
    let mut server = DropsAfter {
        inner: server,
        budget: reply_frame_len + 3 * (4 + SEALED_CHUNK_SIZE) + 1000,
    };
    let mut sink = world
        .received
        .begin(&world.token, &world.clip_id)
        .expect("begin");
    let (served, fetched) = tokio::join!(
        async {
            let result = serve(&mut server, &world.owner_store, &world.reply_secret).await;
            drop(server);
            result
        },
        fetch_clip(&mut client, &token_bytes, &world.reply_secret, &mut sink),
    );
    assert!(matches!(served, Err(FetchError::Io(_))), "{served:?}");
    match fetched {
        Err(FetchError::Io(err)) => assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("expected a broken stream, got {other:?}"),
    }
    assert_eq!(sink.next_chunk(), 3);
    assert!(!sink.is_complete());

    // A restart: the receiver and the store go away; a crash left a torn chunk behind.
    drop(sink);
    let partial = with_extension(&world.requester_dir, "partial");
    assert_eq!(partial.len(), 1);
    let mut bytes = fs::read(&partial[0]).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&[0xa5; 5000]);
    fs::write(&partial[0], &bytes).unwrap();
    let received =
        ReceivedStore::open(&world.requester_dir, world.requester_vault.public()).unwrap();
    let mut sink = received
        .begin(&world.token, &world.clip_id)
        .expect("resume");
    assert_eq!(sink.next_chunk(), 3, "only whole chunks count");
    assert_eq!(
        fs::metadata(&partial[0]).unwrap().len() as usize,
        whole,
        "torn tail cut"
    );

    let (mut client, mut server) = tcp_pair().await;
    let (served, fetched) = tokio::join!(
        serve(&mut server, &world.owner_store, &world.reply_secret),
        fetch_clip(&mut client, &token_bytes, &world.reply_secret, &mut sink),
    );
    let outcome = fetched.expect("resumed fetch succeeds");
    assert_eq!(outcome.from_chunk, 3);
    assert_eq!(outcome.chunks_received, 3);
    assert_eq!(served.expect("served"), outcome.bytes_received);
    assert_eq!(
        outcome.bytes_received,
        2 * SEALED_CHUNK_SIZE as u64 + 1234 + 16
    );
    sink.finish().expect("finish");
    assert!(
        world.export() == world.video,
        "the resumed export is byte-identical"
    );
}

#[tokio::test]
async fn held_chunks_that_no_longer_verify_are_dropped_and_the_resume_point_moves_back() {
    let world = World::new();
    let token_bytes = world.token.to_bytes();
    // Receive three chunks, then lose the connection.
    let full = world.owner_bytes(0).await;
    let cut = chunk_body_offset(&full, 3) + 10;
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let mut stream = Scripted::new(full[..cut].to_vec());
    assert!(matches!(
        fetch_clip(&mut stream, &token_bytes, &world.reply_secret, &mut sink).await,
        Err(FetchError::Io(_))
    ));
    assert_eq!(sink.next_chunk(), 3);
    drop(sink);
    // The disk garbles chunk 1 while the node is down.
    let partial = with_extension(&world.requester_dir, "partial").remove(0);
    let mut bytes = fs::read(&partial).unwrap();
    let chunk_one = 158 + SEALED_CHUNK_SIZE + 100;
    bytes[chunk_one] ^= 0xff;
    fs::write(&partial, &bytes).unwrap();

    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    assert_eq!(sink.next_chunk(), 3, "not verifiable until the key arrives");
    let mut stream = Scripted::new(world.owner_bytes(3).await);
    match fetch_clip(&mut stream, &token_bytes, &world.reply_secret, &mut sink).await {
        Err(FetchError::Received(ReceivedError::ResumeDiscarded {
            requested: 3,
            held: 1,
            ..
        })) => {}
        other => panic!("expected the resume point to move back, got {other:?}"),
    }
    assert_eq!(sink.next_chunk(), 1);
    let mut stream = Scripted::new(world.owner_bytes(1).await);
    fetch_clip(&mut stream, &token_bytes, &world.reply_secret, &mut sink)
        .await
        .expect("fetch from the new resume point");
    sink.finish().unwrap();
    assert!(world.export() == world.video);
}

#[tokio::test]
async fn a_tampered_chunk_is_caught_where_it_arrives_and_nothing_is_finished() {
    let world = World::new();
    let mut bytes = world.owner_bytes(0).await;
    let at = chunk_body_offset(&bytes, 2) + 777;
    bytes[at] ^= 0x01;
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let mut stream = Scripted::new(bytes);
    match fetch_clip(
        &mut stream,
        &world.token.to_bytes(),
        &world.reply_secret,
        &mut sink,
    )
    .await
    {
        Err(FetchError::Tampered {
            source: ProtocolError::Crypto(CryptoError::ChunkAuthentication { index: 2 }),
            ..
        }) => {}
        other => panic!("expected chunk 2 to fail, got {other:?}"),
    }
    assert_eq!(sink.next_chunk(), 2, "the chunks before it are kept");
    assert!(!sink.is_complete());
    assert!(matches!(sink.finish(), Err(ReceivedError::Misuse { .. })));
    assert!(with_extension(&world.requester_dir, "plclip").is_empty());
    let grants = world.received.list().unwrap();
    assert!(!grants[0].clips[0].complete);

    // A key wrapped to someone else does not open: caught before any chunk.
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let stranger = AgreementSecret::generate(&mut OsRng);
    let mut stream = Scripted::new(world.owner_bytes(2).await);
    match fetch_clip(&mut stream, &world.token.to_bytes(), &stranger, &mut sink).await {
        Err(FetchError::Tampered {
            source: ProtocolError::Crypto(CryptoError::UnwrapFailed),
            ..
        }) => {}
        other => panic!("expected the key not to open, got {other:?}"),
    }
    assert_eq!(sink.next_chunk(), 2);
}

#[tokio::test]
async fn another_clip_under_the_same_key_and_header_fails_the_clip_id_check() {
    // An owner that seals other footage under the named clip's header and key produces
    // chunks that all authenticate; only the clip id shows it is not the clip granted.
    let dir = tempfile::tempdir().unwrap();
    let vault = AgreementSecret::generate(&mut OsRng);
    let received = ReceivedStore::open(dir.path(), vault.public()).unwrap();
    let reply = AgreementSecret::generate(&mut OsRng);
    let key = FileKey::generate(&mut OsRng);
    let header = ClipHeader::new("porch", "video/mp4", ts(NOW), ts(NOW + 1000), &mut OsRng);
    let granted = seal_clip(&key, &header, &vec![1u8; 2 * CHUNK_SIZE + 5]).unwrap();
    let other = seal_clip(&key, &header, &vec![2u8; 2 * CHUNK_SIZE + 5]).unwrap();
    let token = token(vec![granted.clip_id], &reply, false, NOW + HOUR);
    let wrapped = wrap_file_key(
        &key,
        &reply.public(),
        &granted.clip_id,
        AgreementSecret::generate(&mut OsRng),
    )
    .unwrap();
    let layout = ChunkLayout::for_ciphertext_len(other.ciphertext.len() as u64).unwrap();
    let reply_frame = FetchReply::Accepted(FetchAccepted::new(
        other.header_bytes.clone(),
        wrapped,
        layout,
    ))
    .encode()
    .unwrap();
    let mut bytes = frame(&reply_frame);
    for chunk in other.ciphertext.chunks(SEALED_CHUNK_SIZE) {
        bytes.extend(frame(chunk));
    }
    let mut sink = received.begin(&token, &granted.clip_id).unwrap();
    match fetch_clip(
        &mut Scripted::new(bytes),
        &token.to_bytes(),
        &reply,
        &mut sink,
    )
    .await
    {
        Err(FetchError::Tampered {
            source: ProtocolError::Crypto(CryptoError::ClipIdMismatch),
            ..
        }) => {}
        other => panic!("expected a clip id mismatch, got {other:?}"),
    }
    assert_eq!(sink.next_chunk(), 0, "nothing held can be trusted");
    assert!(!sink.is_complete());
    drop(sink);
    let partial = with_extension(dir.path(), "partial");
    assert_eq!(
        fs::metadata(&partial[0]).unwrap().len(),
        88 + granted.header_bytes.len() as u64
    );
}

#[tokio::test]
async fn a_rejection_reaches_the_requester_with_its_code() {
    let world = World::new();
    let mut owner_side = Cursor::new(Vec::new());
    send_rejection(&mut owner_side, RejectCode::OutOfWindow)
        .await
        .unwrap();
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let mut stream = Scripted::new(owner_side.into_inner());
    let err = fetch_clip(
        &mut stream,
        &world.token.to_bytes(),
        &world.reply_secret,
        &mut sink,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FetchError::Rejected(RejectCode::OutOfWindow)),
        "{err:?}"
    );
    assert!(err.to_string().contains("expired"), "{err}");
    // What the requester sent is one request frame the owner's end reads back.
    let request = read_fetch_request(&mut Cursor::new(stream.written))
        .await
        .unwrap();
    assert_eq!(request.clip_id, world.clip_id);
    assert_eq!(request.from_chunk, 0);
    assert_eq!(request.token, world.token.to_bytes());
    drop(sink);

    // Over TCP: asking to resume past the end is refused with `Invalid`.
    let (mut client, mut server) = tcp_pair().await;
    let (served, fetched) = tokio::join!(
        async {
            let request = read_fetch_request(&mut server).await?;
            let reader = world.owner_store.read_ciphertext(&request.clip_id).unwrap();
            let wrapped = world
                .owner_store
                .wrap_key_for(&request.clip_id, &world.reply_secret.public())
                .unwrap();
            send_clip(&mut server, &reader, wrapped, 7).await
        },
        async {
            let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
            fetch_clip(
                &mut client,
                &world.token.to_bytes(),
                &world.reply_secret,
                &mut sink,
            )
            .await
        },
    );
    assert!(
        matches!(
            served,
            Err(FetchError::PastTheEnd {
                from_chunk: 7,
                chunk_count: 6
            })
        ),
        "{served:?}"
    );
    assert!(
        matches!(fetched, Err(FetchError::Rejected(RejectCode::Invalid))),
        "{fetched:?}"
    );
}

#[test]
fn the_owner_store_wraps_only_stored_clips_to_usable_keys() {
    let world = World::new();
    let wrapped = world
        .owner_store
        .wrap_key_for(&world.clip_id, &world.reply_secret.public())
        .unwrap();
    let again = world
        .owner_store
        .wrap_key_for(&world.clip_id, &world.reply_secret.public())
        .unwrap();
    assert_ne!(wrapped, again, "a fresh ephemeral key for every fetch");
    let key = unwrap_file_key(&wrapped, &world.reply_secret, &world.clip_id).unwrap();
    let key_again = unwrap_file_key(&again, &world.reply_secret, &world.clip_id).unwrap();
    assert_eq!(key.as_bytes(), key_again.as_bytes());
    assert!(matches!(
        world
            .owner_store
            .wrap_key_for(&world.clip_id, &AgreementPublic::from_bytes([0; 32])),
        Err(StoreError::Grantee {
            source: CryptoError::NonContributory,
            ..
        })
    ));
    assert!(matches!(
        world
            .owner_store
            .wrap_key_for(&ClipId::from_bytes([7; 32]), &world.reply_secret.public()),
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn oversized_and_misframed_input_is_refused_without_panicking() {
    let world = World::new();
    let token_bytes = world.token.to_bytes();
    // A reply frame that claims 4 GiB: refused from its prefix alone.
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let mut stream = Scripted::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    let err = fetch_clip(&mut stream, &token_bytes, &world.reply_secret, &mut sink)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::TooLarge {
                what: "fetch reply",
                ..
            }
        ),
        "{err:?}"
    );

    // A chunk frame longer than any chunk, and one of a valid size but not this chunk's.
    let good = world.owner_bytes(0).await;
    for len in [SEALED_CHUNK_SIZE + 1, 1000] {
        let mut bytes = good[..chunk_body_offset(&good, 0) - 4].to_vec();
        bytes.extend_from_slice(&(len as u32).to_be_bytes());
        bytes.extend(vec![0u8; len]);
        let err = fetch_clip(
            &mut Scripted::new(bytes),
            &token_bytes,
            &world.reply_secret,
            &mut sink,
        )
        .await
        .unwrap_err();
        match (len, &err) {
            (1000, FetchError::Protocol(_)) => {}
            (
                _,
                FetchError::TooLarge {
                    what: "chunk frame",
                    ..
                },
            ) if len > SEALED_CHUNK_SIZE => {}
            _ => panic!("chunk frame of {len}: {err:?}"),
        }
        assert_eq!(sink.next_chunk(), 0);
    }

    // Garbage where the reply belongs.
    let err = fetch_clip(
        &mut Scripted::new(frame(&[9; 40])),
        &token_bytes,
        &world.reply_secret,
        &mut sink,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Protocol(_)), "{err:?}");

    // The owner's end: an oversized request is refused before it is read, and says which
    // code to answer with; a malformed one too.
    let err = read_fetch_request(&mut Cursor::new(vec![0, 1, 0, 0, 0]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::TooLarge {
                what: "fetch request",
                len: 65_536,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reject_code(), Some(RejectCode::Malformed));
    let err = read_fetch_request(&mut Cursor::new(frame(&[1, 2, 3])))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Protocol(_)), "{err:?}");
    assert_eq!(err.reject_code(), Some(RejectCode::Malformed));
    let err = read_fetch_request(&mut Cursor::new(vec![0, 0]))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Io(_)), "{err:?}");
    assert_eq!(err.reject_code(), None);

    // Random bytes on either end never panic.
    for seed in 0..200u32 {
        let len = (seed as usize * 37) % 600;
        let mut noise = vec![0u8; len];
        OsRng.fill_bytes(&mut noise);
        if seed % 3 == 0 && len >= 4 {
            noise[..4].copy_from_slice(&((len - 4) as u32).to_be_bytes());
        }
        let _ = read_fetch_request(&mut Cursor::new(noise.clone())).await;
        let _ = fetch_clip(
            &mut Scripted::new(noise),
            &token_bytes,
            &world.reply_secret,
            &mut sink,
        )
        .await;
    }
}

#[tokio::test]
async fn deleting_a_token_zeroes_every_key_before_unlinking_and_stops_a_fetch_in_flight() {
    let world = World::new();
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let mut stream = Scripted::new(world.owner_bytes(0).await);
    fetch_clip(
        &mut stream,
        &world.token.to_bytes(),
        &world.reply_secret,
        &mut sink,
    )
    .await
    .unwrap();
    sink.finish().unwrap();
    let path = with_extension(&world.requester_dir, "plclip").remove(0);
    // A second name for the inode shows what happened to the file before the unlink.
    let witness = world.requester_dir.join("witness");
    fs::hard_link(&path, &witness).unwrap();
    let before = fs::read(&witness).unwrap();
    let wrapped_key = before[8..88].to_vec();
    assert!(wrapped_key.iter().any(|&b| b != 0));

    let token_id = world.token.body().token_id;
    assert_eq!(world.received.delete_token(&token_id).unwrap(), 1);
    let after = fs::read(&witness).unwrap();
    assert!(after[8..88].iter().all(|&b| b == 0), "key zeroed in place");
    assert_eq!(after[88..], before[88..]);
    fs::remove_file(&witness).unwrap();
    assert!(
        files_under(&world.requester_dir).is_empty(),
        "{:?}",
        files_under(&world.requester_dir)
    );
    assert!(world.received.list().unwrap().is_empty());
    assert_eq!(
        world.received.delete_token(&token_id).unwrap(),
        0,
        "idempotent"
    );
    assert!(matches!(
        world.received.export(
            ExportSelection::Token(token_id),
            world.requester_dir.as_path(),
            &world.requester_vault
        ),
        Err(ReceivedError::NotFound(_))
    ));

    // A fetch in flight when its token is deleted keeps nothing.
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let full = world.owner_bytes(0).await;
    let cut = chunk_body_offset(&full, 2);
    let _ = fetch_clip(
        &mut Scripted::new(full[..cut].to_vec()),
        &world.token.to_bytes(),
        &world.reply_secret,
        &mut sink,
    )
    .await;
    assert_eq!(sink.next_chunk(), 2);
    world.received.delete_token(&token_id).unwrap();
    let err = fetch_clip(
        &mut Scripted::new(world.owner_bytes(2).await),
        &world.token.to_bytes(),
        &world.reply_secret,
        &mut sink,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Received(_)), "{err:?}");
    assert!(sink.finish().is_err());
    assert!(files_under(&world.requester_dir).is_empty());
}

#[tokio::test]
async fn expiry_lists_past_grants_without_retention_even_after_a_restart() {
    let world = World::new();
    let keep = token(vec![world.clip_id], &world.reply_secret, true, NOW + HOUR);
    let short = token(
        vec![world.clip_id],
        &world.reply_secret,
        false,
        NOW + 60_000,
    );
    for token in [&world.token, &keep, &short] {
        let mut sink = world.received.begin(token, &world.clip_id).unwrap();
        fetch_clip(
            &mut Scripted::new(world.owner_bytes(0).await),
            &token.to_bytes(),
            &world.reply_secret,
            &mut sink,
        )
        .await
        .unwrap();
        sink.finish().unwrap();
    }
    let reopened =
        ReceivedStore::open(&world.requester_dir, world.requester_vault.public()).unwrap();
    assert_eq!(reopened.list().unwrap().len(), 3);
    assert!(reopened.expired(ts(NOW)).unwrap().is_empty());
    assert_eq!(
        reopened.expired(ts(NOW + 2 * 60_000)).unwrap(),
        vec![short.body().token_id]
    );
    let mut later = reopened.expired(ts(NOW + 2 * HOUR)).unwrap();
    later.sort();
    let mut expected = vec![short.body().token_id, world.token.body().token_id];
    expected.sort();
    assert_eq!(later, expected, "the retained grant is never listed");
    // Exporting by token writes that token's clip.
    let out = tempfile::tempdir().unwrap();
    let written = reopened
        .export(
            ExportSelection::Token(keep.body().token_id),
            out.path(),
            &world.requester_vault,
        )
        .unwrap();
    assert_eq!(fs::read(&written[0]).unwrap(), world.video);
}

#[tokio::test]
async fn a_clip_outside_the_token_and_a_second_receiver_are_refused() {
    let world = World::new();
    let stray = ClipId::from_bytes([9; 32]);
    assert!(matches!(
        world.received.begin(&world.token, &stray),
        Err(ReceivedError::NotInToken { .. })
    ));
    assert!(
        files_under(&world.requester_dir).is_empty(),
        "nothing recorded"
    );
    let first = world.received.begin(&world.token, &world.clip_id).unwrap();
    assert!(matches!(
        world.received.begin(&world.token, &world.clip_id),
        Err(ReceivedError::Busy { .. })
    ));
    drop(first);
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    fetch_clip(
        &mut Scripted::new(world.owner_bytes(0).await),
        &world.token.to_bytes(),
        &world.reply_secret,
        &mut sink,
    )
    .await
    .unwrap();
    sink.finish().unwrap();
    assert!(matches!(
        world.received.begin(&world.token, &world.clip_id),
        Err(ReceivedError::AlreadyReceived { .. })
    ));
}

// ------------------------------------------------------------------------------------------
// Ending a stream early: expiry and revocation (spec/wire.md#fetch-end)
// ------------------------------------------------------------------------------------------

/// The owner's side of a stream that flips a revocation switch once `after` bytes have gone
/// through: a revocation that lands between two chunks.
struct RevokesAfter<S> {
    inner: S,
    after: usize,
    written: usize,
    switch: tokio::sync::watch::Sender<bool>,
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RevokesAfter<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.written += n;
            if this.written >= this.after {
                this.switch.send_replace(true);
            }
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RevokesAfter<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// A stop that never fires on its own: `(stop, switch)`, the switch kept to revoke with.
fn revocable_stop(deadline: tokio::time::Instant) -> (ServeStop, tokio::sync::watch::Sender<bool>) {
    let (switch, revoked) = tokio::sync::watch::channel(false);
    (ServeStop::new(deadline, revoked), switch)
}

fn far_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(3600)
}

/// The owner's end with a stop: read the request, serve until `stop`, end the stream.
async fn serve_until<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    world: &World,
    stop: ServeStop,
) -> Result<Served, FetchError> {
    let request = read_fetch_request(stream).await?;
    let reader = world
        .owner_store
        .read_ciphertext(&request.clip_id)
        .expect("reader");
    let wrapped = world
        .owner_store
        .wrap_key_for(&request.clip_id, &world.reply_secret.public())
        .expect("wrap");
    let served = send_clip_until(stream, &reader, wrapped, request.from_chunk, stop.wait()).await?;
    if let Served::Stopped {
        code, reset: false, ..
    } = served
    {
        send_end(stream, code).await?;
    }
    Ok(served)
}

#[tokio::test]
async fn a_revocation_between_chunks_ends_the_stream_with_a_final_invalid() {
    let world = World::new();
    let token_bytes = world.token.to_bytes();
    let reply_frame_len = {
        let bytes = world.owner_bytes(0).await;
        4 + u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize
    };
    // The revocation lands as chunk 1 has gone out whole.
    let (stop, switch) = revocable_stop(far_deadline());
    let (mut client, server) = tcp_pair().await;
    let mut server = RevokesAfter {
        inner: server,
        after: reply_frame_len + 2 * (4 + SEALED_CHUNK_SIZE),
        written: 0,
        switch,
    };
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let (served, fetched) = tokio::join!(
        serve_until(&mut server, &world, stop),
        fetch_clip(&mut client, &token_bytes, &world.reply_secret, &mut sink),
    );
    assert_eq!(
        served.expect("served until the stop"),
        Served::Stopped {
            code: RejectCode::Invalid,
            bytes: 2 * SEALED_CHUNK_SIZE as u64,
            reset: false,
        }
    );
    assert!(
        matches!(fetched, Err(FetchError::Rejected(RejectCode::Invalid))),
        "the end is a final refusal, not a broken stream: {fetched:?}"
    );
    assert_eq!(sink.next_chunk(), 2, "no chunk after the revocation");
    assert!(!sink.is_complete());
}

#[tokio::test]
async fn a_write_blocked_on_a_slow_reader_is_abandoned_at_expiry() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the bytes the owner's stream accepted.
    struct Counted<S> {
        inner: S,
        written: Arc<AtomicUsize>,
    }
    impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = &mut *self;
            let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
            if let Poll::Ready(Ok(n)) = poll {
                this.written.fetch_add(n, Ordering::SeqCst);
            }
            poll
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_close(cx)
        }
    }
    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    // 2 MiB, far more than the small socket buffers below hold.
    let mut video = vec![0u8; 2 << 20];
    OsRng.fill_bytes(&mut video);
    let world = World::with_video(video);
    let ciphertext_len = world
        .owner_store
        .read_ciphertext(&world.clip_id)
        .unwrap()
        .layout()
        .ciphertext_len();

    // A TCP connection with small buffers, so the owner blocks as soon as the reader stops.
    let listener = tokio::net::TcpSocket::new_v4().unwrap();
    listener.set_send_buffer_size(16 * 1024).unwrap();
    listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listener.listen(1).unwrap();
    let client = tokio::net::TcpSocket::new_v4().unwrap();
    client.set_recv_buffer_size(16 * 1024).unwrap();
    let (client, server) = tokio::join!(
        client.connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    let mut client = Tcp(client.unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let mut server = Counted {
        inner: Tcp(server.unwrap().0),
        written: written.clone(),
    };

    // The reader sends its request and then reads nothing until well after the expiry.
    let request = porchlight_protocol::FetchRequest {
        token: world.token.to_bytes(),
        clip_id: world.clip_id,
        from_chunk: 0,
    }
    .encode()
    .unwrap();
    client.write_all(&frame(&request)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let (stop, _switch) = revocable_stop(deadline);
    let owner = tokio::spawn(async move {
        let served = serve_until(&mut server, &world, stop).await;
        drop(server);
        (served, world)
    });
    tokio::time::sleep_until(deadline).await;
    let at_expiry = written.load(Ordering::SeqCst);
    let (served, _world) = tokio::time::timeout(Duration::from_secs(5), owner)
        .await
        .expect("the blocked write was abandoned at expiry, not left to finish")
        .unwrap();
    let served = served.expect("served until the stop");
    let Served::Stopped { code, bytes, .. } = served else {
        panic!("the stream ran to its end: {served:?}");
    };
    assert_eq!(code, RejectCode::OutOfWindow);
    assert!(bytes < ciphertext_len, "{bytes} of {ciphertext_len}");
    assert_eq!(
        written.load(Ordering::SeqCst),
        at_expiry,
        "nothing was written after the expiry"
    );

    // Now the reader reads everything there is: only what had left before the expiry.
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut received))
        .await
        .expect("the stream ends");
    let written = written.load(Ordering::SeqCst);
    assert_eq!(
        received.len(),
        written,
        "every byte written arrived, and no more"
    );
    assert!(
        (received.len() as u64) < ciphertext_len,
        "no chunk after the expiry: {} bytes of a {ciphertext_len}-byte clip",
        received.len()
    );
}

#[tokio::test]
async fn an_end_frame_is_read_as_a_final_refusal_and_anything_else_after_it_is_refused() {
    let world = World::new();
    let token_bytes = world.token.to_bytes();
    let full = world.owner_bytes(0).await;
    let two_chunks = chunk_body_offset(&full, 2) - 4;
    // The end frame is a zero length where a chunk frame is due (written out here, as the
    // spec gives it, rather than through the constant).
    let end = [0u8; 4];
    let ended = |after: &[u8]| {
        let mut bytes = full[..two_chunks].to_vec();
        bytes.extend_from_slice(&end);
        bytes.extend_from_slice(after);
        bytes
    };
    let rejected = FetchReply::Rejected(RejectCode::OutOfWindow)
        .encode()
        .unwrap();

    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let mut stream = Scripted::new(ended(&frame(&rejected)));
    let result = fetch_clip(&mut stream, &token_bytes, &world.reply_secret, &mut sink).await;
    assert!(
        matches!(result, Err(FetchError::Rejected(RejectCode::OutOfWindow))),
        "{result:?}"
    );
    assert_eq!(sink.next_chunk(), 2);
    drop(sink);

    // Resuming from chunk 2: an end frame right after the reply, followed by an
    // acceptance, by garbage, or by nothing.
    let reply_frame = &full[..chunk_body_offset(&full, 0) - 4];
    let resumed = |after: &[u8]| {
        let mut bytes = reply_frame.to_vec();
        bytes.extend_from_slice(&end);
        bytes.extend_from_slice(after);
        bytes
    };
    for (after, what) in [
        (reply_frame.to_vec(), "an acceptance"),
        (frame(b"\x07garbage"), "garbage"),
    ] {
        let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
        assert_eq!(sink.next_chunk(), 2);
        let mut stream = Scripted::new(resumed(&after));
        let result = fetch_clip(&mut stream, &token_bytes, &world.reply_secret, &mut sink).await;
        assert!(
            matches!(result, Err(FetchError::Protocol(_))),
            "{what}: {result:?}"
        );
    }
    let mut sink = world.received.begin(&world.token, &world.clip_id).unwrap();
    let mut stream = Scripted::new(resumed(&[]));
    let result = fetch_clip(&mut stream, &token_bytes, &world.reply_secret, &mut sink).await;
    assert!(matches!(result, Err(FetchError::Io(_))), "{result:?}");
}
