//! Rules every node applies to what it receives: clock skew, lifetimes, text and list limits
//! (spec/wire.md#limits).
//!
//! The limits are constants here, not configuration, because they are part of the protocol:
//! two nodes that disagree on them would disagree on which messages are valid.

use std::time::Duration;

use crate::error::ValidationError;
use crate::time::{Timestamp, duration_millis};

/// How far a peer's clock may differ from ours.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The longest a consent token may be valid, and the longest access a request may ask for.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest span of footage one request may ask about.
pub const MAX_REQUEST_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest request reason, in UTF-8 bytes.
pub const MAX_REASON_LEN: usize = 1_000;
/// Longest case number, in UTF-8 bytes.
pub const MAX_CASE_NUMBER_LEN: usize = 64;
/// Longest deny message, in UTF-8 bytes.
pub const MAX_DENY_MESSAGE_LEN: usize = 500;
/// Longest display name or jurisdiction on a credential, in UTF-8 bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Most clips one consent token may name.
pub const MAX_CLIPS_PER_TOKEN: usize = 256;
/// Most cells one area request may cover.
pub const MAX_CELLS_PER_REQUEST: usize = 64;
/// Most credentials in a chain (leaf to the one a trust root signed).
pub const MAX_CREDENTIAL_CHAIN: usize = 4;

/// Checks a user-supplied text field: length, emptiness, and no control characters, so text
/// from a remote peer cannot rewrite a terminal or forge lines in a log.
pub fn check_text(
    field: &'static str,
    text: &str,
    max: usize,
    allow_empty: bool,
) -> Result<(), ValidationError> {
    if text.len() > max {
        return Err(ValidationError::TextTooLong {
            field,
            len: text.len(),
            max,
        });
    }
    if !allow_empty && text.trim().is_empty() {
        return Err(ValidationError::EmptyText { field });
    }
    if text
        .chars()
        .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Err(ValidationError::ControlCharacter { field });
    }
    Ok(())
}

/// Bidirectional overrides and isolates, zero-width characters, the byte-order mark, the line
/// and paragraph separators (which break a line where no newline shows), the soft hyphen,
/// the tag characters (invisible text riding along, as in emoji tag sequences) and the
/// Hangul filler (a blank that is not `White_Space`, so it makes a name look empty): text
/// from a peer that contains them can show the owner something other than what it says
/// (spec/wire.md#text).
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Checks a list's length is within `1..=max`.
pub fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), ValidationError> {
    if count == 0 {
        return Err(ValidationError::NoEntries { field });
    }
    if count > max {
        return Err(ValidationError::TooMany { field, count, max });
    }
    Ok(())
}

/// Checks that a sorted-or-not list has no repeated entries.
pub fn check_unique<T: Ord>(field: &'static str, items: &[T]) -> Result<(), ValidationError> {
    let mut refs: Vec<&T> = items.iter().collect();
    refs.sort_unstable();
    if refs.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(ValidationError::Duplicate { field });
    }
    Ok(())
}

/// Checks `from < to` and `to - from <= max`.
pub fn check_window(
    what: &'static str,
    from: Timestamp,
    to: Timestamp,
    max: Duration,
) -> Result<(), ValidationError> {
    if to <= from {
        return Err(ValidationError::EmptyWindow);
    }
    if to.duration_since(from) > max {
        return Err(ValidationError::TooLong {
            what,
            max_ms: duration_millis(max),
        });
    }
    Ok(())
}

/// Checks that `now` falls in `[not_before, not_after]`, widened by the clock skew.
pub fn check_validity(
    not_before: Timestamp,
    not_after: Timestamp,
    now: Timestamp,
) -> Result<(), ValidationError> {
    if now.saturating_add(MAX_CLOCK_SKEW) < not_before {
        return Err(ValidationError::NotYetValid);
    }
    if now.saturating_sub(MAX_CLOCK_SKEW) > not_after {
        return Err(ValidationError::Expired);
    }
    Ok(())
}

