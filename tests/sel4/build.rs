//! Sets `cfg(microkit_sdk)` when MICROKIT_SDK is set for the build, and
//! `cfg(qemu_aarch64)` when `qemu-system-aarch64` is on PATH, so tests that
//! need them run then and are reported as ignored — with a `SKIPPED:`
//! reason — otherwise.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(microkit_sdk)");
    println!("cargo::rustc-check-cfg=cfg(qemu_aarch64)");
    println!("cargo::rerun-if-env-changed=MICROKIT_SDK");
    println!("cargo::rerun-if-env-changed=PATH");
    if std::env::var("MICROKIT_SDK").is_ok_and(|s| !s.is_empty()) {
        println!("cargo::rustc-cfg=microkit_sdk");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    match std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-aarch64"))
        .find(|p| p.is_file())
    {
        Some(q) => {
            println!("cargo::rerun-if-changed={}", q.display());
            println!("cargo::rustc-cfg=qemu_aarch64");
        }
        // A missing path makes cargo re-run this script on every build, so
        // installing QEMU later is noticed.
        None => println!("cargo::rerun-if-changed=/usr/bin/qemu-system-aarch64"),
    }
}
