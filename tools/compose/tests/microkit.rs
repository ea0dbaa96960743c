//! The real Microkit tool accepts a composed system: with `MICROKIT_SDK`
//! set, compose a two-guest system for `qemu_virt_aarch64`, give every PD
//! the smallest real PD ELF (`tests/sel4/hello-pd`, built for the SDK) and
//! pack an image with `$MICROKIT_SDK/bin/microkit`.
//!
//! Without an SDK the test is compiled as `#[ignore = "SKIPPED: …"]` (see
//! build.rs), so `cargo test` lists it as ignored with the reason.
//!
//! The system has a console and CAN only: on QEMU those devices do no DMA,
//! so no PD has a `setvar` — the hello ELF does not define the
//! `<region>_paddr` symbols the DMA drivers of the full automotive system
//! need (the tool would refuse it for that, not for the description).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot run the real microkit tool (MICROKIT_SDK=/path/to/microkit-sdk-2.3.x cargo test -p bulkhead-compose)"
)]
fn microkit_packs_a_composed_system() {
    let sdk = std::env::var("MICROKIT_SDK")
        .expect("MICROKIT_SDK was set at build time; set it for the run too");
    let microkit = Path::new(&sdk).join("bin/microkit");
    assert!(
        microkit.is_file(),
        "{} not found: is {sdk} a Microkit SDK?",
        microkit.display()
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = std::env::temp_dir().join(format!("bh-compose-microkit-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let src = r#"boards = ["qemu_virt_aarch64"]
[[guest]]
name = "cluster"
ram = "64M"
priority = 110
budget = 2000
safety = true
console = { input = true }
can = { tx_whitelist = [0x100], budget = { frames = 10, bits = 2000, period_us = 1000 } }
[[guest]]
name = "infotainment"
ram = "128M"
priority = 90
console = {}
can = { tx_whitelist = [0x400], budget = { frames = 10, bits = 2000, period_us = 1000 } }
"#;
    let out = bulkhead_compose::compose(src, "t.toml", &tmp, None).unwrap();
    for f in &out[0].files {
        let p = tmp.join(&f.path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &f.bytes).unwrap();
    }
    let target = tmp.join("target");
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .env("MICROKIT_BOARD", "qemu_virt_aarch64")
        .env("MICROKIT_CONFIG", "debug")
        .args([
            "build",
            "--release",
            "--target",
            "aarch64-unknown-none",
            "-p",
            "bulkhead-hello-pd",
        ])
        .status()
        .unwrap();
    assert!(built.success(), "building the hello PD failed");
    let elf = target.join("aarch64-unknown-none/release/sel4-hello");
    let text = String::from_utf8(out[0].files[0].bytes.clone()).unwrap();
    let sd = bulkhead_sdf::parse(&text).unwrap();
    for pd in sd.all_pds() {
        std::fs::copy(&elf, tmp.join(&pd.program_image.path)).unwrap();
    }
    let run = Command::new(&microkit)
        .arg(tmp.join("qemu_virt_aarch64.system"))
        .args(["--board", "qemu_virt_aarch64", "--config", "debug", "-o"])
        .arg(tmp.join("loader.img"))
        .arg("-r")
        .arg(tmp.join("report.txt"))
        .arg("--search-path")
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "microkit refused the composed system:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
