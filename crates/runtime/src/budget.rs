//! [`Budget`]: the one way a memory budget is written, checked and resolved to bytes.
//!
//! The config file's `monitor.budget`, the CLI's `--budget` and code all go through
//! [`Budget`]'s parser, so `"512MiB"`, `"25%"` and `"auto"` mean the same everywhere and
//! are refused with the same words; [`Budget`] says how each is resolved.

use std::fmt;
use std::str::FromStr;

use memwarden_core::ByteSize;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

use crate::cgroup::{CgroupLimit, MemoryCgroup};

/// The most memory a process may use, as a user writes it.
///
/// Parsed from a size (`"512MiB"`, `"1.5 GiB"`, a byte count), a share of this machine's
/// memory (`"25%"`) or `"auto"`; [`Budget::resolve`] turns it into bytes.
///
/// In a container the limit that decides who is killed is the memory cgroup's, not the
/// machine's: `auto` (the shipped default) is a share of the tightest cgroup limit that
/// applies to the process (75 % by default), and where none applies a share of the
/// machine's memory (25 % by default); never more than that machine share either. Every
/// budget is checked against the cgroup's hard limit: one above it cannot be held and is
/// refused. [`ResolvedBudget`] says where the bytes came from.
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
    /// A share of the tightest cgroup limit, else of the machine's memory.
    Auto(AutoShares),
}

/// The shares an [`Budget::Auto`] budget takes: of the cgroup's limit where one applies,
/// and of the machine's memory (where no cgroup limit applies, and as a ceiling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoShares {
    /// The share of the tightest cgroup limit, in `(0, 1]`; 0.75 by default.
    pub cgroup: f64,
    /// The share of the machine's memory, in `(0, 1]`; 0.25 by default.
    pub machine: f64,
}

impl Default for AutoShares {
    fn default() -> Self {
        AutoShares {
            cgroup: 0.75,
            machine: 0.25,
        }
    }
}

/// A budget in bytes, and where they came from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ResolvedBudget {
    /// The budget.
    pub bytes: ByteSize,
    /// Where it came from.
    pub source: BudgetSource,
}

/// Where a [`ResolvedBudget`] came from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BudgetSource {
    /// A size, as given.
    Given,
    /// A share of this machine's memory.
    Machine {
        /// The share.
        share: f64,
        /// The machine's memory in bytes.
        machine: u64,
    },
    /// A share of the tightest cgroup limit.
    Cgroup {
        /// The share.
        share: f64,
        /// The limit, its file and its cgroup.
        limit: CgroupLimit,
    },
}

