//! `bulkhead report FILE` and `bulkhead graph FILE -o OUT`: what a system
//! description lets each component touch, as text/JSON or as a drawing.
//!
//! Both refuse a description that does not check clean against Microkit's
//! own rules (the access they would show could not be built), printing the
//! checker's diagnostics and exiting 1.

use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_inspect::{access::AccessModel, graph, report};
use bulkhead_sdf::{check_source, CheckOptions, SystemDescription};
use clap::Args;

use crate::EXIT_USAGE;

/// Arguments of `bulkhead report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The system description.
    pub file: PathBuf,
    /// Print JSON (format `bulkhead-report/1`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `bulkhead graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The system description.
    pub file: PathBuf,
    /// Output file: `.svg` (rendered with Graphviz's `dot`) or `.dot`.
    #[arg(short = 'o', long = "output", value_name = "OUT.svg|OUT.dot")]
    pub output: PathBuf,
    /// A safety policy: PDs, VMs and regions are clustered by its domains.
    #[arg(long, value_name = "POLICY.toml")]
    pub policy: Option<PathBuf>,
}

/// Read and check `file`; on failure print why and return the exit code.
pub(crate) fn load(file: &PathBuf) -> Result<SystemDescription, ExitCode> {
    let shown = file.display().to_string();
    let src = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read '{shown}': {e}");
            return Err(ExitCode::from(EXIT_USAGE));
        }
    };
    let rep = check_source(&src, &shown, &CheckOptions::default());
    match rep.system {
        Some(sys) if rep.is_valid() => Ok(sys),
        _ => {
            eprint!("{}", rep.render());
            eprintln!("{shown}: invalid; fix it first (`bulkhead check {shown}`)");
            Err(ExitCode::from(1))
        }
    }
}

/// Run `bulkhead report`.
pub fn run_report(args: &ReportArgs) -> ExitCode {
    let sys = match load(&args.file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let model = AccessModel::of(&sys);
    if args.json {
        match serde_json::to_string_pretty(&report::json(&model)) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        println!("{}", args.file.display());
        print!("{}", report::text(&model));
    }
    ExitCode::SUCCESS
}

/// Run `bulkhead graph`.
pub fn run_graph(args: &GraphArgs) -> ExitCode {
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let svg = match ext.as_deref() {
        Some("svg") => true,
        Some("dot" | "gv") => false,
        _ => {
            eprintln!(
                "error: cannot tell the format of '{}': name it OUT.svg or OUT.dot",
                args.output.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let sys = match load(&args.file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let domains = match &args.policy {
        None => None,
        Some(p) => match crate::policy::domains_for_graph(p, &sys) {
            Ok(d) => Some(d),
            Err(code) => return code,
        },
    };
    let text = graph::dot(&AccessModel::of(&sys), domains.as_ref());
    let out = if svg {
        match graph::svg(&text) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        text
    };
    if let Err(e) = std::fs::write(&args.output, out) {
        eprintln!("error: cannot write '{}': {e}", args.output.display());
        return ExitCode::from(EXIT_USAGE);
    }
    eprintln!("wrote {}", args.output.display());
    ExitCode::SUCCESS
}
