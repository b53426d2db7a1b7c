//! Go duration strings (`metav1.Duration`) as the CRDs carry them, and their conversion to
//! SPIRE's whole-second TTLs.
//!
//! The parser is private and sits behind [`ttl_from_go_duration`] so it can be swapped for
//! the config crate's parser without touching callers.

use std::time::Duration;

/// Parses a Go duration string and truncates it to whole seconds, as upstream does when it
/// sends a TTL to SPIRE (`int32(d / time.Second)`).
///
/// Divergences (documented): an empty string is zero (upstream fails to decode the whole
/// object); negative values and values over `i32::MAX` seconds are refused (upstream sends
/// them on and SPIRE rejects or wraps them).
pub(crate) fn ttl_from_go_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Ok(Duration::ZERO);
    }
    let nanos = parse_go_duration_nanos(s)?;
    if nanos < 0 {
        return Err(format!("duration {s:?} must not be negative"));
    }
    let secs = nanos / 1_000_000_000;
    if secs > i64::from(i32::MAX) {
        return Err(format!("duration {s:?} is longer than SPIRE accepts ({} seconds)", i32::MAX));
    }
    Ok(Duration::from_secs(secs as u64))
}

/// Go `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`. Returns nanoseconds.
fn parse_go_duration_nanos(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        // The next character must be [0-9.].
        let c = s.as_bytes()[0];
        if !(c == b'.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let pre = int_len > 0;
        let mut v: u64 = 0;
        for d in s[..int_len].bytes() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .filter(|v| *v <= 1 << 63)
                .ok_or_else(invalid)?;
        }
        s = &s[int_len..];
        // Fraction.
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            let frac_len = s.bytes().take_while(u8::is_ascii_digit).count();
            post = frac_len > 0;
            let mut overflow = false;
            for d in s[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                match frac.checked_mul(10).and_then(|f| f.checked_add(u64::from(d - b'0'))) {
                    Some(f) if f <= 1 << 63 => {
                        frac = f;
                        scale *= 10.0;
                    }
                    _ => overflow = true,
                }
            }
            s = &s[frac_len..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        // Unit.
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit_str = &s[..unit_len];
        let unit: u64 = match unit_str {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => return Err(format!("time: unknown unit {unit_str:?} in duration {orig:?}")),
        };
        s = &s[unit_len..];
        if v > (1 << 63) / unit {
            return Err(invalid());
        }
        v *= unit;
        if frac > 0 {
            v += (frac as f64 * (unit as f64 / scale)) as u64;
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        total = total.checked_add(v).filter(|t| *t <= 1 << 63).ok_or_else(invalid)?;
    }
    if neg {
        return Ok((total as i128).wrapping_neg() as i64);
    }
    if total > i64::MAX as u64 {
        return Err(invalid());
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("1s", 1_000_000_000),
            ("1h", 3_600_000_000_000),
            ("90s", 90_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("100ms", 100_000_000),
            ("60ns", 60),
            ("3us", 3_000),
            ("3\u{b5}s", 3_000),
            ("3\u{3bc}s", 3_000),
            ("-1s", -1_000_000_000),
            ("+2m", 120_000_000_000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_go_duration_nanos(s), Ok(*want), "{s}");
        }
        for bad in ["", "1", "s", ".s", "1x", "1h 2m", "--1s", "9999999999999999999h", "1.2.3s"] {
            assert!(parse_go_duration_nanos(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ttl_truncates_to_seconds() {
        assert_eq!(ttl_from_go_duration("1.9s"), Ok(Duration::from_secs(1)));
        assert_eq!(ttl_from_go_duration("60ns"), Ok(Duration::ZERO));
        assert_eq!(ttl_from_go_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(ttl_from_go_duration(""), Ok(Duration::ZERO));
        assert!(ttl_from_go_duration("-1s").is_err());
        assert!(ttl_from_go_duration("1000000h").is_err());
        assert!(ttl_from_go_duration("1 h").is_err());
    }
}
