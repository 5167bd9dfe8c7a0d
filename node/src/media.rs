//! What the node needs to know about a video file it did not record: how long it is.
//!
//! `clips import` must put a start and an end in the clip header before sealing the first
//! byte, so it asks GStreamer's discoverer for the duration up front. A file GStreamer
//! cannot read as video is refused before anything is stored.

use std::fs::Metadata;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use porchlight_protocol::Timestamp;

/// How long the discoverer may take on one file.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The playing time of a media file.
pub fn probe_duration(path: &Path) -> anyhow::Result<Duration> {
    crate::capture::init().context("cannot start GStreamer")?;
    let timeout = gstreamer::ClockTime::from_nseconds(duration_nanos(PROBE_TIMEOUT));
    let discoverer = gstreamer_pbutils::Discoverer::new(timeout)
        .context("cannot start GStreamer's discoverer")?;
    let uri = gstreamer::glib::filename_to_uri(path, None).with_context(|| {
        format!(
            "import file {} has a path GStreamer cannot use",
            path.display()
        )
    })?;
    let info = discoverer.discover_uri(&uri).with_context(|| {
        format!(
            "import file {} is not a video GStreamer can read",
            path.display()
        )
    })?;
    if info.video_streams().is_empty() {
        bail!("import file {} has no video stream", path.display());
    }
    match info.duration() {
        Some(duration) if duration.nseconds() > 0 => Ok(Duration::from_nanos(duration.nseconds())),
        _ => bail!(
            "import file {} has no known duration; pass --start and make sure it is a finished recording",
            path.display()
        ),
    }
}

/// A file's modification time as a protocol timestamp (the epoch if unknown).
pub fn modified_time(meta: &Metadata) -> Timestamp {
    meta.modified()
        .ok()
        .and_then(crate::clock::timestamp_of)
        .unwrap_or(Timestamp::EPOCH)
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
