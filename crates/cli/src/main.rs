//! The `memwarden` command: the budgeted demo session and the batch tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use memwarden::config::Config;

mod demo;
mod gaf;
mod output;
mod plan;

/// Keep a memory-hungry process inside its memory budget.
#[derive(Debug, Parser)]
#[command(name = "memwarden", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scripted editing-and-inference session under a memory budget and report.
    Demo(demo::Args),
    /// Plan the tensor memory of an inference graph (ONNX or JSON), or a buffer list in
    /// MiniMalloc's CSV format, into one arena.
    Plan(plan::Args),
    /// Turn time series (`.npy`) into Gramian Angular Field images (`.npy`), through
    /// shared memory.
    Gaf(gaf::Args),
    /// Work with config files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Check a config file: prints "ok", or every error with its key and line (exit code 2).
    Check {
        /// The file to check (a regular file of at most 4 MiB); the shipped defaults
        /// when left out.
        path: Option<PathBuf>,
    },
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Text,
    /// For programs: one JSON document.
    Json,
}

/// Exit code for bad input (a bad config, a bad argument).
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Plan(args) => {
            init_logging(log::LevelFilter::Warn);
            plan::run(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Gaf(args) => {
            init_logging(log::LevelFilter::Warn);
            gaf::run(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Config {
            action: ConfigAction::Check { path },
        } => return check_config(path),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

/// Starts logging at the config's `[logging] level`; `RUST_LOG` overrides it.
pub(crate) fn init_logging(level: log::LevelFilter) {
    let default = level.to_string().to_lowercase();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default)).init();
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    init_logging(log::LevelFilter::Warn);
    let loaded = match &path {
        Some(path) => Config::from_path(path),
        None => Ok(Config::shipped()),
    };
    match loaded {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The whole chain: "cannot read config file x.toml: No such file or directory".
            eprintln!("{:#}", anyhow::Error::from(e));
            ExitCode::from(BAD_INPUT)
        }
    }
}

/// Loads the config named on the command line, or the shipped one.
pub(crate) fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::from_path(path)?),
        None => Ok(Config::shipped()),
    }
}
