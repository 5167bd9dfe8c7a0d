//! The driver: the one thread that runs the sans-IO core (porchlight-core) against the real
//! world — wall-clock time, the mesh, the clip store, the store of received clips, the
//! durable audit log and the owner's commands from the local API.
//!
//! Everything that changes consent state goes through [`DriverInput`] on one channel, in
//! order; the thread feeds each to [`Node::handle`] with the current time, then carries out
//! every [`Output`] before taking the next input (the core's drain rule), and wakes itself
//! at [`Node::poll_timeout`]. One thread and one queue means no locks around the core and a
//! total order of audit entries. The blocking work it does inline is small and local (an
//! fsync per audit entry, sled updates); clip bytes never pass through it — fetches stream
//! on tokio tasks ([`crate::transfers`]) once the core has said yes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use porchlight_core::audit::GrantEnd;
use porchlight_core::{AuditEvent, Input, Node, Output};
use porchlight_protocol::{
    AgreementPublic, AgreementSecret, ClipId, PeerId, RejectCode, RequestId, RequestTarget,
    SigningIdentity, TimeWindow, Timestamp, TokenId, WrappedFileKey,
};
use tokio::sync::oneshot;

use crate::audit_log::AuditLog;
use crate::clock;
use crate::ledger::{IssuedToken, Ledger, OutgoingDetails, RequestsView, TokensView};
use crate::mesh::{Mesh, MeshEvent};
use crate::received::{ExportSelection, ReceivedStore};
use crate::store::{CiphertextReader, Store};
use crate::transfers::{ServeStop, Transfers};

/// How often received footage is checked for expiry independently of the core (which
/// forgets a grant's timer across a restart only if its state file was lost).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// One thing for the driver to do, in order.
#[derive(Debug)]
pub enum DriverInput {
    /// A frame from the mesh.
    Mesh(MeshEvent),
    /// The store sealed a new clip.
    ClipAdded {
        clip_id: ClipId,
        camera: String,
        start: Timestamp,
        end: Timestamp,
    },
    /// Retention or the owner deleted a clip.
    ClipRemoved(ClipId),
    /// An owner or requester command from the local API.
    Command(Command, oneshot::Sender<Result<CommandReply, CommandError>>),
    /// A peer asks to fetch a clip; the answer says whether to stream it.
    FetchAsked {
        from: PeerId,
        token_bytes: Vec<u8>,
        clip_id: ClipId,
        reply: oneshot::Sender<FetchVerdict>,
    },
    /// A served fetch finished.
    FetchCompleted {
        to: PeerId,
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
    },
    /// A served fetch was cut at its token's expiry or revocation, `bytes` into the clip.
    FetchCut {
        to: PeerId,
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
        why: GrantEnd,
    },
    /// A fetched clip is stored.
    ClipReceived {
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
    },
    /// Stop after the inputs queued so far.
    Stop,
}

/// Commands the API forwards.
#[derive(Debug)]
pub enum Command {
    SendRequest {
        target: RequestTarget,
        /// How the target is shown in `requests list`.
        target_label: String,
        window: TimeWindow,
        reason: String,
        case_number: Option<String>,
        access: Duration,
    },
    Approve {
        request_id: RequestId,
        duration: Duration,
        clips: Option<Vec<ClipId>>,
        retain: bool,
    },
    Deny {
        request_id: RequestId,
        message: Option<String>,
    },
    Revoke {
        token_id: TokenId,
    },
    ListRequests,
    ListTokens,
    /// Fetch (again) what grants of a request or a token name, and optionally export the
    /// received clips decrypted into a directory.
    Fetch {
        id: String,
        export_to: Option<PathBuf>,
    },
}

/// What a command answers.
#[derive(Debug)]
pub enum CommandReply {
    RequestSent(RequestId),
    TokenIssued(TokenId),
    Done,
    Requests(RequestsView),
    Tokens(TokensView),
    Fetched { exported: Vec<PathBuf> },
}

/// Why a command failed: the owner's mistake (`Invalid`) or the node's trouble (`Failed`).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}

