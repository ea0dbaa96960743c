//! On `aarch64-unknown-none` (the seL4 backend) links the PD binaries with
//! the Microkit PD linker script of `bulkhead-sel4-abi`; host builds need
//! nothing.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let script = format!("{dir}/../../components/sel4-abi/link/microkit-pd.ld");
    println!("cargo::rerun-if-changed={script}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo::rustc-link-arg-bins=-T{script}");
    }
}
