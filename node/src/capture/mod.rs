//! Capture: cameras in, self-contained in-memory MP4 [`Segment`]s out.
//!
//! This module owns everything between a camera and the store: parsing camera specs, the
//! GStreamer pipelines that record and encode H.264, cutting the stream into clips that
//! each start on a keyframe, muxing each clip into a standalone MP4 *in memory*, and
//! supervising each camera (restart with backoff, observable state). It deliberately does
//! not seal or store anything: a [`Segment`] is plaintext, and the receiver (the store)
//! seals it before a single byte reaches the disk.
//!
//! **Invariant: plaintext never touches the disk.** No element here can open a file for
//! writing: no `filesink`, no `splitmuxsink` default sink, no `mp4mux faststart` (it
//! spills to a temp file), no `moov-recovery-file`. Muxing writes into a zeroizing memory
//! buffer (see [`mux`]); `node/tests/capture.rs` runs a camera with an empty TMPDIR and
//! working directory and checks they stay empty.
//!
//! Shape (see the submodules for each piece's rationale):
//!
//! ```text
//! camera_spec   "porch=test:640x480@10"  ->  CameraSpec (validated)
//! pipeline      source ! (encode) ! h264parse ! appsink        (GStreamer's threads)
//! cutter        frames -> keyframe-aligned clips + wall-clock start/end
//! mux           clip -> appsrc ! mp4mux ! in-memory file -> MP4 bytes
//! supervisor    one thread per camera: run, watch the bus, retry with backoff, deliver
//! ```
//!
//! Why cut clips ourselves instead of `splitmuxsink`: splitmuxsink writes through a sink
//! that it resets per fragment and, with `mp4mux`, needs a seekable sink or a fragmented
//! MP4 (whose `moov` carries no duration, which some players show as 0:00). Cutting on the
//! appsink keeps the wall-clock times exact and contiguous, and muxing each clip in its own
//! short pipeline gives a classic MP4 with a full index, written into memory.

mod camera_spec;
mod cutter;
mod mux;
mod pipeline;
mod supervisor;

use std::sync::OnceLock;

use gstreamer as gst;

pub use crate::recording::Segment;
pub use camera_spec::{
    ACCEPTED_FORMS, CameraName, CameraSpec, ClipLength, DEFAULT_TEST_MODE, RawCameraArg, RtspUrl,
    Source, SpecError, TestMode, parse_cameras,
};
pub use supervisor::{
    Backoff, CameraState, CameraStatus, CaptureOptions, CaptureSupervisor, StatusHandle,
};

/// A capture failure that is not about the camera spec's text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// GStreamer itself could not start.
    #[error(
        "could not initialize gstreamer: {0}; is libgstreamer1.0 installed? \
         (scripts/install-deps.sh installs it)"
    )]
    Init(String),
    /// A GStreamer element the cameras need is not installed.
    #[error(
        "gstreamer element '{element}' is missing; install {package} \
         (scripts/install-deps.sh installs it)"
    )]
    MissingElement {
        /// The element factory name.
        element: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A camera's pipeline could not be assembled.
    #[error("camera {camera}: {reason}")]
    Pipeline {
        /// The camera's name.
        camera: String,
        /// What went wrong.
        reason: String,
    },
    /// A clip could not be muxed into an MP4.
    #[error("camera {camera}: could not mux a clip in memory: {reason}")]
    Mux {
        /// The camera's name.
        camera: String,
        /// What went wrong.
        reason: String,
    },
    /// The OS would not start a camera's thread.
    #[error("could not start the capture thread of camera {camera}: {source}")]
    Thread {
        /// The camera's name.
        camera: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A camera's thread panicked: a bug in porchlight.
    #[error("the capture thread of camera {camera} panicked; this is a bug, please report it")]
    ThreadPanicked {
        /// The camera's name.
        camera: String,
    },
}

/// Initializes GStreamer once per process; later calls return the first call's result.
pub fn init() -> Result<(), CaptureError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|err| err.to_string()))
        .clone()
        .map_err(CaptureError::Init)
}

/// Creates an element, naming the package to install when it is missing.
pub(crate) fn make_element(factory: &'static str) -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| missing(factory))
}

/// Fails, naming the package to install, unless every GStreamer element a camera of
/// `source` needs is installed (call [`init`] first).
pub fn check_elements(source: &Source) -> Result<(), CaptureError> {
    require_elements(&supervisor::elements_for(source))
}

/// Fails unless every element in `factories` is installed.
pub(crate) fn require_elements(factories: &[&'static str]) -> Result<(), CaptureError> {
    match factories
        .iter()
        .find(|factory| gst::ElementFactory::find(factory).is_none())
    {
        Some(factory) => Err(missing(factory)),
        None => Ok(()),
    }
}

fn missing(element: &'static str) -> CaptureError {
    CaptureError::MissingElement {
        element,
        package: package_of(element),
    }
}

/// The Debian package that ships an element.
fn package_of(element: &str) -> &'static str {
    match element {
        "capsfilter" | "filesrc" => "libgstreamer1.0-0",
        "videotestsrc" | "videoconvert" | "appsink" | "appsrc" | "decodebin" => {
            "gstreamer1.0-plugins-base"
        }
        "clockoverlay" => "gstreamer1.0-x",
        "v4l2src" | "rtspsrc" | "rtph264depay" | "mp4mux" => "gstreamer1.0-plugins-good",
        "h264parse" => "gstreamer1.0-plugins-bad",
        "x264enc" => "gstreamer1.0-plugins-ugly",
        _ => "the gstreamer1.0-plugins-* packages",
    }
}
