//! Fetch streams over the mesh: serving granted clips to grantees, and fetching the clips
//! of grants this node received — the `/porchlight/fetch/1` protocol on libp2p streams.
//!
//! The bytes on the stream are [`crate::fetch`]'s; this module owns the tasks around them.
//! Owner side: every incoming stream gets a task that reads the request, asks the driver
//! (and so the core) for a verdict, and either streams the clip or sends the coarse
//! rejection code. Requester side: every clip of a grant gets a task that fetches it into
//! the received store, resuming from the last whole chunk after a dropped connection, up to
//! a few attempts; a refusal is final. Clip bytes flow between the store files and the
//! stream on these tasks and never through the driver thread.
//!
//! A served stream carries a [`ServeStop`] from the verdict on: it fires at the token's
//! `not_after` or when the driver ends the token's streams ([`Transfers::end_served`], once
//! the revocation is recorded), whichever is first, and the stream ends there
//! ([`send_clip_until`]) and is recorded as cut with the bytes that had left. The stop is
//! made on the driver thread with the verdict, so a revocation handled after the verdict
//! always reaches the stream, even one that has not started sending yet.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use libp2p::StreamProtocol;
use porchlight_core::audit::GrantEnd;
use porchlight_protocol::RejectCode;
use porchlight_protocol::fetch::FETCH_PROTOCOL;
use porchlight_protocol::{AgreementSecret, ConsentToken, PeerId, Signed, TokenId};
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::driver::{DriverHandle, DriverInput, FetchVerdict};
use crate::fetch::{
    FetchError, Served, fetch_clip, read_fetch_request, send_clip_until, send_end, send_rejection,
};
use crate::mesh::{from_libp2p, to_libp2p};
use crate::received::{ReceivedError, ReceivedStore};

/// How long an owner waits for a grantee's request frame.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the end of a cut stream may wait on a reader that does not read; then the
/// stream is dropped (the grantee's resume is refused with the same code).
const END_TIMEOUT: Duration = Duration::from_secs(10);
/// Fetch streams an owner serves at once to one peer, and to everyone. A stream over the
/// limit is closed unanswered; the grantee's resume-and-retry takes it up later.
const SERVE_PER_PEER: usize = 4;
const SERVE_TOTAL: usize = 16;
/// Clips of one grant a requester fetches at once (under the owner's per-peer limit).
const FETCH_PER_GRANT: usize = 3;
/// Attempts per clip before a fetch is left for `porchlight fetch` to retry.
const ATTEMPTS: u32 = 5;

fn protocol() -> StreamProtocol {
    StreamProtocol::new(FETCH_PROTOCOL)
}

/// The running transfers.
#[derive(Clone)]
pub struct Transfers {
    control: libp2p_stream::Control,
    driver: DriverHandle,
    received: ReceivedStore,
    runtime: tokio::runtime::Handle,
    tasks: Arc<Mutex<BTreeMap<TokenId, Vec<AbortHandle>>>>,
    served: ServedStreams,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers").finish_non_exhaustive()
    }
}

impl Transfers {
    pub fn new(
        control: libp2p_stream::Control,
        driver: DriverHandle,
        received: ReceivedStore,
        runtime: tokio::runtime::Handle,
    ) -> Transfers {
        Transfers {
            control,
            driver,
            received,
            runtime,
            tasks: Arc::new(Mutex::new(BTreeMap::new())),
            served: ServedStreams::default(),
        }
    }

    /// The stop of a stream about to be served under `token_id`: at `deadline` (the token's
    /// `not_after`) or at [`Transfers::end_served`], whichever comes first. Call it on the
    /// driver thread as the verdict is made, so no revocation can fall between them.
    pub fn serve_stop(&self, token_id: TokenId, deadline: Instant) -> ServeStop {
        self.served.stop(token_id, deadline)
    }

    /// Ends every stream being served under `token_id` (it was revoked): no chunk is sent
    /// after this returns, and each ends with `Invalid`.
    pub fn end_served(&self, token_id: &TokenId) {
        self.served.end(token_id);
    }

