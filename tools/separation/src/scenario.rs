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

/// Which programs play the safety path in the system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `cluster_vmm` runs the stand-in `sep_cluster` (1 ms timer, round
    /// trip through `can_virt`, `sep: S` summary): every item that measures
    /// the safety path can run.
    StandIn,
    /// The system's own programs play every PD (the reference automotive
    /// system on the host board): the attacks run against the real PDs and
    /// are judged by the monitor, against an unattacked run of the same
    /// system; items that need the stand-in's measurements are not covered.
    Reference,
}

/// The idle program that plays a PD whose device class (or program) is
/// not built for the host board (`tests/separation`).
pub const PLACEHOLDER: &str = "class_not_built";

/// How long one run of a [`Profile::Reference`] system lasts: every PD
/// has started and the attacker has run by then.
pub const REFERENCE_RUN: Duration = Duration::from_secs(3);

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
    /// Which programs play the safety path.
    pub profile: Profile,
    /// What the suite changed in the bindings for this host (resources
    /// it left unbound, and why).
    pub notes: Vec<String>,
    /// The unattacked run of a [`Profile::Reference`] system.
    pub reference: Option<RunResult>,
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
    /// The untrusted PD's program (`None`: the system's own).
    pub untrusted: Option<&'a str>,
    /// The safety partner's program, when not the system's own.
    pub partner: Option<&'a str>,
    /// Test-guest programs to bind: (`<virtual_machine>` name, program).
    pub guests: &'a [(&'a str, &'a str)],
    /// Host files to bind as resources (`[[disk]]`): (name, PD, absolute
    /// path, read-only).
    pub files: &'a [(&'a str, &'a str, &'a Path, bool)],
}

