//! Building one camera's GStreamer pipeline, from its source to the `appsink` tap.
//!
//! This module owns the element graph of a camera and the streaming-thread side of capture:
//! turning each encoded sample into a [`Frame`] for the [`Cutter`] and handing finished
//! clips to the supervisor. It does not decide when to restart (the supervisor does) and
//! does not mux (each clip is muxed in memory by [`super::mux`]).
//!
//! Every source ends in the same tail, so the cutter always sees H.264 access units in
//! `avc` stream format with their SPS/PPS in the caps:
//!
//! ```text
//! test:  videotestsrc is-live ! video/x-raw,WxH@FPS ! clockoverlay ! videoconvert ! I420 ! x264enc ─┐
//! v4l2:  v4l2src ! decodebin ! videoconvert ! I420 ! x264enc ──────────────────────────────────────┤
//! file:  filesrc ! decodebin ! videoconvert ! I420 ! x264enc   (looped by segment seeks) ──────────┤
//! rtsp:  rtspsrc ! rtph264depay   (passed through, never re-encoded) ──────────────────────────────┤
//!                                      h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink
//! ```
//!
//! x264enc runs `tune=zerolatency speed-preset=ultrafast` with a keyframe at least every
//! clip length (at most every 10 s), and the cutter asks it for an extra keyframe
//! (a `GstForceKeyUnit` event) whenever a clip is due, so clips start on time. The raw
//! video is forced to I420 first: otherwise x264 may pick 4:4:4 and produce "High 4:4:4"
//! H.264 that browsers and phones cannot play.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::{debug, warn};

use super::camera_spec::{CameraSpec, ClipLength, Source, TestMode};
use super::cutter::{Anchor, Clip, Cutter, Frame};
use super::{CaptureError, make_element};

/// A clip of encoded frames as the pipeline produces it.
pub(crate) type EncodedClip = Clip<gst::Buffer, gst::Caps>;

/// What the streaming thread tells the supervisor.
#[derive(Debug)]
pub(crate) enum TapEvent {
    /// The first encoded frame arrived: the camera is recording.
    FirstFrame,
    /// A clip is complete.
    Clip(EncodedClip),
}

/// State shared between a pipeline's streaming thread and its supervisor.
#[derive(Default)]
pub(crate) struct Tap {
    /// The cutter, created at the first frame (when the wall-clock anchor is taken).
    pub cutter: Option<Cutter<gst::Buffer, gst::Caps>>,
    /// When the last frame arrived, for stall detection.
    pub last_frame_at: Option<Instant>,
}

/// Frames per second assumed for keyframe spacing when the source does not say.
const ASSUMED_FPS: u32 = 30;
/// The longest keyframe interval x264enc is allowed, in seconds.
const MAX_GOP_SECONDS: u64 = 10;

/// A camera's pipeline and where to inject end-of-stream to stop it gracefully.
pub(crate) struct CameraPipeline {
    /// The pipeline.
    pub pipeline: gst::Pipeline,
    /// The sink pad of the first element after the source. A graceful stop sends EOS
    /// here rather than to the pipeline: a source in pull mode (filesrc under a demuxer)
    /// ignores an EOS event, and an EOS at this pad still drains the encoder.
    pub eos_pad: gst::Pad,
}

