//! [`FailPoint`]: a switch a test arms to make the store's file writes fail, as a full or broken disk would, or its reads, as a process out of file descriptors would.

use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

/// Which step of writing a snapshot file an armed [`FailPoint`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteFault {
    /// Writing the temporary file fails with "no space left" after this many bytes were written.
    Write {
        /// Bytes written before the failure.
        after_bytes: u64,
    },
    /// `fsync` of the temporary file fails.
    SyncFile,
    /// Renaming the temporary file to its final name fails.
    Rename,
    /// `fsync` of the directory after the rename fails.
    SyncDir,
}

/// Fault injection for the store's file writes and reads; disarmed unless a test arms it.
///
/// Clones share one switch: keep a clone of the one in
/// [`StoreConfig::fail_point`](crate::StoreConfig::fail_point) and arm it when needed.
/// An armed fault fires on every write (or read) until [`disarm`](FailPoint::disarm)ed.
#[derive(Debug, Clone, Default)]
pub struct FailPoint {
    armed: Arc<Mutex<Armed>>,
}

#[derive(Debug, Default)]
struct Armed {
    write: Option<WriteFault>,
    /// The OS error every read of a snapshot file fails with.
    read: Option<i32>,
}

impl FailPoint {
    /// A disarmed fail point.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every following write fail at `fault`.
    pub fn arm(&self, fault: WriteFault) {
        self.armed.lock().write = Some(fault);
    }

    /// Makes every following open of a snapshot file for reading (on restore and when the
    /// store is opened) fail with the operating system error `os_error`, such as
    /// `libc::EMFILE`: an error that says nothing about the file.
    pub fn arm_read(&self, os_error: i32) {
        self.armed.lock().read = Some(os_error);
    }

    /// Lets writes and reads succeed again.
    pub fn disarm(&self) {
        *self.armed.lock() = Armed::default();
    }

    /// The armed write fault, if any.
    pub fn armed(&self) -> Option<WriteFault> {
        self.armed.lock().write
    }

    /// The OS error reads are armed to fail with, if any.
    pub fn armed_read(&self) -> Option<i32> {
        self.armed.lock().read
    }

    /// The injected error if reads are armed.
    pub(crate) fn check_read(&self) -> io::Result<()> {
        match self.armed_read() {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => Ok(()),
        }
    }

    /// An injected error if `step` is armed. `Write` faults are handled by the writer itself.
    pub(crate) fn check(&self, step: WriteFault) -> io::Result<()> {
        if self.armed() == Some(step) {
            Err(io::Error::other(format!("injected failure at {step:?}")))
        } else {
            Ok(())
        }
    }

    /// How many bytes a write may put down before failing, if a `Write` fault is armed.
    pub(crate) fn write_limit(&self) -> Option<u64> {
        match self.armed() {
            Some(WriteFault::Write { after_bytes }) => Some(after_bytes),
            _ => None,
        }
    }
}
