//! Keyframe-aligned cutting of an encoded stream into clips, and their wall-clock times.
//!
//! This module owns the decision of where one clip ends and the next begins, and nothing
//! about GStreamer: it sees frames as (running time, duration, keyframe?) plus an opaque
//! payload and caps, so the rules are unit-tested without a pipeline. The rules:
//!
//! - a clip always starts on a keyframe; frames before the first keyframe are dropped (and
//!   a keyframe is requested so the wait is short);
//! - a clip ends at the first keyframe at or after `clip_len` (minus a little slack for
//!   jittery camera timestamps); shortly before that point a keyframe is requested, so an
//!   encoder that honours the request (x264enc does) cuts on time even with a long GOP;
//! - the next clip starts exactly where the previous one ended, so clip times are
//!   contiguous while a pipeline runs;
//! - a caps change or a jump back in time ends the clip early (the new stream starts a new
//!   clip at its first keyframe), and a clip that finds no keyframe for far too long is
//!   closed so memory stays bounded.
//!
//! Wall-clock times come from one [`Anchor`] per pipeline run: a pair of readings, taken
//! together, of the wall clock and the pipeline's running time. A frame's wall time is the
//! anchor's wall time plus the frame's running-time distance from the anchor.

use std::time::Duration;

use porchlight_protocol::Timestamp;

const NANOS_PER_MILLI: i128 = 1_000_000;

/// The most a clip may overshoot its length while waiting for a keyframe before it is
/// closed anyway (on top of twice the clip length).
const MAX_KEYFRAME_WAIT: Duration = Duration::from_secs(30);

/// The tolerance for a keyframe that arrives a little early: a twentieth of the clip
/// length, at most 100 ms.
const MAX_SLACK: Duration = Duration::from_millis(100);

/// One encoded frame as the cutter sees it. Times are pipeline running times in
/// nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame<B> {
    /// The payload (a `gst::Buffer` in the pipeline, anything in tests).
    pub payload: B,
    /// Presentation running time.
    pub pts: u64,
    /// Decoding running time, when known.
    pub dts: Option<u64>,
    /// Duration, when known.
    pub duration: Option<u64>,
    /// Whether the frame can be decoded on its own.
    pub keyframe: bool,
}

/// Maps running time to wall-clock time for one pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Anchor {
    /// Wall-clock reading, in ms since the Unix epoch.
    pub wall: Timestamp,
    /// Pipeline running time at the same instant, in ns.
    pub running_ns: u64,
}

impl Anchor {
    /// The wall-clock time of running time `running_ns`, clamped to the epoch.
    pub fn wall_time(&self, running_ns: u64) -> Timestamp {
        let wall_ns = i128::from(self.wall.as_unix_millis()) * NANOS_PER_MILLI
            + i128::from(running_ns)
            - i128::from(self.running_ns);
        let millis = wall_ns.div_euclid(NANOS_PER_MILLI).max(0);
        Timestamp::from_unix_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

/// A finished clip: frames from one keyframe up to (not including) the next cut.
#[derive(Debug)]
pub(crate) struct Clip<B, C> {
    /// The caps every frame of the clip shares.
    pub caps: C,
    /// The frames in decoding order; the first is a keyframe.
    pub frames: Vec<Frame<B>>,
    /// Running time of the first frame.
    pub start_ns: u64,
    /// Running time just after the last frame (the next clip's start when cut on time).
    pub end_ns: u64,
    /// Wall-clock time of the first frame.
    pub start: Timestamp,
    /// Wall-clock time just after the last frame.
    pub end: Timestamp,
}

impl<B, C> Clip<B, C> {
    /// The clip's duration by its running times.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_ns.saturating_sub(self.start_ns))
    }
}

/// What pushing one frame produced.
#[derive(Debug)]
pub(crate) struct Pushed<B, C> {
    /// A clip that this frame closed.
    pub finished: Option<Clip<B, C>>,
    /// Whether the encoder should be asked for a keyframe now.
    pub request_keyframe: bool,
}

struct OpenClip<B, C> {
    caps: C,
    frames: Vec<Frame<B>>,
    start_ns: u64,
    /// The latest `pts + duration` seen (frames may arrive out of presentation order).
    end_ns: u64,
    keyframe_requested: bool,
}

/// Cuts a stream of frames into keyframe-aligned clips of a target length.
pub(crate) struct Cutter<B, C> {
    clip_ns: u64,
    slack_ns: u64,
    max_ns: u64,
    anchor: Anchor,
    open: Option<OpenClip<B, C>>,
    /// Whether a keyframe was requested while waiting for the first one.
    waiting_requested: bool,
    /// The last frame interval seen, to estimate the length of a frame without duration.
    last_interval_ns: u64,
    last_pts: Option<u64>,
}

impl<B, C: PartialEq> Cutter<B, C> {
    /// A cutter for clips of `clip_len`, with wall-clock times from `anchor`.
    pub fn new(clip_len: Duration, anchor: Anchor) -> Cutter<B, C> {
        let clip_ns = duration_ns(clip_len).max(1);
        let slack_ns = (clip_ns / 20).min(duration_ns(MAX_SLACK));
        let max_ns = clip_ns
            .saturating_mul(2)
            .saturating_add(duration_ns(MAX_KEYFRAME_WAIT));
        Cutter {
            clip_ns,
            slack_ns,
            max_ns,
            anchor,
            open: None,
            waiting_requested: false,
            last_interval_ns: 0,
            last_pts: None,
        }
    }

