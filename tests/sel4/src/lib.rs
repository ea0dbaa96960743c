//! Checks for the seL4 backend that need no SDK, and helpers for the
//! SDK-gated boot tests.
//!
//! [`check_pd_elf`] reads a PD ELF the way the Microkit 2.3 tool does
//! (`tool/microkit/src/elf.rs`, `symbols.rs`) and reports every way the
//! tool would reject it, crash on it, or silently pack something broken:
//! wrong class/endianness/machine, not a static executable, TLS, entry
//! outside executable code, no
//! `.symtab`, a patched symbol missing, duplicated, of the wrong size,
//! outside every PT_LOAD segment or in a read-only one, a `setvar` symbol
//! that is not exactly 8 bytes, two segments sharing a page.
//! `sel4-elf-check` (src/bin) runs it on the ELFs `scripts/sdk.sh` is about
//! to pack.
//!
//! ```no_run
//! let bytes = std::fs::read("hello.elf").unwrap();
//! let report = bulkhead_sel4_tests::check_pd_elf(&bytes, &["hello_greeting_count"]);
//! assert!(report.problems.is_empty(), "{:?}", report.problems);
//! ```

use object::elf::{EM_AARCH64, ET_EXEC, PF_W, PF_X, PT_DYNAMIC, PT_INTERP, PT_LOAD, PT_TLS};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol, ObjectSymbolTable};
use std::collections::HashMap;
use std::fmt;

/// Symbols the tool patches into every PD and their exact sizes
/// (libmicrokit `main.c` definitions; tool `symbols.rs`).
pub const PATCHED_SYMBOLS: [(&str, u64); 6] = [
    ("microkit_name", 64),
    ("microkit_passive", 1),
    ("microkit_irqs", 8),
    ("microkit_notifications", 8),
    ("microkit_pps", 8),
    ("microkit_ioports", 8),
];

/// Size the tool demands of a `setvar` symbol (one word).
pub const SETVAR_SIZE: u64 = 8;

/// One way a PD ELF breaks the Microkit ABI.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Problem {
    /// Not a parseable 64-bit little-endian ELF.
    NotElf64Le(String),
    /// `e_machine` is not AArch64.
    WrongMachine(u16),
    /// Not a static executable (`ET_EXEC`, no PT_DYNAMIC/PT_INTERP): nothing
    /// on Microkit applies dynamic relocations, so a PIE would run with
    /// unrelocated pointers.
    NotStaticExecutable(&'static str),
    /// A PT_TLS segment: nothing on Microkit sets up thread-local storage.
    Tls,
    /// No PT_LOAD segment.
    NoLoadSegment,
    /// `e_entry` is not inside an executable PT_LOAD segment.
    EntryOutsideCode(u64),
    /// No `.symtab` (stripped): the tool cannot find any symbol.
    NoSymtab,
    /// A required symbol is absent.
    Missing(String),
    /// The name occurs more than once in `.symtab` (the tool refuses).
    Duplicate(String),
    /// Size differs from what the tool writes / demands.
    WrongSize {
        /// Symbol.
        name: String,
        /// Its size in the ELF.
        found: u64,
        /// Required size.
        expected: u64,
    },
    /// Not inside any PT_LOAD segment's memory image.
    OutsideLoad(String),
    /// Inside a PT_LOAD segment that is not writable.
    ReadOnly(String),
    /// Two PT_LOAD segments touch the same 4 KiB page.
    SharedPage(u64),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotElf64Le(e) => write!(f, "not a 64-bit little-endian ELF: {e}"),
            Problem::WrongMachine(m) => write!(f, "e_machine {m} is not AArch64 (183)"),
            Problem::NotStaticExecutable(why) => write!(f, "not a static executable: {why}"),
            Problem::Tls => write!(
                f,
                "has a PT_TLS segment; Microkit sets up no thread-local storage"
            ),
            Problem::NoLoadSegment => write!(f, "no PT_LOAD segment"),
            Problem::EntryOutsideCode(e) => {
                write!(f, "entry {e:#x} is not in an executable PT_LOAD segment")
            }
            Problem::NoSymtab => write!(f, "no .symtab (was the ELF stripped?)"),
            Problem::Missing(s) => write!(f, "symbol {s} missing"),
            Problem::Duplicate(s) => write!(f, "symbol {s} occurs more than once"),
            Problem::WrongSize {
                name,
                found,
                expected,
            } => {
                write!(
                    f,
                    "symbol {name} has size {found}, the tool needs {expected}"
                )
            }
            Problem::OutsideLoad(s) => write!(f, "symbol {s} is not inside a PT_LOAD segment"),
            Problem::ReadOnly(s) => write!(f, "symbol {s} is in a read-only segment"),
            Problem::SharedPage(p) => write!(f, "two PT_LOAD segments share the page at {p:#x}"),
        }
    }
}

