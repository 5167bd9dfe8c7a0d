//! Camera supervision: one thread per camera that runs its pipeline, restarts it with
//! backoff when it fails, delivers its segments and publishes its state.
//!
//! This module owns the life cycle of cameras, not their pipelines (see [`super::pipeline`])
//! or their muxing (see [`super::mux`]). Each camera is independent: its own thread, its
//! own event channel, its own backoff, so one camera that is unplugged or whose RTSP
//! stream drops never stalls the others.
//!
//! A camera thread is a small event loop over one channel that carries everything the
//! camera needs to react to, in order: bus messages (forwarded by a bus sync handler and
//! tagged with the pipeline's generation, so messages from a torn-down pipeline are
//! ignored), frames and clips from the streaming thread, and the stop request. Finished
//! clips are muxed on the camera thread, off GStreamer's streaming threads.
//!
//! Whatever ends a pipeline run (an error, an EOS from a dropped stream, a stall, a stop),
//! the clip in progress is closed and delivered after the pipeline reaches `Null`: footage
//! up to the failure is kept. A graceful stop sends EOS first so the encoder drains.
//!
//! State is published through a [`StatusHandle`] (a shared snapshot) for `status`; specs in
//! it are redacted, and errors come from GStreamer elements that never saw a password.

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use porchlight_protocol::Timestamp;
use tracing::{debug, error, info, warn};

use super::camera_spec::{CameraSpec, ClipLength, Source};
use super::pipeline::{self, CameraPipeline, EncodedClip, Tap, TapEvent};
use super::{CaptureError, mux, require_elements};
use crate::recording::Segment;

/// How often a camera thread wakes up without events, to check for stalls.
const TICK: Duration = Duration::from_millis(500);
/// A running camera that produces no frame for this long is restarted.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful stop waits for the pipeline to drain after EOS.
const EOS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a file camera may take to preroll before it is declared failed.
const PREROLL_TIMEOUT: Duration = Duration::from_secs(20);

/// Restart delays: `initial`, doubling per failed attempt, capped at `max`, and back to
/// `initial` after a clip is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

impl Default for Backoff {
    /// 1 s doubling to 60 s.
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// How every camera of a node records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Length of each clip.
    pub clip_length: ClipLength,
    /// Restart delays for failing cameras.
    pub backoff: Backoff,
}

/// What a camera is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraStatus {
    /// Its pipeline is starting; no frame yet.
    Starting,
    /// Frames are flowing.
    Recording,
    /// It failed and will be retried.
    Retrying {
        /// Consecutive failed attempts so far (1 after the first failure).
        attempt: u32,
        /// When the next attempt starts.
        next_retry_at: Timestamp,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// It was stopped.
    Stopped,
}

/// One camera's state, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraState {
    /// The camera's name.
    pub name: String,
    /// Its spec, with any password redacted.
    pub spec: String,
    /// What it is doing.
    pub status: CameraStatus,
    /// Segments delivered since the supervisor started.
    pub clips_delivered: u64,
    /// Wall-clock end of the last delivered segment.
    pub last_clip_at: Option<Timestamp>,
}

/// A shared, cloneable view of every camera's state.
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<Mutex<Vec<CameraState>>>);

impl StatusHandle {
    /// Every camera's state, in the order the cameras were given.
    pub fn snapshot(&self) -> Vec<CameraState> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One camera's state by name.
    pub fn camera(&self, name: &str) -> Option<CameraState> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|camera| camera.name == name)
            .cloned()
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut CameraState)) {
        let mut cameras = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(camera) = cameras.get_mut(index) {
            change(camera);
        }
    }
}

/// The callback that receives segments, shared by every camera thread.
type Deliver = Arc<dyn Fn(Segment) + Send + Sync>;

/// Records several cameras, each on its own thread, until stopped.
///
/// Dropping the supervisor stops it too; [`CaptureSupervisor::stop`] additionally reports
/// a camera thread that panicked.
pub struct CaptureSupervisor {
    workers: Vec<Worker>,
    status: StatusHandle,
}

