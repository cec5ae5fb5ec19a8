//! Kubernetes' `metav1.Duration`: a Go `time.Duration` written as Go writes it
//! (`"1m30s"`, `"1.5s"`, `"300ms"`), read as Go's `time.ParseDuration` reads it. MetalLB's
//! objects carry their timers this way, and its conversion webhook re-encodes them, so
//! `"90s"` comes back as `"1m30s"`: the same is done here.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A signed number of nanoseconds, as Go's `time.Duration`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    nanos: i64,
}

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// Go's `1<<63`: the magnitude of the most negative duration.
const MAGNITUDE_LIMIT: u64 = 1 << 63;

impl Duration {
    pub const fn from_nanos(nanos: i64) -> Self {
        Self { nanos }
    }

    pub const fn as_nanos(self) -> i64 {
        self.nanos
    }

    /// The duration as a `std` one; `None` when negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.nanos)
            .ok()
            .map(std::time::Duration::from_nanos)
    }
}

/// Why a text is not a Go duration; the message is Go's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("time: {reason} {text:?}")]
pub struct ParseDurationError {
    reason: &'static str,
    text: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    /// `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`, with Go's units (`ns`, `us`, `µs`,
    /// `μs`, `ms`, `s`, `m`, `h`) and Go's overflow rules.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| ParseDurationError {
            reason,
            text: text.to_owned(),
        };
        let (negative, mut rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        if rest == "0" {
            return Ok(Self::default());
        }
        if rest.is_empty() {
            return Err(error("invalid duration"));
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
                return Err(error("invalid duration"));
            }
            let (whole, after_whole) =
                leading_int(rest).ok_or_else(|| error("invalid duration"))?;
            let had_whole = after_whole.len() != rest.len();
            rest = after_whole;
            let (mut fraction, mut scale, mut had_fraction) = (0, 1.0, false);
            if let Some(after_point) = rest.strip_prefix('.') {
                let after_fraction;
                (fraction, scale, after_fraction) = leading_fraction(after_point);
                had_fraction = after_fraction.len() != after_point.len();
                rest = after_fraction;
            }
            if !had_whole && !had_fraction {
                return Err(error("invalid duration"));
            }
            let unit_len = rest
                .find(|c: char| c == '.' || c.is_ascii_digit())
                .unwrap_or(rest.len());
            if unit_len == 0 {
                return Err(error("missing unit in duration"));
            }
            let unit = match &rest[..unit_len] {
                "ns" => NANOSECOND,
                "us" | "\u{b5}s" | "\u{3bc}s" => MICROSECOND,
                "ms" => MILLISECOND,
                "s" => SECOND,
                "m" => MINUTE,
                "h" => HOUR,
                _ => return Err(error("unknown unit in duration")),
            };
            rest = &rest[unit_len..];
            if whole > MAGNITUDE_LIMIT / unit {
                return Err(error("invalid duration"));
            }
            let mut value = whole * unit;
            if fraction > 0 {
                // As Go: in float64, nanosecond-accurate up to fractions of an hour.
                value += (fraction as f64 * (unit as f64 / scale)) as u64;
                if value > MAGNITUDE_LIMIT {
                    return Err(error("invalid duration"));
                }
            }
            total += value;
            if total > MAGNITUDE_LIMIT {
                return Err(error("invalid duration"));
            }
        }
        if negative {
            // total <= 2^63, so the negation fits.
            return Ok(Self::from_nanos((total as i64).wrapping_neg()));
        }
        i64::try_from(total)
            .map(Self::from_nanos)
            .map_err(|_| error("invalid duration"))
    }
}

