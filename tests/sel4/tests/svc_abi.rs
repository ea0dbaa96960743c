//! Runs `svc-harness` on QEMU `virt` and compares its transcript with
//! `golden/svc-abi.txt`: every syscall wrapper of bulkhead-sel4-abi must put
//! its arguments in the registers libsel4 uses (x7 number, x0 cap, x1 tag,
//! x2..x5 MR0..3, x6 reply, x8 NBSendRecv destination) and return what the
//! "kernel" left in x0..x5. The golden file was written from libsel4's
//! `sel4_arch/syscalls.h`, not from a run.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
#[cfg_attr(
    not(qemu_aarch64),
    ignore = "SKIPPED: qemu-system-aarch64 not installed (scripts/sdk.sh setup-qemu)"
)]
fn syscall_wrappers_use_the_libsel4_register_convention() {
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
            "bulkhead-sel4-svc-harness",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building svc-harness failed");
    let elf = target_dir.join("aarch64-unknown-none/debug/svc-harness");

    let mut qemu = Command::new("qemu-system-aarch64")
        .args(["-machine", "virt", "-cpu", "cortex-a53", "-display", "none"])
        .args([
            "-monitor", "none", "-serial", "stdio", "-nic", "none", "-kernel",
        ])
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu starts");
    let mut out = qemu.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = String::new();
    while !text.contains("svc-harness done") && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let golden = include_str!("../golden/svc-abi.txt");
    let got: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let want: Vec<&str> = golden.lines().collect();
    assert_eq!(got, want, "console:\n{text}");
}