impl fmt::Display for ResolvedBudget {
    /// `"384 MiB"`, `"1 GiB = 25% of this machine's 4 GiB"`, `"192 MiB = 75% of the
    /// cgroup limit 256 MiB (memory.max, /kubepods/pod1)"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes)?;
        match &self.source {
            BudgetSource::Given => Ok(()),
            BudgetSource::Machine { share, machine } => write!(
                f,
                " = {}% of this machine's {}",
                share * 100.0,
                ByteSize::b(*machine)
            ),
            BudgetSource::Cgroup { share, limit } => write!(
                f,
                " = {}% of the cgroup limit {} ({}, {})",
                share * 100.0,
                ByteSize::b(limit.bytes),
                limit.file,
                limit.cgroup
            ),
        }
    }
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
    /// The budget is above the hard limit of the process's memory cgroup, which would
    /// kill the process before the budget is reached.
    #[error(
        "the budget {budget} is above the cgroup's memory limit {} ({}, {}): it cannot be held; give a smaller budget or \"auto\"",
        ByteSize::b(limit.bytes), limit.file, limit.cgroup
    )]
    AboveLimit {
        /// The budget asked for.
        budget: ByteSize,
        /// The cgroup limit it passes.
        limit: CgroupLimit,
    },
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

    /// `auto` with the given shares; each must be in `(0, 1]`.
    pub fn auto(shares: AutoShares) -> Result<Budget, BudgetError> {
        for (what, share) in [("cgroup", shares.cgroup), ("machine", shares.machine)] {
            if !(share > 0.0 && share <= 1.0) {
                return Err(BudgetError::Invalid {
                    input: format!("auto ({what} share {share})"),
                    reason: format!(
                        "the {what} share must be greater than 0 and at most 1, not {share}"
                    ),
                });
            }
        }
        Ok(Budget::Auto(shares))
    }

    /// The budget in bytes on this machine, in this process's memory cgroup (see
    /// [`resolve_in`](Self::resolve_in)).
    pub fn resolve(&self) -> Result<ByteSize, BudgetError> {
        self.resolve_detailed().map(|resolved| resolved.bytes)
    }

    /// The budget in bytes and where they came from, on this machine
    /// ([`machine_memory`](crate::machine_memory)) in this process's memory cgroup
    /// ([`MemoryCgroup::detect`]).
    pub fn resolve_detailed(&self) -> Result<ResolvedBudget, BudgetError> {
        let cgroup = MemoryCgroup::detect();
        self.resolve_in(cgroup.as_ref(), crate::machine_memory)
    }

    /// The budget in bytes in `cgroup` (if any) on a machine of `machine()` bytes (read
    /// only when a share of it is needed): a size as it is, a share of the machine as
    /// that share, `auto` as [`Budget`] says; any of them above the cgroup's
    /// hard limit is [`BudgetError::AboveLimit`].
    pub fn resolve_in(
        &self,
        cgroup: Option<&MemoryCgroup>,
        machine: impl FnOnce() -> Option<u64>,
    ) -> Result<ResolvedBudget, BudgetError> {
        let limit = cgroup.and_then(MemoryCgroup::limit);
        let resolved = match *self {
            Budget::Bytes(bytes) => ResolvedBudget {
                bytes,
                source: BudgetSource::Given,
            },
            Budget::Share(share) => {
                let machine = machine().ok_or(BudgetError::MachineMemory)?;
                ResolvedBudget {
                    bytes: share_of(machine, share),
                    source: BudgetSource::Machine { share, machine },
                }
            }
            Budget::Auto(shares) => {
                let by_machine = machine().map(|machine| ResolvedBudget {
                    bytes: share_of(machine, shares.machine),
                    source: BudgetSource::Machine {
                        share: shares.machine,
                        machine,
                    },
                });
                let by_cgroup = limit.clone().map(|limit| ResolvedBudget {
                    bytes: share_of(limit.bytes, shares.cgroup),
                    source: BudgetSource::Cgroup {
                        share: shares.cgroup,
                        limit,
                    },
                });
                match (by_cgroup, by_machine) {
                    (Some(c), Some(m)) if m.bytes < c.bytes => m,
                    (Some(c), _) => c,
                    (None, Some(m)) => {
                        if cgroup.is_none() {
                            log::info!(
                                "budget auto: no memory cgroup found; using {}% of this machine's memory",
                                shares.machine * 100.0
                            );
                        }
                        m
                    }
                    (None, None) => return Err(BudgetError::MachineMemory),
                }
            }
        };
        if let Some(limit) = limit
            && resolved.bytes.as_u64() > limit.bytes
        {
            return Err(BudgetError::AboveLimit {
                budget: resolved.bytes,
                limit,
            });
        }
        Ok(resolved)
    }

    /// The budget in bytes on a machine with `machine_bytes` of memory and no cgroup
    /// limit.
    pub fn resolve_against(&self, machine_bytes: u64) -> ByteSize {
        match *self {
            Budget::Bytes(bytes) => bytes,
            Budget::Share(share) => share_of(machine_bytes, share),
            Budget::Auto(shares) => share_of(machine_bytes, shares.machine),
        }
    }

    /// Whether this budget follows the container: `auto`, re-resolved as limits change.
    pub fn is_auto(&self) -> bool {
        matches!(self, Budget::Auto(_))
    }
}

fn share_of(bytes: u64, share: f64) -> ByteSize {
    ByteSize::b((bytes as f64 * share) as u64)
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
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Budget::Auto(AutoShares::default()));
        }
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
    /// A size as [`ByteSize`] writes it, a share as a percentage, `auto` as itself:
    /// `"384 MiB"`, `"25%"`, `"auto"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Bytes(bytes) => write!(f, "{bytes}"),
            Budget::Share(share) => write!(f, "{}%", share * 100.0),
            Budget::Auto(_) => f.write_str("auto"),
        }
    }
}

