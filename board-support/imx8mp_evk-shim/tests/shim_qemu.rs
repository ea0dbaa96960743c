//! Boots the EL3 shim alone on QEMU's `imx8mp-evk` with our EL2 probe where
//! the Microkit loader would be; passes only if the shim set up EL3, dropped
//! to EL2 at 0x4100_0000, and answered PSCI_VERSION and an unknown call.
//!
//! Needs QEMU >= 10 (`scripts/sdk.sh setup-qemu` installs it from Debian
//! bookworm-backports); without it the test is reported as ignored with
//! that reason (see build.rs) instead of passing silently.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn build() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sel4-aarch64");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--target",
            "aarch64-unknown-none",
            "-p",
            "bulkhead-imx8mp-evk-shim",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the shim for aarch64-unknown-none failed"
    );
    target_dir.join("aarch64-unknown-none/debug")
}

#[test]
#[cfg_attr(
    not(qemu_imx8mp),
    ignore = "SKIPPED: no qemu-system-aarch64 >= 10 with -M imx8mp-evk (scripts/sdk.sh setup-qemu)"
)]
fn shim_answers_psci_version_and_enters_el2() {
    let bin = build();
    let mut qemu = Command::new("qemu-system-aarch64")
        .args([
            "-machine",
            "imx8mp-evk",
            "-m",
            "6G",
            "-display",
            "none",
            "-monitor",
            "none",
        ])
        // UART1 is the first serial port; the debug UART is UART2.
        .args(["-serial", "null", "-serial", "stdio"])
        .arg("-device")
        .arg(format!("loader,file={}", bin.join("psci-probe").display()))
        .arg("-device")
        .arg(format!(
            "loader,file={},cpu-num=0",
            bin.join("imx8mp-evk-shim").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu starts");
    let mut out = qemu.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    while !text.contains('\n') && Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert_eq!(
        text.lines().next().unwrap_or(""),
        "PSCI 00010000 FFFFFFFFFFFFFFFF EL2",
        "console: {text:?}"
    );
}
