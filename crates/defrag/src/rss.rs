//! The process's resident set size (RSS), as the operating system counts it.
//!
//! Three ways to ask, from cheapest per call to dearest:
//!
//! - [`RssReader::read`]: `/proc/self/statm` opened once and re-read with `pread` at
//!   offset 0 on every call. One system call, a stack buffer, no allocation: what a
//!   governor polling every few milliseconds, or checking before a large allocation,
//!   should use.
//! - [`current`]: the same figure, opening and closing `/proc/self/statm` each time (three
//!   system calls, still no allocation).
//! - [`peak`]: the high-water mark, `VmHWM` from `/proc/self/status`, a longer file that
//!   the kernel formats in full on every read.
//!
//! `statm` counts pages; its second field is the resident set (anonymous, file-backed and
//! shared-memory pages together, the same sum as `VmRSS`), multiplied here by the page
//! size. Linux updates these counters lazily per thread (batched in steps of 64 pages),
//! so a reading can lag the truth by a few hundred KiB per thread: fine for a budget
//! measured in MiB.
//!
//! Elsewhere: [`current`] and [`RssReader`] are Linux-only (they return `None` and
//! [`DefragError::Unsupported`]); [`peak`] falls back to `getrusage`'s `ru_maxrss` on
//! other Unix systems (bytes on Apple platforms, KiB elsewhere) and is `None` on Windows.
//! Only the Linux paths are tested here.

use crate::DefragError;

#[cfg(target_os = "linux")]
const STATM: &str = "/proc/self/statm";
#[cfg(target_os = "linux")]
const STATUS: &str = "/proc/self/status";
/// Bytes read from `statm`: seven decimal page counts and spaces fit easily.
#[cfg(target_os = "linux")]
const STATM_BUF: usize = 256;
/// Bytes read from `status`; `VmHWM` sits in its first kilobyte.
#[cfg(target_os = "linux")]
const STATUS_BUF: usize = 4096;

/// The process's resident set size in bytes, or `None` where it cannot be read.
///
/// Opens, reads and closes `/proc/self/statm`; to poll, keep an [`RssReader`] instead.
pub fn current() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::io::Read as _;
        let mut file = std::fs::File::open(STATM).ok()?;
        let mut buf = [0u8; STATM_BUF];
        let len = file.read(&mut buf).ok()?;
        parse_statm_resident(&buf[..len]).and_then(|pages| pages.checked_mul(page_size()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The most the process has ever had resident, in bytes, or `None` where unknown.
///
/// `VmHWM` from `/proc/self/status` on Linux; `getrusage`'s `ru_maxrss` on other Unix
/// systems (and on Linux when `/proc` is not mounted).
pub fn peak() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        if let Some(bytes) = read_status_kib(b"VmHWM:") {
            return Some(bytes);
        }
    }
    #[cfg(unix)]
    {
        max_rss_from_rusage()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// `VmHWM`-style field `key` of `/proc/self/status`, in bytes.
#[cfg(target_os = "linux")]
fn read_status_kib(key: &[u8]) -> Option<u64> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(STATUS).ok()?;
    let mut buf = [0u8; STATUS_BUF];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    parse_status_kib(&buf[..len], key)
}

#[cfg(unix)]
fn max_rss_from_rusage() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory the size of a `rusage`, which
    // `getrusage` fills on success; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: `getrusage` returned 0, so it initialised `usage` (and a zeroed `rusage`
    // is a valid value in any case: it is plain integers).
    let usage = unsafe { usage.assume_init() };
    let max = u64::try_from(usage.ru_maxrss).ok()?;
    if cfg!(target_vendor = "apple") {
        Some(max)
    } else {
        max.checked_mul(1024)
    }
}