/// Builds the pipeline for `spec`. `notify` is called on the streaming thread.
pub(crate) fn build(
    spec: &CameraSpec,
    clip_len: ClipLength,
    tap: Arc<Mutex<Tap>>,
    notify: impl Fn(TapEvent) + Send + Sync + 'static,
) -> Result<CameraPipeline, CaptureError> {
    let camera = spec.name().as_str();
    let pipeline = gst::Pipeline::with_name(&format!("camera-{camera}"));
    let link_err = |what: &str| CaptureError::Pipeline {
        camera: camera.to_owned(),
        reason: format!("could not link {what}"),
    };
    let no_pad = |element: &gst::Element| CaptureError::Pipeline {
        camera: camera.to_owned(),
        reason: format!("{} has no sink pad", element.name()),
    };

    let parse = make_element("h264parse")?;
    let avc = make_element("capsfilter")?;
    avc.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build(),
    );
    let sink = gst_app::AppSink::builder()
        .name("tap")
        .sync(!spec.source().is_live())
        .max_buffers(8)
        .enable_last_sample(false)
        .build();
    sink.set_callbacks(tap_callbacks(camera, clip_len, tap, notify));
    pipeline
        .add_many([&parse, &avc, sink.upcast_ref()])
        .map_err(|_| link_err("the h264 tail"))?;
    gst::Element::link_many([&parse, &avc, sink.upcast_ref()])
        .map_err(|_| link_err("h264parse to the appsink"))?;

    let eos_target = match spec.source() {
        Source::Test(mode) => {
            let src = make_element("videotestsrc")?;
            src.set_property("is-live", true);
            let raw = raw_caps_filter(Some(mode))?;
            let eos_target = raw.clone();
            let mut chain = vec![src, raw];
            if let Some(overlay) = clock_overlay(camera) {
                chain.push(overlay);
            }
            let encoder = encoder_chain(camera, gop_frames(mode.fps, clip_len))?;
            chain.extend(encoder);
            pipeline
                .add_many(&chain)
                .map_err(|_| link_err("the test source"))?;
            gst::Element::link_many(&chain).map_err(|_| link_err("the test source"))?;
            chain
                .last()
                .expect("the encoder chain is not empty")
                .link(&parse)
                .map_err(|_| link_err("x264enc to h264parse"))?;
            eos_target
        }
        Source::V4l2 { device } => {
            let src = make_element("v4l2src")?;
            src.set_property("device", device.to_string_lossy().as_ref());
            add_decoded_source(&pipeline, camera, src, &parse, clip_len)?
        }
        Source::File { path } => {
            let src = make_element("filesrc")?;
            src.set_property("location", path.to_string_lossy().as_ref());
            add_decoded_source(&pipeline, camera, src, &parse, clip_len)?
        }
        Source::Rtsp(url) => {
            let src = make_element("rtspsrc")?;
            src.set_property("location", url.location());
            if let Some(user) = url.user() {
                src.set_property("user-id", user);
            }
            if let Some(password) = url.password() {
                src.set_property("user-pw", password);
            }
            src.set_property("latency", 200u32);
            let depay = make_element("rtph264depay")?;
            pipeline
                .add_many([&src, &depay])
                .map_err(|_| link_err("the rtsp source"))?;
            depay
                .link(&parse)
                .map_err(|_| link_err("rtph264depay to h264parse"))?;
            let depay_weak = depay.downgrade();
            let name = camera.to_owned();
            src.connect_pad_added(move |src, pad| {
                let Some(depay) = depay_weak.upgrade() else {
                    return;
                };
                link_rtsp_pad(&name, src, pad, &depay);
            });
            depay
        }
    };
    let eos_pad = eos_target
        .static_pad("sink")
        .ok_or_else(|| no_pad(&eos_target))?;
    Ok(CameraPipeline { pipeline, eos_pad })
}