    /// Takes one frame; returns a clip when this frame closed one.
    pub fn push(&mut self, frame: Frame<B>, caps: C) -> Pushed<B, C> {
        if let Some(last) = self.last_pts
            && frame.pts > last
        {
            self.last_interval_ns = frame.pts - last;
        }
        self.last_pts = Some(frame.pts);

        let Some(open) = self.open.as_mut() else {
            return self.start_or_wait(frame, caps, None);
        };
        let discontinuity = open.caps != caps || frame.pts < open.start_ns;
        let elapsed = frame.pts.saturating_sub(open.start_ns);
        if discontinuity {
            let finished = self.close(None);
            return self.start_or_wait(frame, caps, finished);
        }
        if frame.keyframe && elapsed >= self.clip_ns.saturating_sub(self.slack_ns) {
            let finished = self.close(Some(frame.pts));
            return self.start_or_wait(frame, caps, finished);
        }
        if elapsed >= self.max_ns {
            // No keyframe for far too long: close what we have and wait for the next one.
            let finished = self.close(Some(frame.pts));
            return self.start_or_wait(frame, caps, finished);
        }
        let next_pts = frame
            .pts
            .saturating_add(frame.duration.unwrap_or(self.last_interval_ns));
        open.end_ns = open.end_ns.max(next_pts);
        open.frames.push(frame);
        let due = next_pts >= open.start_ns.saturating_add(self.clip_ns);
        let request_keyframe = due && !open.keyframe_requested;
        open.keyframe_requested |= due;
        Pushed {
            finished: None,
            request_keyframe,
        }
    }

    /// Closes the clip in progress, if any (at end of stream or on teardown).
    pub fn finish(&mut self) -> Option<Clip<B, C>> {
        self.close(None)
    }

    /// Opens a clip with `frame` if it is a keyframe; otherwise drops it and asks for one.
    fn start_or_wait(
        &mut self,
        frame: Frame<B>,
        caps: C,
        finished: Option<Clip<B, C>>,
    ) -> Pushed<B, C> {
        if !frame.keyframe {
            let request_keyframe = !self.waiting_requested;
            self.waiting_requested = true;
            return Pushed {
                finished,
                request_keyframe,
            };
        }
        self.waiting_requested = false;
        let start_ns = frame.pts;
        let end_ns = start_ns.saturating_add(frame.duration.unwrap_or(self.last_interval_ns));
        self.open = Some(OpenClip {
            caps,
            frames: vec![frame],
            start_ns,
            end_ns,
            keyframe_requested: false,
        });
        Pushed {
            finished,
            request_keyframe: false,
        }
    }

