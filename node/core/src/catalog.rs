//! The clips this node holds, as far as consent is concerned: id, camera and time span.
//!
//! The store (a shell) owns the clips themselves; it tells the core when one is added or
//! removed, so the core can answer "which clips overlap this window" and refuse to serve a
//! clip that is gone. Kept in a `BTreeMap` so matches come out in a stable order.

use std::collections::BTreeMap;

use porchlight_protocol::{ClipId, TimeWindow, Timestamp};

use crate::output::ClipSummary;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Catalog {
    clips: BTreeMap<ClipId, (String, TimeWindow)>,
}

impl Catalog {
    pub(crate) fn add(
        &mut self,
        clip_id: ClipId,
        camera: String,
        start: Timestamp,
        end: Timestamp,
    ) {
        self.clips.insert(
            clip_id,
            (
                camera,
                TimeWindow {
                    from: start,
                    to: end,
                },
            ),
        );
    }

    pub(crate) fn remove(&mut self, clip_id: &ClipId) {
        self.clips.remove(clip_id);
    }

    pub(crate) fn contains(&self, clip_id: &ClipId) -> bool {
        self.clips.contains_key(clip_id)
    }

    /// The end of the latest clip held: footage before it has been sealed (on some camera).
    pub(crate) fn latest_end(&self) -> Option<Timestamp> {
        self.clips.values().map(|(_, span)| span.to).max()
    }

    /// Clips overlapping `window` by more than zero time (a clip that only touches it is
    /// footage nobody asked for), ordered by start time then id.
    pub(crate) fn overlapping(&self, window: &TimeWindow) -> Vec<ClipSummary> {
        let mut found: Vec<ClipSummary> = self
            .clips
            .iter()
            .filter(|(_, (_, span))| span.overlaps(window))
            .map(|(clip_id, (camera, span))| ClipSummary {
                clip_id: *clip_id,
                camera: camera.clone(),
                start: span.from,
                end: span.to,
            })
            .collect();
        found.sort_by_key(|clip| (clip.start, clip.clip_id));
        found
    }
}
