//! The arguments of `memwarden demo`.

use std::path::PathBuf;

use memwarden::runtime::Budget;

use crate::Format;

/// Arguments of `memwarden demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The most memory the whole process may use: a size ("384MiB"), a share of this
    /// machine's memory ("25%"), or "auto" (three quarters of the memory cgroup's limit in
    /// a container, else a quarter of the machine); the config's `monitor.budget` ("auto"
    /// as shipped) by default. A budget above the cgroup's limit is refused.
    #[arg(long)]
    pub(crate) budget: Option<Budget>,
    /// Seed of the access pattern.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Number of steps in the session.
    #[arg(long, default_value_t = 2000)]
    pub(crate) steps: u64,
    /// Smaller model files (84 MiB in all instead of 336 MiB).
    #[arg(long)]
    pub(crate) small: bool,
    /// Where the model files are generated once and kept; the user's cache directory
    /// (`~/.cache/memwarden/demo-models`) by default.
    #[arg(long)]
    pub(crate) models_dir: Option<PathBuf>,
    /// Write a picture of RSS, tracked bytes and budget over time, with the releases
    /// marked, to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) timeline: Option<PathBuf>,
    /// Config file; the shipped defaults when left out.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// Measure what memwarden costs: run the same steps without memwarden, with
    /// memwarden but a budget it never reaches, and under the budget, each in its own
    /// process, and print the time ratios. The run without memwarden keeps everything,
    /// so it needs about 2 GiB (under 1 GiB with --small).
    #[arg(long)]
    pub(crate) overhead: bool,
    /// With --overhead: runs of each session; the fastest counts.
    #[arg(long, default_value_t = 5, requires = "overhead")]
    pub(crate) repeat: u32,
    /// Which session to run (--overhead starts the other two).
    #[arg(long, value_enum, default_value_t = Mode::Governed, hide = true)]
    pub(crate) mode: Mode,
}

/// The three sessions `--overhead` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Under the budget: the demo.
    Governed,
    /// Through memwarden, with a budget and caps it never reaches.
    Unbounded,
    /// Without memwarden.
    Plain,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Governed => "governed",
            Mode::Unbounded => "unbounded",
            Mode::Plain => "plain",
        }
    }
}
