//! Go `time.Duration` text: a hand port of `time.ParseDuration` and `Duration.String()`.
//!
//! Durations are signed nanosecond counts (`i64`), exactly like Go's. The `_std` helpers
//! convert to and from [`std::time::Duration`] for the (common) cases that cannot be negative.
//!
//! Grammar accepted by [`parse_go_duration`] (Go's): `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or a bare
//! `0`, with units `ns`, `us`, `µs` (U+00B5), `μs` (U+03BC), `ms`, `s`, `m`, `h`. No spaces, no
//! days. `1.5h`, `1h30m`, `.5s`, `5.s`, `-1m`, `+3s` are all valid; `1`, `1d`, `1 h`, `""` are not.

use std::fmt;
use std::time::Duration;

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// 1<<63: one past `i64::MAX`, the magnitude of `i64::MIN`.
const ONE_SHL_63: u64 = 1 << 63;

/// Why a duration string was rejected. [`fmt::Display`] gives a message for config errors
/// (`invalid duration "10x": unknown unit "x"`); [`DurationError::go_message`] gives Go's
/// exact error text (`time: unknown unit "x" in duration "10x"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {}{}", go_quote(input), match kind {
    DurationErrorKind::Syntax => String::new(),
    DurationErrorKind::Overflow => ": out of range".to_owned(),
    DurationErrorKind::MissingUnit => ": missing unit".to_owned(),
    DurationErrorKind::UnknownUnit(u) => format!(": unknown unit {}", go_quote(u)),
    DurationErrorKind::Negative => ": must not be negative".to_owned(),
})]
pub struct DurationError {
    /// The text that was parsed.
    pub input: String,
    pub kind: DurationErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationErrorKind {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`.
    Syntax,
    /// Larger than Go's `time.Duration` can hold (about 292 years).
    Overflow,
    /// A number without a unit (`"10"`).
    MissingUnit,
    /// A unit Go doesn't know (`"1d"`); holds the unit text.
    UnknownUnit(String),
    /// Only from the `_std` helpers: the value was negative.
    Negative,
}

impl DurationError {
    fn new(input: &str, kind: DurationErrorKind) -> Self {
        Self { input: input.to_owned(), kind }
    }

    /// The error text Go's `time.ParseDuration` would return for the same input.
    pub fn go_message(&self) -> String {
        let q = go_quote(&self.input);
        match &self.kind {
            DurationErrorKind::Syntax | DurationErrorKind::Overflow => {
                format!("time: invalid duration {q}")
            }
            DurationErrorKind::MissingUnit => format!("time: missing unit in duration {q}"),
            DurationErrorKind::UnknownUnit(u) => {
                format!("time: unknown unit {} in duration {q}", go_quote(u))
            }
            DurationErrorKind::Negative => format!("time: negative duration {q}"),
        }
    }
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => NANOSECOND,
        "us" | "\u{00B5}s" | "\u{03BC}s" => MICROSECOND,
        "ms" => MILLISECOND,
        "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        _ => return None,
    })
}

/// Go's `time.ParseDuration`: the signed number of nanoseconds.
pub fn parse_go_duration(input: &str) -> Result<i64, DurationError> {
    use DurationErrorKind::*;
    let err = |kind| DurationError::new(input, kind);
    let mut s = input.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err(Syntax));
    }
    let mut d: u64 = 0;
    while !s.is_empty() {
        // The next character must be [0-9.].
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(err(Syntax));
        }
        // Consume [0-9]*.
        let before = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(|| err(Overflow))?;
        s = rest;
        let pre = before != s.len();

        // Consume (\.[0-9]*)?.
        let mut post = false;
        let (mut f, mut scale) = (0u64, 1f64);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let before = s.len();
            let (ff, sc, rest) = leading_fraction(s);
            (f, scale, s) = (ff, sc, rest);
            post = before != s.len();
        }
        if !pre && !post {
            // No digits (".s", "-.s").
            return Err(err(Syntax));
        }

        // Consume the unit: everything up to the next '.' or digit.
        let i = s.iter().position(|&c| c == b'.' || c.is_ascii_digit()).unwrap_or(s.len());
        if i == 0 {
            return Err(err(MissingUnit));
        }
        let unit_bytes = &s[..i];
        s = &s[i..];
        let unit_text = String::from_utf8_lossy(unit_bytes).into_owned();
        let unit = unit_nanos(&unit_text).ok_or_else(|| err(UnknownUnit(unit_text.clone())))?;
        if v > ONE_SHL_63 / unit {
            return Err(err(Overflow));
        }
        v *= unit;
        if f > 0 {
            // float64 is needed to be nanosecond accurate for fractions of hours (as in Go).
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > ONE_SHL_63 {
                return Err(err(Overflow));
            }
        }
        d += v;
        if d > ONE_SHL_63 {
            return Err(err(Overflow));
        }
    }
    if neg {
        // d <= 1<<63, so the negation fits (i64::MIN when d == 1<<63).
        return Ok((d as i64).wrapping_neg());
    }
    if d > ONE_SHL_63 - 1 {
        return Err(err(Overflow));
    }
    Ok(d as i64)
}

/// Leading `[0-9]*`; `None` on overflow past 1<<63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if x > ONE_SHL_63 / 10 {
            return None;
        }
        x = x * 10 + u64::from(s[i] - b'0');
        if x > ONE_SHL_63 {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// Leading `[0-9]*` of a fraction; stops accumulating precision on overflow (never fails).
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut x: u64 = 0;
    let mut scale = 1f64;
    let mut overflow = false;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        let c = s[i];
        i += 1;
        if overflow {
            continue;
        }
        if x > (ONE_SHL_63 - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > ONE_SHL_63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[i..])
}

/// Go's `Duration.String()`: `1h30m0s`, `10s`, `1.5s`, `300ms`, `1µs`, `0s`, `-2m0s`.
pub fn format_go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let mut u = nanos.unsigned_abs();
    // Built back to front, as Go does.
    let mut out: Vec<u8> = Vec::with_capacity(32);
    if u < SECOND {
        out.push(b's');
        let prec;
        if u == 0 {
            return "0s".to_owned();
        } else if u < MICROSECOND {
            prec = 0;
            out.push(b'n');
        } else if u < MILLISECOND {
            prec = 3;
            // 'µ' (U+00B5) is 0xC2 0xB5; pushed reversed.
            out.push(0xB5);
            out.push(0xC2);
        } else {
            prec = 6;
            out.push(b'm');
        }
        u = fmt_frac(&mut out, u, prec);
        fmt_int(&mut out, u);
    } else {
        out.push(b's');
        u = fmt_frac(&mut out, u, 9);
        // u is now integer seconds.
        fmt_int(&mut out, u % 60);
        u /= 60;
        if u > 0 {
            out.push(b'm');
            fmt_int(&mut out, u % 60);
            u /= 60;
            if u > 0 {
                out.push(b'h');
                fmt_int(&mut out, u);
            }
        }
    }
    if neg {
        out.push(b'-');
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII and 'µ' only")
}

/// Pushes (reversed) the fraction v/10^prec without trailing zeros, and the '.' if any digit
/// was written; returns v/10^prec.
fn fmt_frac(out: &mut Vec<u8>, mut v: u64, prec: usize) -> u64 {
    let mut print = false;
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        print = print || digit != 0;
        if print {
            out.push(b'0' + digit);
        }
        v /= 10;
    }
    if print {
        out.push(b'.');
    }
    v
}

/// Pushes (reversed) the decimal digits of v.
fn fmt_int(out: &mut Vec<u8>, mut v: u64) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    while v > 0 {
        out.push(b'0' + (v % 10) as u8);
        v /= 10;
    }
}

/// [`parse_go_duration`] for values that must not be negative.
pub fn parse_go_duration_std(input: &str) -> Result<Duration, DurationError> {
    let nanos = parse_go_duration(input)?;
    u64::try_from(nanos).map(Duration::from_nanos).map_err(|_| DurationError::new(input, DurationErrorKind::Negative))
}

/// [`format_go_duration`] for a [`std::time::Duration`]; values beyond Go's range (~292
/// years) are clamped to `i64::MAX` nanoseconds.
pub fn format_std_duration(d: Duration) -> String {
    format_go_duration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Go's `time.quote`: double quotes, `"` and `\` escaped, bytes of non-ASCII or control
/// characters written as `\xNN`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out.push('"');
    out
}

/// A Go-formatted duration, for `Display` contexts: `format!("{}", GoDuration(d))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_std_duration(self.0))
    }
}

