//! seL4 boot tests: with a Microkit SDK, every example is packed for each
//! QEMU-modelled board with the debug config and booted, and its console
//! must contain the example's golden transcript (the lines its PDs print —
//! the same files the host board's runs are compared with); `imx8mm_evk`
//! (no QEMU model) must at least pack.
//!
//! Without `MICROKIT_SDK` these tests are compiled with
//! `#[ignore = "SKIPPED: …"]` (see build.rs): `cargo test` then lists each
//! as `ignored, SKIPPED: MICROKIT_SDK not set — …` and counts it under
//! "ignored" in the summary. That is deliberate: a test that returns early
//! would be counted as *passed*, claiming a boot that never happened, while
//! a plain `#[ignore]` would stay ignored even with an SDK. Here the SDK
//! decides, and the summary tells the truth either way.
//!
//! The last test needs no SDK: it feeds the crate's build script an SDK
//! *layout* (the two JSON files it reads) to prove the SDK-only code (event
//! loop `run`, invocation wrappers) compiles for aarch64 and that a label
//! missing from the SDK stops the build with a clear message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// (example, .system file, golden transcript file or per-PD directory),
/// paths from the repo root. The `system/examples/` PDs are the same
/// sources the host board runs (crate `bulkhead-example-pds`, in sdk.sh's
/// `PD_PACKAGES`), compared per PD with the host board's goldens.
const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "hello",
        "tests/sel4/hello.system",
        "tests/sel4/golden/hello.txt",
    ),
    (
        "hello (runtime)",
        "system/examples/hello.system",
        "tests/host-board/golden/hello",
    ),
    (
        "pingpong",
        "system/examples/pingpong.system",
        "tests/host-board/golden/pingpong",
    ),
    (
        "passive_server",
        "system/examples/passive_server.system",
        "tests/host-board/golden/passive_server",
    ),
    (
        "hierarchy",
        "system/examples/hierarchy.system",
        "tests/host-board/golden/hierarchy",
    ),
    (
        "rowrite",
        "system/examples/rowrite.system",
        "tests/host-board/golden/rowrite",
    ),
];

/// The host board's supervisor reports a PD fault with no parent as
/// `MONITOR: fault in PD <pd>: …`; Microkit's monitor prints
/// `MON|ERROR: faulting PD: <pd>` (plus registers). A golden line of the
/// first form is expected on seL4 in the second; PD lines stay as they are.
fn for_sel4(golden: Vec<(String, String)>) -> Vec<(String, String)> {
    golden
        .into_iter()
        .map(|(pd, text)| {
            let text = text
                .lines()
                .map(|l| match l.strip_prefix("MONITOR: fault in PD ") {
                    Some(rest) => {
                        let who = rest.split(':').next().unwrap_or(rest);
                        format!("MON|ERROR: faulting PD: {who}\n")
                    }
                    None => format!("{l}\n"),
                })
                .collect();
            (pd, text)
        })
        .collect()
}

#[test]
fn host_monitor_lines_become_microkit_monitor_lines() {
    let g = for_sel4(vec![(
        "writer".to_string(),
        "writer: a\nMONITOR: fault in PD writer: write to read-only map of ro at 0x10 (pc <pc>)\n"
            .to_string(),
    )]);
    assert_eq!(g[0].1, "writer: a\nMON|ERROR: faulting PD: writer\n");
}

