//! On `aarch64-unknown-none` (the seL4 backend) links every test PD with the
//! Microkit PD linker script that `bulkhead-sel4-abi` exports. Host builds
//! need nothing.
fn main() {
    println!("cargo::rerun-if-env-changed=DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        match std::env::var("DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT") {
            Ok(script) => println!("cargo::rustc-link-arg-bins=-T{script}"),
            Err(_) => {
                eprintln!(
                    "bulkhead-sel4-console-pds: bulkhead-sel4-abi did not export its linker script"
                );
                std::process::exit(1);
            }
        }
    }
}