impl<'a> Variant<'a> {
    /// The system as it is, with `untrusted` in infotainment_vmm's place
    /// (`None`: its own program).
    pub const fn attack(untrusted: Option<&'a str>) -> Variant<'a> {
        Variant {
            untrusted,
            partner: None,
            guests: &[],
            files: &[],
        }
    }
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
        // A host network interface the bindings name but this host lacks
        // would stop every run before any PD starts; the PDs bound to it
        // run without it (the CAN driver's SocketCAN bridge is optional,
        // Ethernet is not built for the host board).
        let mut binds = binds;
        let mut notes = Vec::new();
        for (kind, list) in [("TAP", &mut binds.tap), ("SocketCAN", &mut binds.can)] {
            list.retain(|n| {
                let present = Path::new("/sys/class/net").join(&n.interface).exists();
                if !present {
                    notes.push(format!(
                        "{kind} interface {} (resource {} of {}) is absent on this host: left unbound",
                        n.interface, n.name, n.pd
                    ));
                }
                present
            });
        }
        let cluster_prog = sd
            .all_pds()
            .iter()
            .find(|p| p.name == SAFETY_PD)
            .and_then(|p| programs::resolve(&p.program_image.path, &binds, &base, &search).ok());
        let profile = match cluster_prog.as_deref().and_then(Path::file_name) {
            Some(n) if n == "sep_cluster" => Profile::StandIn,
            _ => Profile::Reference,
        };
        if profile == Profile::Reference {
            // A PD whose program is not built (yet) is played by the idle
            // placeholder, so the rest of the system still runs; the report
            // says which.
            let placeholder = programs::resolve(PLACEHOLDER, &Bindings::default(), &base, &search)
                .map_err(|e| SuiteError::Load(format!("{e} (build bulkhead-separation-pds)")))?;
            for pd in sd.all_pds() {
                let image = &pd.program_image.path;
                if let Err(e) = programs::resolve(image, &binds, &base, &search) {
                    // A binding to a path in another target directory: the
                    // same program by name on the search path.
                    let by_name = binds
                        .programs
                        .get(image)
                        .and_then(|p| p.file_name())
                        .and_then(|n| search.iter().map(|d| d.join(n)).find(|c| c.is_file()));
                    if let Some(p) = by_name {
                        notes.push(format!(
                            "{}: bound program not found, using {} from the search path",
                            pd.name,
                            p.display()
                        ));
                        binds.programs.insert(image.clone(), p);
                        continue;
                    }
                    notes.push(format!(
                        "{}: {e}; played by the placeholder {PLACEHOLDER}",
                        pd.name
                    ));
                    binds.programs.insert(image.clone(), placeholder.clone());
                }
            }
        }
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
            profile,
            notes,
            reference: None,
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
        for (pd, prog) in [(UNTRUSTED_PD, v.untrusted), (SAFETY_PARTNER, v.partner)] {
            let (Some(prog), Some(image)) = (prog, self.image_of(pd)) else {
                continue;
            };
            let path = programs::resolve(prog, &Bindings::default(), &self.base, &self.search)
                .map_err(|e| e.to_string())?;
            binds.programs.insert(image, path);
        }
        for (vm, prog) in v.guests {
            binds.guest.retain(|g| g.vm != *vm);
            binds.guest.push(bindings::Guest {
                vm: (*vm).to_string(),
                program: PathBuf::from(prog),
            });
        }
        for (name, pd, path, read_only) in v.files {
            binds.disk.retain(|d| d.name != *name || d.pd != *pd);
            binds.disk.push(bindings::Disk {
                name: (*name).to_string(),
                pd: (*pd).to_string(),
                path: path.to_path_buf(),
                read_only: *read_only,
            });
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
        let (timeout, until_exit) = match self.profile {
            Profile::StandIn => (timeout, Some(SAFETY_PD.to_string())),
            Profile::Reference => (timeout, None),
        };
        let opts = RunOptions {
            search_path: self.search.clone(),
            timeout: Some(timeout),
            until_exit,
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
        let runs = self.run_pooled(Variant::attack(Some("sep_idle")))?;
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

    /// The unattacked run of a [`Profile::Reference`] system (its own
    /// programs everywhere), measured on first use.
    pub fn reference_run(&mut self) -> Result<RunResult, String> {
        if let Some(r) = &self.reference {
            return Ok(r.clone());
        }
        let r = self.run(Variant::attack(None), REFERENCE_RUN)?;
        self.reference = Some(r.clone());
        Ok(r)
    }

    /// What a run of a memory attack did to everything but the attacker:
    /// for the stand-in, [`safety_findings`] against the baseline; for the
    /// reference system, [`reference_checks`] against its unattacked run.
    /// Returns the failures and the notes: on a host that cannot hold the
    /// period even without attack ([`noisy`]), timing findings are notes,
    /// not failures — a memory item is not failed for the host's noise.
    pub fn judge(&mut self, r: &RunResult) -> Result<(Vec<String>, Vec<String>), String> {
        match self.profile {
            Profile::StandIn => {
                let base = self.baseline()?;
                let noise = noisy(&base);
                let mut errs = Vec::new();
                let mut notes = Vec::new();
                for f in safety_findings(r, &base, true) {
                    match (&noise, f.timing) {
                        (Some(why), true) => notes.push(format!("not judged ({why}): {}", f.text)),
                        _ => errs.push(f.text),
                    }
                }
                Ok((errs, notes))
            }
            Profile::Reference => {
                let base = self.reference_run()?;
                Ok((reference_checks(r, &base), Vec::new()))
            }
        }
    }

    /// How long one memory-attack run lasts: the stand-in's timeout, or
    /// [`REFERENCE_RUN`] on the reference system (which runs until stopped).
    pub fn attack_run(&self) -> Duration {
        match self.profile {
            Profile::StandIn => self.run_timeout,
            Profile::Reference => REFERENCE_RUN,
        }
    }

    /// A fresh scratch directory for this suite run's host files.
    pub fn scratch(&self, what: &str) -> Result<PathBuf, String> {
        let d =
            std::env::temp_dir().join(format!("bulkhead-separation-{}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(d)
    }

    /// Runs `v` [`Ctx::runs`] times and pools the results.
    pub fn run_pooled(&mut self, v: Variant<'_>) -> Result<Vec<RunResult>, String> {
        (0..self.runs)
            .map(|_| self.run(v, self.run_timeout))
            .collect()
    }
}

/// One failed check on the safety stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What failed.
    pub text: String,
    /// Whether it is about time (period, overruns, replies too late),
    /// which host or hypervisor preemption alone can cause; the others
    /// (memory changed, wrong sequence number, no summary, a monitor
    /// report) cannot.
    pub timing: bool,
}

/// The checks every scenario makes on the safety stand-in: it finished, its
/// memory is unchanged, it kept its period (late ticks and overruns within
/// the baseline's worst run plus [`MAX_LATE_PERCENT`] of the ticks: host or
/// hypervisor preemption shows in the baseline too, so the attack is judged
/// by what it adds), and, when `strict_path`, answered its round trips,
/// lost no wake-up and saw no wrong sequence number.
pub fn safety_checks(r: &RunResult, base: &Baseline, strict_path: bool) -> Vec<String> {
    safety_findings(r, base, strict_path)
        .into_iter()
        .map(|f| f.text)
        .collect()
}

/// [`safety_checks`], each marked whether it is about time.
pub fn safety_findings(r: &RunResult, base: &Baseline, strict_path: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |text: String, timing: bool| out.push(Finding { text, timing });
    let Some(s) = r.summary else {
        push(
            format!(
                "{SAFETY_PD} did not finish (run status {}); last lines: {}",
                r.status,
                r.lines
                    .iter()
                    .rev()
                    .take(4)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
            false,
        );
        return out;
    };
    if s.checksum_start != s.checksum_end {
        push(
            format!(
                "cluster_ram changed: checksum {:#x} -> {:#x}",
                s.checksum_start, s.checksum_end
            ),
            false,
        );
    }
    if s.late > base.allowance(base.max_late, s.ticks) {
        push(
            format!(
                "{SAFETY_PD} missed its period: {} of {} ticks more than 2 ms apart (baseline worst {}; largest gap {} µs)",
                s.late,
                s.ticks,
                base.max_late,
                s.max_gap_ns / 1000
            ),
            true,
        );
    }
    if strict_path && s.overrun > base.allowance(base.max_overrun, s.ticks) {
        push(
            format!(
                "safety path: {} of {} round trips overran the period (baseline worst {})",
                s.overrun, s.ticks, base.max_overrun
            ),
            true,
        );
    }
    let unanswered = s.ticks.saturating_sub(s.answered);
    if strict_path && unanswered > base.allowance(base.max_overrun, s.ticks) {
        push(
            format!(
                "safety path: only {} of {} round trips answered within their period (baseline worst {} unanswered)",
                s.answered, s.ticks, base.max_overrun
            ),
            // None answered at all is no matter of time.
            s.answered > 0,
        );
    }
    if strict_path && s.lost > 0 {
        push(
            format!(
                "safety path: {} lost wake-ups (request unanswered for 10 periods){}",
                s.lost,
                r.lines
                    .iter()
                    .filter(|l| l.contains("unanswered for"))
                    .map(|l| format!(" [{l}]"))
                    .collect::<String>()
            ),
            true,
        );
    }
    if strict_path && s.mismatched > 0 {
        push(
            format!("safety path: {} wrong sequence numbers", s.mismatched),
            false,
        );
    }
    for (pd, t) in &r.monitor {
        if pd == SAFETY_PD || pd == SAFETY_PARTNER {
            push(format!("monitor about safety PD {pd}: {t}"), false);
        }
    }
    out
}

/// Why this host cannot hold the safety path's period even without attack,
/// if so (a shared or virtualised CPU: preemption the PDs cannot prevent):
/// the worst baseline run has more than [`MAX_LATE_PERCENT`] late ticks.
pub fn noisy(b: &Baseline) -> Option<String> {
    (b.max_late * 100 > 1000 * MAX_LATE_PERCENT).then(|| {
        format!(
            "the host cannot hold the safety path's 1 ms period even without attack ({} of 1000 ticks late in the worst baseline run: host or hypervisor preemption)",
            b.max_late
        )
    })
}

/// The checks on a run of a [`Profile::Reference`] system: the system ran
/// to the end of the run, and the monitor said nothing about any PD but the
/// attacker that it did not also say in the unattacked run (a PD of a class
/// whose host resource is not bound may stop in both; that is the
/// system's state, not the attack's doing).
pub fn reference_checks(r: &RunResult, unattacked: &RunResult) -> Vec<String> {
    let mut errs = Vec::new();
    // 124: stopped at the end of the run, as intended.
    if r.status != 124 {
        errs.push(format!(
            "the system stopped before the end of the run (status {})",
            r.status
        ));
    }
    for (pd, t) in &r.monitor {
        if pd != UNTRUSTED_PD && !unattacked.monitor.contains(&(pd.clone(), t.clone())) {
            errs.push(format!(
                "monitor about {pd} (not in the unattacked run): {t}"
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: i32, monitor: &[(&str, &str)]) -> RunResult {
        RunResult {
            status,
            monitor: monitor
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
            ..RunResult::default()
        }
    }

    #[test]
    fn reference_runs_are_judged_against_the_unattacked_run() {
        let quiet = run(
            124,
            &[("blk_driver", "MONITOR: PD blk_driver exited with status 1")],
        );
        // What the unattacked system also says, and the attacker's own fault, are fine.
        let attacked = run(
            124,
            &[
                ("blk_driver", "MONITOR: PD blk_driver exited with status 1"),
                (UNTRUSTED_PD, "MONITOR: fault in PD infotainment_vmm"),
            ],
        );
        assert!(reference_checks(&attacked, &quiet).is_empty());
        // A new report about another PD, or a run that ended early, fails.
        let hurt = run(0, &[("can_virt", "MONITOR: fault in PD can_virt")]);
        let errs = reference_checks(&hurt, &quiet);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[1].contains("can_virt"));
    }

    #[test]
    fn a_path_that_never_answered_fails_whatever_the_baseline() {
        let base = Baseline {
            runs: vec![],
            latencies: vec![],
            max_late: 0,
            max_overrun: 1000,
        };
        let r = RunResult {
            summary: Some(Summary {
                ticks: 1000,
                answered: 0,
                ..Summary::default()
            }),
            ..RunResult::default()
        };
        let f = safety_findings(&r, &base, true);
        assert!(f.is_empty(), "a broken baseline hides it: {f:?}");
        let good = Baseline {
            max_overrun: 3,
            ..base
        };
        let f = safety_findings(&r, &good, true);
        assert!(f
            .iter()
            .any(|f| !f.timing && f.text.contains("only 0 of 1000")));
    }
}