impl fmt::Debug for CaptureSupervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureSupervisor")
            .field("cameras", &self.status.snapshot())
            .finish()
    }
}

struct Worker {
    camera: String,
    control: mpsc::Sender<Event>,
    thread: Option<JoinHandle<()>>,
}

/// Everything a camera thread reacts to, in one ordered channel.
enum Event {
    Bus {
        generation: u64,
        message: gst::Message,
    },
    Tap {
        generation: u64,
        event: TapEvent,
    },
    Stop,
}

impl CaptureSupervisor {
    /// Starts every camera; segments go to `segments`. With no cameras (`none`), the
    /// supervisor idles.
    pub fn start(
        cameras: Vec<CameraSpec>,
        options: CaptureOptions,
        segments: mpsc::Sender<Segment>,
    ) -> Result<CaptureSupervisor, CaptureError> {
        CaptureSupervisor::start_with(cameras, options, move |segment: Segment| {
            let camera = segment.camera.clone();
            if segments.send(segment).is_err() {
                error!(camera = %camera, "the segment receiver is gone; a clip was dropped");
            }
        })
    }

    /// Starts every camera; each segment is passed to `deliver` on its camera's thread.
    pub fn start_with(
        cameras: Vec<CameraSpec>,
        options: CaptureOptions,
        deliver: impl Fn(Segment) + Send + Sync + 'static,
    ) -> Result<CaptureSupervisor, CaptureError> {
        super::init()?;
        for camera in &cameras {
            require_elements(&elements_for(camera.source()))?;
        }
        let status = StatusHandle(Arc::new(Mutex::new(
            cameras
                .iter()
                .map(|camera| CameraState {
                    name: camera.name().to_string(),
                    spec: camera.redacted(),
                    status: CameraStatus::Starting,
                    clips_delivered: 0,
                    last_clip_at: None,
                })
                .collect(),
        )));
        let deliver: Deliver = Arc::new(deliver);
        let mut supervisor = CaptureSupervisor {
            workers: Vec::with_capacity(cameras.len()),
            status: status.clone(),
        };
        for (index, spec) in cameras.into_iter().enumerate() {
            let camera = spec.name().to_string();
            let (control, events) = mpsc::channel();
            let runner = CameraRunner {
                spec,
                options,
                index,
                status: status.clone(),
                deliver: Arc::clone(&deliver),
                events_tx: control.clone(),
                events,
                generation: 0,
                attempt: 0,
            };
            let thread = std::thread::Builder::new()
                .name(format!("capture-{camera}"))
                .spawn(move || runner.run())
                .map_err(|source| CaptureError::Thread {
                    camera: camera.clone(),
                    source,
                })?;
            supervisor.workers.push(Worker {
                camera,
                control,
                thread: Some(thread),
            });
        }
        Ok(supervisor)
    }

    /// Every camera's current state.
    pub fn status(&self) -> Vec<CameraState> {
        self.status.snapshot()
    }

    /// A handle that reads the cameras' state from elsewhere (the HTTP API).
    pub fn status_handle(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Stops every camera: each finishes and delivers its clip in progress, then its
    /// pipeline is shut down. Returns once every camera thread has ended.
    pub fn stop(mut self) -> Result<(), CaptureError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), CaptureError> {
        for worker in &self.workers {
            // A thread that already ended has dropped its receiver; nothing to stop.
            let _ = worker.control.send(Event::Stop);
        }
        let mut result = Ok(());
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take()
                && thread.join().is_err()
            {
                error!(camera = %worker.camera, "capture thread panicked");
                result = Err(CaptureError::ThreadPanicked {
                    camera: worker.camera.clone(),
                });
            }
        }
        result
    }
}

