//! [`PressureWatch`]: the kernel's memory-pressure notifications, on a thread of its own.
//!
//! Polling the charge every tick sees pressure a tick late; the kernel knows at once when
//! reclaim starts to stall the cgroup. Two interfaces say so:
//!
//! - **cgroup v2 (PSI).** Writing a trigger such as `some 150000 2000000` into the
//!   cgroup's `memory.pressure` asks for a `POLLPRI` on that file whenever tasks of the
//!   cgroup were stalled on memory for 150 ms within a 2 s window. (The window is 2 s
//!   because an unprivileged trigger's window must be a multiple of 2 s.)
//! - **cgroup v1.** `memory.pressure_level` reports reclaim pressure (`low`, `medium`,
//!   `critical`) to an eventfd registered by writing `"<eventfd> <pressure_level fd>
//!   <level>"` into `cgroup.event_control`.
//!
//! A watch is one thread in `poll(2)` on the notification and on a second eventfd that
//! [`Drop`] writes to stop it; the thread is joined on drop. Each notification calls the
//! callback the governor gives it, which counts the event, marks the level and wakes the
//! monitor. Where neither interface exists (no cgroup, no PSI), there is no watch and the
//! tick alone drives the governor.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::thread::JoinHandle;

use crate::cgroup::{CgroupVersion, MemoryCgroup};

/// The PSI trigger: 150 ms of stall in a 2 s window.
const PSI_TRIGGER: &[u8] = b"some 150000 2000000\0";

/// What is polled for a notification.
#[derive(Debug)]
enum Source {
    /// A PSI trigger file: `POLLPRI` on each event.
    Psi(File),
    /// A v1 eventfd, with the `memory.pressure_level` file it was registered for
    /// (closing it would end the registration).
    Eventfd { eventfd: OwnedFd, _level: File },
}

impl Source {
    fn fd(&self) -> i32 {
        match self {
            Source::Psi(file) => file.as_raw_fd(),
            Source::Eventfd { eventfd, .. } => eventfd.as_raw_fd(),
        }
    }
}

/// A thread that calls back on each kernel memory-pressure notification of a cgroup;
/// stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct PressureWatch {
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
    /// What is watched, for logs: "PSI memory.pressure of /x" or "v1 medium pressure of /x".
    what: String,
}

/// An eventfd, close-on-exec.
fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the return value is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor this process owns and nothing else holds.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl PressureWatch {
    /// Watches `cgroup` (v2: a PSI trigger on its `memory.pressure`; v1: `level`
    /// pressure, `"low"`, `"medium"` or `"critical"`, of its `memory.pressure_level`), or
    /// the whole system's `/proc/pressure/memory` without a cgroup. `None`, with the
    /// reason logged at debug level, where the kernel offers neither.
    pub(crate) fn start(
        cgroup: Option<&MemoryCgroup>,
        level: &str,
        on_pressure: impl Fn() + Send + 'static,
    ) -> Option<PressureWatch> {
        let (source, what) = match Self::register(cgroup, level) {
            Ok(found) => found,
            Err(e) => {
                log::debug!("no kernel memory-pressure notifications: {e}");
                return None;
            }
        };
        let stop = match eventfd() {
            Ok(stop) => stop,
            Err(e) => {
                log::warn!("cannot watch memory pressure: eventfd: {e}");
                return None;
            }
        };
        let stop_fd = stop.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("memwarden-pressure".into())
            .spawn(move || watch(&source, stop_fd, &on_pressure));
        match thread {
            Ok(thread) => {
                log::debug!("watching {what}");
                Some(PressureWatch {
                    stop,
                    thread: Some(thread),
                    what,
                })
            }
            Err(e) => {
                log::warn!("cannot start the memory-pressure thread: {e}");
                None
            }
        }
    }

    fn register(cgroup: Option<&MemoryCgroup>, level: &str) -> io::Result<(Source, String)> {
        match cgroup {
            Some(cgroup) if cgroup.version() == CgroupVersion::V1 => {
                let dir = cgroup.dir();
                let level_file = File::open(dir.join("memory.pressure_level"))?;
                let eventfd = eventfd()?;
                let line = format!("{} {} {level}", eventfd.as_raw_fd(), level_file.as_raw_fd());
                OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.event_control"))?
                    .write_all(line.as_bytes())?;
                Ok((
                    Source::Eventfd {
                        eventfd,
                        _level: level_file,
                    },
                    format!("v1 {level} memory pressure of {}", cgroup.path()),
                ))
            }
            Some(cgroup) => Ok((
                Source::Psi(psi_trigger(&cgroup.dir().join("memory.pressure"))?),
                format!("PSI memory.pressure of {}", cgroup.path()),
            )),
            None => Ok((
                Source::Psi(psi_trigger(Path::new("/proc/pressure/memory"))?),
                "PSI /proc/pressure/memory".to_owned(),
            )),
        }
    }

    /// What is watched, for the report: "PSI memory.pressure of /x", "v1 medium memory
    /// pressure of /x".
    pub(crate) fn what(&self) -> &str {
        &self.what
    }
}

