//! Output files are written whole or not at all, through the workspace's one atomic
//! writer ([`AtomicFile`]): into a temporary name beside the target, then renamed over
//! it. Outputs are made again by running the command again, so they only need to
//! survive the process ([`Durability::Process`]), not a power cut.

use std::path::Path;

use anyhow::Context;
use memwarden::core::fs::{AtomicFile, Durability};

/// Runs `fill` on a temporary path beside `path`, then renames the result into place.
/// On any error (or a panic in `fill`) the temporary file is removed and `path` is
/// left as it was. A `path` that exists must be a regular file: the rename would
/// replace a directory entry such as `/dev/null`, a FIFO or a socket with a plain file.
pub(crate) fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let out = AtomicFile::create(path)
        .with_context(|| format!("cannot write the output to {}", path.display()))?;
    fill(out.temp_path())?;
    out.commit(Durability::Process)
        .with_context(|| format!("cannot move the output into {}", path.display()))
}

/// Writes `bytes` to `path` through [`write_atomic`].
pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))
    })
}