/// Boards with a QEMU model, booted by `scripts/sdk.sh qemu`.
const QEMU_BOARDS: &[&str] = &["qemu_virt_aarch64", "imx8mp_evk"];

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What only runs with an SDK.
#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, BOOT_TIMEOUT};
    use bulkhead_sel4_tests::missing_from_console;
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    pub fn sdk() -> String {
        std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too")
    }

    /// Boots `system` on `board` and returns the console once every golden line
    /// appeared (or the timeout passed).
    pub fn boot(board: &str, system: &str, golden: &[(String, String)]) -> String {
        let mut child = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args(["qemu", &sdk(), board, "debug", system])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("scripts/sdk.sh runs");
        let mut out = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut text = String::new();
        while Instant::now() < deadline && missing_from_console(golden, &text).is_some() {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                // sdk.sh or QEMU exited (e.g. the image did not pack).
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // sdk.sh `exec`s QEMU, so this is QEMU's pid.
        let _ = child.kill();
        let _ = child.wait();
        text
    }
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn examples_boot_on_qemu_and_match_their_golden_transcripts() {
    #[cfg(microkit_sdk)]
    for board in QEMU_BOARDS {
        use bulkhead_sel4_tests::{load_golden, missing_from_console};
        for (name, system, golden_path) in EXAMPLES {
            let golden =
                for_sel4(load_golden(&root().join(golden_path)).expect("golden transcripts"));
            assert!(
                !golden.is_empty(),
                "{name}: no golden transcripts in {golden_path}"
            );
            let console = with_sdk::boot(board, system, &golden);
            if let Some((pd, line)) = missing_from_console(&golden, &console) {
                panic!(
                    "{name} on {board}: PD {pd:?}'s golden line {line:?} never appeared; console:\n{console}"
                );
            }
        }
    }
    let _ = (QEMU_BOARDS, EXAMPLES, BOOT_TIMEOUT);
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn an_imx8mm_evk_image_packs() {
    #[cfg(microkit_sdk)]
    {
        let status = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args([
                "image",
                &with_sdk::sdk(),
                "imx8mm_evk",
                "debug",
                EXAMPLES[0].1,
            ])
            .status()
            .expect("scripts/sdk.sh runs");
        assert!(status.success());
        assert!(root().join("build/imx8mm_evk/debug/loader.img").is_file());
    }
}

/// Writes an SDK layout with the files bulkhead-sel4-abi's build.rs reads.
fn fake_layout(dir: &Path, labels: &[(&str, u64)]) {
    let cfg = dir.join("board/qemu_virt_aarch64/debug");
    std::fs::create_dir_all(&cfg).expect("mkdir");
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    std::fs::write(
        cfg.join("invocations_all.json"),
        format!("{{{}}}", body.join(", ")),
    )
    .expect("write");
    std::fs::write(
        cfg.join("address_space_constants.json"),
        r#"{"page_table_index_bits": 9, "vspace_index_bits": 10, "vspace_user_top": 1099511627775}"#,
    )
    .expect("write");
}

fn check_with_layout(sdk: &Path, target: &Path) -> std::process::Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .current_dir(root())
        .args(["check", "--target", "aarch64-unknown-none"])
        .args(["-p", "bulkhead-sel4-abi", "-p", "bulkhead-hello-pd"])
        // The runtime's seL4 backend and the example PDs on it, SDK path.
        .args(["-p", "bulkhead-runtime", "-p", "bulkhead-example-pds"])
        .env("MICROKIT_SDK", sdk)
        .env("MICROKIT_BOARD", "qemu_virt_aarch64")
        .env("MICROKIT_CONFIG", "debug")
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo runs")
}

#[test]
fn sdk_labels_are_generated_and_sdk_only_code_compiles() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sdk-layout");
    let _ = std::fs::remove_dir_all(&tmp);
    let labels = [
        ("IRQAckIRQ", 30),
        ("TCBWriteRegisters", 4),
        ("TCBReadRegisters", 3),
        ("TCBResume", 11),
        ("TCBSuspend", 10),
        ("SchedContextConsumed", 40),
        ("ARMVCPUInjectIRQ", 60),
        ("ARMVCPUReadReg", 61),
        ("ARMVCPUWriteReg", 62),
        ("ARMVCPUAckVPPI", 63),
    ];
    fake_layout(&tmp.join("good"), &labels);
    let out = check_with_layout(&tmp.join("good"), &tmp.join("target"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = std::fs::read_dir(tmp.join("target/aarch64-unknown-none/debug/build"))
        .expect("build dir")
        .filter_map(Result::ok)
        .map(|e| e.path().join("out/sdk.rs"))
        .find(|p| p.is_file())
        .expect("sdk.rs generated");
    let text = std::fs::read_to_string(generated).expect("read");
    assert!(text.contains("pub const IRQ_ACK_IRQ: u64 = 30;"), "{text}");
    assert!(
        text.contains("pub const ARM_VCPU_INJECT_IRQ: u64 = 60;"),
        "{text}"
    );
    assert!(
        text.contains("pub const VSPACE_USER_TOP: u64 = 0xffffffffff;"),
        "{text}"
    );

    // An SDK whose labels lack one the wrappers use must stop the build.
    fake_layout(&tmp.join("bad"), &labels[1..]);
    let out = check_with_layout(&tmp.join("bad"), &tmp.join("target"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no label for IRQAckIRQ"), "{err}");
}
