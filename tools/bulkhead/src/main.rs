//! The `bulkhead` command-line tool.
//!
//! One subcommand per module; `main` only parses the command line and
//! dispatches. Exit codes are shared by every subcommand: 0 success, 1 the
//! input is invalid (or the subcommand's own failure), 2 usage error
//! (bad arguments, unreadable input file).
#![forbid(unsafe_code)]

mod check;
mod compose;
mod inspect;
mod policy;
mod prove;
mod run;
mod separation;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bulkhead: check and inspect Microkit systems.
#[derive(Debug, Parser)]
#[command(name = "bulkhead", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a Microkit system description (.system) against Microkit 2.3's
    /// rules, the board and the kernel config.
    Check(check::CheckArgs),
    /// Print the access matrix: who maps each region where and how, the
    /// channels per PD pair, IRQs, vCPUs and scheduling.
    Report(inspect::ReportArgs),
    /// Draw the system (PDs, VMs, regions, channels, IRQs), clustered by
    /// safety domain when a policy is given.
    Graph(inspect::GraphArgs),
    /// Prove from the description alone that no information path exists
    /// that the hand-written safety policy forbids.
    Prove(prove::ProveArgs),
    /// Run the system on the host board: one Linux process per PD, with
    /// the description's isolation enforced by the host kernel.
    Run(run::RunArgs),
    /// Compose a system (.system, per-PD configuration, guest device trees,
    /// host bindings) from a short declarative description.
    Compose(compose::ComposeArgs),
    /// Run the safety-separation checklist (ISO 26262-6 Annex D) on the
    /// host board and write its reports.
    TestSeparation(separation::SeparationArgs),
}

/// Exit code for usage errors (clap uses the same).
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            // Printing can only fail if stdout/stderr is closed; nothing
            // useful is left to do then.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Report(args) => inspect::run_report(&args),
        Command::Graph(args) => inspect::run_graph(&args),
        Command::Prove(args) => prove::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Compose(args) => compose::run(&args),
        Command::TestSeparation(args) => separation::run(&args),
    }
}
