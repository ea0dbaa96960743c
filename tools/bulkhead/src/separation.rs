//! `bulkhead test-separation SYSTEM`: the safety-separation checklist
//! (ISO 26262-6 Annex D, `shared/reference/automotive.md`) on the host
//! board; see `tools/separation/README.md`.
//!
//! Prints the table; with `--out DIR` also writes `junit.xml` and
//! `report.html`. Exit 0 when no item failed (not covered and not enforced
//! are not failures, and are reported as such) and every
//! `--protection-removed` build made its items fail and was refused by the
//! checker; 1 otherwise; 2 on usage errors.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_separation::{run_suite, write_reports, SuiteOptions};
use clap::Args;

use crate::EXIT_USAGE;

/// Arguments of `bulkhead test-separation`.
#[derive(Debug, Args)]
pub struct SeparationArgs {
    /// The system description (a host-board system with PDs cluster_vmm,
    /// can_virt and infotainment_vmm, e.g. tests/separation/systems/automotive-sep.system).
    pub system: PathBuf,
    /// The safety policy (hashed into the reports).
    #[arg(long, value_name = "POLICY.toml")]
    pub policy: Option<PathBuf>,
    /// Directory for junit.xml and report.html.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Runs per timing condition (each run = 1000 round trips of the safety path).
    #[arg(long, default_value_t = 2)]
    pub samples: usize,
    /// Extra directory to look for PD programs in (repeatable).
    #[arg(long = "search-path", value_name = "DIR")]
    pub search_path: Vec<PathBuf>,
    /// Run only these items (e.g. `--only M1 --only T1`).
    #[arg(long)]
    pub only: Vec<String>,
    /// A build of the PD programs with one protection removed, `NAME=DIR`
    /// (repeatable; NAME: seccomp, ro-maps, priorities, wakeups,
    /// stack-guard): every item relying on it must FAIL on it, and
    /// `bulkhead check` must refuse it.
    #[arg(long = "protection-removed", value_name = "NAME=DIR")]
    pub removed: Vec<bulkhead_separation::proof::RemovedBuild>,
}

/// Run `bulkhead test-separation`.
pub fn run(args: &SeparationArgs) -> ExitCode {
    let opts = SuiteOptions {
        system: args.system.clone(),
        policy: args.policy.clone(),
        runs: args.samples,
        search_path: args.search_path.clone(),
        only: args.only.clone(),
        removed: args.removed.clone(),
    };
    let res = match run_suite(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bulkhead test-separation: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    print!("{}", bulkhead_separation::report::table(&res));
    if let Some(dir) = &args.out {
        if let Err(e) = write_reports(&res, dir) {
            eprintln!("bulkhead test-separation: writing {}: {e}", dir.display());
            return ExitCode::from(1);
        }
        println!("reports: {0}/junit.xml {0}/report.html", dir.display());
    }
    if res.any_failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
