//! A recorded segment: what capture hands to the store.
//!
//! A segment is one self-contained MP4 (H.264, starting on a keyframe) held in memory. It is
//! plaintext, so it never touches the disk: the store seals it before writing anything, and
//! its buffer is zeroized when dropped.

use std::fmt;

use porchlight_protocol::Timestamp;
use zeroize::Zeroizing;

/// One muxed segment from one camera.
pub struct Segment {
    /// The camera's configured name.
    pub camera: String,
    /// Wall-clock time of the first frame.
    pub start: Timestamp,
    /// Wall-clock time just after the last frame.
    pub end: Timestamp,
    /// The whole MP4 file, in memory only.
    pub mp4: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("camera", &self.camera)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("mp4_bytes", &self.mp4.len())
            .finish()
    }
}
