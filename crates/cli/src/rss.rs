//! The process's resident memory, as the operating system reports it.

use serde::Serialize;

/// Resident set size now and at its peak.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Rss {
    /// Bytes resident now (`VmRSS`).
    pub(crate) current_bytes: u64,
    /// Most bytes ever resident (`VmHWM`).
    pub(crate) peak_bytes: u64,
}

/// Reads `/proc/self/status`; `None` where there is no procfs.
pub(crate) fn read() -> Option<Rss> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some(Rss {
        current_bytes: field("VmRSS:")?,
        peak_bytes: field("VmHWM:")?,
    })
}