/// A PT_LOAD segment as the tool sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Segment {
    /// Virtual address.
    pub vaddr: u64,
    /// Memory size (file part plus zero fill).
    pub memsz: u64,
    /// `p_flags`.
    pub flags: u32,
}

/// What [`check_pd_elf`] found.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Report {
    /// Entry point.
    pub entry: u64,
    /// PT_LOAD segments.
    pub segments: Vec<Segment>,
    /// Address and size of each checked symbol that was found.
    pub symbols: Vec<(String, u64, u64)>,
    /// Everything wrong; empty means the tool can pack it.
    pub problems: Vec<Problem>,
}

const PAGE: u64 = 0x1000;

/// Checks one PD ELF; `setvars` are the `setvar` symbols its `.system`
/// entry names. Never panics on malformed input.
#[must_use]
pub fn check_pd_elf(bytes: &[u8], setvars: &[&str]) -> Report {
    let mut r = Report::default();
    let elf = match ElfFile64::<Endianness>::parse(bytes) {
        Ok(e) => e,
        Err(e) => {
            r.problems.push(Problem::NotElf64Le(e.to_string()));
            return r;
        }
    };
    let endian = elf.endian();
    if endian != Endianness::Little {
        r.problems.push(Problem::NotElf64Le("big-endian".into()));
        return r;
    }
    let hdr = elf.elf_header();
    let machine = hdr.e_machine(endian);
    if machine != EM_AARCH64 {
        r.problems.push(Problem::WrongMachine(machine));
    }
    r.entry = hdr.e_entry(endian);
    if hdr.e_type(endian) != ET_EXEC {
        r.problems
            .push(Problem::NotStaticExecutable("e_type is not ET_EXEC"));
    }
    for ph in elf.elf_program_headers() {
        match ph.p_type(endian) {
            PT_DYNAMIC => r
                .problems
                .push(Problem::NotStaticExecutable("PT_DYNAMIC present")),
            PT_INTERP => r
                .problems
                .push(Problem::NotStaticExecutable("PT_INTERP present")),
            PT_TLS => r.problems.push(Problem::Tls),
            _ => {}
        }
        if ph.p_type(endian) == PT_LOAD {
            r.segments.push(Segment {
                vaddr: ph.p_vaddr(endian),
                memsz: ph.p_memsz(endian),
                flags: ph.p_flags(endian),
            });
        }
    }
    if r.segments.is_empty() {
        r.problems.push(Problem::NoLoadSegment);
    }
    let contains = |s: &Segment, a: u64, len: u64| {
        a >= s.vaddr
            && a.checked_add(len)
                .is_some_and(|e| e <= s.vaddr.saturating_add(s.memsz))
    };
    if !r
        .segments
        .iter()
        .any(|s| s.flags & PF_X != 0 && contains(s, r.entry, 4))
    {
        r.problems.push(Problem::EntryOutsideCode(r.entry));
    }
    let mut spans: Vec<(u64, u64)> = r
        .segments
        .iter()
        .filter(|s| s.memsz > 0)
        .map(|s| {
            (
                s.vaddr & !(PAGE - 1),
                s.vaddr.saturating_add(s.memsz - 1) & !(PAGE - 1),
            )
        })
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 <= w[0].1 {
            r.problems.push(Problem::SharedPage(w[1].0));
        }
    }

    let Some(symtab) = elf.symbol_table() else {
        r.problems.push(Problem::NoSymtab);
        return r;
    };
    // name -> (address, size, occurrences), as the tool's hash map does.
    let mut by_name: HashMap<&str, (u64, u64, usize)> = HashMap::new();
    for sym in symtab.symbols() {
        if let Ok(name) = sym.name() {
            let e = by_name
                .entry(name)
                .or_insert((sym.address(), sym.size(), 0));
            e.2 += 1;
        }
    }
    let wanted = PATCHED_SYMBOLS
        .iter()
        .copied()
        .chain(setvars.iter().map(|s| (*s, SETVAR_SIZE)));
    for (name, expected) in wanted {
        let Some(&(addr, size, n)) = by_name.get(name) else {
            r.problems.push(Problem::Missing(name.into()));
            continue;
        };
        r.symbols.push((name.into(), addr, size));
        if n > 1 {
            r.problems.push(Problem::Duplicate(name.into()));
        }
        if size != expected {
            r.problems.push(Problem::WrongSize {
                name: name.into(),
                found: size,
                expected,
            });
        }
        match r.segments.iter().find(|s| contains(s, addr, size.max(1))) {
            None => r.problems.push(Problem::OutsideLoad(name.into())),
            Some(s) if s.flags & PF_W == 0 => r.problems.push(Problem::ReadOnly(name.into())),
            Some(_) => {}
        }
    }
    r
}

