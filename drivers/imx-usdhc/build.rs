//! On `aarch64-unknown-none` (the seL4 backend) links the driver PD with the
//! Microkit PD linker script `bulkhead-sel4-abi` exports. Host builds (the
//! library, its tests, the PD on the host board) need nothing.
fn main() {
    println!("cargo::rerun-if-env-changed=DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        match std::env::var("DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT") {
            Ok(script) => println!("cargo::rustc-link-arg-bins=-T{script}"),
            Err(_) => {
                eprintln!("drv-imx-usdhc: bulkhead-sel4-abi did not export its linker script");
                std::process::exit(1);
            }
        }
    }
}
