//! [`ConfigError`] and [`Diagnostic`]: what is wrong with a config, and where.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read: missing, unreadable, not a regular file (a
    /// directory, FIFO or device), over [`MAX_CONFIG_BYTES`](super::MAX_CONFIG_BYTES), or
    /// not UTF-8.
    #[error("cannot read config file {}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not a valid configuration.
    ///
    /// Displays one line per diagnostic, in file order, as
    /// `{origin}:{line}:{column}: {key}: {message}`.
    #[error("{}", render(origin, diagnostics))]
    Invalid {
        /// Where the text came from: the file's path, or the name given to
        /// [`Config::from_toml_str`](super::Config::from_toml_str).
        origin: String,
        /// Every problem found, ordered by position; never empty.
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(origin: &str, diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics
        .iter()
        .map(|d| format!("{origin}:{d}"))
        .collect();
    lines.join("\n")
}

/// One problem in a config file, located by key and by position.
///
/// Displays as `{line}:{column}: {key}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Diagnostic {
    /// The dotted path of the offending key, such as `kinds.render_cache.priority`.
    ///
    /// For a missing key it is the key that should be there; for a syntax error, the
    /// key being written on that line (or its table, or `(document)` when there is
    /// neither).
    pub key: String,
    /// The 1-based line. A missing key is reported on the line of the table header
    /// that lacks it (line 1 for a missing top-level table).
    pub line: usize,
    /// The 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.column, self.key, self.message
        )
    }
}
