//! `bulkhead run FILE`: run a system on the host board (crate
//! `bulkhead-host`). Every PD's output is printed as `[pd] line`, monitor
//! reports as `MONITOR: ...`.
//!
//! Exit status: 0 when the exit condition was met cleanly (default: every
//! non-passive PD has halted with status 0 and nothing was reported), 1 when
//! a PD faulted, was stopped or failed, the `--until-exit` PD's status when
//! given, 124 on `--timeout`, 128+signal on SIGINT/SIGTERM, 2 when the
//! system could not be started.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::EXIT_USAGE;

/// Arguments of `bulkhead run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The system description to run.
    pub file: PathBuf,
    /// Stop after this many seconds (exit status 124).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Stop when this PD exits and exit with its status.
    #[arg(long, value_name = "PD", conflicts_with = "until_line")]
    pub until_exit: Option<String>,
    /// Stop (status 0) when an output line matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub until_line: Option<String>,
    /// Directory to look for PD programs in first; repeatable.
    #[arg(long = "search-path", value_name = "DIR")]
    pub search_path: Vec<PathBuf>,
}

/// Run `bulkhead run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let timeout = match args.timeout {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(_) => {
            eprintln!("bulkhead run: --timeout must be a positive number of seconds");
            return ExitCode::from(EXIT_USAGE);
        }
        None => None,
    };
    let opts = bulkhead_host::RunOptions {
        search_path: args.search_path.clone(),
        timeout,
        until_exit: args.until_exit.clone(),
        until_line: args.until_line.clone(),
        echo: true,
    };
    match bulkhead_host::run_file(&args.file, &opts) {
        Ok(outcome) => ExitCode::from(u8::try_from(outcome.status.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("bulkhead run: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
