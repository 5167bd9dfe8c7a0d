//! In-memory MP4 muxing of one clip: `appsrc ! mp4mux ! appsink`, never a file.
//!
//! This module owns turning a [`Clip`] of H.264 access units into the bytes of one
//! standalone MP4, and the guarantee that those bytes only ever live in memory.
//!
//! Design choice: a classic MP4 (`ftyp`, `mdat`, `moov` at the end) rather than a
//! fragmented one, because every ordinary player reads it with its duration and seek
//! table. `mp4mux` writes that layout only to a *seekable* sink: it seeks back at the end
//! to patch the `mdat` size. Instead of a file (or `faststart`, which spills to a temp
//! file), the sink here is an in-memory file: a pad probe on the `appsink` answers the
//! byte-seeking query with "seekable", turns each byte `SEGMENT` event (mp4mux's way of
//! seeking) into a write position, and writes each buffer at that position into a
//! [`Zeroizing`] buffer that grows without leaving stale copies behind. No `filesink`, no
//! `faststart`, no `moov-recovery-file`: nothing in this pipeline can open a file.
//!
//! Each clip gets a fresh, short-lived pipeline run on the caller's thread. Muxing is a
//! memory copy plus index building, a few milliseconds even for a minute of 720p.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use zeroize::Zeroizing;

use super::CaptureError;
use super::cutter::Clip;

/// The longest a clip's muxing may take before it is abandoned.
const MUX_TIMEOUT: Duration = Duration::from_secs(30);

/// Room reserved beyond the samples for `ftyp`, the `mdat` header and the `moov` index.
const HEADER_ROOM: usize = 64 * 1024;
/// Index bytes per sample in `moov` (stsz, stco/co64, stts, ctts, stss entries).
const INDEX_BYTES_PER_SAMPLE: usize = 32;

/// Muxes `clip` into one standalone MP4, in memory.
pub(crate) fn mux_clip(
    camera: &str,
    clip: &Clip<gst::Buffer, gst::Caps>,
) -> Result<Zeroizing<Vec<u8>>, CaptureError> {
    let fail = |reason: String| CaptureError::Mux {
        camera: camera.to_owned(),
        reason,
    };
    let sample_bytes: usize = clip.frames.iter().map(|f| f.payload.size()).sum();
    let file = Arc::new(Mutex::new(MemoryFile::with_capacity(
        sample_bytes + HEADER_ROOM + INDEX_BYTES_PER_SAMPLE * clip.frames.len(),
    )));

    let appsrc = gst_app::AppSrc::builder()
        .caps(&clip.caps)
        .format(gst::Format::Time)
        .is_live(false)
        .block(false)
        .max_bytes(0)
        .build();
    let mux = super::make_element("mp4mux")?;
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(1)
        .drop(true)
        // Nobody pulls samples (the probe reads the buffers), so EOS must not wait for
        // the queue to drain.
        .wait_on_eos(false)
        .enable_last_sample(false)
        .build();
    let sink_pad = sink
        .static_pad("sink")
        .ok_or_else(|| fail("appsink has no sink pad".to_owned()))?;
    let probe_file = Arc::clone(&file);
    sink_pad
        .add_probe(
            gst::PadProbeType::BUFFER
                | gst::PadProbeType::BUFFER_LIST
                | gst::PadProbeType::EVENT_DOWNSTREAM
                | gst::PadProbeType::QUERY_DOWNSTREAM,
            move |_pad, info| memory_file_probe(&probe_file, info),
        )
        .ok_or_else(|| fail("could not watch the muxer's output".to_owned()))?;

    let pipeline = gst::Pipeline::with_name(&format!("mux-{camera}"));
    pipeline
        .add_many([appsrc.upcast_ref(), &mux, sink.upcast_ref()])
        .map_err(|e| fail(format!("could not assemble the muxing pipeline: {e}")))?;
    // Ask for the video pad by name: plain linking may pick mp4mux's audio pad template.
    let video_pad = mux
        .request_pad_simple("video_%u")
        .ok_or_else(|| fail("mp4mux has no video pad".to_owned()))?;
    appsrc
        .static_pad("src")
        .ok_or_else(|| fail("appsrc has no src pad".to_owned()))?
        .link(&video_pad)
        .map_err(|e| fail(format!("could not link appsrc to mp4mux: {e:?}")))?;
    mux.link(&sink)
        .map_err(|e| fail(format!("could not link mp4mux to appsink: {e}")))?;

    let result = run(&pipeline, &appsrc, clip, MUX_TIMEOUT).map_err(fail);
    // Null joins the streaming threads, so the probe has written its last byte.
    let _ = pipeline.set_state(gst::State::Null);
    result?;

    let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
    let bytes = std::mem::take(&mut file.data);
    if bytes.get(4..8) != Some(b"ftyp".as_slice()) {
        return Err(fail("mp4mux produced no ftyp box".to_owned()));
    }
    if !file.probe_errors.is_empty() {
        return Err(fail(file.probe_errors.join("; ")));
    }
    Ok(bytes)
}

