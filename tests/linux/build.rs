//! Sets `cfg(linux_guest)` unless `BULKHEAD_SKIP_LINUX_GUEST` is set (the
//! guest is built from Debian packages: the first run downloads them), and
//! `cfg(qemu_aarch64)` when `qemu-system-aarch64` is on PATH. Tests that need
//! them are reported as ignored, with a `SKIPPED:` reason, otherwise.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(linux_guest)");
    println!("cargo::rustc-check-cfg=cfg(qemu_aarch64)");
    println!("cargo::rerun-if-env-changed=BULKHEAD_SKIP_LINUX_GUEST");
    println!("cargo::rerun-if-env-changed=PATH");
    if std::env::var_os("BULKHEAD_SKIP_LINUX_GUEST").is_none_or(|v| v.is_empty()) {
        println!("cargo::rustc-cfg=linux_guest");
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