    /// Starts answering fetch streams.
    pub fn serve_incoming(&self) -> anyhow::Result<()> {
        let mut control = self.control.clone();
        let mut incoming = control
            .accept(protocol())
            .map_err(|_| anyhow::anyhow!("the fetch protocol is already being served"))?;
        let driver = self.driver.clone();
        self.runtime.spawn(async move {
            let serving: Arc<Mutex<BTreeMap<PeerId, usize>>> = Arc::default();
            while let Some((peer, stream)) = incoming.next().await {
                let Some(from) = from_libp2p(&peer) else {
                    continue;
                };
                let Some(slot) = ServeSlot::take(&serving, from) else {
                    tracing::debug!(peer = %from, "too many fetch streams at once; closing one unanswered");
                    continue;
                };
                let driver = driver.clone();
                tokio::spawn(async move {
                    serve_one(from, stream, driver).await;
                    drop(slot);
                });
            }
        });
        Ok(())
    }

    /// Fetches every clip of a received grant not yet stored, in the background.
    pub fn fetch_grant(&self, token: Signed<ConsentToken>, reply_secret: AgreementSecret) {
        let body = token.body().clone();
        let Some(owner) = to_libp2p(&body.owner) else {
            return;
        };
        let secret = Arc::new(reply_secret);
        let token = Arc::new(token);
        let slots = Arc::new(tokio::sync::Semaphore::new(FETCH_PER_GRANT));
        let mut handles = Vec::new();
        for clip_id in body.clips {
            let task = FetchTask {
                control: self.control.clone(),
                driver: self.driver.clone(),
                received: self.received.clone(),
                owner,
                token: token.clone(),
                secret: secret.clone(),
            };
            let slots = slots.clone();
            let handle = self.runtime.spawn(async move {
                let Ok(_slot) = slots.acquire().await else {
                    return;
                };
                task.run(clip_id).await;
            });
            handles.push(handle.abort_handle());
        }
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(body.token_id)
            .or_default()
            .extend(handles);
    }

    /// Stops every fetch under a token (it was revoked or expired).
    pub fn cancel(&self, token_id: &TokenId) {
        let handles = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token_id);
        for handle in handles.into_iter().flatten() {
            handle.abort();
        }
    }
}

/// Per token served here, the switch that ends its live streams. Only tokens with a live
/// stream are kept: a later fetch under a revoked token is refused by the core, so it
/// needs no switch.
#[derive(Debug, Clone, Default)]
struct ServedStreams(Arc<Mutex<BTreeMap<TokenId, watch::Sender<bool>>>>);

impl ServedStreams {
    fn stop(&self, token_id: TokenId, deadline: Instant) -> ServeStop {
        let mut served = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget the switches of tokens with no stream left.
        served.retain(|_, switch| switch.receiver_count() > 0);
        let revoked = served
            .entry(token_id)
            .or_insert_with(|| watch::channel(false).0)
            .subscribe();
        ServeStop::new(deadline, revoked)
    }

