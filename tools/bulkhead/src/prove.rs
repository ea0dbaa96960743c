//! `bulkhead prove SYSTEM --policy POLICY`: check the information-flow graph
//! of a system against its hand-written safety policy.
//!
//! Exit 0 when no path the policy forbids exists, 1 when one does (each
//! printed as a chain of edges), 2 on usage errors.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_boards::Board;
use bulkhead_prove::{prove, Input};
use clap::Args;

use crate::EXIT_USAGE;

/// Arguments of `bulkhead prove`.
#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The system description.
    pub system: PathBuf,
    /// The hand-written safety policy (TOML).
    #[arg(long, value_name = "POLICY.toml")]
    pub policy: PathBuf,
    /// Board (device windows, interrupts, bus masters). Default: the
    /// system file's name when it names a board (e.g. `imx8mp_evk.system`).
    #[arg(long, value_parser = crate::check::parse_board)]
    pub board: Option<&'static Board>,
    /// Print JSON (format `bulkhead-prove/1`).
    #[arg(long)]
    pub json: bool,
}

/// Run `bulkhead prove`.
pub fn run(args: &ProveArgs) -> ExitCode {
    let sys = match crate::inspect::load(&args.system) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let board = args.board.or_else(|| {
        args.system
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(bulkhead_boards::board)
    });
    let policy_src = match std::fs::read_to_string(&args.policy) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read policy '{}': {e}", args.policy.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let shown_policy = args.policy.display().to_string();
    let policy = match bulkhead_policy::parse(&policy_src) {
        Ok(p) => p,
        Err(diags) => {
            for d in &diags {
                eprintln!("{}", d.render(&shown_policy));
            }
            eprintln!("{shown_policy}: invalid policy");
            return ExitCode::from(1);
        }
    };
    let outcome = prove(&Input {
        system: &sys,
        policy: &policy,
        board,
    });
    if args.json {
        println!("{:#}", outcome.json());
    } else {
        if let Some(b) = board {
            println!("board: {}", b.name);
        }
        print!(
            "{}",
            outcome.render(&args.system.display().to_string(), &shown_policy)
        );
    }
    if outcome.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