/// Pushes the clip's frames with times relative to the clip, then waits for EOS.
fn run(
    pipeline: &gst::Pipeline,
    appsrc: &gst_app::AppSrc,
    clip: &Clip<gst::Buffer, gst::Caps>,
    timeout: Duration,
) -> Result<(), String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "could not start the muxing pipeline".to_owned())?;
    // The clip's time zero: its first decoding time, so that no DTS goes negative.
    let base = clip
        .frames
        .iter()
        .map(|f| f.dts.unwrap_or(f.pts).min(f.pts))
        .min()
        .unwrap_or(clip.start_ns);
    for frame in &clip.frames {
        let mut buffer = frame.payload.clone();
        {
            let buffer = buffer.make_mut();
            buffer.set_pts(gst::ClockTime::from_nseconds(
                frame.pts.saturating_sub(base),
            ));
            buffer.set_dts(
                frame
                    .dts
                    .map(|dts| gst::ClockTime::from_nseconds(dts.saturating_sub(base))),
            );
            buffer.set_duration(frame.duration.map(gst::ClockTime::from_nseconds));
        }
        appsrc
            .push_buffer(buffer)
            .map_err(|e| format!("the muxer refused a frame: {e:?}"))?;
    }
    appsrc
        .end_of_stream()
        .map_err(|e| format!("the muxer refused end of stream: {e:?}"))?;

    let bus = pipeline
        .bus()
        .ok_or_else(|| "the muxing pipeline has no bus".to_owned())?;
    let timeout =
        gst::ClockTime::from_nseconds(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
    match bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]) {
        Some(msg) => match msg.view() {
            gst::MessageView::Eos(_) => Ok(()),
            gst::MessageView::Error(err) => Err(format!(
                "{} (from {})",
                err.error(),
                msg.src().map(|s| s.name().to_string()).unwrap_or_default()
            )),
            _ => Err("unexpected message from the muxer".to_owned()),
        },
        None => Err(format!(
            "muxing did not finish within {} s",
            MUX_TIMEOUT.as_secs()
        )),
    }
}

/// A growable byte buffer written at a position, like a file, that never leaves a copy of
/// its contents behind when it grows.
struct MemoryFile {
    data: Zeroizing<Vec<u8>>,
    position: usize,
    probe_errors: Vec<String>,
}

impl MemoryFile {
    fn with_capacity(capacity: usize) -> MemoryFile {
        MemoryFile {
            data: Zeroizing::new(Vec::with_capacity(capacity)),
            position: 0,
            probe_errors: Vec::new(),
        }
    }

    /// Writes `bytes` at the current position and advances it.
    fn write(&mut self, bytes: &[u8]) {
        let end = self.position.saturating_add(bytes.len());
        if end > self.data.capacity() {
            // Grow by hand: Vec's own reallocation would free the old buffer unzeroized.
            let mut grown = Zeroizing::new(Vec::with_capacity(end.max(self.data.capacity() * 2)));
            grown.extend_from_slice(&self.data);
            self.data = grown;
        }
        if self.position > self.data.len() {
            self.data.resize(self.position, 0);
        }
        let overlap = (self.data.len() - self.position).min(bytes.len());
        self.data[self.position..self.position + overlap].copy_from_slice(&bytes[..overlap]);
        self.data.extend_from_slice(&bytes[overlap..]);
        self.position = end;
    }

    fn write_buffer(&mut self, buffer: &gst::BufferRef) {
        match buffer.map_readable() {
            Ok(map) => self.write(map.as_slice()),
            Err(_) => self
                .probe_errors
                .push("could not read a buffer from mp4mux".to_owned()),
        }
    }
}

/// The in-memory file sink: answers "seekable in bytes", follows byte segments as seeks
/// and writes every buffer at the current position.
fn memory_file_probe(
    file: &Mutex<MemoryFile>,
    info: &mut gst::PadProbeInfo,
) -> gst::PadProbeReturn {
    let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
    match &mut info.data {
        Some(gst::PadProbeData::Buffer(buffer)) => file.write_buffer(buffer),
        Some(gst::PadProbeData::BufferList(list)) => {
            for buffer in list.iter() {
                file.write_buffer(buffer);
            }
        }
        Some(gst::PadProbeData::Event(event)) => {
            if let gst::EventView::Segment(segment) = event.view()
                && let Some(bytes) = segment.segment().downcast_ref::<gst::format::Bytes>()
            {
                let start = bytes.start().map_or(0, |b| *b);
                match usize::try_from(start) {
                    Ok(start) => file.position = start,
                    Err(_) => file
                        .probe_errors
                        .push(format!("mp4mux seeked to {start}, beyond memory")),
                }
            }
        }
        Some(gst::PadProbeData::Query(query)) => {
            if let gst::QueryViewMut::Seeking(seeking) = query.view_mut()
                && seeking.format() == gst::Format::Bytes
            {
                seeking.set(true, gst::format::Bytes::ZERO, gst::format::Bytes::NONE);
                return gst::PadProbeReturn::Handled;
            }
        }
        _ => {}
    }
    gst::PadProbeReturn::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_file_writes_at_position_and_grows() {
        let mut file = MemoryFile::with_capacity(4);
        file.write(b"abcdef");
        file.position = 2;
        file.write(b"XY");
        assert_eq!(file.data.as_slice(), b"abXYef");
        file.position = 8;
        file.write(b"Z");
        assert_eq!(file.data.as_slice(), b"abXYef\0\0Z");
        file.position = 5;
        file.write(b"1234");
        assert_eq!(file.data.as_slice(), b"abXYe1234");
    }
}