/// The core's answer to a fetch.
#[derive(Debug)]
pub enum FetchVerdict {
    Serve {
        // Boxed: an open clip is a few hundred bytes, a refusal one.
        reader: Box<CiphertextReader>,
        wrapped_key: WrappedFileKey,
        token_id: TokenId,
        /// Ends the stream at the token's `not_after` or its revocation.
        stop: ServeStop,
    },
    Reject(RejectCode),
}

/// Sends inputs to the driver thread.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    inputs: mpsc::Sender<DriverInput>,
}

impl DriverHandle {
    pub fn send(&self, input: DriverInput) {
        if self.inputs.send(input).is_err() {
            tracing::debug!("the driver has stopped");
        }
    }

    /// Runs a command and waits for its answer.
    pub async fn command(&self, command: Command) -> Result<CommandReply, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.send(DriverInput::Command(command, reply));
        answer
            .await
            .map_err(|_| CommandError::Failed("the node is stopping".into()))?
    }
}

/// A new channel: the handle for the shells, the receiver for [`Driver::run`].
pub fn channel() -> (DriverHandle, mpsc::Receiver<DriverInput>) {
    let (inputs, receiver) = mpsc::channel();
    (DriverHandle { inputs }, receiver)
}

/// What the driver owns.
#[derive(Debug)]
pub struct Driver {
    pub node: Node,
    pub store: Arc<Store>,
    pub received: ReceivedStore,
    pub audit: AuditLog,
    /// The node's key, for signing audit entries (the core holds its own copy).
    pub audit_identity: SigningIdentity,
    pub mesh: Mesh,
    pub transfers: Transfers,
    pub ledger: Ledger,
    /// The vault secret, to decrypt received clips on `porchlight fetch -o DIR`.
    pub vault: AgreementSecret,
    /// Where the core's durable state is saved, and the generation last saved there.
    pub state_path: PathBuf,
    pub saved_generation: u64,
}