/// The size of a memory page in bytes.
#[cfg(target_os = "linux")]
pub(crate) fn page_size() -> u64 {
    // SAFETY: `sysconf` has no preconditions; it returns -1 for an unknown name.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Keeps `/proc/self/statm` open and re-reads it with `pread` at offset 0: one system
/// call per reading, no allocation, callable from any thread at once (`&self`).
///
/// `/proc/self` is resolved when the file is opened: a reader inherited across `fork`
/// goes on reading the parent's figure, so a child opens its own.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use memwarden_defrag::rss::RssReader;
///
/// let reader = RssReader::open()?;
/// let rss = reader.read().expect("statm is readable");
/// assert!(rss > 0);
/// # }
/// # Ok::<(), memwarden_defrag::DefragError>(())
/// ```
#[derive(Debug)]
pub struct RssReader {
    #[cfg(target_os = "linux")]
    file: std::fs::File,
    #[cfg(target_os = "linux")]
    page_size: u64,
    #[cfg(not(target_os = "linux"))]
    never: std::convert::Infallible,
}

impl RssReader {
    /// Opens `/proc/self/statm`. [`DefragError::Unsupported`] on anything but Linux.
    pub fn open() -> Result<Self, DefragError> {
        #[cfg(target_os = "linux")]
        {
            let file = std::fs::File::open(STATM).map_err(|source| DefragError::Open {
                path: STATM.into(),
                source,
            })?;
            Ok(RssReader {
                file,
                page_size: page_size(),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(DefragError::Unsupported {
                what: "the resident set size",
            })
        }
    }

    /// The resident set size in bytes now, or `None` if the read failed.
    #[inline]
    pub fn read(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileExt as _;
            let mut buf = [0u8; STATM_BUF];
            // `statm` is a seq_file: a read at offset 0 formats it afresh.
            let len = self.file.read_at(&mut buf, 0).ok()?;
            parse_statm_resident(&buf[..len]).and_then(|pages| pages.checked_mul(self.page_size))
        }
        #[cfg(not(target_os = "linux"))]
        {
            match self.never {}
        }
    }
}

/// The second field of a `statm` line: resident pages.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_statm_resident(line: &[u8]) -> Option<u64> {
    let mut fields = line
        .split(u8::is_ascii_whitespace)
        .filter(|field| !field.is_empty());
    fields.next()?;
    parse_u64(fields.next()?)
}

/// The `key` line of a `/proc/<pid>/status` file (`VmHWM:\t  1234 kB`), in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_status_kib(status: &[u8], key: &[u8]) -> Option<u64> {
    let line = status
        .split(|&b| b == b'\n')
        .find(|line| line.starts_with(key))?;
    let mut fields = line[key.len()..]
        .split(u8::is_ascii_whitespace)
        .filter(|field| !field.is_empty());
    let kib = parse_u64(fields.next()?)?;
    match fields.next() {
        Some(b"kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// A decimal number made of ASCII digits only.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_resident_is_the_second_field() {
        let check = |line: &str, expected: Option<u64>| {
            assert_eq!(parse_statm_resident(line.as_bytes()), expected, "{line:?}");
        };
        check("1180 262 229 6 0 107 0\n", Some(262));
        check("  1180   262 229", Some(262));
        check("1180\t99999999999\n", Some(99_999_999_999));
        check("1180", None);
        check("", None);
        check("1180 26x2 229", None);
        check("1 99999999999999999999999", None); // overflows u64
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = b"Name:\tcat\nVmPeak:\t  8000 kB\nVmHWM:\t    1720 kB\nVmRSS:\t 1720 kB\n";
        let check = |key: &str, expected: Option<u64>| {
            assert_eq!(
                parse_status_kib(status, key.as_bytes()),
                expected,
                "{key:?}"
            );
        };
        check("VmHWM:", Some(1720 * 1024));
        check("VmPeak:", Some(8000 * 1024));
        check("VmSwap:", None);
        check("Name:", None); // not a size
        assert_eq!(parse_status_kib(b"VmHWM:\t12 MB\n", b"VmHWM:"), None);
        assert_eq!(parse_status_kib(b"VmHWM:\t12", b"VmHWM:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_three_sources_agree_roughly() {
        let reader = RssReader::open().expect("/proc/self/statm opens");
        let pread = reader.read().expect("pread of statm");
        let fresh = current().expect("statm");
        let vm_rss = read_status_kib(b"VmRSS:").expect("VmRSS");
        let peak = peak().expect("VmHWM");
        // Other tests allocate in parallel: allow 64 MiB of drift between reads.
        let close = |a: u64, b: u64| a.abs_diff(b) < 64 << 20;
        assert!(close(pread, fresh), "{pread} vs {fresh}");
        assert!(close(pread, vm_rss), "{pread} vs {vm_rss}");
        assert!(peak + (64 << 20) >= vm_rss, "peak {peak} < rss {vm_rss}");
        assert_eq!(pread % page_size(), 0);
    }
}
