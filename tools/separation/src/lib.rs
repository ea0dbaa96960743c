//! The safety-separation regression suite: the checklist of
//! `shared/reference/automotive.md` (M1–M4, T1–T4, C1–C5, ISO 26262-6
//! Annex D) run on the host board against a system description, with
//! attack PDs swapped in for the untrusted PD.
//!
//! The checklist is an explicit registry ([`registry`]): one [`Item`] per
//! checklist entry, each with its Annex D class, what it attacks, what it
//! measures, its pass criterion and a test function. An item that needs a
//! device class the host board does not wire yet has no test function and
//! ends as [`Status::NotCovered`] naming the class; adding it later means
//! writing the function and setting it in its registry entry.
//!
//! Nothing passes by default: an item is [`Status::Passed`] only when its
//! test function ran and every check held.
//!
//! Proof that the tests can fail ([`proof`]): given builds of the PD
//! programs with one host-board protection removed each (the runtime's
//! test-only `protection-removed-*` features), the suite runs every item
//! that relies on that protection against the build and requires it to FAIL,
//! and requires `bulkhead check --require-images` to refuse the build's
//! images (E078).

pub mod config;
pub mod devices;
pub mod items;
pub mod proof;
pub mod report;
pub mod scenario;
pub mod stats;

use std::path::{Path, PathBuf};

pub use items::registry;

/// How one checklist item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Ran, and every check held.
    Passed,
    /// Ran, and a check failed (what failed).
    Failed(String),
    /// The device class is not built for this system or board (which, and why).
    NotCovered(String),
    /// The host board cannot enforce what the item checks (why).
    NotEnforced(String),
}

impl Status {
    /// The short word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed(_) => "FAILED",
            Status::NotCovered(_) => "not covered",
            Status::NotEnforced(_) => "not enforced on this host",
        }
    }

    /// The reason, empty for `Passed`.
    pub fn reason(&self) -> &str {
        match self {
            Status::Passed => "",
            Status::Failed(r) | Status::NotCovered(r) | Status::NotEnforced(r) => r,
        }
    }
}

/// A latency distribution measured by an item (for the plots).
#[derive(Debug, Clone)]
pub struct Distribution {
    /// What it is ("baseline", "infotainment busy-loop", ...).
    pub label: String,
    /// Samples in nanoseconds.
    pub samples_ns: Vec<u64>,
}

/// What an item's test function returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The verdict.
    pub status: Status,
    /// The evidence, one line each (what ran, what was seen).
    pub evidence: Vec<String>,
    /// Distributions to plot.
    pub distributions: Vec<Distribution>,
}

impl Outcome {
    /// An outcome without measurements.
    pub fn new(status: Status) -> Outcome {
        Outcome {
            status,
            evidence: Vec::new(),
            distributions: Vec::new(),
        }
    }
}

/// A test function: runs the item's scenarios in `ctx`.
pub type TestFn = fn(&mut scenario::Ctx) -> Outcome;

/// One checklist entry.
#[derive(Debug, Clone)]
pub struct Item {
    /// Checklist id (`M1`, `T3`, ...).
    pub id: &'static str,
    /// ISO 26262-6 Annex D class (D.2.2 timing/execution, D.2.3 memory, D.2.4 exchange of information).
    pub annex_d: &'static str,
    /// What the item attacks.
    pub attacks: &'static str,
    /// What it measures.
    pub measures: &'static str,
    /// Its pass criterion (statistic, tolerance, sample count for timing).
    pub criterion: &'static str,
    /// The test, or why there is none yet (device class not built).
    pub test: Result<TestFn, &'static str>,
    /// The protection-removed builds ([`proof::VARIANTS`]) this item must
    /// FAIL on; empty when none exists (the registry says why in `criterion`).
    pub removed_by: &'static [&'static str],
}

/// An item with its outcome.
#[derive(Debug, Clone)]
pub struct ItemResult {
    /// The registry entry.
    pub item: Item,
    /// What happened.
    pub outcome: Outcome,
}

/// Options of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The `.system` file.
    pub system: PathBuf,
    /// The safety policy it was checked against (hashed into the reports).
    pub policy: Option<PathBuf>,
    /// Runs per timing condition; each run yields `S_TICKS` (1000) samples.
    pub runs: usize,
    /// Extra directories to look for PD programs in.
    pub search_path: Vec<PathBuf>,
    /// Only these items (all when empty).
    pub only: Vec<String>,
    /// Protection-removed builds to prove the items can fail on.
    pub removed: Vec<proof::RemovedBuild>,
}

/// The whole result of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteResult {
    /// What was tested.
    pub config: config::Configuration,
    /// Per item, in checklist order.
    pub items: Vec<ItemResult>,
    /// Per protection-removed build: the items run on it and the checker's verdict.
    pub proofs: Vec<proof::Proof>,
}

impl SuiteResult {
    /// Whether any item failed, or a protection-removed build did not make
    /// its items fail or was not refused by `bulkhead check`.
    pub fn any_failed(&self) -> bool {
        self.items
            .iter()
            .any(|r| matches!(r.outcome.status, Status::Failed(_)))
            || self.proofs.iter().any(|p| !p.holds())
    }
}

/// Why the suite could not run at all.
#[derive(Debug)]
pub enum SuiteError {
    /// The system or its bindings could not be loaded.
    Load(String),
}

impl std::fmt::Display for SuiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SuiteError::Load(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SuiteError {}

/// Runs the checklist against `opts.system`.
pub fn run_suite(opts: &SuiteOptions) -> Result<SuiteResult, SuiteError> {
    let mut ctx = scenario::Ctx::load(opts)?;
    let mut items = Vec::new();
    for item in registry() {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == item.id) {
            continue;
        }
        let outcome = match item.test {
            Ok(f) => f(&mut ctx),
            Err(why) => Outcome::new(Status::NotCovered(why.to_string())),
        };
        items.push(ItemResult { item, outcome });
    }
    // The builds without a protection are judged against the unattacked
    // runs of the normal build: their own baseline may already suffer
    // from the missing protection.
    let baseline = if opts.removed.is_empty() || ctx.profile != scenario::Profile::StandIn {
        ctx.baseline.clone()
    } else {
        ctx.baseline().ok()
    };
    let mut proofs = Vec::new();
    for build in &opts.removed {
        proofs.push(proof::run(opts, build, &items, baseline.clone())?);
    }
    let config = config::Configuration::gather(&ctx, opts.policy.as_deref());
    Ok(SuiteResult {
        config,
        items,
        proofs,
    })
}

/// Writes `junit.xml` and `report.html` into `dir` (created).
pub fn write_reports(res: &SuiteResult, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("junit.xml"), report::junit(res))?;
    std::fs::write(dir.join("report.html"), report::html(res))?;
    Ok(())
}