impl Driver {
    /// Runs until [`DriverInput::Stop`] or until every handle is dropped.
    pub fn run(mut self, inputs: mpsc::Receiver<DriverInput>) {
        self.sweep_received();
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            // Timers first, so a steady stream of input cannot hold back an expiry.
            let now = self.now();
            if self.node.poll_timeout().is_some_and(|at| at <= now) {
                let _ = self.feed(Input::Timeout);
            }
            if Instant::now() >= next_sweep {
                self.sweep_received();
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            let wait = self
                .node
                .poll_timeout()
                .map(|at| at.duration_since(now))
                .unwrap_or(SWEEP_EVERY)
                .min(next_sweep.saturating_duration_since(Instant::now()));
            match inputs.recv_timeout(wait) {
                Ok(DriverInput::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => self.on_input(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        tracing::debug!("driver stopped");
    }

    fn now(&self) -> Timestamp {
        clock::now().unwrap_or(self.node.now())
    }

    /// Feeds one input and carries out what the core asks. Returns the core's verdict on
    /// a command.
    fn feed(&mut self, input: Input) -> Result<Vec<Output>, porchlight_core::CoreError> {
        let now = self.now();
        let result = self.node.handle(now, input);
        let mut outputs = Vec::new();
        while let Some(output) = self.node.poll() {
            outputs.push(output);
        }
        // The record comes first: every audit entry of this step is on disk before any of
        // its actions (a grant sent, a clip served, a revocation) leaves the node.
        for output in &outputs {
            if let Output::Audit(entry) = output {
                self.on_audit(&entry.event);
                if let Err(err) = self.audit.append(entry, &self.audit_identity) {
                    tracing::error!(error = %err, "cannot append to the audit log");
                }
            }
        }
        // Then the state a restart needs (a token issued, a request sent), before the
        // actions that depend on it leave the node.
        self.save_state();
        for output in &outputs {
            self.carry_out(output);
        }
        result.map(|()| outputs)
    }

    fn save_state(&mut self) {
        let generation = self.node.durable_generation();
        if generation == self.saved_generation {
            return;
        }
        match crate::consent_state::save(&self.state_path, &self.node.durable_state()) {
            Ok(()) => self.saved_generation = generation,
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "cannot save the consent state; a restart now would forget recent grants")
            }
        }
    }

    fn on_input(&mut self, input: DriverInput) {
        match input {
            DriverInput::Mesh(MeshEvent::Frame { from, bytes }) => {
                let _ = self.feed(Input::FrameReceived { from, bytes });
            }
            DriverInput::ClipAdded {
                clip_id,
                camera,
                start,
                end,
            } => {
                let _ = self.feed(Input::ClipAdded {
                    clip_id,
                    camera,
                    start,
                    end,
                });
            }
            DriverInput::ClipRemoved(clip_id) => {
                let _ = self.feed(Input::ClipRemoved { clip_id });
            }
            DriverInput::Command(command, reply) => {
                let answer = self.on_command(command);
                let _ = reply.send(answer);
            }
            DriverInput::FetchAsked {
                from,
                token_bytes,
                clip_id,
                reply,
            } => {
                let verdict = self.on_fetch_asked(from, token_bytes, clip_id);
                let _ = reply.send(verdict);
            }
            DriverInput::FetchCompleted {
                to,
                token_id,
                clip_id,
                bytes,
            } => {
                self.ledger.transferred(&token_id, clip_id);
                let _ = self.feed(Input::FetchCompleted {
                    to,
                    token_id,
                    clip_id,
                    bytes,
                });
            }
            DriverInput::FetchCut {
                to,
                token_id,
                clip_id,
                bytes,
                why,
            } => {
                let _ = self.feed(Input::FetchCut {
                    to,
                    token_id,
                    clip_id,
                    bytes,
                    why,
                });
            }
            DriverInput::ClipReceived {
                token_id,
                clip_id,
                bytes,
            } => {
                self.ledger.transferred(&token_id, clip_id);
                if let Err(err) = self.feed(Input::ClipReceived {
                    token_id,
                    clip_id,
                    bytes,
                }) {
                    // The grant ended while the clip was in flight: it must not stay.
                    tracing::info!(token = %token_id, error = %err, "a clip arrived after its grant ended; deleting it");
                    self.delete_received(token_id);
                }
            }
            DriverInput::Stop => {}
        }
    }

    fn on_fetch_asked(
        &mut self,
        from: PeerId,
        token_bytes: Vec<u8>,
        clip_id: ClipId,
    ) -> FetchVerdict {
        let outputs = match self.feed(Input::FetchAsked {
            from,
            token_bytes,
            clip_id,
        }) {
            Ok(outputs) => outputs,
            Err(_) => return FetchVerdict::Reject(RejectCode::Invalid),
        };
        for output in outputs {
            match output {
                Output::ServeFetch {
                    to,
                    clip_id,
                    token_id,
                    grantee_key,
                    not_after,
                } if to == from => {
                    return self.open_for(clip_id, token_id, &grantee_key, not_after);
                }
                Output::RejectFetch { to, code } if to == from => {
                    return FetchVerdict::Reject(code);
                }
                _ => {}
            }
        }
        FetchVerdict::Reject(RejectCode::Invalid)
    }

    /// Opens the clip and wraps its file key to the grantee. A store failure answers the
    /// same `Invalid` as every other refusal after verification: the peer learns nothing
    /// about the owner's disk. The stream's stop is made here, on this thread, so a
    /// revocation handled after this verdict reaches it.
    fn open_for(
        &self,
        clip_id: ClipId,
        token_id: TokenId,
        grantee_key: &AgreementPublic,
        not_after: Timestamp,
    ) -> FetchVerdict {
        let opened = self
            .store
            .wrap_key_for(&clip_id, grantee_key)
            .and_then(|wrapped| Ok((self.store.read_ciphertext(&clip_id)?, wrapped)));
        match opened {
            Ok((reader, wrapped)) => FetchVerdict::Serve {
                reader: Box::new(reader),
                wrapped_key: wrapped,
                token_id,
                stop: self
                    .transfers
                    .serve_stop(token_id, clock::deadline_of(self.now(), not_after)),
            },
            Err(err) => {
                tracing::error!(clip = %clip_id, error = %err, "cannot open a granted clip to serve it");
                FetchVerdict::Reject(RejectCode::Invalid)
            }
        }
    }

    fn on_command(&mut self, command: Command) -> Result<CommandReply, CommandError> {
        match command {
            Command::SendRequest {
                target,
                target_label,
                window,
                reason,
                case_number,
                access,
            } => {
                let details = OutgoingDetails {
                    target: target_label,
                    reason: reason.clone(),
                    case_number: case_number.clone(),
                    window,
                };
                let outputs = self
                    .feed(Input::SendRequest {
                        target,
                        window,
                        reason,
                        case_number,
                        access,
                    })
                    .map_err(|err| CommandError::Invalid(err.to_string()))?;
                let request_id = outputs
                    .iter()
                    .find_map(|output| match output {
                        Output::RequestSent { request_id } => Some(*request_id),
                        _ => None,
                    })
                    .ok_or_else(|| CommandError::Failed("the request was not sent".into()))?;
                self.ledger.sent(request_id, details, self.node.now());
                Ok(CommandReply::RequestSent(request_id))
            }
            Command::Approve {
                request_id,
                duration,
                clips,
                retain,
            } => {
                let outputs = self
                    .feed(Input::Approve {
                        request_id,
                        duration,
                        clips,
                        retain,
                    })
                    .map_err(core_error)?;
                outputs
                    .iter()
                    .find_map(|output| match output {
                        Output::TokenIssued { token_id, .. } => Some(*token_id),
                        _ => None,
                    })
                    .map(CommandReply::TokenIssued)
                    .ok_or_else(|| CommandError::Failed("no token was issued".into()))
            }
            Command::Deny {
                request_id,
                message,
            } => {
                self.feed(Input::Deny {
                    request_id,
                    message,
                })
                .map_err(core_error)?;
                self.ledger.denied(&request_id);
                Ok(CommandReply::Done)
            }
            Command::Revoke { token_id } => {
                self.feed(Input::Revoke { token_id }).map_err(core_error)?;
                Ok(CommandReply::Done)
            }
            Command::ListRequests => Ok(CommandReply::Requests(self.ledger.requests_view())),
            Command::ListTokens => Ok(CommandReply::Tokens(self.ledger.tokens_view(self.now()))),
            Command::Fetch { id, export_to } => self.fetch_command(&id, export_to),
        }
    }

    /// `porchlight fetch`: start (or resume) fetching every clip of the named grants, and
    /// export what has arrived.
    fn fetch_command(
        &mut self,
        id: &str,
        export_to: Option<PathBuf>,
    ) -> Result<CommandReply, CommandError> {
        let tokens = if let Ok(token_id) = id.parse::<TokenId>() {
            self.ledger
                .received_token(&token_id)
                .cloned()
                .into_iter()
                .collect::<Vec<_>>()
        } else if let Ok(request_id) = id.parse::<RequestId>() {
            self.ledger.grants_of(&request_id)
        } else {
            return Err(CommandError::Invalid(format!(
                "{id:?} is neither a request id (64 hex digits) nor a token id (32 hex digits)"
            )));
        };
        if tokens.is_empty() {
            return Err(CommandError::NotFound(format!(
                "no grant received for {id}; `porchlight requests list` shows which requests were granted"
            )));
        }
        let mut exported = Vec::new();
        for token in tokens {
            let body = token.body();
            if let Some(dir) = &export_to {
                let files = self
                    .received
                    .export(ExportSelection::Token(body.token_id), dir, &self.vault)
                    .map_err(|err| CommandError::Failed(format!("cannot export: {err}")))?;
                exported.extend(files);
            } else if let Some(secret) = self.node.reply_secret(&body.request_id) {
                let secret = AgreementSecret::from_bytes(*secret.to_bytes());
                self.transfers.fetch_grant(token, secret);
            }
        }
        Ok(CommandReply::Fetched { exported })
    }

    /// Carries out one output of the core.
    fn carry_out(&mut self, output: &Output) {
        match output {
            Output::Send { to, bytes } => self.mesh.send(*to, bytes.clone()),
            Output::PublishArea { cells, bytes } => {
                self.mesh.publish_area(cells.clone(), bytes.clone());
            }
            Output::RequestSent { request_id } => {
                tracing::info!(request = %request_id, "request sent");
            }
            Output::PromptOwner {
                request_id,
                summary,
            } => {
                tracing::info!(request = %request_id, from = %summary.requester_peer, clips = summary.matching_clips.len(), "a request waits for the owner: `porchlight requests list`");
                self.ledger.prompted(*request_id, summary.clone());
            }
            Output::NotifyOwner {
                request_id,
                summary,
                token_id,
            } => {
                tracing::warn!(request = %request_id, token = %token_id, to = %summary.requester_peer, "footage released under a pre-authorization");
                self.ledger
                    .granted_by_rule(*request_id, summary.clone(), *token_id);
            }
            Output::TokenIssued {
                token_id,
                request_id,
                ..
            } => {
                self.ledger.approved(request_id, *token_id);
            }
            Output::Granted { request_id, token } => {
                let body = token.body();
                tracing::info!(request = %request_id, token = %body.token_id, owner = %body.owner, clips = body.clips.len(), "grant received; fetching");
                self.ledger.grant_received(request_id, token.clone());
                if let Some(secret) = self.node.reply_secret(request_id) {
                    let secret = AgreementSecret::from_bytes(*secret.to_bytes());
                    self.transfers.fetch_grant(token.clone(), secret);
                }
            }
            Output::Denied {
                request_id, owner, ..
            } => {
                tracing::info!(request = %request_id, owner = %owner, "request denied");
                self.ledger.denial_received(request_id, *owner);
            }
            Output::DeleteReceived { token_id } => self.delete_received(*token_id),
            Output::PeerMisbehaved { peer, reason } => {
                tracing::warn!(%peer, ?reason, "refused input from a peer (further refusals of this kind are only counted)");
            }
            // Fetch verdicts are answered by `on_fetch_asked`; audit entries were written first.
            Output::ServeFetch { .. } | Output::RejectFetch { .. } | Output::Audit(_) => {}
        }
    }

    /// Store consequences of audited events: clips named by a live grant are kept past
    /// retention until it ends; a revocation lets retention have them again.
    fn on_audit(&mut self, event: &AuditEvent) {
        match event {
            AuditEvent::Granted {
                request_id,
                token_id,
                grantee,
                clips,
                not_after,
                retain,
                ..
            } => {
                for clip in clips {
                    if let Err(err) = self.store.protect(clip, *not_after) {
                        tracing::warn!(clip = %clip, error = %err, "cannot protect a granted clip from retention");
                    }
                }
                self.ledger.token_issued(IssuedToken {
                    token_id: *token_id,
                    request_id: *request_id,
                    owner: self.node.peer_id(),
                    grantee: *grantee,
                    clips: clips.clone(),
                    issued_at: self.node.now(),
                    not_after: *not_after,
                    retain: *retain,
                });
            }
            AuditEvent::GrantEnded {
                token_id,
                why,
                deleted: false,
            } => {
                // Retention was granted: the footage stays, and the owner said so.
                tracing::info!(token = %token_id, ?why, "grant ended; the owner allowed keeping the footage, so it was not deleted");
                if *why == porchlight_core::audit::GrantEnd::Revoked {
                    self.ledger.revoked(token_id);
                }
            }
            AuditEvent::Revoked { token_id, .. } => {
                // No chunk leaves under a revoked token: end the streams it is serving.
                self.transfers.end_served(token_id);
                self.ledger.revoked(token_id);
                for clip in self.ledger.issued_clips(token_id) {
                    let _ = self.store.unprotect(&clip);
                }
            }
            _ => {}
        }
    }

    fn delete_received(&mut self, token_id: TokenId) {
        self.transfers.cancel(&token_id);
        match self.received.delete_token(&token_id) {
            Ok(_) => {
                tracing::info!(token = %token_id, "received footage deleted (grant ended)");
                self.ledger.received_deleted(&token_id);
            }
            Err(err) => {
                tracing::error!(token = %token_id, error = %err, "cannot delete received footage")
            }
        }
    }

    /// Deletes received footage whose grant has ended even if the core no longer knows
    /// the grant (a restart): the received store keeps each token's end.
    fn sweep_received(&mut self) {
        let now = self.now();
        match self.received.expired(now) {
            Ok(expired) => {
                for token_id in expired {
                    self.delete_received(token_id);
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot check received grants for expiry"),
        }
    }
}

fn core_error(err: porchlight_core::CoreError) -> CommandError {
    use porchlight_core::CoreError;
    match err {
        CoreError::UnknownRequest(_) | CoreError::UnknownToken(_) => {
            CommandError::NotFound(err.to_string())
        }
        other => CommandError::Invalid(other.to_string()),
    }
}
