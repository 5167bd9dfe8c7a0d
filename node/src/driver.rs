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
//!
//! A step is all or nothing. Its audit entries and the core's durable state are written
//! before any of its outputs is carried out; if either write fails, the core is told to
//! undo the step ([`Node::undo_step`]), so its audit head stays where the log ends, and
//! none of the step's sends, grants or fetch answers leave the node: the owner's command
//! fails with an error saying so, a fetch is closed unanswered (the grantee retries
//! later), and a peer's frame is as if lost. The owner sees the node as degraded in
//! `porchlight status` ([`crate::health`]) until a write succeeds again; facts that
//! already happened (bytes served, a clip received) are kept and recorded once it does.
//! The order of the writes makes the rare failure after the log was written one a rename
//! can cause: the state file is written and flushed first, then the entries are appended,
//! then the state file is renamed into place. Should that rename fail, the log already
//! holds the step, so the core is not undone; the node takes no further step until the
//! state is saved, and the step's outputs are still withheld (a record without its act,
//! never an act without its record).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use porchlight_core::audit::GrantEnd;
use porchlight_core::{AuditEntry, AuditEvent, CoreError, Input, Node, Output};
use porchlight_protocol::{
    AgreementPublic, AgreementSecret, ClipId, PeerId, RejectCode, RequestId, RequestTarget,
    SigningIdentity, TimeWindow, Timestamp, TokenId, WrappedFileKey,
};
use tokio::sync::oneshot;

use crate::audit_log::AuditLog;
use crate::clock;
use crate::consent_state::{self, PreparedState};
use crate::health::{Component, Health};
use crate::ledger::{IssuedToken, Ledger, OutgoingDetails, RequestsView, TokensView};
use crate::mesh::{Mesh, MeshEvent};
use crate::received::{ExportSelection, ReceivedStore};
use crate::store::{CiphertextReader, Store};
use crate::transfers::{ServeStop, Transfers};

/// How often received footage is checked for expiry independently of the core (which
/// forgets a grant's timer across a restart only if its state file was lost).
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How often a degraded node tries its writes again (retried facts, due timers, a probe).
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// The clock's high-water mark is saved at least this often while time passes with no
/// other change, so a crash followed by a clock set back loses at most this much of it.
const CLOCK_SAVE_EVERY: Duration = Duration::from_secs(60);
/// The free space below which the node takes no step that must be recorded (a few hundred
/// records and a state file). Smaller than what the store keeps free for new clips, so
/// retention makes room for recording long before the consent log runs short.
const DURABLE_RESERVE: u64 = 64 * 1024;
/// Facts (bytes served, clips received) kept while their records cannot be written.
const MAX_DEFERRED: usize = 10_000;

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
    /// The step could not be recorded, so nothing was done (the node is degraded).
    #[error("{0}")]
    Unwritable(String),
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
    /// Close the stream without an answer, so the grantee tries again later rather than
    /// taking it as a refusal: the fetch is over a limit (the core's `Output::CloseFetch`),
    /// or the node cannot record it right now.
    Close,
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
    /// What `porchlight status` shows of the writes below.
    pub health: Health,
    pub recovery: Recovery,
}

/// The driver's book of writes that failed: when to try again, and what to try.
#[derive(Debug)]
pub struct Recovery {
    /// When a degraded node next retries; `None` while every write succeeds.
    retry_at: Option<Instant>,
    /// The log holds a step whose state file could not be put in place: no step is taken
    /// until the state is saved.
    state_behind: bool,
    /// Facts whose records could not be written yet, oldest first.
    deferred: VecDeque<Input>,
    /// The clock last saved with the state, and when.
    saved_clock: Timestamp,
    clock_saved_at: Instant,
}

impl Default for Recovery {
    fn default() -> Recovery {
        Recovery {
            retry_at: None,
            state_behind: false,
            deferred: VecDeque::new(),
            saved_clock: Timestamp::from_unix_millis(0),
            clock_saved_at: Instant::now(),
        }
    }
}

/// Why a step was not taken.
#[derive(Debug)]
enum StepError {
    /// The core refused the command (nothing changed).
    Core(CoreError),
    /// The step could not be made durable, so it was undone (or, with the state behind the
    /// log, not started): the text says what failed, for the owner.
    Unwritable(String),
}

impl From<StepError> for CommandError {
    fn from(err: StepError) -> CommandError {
        match err {
            StepError::Core(err) => core_error(err),
            StepError::Unwritable(message) => CommandError::Unwritable(message),
        }
    }
}

