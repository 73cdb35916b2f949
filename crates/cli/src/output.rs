//! Output files are written whole or not at all: into a temporary name beside the
//! target, then renamed over it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The temporary name `write` uses for `path`: hidden, beside it, unique per process.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Runs `fill` on a temporary path beside `path`, then renames the result into place.
/// On any error the temporary file is removed and `path` is left as it was.
pub(crate) fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = temp_name(path);
    let result = fill(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move the output into {}", path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` through [`write_atomic`].
pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))
    })
}
