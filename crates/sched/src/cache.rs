//! [`CacheInfo`]: the CPU's cache sizes from sysfs, clamped to sane ranges, and
//! [`available_jobs`].

use std::fs;
use std::num::NonZero;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::OnceLock;

/// Where Linux describes the first CPU's caches.
const SYSFS_CACHE_DIR: &str = "/sys/devices/system/cpu/cpu0/cache";

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// L1d sizes outside this range are taken for a misreport.
const L1D_RANGE: RangeInclusive<usize> = 8 * KIB..=MIB;
/// L2 sizes outside this range are taken for a misreport.
const L2_RANGE: RangeInclusive<usize> = 64 * KIB..=64 * MIB;
/// L3 sizes outside this range are taken for a misreport (and L3 for absent).
const L3_RANGE: RangeInclusive<usize> = 256 * KIB..=4 * GIB;
/// Cache-line sizes outside this range (or not a power of two) are taken for a misreport.
const LINE_RANGE: RangeInclusive<usize> = 16..=1024;

/// The data-cache sizes chunking and matrix tiling are derived from, in bytes.
///
/// Read from sysfs by [`CacheInfo::detect`]. Every size is checked against a plausible
/// range, because some virtual machines report nonsense (an L1d of 0 or of 512 MiB, a
/// "Unified" L2 of a few bytes): L1d must lie in 8 KiB..=1 MiB, L2 in 64 KiB..=64 MiB,
/// L3 in 256 KiB..=4 GiB and the line size in 16..=1024 bytes (a power of two); a
/// value outside its range, or missing, is replaced by [`CacheInfo::DEFAULT`]'s (L3:
/// `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheInfo {
    /// Level-1 data cache per core.
    pub l1d: usize,
    /// Level-2 cache per core (or per core cluster).
    pub l2: usize,
    /// Level-3 cache, usually shared by every core of a socket; `None` when the CPU has
    /// none or does not report a plausible one.
    pub l3: Option<usize>,
    /// Cache-line size.
    pub line: usize,
}

impl CacheInfo {
    /// What a scheduler assumes when sysfs says nothing usable: 32 KiB L1d, 1 MiB L2,
    /// no L3, 64-byte lines.
    pub const DEFAULT: CacheInfo = CacheInfo {
        l1d: 32 * KIB,
        l2: MIB,
        l3: None,
        line: 64,
    };

    /// The caches of CPU 0, read once from `/sys/devices/system/cpu/cpu0/cache` and
    /// remembered for the life of the process; [`CacheInfo::DEFAULT`] where that
    /// directory does not exist (not Linux, or sysfs not mounted).
    pub fn detect() -> CacheInfo {
        static DETECTED: OnceLock<CacheInfo> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let info = CacheInfo::from_sysfs(Path::new(SYSFS_CACHE_DIR));
            log::debug!("detected caches: {info:?}");
            info
        })
    }

    /// The caches described under `dir`, a directory laid out like
    /// `/sys/devices/system/cpu/cpu0/cache`: subdirectories `index0`, `index1`, ...
    /// each with files `level` (`1`), `type` (`Data`, `Instruction` or `Unified`),
    /// `size` (`32K`, `1024K`, `32M`, or plain bytes) and `coherency_line_size`.
    ///
    /// Each level is the first data or unified cache of that level, clamped as the type
    /// documentation says. A missing or unreadable directory gives the defaults. Useful
    /// to read a container's or another machine's copy of that tree, and for tests.
    pub fn from_sysfs(dir: &Path) -> CacheInfo {
        let mut found = Found::default();
        let Ok(entries) = fs::read_dir(dir) else {
            log::debug!("no cache description at {}: defaults", dir.display());
            return CacheInfo::DEFAULT;
        };
        let mut indices: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("index"))
            })
            .collect();
        indices.sort();
        for index in indices {
            let read = |name: &str| fs::read_to_string(index.join(name)).ok();
            let (Some(level), Some(kind)) = (read("level"), read("type")) else {
                continue;
            };
            if kind.trim() == "Instruction" {
                continue;
            }
            let size = read("size").and_then(|s| parse_size(&s));
            let line = read("coherency_line_size").and_then(|s| s.trim().parse().ok());
            let slot = match level.trim() {
                "1" => &mut found.l1d,
                "2" => &mut found.l2,
                "3" => &mut found.l3,
                _ => continue,
            };
            if slot.is_none() {
                *slot = size;
            }
            if found.line.is_none() {
                found.line = line;
            }
        }
        found.clamped(dir)
    }
}

impl Default for CacheInfo {
    /// [`CacheInfo::DEFAULT`], not a detection.
    fn default() -> Self {
        CacheInfo::DEFAULT
    }
}

/// Raw sizes as read, before clamping.
#[derive(Debug, Default)]
struct Found {
    l1d: Option<usize>,
    l2: Option<usize>,
    l3: Option<usize>,
    line: Option<usize>,
}

impl Found {
    fn clamped(self, dir: &Path) -> CacheInfo {
        let pick = |what: &str, value: Option<usize>, range: RangeInclusive<usize>| {
            let v = value?;
            if range.contains(&v) && (what != "line size" || v.is_power_of_two()) {
                return Some(v);
            }
            log::info!(
                "{}: {what} of {v} bytes is implausible (expected {}..={}): ignored",
                dir.display(),
                range.start(),
                range.end()
            );
            None
        };
        CacheInfo {
            l1d: pick("L1d", self.l1d, L1D_RANGE).unwrap_or(CacheInfo::DEFAULT.l1d),
            l2: pick("L2", self.l2, L2_RANGE).unwrap_or(CacheInfo::DEFAULT.l2),
            l3: pick("L3", self.l3, L3_RANGE),
            line: pick("line size", self.line, LINE_RANGE).unwrap_or(CacheInfo::DEFAULT.line),
        }
    }
}

/// Parses sysfs's `32K`, `1024K`, `32M`, `1G` (binary multiples) or plain bytes.
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let value: usize = digits.parse().ok()?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => KIB,
        "M" | "MB" | "MiB" => MIB,
        "G" | "GB" | "GiB" => GIB,
        _ => return None,
    };
    value.checked_mul(scale)
}

/// The threads this process may run at once: [`std::thread::available_parallelism`],
/// which on Linux already takes the affinity mask and a cgroup (v1 or v2) CPU quota into
/// account, rounded down; 1 when even that cannot be read.
///
/// Read afresh on every call (a container's quota can change); a
/// [`ParallelScheduler`](crate::ParallelScheduler) reads it once, when it is built.
pub fn available_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, NonZero::get)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_as_sysfs_writes_them() {
        for (text, want) in [
            ("32K\n", Some(32 << 10)),
            ("1024K", Some(1 << 20)),
            ("32M", Some(32 << 20)),
            ("1G", Some(1 << 30)),
            ("49152", Some(49152)),
            ("", None),
            ("K", None),
            ("12Q", None),
            ("99999999999999999999K", None),
        ] {
            assert_eq!(parse_size(text), want, "{text:?}");
        }
    }
}
