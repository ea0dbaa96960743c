//! On `aarch64-unknown-none` (the seL4 backend) links the PD with the
//! Microkit PD linker script `bulkhead-sel4-abi` exports (link address
//! 0x200000, `_start` first, patched symbols kept, image end for the
//! runtime's map checks). Host builds need nothing.
fn main() {
    println!("cargo::rerun-if-env-changed=DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        match std::env::var("DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT") {
            Ok(script) => println!("cargo::rustc-link-arg-bins=-T{script}"),
            Err(_) => {
                eprintln!("bulkhead-vmm-host: bulkhead-sel4-abi did not export its linker script");
                std::process::exit(1);
            }
        }
    }
}