fn psi_trigger(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    file.write_all(PSI_TRIGGER)?;
    Ok(file)
}

/// The thread: poll the notification and the stop eventfd until stopped.
fn watch(source: &Source, stop: i32, on_pressure: &dyn Fn()) {
    let events = match source {
        Source::Psi(_) => libc::POLLPRI,
        Source::Eventfd { .. } => libc::POLLIN,
    };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: source.fd(),
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call, and
        // both descriptors stay open: the source is borrowed, and `stop` is owned by the
        // `PressureWatch` that joins this thread before closing it.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::warn!("memory-pressure watch ends: poll: {e}");
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            log::warn!("memory-pressure watch ends: the notification file went away");
            return;
        }
        if fds[0].revents & events != 0 {
            if let Source::Eventfd { eventfd, .. } = source {
                let mut count = [0u8; 8];
                // SAFETY: reads 8 bytes into a live 8-byte buffer from an eventfd this
                // thread borrows; a failed read is harmless (the next poll retries).
                let _ = unsafe { libc::read(eventfd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
            }
            on_pressure();
        }
    }
}

impl Drop for PressureWatch {
    fn drop(&mut self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to the stop eventfd this struct owns.
        let written = unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), 8) };
        if written != 8 {
            log::error!(
                "cannot stop the memory-pressure thread: {}",
                io::Error::last_os_error()
            );
            // Joining would wait forever; the thread ends with the process.
            return;
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("the memory-pressure thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// A v1 memory cgroup of 64 MiB, made for the test (as root, on a machine with the v1
    /// memory controller); `None` with the reason printed elsewhere.
    fn v1_group() -> Option<std::path::PathBuf> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: making a memory cgroup needs root");
            return None;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?;
            let options = r.nth(1)?;
            (fstype == "cgroup" && options.split(',').any(|o| o == "memory"))
                .then(|| left.split_whitespace().nth(4).map(str::to_owned))
                .flatten()
        });
        let Some(mount) = mount else {
            eprintln!("skipped: no v1 memory controller mounted");
            return None;
        };
        let dir = Path::new(&mount).join(format!("memwarden-pressure-test-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        std::fs::write(dir.join("memory.limit_in_bytes"), (64u64 << 20).to_string()).ok()?;
        Some(dir)
    }

    #[test]
    fn v1_pressure_wakes_the_callback_and_drop_joins_the_thread() {
        let Some(dir) = v1_group() else { return };
        let cgroup = format!(
            "4:memory:/{}\n",
            dir.file_name().expect("a named dir").to_string_lossy()
        );
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("readable");
        let group =
            MemoryCgroup::from_proc(&cgroup, &mountinfo, Path::new("/")).expect("the test cgroup");
        let events = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&events);
        let watch = PressureWatch::start(Some(&group), "low", move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .expect("v1 pressure notifications");
        assert!(watch.what().contains("v1 low"), "{}", watch.what());
        // Reclaim in the group: a child writes four times the limit into a file, whose
        // page cache the group is charged for and the kernel must reclaim.
        let scratch = tempfile::tempdir().expect("a temp dir");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && dd if=/dev/zero of={}/fill bs=1M count=256 status=none",
                dir.display(),
                scratch.path().display()
            ))
            .spawn()
            .expect("sh runs");
        let deadline = Instant::now() + Duration::from_secs(60);
        while events.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
        drop(watch);
        drop(scratch);
        let _ = std::fs::remove_dir(&dir);
        assert!(
            events.load(Ordering::SeqCst) > 0,
            "no pressure event in 60 s"
        );
    }

    #[test]
    fn no_notification_source_is_no_watch() {
        let root = tempfile::tempdir().expect("a temp dir");
        let mount = root.path().join("sys/fs/cgroup/memory");
        std::fs::create_dir_all(mount.join("x")).expect("a fixture tree");
        let mountinfo = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let group = MemoryCgroup::from_proc("4:memory:/x\n", mountinfo, root.path())
            .expect("a fixture cgroup");
        assert!(PressureWatch::start(Some(&group), "medium", || {}).is_none());
    }
}
