//! Durations in the config file's notation: `"500ms"`, `"30s"`, `"1.5h"`, `"1h30m"`.
//!
//! A duration is one or more `<number><unit>` parts, summed; the number may have a
//! fraction, whitespace may separate anything, and the units are `ms`, `s`, `m`, `h`
//! and `d`. A bare TOML number is rejected with a hint to add a unit, because `30`
//! could mean seconds or milliseconds and the file should say which.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_S: u128 = 1_000 * NANOS_PER_MS;
const UNITS: [(&str, u128); 5] = [
    ("d", 86_400 * NANOS_PER_S),
    ("h", 3_600 * NANOS_PER_S),
    ("m", 60 * NANOS_PER_S),
    ("s", NANOS_PER_S),
    ("ms", NANOS_PER_MS),
];
const UNIT_LIST: &str = "ms, s, m, h or d";

/// Parses a duration such as `"1h30m"`; the error says what is wrong and quotes the input.
pub(super) fn parse(input: &str) -> Result<Duration, String> {
    let fail = |reason: String| format!("invalid duration {input:?}: {reason}");
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(fail(r#"empty; write e.g. "30s" or "1h30m""#.to_owned()));
    }
    if rest.starts_with('-') {
        return Err(fail("a duration cannot be negative".to_owned()));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() {
            return Err(fail(format!("expected a number at {rest:?}")));
        }
        let after = after.trim_start();
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if unit.is_empty() {
            return Err(fail(format!(
                "{number} has no unit; add one of {UNIT_LIST} (e.g. \"{number}s\")"
            )));
        }
        let unit_nanos = UNITS
            .iter()
            .find(|(name, _)| unit.eq_ignore_ascii_case(name))
            .map(|&(_, nanos)| nanos)
            .ok_or_else(|| fail(format!("unknown unit {unit:?} (expected {UNIT_LIST})")))?;
        let part = scale(number, unit_nanos).map_err(fail)?;
        total = total
            .checked_add(part)
            .ok_or_else(|| fail("too large".to_owned()))?;
        rest = after.trim_start();
    }
    let secs = u64::try_from(total / NANOS_PER_S).map_err(|_| fail("too large".to_owned()))?;
    let nanos =
        u32::try_from(total % NANOS_PER_S).expect("a remainder of a division by 10^9 fits in u32");
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits with at most one decimal point) times `unit_nanos`, rounded to the
/// nearest nanosecond.
fn scale(number: &str, unit_nanos: u128) -> Result<u128, String> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err("expected digits around the decimal point".to_owned());
    }
    if fraction.contains('.') {
        return Err(format!("more than one decimal point in {number:?}"));
    }
    if fraction.len() > 18 {
        return Err(format!("too many decimal places in {number:?}"));
    }
    let digits = |text: &str| -> Result<u128, String> {
        if text.is_empty() {
            Ok(0)
        } else {
            text.parse::<u128>().map_err(|_| "too large".to_owned())
        }
    };
    let too_large = || "too large".to_owned();
    let denominator = 10u128.pow(fraction.len() as u32);
    let whole_nanos = digits(whole)?
        .checked_mul(unit_nanos)
        .ok_or_else(too_large)?;
    // fraction < 10^18 and unit_nanos < 10^14, so the product fits easily in u128.
    let fraction_nanos = (digits(fraction)? * unit_nanos + denominator / 2) / denominator;
    whole_nanos
        .checked_add(fraction_nanos)
        .ok_or_else(too_large)
}

/// Writes `duration` in the notation [`parse`] reads back exactly: `"1h30m"`, `"500ms"`,
/// `"0s"`, with a decimal millisecond part only for sub-millisecond precision (`"1.5ms"`).
pub(super) fn format(duration: Duration) -> String {
    let mut nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for &(name, unit_nanos) in &UNITS[..4] {
        let count = nanos / unit_nanos;
        nanos %= unit_nanos;
        if count > 0 {
            out.push_str(&format!("{count}{name}"));
        }
    }
    if nanos > 0 {
        let (millis, rest) = (nanos / NANOS_PER_MS, nanos % NANOS_PER_MS);
        if rest == 0 {
            out.push_str(&format!("{millis}ms"));
        } else {
            let digits = format!("{rest:06}");
            out.push_str(&format!("{millis}.{}ms", digits.trim_end_matches('0')));
        }
    }
    out
}

/// A [`Duration`] read from a string in the config notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DurationSetting(pub(super) Duration);

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = DurationSetting;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration such as "500ms", "30s" or "1h30m""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSetting, E> {
                parse(v).map(DurationSetting).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationSetting, E> {
                Err(E::custom(bare_number(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationSetting, E> {
                Err(E::custom(bare_number(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationSetting, E> {
                Err(E::custom(bare_number(v)))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

fn bare_number(v: impl fmt::Display) -> String {
    format!(
        "a duration needs a unit: write \"{v}s\" (or {UNIT_LIST}) rather than the bare number {v}"
    )
}

/// `serialize_with` for a [`Duration`]: the string [`format`] makes.
pub(super) fn serialize<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// `serialize_with` for an optional [`Duration`] (`None` is skipped by the caller).
pub(super) fn serialize_option<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    duration.map(format).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Duration, &str>) {
        match (parse(input), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input:?}"),
            (Err(got), Err(want)) => {
                assert!(
                    got.contains(want),
                    "{input:?}: error {got:?} lacks {want:?}"
                );
                assert!(
                    got.contains(&format!("{input:?}")),
                    "{input:?}: error {got:?} does not quote the input"
                );
            }
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses() {
        let ms = Duration::from_millis;
        check("500ms", Ok(ms(500)));
        check("30s", Ok(ms(30_000)));
        check("10m", Ok(ms(600_000)));
        check("2h", Ok(ms(7_200_000)));
        check("1d", Ok(ms(86_400_000)));
        check("1.5h", Ok(ms(5_400_000)));
        check(".5s", Ok(ms(500)));
        check("1h30m", Ok(ms(5_400_000)));
        check(" 1h 30m 15s ", Ok(ms(5_415_000)));
        check("30 s", Ok(ms(30_000)));
        check("1M", Ok(ms(60_000)));
        check("0s", Ok(Duration::ZERO));
        check("1.5ms", Ok(Duration::from_micros(1_500)));
        check("0.000000001s", Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn rejects() {
        check("", Err("empty"));
        check("30", Err("30 has no unit"));
        check("1h30", Err("30 has no unit"));
        check("-5s", Err("negative"));
        check("5 parsecs", Err("unknown unit \"parsecs\""));
        check("h", Err("expected a number"));
        check("1.2.3s", Err("more than one decimal point"));
        check(".s", Err("digits"));
        check("1e3s", Err("unknown unit \"e\""));
        check("99999999999999999999999d", Err("too large"));
    }

    #[test]
    fn format_reads_back_exactly() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(5_400), "1h30m"),
            (Duration::from_secs(90_061), "1d1h1m1s"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_nanos(1), "0.000001ms"),
            (Duration::new(61, 250_000_000), "1m1s250ms"),
        ];
        for (duration, text) in cases {
            assert_eq!(format(duration), text);
            assert_eq!(parse(text), Ok(duration), "{text}");
        }
    }
}
