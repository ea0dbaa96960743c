//! Links each bare-metal binary of this crate with its own linker script
//! (the shim in OCRAM, the probe where the Microkit loader would be), and
//! detects whether a QEMU that models `imx8mp-evk` (QEMU >= 10) is
//! installed, so the boot test is reported as ignored — with the reason —
//! rather than passing without having run.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    for f in ["shim.ld", "probe.ld"] {
        println!("cargo::rerun-if-changed={dir}/link/{f}");
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo::rustc-link-arg-bin=imx8mp-evk-shim=-T{dir}/link/shim.ld");
        println!("cargo::rustc-link-arg-bin=psci-probe=-T{dir}/link/probe.ld");
        return;
    }
    println!("cargo::rustc-check-cfg=cfg(qemu_imx8mp)");
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found: Option<PathBuf> = std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-aarch64"))
        .find(|p| p.is_file());
    match found {
        // A missing path makes cargo re-run this script every build, so
        // installing QEMU later is noticed.
        None => println!("cargo::rerun-if-changed=/usr/bin/qemu-system-aarch64"),
        Some(q) => {
            println!("cargo::rerun-if-changed={}", q.display());
            let out = |args: &[&str]| {
                Command::new(&q)
                    .args(args)
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            };
            let major = out(&["--version"])
                .split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .and_then(|v| v.split('.').next().and_then(|m| m.parse::<u32>().ok()))
                .unwrap_or(0);
            if major >= 10 && out(&["-machine", "help"]).contains("imx8mp-evk") {
                println!("cargo::rustc-cfg=qemu_imx8mp");
            }
        }
    }
}