impl Drop for CaptureSupervisor {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The elements a source needs, checked before any thread starts.
pub(crate) fn elements_for(source: &Source) -> Vec<&'static str> {
    let mut elements = vec!["capsfilter", "h264parse", "appsink", "appsrc", "mp4mux"];
    let encoder = ["videoconvert", "x264enc"];
    match source {
        Source::Test(_) => elements.extend(["videotestsrc"].iter().chain(&encoder)),
        Source::V4l2 { .. } => elements.extend(["v4l2src", "decodebin"].iter().chain(&encoder)),
        Source::File { .. } => elements.extend(["filesrc", "decodebin"].iter().chain(&encoder)),
        Source::Rtsp(_) => elements.extend(["rtspsrc", "rtph264depay"]),
    }
    elements
}

/// One line for `status` from a GStreamer error: its message, the element it came from,
/// and for a missing decoder which one and where to get it. The debug text is not shown
/// otherwise (it holds source paths); elements never see RTSP passwords, so neither does
/// this line.
fn describe_error(err: &gst::message::Error, source: &str) -> String {
    let mut line = format!("{} ({})", err.error(), element_role(source));
    if err.error().matches(gst::CoreError::MissingPlugin) {
        let missing = err
            .debug()
            .and_then(|debug| {
                debug
                    .lines()
                    .find(|l| l.starts_with("Missing decoder:"))
                    .map(|l| l.split(" (").next().unwrap_or(l).trim().to_owned())
            })
            .unwrap_or_default();
        if !missing.is_empty() {
            line.push_str(&format!("; {}", missing.to_lowercase()));
        }
        line.push_str(
            "; install gstreamer1.0-libav for more formats, or convert the video to h264",
        );
    }
    line
}

/// What a pipeline element is to the owner: GStreamer names elements after their factory
/// and a counter (`filesrc0`, `v4l2src2`), which says nothing to a person.
fn element_role(element: &str) -> &'static str {
    let factory = element.trim_end_matches(|c: char| c.is_ascii_digit());
    match factory {
        "filesrc" => "reading the video file",
        "v4l2src" => "opening the video device",
        "rtspsrc" | "rtph264depay" | "udpsrc" | "rtpbin" | "rtpjitterbuffer" => {
            "receiving the RTSP stream"
        }
        "videotestsrc" | "clockoverlay" => "the test picture",
        "decodebin" | "qtdemux" | "matroskademux" | "typefind" | "multiqueue" => {
            "reading the video inside the file or stream"
        }
        "videoconvert" | "videoscale" | "capsfilter" | "x264enc" => "encoding the video",
        "h264parse" => "reading the H.264 stream",
        "appsink" => "handing clips to the recorder",
        _ => "the video pipeline",
    }
}

/// How one pipeline run ended.
enum Outcome {
    Stopped,
    Failed(String),
}

/// Bus message handling verdict.
enum Flow {
    Continue,
    Failed(String),
}

/// One camera's thread.
struct CameraRunner {
    spec: CameraSpec,
    options: CaptureOptions,
    index: usize,
    status: StatusHandle,
    deliver: Deliver,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    generation: u64,
    /// Consecutive failures since the last delivered clip.
    attempt: u32,
}

impl CameraRunner {
    fn camera(&self) -> &str {
        self.spec.name().as_str()
    }

    fn run(mut self) {
        info!(camera = %self.camera(), spec = %self.spec.redacted(), "camera starting");
        loop {
            self.set_status(CameraStatus::Starting);
            match self.run_once() {
                Outcome::Stopped => break,
                Outcome::Failed(reason) => {
                    self.attempt = self.attempt.saturating_add(1);
                    let delay = self.options.backoff.delay(self.attempt);
                    let next_retry_at = crate::clock::now()
                        .unwrap_or(Timestamp::EPOCH)
                        .saturating_add(delay);
                    warn!(
                        camera = %self.camera(),
                        attempt = self.attempt,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %reason,
                        "camera failed; retrying"
                    );
                    self.set_status(CameraStatus::Retrying {
                        attempt: self.attempt,
                        next_retry_at,
                        last_error: reason,
                    });
                    if self.sleep_unless_stopped(delay) {
                        break;
                    }
                }
            }
        }
        self.set_status(CameraStatus::Stopped);
        info!(camera = %self.camera(), "camera stopped");
    }

