//! Output files are written whole or not at all: into a temporary name beside the
//! target, then renamed over it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The temporary name `write` uses for `path`: hidden, beside it, unique per process.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Removes the temporary file when dropped unless disarmed: on an error, and also
/// when `fill` panics and the stack unwinds.
struct RemoveOnDrop<'a>(Option<&'a Path>);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Refuses a target that exists and is not a regular file. The rename would replace a
/// directory entry such as `/dev/null`, a FIFO or a socket with a plain file (and, run
/// as root, quietly break the device); writing into them is not what `--out` does.
fn check_target(path: &Path) -> anyhow::Result<()> {
    // Missing (the usual case), or unreadable: creating and renaming will say why.
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    if meta.is_dir() {
        bail!(
            "cannot write the output to {}: it is a directory",
            path.display()
        );
    }
    if !meta.is_file() {
        bail!(
            "cannot write the output to {}: it is not a regular file (a device, FIFO or \
             socket), and the output replaces its target through a rename; give a file path",
            path.display()
        );
    }
    Ok(())
}

/// Runs `fill` on a temporary path beside `path`, then renames the result into place.
/// On any error (or a panic in `fill`) the temporary file is removed and `path` is
/// left as it was. A `path` that exists must be a regular file.
pub(crate) fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    check_target(path)?;
    let tmp = temp_name(path);
    let mut cleanup = RemoveOnDrop(Some(&tmp));
    fill(&tmp)?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move the output into {}", path.display()))?;
    cleanup.0 = None;
    Ok(())
}

/// Writes `bytes` to `path` through [`write_atomic`].
pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))
    })
}
