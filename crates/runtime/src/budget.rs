//! [`Budget`]: the one way a memory budget is written, checked and resolved to bytes.
//!
//! The config file's `monitor.budget`, the CLI's `--budget` and code all go through
//! [`Budget`]'s parser, so `"512MiB"` and `"25%"` mean the same everywhere and are
//! refused with the same words.

use std::fmt;
use std::str::FromStr;

use memwarden_core::ByteSize;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// The most memory a process may use, as a user writes it.
///
/// Parsed from a size (`"512MiB"`, `"1.5 GiB"`, a byte count) or a share of this machine's
/// memory (`"25%"`); [`Budget::resolve`] turns it into bytes.
///
/// ```
/// use memwarden_runtime::Budget;
/// use memwarden_core::ByteSize;
///
/// let budget: Budget = "384MiB".parse()?;
/// assert_eq!(budget.resolve()?, ByteSize::mib(384));
/// let share: Budget = "25%".parse()?;
/// assert_eq!(share.resolve_against(4 << 30), ByteSize::gib(1));
/// assert!("0%".parse::<Budget>().is_err());
/// assert!("0".parse::<Budget>().is_err());
/// # Ok::<(), memwarden_runtime::BudgetError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Budget {
    /// A fixed number of bytes, above zero.
    Bytes(ByteSize),
    /// A share of this machine's memory, in `(0, 1]`.
    Share(f64),
}

/// Why a budget was refused or could not be resolved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The text is not a budget; the message says what was expected.
    #[error("invalid budget {input:?}: {reason}")]
    Invalid {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The machine's memory size could not be read, to resolve a share of it.
    #[error(
        "cannot read this machine's memory size to resolve a share of it; give the budget in bytes"
    )]
    MachineMemory,
}

impl Budget {
    /// A budget of `bytes`; zero is refused.
    pub fn bytes(bytes: ByteSize) -> Result<Budget, BudgetError> {
        if bytes.as_u64() == 0 {
            return Err(BudgetError::Invalid {
                input: bytes.to_string(),
                reason: "the budget must be greater than zero".into(),
            });
        }
        Ok(Budget::Bytes(bytes))
    }

    /// A budget of `share` of this machine's memory; `share` must be in `(0, 1]`.
    pub fn share(share: f64) -> Result<Budget, BudgetError> {
        if !(share > 0.0 && share <= 1.0) {
            let percent = format!("{}%", share * 100.0);
            return Err(BudgetError::Invalid {
                reason: format!(
                    "{percent} is out of range: a share of the machine's memory must be greater than 0% and at most 100%"
                ),
                input: percent,
            });
        }
        Ok(Budget::Share(share))
    }

    /// The budget in bytes: a size as it is, a share of this machine's memory as the
    /// operating system reports it ([`machine_memory`](crate::machine_memory)).
    pub fn resolve(&self) -> Result<ByteSize, BudgetError> {
        match *self {
            Budget::Bytes(bytes) => Ok(bytes),
            Budget::Share(_) => crate::machine_memory()
                .map(|total| self.resolve_against(total))
                .ok_or(BudgetError::MachineMemory),
        }
    }

    /// The budget in bytes on a machine with `machine_bytes` of memory.
    pub fn resolve_against(&self, machine_bytes: u64) -> ByteSize {
        match *self {
            Budget::Bytes(bytes) => bytes,
            Budget::Share(share) => ByteSize::b((machine_bytes as f64 * share) as u64),
        }
    }
}

impl From<ByteSize> for Budget {
    /// A fixed budget; a zero one is refused when it is used (by the lifecycle, the
    /// governor or the runtime builder), not here.
    fn from(bytes: ByteSize) -> Self {
        Budget::Bytes(bytes)
    }
}

impl FromStr for Budget {
    type Err = BudgetError;

    fn from_str(s: &str) -> Result<Budget, BudgetError> {
        let invalid = |reason: String| BudgetError::Invalid {
            input: s.to_owned(),
            reason,
        };
        match s.trim().strip_suffix('%') {
            Some(percent) => {
                let p = percent
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite())
                    .ok_or_else(|| invalid("expected a percentage such as \"25%\"".into()))?;
                Budget::share(p / 100.0).map_err(|e| match e {
                    BudgetError::Invalid { reason, .. } => invalid(reason),
                    other => other,
                })
            }
            None => {
                let bytes: ByteSize = s.parse().map_err(|e| invalid(format!("{e}")))?;
                Budget::bytes(bytes)
                    .map_err(|_| invalid("the budget must be greater than zero".into()))
            }
        }
    }
}

impl fmt::Display for Budget {
    /// A size as [`ByteSize`] writes it, a share as a percentage: `"384 MiB"`, `"25%"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Bytes(bytes) => write!(f, "{bytes}"),
            Budget::Share(share) => write!(f, "{}%", share * 100.0),
        }
    }
}

impl Serialize for Budget {
    /// A size as its byte count, a share as its percentage string (`"25%"`), so that a
    /// serialised config loads back as written.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Budget::Bytes(bytes) => serializer.serialize_u64(bytes.as_u64()),
            Budget::Share(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Budget {
    /// A byte count, or a string [`Budget::from_str`] accepts.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BudgetVisitor;

        impl Visitor<'_> for BudgetVisitor {
            type Value = Budget;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a byte count such as 1048576, a size such as \"512MiB\", or a share of the machine's memory such as \"25%\"",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Budget, E> {
                Budget::bytes(ByteSize::b(v))
                    .map_err(|_| E::custom("the budget must be greater than zero"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Budget, E> {
                u64::try_from(v)
                    .map_err(|_| {
                        E::custom(format!("invalid byte size {v}: a size cannot be negative"))
                    })
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Budget, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(BudgetVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_shares_parse_and_bad_ones_say_why() {
        let ok = [
            ("384MiB", Budget::Bytes(ByteSize::mib(384))),
            (" 1 GiB ", Budget::Bytes(ByteSize::gib(1))),
            ("4096", Budget::Bytes(ByteSize::b(4096))),
            ("25%", Budget::Share(0.25)),
            ("100 %", Budget::Share(1.0)),
        ];
        for (text, expected) in ok {
            assert_eq!(text.parse::<Budget>(), Ok(expected), "{text}");
        }
        let bad = [
            ("0", "greater than zero"),
            ("0%", "greater than 0%"),
            ("150%", "at most 100%"),
            ("NaN%", "percentage"),
            ("%", "percentage"),
            ("lots", "lots"),
            ("-5MiB", "-5MiB"),
        ];
        for (text, says) in bad {
            let error = text.parse::<Budget>().expect_err(text).to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_share_resolves_against_the_machine() {
        let share = Budget::share(0.25).expect("in range");
        assert_eq!(share.resolve_against(4 << 30), ByteSize::gib(1));
        if let Some(total) = crate::machine_memory() {
            assert_eq!(share.resolve(), Ok(ByteSize::b(total / 4)));
        }
        assert_eq!(share.to_string(), "25%");
        assert_eq!(
            Budget::Bytes(ByteSize::mib(1)).resolve(),
            Ok(ByteSize::mib(1))
        );
    }
}