/// `appsink` callbacks: stamp each sample with running times, feed the cutter, request
/// keyframes, pass finished clips on.
fn tap_callbacks(
    camera: &str,
    clip_len: ClipLength,
    tap: Arc<Mutex<Tap>>,
    notify: impl Fn(TapEvent) + Send + Sync + 'static,
) -> gst_app::AppSinkCallbacks {
    let camera = camera.to_owned();
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |appsink| {
            let sample = appsink
                .pull_sample()
                .map_err(|_| gst::FlowError::Flushing)?;
            let Some(frame) = frame_from_sample(&sample) else {
                debug!(camera = %camera, "dropping a frame without timestamps");
                return Ok(gst::FlowSuccess::Ok);
            };
            let Some(caps) = sample.caps_owned() else {
                debug!(camera = %camera, "dropping a frame without caps");
                return Ok(gst::FlowSuccess::Ok);
            };
            let mut first = false;
            let pushed = {
                let mut tap = tap.lock().unwrap_or_else(PoisonError::into_inner);
                tap.last_frame_at = Some(Instant::now());
                if tap.cutter.is_none() {
                    let anchor = take_anchor(appsink)?;
                    tap.cutter = Some(Cutter::new(clip_len.duration(), anchor));
                    first = true;
                }
                match tap.cutter.as_mut() {
                    Some(cutter) => cutter.push(frame, caps),
                    None => return Ok(gst::FlowSuccess::Ok),
                }
            };
            if first {
                notify(TapEvent::FirstFrame);
            }
            if pushed.request_keyframe {
                request_keyframe(appsink);
            }
            if let Some(clip) = pushed.finished {
                notify(TapEvent::Clip(clip));
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}

/// Reads the wall clock and the pipeline's running time together.
fn take_anchor(appsink: &gst_app::AppSink) -> Result<Anchor, gst::FlowError> {
    let wall = match crate::clock::now() {
        Ok(wall) => wall,
        Err(err) => {
            gst::element_error!(appsink, gst::ResourceError::Failed, ("{err:#}"));
            return Err(gst::FlowError::Error);
        }
    };
    let running = appsink
        .current_running_time()
        .unwrap_or(gst::ClockTime::ZERO);
    Ok(Anchor {
        wall,
        running_ns: running.nseconds(),
    })
}

/// A sample's buffer with its times converted to running time.
fn frame_from_sample(sample: &gst::Sample) -> Option<Frame<gst::Buffer>> {
    let buffer = sample.buffer_owned()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    let pts = buffer.pts().or(buffer.dts())?;
    let pts = segment.to_running_time(pts)?.nseconds();
    let dts = buffer
        .dts()
        .and_then(|dts| segment.to_running_time(dts))
        .map(|dts| dts.nseconds());
    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
    let duration = buffer.duration().map(|d| d.nseconds());
    Some(Frame {
        payload: buffer,
        pts,
        dts,
        duration,
        keyframe,
    })
}

/// Asks the encoder upstream for a keyframe as soon as possible (a `GstForceKeyUnit`
/// upstream event, as `gst_video_event_new_upstream_force_key_unit` builds it).
fn request_keyframe(appsink: &gst_app::AppSink) {
    let event = gst::event::CustomUpstream::new(
        gst::Structure::builder("GstForceKeyUnit")
            .field("all-headers", true)
            .build(),
    );
    if let Some(pad) = appsink.static_pad("sink") {
        // Sources without an encoder (RTSP) ignore it; the clip then waits for the
        // camera's next keyframe.
        let _ = pad.push_event(event);
    }
}

/// Keyframe interval for x264enc: one clip length, at most `MAX_GOP_SECONDS`.
fn gop_frames(fps: u32, clip_len: ClipLength) -> u32 {
    let seconds = clip_len.as_secs().clamp(1, MAX_GOP_SECONDS);
    u32::try_from(u64::from(fps) * seconds).unwrap_or(u32::MAX)
}

/// `video/x-raw,format=I420[,width,height,framerate]`.
fn raw_caps_filter(mode: Option<&TestMode>) -> Result<gst::Element, CaptureError> {
    let mut caps = gst::Caps::builder("video/x-raw").field("format", "I420");
    if let Some(mode) = mode {
        caps = caps
            .field("width", i32::try_from(mode.width).unwrap_or(i32::MAX))
            .field("height", i32::try_from(mode.height).unwrap_or(i32::MAX))
            .field(
                "framerate",
                gst::Fraction::new(i32::try_from(mode.fps).unwrap_or(i32::MAX), 1),
            );
    }
    let filter = make_element("capsfilter")?;
    filter.set_property("caps", caps.build());
    Ok(filter)
}

/// The clock overlay on test video, or `None` (with a warning) when the pango plugin is
/// missing: a test camera without a clock still records.
fn clock_overlay(camera: &str) -> Option<gst::Element> {
    match gst::ElementFactory::make("clockoverlay")
        .property("text", camera)
        .property("time-format", "%Y-%m-%d %H:%M:%S")
        .property("shaded-background", true)
        .property_from_str("halignment", "left")
        .property_from_str("valignment", "top")
        .build()
    {
        Ok(overlay) => Some(overlay),
        Err(_) => {
            warn!(
                camera,
                "clockoverlay is missing, recording the test camera without a clock; \
                 install gstreamer1.0-x (the pango plugin) to get one"
            );
            None
        }
    }
}

/// `videoconvert ! video/x-raw,format=I420 ! x264enc`.
fn encoder_chain(camera: &str, gop: u32) -> Result<Vec<gst::Element>, CaptureError> {
    let convert = make_element("videoconvert")?;
    let i420 = raw_caps_filter(None)?;
    let encoder = gst::ElementFactory::make("x264enc")
        .property_from_str("tune", "zerolatency")
        .property_from_str("speed-preset", "ultrafast")
        .property_from_str("pass", "qual")
        .property("quantizer", 23u32)
        .property("key-int-max", gop)
        .build()
        .map_err(|_| CaptureError::Pipeline {
            camera: camera.to_owned(),
            reason: "could not configure x264enc".to_owned(),
        })?;
    Ok(vec![convert, i420, encoder])
}

/// `src ! decodebin`, with decodebin's video pad linked to the encoder chain once it
/// appears (audio and other streams are left unlinked). Returns the encoder chain's head.
fn add_decoded_source(
    pipeline: &gst::Pipeline,
    camera: &str,
    src: gst::Element,
    parse: &gst::Element,
    clip_len: ClipLength,
) -> Result<gst::Element, CaptureError> {
    let link_err = |what: &str| CaptureError::Pipeline {
        camera: camera.to_owned(),
        reason: format!("could not link {what}"),
    };
    let decode = make_element("decodebin")?;
    let chain = encoder_chain(camera, gop_frames(ASSUMED_FPS, clip_len))?;
    pipeline
        .add_many([&src, &decode])
        .map_err(|_| link_err("the source"))?;
    pipeline
        .add_many(&chain)
        .map_err(|_| link_err("the encoder"))?;
    src.link(&decode)
        .map_err(|_| link_err("the source to decodebin"))?;
    gst::Element::link_many(&chain).map_err(|_| link_err("the encoder"))?;
    chain
        .last()
        .expect("the encoder chain is not empty")
        .link(parse)
        .map_err(|_| link_err("x264enc to h264parse"))?;
    let head = chain[0].clone();
    let convert_weak = head.downgrade();
    let name = camera.to_owned();
    decode.connect_pad_added(move |decode, pad| {
        let Some(convert) = convert_weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/x-raw"));
        let Some(sink) = convert.static_pad("sink") else {
            return;
        };
        if !is_video || sink.is_linked() {
            debug!(camera = %name, caps = %caps, "ignoring a decoded stream");
            return;
        }
        if let Err(err) = pad.link(&sink) {
            gst::element_error!(
                decode,
                gst::CoreError::Negotiation,
                ("camera {name}: could not link the decoded video ({err:?})")
            );
        }
    });
    Ok(head)
}

/// Links an `rtspsrc` pad to the depayloader when it carries H.264 video.
fn link_rtsp_pad(camera: &str, src: &gst::Element, pad: &gst::Pad, depay: &gst::Element) {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let Some(structure) = caps.structure(0) else {
        return;
    };
    let media = structure.get::<&str>("media").unwrap_or_default();
    if media != "video" {
        debug!(camera, media, "ignoring a non-video rtsp stream");
        return;
    }
    let encoding = structure.get::<&str>("encoding-name").unwrap_or_default();
    let Some(sink) = depay.static_pad("sink") else {
        return;
    };
    if sink.is_linked() {
        return;
    }
    if !encoding.eq_ignore_ascii_case("H264") {
        gst::element_error!(
            src,
            gst::StreamError::CodecNotFound,
            ("camera {camera} sends {encoding} video over rtsp; only h264 is supported, switch the camera's stream to h264")
        );
        return;
    }
    if let Err(err) = pad.link(&sink) {
        gst::element_error!(
            src,
            gst::CoreError::Negotiation,
            ("camera {camera}: could not link the rtsp video ({err:?})")
        );
    }
}
