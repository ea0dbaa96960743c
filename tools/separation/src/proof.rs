//! Proof that the tests can fail (issue 12 item 4): the items run again on
//! builds of the PD programs with one host-board protection removed each,
//! and must FAIL there; `bulkhead check --require-images` must refuse those
//! builds' images (E078, the runtime's marker section).
//!
//! A build is a directory of PD programs made with one of the runtime's
//! test-only features (`components/runtime/src/protection_removed.rs`):
//!
//! ```sh
//! cargo build -p bulkhead-separation-pds --features protection-removed-seccomp \
//!     --target-dir target/protection-removed-seccomp
//! bulkhead test-separation SYSTEM --protection-removed seccomp=target/protection-removed-seccomp/debug
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bulkhead_host::bindings::Bindings;
use bulkhead_host::programs;

use crate::scenario::{Baseline, Ctx};
use crate::{ItemResult, Outcome, Status, SuiteError, SuiteOptions};

/// The protection-removed builds the registry knows: feature suffix and
/// the protection it removes.
pub const VARIANTS: &[(&str, &str)] = &[
    (
        "seccomp",
        "no seccomp allow-list after set-up: a PD may mmap, open files and write other processes",
    ),
    (
        "ro-maps",
        "read-only maps re-opened read-write and mapped writable: perms=\"r\" not enforced",
    ),
    (
        "priorities",
        "every PD at one and the same SCHED_FIFO priority: the description's priorities are not enforced",
    ),
    (
        "wakeups",
        "signals that arrive while a PD's handler runs are consumed, not delivered (badge cleared after handling)",
    ),
    (
        "stack-guard",
        "64 MiB of writable memory mapped directly below each PD's stack: no guard gap",
    ),
    (
        "can-whitelist",
        "can_virt without its per-guest TX id whitelist (bulkhead-virt-can)",
    ),
    (
        "can-fanout",
        "can_virt delivering each received frame to the first subscribed guest only (bulkhead-virt-can)",
    ),
];

/// How long one run on a protection-removed build may take: longer than
/// the stand-in's 5 s wait for a path that never answers (plus start-up),
/// so such a run ends with its summary rather than at the timeout.
pub const VARIANT_RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(6500);

/// One protection-removed build: `--protection-removed NAME=DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedBuild {
    /// The variant (a [`VARIANTS`] name).
    pub name: String,
    /// The directory holding its PD programs.
    pub dir: PathBuf,
}

impl std::str::FromStr for RemovedBuild {
    type Err = String;

    fn from_str(s: &str) -> Result<RemovedBuild, String> {
        let (name, dir) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=DIR, got {s:?}"))?;
        if !VARIANTS.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "unknown protection-removed variant {name:?} (known: {})",
                VARIANTS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // A command-line path is relative to the working directory, not to
        // the system file the programs are later looked up for.
        let dir = std::path::absolute(dir).map_err(|e| format!("{dir}: {e}"))?;
        if !dir.is_dir() {
            return Err(format!(
                "{}: no such directory (build the variant first: make separation)",
                dir.display()
            ));
        }
        Ok(RemovedBuild {
            name: name.to_string(),
            dir,
        })
    }
}

/// How one item fared on a protection-removed build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// It FAILED there, as it must (the failure reason).
    Failing(String),
    /// It did not fail: the test cannot tell the protection is missing.
    NotFailing(String),
    /// Nothing to show: the item itself is not covered or not enforced on
    /// this host (why).
    NotApplicable(String),
}