impl Driver {
    /// Runs until [`DriverInput::Stop`] or until every handle is dropped.
    pub fn run(mut self, inputs: mpsc::Receiver<DriverInput>) {
        self.recovery.saved_clock = self.node.now();
        self.sweep_received();
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            // Timers first, so a steady stream of input cannot hold back an expiry. A
            // degraded node retries (timers, deferred facts, a probe) once per RETRY_EVERY,
            // not in a busy loop.
            let now = self.now();
            let retry_due = self.recovery.retry_at.is_none_or(|at| Instant::now() >= at);
            if retry_due {
                self.retry();
                if self.node.poll_timeout().is_some_and(|at| at <= now) {
                    let _ = self.feed(Input::Timeout);
                }
            }
            if Instant::now() >= next_sweep {
                self.sweep_received();
                self.save_clock_if_stale();
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            let mut wait = self
                .node
                .poll_timeout()
                .map(|at| at.duration_since(now))
                .unwrap_or(SWEEP_EVERY)
                .min(next_sweep.saturating_duration_since(Instant::now()));
            if let Some(at) = self.recovery.retry_at {
                wait = wait.max(at.saturating_duration_since(Instant::now()));
                wait = wait.min(RETRY_EVERY);
            }
            match inputs.recv_timeout(wait) {
                Ok(DriverInput::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => self.on_input(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // A clean stop keeps the clock's high-water mark exactly.
        if self.node.now() > self.recovery.saved_clock && !self.recovery.state_behind {
            self.save_state_now();
        }
        tracing::debug!("driver stopped");
    }

    fn now(&self) -> Timestamp {
        clock::now().unwrap_or(self.node.now())
    }

    /// Feeds one input as one step: the core handles it, the step's audit entries and
    /// durable state are written, and only then are its outputs carried out. Returns the
    /// outputs, or why the step was not taken (see the module doc); on `Err` nothing of it
    /// left the node.
    fn feed(&mut self, input: Input) -> Result<Vec<Output>, StepError> {
        if self.recovery.state_behind && !self.save_state_now() {
            return Err(StepError::Unwritable(
                self.unwritable_message(Component::ConsentState),
            ));
        }
        let now = self.now();
        let result = self.node.handle(now, input);
        let mut outputs = Vec::new();
        while let Some(output) = self.node.poll() {
            outputs.push(output);
        }
        if let Err(err) = self.make_durable(&outputs) {
            self.recovery.retry_at = Some(Instant::now() + RETRY_EVERY);
            return Err(err);
        }
        // The step is on disk: its consequences may happen now, in order.
        for output in &outputs {
            if let Output::Audit(entry) = output {
                self.on_audit(&entry.event, entry.at);
            }
        }
        for output in &outputs {
            self.carry_out(output);
        }
        result.map(|()| outputs).map_err(StepError::Core)
    }

    /// Writes the step's durable state and audit entries, in the order the module doc
    /// explains; on failure undoes the step in the core where the log does not hold it.
    fn make_durable(&mut self, outputs: &[Output]) -> Result<(), StepError> {
        let entries: Vec<AuditEntry> = outputs
            .iter()
            .filter_map(|output| match output {
                Output::Audit(entry) => Some(entry.clone()),
                _ => None,
            })
            .collect();
        let generation = self.node.durable_generation();
        let state_changed = generation != self.saved_generation;
        if entries.is_empty() && !state_changed {
            return Ok(());
        }
        if let Err(err) = self.check_room() {
            self.node.undo_step();
            let component = if entries.is_empty() {
                Component::ConsentState
            } else {
                Component::AuditLog
            };
            return Err(self.write_failed(component, &err));
        }
        let prepared: Option<PreparedState> = if state_changed {
            match consent_state::prepare(&self.state_path, &self.node.durable_state()) {
                Ok(prepared) => Some(prepared),
                Err(err) => {
                    self.node.undo_step();
                    return Err(self.write_failed(Component::ConsentState, &err));
                }
            }
        } else {
            None
        };
        if !entries.is_empty() {
            if let Err(err) = self.append_step(&entries) {
                drop(prepared);
                self.node.undo_step();
                return Err(self.write_failed(Component::AuditLog, &err));
            }
            self.recovered(Component::AuditLog);
        }
        if let Some(prepared) = prepared {
            if let Err(err) = prepared.commit() {
                // The log holds the step: the core keeps it, and waits for the state.
                self.recovery.state_behind = true;
                return Err(self.write_failed(Component::ConsentState, &err));
            }
            self.saved_generation = generation;
            self.recovery.saved_clock = self.node.now();
            self.recovery.clock_saved_at = Instant::now();
            self.recovered(Component::ConsentState);
        }
        Ok(())
    }

    /// Appends a step's entries to the audit log, all or none (one write, one flush).
    fn append_step(
        &mut self,
        entries: &[AuditEntry],
    ) -> Result<(), crate::audit_log::AuditLogError> {
        self.audit.append_all(entries, &self.audit_identity)
    }

    /// Marks `component` failing and says, for the owner, what that means.
    fn write_failed(&mut self, component: Component, err: &dyn std::fmt::Display) -> StepError {
        let error = format!("{err:#}");
        if self
            .health
            .failed(component, self.node.now(), error.clone())
        {
            tracing::error!(component = component.label(), %error, "cannot write; the node releases nothing until it can (see `porchlight status`)");
        }
        StepError::Unwritable(self.unwritable_message(component))
    }

    fn unwritable_message(&self, component: Component) -> String {
        let error = self
            .health
            .problems()
            .into_iter()
            .find(|(failing, _)| *failing == component)
            .map(|(_, problem)| problem.error)
            .unwrap_or_else(|| "unknown error".into());
        format!(
            "the node cannot write its {} ({error}), so it did nothing and nothing left this home; free space on the data dir's disk and try again (the node recovers by itself)",
            component.label()
        )
    }

    fn recovered(&mut self, component: Component) {
        if let Some(problem) = self.health.recovered(component) {
            tracing::info!(
                component = component.label(),
                failures = problem.failures,
                "writes succeed again; the node is no longer degraded"
            );
        }
        if !self.health.is_degraded() {
            self.recovery.retry_at = None;
        }
    }

    /// Saves the current durable state at once; `true` on success.
    fn save_state_now(&mut self) -> bool {
        match consent_state::save(&self.state_path, &self.node.durable_state()) {
            Ok(()) => {
                self.saved_generation = self.node.durable_generation();
                self.recovery.saved_clock = self.node.now();
                self.recovery.clock_saved_at = Instant::now();
                self.recovery.state_behind = false;
                self.recovered(Component::ConsentState);
                true
            }
            Err(err) => {
                let _ = self.write_failed(Component::ConsentState, &err);
                false
            }
        }
    }

    /// Keeps the clock's high-water mark on disk while time passes with no other change.
    fn save_clock_if_stale(&mut self) {
        if self.health.is_degraded() || self.recovery.clock_saved_at.elapsed() < CLOCK_SAVE_EVERY {
            return;
        }
        if self.node.now() > self.recovery.saved_clock {
            self.save_state_now();
        }
    }

    /// What a degraded node tries once per [`RETRY_EVERY`]: the state if it is behind the
    /// log, then the facts kept back, then (if nothing else wrote) a probe of the disk, so
    /// that `status` clears once space is back even when no step comes.
    fn retry(&mut self) {
        if self.recovery.retry_at.is_none() && self.recovery.deferred.is_empty() {
            return;
        }
        if self.recovery.state_behind && !self.save_state_now() {
            self.recovery.retry_at = Some(Instant::now() + RETRY_EVERY);
            return;
        }
        while let Some(input) = self.recovery.deferred.pop_front() {
            if !self.try_fact(input.clone()) {
                self.recovery.deferred.push_front(input);
                return;
            }
        }
        if self.health.is_degraded() {
            // The log itself is written only with a real step; until one comes, room on its
            // disk for a few steps' records stands in for a successful append.
            let state_ok = self.save_state_now();
            if self.audit_log_has_room() {
                self.recovered(Component::AuditLog);
            }
            if !state_ok || self.health.is_degraded() {
                self.recovery.retry_at = Some(Instant::now() + RETRY_EVERY);
            }
        }
    }

    /// Whether the audit log's disk has room for a few steps of records (and no injected
    /// fault says otherwise).
    fn audit_log_has_room(&self) -> bool {
        crate::faults::check(crate::faults::FaultPoint::AuditAppend).is_ok()
            && self.check_room().is_ok()
    }

    /// Refuses a step that must write when the data dir's disk has less than
    /// [`DURABLE_RESERVE`] free. Without the margin a nearly full disk would let a few
    /// records through (into the slack of a page the log already holds) and fail the next
    /// at random; with it, the node stops recording, and so releasing, at a point it picks.
    fn check_room(&self) -> std::io::Result<()> {
        let dir = self
            .state_path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let free = fs2::available_space(&dir)?;
        if free < DURABLE_RESERVE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "{free} bytes free on the disk of {}, below the {DURABLE_RESERVE} the node keeps for its records",
                    dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// Records a fact the shell saw (bytes that left, a clip that arrived), now or, if the
    /// log cannot be written, once it can: such a record is never dropped.
    fn record_fact(&mut self, input: Input) {
        // Behind facts already waiting, to keep their order.
        if !self.recovery.deferred.is_empty() || !self.try_fact(input.clone()) {
            self.defer(input);
        }
    }

    /// One attempt at [`Driver::record_fact`]; `false` if it must wait.
    fn try_fact(&mut self, input: Input) -> bool {
        let received = match &input {
            Input::ClipReceived { token_id, .. } => Some(*token_id),
            _ => None,
        };
        match self.feed(input) {
            Ok(_) => true,
            Err(StepError::Unwritable(_)) => false,
            Err(StepError::Core(err)) => {
                if let Some(token_id) = received {
                    // The grant ended while the clip was in flight: it must not stay.
                    tracing::info!(token = %token_id, error = %err, "a clip arrived after its grant ended; deleting it");
                    self.delete_received(token_id);
                }
                true
            }
        }
    }

    /// Keeps a fact to record once writes succeed.
    fn defer(&mut self, input: Input) {
        if self.recovery.deferred.len() >= MAX_DEFERRED {
            tracing::error!("too many facts waiting for the audit log; dropping the oldest");
            self.recovery.deferred.pop_front();
        }
        self.recovery.deferred.push_back(input);
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
                let input = Input::FetchCompleted {
                    to,
                    token_id,
                    clip_id,
                    bytes,
                };
                // The bytes left already: their record waits for the log, never lost.
                self.record_fact(input);
            }
            DriverInput::FetchCut {
                to,
                token_id,
                clip_id,
                bytes,
                why,
            } => {
                // Like a completed fetch: the bytes left, so their record is never dropped.
                self.record_fact(Input::FetchCut {
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
                let input = Input::ClipReceived {
                    token_id,
                    clip_id,
                    bytes,
                };
                self.record_fact(input);
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
            Err(StepError::Unwritable(_)) => return FetchVerdict::Close,
            Err(StepError::Core(_)) => return FetchVerdict::Reject(RejectCode::Invalid),
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
                Output::CloseFetch { to } if to == from => return FetchVerdict::Close,
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
                    .map_err(|err| match err {
                        StepError::Core(err) => CommandError::Invalid(err.to_string()),
                        unwritable => unwritable.into(),
                    })?;
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
                    .map_err(CommandError::from)?;
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
                .map_err(CommandError::from)?;
                self.ledger.denied(&request_id);
                Ok(CommandReply::Done)
            }
            Command::Revoke { token_id } => {
                self.feed(Input::Revoke { token_id })
                    .map_err(CommandError::from)?;
                Ok(CommandReply::Done)
            }
            Command::ListRequests => Ok(CommandReply::Requests(
                self.ledger.requests_view(self.now()),
            )),
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
        let token_ids = if let Ok(token_id) = id.parse::<TokenId>() {
            vec![token_id]
        } else if let Ok(request_id) = id.parse::<RequestId>() {
            self.ledger.grant_ids_of(&request_id)
        } else {
            return Err(CommandError::Invalid(format!(
                "{id:?} is neither a request id (64 hex digits) nor a token id (32 hex digits)"
            )));
        };
        // A grant that ended with its footage deleted has nothing to export: say what
        // happened rather than "nothing was received". Asked to fetch, the node still asks
        // the owner while it holds the token (the owner's refusal is recorded on both sides).
        let ended: Vec<String> = token_ids
            .iter()
            .filter_map(|token_id| self.ledger.ended_refusal(token_id))
            .collect();
        let tokens: Vec<_> = token_ids
            .iter()
            .filter(|token_id| export_to.is_none() || self.ledger.ended_refusal(token_id).is_none())
            .filter_map(|token_id| self.ledger.received_token(token_id).cloned())
            .collect();
        if tokens.is_empty() && !ended.is_empty() {
            return Err(CommandError::NotFound(ended.join("; ")));
        }
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
                request_id,
                owner,
                message,
            } => {
                tracing::info!(request = %request_id, owner = %owner, message = ?message, "request denied");
                self.ledger
                    .denial_received(request_id, *owner, message.clone());
            }
            Output::DeleteReceived { token_id } => self.delete_received(*token_id),
            Output::PeerMisbehaved { peer, reason } => {
                tracing::warn!(%peer, ?reason, "refused input from a peer (further refusals of this kind are only counted)");
            }
            // Fetch verdicts are answered by `on_fetch_asked`; audit entries were written first.
            Output::ServeFetch { .. }
            | Output::RejectFetch { .. }
            | Output::CloseFetch { .. }
            | Output::Audit(_) => {}
        }
    }

    /// Store consequences of audited events: clips named by a live grant are kept past
    /// retention until it ends; a revocation lets retention have them again.
    fn on_audit(&mut self, event: &AuditEvent, at: Timestamp) {
        if let AuditEvent::GrantEnded {
            token_id,
            why,
            deleted,
        } = event
        {
            self.ledger.grant_ended(token_id, *why, at, *deleted);
        }
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