    fn end(&self, token_id: &TokenId) {
        let switch = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token_id);
        if let Some(switch) = switch {
            switch.send_replace(true);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// When a served stream must end: at its token's `not_after`, or when the token is revoked.
#[derive(Debug)]
pub struct ServeStop {
    deadline: Instant,
    revoked: watch::Receiver<bool>,
}

impl ServeStop {
    /// A stop at `deadline`, or once `revoked` reads `true`.
    pub fn new(deadline: Instant, revoked: watch::Receiver<bool>) -> ServeStop {
        ServeStop { deadline, revoked }
    }

    /// Resolves when the stream must end, with the code to end it with
    /// (spec/wire.md#fetch-end): `OutOfWindow` at expiry, `Invalid` at revocation.
    pub async fn wait(mut self) -> RejectCode {
        let revoked = async {
            // A switch dropped unflipped (the daemon stopping) is not a revocation.
            if self.revoked.wait_for(|revoked| *revoked).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            () = revoked => RejectCode::Invalid,
            () = tokio::time::sleep_until(self.deadline) => RejectCode::OutOfWindow,
        }
    }
}

/// Why a stop's code ended a grant, for the audit.
fn why_cut(code: RejectCode) -> GrantEnd {
    match code {
        RejectCode::OutOfWindow => GrantEnd::Expired,
        _ => GrantEnd::Revoked,
    }
}

/// One fetch stream being served, counted per peer and in total while it lives.
struct ServeSlot {
    serving: Arc<Mutex<BTreeMap<PeerId, usize>>>,
    peer: PeerId,
}

impl ServeSlot {
    fn take(serving: &Arc<Mutex<BTreeMap<PeerId, usize>>>, peer: PeerId) -> Option<ServeSlot> {
        let mut counts = serving.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = counts.values().sum();
        let mine = counts.get(&peer).copied().unwrap_or(0);
        if total >= SERVE_TOTAL || mine >= SERVE_PER_PEER {
            return None;
        }
        counts.insert(peer, mine + 1);
        Some(ServeSlot {
            serving: serving.clone(),
            peer,
        })
    }
}

impl Drop for ServeSlot {
    fn drop(&mut self) {
        let mut counts = self.serving.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// Answers one fetch stream.
async fn serve_one(from: PeerId, mut stream: libp2p::Stream, driver: DriverHandle) {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_fetch_request(&mut stream)).await
    {
        Ok(Ok(request)) => request,
        Ok(Err(err)) => {
            tracing::debug!(peer = %from, error = %err, "unreadable fetch request");
            return;
        }
        Err(_) => return,
    };
    let (reply, verdict) = oneshot::channel();
    driver.send(DriverInput::FetchAsked {
        from,
        token_bytes: request.token,
        clip_id: request.clip_id,
        reply,
    });
    let Ok(verdict) = verdict.await else { return };
    match verdict {
        FetchVerdict::Serve {
            reader,
            wrapped_key,
            token_id,
            stop,
        } => match send_clip_until(
            &mut stream,
            &reader,
            wrapped_key,
            request.from_chunk,
            stop.wait(),
        )
        .await
        {
            Ok(Served::Complete { bytes }) => {
                tracing::info!(peer = %from, clip = %request.clip_id, bytes, "clip served");
                driver.send(DriverInput::FetchCompleted {
                    to: from,
                    token_id,
                    clip_id: request.clip_id,
                    bytes,
                });
            }
            Ok(Served::Stopped { code, bytes, reset }) => {
                tracing::info!(peer = %from, clip = %request.clip_id, token = %token_id, bytes, ?code, "a fetch was cut: its token expired or was revoked");
                if !reset {
                    let _ = tokio::time::timeout(END_TIMEOUT, send_end(&mut stream, code)).await;
                }
                driver.send(DriverInput::FetchCut {
                    to: from,
                    token_id,
                    clip_id: request.clip_id,
                    bytes,
                    why: why_cut(code),
                });
            }
            Err(err) => {
                tracing::info!(peer = %from, clip = %request.clip_id, error = %err, "a fetch stopped part-way (the grantee may resume)");
            }
        },
        FetchVerdict::Reject(code) => {
            let _ = send_rejection(&mut stream, code).await;
        }
        // Over a fetch limit, or the node cannot record the fetch now: dropping the stream
        // closes it unanswered, like the slot limit above, so the grantee's resume retries
        // after its backoff.
        FetchVerdict::Close => {
            tracing::debug!(peer = %from, "over a fetch limit or unrecordable; closing the stream unanswered");
        }
    }
}

struct FetchTask {
    control: libp2p_stream::Control,
    driver: DriverHandle,
    received: ReceivedStore,
    owner: libp2p::PeerId,
    token: Arc<Signed<ConsentToken>>,
    secret: Arc<AgreementSecret>,
}

impl FetchTask {
    async fn run(mut self, clip_id: porchlight_protocol::ClipId) {
        let token_id = self.token.body().token_id;
        let token_bytes = self.token.to_bytes();
        let mut backoff = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let mut sink = match self.received.begin(&self.token, &clip_id) {
                Ok(sink) => sink,
                Err(ReceivedError::AlreadyReceived { .. }) => return,
                Err(err) => {
                    tracing::warn!(clip = %clip_id, error = %err, "cannot receive a clip");
                    return;
                }
            };
            let outcome = match self.control.open_stream(self.owner, protocol()).await {
                Ok(mut stream) => {
                    fetch_clip(&mut stream, &token_bytes, &self.secret, &mut sink).await
                }
                Err(err) => Err(FetchError::Io(std::io::Error::other(err.to_string()))),
            };
            match outcome {
                Ok(_) => match sink.finish() {
                    Ok(clip) => {
                        tracing::info!(clip = %clip_id, token = %token_id, "clip received");
                        self.driver.send(DriverInput::ClipReceived {
                            token_id,
                            clip_id,
                            bytes: clip.bytes,
                        });
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(clip = %clip_id, error = %err, "cannot store a received clip");
                        return;
                    }
                },
                Err(FetchError::Rejected(code)) => {
                    tracing::warn!(clip = %clip_id, token = %token_id, ?code, "the owner refused the fetch");
                    return;
                }
                Err(err) if attempt < ATTEMPTS => {
                    tracing::info!(clip = %clip_id, attempt, error = %err, "fetch interrupted; resuming");
                    drop(sink);
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(err) => {
                    tracing::warn!(clip = %clip_id, error = %err, "fetch failed; `porchlight fetch` retries from where it stopped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn ending_a_token_stops_its_streams_and_no_other() {
        let served = ServedStreams::default();
        let token = TokenId::from_bytes([1; 16]);
        let other = TokenId::from_bytes([2; 16]);
        let first = served.stop(token, far());
        let second = served.stop(token, far());
        let unrelated = served.stop(other, far());
        served.end(&token);
        for stop in [first, second] {
            let code = tokio::time::timeout(Duration::from_secs(1), stop.wait()).await;
            assert_eq!(code, Ok(RejectCode::Invalid));
        }
        let still = tokio::time::timeout(Duration::from_millis(100), unrelated.wait()).await;
        assert!(still.is_err(), "another token's stream was stopped");
    }

    #[tokio::test]
    async fn a_stop_made_after_nothing_is_live_forgets_the_old_switches() {
        let served = ServedStreams::default();
        for n in 0..5u8 {
            drop(served.stop(TokenId::from_bytes([n; 16]), far()));
        }
        let _live = served.stop(TokenId::from_bytes([9; 16]), far());
        assert_eq!(served.len(), 1, "switches of finished streams are kept");
    }

    #[tokio::test]
    async fn the_deadline_ends_a_stream_out_of_window_and_a_dropped_switch_does_not() {
        let (switch, revoked) = watch::channel(false);
        let stop = ServeStop::new(Instant::now() + Duration::from_millis(50), revoked);
        // The daemon stopping drops the switch unflipped: that is no revocation.
        drop(switch);
        let code = tokio::time::timeout(Duration::from_secs(1), stop.wait()).await;
        assert_eq!(code, Ok(RejectCode::OutOfWindow));
        assert_eq!(why_cut(RejectCode::OutOfWindow), GrantEnd::Expired);
        assert_eq!(why_cut(RejectCode::Invalid), GrantEnd::Revoked);
    }

    #[test]
    fn serving_is_bounded_per_peer_and_in_total_and_slots_come_back() {
        let serving: Arc<Mutex<BTreeMap<PeerId, usize>>> = Arc::default();
        let peer = |n: u8| PeerId::from_public_key_bytes([n; 32]);
        let mine: Vec<_> = (0..SERVE_PER_PEER)
            .map(|_| ServeSlot::take(&serving, peer(1)).expect("under the per-peer limit"))
            .collect();
        assert!(
            ServeSlot::take(&serving, peer(1)).is_none(),
            "per-peer limit"
        );
        let mut others = Vec::new();
        for n in 2.. {
            match ServeSlot::take(&serving, peer(n)) {
                Some(slot) => others.push(slot),
                None => break,
            }
        }
        assert_eq!(mine.len() + others.len(), SERVE_TOTAL, "total limit");
        drop(mine);
        assert!(
            ServeSlot::take(&serving, peer(1)).is_some(),
            "slots are returned"
        );
    }
}