/// Checks that a message issued at `issued_at` is fresh: within the clock skew of `now`.
pub fn check_fresh(issued_at: Timestamp, now: Timestamp) -> Result<(), ValidationError> {
    if issued_at.duration_since(now) > MAX_CLOCK_SKEW
        || now.duration_since(issued_at) > MAX_CLOCK_SKEW
    {
        return Err(ValidationError::NotFresh);
    }
    Ok(())
}

/// Checks that something dated `at` is not from the future (beyond the skew).
pub fn check_not_future(at: Timestamp, now: Timestamp) -> Result<(), ValidationError> {
    if at.duration_since(now) > MAX_CLOCK_SKEW {
        return Err(ValidationError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000)
    }

    #[test]
    fn validity_allows_exactly_the_skew() {
        assert_eq!(check_validity(t(1000), t(2000), t(940)), Ok(()));
        assert_eq!(
            check_validity(t(1000), t(2000), t(939)),
            Err(ValidationError::NotYetValid)
        );
        assert_eq!(check_validity(t(1000), t(2000), t(2060)), Ok(()));
        assert_eq!(
            check_validity(t(1000), t(2000), t(2061)),
            Err(ValidationError::Expired)
        );
    }

    #[test]
    fn freshness_is_symmetric() {
        assert_eq!(check_fresh(t(1060), t(1000)), Ok(()));
        assert_eq!(check_fresh(t(940), t(1000)), Ok(()));
        assert_eq!(
            check_fresh(t(1061), t(1000)),
            Err(ValidationError::NotFresh)
        );
        assert_eq!(check_fresh(t(939), t(1000)), Err(ValidationError::NotFresh));
    }

    #[test]
    fn text_rules() {
        assert!(check_text("reason", "car hit", 10, false).is_ok());
        assert!(check_text("reason", "   ", 10, false).is_err());
        assert!(check_text("reason", "", 10, true).is_ok());
        assert!(check_text("reason", "12345678901", 10, false).is_err());
        assert!(check_text("reason", "a\nb", 10, false).is_err());
        assert!(check_text("reason", "a\u{7f}b", 10, false).is_err());
        // Right-to-left override and zero-width space disguise text on the owner's page.
        assert!(check_text("reason", "fire\u{202E}gpj.exe", 20, false).is_err());
        assert!(check_text("reason", "Fi\u{200B}re", 20, false).is_err());
        assert!(check_text("reason", "Straße 5, Zürich", 20, false).is_ok());
    }

    #[test]
    fn separators_soft_hyphens_tags_and_fillers_are_refused() {
        let refused = [
            ("line separator", '\u{2028}'),
            ("paragraph separator", '\u{2029}'),
            ("soft hyphen", '\u{00AD}'),
            ("first tag character", '\u{E0000}'),
            ("tag latin small a", '\u{E0061}'),
            ("cancel tag", '\u{E007F}'),
            ("hangul filler", '\u{3164}'),
        ];
        for (name, c) in refused {
            let text = format!("Fire{c}on Main St");
            assert_eq!(
                check_text("reason", &text, 40, false),
                Err(ValidationError::ControlCharacter { field: "reason" }),
                "{name} (U+{:04X}) must be refused",
                u32::from(c)
            );
        }
        // Alone, the Hangul filler would make a blank name look like a name.
        assert!(check_text("display name", "\u{3164}", 40, false).is_err());
        // Their neighbors are ordinary text.
        for c in [
            '\u{00AC}',
            '\u{00AE}',
            '\u{3163}',
            '\u{3165}',
            '\u{E0080}',
            '\u{2027}',
        ] {
            let text = format!("a{c}b");
            assert!(
                check_text("reason", &text, 40, false).is_ok(),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn windows_and_lists() {
        assert!(check_window("w", t(2), t(1), Duration::from_secs(10)).is_err());
        assert!(check_window("w", t(1), t(1), Duration::from_secs(10)).is_err());
        assert!(check_window("w", t(1), t(12), Duration::from_secs(10)).is_err());
        assert!(check_window("w", t(1), t(11), Duration::from_secs(10)).is_ok());
        assert!(check_count("clips", 0, 3).is_err());
        assert!(check_count("clips", 4, 3).is_err());
        assert!(check_unique("clips", &[3, 1, 3]).is_err());
        assert!(check_unique("clips", &[3, 1, 2]).is_ok());
    }
}
