//! The JSON shapes of the local API (its **API Boundary**), and how times and sizes in them
//! are written: RFC 3339 UTC text for times, plain integers for bytes.

use serde::{Deserialize, Serialize};

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub name: String,
    pub peer_id: String,
    pub version: String,
    pub started_at: String,
    pub cameras: Vec<CameraView>,
    pub clips: ClipTotalsView,
    pub disk: DiskView,
    /// Durable writes that are failing; empty when the node is healthy.
    #[serde(default)]
    pub degraded: Vec<DegradedView>,
}

/// A write the consent promise depends on that is failing (`porchlight status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DegradedView {
    /// `audit log`, `consent state`, `camera NAME` or `disk`.
    pub component: String,
    /// When it began and last failed, where the node knows.
    pub since: Option<String>,
    pub last_failure: Option<String>,
    pub failures: u64,
    pub error: String,
    /// What the owner should expect while it lasts.
    pub effect: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CameraView {
    pub name: String,
    /// The camera's spec with any credentials removed.
    pub source: String,
    /// `starting`, `recording`, `retrying` or `stopped`.
    pub state: String,
    /// Why a retrying camera failed, and when it retries.
    pub detail: Option<String>,
    pub clips_recorded: u64,
    pub last_clip_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClipTotalsView {
    pub count: u64,
    pub bytes: u64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskView {
    /// Bytes free on the filesystem that holds the clips.
    pub free_bytes: Option<u64>,
}

/// `GET /v1/id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdView {
    pub peer_id: String,
    pub vault_public_key: String,
    /// Mesh listen addresses, each ending in `/p2p/PEER_ID` (what others pass to
    /// `--bootstrap` or `request --peer`).
    pub listen_addresses: Vec<String>,
    pub api: String,
}

/// One clip, in `GET /v1/clips` and the answers to clip commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClipView {
    pub id: String,
    pub camera: String,
    pub start: String,
    pub end: String,
    /// Bytes of ciphertext on disk.
    pub bytes: u64,
    pub held: bool,
}

/// `POST /v1/clips/import`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    /// An absolute path the daemon can read.
    pub path: String,
    pub camera: String,
    /// RFC 3339; the file's modification time when absent.
    pub start: Option<String>,
}

/// `POST /v1/store/rebuild`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebuildView {
    pub clips: u64,
    pub quarantined: u64,
    pub summary: String,
}

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorView {
    pub error: String,
}

/// Formats a protocol timestamp as RFC 3339 UTC (seconds precision).
///
/// RFC 3339 has four-digit years, so a time after 9999-12-31T23:59:59.999Z (which no clock
/// of ours produces, but a peer's message or a damaged file can carry) is rendered as
/// `after 9999-12-31T23:59:59Z (unix ms N)`: plainly not a time to parse back, and still exact.
pub fn rfc3339(at: porchlight_protocol::Timestamp) -> String {
    if at.as_unix_millis() > LAST_RFC3339_MILLIS {
        return format!(
            "after 9999-12-31T23:59:59Z (unix ms {})",
            at.as_unix_millis()
        );
    }
    humantime::format_rfc3339_seconds(crate::clock::system_time_of(at)).to_string()
}

/// 9999-12-31T23:59:59.999Z in unix ms: the last instant RFC 3339 can write.
const LAST_RFC3339_MILLIS: u64 = 253_402_300_799_999;

/// Parses RFC 3339 (a `Z` or offset-free UTC time) into a protocol timestamp.
pub fn parse_rfc3339(text: &str) -> Result<porchlight_protocol::Timestamp, String> {
    let time = humantime::parse_rfc3339_weak(text.trim()).map_err(|err| {
        format!("{text:?} is not an RFC 3339 time such as 2026-11-29T14:00:00Z ({err})")
    })?;
    crate::clock::timestamp_of(time).ok_or_else(|| format!("{text:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_at_second_precision() {
        let at = parse_rfc3339("2026-11-29T14:00:05Z").unwrap();
        assert_eq!(rfc3339(at), "2026-11-29T14:00:05Z");
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn times_past_the_year_9999_render_without_panicking() {
        use porchlight_protocol::Timestamp;
        let last = Timestamp::from_unix_millis(LAST_RFC3339_MILLIS);
        assert_eq!(rfc3339(last), "9999-12-31T23:59:59Z");
        let next = Timestamp::from_unix_millis(LAST_RFC3339_MILLIS + 1);
        assert_eq!(
            rfc3339(next),
            "after 9999-12-31T23:59:59Z (unix ms 253402300800000)"
        );
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(u64::MAX)),
            format!("after 9999-12-31T23:59:59Z (unix ms {})", u64::MAX)
        );
    }
}
