//! The host board: runs a Microkit `.system` file on Linux, one process per
//! PD, with the isolation the description states enforced by the host kernel
//! (see `shared/design/ARCHITECTURE.md` §3 and this crate's README).
//!
//! ```no_run
//! use bulkhead_host::{run_file, RunOptions};
//! let outcome = run_file(std::path::Path::new("system/examples/hello.system"), &RunOptions::default()).unwrap();
//! assert_eq!(outcome.status, 0);
//! ```
//!
//! What a run does: parse the description ([`bulkhead_sdf::parse`]), read the
//! host-binding file beside it ([`bindings`]), compute a [`plan::Plan`],
//! create one sealed memfd per memory region, one eventfd per directed
//! notification and per PPC direction a call/reply eventfd pair with a
//! one-page message buffer, start each PD's
//! program (see [`programs`]) under `PTRACE_SEIZE`, hand it exactly its own
//! descriptors, and then supervise: PD output becomes `[pd] line`, faults
//! learned by ptrace become fault messages to the parent PD or a `MONITOR:`
//! report, restarts reset PC and SP.

pub mod bindings;
pub mod guest;
pub mod plan;
pub mod programs;
mod supervise;
mod sys;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use supervise::{run_plan, Line, RunOutcome, STATUS_TIMEOUT};

/// How to run a system.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra directories to look for PD programs in, searched first.
    pub search_path: Vec<PathBuf>,
    /// Stop after this long (exit status 124).
    pub timeout: Option<Duration>,
    /// Stop when this PD exits; its status becomes the run's.
    pub until_exit: Option<String>,
    /// Stop (status 0) when an output line matches this regular expression.
    pub until_line: Option<String>,
    /// Print lines as they come (the CLI); tests leave it off.
    pub echo: bool,
}

/// Why a system could not be started.
#[derive(Debug)]
pub enum HostError {
    /// The `.system` file could not be read.
    Read(PathBuf, std::io::Error),
    /// The description did not parse (rendered diagnostics).
    Parse(String),
    /// The host-binding file is wrong (rendered diagnostics).
    Bindings(String),
    /// The description cannot run on the host board.
    Plan(plan::PlanError),
    /// A PD's program was not found.
    Program(programs::ProgramError),
    /// `--until-line` is not a valid regular expression.
    BadRegex(String),
    /// A host resource could not be created.
    Os(&'static str, std::io::Error),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            HostError::Parse(d) => write!(f, "{d}"),
            HostError::Bindings(d) => write!(f, "{d}"),
            HostError::Plan(e) => write!(f, "{e}"),
            HostError::Program(e) => write!(f, "{e}"),
            HostError::BadRegex(e) => write!(f, "--until-line: {e}"),
            HostError::Os(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for HostError {}

/// Runs the system in `path` until its exit condition.
pub fn run_file(path: &Path, opts: &RunOptions) -> Result<RunOutcome, HostError> {
    let text = std::fs::read_to_string(path).map_err(|e| HostError::Read(path.to_path_buf(), e))?;
    let sd = bulkhead_sdf::parse(&text).map_err(|diags| {
        let mut out = String::new();
        for d in diags {
            out.push_str(&d.render(&path.display().to_string()));
            out.push('\n');
        }
        HostError::Parse(out)
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let binds = bindings::load_for(path).map_err(|diags| {
        HostError::Bindings(
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    run_description(&sd, &base, &binds, opts)
}

/// Runs an already parsed description; `base` is the directory relative
/// paths (prefill files, bound programs) are resolved against.
pub fn run_description(
    sd: &bulkhead_sdf::model::SystemDescription,
    base: &Path,
    binds: &bindings::Bindings,
    opts: &RunOptions,
) -> Result<RunOutcome, HostError> {
    let prefill_size = |p: &str| std::fs::metadata(base.join(p)).ok().map(|m| m.len());
    let plan = plan::Plan::build(sd, &prefill_size).map_err(HostError::Plan)?;
    let mut search = opts.search_path.clone();
    search.extend(binds.search_path.iter().map(|p| base.join(p)));
    search.extend(programs::default_search_path(base));
    let mut programs = Vec::new();
    for pd in &plan.pds {
        programs
            .push(programs::resolve(&pd.image, binds, base, &search).map_err(HostError::Program)?);
    }
    // Test guests: `[[guest]]` programs, a path relative to the .system file
    // or a bare name looked up like a PD program.
    let mut guests = Vec::new();
    for g in &binds.guest {
        let vm = plan
            .vms
            .iter()
            .position(|v| v.name == g.vm)
            .ok_or_else(|| {
                HostError::Bindings(format!("[[guest]]: no virtual_machine named {:?}", g.vm))
            })?;
        let direct = base.join(&g.program);
        let program = if g.program.components().count() > 1 || direct.is_file() {
            direct
        } else {
            let image = g.program.to_string_lossy().into_owned();
            programs::resolve(&image, &bindings::Bindings::default(), base, &search)
                .map_err(HostError::Program)?
        };
        guests.push((vm, program));
    }
    let until_line = match &opts.until_line {
        Some(r) => Some(regex::Regex::new(r).map_err(|e| HostError::BadRegex(e.to_string()))?),
        None => None,
    };
    run_plan(&plan, &programs, &guests, base, binds, opts, until_line)
}