    /// Closes the open clip at `end_ns` (or at its last frame's end).
    fn close(&mut self, end_ns: Option<u64>) -> Option<Clip<B, C>> {
        let open = self.open.take()?;
        let end_ns = end_ns.unwrap_or(open.end_ns).max(open.start_ns);
        Some(Clip {
            caps: open.caps,
            frames: open.frames,
            start_ns: open.start_ns,
            end_ns,
            start: self.anchor.wall_time(open.start_ns),
            end: self.anchor.wall_time(end_ns),
        })
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn anchor() -> Anchor {
        Anchor {
            wall: Timestamp::from_unix_millis(1_700_000_000_000),
            running_ns: 0,
        }
    }

    /// A 10 fps stream with a keyframe every `gop` frames, starting at running time `t0`.
    fn frames(count: u64, gop: u64, t0: u64) -> impl Iterator<Item = Frame<u64>> {
        (0..count).map(move |i| Frame {
            payload: i,
            pts: t0 + i * 100 * MS,
            dts: Some(t0 + i * 100 * MS),
            duration: Some(100 * MS),
            keyframe: i % gop == 0,
        })
    }

    fn run(
        cutter: &mut Cutter<u64, u32>,
        input: impl Iterator<Item = Frame<u64>>,
    ) -> (Vec<Clip<u64, u32>>, usize) {
        let mut clips = Vec::new();
        let mut requests = 0;
        for frame in input {
            let pushed = cutter.push(frame, 1);
            clips.extend(pushed.finished);
            requests += usize::from(pushed.request_keyframe);
        }
        (clips, requests)
    }

    #[test]
    fn cuts_on_keyframes_at_the_clip_length_and_stays_contiguous() {
        let mut cutter = Cutter::new(Duration::from_secs(2), anchor());
        let (clips, _) = run(&mut cutter, frames(61, 20, 50 * MS));
        assert_eq!(clips.len(), 3);
        for (i, clip) in clips.iter().enumerate() {
            assert_eq!(clip.frames.len(), 20);
            assert!(clip.frames[0].keyframe);
            assert_eq!(clip.duration(), Duration::from_secs(2));
            assert_eq!(clip.end.duration_since(clip.start), Duration::from_secs(2));
            if i > 0 {
                assert_eq!(clips[i - 1].end, clip.start);
            }
        }
        assert_eq!(clips[0].start.as_unix_millis(), 1_700_000_000_050);
        let last = cutter.finish().expect("frame 60 opened a clip");
        assert_eq!(last.frames.len(), 1);
        assert_eq!(last.duration(), Duration::from_millis(100));
    }

    #[test]
    fn drops_frames_before_the_first_keyframe_and_asks_for_one() {
        let mut cutter = Cutter::new(Duration::from_secs(2), anchor());
        let input = frames(25, 20, 0).skip(5);
        let (clips, requests) = run(&mut cutter, input);
        assert!(clips.is_empty());
        assert_eq!(requests, 1);
        let clip = cutter.finish().expect("frame 20 is a keyframe");
        assert_eq!(clip.frames.len(), 5);
        assert_eq!(clip.start_ns, 2000 * MS);
    }

    #[test]
    fn long_gop_requests_a_keyframe_when_the_clip_is_due() {
        let mut cutter = Cutter::new(Duration::from_secs(2), anchor());
        let mut requests = Vec::new();
        for (i, frame) in frames(30, 1000, 0).enumerate() {
            if cutter.push(frame, 1).request_keyframe {
                requests.push(i);
            }
        }
        // Frame 19 ends at 2.0 s: the next frame should be a keyframe.
        assert_eq!(requests, vec![19]);
    }

    #[test]
    fn caps_change_closes_the_clip() {
        let mut cutter: Cutter<u64, u32> = Cutter::new(Duration::from_secs(60), anchor());
        let mut input = frames(20, 10, 0);
        for frame in input.by_ref().take(15) {
            assert!(cutter.push(frame, 1).finished.is_none());
        }
        let pushed = cutter.push(input.next().expect("16th frame"), 2);
        let clip = pushed.finished.expect("caps changed");
        assert_eq!(clip.frames.len(), 15);
        assert_eq!(clip.duration(), Duration::from_millis(1500));
        assert!(pushed.request_keyframe, "frame 15 is no keyframe");
    }

    #[test]
    fn a_clip_without_keyframes_is_closed_eventually() {
        let mut cutter = Cutter::new(Duration::from_secs(1), anchor());
        // 40 s of frames, one keyframe at the start.
        let (clips, _) = run(&mut cutter, frames(400, 10_000, 0));
        assert_eq!(clips.len(), 1);
        assert_eq!(clips[0].duration(), Duration::from_secs(32));
        assert!(cutter.finish().is_none());
    }

    #[test]
    fn anchor_maps_running_time_to_wall_time() {
        let anchor = Anchor {
            wall: Timestamp::from_unix_millis(10_000),
            running_ns: 5_000 * MS,
        };
        assert_eq!(anchor.wall_time(5_000 * MS).as_unix_millis(), 10_000);
        assert_eq!(anchor.wall_time(4_000 * MS).as_unix_millis(), 9_000);
        assert_eq!(anchor.wall_time(6_500 * MS + 999).as_unix_millis(), 11_500);
        let early = Anchor {
            wall: Timestamp::from_unix_millis(1),
            running_ns: 5_000 * MS,
        };
        assert_eq!(early.wall_time(0), Timestamp::EPOCH);
    }
}
