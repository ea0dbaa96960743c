//! The host-binding file: `foo.system` → `foo.host.toml` beside it.
//!
//! It binds what only the host board needs, so the `.system` file stays
//! genuine Microkit. Unknown keys are errors; every error has a line and
//! column. All keys are optional and the file itself may be absent.
//!
//! ```toml
//! # Extra directories to find PD programs in (relative to the .system file).
//! search_path = ["../../target/debug"]
//!
//! # program_image path -> host program (relative to the .system file).
//! [programs]
//! "hello.elf" = "bin/hello"
//!
//! # Host resources, opened by the supervisor before any PD runs and passed
//! # to the named PD as descriptors.
//! [[disk]]
//! name = "rootfs"          # the name the PD asks for
//! pd = "blk_driver"
//! path = "images/rootfs.img"
//! read_only = true
//!
//! [[tap]]
//! name = "eth0"
//! pd = "eth_driver"
//! interface = "tap0"
//!
//! [[can]]
//! name = "can0"
//! pd = "can_driver"
//! interface = "vcan0"
//!
//! # A host timer as the interrupt <irq irq="27"> of PD "ticker".
//! [[timer_irq]]
//! pd = "ticker"
//! irq = 27
//! period_us = 1000
//!
//! # Which test-guest program runs in which <virtual_machine>.
//! [[guest]]
//! vm = "cluster"
//! program = "guests/cluster-test"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The parsed host-binding file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bindings {
    /// Extra program search directories.
    #[serde(default)]
    pub search_path: Vec<PathBuf>,
    /// `program_image` path → host program.
    #[serde(default)]
    pub programs: BTreeMap<String, PathBuf>,
    /// Disk images.
    #[serde(default)]
    pub disk: Vec<Disk>,
    /// TAP interfaces.
    #[serde(default)]
    pub tap: Vec<NetIf>,
    /// SocketCAN interfaces.
    #[serde(default)]
    pub can: Vec<NetIf>,
    /// Host timers delivered as IRQs.
    #[serde(default)]
    pub timer_irq: Vec<TimerIrq>,
    /// Test-guest programs per virtual machine.
    #[serde(default)]
    pub guest: Vec<Guest>,
}

/// A periodic host timer delivered as one of a PD's IRQs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerIrq {
    /// The PD.
    pub pd: String,
    /// The `irq` number of one of its `<irq>` elements.
    pub irq: u64,
    /// Period in microseconds (non-zero).
    pub period_us: u64,
}

/// A disk image bound to a PD.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Resource name the PD uses.
    pub name: String,
    /// The PD that gets it.
    pub pd: String,
    /// Image file.
    pub path: PathBuf,
    /// Open read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A host network interface (TAP or SocketCAN) bound to a PD.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetIf {
    /// Resource name the PD uses.
    pub name: String,
    /// The PD that gets it.
    pub pd: String,
    /// Host interface name.
    pub interface: String,
}

/// A test-guest program for a virtual machine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    /// `<virtual_machine name>`.
    pub vm: String,
    /// Host program that plays the guest.
    pub program: PathBuf,
}

/// One problem in a binding file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingDiagnostic {
    /// The binding file.
    pub path: PathBuf,
    /// 1-based line (0 = whole file).
    pub line: u32,
    /// 1-based column (0 = whole file).
    pub col: u32,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for BindingDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// The binding file that belongs to `system_path` (`x.system` → `x.host.toml`).
pub fn binding_path(system_path: &Path) -> PathBuf {
    let stem = system_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    system_path.with_file_name(format!("{stem}.host.toml"))
}

fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

/// Parses binding-file text.
pub fn parse(path: &Path, text: &str) -> Result<Bindings, Vec<BindingDiagnostic>> {
    toml::from_str::<Bindings>(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        vec![BindingDiagnostic {
            path: path.to_path_buf(),
            line,
            col,
            message: e.message().to_string(),
        }]
    })
}

/// Loads the binding file of `system_path`; an absent file is empty bindings.
pub fn load_for(system_path: &Path) -> Result<Bindings, Vec<BindingDiagnostic>> {
    let path = binding_path(system_path);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Bindings::default()),
        Err(e) => Err(vec![BindingDiagnostic {
            path,
            line: 0,
            col: 0,
            message: e.to_string(),
        }]),
    }
}

