//! Schedule expressions: parsing must never panic, and a schedule that
//! parses must give fire times that move forward, in any zone, from any
//! instant, across daylight-saving changes.
#![no_main]

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use libfuzzer_sys::fuzz_target;
use opsd::schedule::Schedule;

/// Zones with the awkward cases: DST both ways, half-hour offsets, none.
const ZONES: &[Tz] = &[
    chrono_tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Asia::Kolkata,
    chrono_tz::America::Santiago,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(schedule) = Schedule::parse(text) else {
        return;
    };
    // The text a schedule keeps parses again (it is what `schedule list` shows).
    assert!(
        Schedule::parse(schedule.as_str()).is_ok(),
        "{text:?} does not re-parse"
    );
    let tz = ZONES[usize::from(pick) % ZONES.len()];
    // Start near a DST change or a year end, by the pick's high bits.
    let starts = [1_711_846_800, 1_730_595_600, 1_735_689_000, 951_782_400];
    let start = DateTime::<Utc>::from_timestamp(starts[usize::from(pick >> 4) % starts.len()], 0)
        .expect("a fixed, valid timestamp");
    let fires = schedule.upcoming(start, tz, 6);
    let mut last = start;
    for fire in fires {
        assert!(
            fire > last,
            "{text:?} in {tz}: {fire} does not follow {last}"
        );
        last = fire;
    }
});
