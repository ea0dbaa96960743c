//! Builds the `hello` PD for aarch64-unknown-none and checks its ELF
//! against everything the Microkit tool needs (no SDK required).
//!
//! The build runs in target/tmp/sel4-aarch64 (shared by every bare-metal
//! build of the tests; cargo's lock serialises them), not the target dir
//! of the `cargo test` that runs it, so it never waits on that lock.

use bulkhead_sel4_tests::{check_pd_elf, Problem, PATCHED_SYMBOLS};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn hello_elf() -> &'static [u8] {
    static ELF: OnceLock<Vec<u8>> = OnceLock::new();
    ELF.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sel4-aarch64");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--target",
                "aarch64-unknown-none",
                "-p",
                "bulkhead-hello-pd",
            ])
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the hello PD for aarch64-unknown-none failed"
        );
        std::fs::read(target_dir.join("aarch64-unknown-none/debug/sel4-hello"))
            .expect("sel4-hello ELF")
    })
}

#[test]
fn hello_pd_satisfies_the_microkit_tool() {
    let r = check_pd_elf(hello_elf(), &["hello_greeting_count"]);
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    // Linked where microkit.ld links, entry first in .text.
    assert_eq!(r.entry, 0x20_0000);
    assert!(r.segments.iter().all(|s| s.vaddr >= 0x20_0000));
    // Every patched symbol plus the setvar was found and sized.
    assert_eq!(r.symbols.len(), PATCHED_SYMBOLS.len() + 1);
    for (name, _addr, size) in &r.symbols {
        let want = PATCHED_SYMBOLS
            .iter()
            .find(|(n, _)| n == name)
            .map_or(8, |(_, s)| *s);
        assert_eq!(*size, want, "{name}");
    }
    // W^X: no segment is both writable and executable.
    for s in &r.segments {
        assert!(s.flags & 0b011 != 0b011, "segment at {:#x} is W+X", s.vaddr);
    }
}

#[test]
fn a_renamed_patched_symbol_is_caught() {
    let mut elf = hello_elf().to_vec();
    let (from, to) = (b"microkit_pps\0", b"microkit_ppz\0");
    let mut hits = 0;
    for i in 0..elf.len() - from.len() {
        if &elf[i..i + from.len()] == from {
            elf[i..i + to.len()].copy_from_slice(to);
            hits += 1;
        }
    }
    assert!(hits > 0);
    let r = check_pd_elf(&elf, &[]);
    assert!(
        r.problems
            .contains(&Problem::Missing("microkit_pps".into())),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_setvar_of_the_wrong_size_or_absent_is_caught() {
    // microkit_name is 64 bytes: used as a setvar it must be rejected.
    let r = check_pd_elf(hello_elf(), &["microkit_name", "no_such_symbol"]);
    assert!(r.problems.contains(&Problem::WrongSize {
        name: "microkit_name".into(),
        found: 64,
        expected: 8
    }));
    assert!(r
        .problems
        .contains(&Problem::Missing("no_such_symbol".into())));
}

#[test]
fn an_x86_elf_is_rejected() {
    let mut elf = hello_elf().to_vec();
    // e_machine is at offset 18 in the ELF64 header; 62 = EM_X86_64.
    elf[18..20].copy_from_slice(&62u16.to_le_bytes());
    let r = check_pd_elf(&elf, &[]);
    assert!(r.problems.contains(&Problem::WrongMachine(62)));
}

#[test]
fn a_position_independent_executable_is_rejected() {
    let mut elf = hello_elf().to_vec();
    // e_type is at offset 16; 3 = ET_DYN.
    elf[16..18].copy_from_slice(&3u16.to_le_bytes());
    let r = check_pd_elf(&elf, &[]);
    assert!(
        r.problems
            .contains(&Problem::NotStaticExecutable("e_type is not ET_EXEC")),
        "{:?}",
        r.problems
    );
}

/// The `system/examples` PDs (crate `bulkhead-example-pds`, on the
/// runtime's seL4 backend) with the region setvars their `.system` files
/// name (`setvar_vaddr="<mr>_vaddr" setvar_size="<mr>_size"`).
const EXAMPLE_PDS: &[(&str, &[&str])] = &[
    ("hello", &[]),
    ("ping", &["seq_vaddr", "seq_size"]),
    ("pong", &["seq_vaddr", "seq_size"]),
    ("server", &[]),
    ("client", &[]),
    ("parent", &[]),
    ("crasher", &[]),
    ("writer", &["ro_vaddr", "ro_size"]),
];

#[test]
fn example_pds_on_the_runtime_satisfy_the_microkit_tool() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sel4-aarch64");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--target",
            "aarch64-unknown-none",
            "-p",
            "bulkhead-example-pds",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the example PDs for aarch64-unknown-none failed"
    );
    for (bin, setvars) in EXAMPLE_PDS {
        let elf = std::fs::read(target_dir.join("aarch64-unknown-none/debug").join(bin))
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        let r = check_pd_elf(&elf, setvars);
        assert!(r.problems.is_empty(), "{bin}: {:#?}", r.problems);
        assert_eq!(r.entry, 0x20_0000, "{bin}: entry");
        assert_eq!(
            r.symbols.len(),
            PATCHED_SYMBOLS.len() + setvars.len(),
            "{bin}: every patched symbol and setvar found"
        );
        for s in &r.segments {
            assert!(
                s.flags & 0b011 != 0b011,
                "{bin}: segment at {:#x} is W+X",
                s.vaddr
            );
        }
    }
}
