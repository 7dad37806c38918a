//! Calendar arithmetic and ISO-8601 formatting without a date library.
//!
//! All generated data lives in a fixed window ending at [`REF_END`]
//! (2026-11-01T00:00:00Z) so that output never depends on the wall clock.

/// Seconds per day.
pub const DAY: i64 = 86_400;
/// Seconds per hour.
pub const HOUR: i64 = 3_600;
/// Fixed reference "now" of the generated world: 2026-11-01T00:00:00Z.
pub const REF_END: i64 = days_from_civil(2026, 11, 1) * DAY;
/// Start of the simulated history: three years (3 × 365 days) before [`REF_END`].
pub const WINDOW_START: i64 = REF_END - 3 * 365 * DAY;

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)`.
pub const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn push_digits(out: &mut String, value: i64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut v = value.unsigned_abs();
    let mut i = buf.len();
    while v > 0 && i > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    if value < 0 {
        out.push('-');
    }
    for &b in &buf[start..] {
        out.push(b as char);
    }
}

/// Appends `YYYY-MM-DD` for a day number (days since the Unix epoch).
pub fn push_date(out: &mut String, days: i64) {
    let (y, m, d) = civil_from_days(days);
    push_digits(out, y, 4);
    out.push('-');
    push_digits(out, i64::from(m), 2);
    out.push('-');
    push_digits(out, i64::from(d), 2);
}

/// Appends `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (UTC).
pub fn push_timestamp(out: &mut String, secs: i64) {
    let days = secs.div_euclid(DAY);
    let rem = secs.rem_euclid(DAY);
    push_date(out, days);
    out.push('T');
    push_digits(out, rem / HOUR, 2);
    out.push(':');
    push_digits(out, rem % HOUR / 60, 2);
    out.push(':');
    push_digits(out, rem % 60, 2);
    out.push('Z');
}

/// A uniform instant in `[lo, hi)`, or `lo` when the range is empty.
pub fn between(rng: &mut rand::rngs::StdRng, lo: i64, hi: i64) -> i64 {
    use rand::Rng;
    if lo < hi {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

/// Formats Unix seconds as an ISO-8601 UTC timestamp.
pub fn timestamp(secs: i64) -> String {
    let mut s = String::with_capacity(20);
    push_timestamp(&mut s, secs);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_dates() {
        assert_eq!(REF_END, 1_793_491_200);
        assert_eq!(timestamp(REF_END), "2026-11-01T00:00:00Z");
        assert_eq!(timestamp(WINDOW_START), "2023-11-02T00:00:00Z");
        assert_eq!(timestamp(1_741_944_413), "2025-03-14T09:26:53Z");
        let mut s = String::new();
        push_date(&mut s, days_from_civil(1960, 2, 29));
        assert_eq!(s, "1960-02-29");
    }

    #[test]
    fn civil_round_trip() {
        for z in (-40_000..40_000).step_by(37) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