/// Whether `output` (a QEMU console transcript) contains every line of
/// `golden`, in order, each as a whole line after trimming trailing
/// whitespace and `\r`. Lines the kernel, loader and monitor print in
/// between are allowed: the golden files hold what PDs print, which is the
/// same on the host board and on seL4, while boot chatter is not. Returns
/// the first golden line not found.
pub fn missing_golden_line<'g>(golden: &'g str, output: &str) -> Option<&'g str> {
    let mut out = output
        .lines()
        .map(|l| l.trim_end_matches(['\r', ' ', '\t']));
    for want in golden
        .lines()
        .map(|l| l.trim_end_matches(['\r', ' ', '\t']))
    {
        if want.is_empty() {
            continue;
        }
        if !out.any(|l| l == want) {
            return Some(want);
        }
    }
    None
}

/// The transcripts a console must contain: one per PD. `golden` is either a
/// file (one transcript) or a directory of `<pd>.txt` files, the host
/// board's layout (`tests/host-board/golden/<system>/<pd>.txt`): PDs share
/// one debug console on seL4, so each PD's lines must appear in order, but
/// lines of different PDs may interleave.
pub fn load_golden(path: &std::path::Path) -> std::io::Result<Vec<(String, String)>> {
    if path.is_dir() {
        let mut v = Vec::new();
        for e in std::fs::read_dir(path)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "txt") {
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                v.push((name, std::fs::read_to_string(&p)?));
            }
        }
        v.sort();
        Ok(v)
    } else {
        Ok(vec![(String::new(), std::fs::read_to_string(path)?)])
    }
}

/// First `(pd, line)` of `golden` (from [`load_golden`]) missing from
/// `output`, checking each PD's transcript independently.
pub fn missing_from_console<'g>(
    golden: &'g [(String, String)],
    output: &str,
) -> Option<(&'g str, &'g str)> {
    golden
        .iter()
        .find_map(|(pd, text)| missing_golden_line(text, output).map(|l| (pd.as_str(), l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_reported_not_panicked_on() {
        let r = check_pd_elf(b"\x7fELF nonsense", &[]);
        assert!(matches!(r.problems.as_slice(), [Problem::NotElf64Le(_)]));
        let r = check_pd_elf(&[], &[]);
        assert!(matches!(r.problems.as_slice(), [Problem::NotElf64Le(_)]));
    }

    #[test]
    fn each_pd_transcript_is_checked_on_its_own() {
        let golden = vec![
            ("ping".to_string(), "ping 1\nping 2\n".to_string()),
            ("pong".to_string(), "pong 1\npong 2\n".to_string()),
        ];
        let interleaved = "ping 1\npong 1\nping 2\npong 2\n";
        assert_eq!(missing_from_console(&golden, interleaved), None);
        assert_eq!(
            missing_from_console(&golden, "ping 1\nping 2\npong 2\n"),
            Some(("pong", "pong 1"))
        );
    }

    #[test]
    fn golden_lines_must_appear_in_order() {
        let out = "LDR|INFO: boot\r\nhello from a\nMON|INFO: x\nhello from b\n";
        assert_eq!(
            missing_golden_line("hello from a\nhello from b\n", out),
            None
        );
        assert_eq!(
            missing_golden_line("hello from b\nhello from a\n", out),
            Some("hello from a")
        );
        assert_eq!(
            missing_golden_line("hello from c\n", out),
            Some("hello from c")
        );
        assert_eq!(
            missing_golden_line("hello from\n", out),
            Some("hello from"),
            "whole lines only"
        );
    }
}