impl Serialize for Budget {
    /// A size as its byte count, a share as its percentage string (`"25%"`), so that a
    /// serialised config loads back as written.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Budget::Bytes(bytes) => serializer.serialize_u64(bytes.as_u64()),
            Budget::Share(_) | Budget::Auto(_) => serializer.collect_str(self),
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
                    "a byte count such as 1048576, a size such as \"512MiB\", a share of the machine's memory such as \"25%\", or \"auto\"",
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

    /// A v2 cgroup `/kube/pod` under a fixture root, its `memory.max` set to `max`.
    fn cgroup_v2(root: &std::path::Path, max: &str) -> MemoryCgroup {
        let mount = root.join("sys/fs/cgroup");
        let dir = mount.join("kube/pod");
        std::fs::create_dir_all(&dir).expect("a fixture tree");
        std::fs::write(mount.join("cgroup.controllers"), "cpu io memory pids\n").expect("writable");
        std::fs::write(dir.join("memory.max"), max).expect("writable");
        std::fs::write(dir.join("memory.high"), "max\n").expect("writable");
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        MemoryCgroup::from_proc("0::/kube/pod\n", mountinfo, root).expect("a v2 memory cgroup")
    }

    #[test]
    fn auto_takes_a_share_of_the_tightest_limit_and_never_more_than_the_machine_share() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let four_gib = Some(4u64 << 30);
        let auto = Budget::Auto(AutoShares::default());
        let cgroup = cgroup_v2(dir.path(), "268435456\n");
        let resolved = auto
            .resolve_in(Some(&cgroup), || four_gib)
            .expect("resolves");
        assert_eq!(resolved.bytes, ByteSize::mib(192));
        assert_eq!(
            resolved.to_string(),
            "192 MiB = 75% of the cgroup limit 256 MiB (memory.max, /kube/pod)"
        );
        // A limit larger than the machine: the machine's share is the ceiling.
        let cgroup = cgroup_v2(dir.path(), &format!("{}\n", 8u64 << 30));
        let resolved = auto
            .resolve_in(Some(&cgroup), || four_gib)
            .expect("resolves");
        assert_eq!(resolved.bytes, ByteSize::gib(1));
        assert_eq!(resolved.to_string(), "1 GiB = 25% of this machine's 4 GiB");
        // No limit, or no cgroup at all: the machine's share.
        let cgroup = cgroup_v2(dir.path(), "max\n");
        for cgroup in [Some(&cgroup), None] {
            let resolved = auto.resolve_in(cgroup, || four_gib).expect("resolves");
            assert_eq!(resolved.bytes, ByteSize::gib(1));
        }
        assert_eq!(
            auto.resolve_in(None, || None),
            Err(BudgetError::MachineMemory)
        );
        let shares = AutoShares {
            cgroup: 0.5,
            machine: 1.0,
        };
        let cgroup = cgroup_v2(dir.path(), "268435456\n");
        let half = Budget::auto(shares).expect("in range");
        assert_eq!(
            half.resolve_in(Some(&cgroup), || four_gib).map(|r| r.bytes),
            Ok(ByteSize::mib(128))
        );
        assert!(
            Budget::auto(AutoShares {
                cgroup: 0.0,
                machine: 0.25
            })
            .is_err()
        );
        assert!(
            Budget::auto(AutoShares {
                cgroup: 0.75,
                machine: 1.5
            })
            .is_err()
        );
    }

    #[test]
    fn a_budget_above_the_cgroup_limit_is_refused_with_both_figures() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cgroup = cgroup_v2(dir.path(), "268435456\n");
        let four_gib = || Some(4u64 << 30);
        for budget in ["1GiB", "25%"] {
            let budget: Budget = budget.parse().expect("a budget");
            let error = budget
                .resolve_in(Some(&cgroup), four_gib)
                .expect_err("above the limit");
            let text = error.to_string();
            assert!(
                text.contains("1 GiB") && text.contains("256 MiB") && text.contains("/kube/pod"),
                "{text}"
            );
        }
        let fits: Budget = "200MiB".parse().expect("a budget");
        assert_eq!(
            fits.resolve_in(Some(&cgroup), four_gib).map(|r| r.bytes),
            Ok(ByteSize::mib(200))
        );
        assert_eq!(
            "auto".parse::<Budget>().map(|b| b.to_string()),
            Ok("auto".to_owned())
        );
        assert_eq!(
            " AUTO ".parse::<Budget>(),
            Ok(Budget::Auto(AutoShares::default()))
        );
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
