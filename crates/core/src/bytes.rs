//! [`ByteSize`]: a byte count that parses and prints human units.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ParseError;

/// A number of bytes.
///
/// Parses `"4096"`, `"512MiB"`, `"1.5 GiB"`, `"4GB"`, `"64 k"`: decimal units (`kB`, `MB`,
/// `GB`, `TB`, `PB`) are powers of 1000, binary units (`KiB`, `MiB`, `GiB`, `TiB`, `PiB`, and the
/// bare letters `K`, `M`, `G`, `T`, `P`) are powers of 1024; unit letters are case-insensitive.
/// Fractions round to the nearest byte. Negative, empty or overflowing input is an
/// [`ParseError::ByteSize`] that quotes the input.
///
/// Displays in binary units with two decimals unless exact (`"512 MiB"`, `"1.50 GiB"`).
/// Serialises as a plain integer; deserialises from an integer or a string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ByteSize(u64);

const KIB: u64 = 1024;
const UNITS: [(&str, u64); 17] = [
    ("b", 1),
    ("k", KIB),
    ("kb", 1000),
    ("kib", KIB),
    ("m", KIB * KIB),
    ("mb", 1000 * 1000),
    ("mib", KIB * KIB),
    ("g", KIB * KIB * KIB),
    ("gb", 1000 * 1000 * 1000),
    ("gib", KIB * KIB * KIB),
    ("t", KIB * KIB * KIB * KIB),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("tib", KIB * KIB * KIB * KIB),
    ("p", KIB * KIB * KIB * KIB * KIB),
    ("pb", 1000 * 1000 * 1000 * 1000 * 1000),
    ("pib", KIB * KIB * KIB * KIB * KIB),
    ("", 1),
];

impl ByteSize {
    /// Zero bytes.
    pub const ZERO: ByteSize = ByteSize(0);

    /// `n` bytes.
    pub const fn b(n: u64) -> Self {
        ByteSize(n)
    }
    /// `n` KiB (1024 bytes each).
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * KIB)
    }
    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * KIB * KIB)
    }
    /// `n` GiB.
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * KIB * KIB * KIB)
    }
    /// The number of bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for ByteSize {
    fn from(n: u64) -> Self {
        ByteSize(n)
    }
}

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> Self {
        b.0
    }
}

