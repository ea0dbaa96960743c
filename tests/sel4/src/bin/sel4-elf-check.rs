//! `sel4-elf-check ELF [SETVAR...]`: fail (exit 1) if the Microkit tool
//! would reject or mis-pack this PD ELF; exit 2 on usage errors.
//!
//! `scripts/sdk.sh image` runs it on every PD ELF before packing, so an ABI
//! slip shows up as a named problem instead of a tool panic or a PD that
//! reads zeros where its configuration should be.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((path, setvars)) = args.split_first() else {
        eprintln!("usage: sel4-elf-check ELF [SETVAR_SYMBOL...]");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sel4-elf-check: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let setvars: Vec<&str> = setvars.iter().map(String::as_str).collect();
    let report = bulkhead_sel4_tests::check_pd_elf(&bytes, &setvars);
    if report.problems.is_empty() {
        println!(
            "sel4-elf-check: {path}: ok (entry {:#x}, {} symbols)",
            report.entry,
            report.symbols.len()
        );
        ExitCode::SUCCESS
    } else {
        for p in &report.problems {
            eprintln!("sel4-elf-check: {path}: {p}");
        }
        ExitCode::from(1)
    }
}
