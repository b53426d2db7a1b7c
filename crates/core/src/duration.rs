//! Go duration strings (`metav1.Duration`) as the CRDs carry them, and their conversion to
//! SPIRE's whole-second TTLs.
//!
//! Parsing is `scm_config::parse_go_duration` (a port of Go's `time.ParseDuration`).

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

fn parse_go_duration_nanos(s: &str) -> Result<i64, String> {
    scm_config::parse_go_duration(s).map_err(|e| e.go_message())
}

#[cfg(test)]
mod tests {
    use super::*;

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