impl FromStr for ByteSize {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Self, ParseError> {
        let fail = |reason| ParseError::ByteSize {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(fail("empty string"));
        }
        if s.starts_with('-') {
            return Err(fail("a size cannot be negative"));
        }
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(number_end);
        let unit = unit.trim_start().to_ascii_lowercase();
        let multiplier = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, m)| m)
            .ok_or_else(|| {
                fail("unknown unit (expected B, kB, MB, GB, TB, PB, KiB, MiB, GiB, TiB or PiB)")
            })?;
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(fail("expected a number"));
        }
        if frac_part.contains('.') {
            return Err(fail("more than one decimal point"));
        }
        if frac_part.len() > 18 {
            return Err(fail("too many decimal places"));
        }
        let parse = |digits: &str| -> Result<u128, ParseError> {
            if digits.is_empty() {
                Ok(0)
            } else {
                digits.parse::<u128>().map_err(|_| fail("number too large"))
            }
        };
        let scale = 10u128.pow(frac_part.len() as u32);
        let mantissa = parse(int_part)?
            .checked_mul(scale)
            .and_then(|m| m.checked_add(parse(frac_part).ok()?))
            .ok_or_else(|| fail("number too large"))?;
        let scaled = mantissa
            .checked_mul(u128::from(multiplier))
            .ok_or_else(|| fail("number too large"))?;
        let rounded = (scaled + scale / 2) / scale;
        u64::try_from(rounded)
            .map(ByteSize)
            .map_err(|_| fail("more than 2^64 - 1 bytes"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut unit = 1u64;
        let mut index = 0;
        while index + 1 < NAMES.len() && self.0 / unit >= KIB {
            unit *= KIB;
            index += 1;
        }
        if self.0.is_multiple_of(unit) {
            write!(f, "{} {}", self.0 / unit, NAMES[index])
        } else {
            write!(f, "{:.2} {}", self.0 as f64 / unit as f64, NAMES[index])
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ByteSizeVisitor;

        impl Visitor<'_> for ByteSizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count such as 1048576 or \"512MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| {
                    E::custom(format!("invalid byte size {v}: a size cannot be negative"))
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: Result<u64, &str>) {
        let got = input
            .parse::<ByteSize>()
            .map(ByteSize::as_u64)
            .map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input:?}"),
            (Err(got), Err(want)) => {
                assert!(
                    got.contains(want),
                    "{input:?}: error {got:?} lacks {want:?}"
                );
                assert!(
                    got.contains(&format!("{input:?}")),
                    "{input:?}: error {got:?} does not quote input"
                );
            }
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses() {
        check("0", Ok(0));
        check("4096", Ok(4096));
        check("512MiB", Ok(512 << 20));
        check("512 mib", Ok(512 << 20));
        check("4GB", Ok(4_000_000_000));
        check("1.5 GiB", Ok(1_610_612_736));
        check("  64k ", Ok(65_536));
        check("10 kB", Ok(10_000));
        check(".5KiB", Ok(512));
        check("0.1 KiB", Ok(102)); // 102.4 rounds to the nearest byte
        check("2 TiB", Ok(2 << 40));
        check("7 B", Ok(7));
        check("18446744073709551615", Ok(u64::MAX));
    }

    #[test]
    fn rejects() {
        check("", Err("empty"));
        check("-5MiB", Err("negative"));
        check("12 parsecs", Err("unknown unit"));
        check("MiB", Err("expected a number"));
        check("1.2.3 MB", Err("more than one decimal point"));
        check("18446744073709551616", Err("2^64"));
        check("99999999999 TiB", Err("2^64"));
        check("1e9", Err("unknown unit"));
    }

    #[test]
    fn displays() {
        assert_eq!(ByteSize(0).to_string(), "0 B");
        assert_eq!(ByteSize(1023).to_string(), "1023 B");
        assert_eq!(ByteSize::kib(1).to_string(), "1 KiB");
        assert_eq!(ByteSize::mib(512).to_string(), "512 MiB");
        assert_eq!(ByteSize(1_610_612_736).to_string(), "1.50 GiB");
        assert_eq!(ByteSize(1536).to_string(), "1.50 KiB");
    }

    #[test]
    fn serde_accepts_numbers_and_strings() {
        assert_eq!(
            serde_json::from_str::<ByteSize>("\"1 KiB\"").unwrap(),
            ByteSize(1024)
        );
        assert_eq!(
            serde_json::from_str::<ByteSize>("2048").unwrap(),
            ByteSize(2048)
        );
        let err = serde_json::from_str::<ByteSize>("-1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("negative"), "{err}");
        assert_eq!(serde_json::to_string(&ByteSize(5)).unwrap(), "5");
    }

    proptest! {
        #[test]
        fn display_round_trips_within_rounding(n in any::<u64>()) {
            let shown = ByteSize(n).to_string();
            let back: ByteSize = shown.parse().unwrap();
            // Two decimals in the chosen unit: error at most half a hundredth of a unit.
            let unit = if n < 1024 { 1.0 } else { 1024f64.powf(((n as f64).log(1024.0)).floor().min(5.0)) };
            prop_assert!((back.0 as f64 - n as f64).abs() <= unit * 0.005 + 1.0, "{n} -> {shown} -> {}", back.0);
        }

        #[test]
        fn plain_integers_parse_exactly(n in any::<u64>()) {
            prop_assert_eq!(n.to_string().parse::<ByteSize>().unwrap(), ByteSize(n));
        }
    }
}
