//! Running one scenario: the system under test with chosen programs swapped
//! in (an attacker in the untrusted PD's place, a crashing stand-in for a
//! safety PD), and what the suite reads back from the run.
//!
//! The stand-in PDs (`tests/separation`) print fixed lines that this module
//! parses: `sep: S ticks=… answered=… lost=… mismatched=… max_gap_ns=…
//! checksum_start=… checksum_end=…` and `sep: lat <ns> <ns> …`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_host::bindings::{self, Bindings};
use bulkhead_host::{programs, run_description, RunOptions};
use bulkhead_sdf::model::SystemDescription;

use crate::{SuiteError, SuiteOptions};

/// The safety stand-in: the PD whose period and round trip are measured.
pub const SAFETY_PD: &str = "cluster_vmm";
/// The safety stand-in's partner on its path (the CAN virtualiser).
pub const SAFETY_PARTNER: &str = "can_virt";
/// The untrusted PD whose program the attacks replace.
pub const UNTRUSTED_PD: &str = "infotainment_vmm";

/// Everything the items need: the description, its bindings and where
/// programs are.
#[derive(Debug)]
pub struct Ctx {
    /// The `.system` file.
    pub system: PathBuf,
    /// Its parsed description.
    pub sd: SystemDescription,
    /// Its directory.
    pub base: PathBuf,
    /// Its host bindings.
    pub binds: Bindings,
    /// Where PD programs are looked for.
    pub search: Vec<PathBuf>,
    /// Runs per timing condition.
    pub runs: usize,
    /// Whether any run so far was refused SCHED_FIFO.
    pub fifo_refused: Option<String>,
    /// Every program a run used (for the configuration hashes).
    pub programs_used: std::collections::BTreeMap<String, PathBuf>,
    /// The unattacked runs, measured once per suite run.
    pub baseline: Option<Baseline>,
    /// How long one run may take before it is stopped (a run of the safety
    /// path takes about 1.1 s plus start-up; [`RUN_TIMEOUT`] by default).
    pub run_timeout: Duration,
}

/// The default [`Ctx::run_timeout`]: generous for a loaded host.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(15);

/// The safety path without attack, in this suite run: the reference the
/// timing criteria compare against (host noise shows here too).
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The runs.
    pub runs: Vec<RunResult>,
    /// Their pooled round-trip samples.
    pub latencies: Vec<u64>,
    /// The most late ticks in one run.
    pub max_late: u64,
    /// The most overruns in one run.
    pub max_overrun: u64,
}

impl Baseline {
    /// Late ticks (or overruns) a run under attack may have: the worst
    /// baseline run plus [`MAX_LATE_PERCENT`] of the ticks.
    pub fn allowance(&self, baseline_worst: u64, ticks: u64) -> u64 {
        baseline_worst + ticks * MAX_LATE_PERCENT / 100
    }
}

/// The share of late ticks (in percent) a run may have.
pub const MAX_LATE_PERCENT: u64 = 2;

/// What one run showed.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// The run's exit status (0 = S finished).
    pub status: i32,
    /// The safety stand-in's summary, if it printed one.
    pub summary: Option<Summary>,
    /// Its round-trip samples (ns).
    pub latencies: Vec<u64>,
    /// Monitor lines about each PD: (pd, text).
    pub monitor: Vec<(String, String)>,
    /// Every line as printed (for failure messages).
    pub lines: Vec<String>,
}

/// The safety stand-in's `sep: S` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Measured ticks.
    pub ticks: u64,
    /// Ticks whose request was answered before the next tick.
    pub answered: u64,
    /// Ticks that found the previous request unanswered (a late reply).
    pub overrun: u64,
    /// Requests unanswered for 10 periods (lost wake-ups).
    pub lost: u64,
    /// Replies with the wrong sequence number.
    pub mismatched: u64,
    /// Largest gap between two ticks (ns); the period is 1 ms.
    pub max_gap_ns: u64,
    /// Ticks more than 2 ms after the previous one.
    pub late: u64,
    /// `cluster_ram` checksum after S filled it.
    pub checksum_start: u64,
    /// ... and at the end of the run.
    pub checksum_end: u64,
}

fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Summary {
    /// Parses the text after `sep: S `.
    pub fn parse(text: &str) -> Option<Summary> {
        let mut s = Summary::default();
        for kv in text.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            let v = num(v)?;
            match k {
                "ticks" => s.ticks = v,
                "answered" => s.answered = v,
                "lost" => s.lost = v,
                "overrun" => s.overrun = v,
                "mismatched" => s.mismatched = v,
                "max_gap_ns" => s.max_gap_ns = v,
                "late" => s.late = v,
                "checksum_start" => s.checksum_start = v,
                "checksum_end" => s.checksum_end = v,
                _ => {}
            }
        }
        Some(s)
    }
}

/// Which programs a scenario swaps in (bare program names).
#[derive(Debug, Clone, Copy)]
pub struct Variant<'a> {
    /// The untrusted PD's program.
    pub untrusted: &'a str,
    /// The safety partner's program, when not the system's own.
    pub partner: Option<&'a str>,
}

impl Ctx {
    /// Loads the system and its bindings.
    pub fn load(opts: &SuiteOptions) -> Result<Ctx, SuiteError> {
        let text = std::fs::read_to_string(&opts.system)
            .map_err(|e| SuiteError::Load(format!("{}: {e}", opts.system.display())))?;
        let sd = bulkhead_sdf::parse(&text).map_err(|diags| {
            SuiteError::Load(
                diags
                    .iter()
                    .map(|d| d.render(&opts.system.display().to_string()))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        let binds = bindings::load_for(&opts.system).map_err(|d| {
            SuiteError::Load(
                d.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        let base = opts
            .system
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for pd in [SAFETY_PD, SAFETY_PARTNER, UNTRUSTED_PD] {
            if !sd.all_pds().iter().any(|p| p.name == pd) {
                return Err(SuiteError::Load(format!(
                    "{}: no PD named {pd}; the suite measures the path {SAFETY_PD} -> {SAFETY_PARTNER} and attacks from {UNTRUSTED_PD} (tools/separation/README.md)",
                    opts.system.display()
                )));
            }
        }
        let mut search = opts.search_path.clone();
        search.extend(binds.search_path.iter().map(|p| base.join(p)));
        search.extend(programs::default_search_path(&base));
        Ok(Ctx {
            system: opts.system.clone(),
            sd,
            base,
            binds,
            search,
            runs: opts.runs.max(1),
            fifo_refused: None,
            programs_used: Default::default(),
            baseline: None,
            run_timeout: RUN_TIMEOUT,
        })
    }

    fn image_of(&self, pd: &str) -> Option<String> {
        self.sd
            .all_pds()
            .iter()
            .find(|p| p.name == pd)
            .map(|p| p.program_image.path.clone())
    }

    /// Runs the system once with `v` swapped in, until the safety stand-in
    /// ends (or `timeout`).
    pub fn run(&mut self, v: Variant<'_>, timeout: Duration) -> Result<RunResult, String> {
        let mut binds = self.binds.clone();
        for (pd, prog) in [
            (UNTRUSTED_PD, Some(v.untrusted)),
            (SAFETY_PARTNER, v.partner),
        ] {
            let (Some(prog), Some(image)) = (prog, self.image_of(pd)) else {
                continue;
            };
            let path = programs::resolve(prog, &Bindings::default(), &self.base, &self.search)
                .map_err(|e| e.to_string())?;
            binds.programs.insert(image, path);
        }
        for pd in self.sd.all_pds() {
            if let Ok(p) =
                programs::resolve(&pd.program_image.path, &binds, &self.base, &self.search)
            {
                let name = p
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.programs_used.insert(name, p);
            }
        }
        let opts = RunOptions {
            search_path: self.search.clone(),
            timeout: Some(timeout),
            until_exit: Some(SAFETY_PD.to_string()),
            until_line: None,
            echo: false,
        };
        let out =
            run_description(&self.sd, &self.base, &binds, &opts).map_err(|e| e.to_string())?;
        let mut r = RunResult {
            status: out.status,
            ..RunResult::default()
        };
        for l in &out.lines {
            r.lines.push(l.render());
            if l.text.contains("priorities are NOT enforced") {
                self.fifo_refused = Some(l.text.clone());
            }
            match (&l.pd, l.monitor) {
                (Some(pd), true) => r.monitor.push((pd.clone(), l.text.clone())),
                (Some(pd), false) if pd == SAFETY_PD => {
                    if let Some(t) = l.text.strip_prefix("sep: S ") {
                        r.summary = Summary::parse(t);
                    } else if let Some(t) = l.text.strip_prefix("sep: lat") {
                        r.latencies.extend(t.split_whitespace().filter_map(num));
                    }
                }
                _ => {}
            }
        }
        Ok(r)
    }

    /// The baseline (idle infotainment), measured on first use.
    pub fn baseline(&mut self) -> Result<Baseline, String> {
        if let Some(b) = &self.baseline {
            return Ok(b.clone());
        }
        let runs = self.run_pooled(Variant {
            untrusted: "sep_idle",
            partner: None,
        })?;
        let b = Baseline {
            latencies: runs
                .iter()
                .flat_map(|r| r.latencies.iter().copied())
                .collect(),
            max_late: runs
                .iter()
                .filter_map(|r| r.summary.map(|s| s.late))
                .max()
                .unwrap_or(0),
            max_overrun: runs
                .iter()
                .filter_map(|r| r.summary.map(|s| s.overrun))
                .max()
                .unwrap_or(0),
            runs,
        };
        self.baseline = Some(b.clone());
        Ok(b)
    }

    /// Runs `v` [`Ctx::runs`] times and pools the results.
    pub fn run_pooled(&mut self, v: Variant<'_>) -> Result<Vec<RunResult>, String> {
        (0..self.runs)
            .map(|_| self.run(v, self.run_timeout))
            .collect()
    }
}

/// The checks every scenario makes on the safety stand-in: it finished, its
/// memory is unchanged, it kept its period (late ticks and overruns within
/// the baseline's worst run plus [`MAX_LATE_PERCENT`] of the ticks: host or
/// hypervisor preemption shows in the baseline too, so the attack is judged
/// by what it adds), and, when `strict_path`, lost no wake-up and saw no
/// wrong sequence number.
pub fn safety_checks(r: &RunResult, base: &Baseline, strict_path: bool) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(s) = r.summary else {
        errs.push(format!(
            "{SAFETY_PD} did not finish (run status {}); last lines: {}",
            r.status,
            r.lines
                .iter()
                .rev()
                .take(4)
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        return errs;
    };
    if s.checksum_start != s.checksum_end {
        errs.push(format!(
            "cluster_ram changed: checksum {:#x} -> {:#x}",
            s.checksum_start, s.checksum_end
        ));
    }
    if s.late > base.allowance(base.max_late, s.ticks) {
        errs.push(format!(
            "{SAFETY_PD} missed its period: {} of {} ticks more than 2 ms apart (baseline worst {}; largest gap {} µs)",
            s.late,
            s.ticks,
            base.max_late,
            s.max_gap_ns / 1000
        ));
    }
    if strict_path && s.overrun > base.allowance(base.max_overrun, s.ticks) {
        errs.push(format!(
            "safety path: {} of {} round trips overran the period (baseline worst {})",
            s.overrun, s.ticks, base.max_overrun
        ));
    }
    if strict_path && s.ticks.saturating_sub(s.answered) > base.allowance(base.max_overrun, s.ticks)
    {
        errs.push(format!(
            "safety path: only {} of {} round trips answered within their period (baseline worst {} unanswered)",
            s.answered, s.ticks, base.max_overrun
        ));
    }
    if strict_path && (s.lost > 0 || s.mismatched > 0) {
        errs.push(format!(
            "safety path: {} lost wake-ups (request unanswered for 10 periods), {} wrong sequence numbers{}",
            s.lost,
            s.mismatched,
            r.lines
                .iter()
                .filter(|l| l.contains("unanswered for"))
                .map(|l| format!(" [{l}]"))
                .collect::<String>()
        ));
    }
    for (pd, t) in &r.monitor {
        if pd == SAFETY_PD || pd == SAFETY_PARTNER {
            errs.push(format!("monitor about safety PD {pd}: {t}"));
        }
    }
    errs
}
