//! Durations written as `250ms`, `10s`, `30m`, `1h 30m`, at most [`MAX_DURATION`]: every
//! duration key of the file is read through [`parse`].

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The longest duration any key accepts: one year (`1y`, 365.25 days, as humantime counts it).
///
/// Every duration goes through [`parse`], so no key can carry a value that overflows
/// an `Instant` addition in hyper, tokio or our own deadlines (`1000000000y` parses as a
/// `Duration` but panics there); a year is far beyond any sensible timeout or interval.
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);

/// Reads a duration key (`#[serde(with = "duration")]`).
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Parses one duration; the error says what is wrong and how to write one.
pub fn parse(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?} ({e}); write e.g. 250ms, 10s, 30m"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "duration {text:?} is too long: at most 1y (365d 6h)"
        ));
    }
    Ok(d)
}