/// The leading digits as a number (`None` past 2^63), and what follows them.
fn leading_int(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let mut value: u64 = 0;
    for digit in text.bytes().take(digits) {
        if value > MAGNITUDE_LIMIT / 10 {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
        if value > MAGNITUDE_LIMIT {
            return None;
        }
    }
    Some((value, &text[digits..]))
}

/// The digits after a decimal point: their value, ten to the number of digits kept, and
/// what follows. Digits past what fits are read and ignored, as Go does.
fn leading_fraction(text: &str) -> (u64, f64, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (mut value, mut scale) = (0u64, 1.0);
    for digit in text.bytes().take(digits) {
        if value > (MAGNITUDE_LIMIT - 1) / 10 {
            break;
        }
        let next = value * 10 + u64::from(digit - b'0');
        if next > MAGNITUDE_LIMIT {
            break;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale, &text[digits..])
}

impl fmt::Display for Duration {
    /// Go's `Duration.String`: `72h3m0.5s`, `1.2ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.unsigned_abs();
        if magnitude == 0 {
            return f.write_str("0s");
        }
        if magnitude < SECOND {
            let (unit, digits, name) = if magnitude < MICROSECOND {
                (NANOSECOND, 0, "ns")
            } else if magnitude < MILLISECOND {
                (MICROSECOND, 3, "\u{b5}s")
            } else {
                (MILLISECOND, 6, "ms")
            };
            let fraction = fraction_text(magnitude % unit, digits);
            return write!(f, "{sign}{}{fraction}{name}", magnitude / unit);
        }
        let seconds = magnitude / SECOND;
        let fraction = fraction_text(magnitude % SECOND, 9);
        let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
        let seconds = seconds % 60;
        write!(f, "{sign}")?;
        if hours > 0 {
            write!(f, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write!(f, "{seconds}{fraction}s")
    }
}

/// `.5`, `.000001`: `value` as a fraction of `digits` digits without trailing zeros;
/// empty when zero.
fn fraction_text(value: u64, digits: usize) -> String {
    if value == 0 {
        return String::new();
    }
    let text = format!(".{value:0digits$}");
    text.trim_end_matches('0').to_owned()
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From Go's `time` package tests (parseDurationTests), plus MetalLB's timer values.
    #[test]
    fn parses_as_go() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * SECOND as i64),
            ("30s", 30 * SECOND as i64),
            ("1478s", 1478 * SECOND as i64),
            ("-5s", -5 * SECOND as i64),
            ("+5s", 5 * SECOND as i64),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * SECOND as i64),
            ("5.6s", 5 * SECOND as i64 + 600 * MILLISECOND as i64),
            ("5.s", 5 * SECOND as i64),
            (".5s", 500 * MILLISECOND as i64),
            ("1.0s", SECOND as i64),
            ("1.00s", SECOND as i64),
            ("1.004s", SECOND as i64 + 4 * MILLISECOND as i64),
            ("100.00100s", 100 * SECOND as i64 + MILLISECOND as i64),
            ("10ns", 10),
            ("11us", 11 * MICROSECOND as i64),
            ("12\u{b5}s", 12 * MICROSECOND as i64),
            ("12\u{3bc}s", 12 * MICROSECOND as i64),
            ("13ms", 13 * MILLISECOND as i64),
            ("14s", 14 * SECOND as i64),
            ("15m", 15 * MINUTE as i64),
            ("16h", 16 * HOUR as i64),
            ("3h30m", 3 * HOUR as i64 + 30 * MINUTE as i64),
            (
                "10.5s4m",
                4 * MINUTE as i64 + 10 * SECOND as i64 + 500 * MILLISECOND as i64,
            ),
            (
                "-2m3.4s",
                -(2 * MINUTE as i64 + 3 * SECOND as i64 + 400 * MILLISECOND as i64),
            ),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425 * MILLISECOND as i64),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * MINUTE as i64),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * MINUTE as i64),
            (
                "0.830103483285477580700h",
                49 * MINUTE as i64 + 48 * SECOND as i64 + 372_539_827,
            ),
        ];
        for (text, nanos) in ok {
            assert_eq!(
                text.parse::<Duration>(),
                Ok(Duration::from_nanos(*nanos)),
                "{text}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("", "time: invalid duration \"\""),
            ("3", "time: missing unit in duration \"3\""),
            ("-", "time: invalid duration \"-\""),
            ("s", "time: invalid duration \"s\""),
            (".", "time: invalid duration \".\""),
            ("-.", "time: invalid duration \"-.\""),
            (".s", "time: invalid duration \".s\""),
            ("+.s", "time: invalid duration \"+.s\""),
            ("1d", "time: unknown unit in duration \"1d\""),
            (
                "9223372036854775808ns",
                "time: invalid duration \"9223372036854775808ns\"",
            ),
            (
                "9223372036854775.808us",
                "time: invalid duration \"9223372036854775.808us\"",
            ),
            (
                "-9223372036854775809ns",
                "time: invalid duration \"-9223372036854775809ns\"",
            ),
            ("3000000h", "time: invalid duration \"3000000h\""),
            (
                "9223372036854775807ns1ns",
                "time: invalid duration \"9223372036854775807ns1ns\"",
            ),
            ("90", "time: missing unit in duration \"90\""),
            ("banana", "time: invalid duration \"banana\""),
        ];
        for (text, message) in bad {
            let error = text.parse::<Duration>().expect_err(text);
            assert_eq!(error.to_string(), *message, "{text}");
        }
    }

    /// From Go's `time` package tests (durationTests).
    #[test]
    fn prints_as_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1100, "1.1\u{b5}s"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            ((4 * MINUTE + 5 * SECOND) as i64, "4m5s"),
            ((4 * MINUTE + 5001 * MILLISECOND) as i64, "4m5.001s"),
            (
                (5 * HOUR + 6 * MINUTE + 7001 * MILLISECOND) as i64,
                "5h6m7.001s",
            ),
            ((8 * MINUTE) as i64 + 1, "8m0.000000001s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (-1, "-1ns"),
            (90 * SECOND as i64, "1m30s"),
            (180 * SECOND as i64, "3m0s"),
            (HOUR as i64, "1h0m0s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(Duration::from_nanos(*nanos).to_string(), *text, "{nanos}");
        }
    }

    #[test]
    fn reads_and_writes_json_as_metav1() {
        let read: Duration = serde_json::from_str("\"90s\"").unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), "\"1m30s\"");
        let error = serde_json::from_str::<Duration>("90").unwrap_err();
        assert!(error.to_string().contains("expected a string"), "{error}");
        let error = serde_json::from_str::<Duration>("\"90\"").unwrap_err();
        assert!(
            error.to_string().contains("missing unit in duration"),
            "{error}"
        );
        assert_eq!(Duration::from_nanos(-1).to_std(), None);
        assert_eq!(
            Duration::from_nanos(1_500_000_000).to_std(),
            Some(std::time::Duration::from_millis(1500))
        );
    }
}