    /// Waits `delay`; true when a stop arrived meanwhile.
    fn sleep_unless_stopped(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(remaining) {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return true,
                Ok(Event::Tap {
                    event: TapEvent::Clip(clip),
                    ..
                }) => self.deliver(clip, true),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// Builds, runs and tears down one pipeline.
    fn run_once(&mut self) -> Outcome {
        self.generation += 1;
        let generation = self.generation;
        let tap = Arc::new(Mutex::new(Tap::default()));
        let tx = self.events_tx.clone();
        let built = pipeline::build(
            &self.spec,
            self.options.clip_length,
            Arc::clone(&tap),
            move |event| {
                // The camera thread outlives every pipeline, so this only fails while the
                // supervisor is being torn down.
                let _ = tx.send(Event::Tap { generation, event });
            },
        );
        let CameraPipeline { pipeline, eos_pad } = match built {
            Ok(built) => built,
            Err(err) => return Outcome::Failed(err.to_string()),
        };
        let Some(bus) = pipeline.bus() else {
            return Outcome::Failed("the pipeline has no bus".to_owned());
        };
        let tx = self.events_tx.clone();
        bus.set_sync_handler(move |_, message| {
            let _ = tx.send(Event::Bus {
                generation,
                message: message.clone(),
            });
            gst::BusSyncReply::Drop
        });

        let mut outcome = self.drive(&pipeline, &eos_pad, &tap, generation);

        // Null joins the streaming threads: no more frames or clips from this pipeline.
        if pipeline.set_state(gst::State::Null).is_err() {
            warn!(camera = %self.camera(), "the pipeline did not shut down cleanly");
        }
        bus.unset_sync_handler();
        if self.drain_pending() {
            outcome = Outcome::Stopped;
        }
        let partial = tap
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cutter
            .as_mut()
            .and_then(|cutter| cutter.finish());
        if let Some(clip) = partial {
            self.deliver(clip, false);
        }
        outcome
    }

    /// Starts the pipeline and reacts to its events until it fails or a stop arrives.
    fn drive(
        &mut self,
        pipeline: &gst::Pipeline,
        eos_pad: &gst::Pad,
        tap: &Mutex<Tap>,
        generation: u64,
    ) -> Outcome {
        let loops = matches!(self.spec.source(), Source::File { .. });
        if loops && let Some(outcome) = self.preroll_for_looping(pipeline, generation) {
            return outcome;
        }
        if pipeline.set_state(gst::State::Playing).is_err() {
            return Outcome::Failed(self.explain_start_failure(generation));
        }
        let started = Instant::now();
        loop {
            match self.events.recv_timeout(TICK) {
                Ok(Event::Stop) => return self.finish_gracefully(eos_pad, tap, generation),
                Ok(Event::Tap {
                    generation: g,
                    event,
                }) => match event {
                    TapEvent::FirstFrame if g == generation => {
                        info!(camera = %self.camera(), "camera recording");
                        self.set_status(CameraStatus::Recording);
                    }
                    TapEvent::FirstFrame => {}
                    TapEvent::Clip(clip) => self.deliver(clip, true),
                },
                Ok(Event::Bus {
                    generation: g,
                    message,
                }) if g == generation => {
                    if let Flow::Failed(reason) = self.on_bus(pipeline, &message, loops) {
                        return Outcome::Failed(reason);
                    }
                }
                Ok(Event::Bus { .. }) => {}
                Err(RecvTimeoutError::Timeout) => {
                    let last = tap
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .last_frame_at;
                    if last.unwrap_or(started).elapsed() > STALL_TIMEOUT {
                        return Outcome::Failed(format!(
                            "no video for {} s; the camera stalled",
                            STALL_TIMEOUT.as_secs()
                        ));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Outcome::Stopped,
            }
        }
    }

    /// File cameras loop by segment seeks: preroll in PAUSED, then a flushing segment seek
    /// to the start, so the end of the file posts SEGMENT_DONE instead of EOS. `None` when
    /// ready to play.
    fn preroll_for_looping(
        &mut self,
        pipeline: &gst::Pipeline,
        generation: u64,
    ) -> Option<Outcome> {
        if pipeline.set_state(gst::State::Paused).is_err() {
            return Some(Outcome::Failed(self.explain_start_failure(generation)));
        }
        let deadline = Instant::now() + PREROLL_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(remaining) {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    return Some(Outcome::Stopped);
                }
                Ok(Event::Bus {
                    generation: g,
                    message,
                }) if g == generation => match message.view() {
                    gst::MessageView::AsyncDone(_)
                        if message.src() == Some(pipeline.upcast_ref()) =>
                    {
                        break;
                    }
                    _ => {
                        if let Flow::Failed(reason) = self.on_bus(pipeline, &message, false) {
                            return Some(Outcome::Failed(reason));
                        }
                    }
                },
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Some(Outcome::Failed(format!(
                        "the file did not start playing within {} s",
                        PREROLL_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        let seek = pipeline.seek(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT,
            gst::SeekType::Set,
            gst::ClockTime::ZERO,
            gst::SeekType::None,
            gst::ClockTime::NONE,
        );
        match seek {
            Ok(()) => None,
            Err(_) => Some(Outcome::Failed(
                "the file cannot be seeked, so it cannot loop; remux it (e.g. ffmpeg -i IN -c copy OUT.mp4)"
                    .to_owned(),
            )),
        }
    }

    /// Reacts to one bus message of the current pipeline.
    fn on_bus(&self, pipeline: &gst::Pipeline, message: &gst::Message, loops: bool) -> Flow {
        let source = message
            .src()
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| "the pipeline".to_owned());
        match message.view() {
            gst::MessageView::Error(err) => {
                debug!(
                    camera = %self.camera(),
                    source = %source,
                    debug = ?err.debug(),
                    "pipeline error details"
                );
                Flow::Failed(describe_error(err, &source))
            }
            gst::MessageView::Eos(_) => Flow::Failed(
                "the video stream ended (camera unplugged or stream dropped)".to_owned(),
            ),
            gst::MessageView::SegmentDone(_) if loops => {
                let seek = pipeline.seek(
                    1.0,
                    gst::SeekFlags::SEGMENT,
                    gst::SeekType::Set,
                    gst::ClockTime::ZERO,
                    gst::SeekType::None,
                    gst::ClockTime::NONE,
                );
                match seek {
                    Ok(()) => {
                        debug!(camera = %self.camera(), "file looped");
                        Flow::Continue
                    }
                    Err(_) => Flow::Failed("could not loop the file back to its start".to_owned()),
                }
            }
            gst::MessageView::Warning(warning) => {
                warn!(camera = %self.camera(), source = %source, "{}", warning.error());
                Flow::Continue
            }
            gst::MessageView::Latency(_) => {
                let _ = pipeline.recalculate_latency();
                Flow::Continue
            }
            gst::MessageView::ClockLost(_) => {
                // The standard recovery: pause and play again to pick a new clock.
                let _ = pipeline.set_state(gst::State::Paused);
                match pipeline.set_state(gst::State::Playing) {
                    Ok(_) => Flow::Continue,
                    Err(_) => Flow::Failed("lost the pipeline clock".to_owned()),
                }
            }
            _ => Flow::Continue,
        }
    }

    /// A state change failed; the reason usually follows as an error on the bus.
    fn explain_start_failure(&mut self, generation: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(remaining) {
                Ok(Event::Bus {
                    generation: g,
                    message,
                }) if g == generation => {
                    if let gst::MessageView::Error(err) = message.view() {
                        let source = message
                            .src()
                            .map(|s| s.name().to_string())
                            .unwrap_or_else(|| "the pipeline".to_owned());
                        return describe_error(err, &source);
                    }
                }
                Ok(Event::Stop) => {
                    // Keep the stop for the caller's next wait.
                    let _ = self.events_tx.send(Event::Stop);
                    return "stopped while starting".to_owned();
                }
                Ok(_) => {}
                Err(_) => return "the pipeline would not start".to_owned(),
            }
        }
    }

    /// Sends EOS so the encoder drains, and waits for it to reach the sink.
    fn finish_gracefully(
        &mut self,
        eos_pad: &gst::Pad,
        tap: &Mutex<Tap>,
        generation: u64,
    ) -> Outcome {
        let flowing = tap
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_frame_at
            .is_some();
        if !flowing {
            return Outcome::Stopped;
        }
        if !eos_pad.send_event(gst::event::Eos::new()) {
            warn!(camera = %self.camera(), "the pipeline refused EOS; cutting the clip at its last frame");
            return Outcome::Stopped;
        }
        let deadline = Instant::now() + EOS_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(remaining) {
                Ok(Event::Bus {
                    generation: g,
                    message,
                }) if g == generation => match message.view() {
                    gst::MessageView::Eos(_) => return Outcome::Stopped,
                    gst::MessageView::Error(err) => {
                        warn!(camera = %self.camera(), "error while stopping: {}", err.error());
                        return Outcome::Stopped;
                    }
                    _ => {}
                },
                Ok(Event::Tap {
                    event: TapEvent::Clip(clip),
                    ..
                }) => self.deliver(clip, true),
                Ok(_) => {}
                Err(_) => {
                    warn!(
                        camera = %self.camera(),
                        "the pipeline did not drain within {} s; cutting the clip at its last frame",
                        EOS_TIMEOUT.as_secs()
                    );
                    return Outcome::Stopped;
                }
            }
        }
    }

    /// Delivers clips still queued after teardown; true if a stop was among the events.
    fn drain_pending(&mut self) -> bool {
        let mut stop = false;
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Stop => stop = true,
                Event::Tap {
                    event: TapEvent::Clip(clip),
                    ..
                } => self.deliver(clip, true),
                _ => {}
            }
        }
        stop
    }

    /// Muxes a clip and hands the segment over. A full clip (cut by the cutter, not the
    /// remainder closed at teardown) proves the camera healthy and resets the backoff, so
    /// a stream that drops after every second still backs off.
    fn deliver(&mut self, clip: EncodedClip, full: bool) {
        let camera = self.camera().to_owned();
        let mp4 = match mux::mux_clip(&camera, &clip) {
            Ok(mp4) => mp4,
            Err(err) => {
                error!(camera = %camera, error = %err, "clip lost");
                return;
            }
        };
        debug!(
            camera = %camera,
            start = %clip.start,
            duration_ms = u64::try_from(clip.duration().as_millis()).unwrap_or(u64::MAX),
            frames = clip.frames.len(),
            bytes = mp4.len(),
            "clip ready"
        );
        let end = clip.end;
        let segment = Segment {
            camera,
            start: clip.start,
            end,
            mp4,
        };
        // Drop the encoded frames before handing over: one plaintext copy at a time.
        drop(clip);
        if full {
            self.attempt = 0;
        }
        self.status.update(self.index, |state| {
            state.clips_delivered += 1;
            state.last_clip_at = Some(end);
        });
        (self.deliver)(segment);
    }

    fn set_status(&self, status: CameraStatus) {
        self.status
            .update(self.index, |state| state.status = status);
    }
}

#[cfg(test)]
mod tests {
    use super::element_role;

    #[test]
    fn elements_are_named_by_what_they_do_for_the_camera() {
        assert_eq!(element_role("filesrc0"), "reading the video file");
        assert_eq!(element_role("v4l2src12"), "opening the video device");
        assert_eq!(element_role("rtspsrc1"), "receiving the RTSP stream");
        assert_eq!(
            element_role("decodebin0"),
            "reading the video inside the file or stream"
        );
        assert_eq!(element_role("the pipeline"), "the video pipeline");
    }
}