/// The result of one protection-removed build.
#[derive(Debug, Clone)]
pub struct Proof {
    /// Which build.
    pub build: RemovedBuild,
    /// What it removes.
    pub removes: &'static str,
    /// `Ok(evidence)` when `bulkhead check --require-images` refused every
    /// PD image of the system built this way (E078), else why not.
    pub check: Result<String, String>,
    /// Per item relying on this protection: its outcome there and the verdict.
    pub items: Vec<(&'static str, Outcome, Shown)>,
    /// SHA-256 of every program the build's runs used.
    pub programs: Vec<(String, PathBuf, Result<String, String>)>,
}

impl Proof {
    /// Whether the build was refused by the checker and every item relying
    /// on it failed (or could not apply on this host).
    pub fn holds(&self) -> bool {
        self.check.is_ok()
            && self
                .items
                .iter()
                .all(|(_, _, s)| !matches!(s, Shown::NotFailing(_)))
    }
}

/// Runs every item of `done` that names `build` in `removed_by` on that
/// build, and the checker on its images. `baseline`: the unattacked runs
/// of the normal build, which the build's runs are compared with (its own
/// may already suffer from the missing protection).
pub fn run(
    opts: &SuiteOptions,
    build: &RemovedBuild,
    done: &[ItemResult],
    baseline: Option<Baseline>,
) -> Result<Proof, SuiteError> {
    let removes = VARIANTS
        .iter()
        .find(|(n, _)| *n == build.name)
        .map(|(_, d)| *d)
        .unwrap_or("unknown");
    let mut vopts = opts.clone();
    vopts.search_path.insert(0, build.dir.clone());
    vopts.runs = 1;
    let mut ctx = Ctx::load(&vopts)?;
    // A run the missing protection stalls ends at the timeout; the normal
    // suite run has shown that an unaffected run ends well before it.
    ctx.run_timeout = VARIANT_RUN_TIMEOUT;
    ctx.baseline = baseline;
    let check = check_refuses(&ctx, &build.dir);
    let mut items = Vec::new();
    for r in done {
        if !r.item.removed_by.contains(&build.name.as_str()) {
            continue;
        }
        let outcome = match r.item.test {
            Ok(f) => f(&mut ctx),
            Err(why) => Outcome::new(Status::NotCovered(why.to_string())),
        };
        let shown = match (&r.outcome.status, &outcome.status) {
            (Status::NotCovered(w) | Status::NotEnforced(w), _) => {
                Shown::NotApplicable(format!("the item is {}: {w}", r.outcome.status.word()))
            }
            // A scenario that could not run shows nothing about the
            // protection: the proof must not hold on it.
            (_, Status::Failed(why)) if why.starts_with(crate::items::COULD_NOT_RUN) => {
                Shown::NotFailing(format!(
                    "{} could not run on the build without this protection ({why}): nothing shown",
                    r.item.id
                ))
            }
            (_, Status::Failed(why)) => Shown::Failing(why.clone()),
            (_, Status::NotEnforced(w)) => {
                Shown::NotApplicable(format!("not enforced on this host with this build: {w}"))
            }
            (_, s) => Shown::NotFailing(format!(
                "{} {} on the build without this protection: the test cannot see it missing",
                r.item.id,
                s.word()
            )),
        };
        items.push((r.item.id, outcome, shown));
    }
    let programs = ctx
        .programs_used
        .iter()
        .map(|(n, p)| (n.clone(), p.clone(), crate::config::sha256_file(p)))
        .collect();
    Ok(Proof {
        build: build.clone(),
        removes,
        check,
        items,
        programs,
    })
}

/// Runs `bulkhead check --require-images --board host` on the system with
/// the programs `dir` holds (as `<program_image>` links in a scratch
/// directory) and requires E078 on every PD played by one of them (a
/// virtualiser build holds only that virtualiser; a stand-in build all of
/// the stand-in system's PDs).
fn check_refuses(ctx: &Ctx, dir: &Path) -> Result<String, String> {
    let scratch = std::env::temp_dir().join(format!(
        "bulkhead-sep-check-{}-{}",
        std::process::id(),
        dir.display().to_string().len()
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut linked = BTreeMap::new();
    let mut from_build = 0;
    for pd in ctx.sd.all_pds() {
        let image = &pd.program_image.path;
        // The build's program for this PD: by its bound name, else by its
        // image name.
        let bound = ctx.binds.programs.get(image).and_then(|p| p.file_name());
        let found = bound
            .map(|n| dir.join(n))
            .filter(|p| p.is_file())
            .or_else(|| {
                programs::resolve(image, &Bindings::default(), &ctx.base, &[dir.to_path_buf()]).ok()
            });
        let Some(found) = found else { continue };
        from_build += 1;
        let link = scratch.join(image);
        if !linked.contains_key(image) {
            std::os::unix::fs::symlink(&found, &link)
                .map_err(|e| format!("{}: {e}", link.display()))?;
            linked.insert(image.clone(), found);
        }
    }
    if from_build == 0 {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(format!("{} holds no program of this system", dir.display()));
    }
    let src = std::fs::read_to_string(&ctx.system)
        .map_err(|e| format!("{}: {e}", ctx.system.display()))?;
    let report = bulkhead_sdf::check_source(
        &src,
        &ctx.system.display().to_string(),
        &bulkhead_sdf::CheckOptions {
            board: bulkhead_boards::board("host"),
            search_paths: vec![scratch.clone(), ctx.base.clone()],
            require_images: true,
            ..Default::default()
        },
    );
    let _ = std::fs::remove_dir_all(&scratch);
    let pds = from_build;
    let refused: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.code == "E078")
        .collect();
    match refused.first() {
        Some(d) if refused.len() == pds => Ok(format!(
            "bulkhead check --require-images refused all {pds} PD images of this build (E078: {})",
            d.message
        )),
        _ => Err(format!(
            "bulkhead check refused {} of the {pds} PD images of this build with E078",
            refused.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_variants_only() {
        let tmp = std::env::temp_dir();
        let b: RemovedBuild = format!("seccomp={}", tmp.display()).parse().expect("valid");
        assert_eq!(b.name, "seccomp");
        assert_eq!(b.dir, tmp);
        // Relative to the working directory, made absolute at once.
        let b: RemovedBuild = "seccomp=.".parse().expect("valid");
        assert!(b.dir.is_absolute());
        assert_eq!(b.dir, std::env::current_dir().expect("cwd").join("."));
        let e = "seccomp=/no/such/dir".parse::<RemovedBuild>().unwrap_err();
        assert!(e.contains("no such directory"), "{e}");
        assert!("nonsense=/x".parse::<RemovedBuild>().is_err());
        assert!("seccomp".parse::<RemovedBuild>().is_err());
    }

    #[test]
    fn every_registry_reference_is_a_known_variant() {
        for item in crate::registry() {
            for v in item.removed_by {
                assert!(VARIANTS.iter().any(|(n, _)| n == v), "{}: {v}", item.id);
            }
        }
    }
}
