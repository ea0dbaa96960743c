//! Compose Microkit systems from a short declarative description.
//!
//! A TOML description names the boards, the guests (RAM, vCPUs, scheduling,
//! safety) and each guest's device grants with their policy. [`compose`]
//! validates it (every error at a line and column of the description) and
//! writes, per board: the `.system` file, one configuration region per PD
//! (`bulkhead_config` container, prefilled and mapped read-only), one
//! device tree per guest and, for the host board, the host-binding file.
//! Drivers and virtualisers are implied: one of each per device class used.
//! The same input always gives the same bytes.
//!
//! ```
//! let src = r#"
//! boards = ["qemu_virt_aarch64"]
//! [[guest]]
//! name = "linux"
//! ram = "256M"
//! console = {}
//! "#;
//! let out = bulkhead_compose::compose(src, "demo.toml", std::path::Path::new("."), None).unwrap();
//! let sys = &out[0].files[0];
//! assert_eq!(sys.path, "qemu_virt_aarch64.system");
//! assert!(String::from_utf8_lossy(&sys.bytes).contains("<protection_domain name=\"serial_driver\""));
//! ```

pub mod boards;
pub mod desc;
pub mod diag;
pub mod dt;
pub mod fdt;
pub mod generate;
pub mod host;
pub mod layout;
pub mod resolve;
pub mod sections;

use std::path::Path;

pub use diag::{Diagnostic, Pos};
pub use generate::OutputFile;

/// A device class: one driver PD and one virtualiser PD each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Console (`serial_*`).
    Serial,
    /// Storage (`blk_*`).
    Blk,
    /// Ethernet (`eth_*`).
    Eth,
    /// CAN (`can_*`).
    Can,
    /// Audio (`snd_*`).
    Snd,
}

impl Class {
    /// Every class, in the fixed order that gives each its vaddr slot and
    /// its VMM channel id (index + 1).
    pub const ALL: [Class; 5] = [
        Class::Serial,
        Class::Blk,
        Class::Eth,
        Class::Can,
        Class::Snd,
    ];

    /// Position in [`Class::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// PD and region name prefix.
    pub fn name(self) -> &'static str {
        match self {
            Class::Serial => "serial",
            Class::Blk => "blk",
            Class::Eth => "eth",
            Class::Can => "can",
            Class::Snd => "snd",
        }
    }

    /// Key of the grant in a guest table (and in `omit`, `[services]`).
    pub fn grant(self) -> &'static str {
        match self {
            Class::Serial => "console",
            Class::Blk => "storage",
            Class::Eth => "ethernet",
            Class::Can => "can",
            Class::Snd => "audio",
        }
    }

    /// For messages.
    pub fn human(self) -> &'static str {
        match self {
            Class::Serial => "console UART",
            Class::Blk => "storage",
            Class::Eth => "Ethernet",
            Class::Can => "CAN",
            Class::Snd => "audio",
        }
    }

    /// The class of grant key `s`.
    pub fn from_grant(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.grant() == s)
    }

    /// The VMM's channel id to this class's virtualiser.
    pub fn vmm_channel(self) -> u32 {
        u32::try_from(self.index()).unwrap_or(0) + 1
    }

    /// The virtio device id the VMM presents (VIRTIO 1.3 §5).
    pub fn virtio_id(self) -> u32 {
        match self {
            Class::Eth => 1,
            Class::Blk => 2,
            Class::Serial => 3,
            Class::Snd => 25,
            Class::Can => 36,
        }
    }
}

/// Everything composed for one board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardOutput {
    /// The board.
    pub board: &'static str,
    /// Whether only an SMP kernel config can run it (something is off core 0).
    pub smp: bool,
    /// The files, the `.system` file first.
    pub files: Vec<OutputFile>,
}

