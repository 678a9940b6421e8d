//! Past runs for the benches that need a full history: the `i`th of `n`
//! runs spread evenly, oldest first, over the 60 days before `now`, with
//! an id that sorts by that time as the daemon's do.

use chrono::{DateTime, Duration, Utc};

/// When the `i`th of `n` runs started, and its id.
pub fn run_at(now: DateTime<Utc>, i: u64, n: u64) -> (DateTime<Utc>, String) {
    let span_ms = 60 * 86_400_000i64;
    let at = now - Duration::milliseconds(span_ms - (i as i64 * span_ms) / n as i64);
    let random: u128 = (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1 << 80) - 1);
    let id = ulid::Ulid::from_parts(at.timestamp_millis() as u64, random).to_string();
    (at, id)
}
