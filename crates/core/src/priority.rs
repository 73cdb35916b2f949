//! [`Priority`]: how important a resource is to keep.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ParseError;

/// How important a resource (or a whole kind) is to keep in memory.
///
/// `1` is the least important (released first), `10` the most important (released
/// last). Out-of-range values are rejected at construction, so a `Priority` is always valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    /// The least important priority: released first.
    pub const MIN: Priority = Priority(1);
    /// The most important priority: released last.
    pub const MAX: Priority = Priority(10);
    /// The middle of the range, used when nothing else is said.
    pub const NORMAL: Priority = Priority(5);

    /// Makes a priority, rejecting values outside `1..=10`.
    pub fn new(value: i64) -> Result<Self, ParseError> {
        if (i64::from(Self::MIN.0)..=i64::from(Self::MAX.0)).contains(&value) {
            Ok(Priority(value as u8))
        } else {
            Err(ParseError::PriorityOutOfRange {
                value,
                min: Self::MIN.0,
                max: Self::MAX.0,
            })
        }
    }

    /// The priority as a number in `1..=10`.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// How expendable this priority is, in `0.0..=1.0`: `1.0` for [`Priority::MIN`],
    /// `0.0` for [`Priority::MAX`].
    pub fn expendability(self) -> f64 {
        f64::from(Self::MAX.0 - self.0) / f64::from(Self::MAX.0 - Self::MIN.0)
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::NORMAL
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        Priority::new(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_enforced() {
        assert!(Priority::new(0).is_err());
        assert!(Priority::new(-3).is_err());
        assert!(Priority::new(11).is_err());
        assert_eq!(Priority::new(1).unwrap(), Priority::MIN);
        assert_eq!(Priority::new(10).unwrap(), Priority::MAX);
        assert_eq!(Priority::MIN.expendability(), 1.0);
        assert_eq!(Priority::MAX.expendability(), 0.0);
    }

    #[test]
    fn deserialize_rejects_out_of_range() {
        let err = serde_json::from_str::<Priority>("42")
            .unwrap_err()
            .to_string();
        assert!(err.contains("42") && err.contains("1..=10"), "{err}");
        assert_eq!(serde_json::from_str::<Priority>("7").unwrap().get(), 7);
    }
}
