//! Links the PD with the seL4 ABI crate's linker script (bare metal only).
fn main() {
    println!("cargo::rerun-if-env-changed=DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        match std::env::var("DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT") {
            Ok(script) => println!("cargo::rustc-link-arg-bins=-T{script}"),
            Err(_) => {
                eprintln!("hello-pd: bulkhead-sel4-abi did not export its linker script");
                std::process::exit(1);
            }
        }
    }
}