/// Checks the binding file of `system_path` against the description: every
/// named PD and VM exists, every bound file exists. What `bulkhead check
/// --board host` reports. An absent binding file is fine.
pub fn check_file(system_path: &Path) -> Vec<BindingDiagnostic> {
    let binds = match load_for(system_path) {
        Ok(b) => b,
        Err(d) => return d,
    };
    let path = binding_path(system_path);
    let base = system_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let sd = std::fs::read_to_string(system_path)
        .ok()
        .and_then(|t| bulkhead_sdf::parse(&t).ok());
    let mut out = Vec::new();
    let mut err = |needle: &str, message: String| {
        let (line, col) = text.find(needle).map_or((0, 0), |o| line_col(&text, o));
        out.push(BindingDiagnostic {
            path: path.clone(),
            line,
            col,
            message,
        });
    };
    let pd_names: Vec<String> = sd
        .as_ref()
        .map(|s| s.all_pds().iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default();
    let vm_names: Vec<String> = sd
        .as_ref()
        .map(|s| {
            s.all_pds()
                .iter()
                .filter_map(|p| p.virtual_machine.as_ref().map(|v| v.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let images: Vec<String> = sd
        .as_ref()
        .map(|s| {
            s.all_pds()
                .iter()
                .map(|p| p.program_image.path.clone())
                .collect()
        })
        .unwrap_or_default();
    let known_pd = |pd: &str| sd.is_none() || pd_names.iter().any(|n| n == pd);
    for (image, prog) in &binds.programs {
        if sd.is_some() && !images.contains(image) {
            err(
                image,
                format!("[programs]: no PD has program_image {image:?}"),
            );
        }
        // A bare name is looked up on the program search path at run time
        // (programs.rs), as a [[guest]] program is.
        if prog.components().count() > 1 && !base.join(prog).is_file() {
            err(
                &prog.to_string_lossy(),
                format!("[programs]: {} does not exist", prog.display()),
            );
        }
    }
    for d in &binds.disk {
        if !known_pd(&d.pd) {
            err(
                &d.pd,
                format!("[[disk]] {}: no PD named {:?}", d.name, d.pd),
            );
        }
        if !base.join(&d.path).is_file() {
            err(
                &d.path.to_string_lossy(),
                format!(
                    "[[disk]] {}: image {} does not exist",
                    d.name,
                    d.path.display()
                ),
            );
        }
    }
    for n in binds.tap.iter().chain(&binds.can) {
        if !known_pd(&n.pd) {
            err(&n.pd, format!("{}: no PD named {:?}", n.name, n.pd));
        }
    }
    for t in &binds.timer_irq {
        let has_irq = sd.as_ref().is_none_or(|s| {
            s.all_pds()
                .iter()
                .any(|p| p.name == t.pd && p.irqs.iter().any(|i| i.irq == t.irq))
        });
        if !has_irq {
            err(
                &t.pd,
                format!(
                    "[[timer_irq]]: PD {:?} has no <irq irq=\"{}\">",
                    t.pd, t.irq
                ),
            );
        }
        if t.period_us == 0 {
            err(
                "period_us",
                "[[timer_irq]]: period_us must be non-zero".to_string(),
            );
        }
    }
    // An <irq> nothing feeds would never fire: a PD waiting for it hangs.
    // Reported at the <irq> in the description (appended after the binding
    // file's own diagnostics).
    let mut unfed = Vec::new();
    if let Some(s) = sd.as_ref() {
        for pd in s.all_pds() {
            for i in &pd.irqs {
                let fed = binds
                    .timer_irq
                    .iter()
                    .any(|t| t.pd == pd.name && t.irq == i.irq);
                if !fed {
                    unfed.push(BindingDiagnostic {
                        path: system_path.to_path_buf(),
                        line: i.loc.elem.line,
                        col: i.loc.elem.col,
                        message: format!(
                            "PD {:?}'s <irq irq=\"{}\"> is fed by no host source; add a [[timer_irq]] with pd = {:?}, irq = {} to {} (or remove the <irq> for the host board)",
                            pd.name,
                            i.irq,
                            pd.name,
                            i.irq,
                            path.display()
                        ),
                    });
                }
            }
        }
    }
    for g in &binds.guest {
        if sd.is_some() && !vm_names.contains(&g.vm) {
            err(
                &g.vm,
                format!("[[guest]]: no virtual_machine named {:?}", g.vm),
            );
        }
        // A bare name is looked up on the program search path at run time.
        if g.program.components().count() > 1 && !base.join(&g.program).is_file() {
            err(
                &g.program.to_string_lossy(),
                format!(
                    "[[guest]] {}: program {} does not exist",
                    g.vm,
                    g.program.display()
                ),
            );
        }
    }
    out.extend(unfed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_has_line_and_column() {
        let text = "search_path = []\n[programs]\n\"a.elf\" = \"a\"\n[[disk]]\nname = \"d\"\npd = \"p\"\npath = \"x\"\nsize = 3\n";
        let e = parse(Path::new("x.host.toml"), text).unwrap_err();
        assert_eq!((e[0].line, e[0].col), (8, 1), "{}", e[0]);
        assert!(e[0].message.contains("unknown field"), "{}", e[0]);
    }

    #[test]
    fn full_example_parses() {
        let text = "[programs]\n\"hello.elf\" = \"bin/hello\"\n[[tap]]\nname = \"eth0\"\npd = \"eth\"\ninterface = \"tap0\"\n[[guest]]\nvm = \"cluster\"\nprogram = \"g\"\n";
        let b = parse(Path::new("x.host.toml"), text).unwrap();
        assert_eq!(
            b.programs.get("hello.elf"),
            Some(&PathBuf::from("bin/hello"))
        );
        assert_eq!(b.tap[0].interface, "tap0");
        assert_eq!(b.guest[0].vm, "cluster");
    }

    #[test]
    fn check_file_reports_unknown_pd_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("bh-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sys = dir.join("s.system");
        std::fs::write(&sys, "<system><protection_domain name=\"a\"><program_image path=\"a.elf\"/></protection_domain></system>").unwrap();
        std::fs::write(
            dir.join("s.host.toml"),
            "[[can]]\nname = \"c\"\npd = \"nobody\"\ninterface = \"vcan0\"\n",
        )
        .unwrap();
        let d = check_file(&sys);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].line, 3);
        assert!(d[0].message.contains("nobody"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