#[cfg(test)]
#[allow(clippy::identity_op, clippy::neg_multiply)]
mod tests {
    use super::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    /// Go's own `parseDurationTests` plus the config-file values used in practice.
    #[test]
    fn parse_valid() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12µs", 12 * US),
            ("12μs", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("52763797000ns", 52763797000 * NS),
            ("0.3333333333333333333h", 20 * M),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * M),
            ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
            // Values seen in configs.
            ("10s", 10 * S),
            ("1h30m", H + 30 * M),
            ("1.5s", 1500 * MS),
            ("300ms", 300 * MS),
            ("2h45m30.5s", 2 * H + 45 * M + 30 * S + 500 * MS),
            ("15s", 15 * S),
            ("2s", 2 * S),
            ("1h", H),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_go_duration(input), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn parse_invalid() {
        use DurationErrorKind::*;
        let cases: &[(&str, DurationErrorKind, &str)] = &[
            ("", Syntax, r#"time: invalid duration """#),
            ("3", MissingUnit, r#"time: missing unit in duration "3""#),
            ("-", Syntax, r#"time: invalid duration "-""#),
            ("s", Syntax, r#"time: invalid duration "s""#),
            (".", Syntax, r#"time: invalid duration ".""#),
            ("-.", Syntax, r#"time: invalid duration "-.""#),
            (".s", Syntax, r#"time: invalid duration ".s""#),
            ("+.s", Syntax, r#"time: invalid duration "+.s""#),
            ("1d", UnknownUnit("d".into()), r#"time: unknown unit "d" in duration "1d""#),
            ("10x", UnknownUnit("x".into()), r#"time: unknown unit "x" in duration "10x""#),
            ("1h 30m", UnknownUnit("h ".into()), r#"time: unknown unit "h " in duration "1h 30m""#),
            (" 1s", Syntax, r#"time: invalid duration " 1s""#),
            ("10000000000", MissingUnit, r#"time: missing unit in duration "10000000000""#),
            ("\u{85}\u{85}", Syntax, r#"time: invalid duration "\xc2\x85\xc2\x85""#),
            ("\u{FFFD}", Syntax, r#"time: invalid duration "\xef\xbf\xbd""#),
            ("9223372036854775810ns", Overflow, r#"time: invalid duration "9223372036854775810ns""#),
            ("9223372036854775808ns", Overflow, r#"time: invalid duration "9223372036854775808ns""#),
            ("-9223372036854775809ns", Overflow, r#"time: invalid duration "-9223372036854775809ns""#),
            ("9223372036854776us", Overflow, r#"time: invalid duration "9223372036854776us""#),
            ("3000000h", Overflow, r#"time: invalid duration "3000000h""#),
            ("9223372036854775.808us", Overflow, r#"time: invalid duration "9223372036854775.808us""#),
            ("9223372036854ms775us808ns", Overflow, r#"time: invalid duration "9223372036854ms775us808ns""#),
        ];
        for (input, kind, go) in cases {
            let e = parse_go_duration(input).expect_err(input);
            assert_eq!(&e.kind, kind, "input {input:?}");
            assert_eq!(e.go_message(), *go, "input {input:?}");
        }
    }

    #[test]
    fn display_message() {
        let e = parse_go_duration("10x").unwrap_err();
        assert_eq!(e.to_string(), r#"invalid duration "10x": unknown unit "x""#);
        assert_eq!(parse_go_duration("").unwrap_err().to_string(), r#"invalid duration """#);
        assert_eq!(parse_go_duration("10").unwrap_err().to_string(), r#"invalid duration "10": missing unit"#);
        assert_eq!(
            parse_go_duration("99999999h").unwrap_err().to_string(),
            r#"invalid duration "99999999h": out of range"#
        );
    }

    /// Go's `durationTests` (Duration.String) plus config values.
    #[test]
    fn format() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1 * NS, "1ns"),
            (1100 * NS, "1.1µs"),
            (2200 * US, "2.2ms"),
            (3300 * MS, "3.3s"),
            (4 * M + 5 * S, "4m5s"),
            (4 * M + 5001 * MS, "4m5.001s"),
            (5 * H + 6 * M + 7001 * MS, "5h6m7.001s"),
            (8 * M + 1 * NS, "8m0.000000001s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (-1 * NS, "-1ns"),
            (-(4 * M + 5 * S), "-4m5s"),
            (10 * S, "10s"),
            (H + 30 * M, "1h30m0s"),
            (1500 * MS, "1.5s"),
            (300 * MS, "300ms"),
            (2 * H + 45 * M + 30 * S + 500 * MS, "2h45m30.5s"),
            (H, "1h0m0s"),
            (2 * M, "2m0s"),
            (10 * H, "10h0m0s"),
            (1 * US, "1µs"),
            (999 * NS, "999ns"),
        ];
        for &(nanos, want) in cases {
            assert_eq!(format_go_duration(nanos), want, "nanos {nanos}");
            // Everything Go prints, Go parses back to the same value.
            assert_eq!(parse_go_duration(want), Ok(nanos), "round trip {want}");
        }
    }

    #[test]
    fn std_helpers() {
        assert_eq!(parse_go_duration_std("1h"), Ok(Duration::from_secs(3600)));
        let e = parse_go_duration_std("-1s").unwrap_err();
        assert_eq!(e.kind, DurationErrorKind::Negative);
        assert_eq!(e.to_string(), r#"invalid duration "-1s": must not be negative"#);
        assert_eq!(format_std_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_std_duration(Duration::MAX), "2562047h47m16.854775807s");
        assert_eq!(GoDuration(Duration::from_secs(90)).to_string(), "1m30s");
    }
}