/// Composes the description `src` (named `desc_name` in messages and in
/// generated comments; relative paths in it are relative to `base`) for
/// `board`, or for every board it lists when `board` is `None`.
pub fn compose(
    src: &str,
    desc_name: &str,
    base: &Path,
    board: Option<&str>,
) -> Result<Vec<BoardOutput>, Vec<Diagnostic>> {
    let idx = diag::LineIndex::new(src);
    let d = desc::parse(src).map_err(|e| {
        let pos = idx.pos(e.span().map_or(0, |s| s.start));
        vec![Diagnostic::new(
            pos,
            e.message().trim().to_string(),
            "see tools/compose/README.md for the description format",
        )]
    })?;
    let mut diags = Vec::new();
    let boards = d.boards.get_ref();
    if boards.is_empty() {
        diags.push(Diagnostic::new(
            idx.pos(d.boards.span().start),
            "no boards listed",
            "name at least one board, e.g. boards = [\"qemu_virt_aarch64\"]",
        ));
    }
    for (i, b) in boards.iter().enumerate() {
        if bulkhead_boards::board(b.get_ref()).is_none() {
            let names: Vec<&str> = bulkhead_boards::BOARDS.iter().map(|b| b.name).collect();
            diags.push(Diagnostic::new(
                idx.pos(b.span().start),
                format!("unknown board `{}`", b.get_ref()),
                format!("boards: {}", names.join(", ")),
            ));
        } else if boards[..i].iter().any(|o| o.get_ref() == b.get_ref()) {
            diags.push(Diagnostic::new(
                idx.pos(b.span().start),
                format!("board `{}` is listed twice", b.get_ref()),
                "list each board once",
            ));
        }
    }
    for key in d.host.guest_program.keys() {
        if !d.guest.iter().any(|g| g.name.get_ref() == key) {
            let at = src
                .find(&format!("{key} ="))
                .or_else(|| src.find(key.as_str()))
                .unwrap_or(0);
            diags.push(Diagnostic::new(
                idx.pos(at),
                format!("[host.guest_program]: no guest named `{key}`"),
                "name a guest of this description",
            ));
        }
    }
    let pd_names = pd_names(&d);
    for key in d.host.programs.keys() {
        if !pd_names.contains(key) {
            let at = src.find(&format!("{key} =")).unwrap_or(0);
            diags.push(Diagnostic::new(
                idx.pos(at),
                format!("[host.programs]: no PD named `{key}`"),
                format!("PDs: {}", pd_names.join(", ")),
            ));
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let targets: Vec<(String, Option<std::ops::Range<usize>>)> = match board {
        Some(b) => vec![(b.to_string(), None)],
        None => boards
            .iter()
            .map(|b| (b.get_ref().clone(), Some(b.span())))
            .collect(),
    };
    let mut out = Vec::new();
    for (b, span) in targets {
        let r = resolve::resolve(&d, src, &b, span, base)?;
        let files = generate::generate(&r, desc_name).map_err(|e| vec![internal(e)])?;
        let o = BoardOutput {
            board: r.board.name,
            smp: needs_smp(&r),
            files,
        };
        self_check(&r, &o)?;
        out.push(o);
    }
    Ok(out)
}

/// Every PD name the description can give rise to (on any board).
fn pd_names(d: &desc::Description) -> Vec<String> {
    let mut names: Vec<String> = d
        .guest
        .iter()
        .map(|g| format!("{}_vmm", g.name.get_ref()))
        .collect();
    for c in Class::ALL {
        names.push(format!("{}_virt", c.name()));
        names.push(format!("{}_driver", c.name()));
    }
    names
}

fn internal(msg: String) -> Diagnostic {
    Diagnostic::new(
        Pos { line: 1, col: 1 },
        format!("internal error: {msg}"),
        "this is a bug in bulkhead compose: please report it with the description",
    )
}

/// Whether `r` places anything off core 0, so only an SMP kernel config can
/// run it (a single-core config has one core).
fn needs_smp(r: &resolve::Resolved) -> bool {
    r.guests
        .iter()
        .any(|g| g.vm.cpu != 0 || g.vcpus > 1 || g.vmm.cpu != 0)
        || r.services.values().any(|(d, v)| d.cpu != 0 || v.cpu != 0)
}

impl BoardOutput {
    /// The kernel config the system is checked against: `smp-debug` when
    /// anything runs off core 0, else `debug` (which SMP configs also run).
    pub fn config(&self) -> bulkhead_boards::Config {
        bulkhead_boards::Config {
            kind: bulkhead_boards::ConfigKind::Debug,
            smp: self.smp,
        }
    }
}

/// Checks the generated `.system` with `bulkhead check`'s library: a
/// composed system that fails it is a compose bug, reported as such.
fn self_check(r: &resolve::Resolved, o: &BoardOutput) -> Result<(), Vec<Diagnostic>> {
    let Some(sys) = o.files.first() else {
        return Err(vec![internal("no .system file".into())]);
    };
    let text = String::from_utf8_lossy(&sys.bytes);
    let opts = bulkhead_sdf::CheckOptions {
        board: Some(r.board),
        config: o.config(),
        ..bulkhead_sdf::CheckOptions::default()
    };
    let report = bulkhead_sdf::check_source(&text, &sys.path, &opts);
    if report.is_valid() {
        Ok(())
    } else {
        Err(vec![internal(format!(
            "the generated system fails bulkhead check:\n{}",
            report.render()
        ))])
    }
}
