//! Links the guests (bare metal only) with `guest.ld`: loaded and run at
//! guest RAM + 2 MiB, where the VMM puts a kernel.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo::rerun-if-changed=guest.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo::rustc-link-arg-bins=-T{dir}/guest.ld");
    }
}
