//! seL4 CAN boot tests on QEMU `virt` with two CTU CAN FD controllers on one
//! `-object can-bus` (two `ctucan_pci` cards, slots 1 and 2; the system's
//! `.qemu-args` sidecar file): the CAN driver PD (`drv-ctucanfd`'s
//! `ctucanfd_driver`) owns the card in slot 1 — it finds it through ECAM,
//! programs its BARs and takes its INTA — and a far-side ECU PD
//! (`tests/sel4/can-pds`' `can_ecu`) owns the card in slot 2, prints every
//! frame it sees and answers once it has seen them all.
//!
//! - `can-driver.system`: a client that talks the driver hop directly
//!   stands where `can_virt` sits; classic and FD frames go out through
//!   the driver and are seen by the ECU, the ECU's frames come back as RX
//!   events.
//! - `can.system`: the whole path — two guests' CAN devices (`can_guest`
//!   PDs speaking the VMM hop) through `can_virt` (configured as `bulkhead
//!   compose` configures it, `systems/can/`) and the driver: the ECU sees
//!   both guests' whitelisted frames (classic and FD), guest_b's forged
//!   0x300 is refused and counted, and each ECU answer reaches exactly the
//!   guests whose filters accept it. `can_virt` finds its configuration
//!   and hops through the runtime's seL4 boot copy (the configuration map's
//!   `bulkhead_config_*` setvars and compose's `MAPS` section).
//! - `can-imx8mp.system` on `imx8mp_evk`: the FlexCAN driver PD packs with
//!   the real tool and boots; QEMU's `imx8mp-evk` has no FlexCAN, so the
//!   driver must reach its registers without a fault, find no controller
//!   answering its freeze handshake within its bounded polls, and stop
//!   with that reason.
//!
//! Each PD's golden lines (`golden/<system>/<pd>.txt`) must appear in
//! order; lines that would mean a failure (a PD stopping, a ring corrupt, a
//! refused SUBMIT, a monitor fault report) must not appear at all.
//!
//! Without `MICROKIT_SDK` at build time they are reported as ignored with a
//! `SKIPPED:` reason (see build.rs and boot.rs).

use std::path::PathBuf;
use std::time::Duration;

/// Lines no CAN test console may contain.
const FORBIDDEN: &[&str] = &["stopping", "corrupt", "FAILED", "MON|ERROR", "cannot load"];
/// What the whole-path console may not contain either: a frame reaching a
/// guest whose filters do not accept it (0x7FF is nobody's).
const FORBIDDEN_CROSS_TALK: &[&str] = &[
    "guest_b: rx 0x123",
    "guest_b: rx 0x1ab",
    "guest_a: rx 0x456",
    "rx 0x7ff",
    "can_ecu: saw 0x300 classic [bad0]",
];
/// Lines the FlexCAN-on-QEMU console may not contain (it stops on purpose).
const FORBIDDEN_NO_FLEXCAN: &[&str] = &["MON|ERROR", "panicked", "corrupt"];

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first fragment of `forbidden` on any console line, with that line.
fn forbidden_line<'c>(
    console: &'c str,
    forbidden: &[&'static str],
) -> Option<(&'static str, &'c str)> {
    console
        .lines()
        .find_map(|l| forbidden.iter().find(|f| l.contains(**f)).map(|f| (*f, l)))
}

#[test]
fn forbidden_lines_are_found_and_clean_consoles_pass() {
    assert_eq!(forbidden_line("a\nb\n", FORBIDDEN), None);
    let c = "x\nctucanfd_driver: no pcie_ecam map; stopping\n";
    assert_eq!(
        forbidden_line(c, FORBIDDEN),
        Some(("stopping", "ctucanfd_driver: no pcie_ecam map; stopping"))
    );
    assert_eq!(forbidden_line(c, FORBIDDEN_NO_FLEXCAN), None);
    assert!(forbidden_line("can_drv_client: slot 0 FAILED", FORBIDDEN).is_some());
    assert!(forbidden_line("MON|ERROR: faulting PD: can_driver", FORBIDDEN_NO_FLEXCAN).is_some());
}

/// The sidecar QEMU arguments put two cards on one bus in the slots whose
/// INTA lines the system files claim (checked without an SDK).
#[test]
fn systems_claim_the_intx_lines_of_the_slots_their_cards_sit_in() {
    let dir = root().join("tests/sel4/systems");
    for name in ["can-driver", "can"] {
        check_cards_and_intx(&dir, name);
    }
}

fn check_cards_and_intx(dir: &std::path::Path, name: &str) {
    let args = std::fs::read_to_string(dir.join(format!("{name}.qemu-args"))).expect("qemu args");
    assert!(args.contains("-object can-bus,id=cb0"), "{args}");
    for slot in [1u64, 2] {
        let dev = format!("ctucan_pci,addr=0{slot}.0,canbus0=cb0,canbus1=cb0");
        assert!(args.contains(&dev), "card in slot {slot} on cb0: {args}");
    }
    let sys = std::fs::read_to_string(dir.join(format!("{name}.system"))).expect("system");
    // INTA (pin 1) of slot s: SPI 3 + (s + 1 - 1) mod 4, INTID = SPI + 32.
    for (slot, pd) in [(1u64, "can_driver"), (2, "can_ecu")] {
        let intid = 32 + 3 + slot % 4;
        let pd_xml = sys
            .split("<protection_domain ")
            .find(|p| p.starts_with(&format!("name=\"{pd}\"")))
            .expect("pd in system");
        let pd_xml = pd_xml.split("</protection_domain>").next().unwrap_or("");
        assert!(
            pd_xml.contains(&format!(
                "<irq irq=\"{intid}\" id=\"1\" trigger=\"level\" />"
            )),
            "{name}: {pd} must take INTID {intid} (INTA of slot {slot})"
        );
    }
}

#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, BOOT_TIMEOUT};
    use bulkhead_sel4_tests::missing_from_console;
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    /// Boots `system` for `board` (debug config) with `scripts/sdk.sh
    /// qemu` and returns the console once every golden line appeared or the
    /// timeout passed.
    pub fn boot(board: &str, system: &str, golden: &[(String, String)]) -> String {
        let sdk = std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too");
        let mut child = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args(["qemu", &sdk, board, "debug", system])
            // The system's sidecar names the PD packages; an inherited
            // PD_PACKAGES would override it.
            .env_remove("PD_PACKAGES")
            // Its own output directory: no race with other boot tests.
            .env("SDK_BUILD_DIR", format!("build/sel4-can/{board}"))
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
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // Lines that follow the last golden one (a late fault) get a moment.
        let settle = Instant::now() + Duration::from_secs(2);
        while let Some(left) = settle.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => break,
            }
        }
        // sdk.sh `exec`s QEMU, so this is QEMU's pid.
        let _ = child.kill();
        let _ = child.wait();
        text
    }
}

/// Boots `system` on `board` and checks its golden directory and the
/// forbidden lines.
#[cfg(microkit_sdk)]
fn boot_and_check(
    board: &str,
    system: &str,
    golden_dir: &str,
    also: &[&str],
    forbidden: &[&'static str],
) {
    use bulkhead_sel4_tests::{load_golden, missing_from_console};
    let golden = load_golden(&root().join(golden_dir)).expect("golden transcripts");
    assert!(!golden.is_empty(), "no golden transcripts in {golden_dir}");
    let console = with_sdk::boot(board, system, &golden);
    let missing = missing_from_console(&golden, &console);
    assert!(
        missing.is_none(),
        "{system}: (PD, line) {missing:?} never appeared; console:\n{console}"
    );
    for line in also {
        assert!(
            console.lines().any(|l| l.trim_end() == *line),
            "{system}: line {line:?} never appeared; console:\n{console}"
        );
    }
    let bad = forbidden_line(&console, forbidden);
    assert!(
        bad.is_none(),
        "{system}: console has (what, line) {bad:?}; console:\n{console}"
    );
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn ctucanfd_driver_carries_classic_and_fd_frames_both_ways_on_qemu_virt() {
    #[cfg(microkit_sdk)]
    boot_and_check(
        "qemu_virt_aarch64",
        "tests/sel4/systems/can-driver.system",
        "tests/sel4/golden/can-driver",
        &[],
        FORBIDDEN,
    );
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn flexcan_driver_packs_for_imx8mp_and_stops_cleanly_where_qemu_has_no_flexcan() {
    #[cfg(microkit_sdk)]
    boot_and_check(
        "imx8mp_evk",
        "tests/sel4/systems/can-imx8mp.system",
        "tests/sel4/golden/can-imx8mp",
        &[],
        FORBIDDEN_NO_FLEXCAN,
    );
    let _ = FORBIDDEN_NO_FLEXCAN;
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn two_guests_share_the_ctucanfd_controller_through_can_virt_both_ways() {
    #[cfg(microkit_sdk)]
    {
        let forbidden: Vec<&'static str> = FORBIDDEN
            .iter()
            .chain(FORBIDDEN_CROSS_TALK)
            .copied()
            .collect();
        boot_and_check(
            "qemu_virt_aarch64",
            "tests/sel4/systems/can.system",
            "tests/sel4/golden/can",
            &[
                "guest_b: tag 1 SENT",
                "guest_b: tag 2 NOT_SENT",
                "can_virt: guest 1 (channel 2): 1 frame(s) dropped by its TX whitelist; sent 1, over budget 0",
            ],
            &forbidden,
        );
    }
    let _ = FORBIDDEN_CROSS_TALK;
}

/// `systems/can/can_virt_config.bin` is what `bulkhead compose` writes for
/// `systems/can/can.toml` today (regenerate: `bulkhead compose
/// tests/sel4/systems/can/can.toml -o DIR` and copy
/// `DIR/qemu_virt_aarch64/can_virt_config.bin`), so the hand-written
/// `can.system` runs the configuration compose would give it.
#[test]
fn can_virt_config_is_current_compose_output() {
    let dir = root().join("tests/sel4/systems/can");
    let src = std::fs::read_to_string(dir.join("can.toml")).expect("can.toml");
    let out = bulkhead_compose::compose(&src, "can.toml", &dir, Some("qemu_virt_aarch64"))
        .expect("compose can.toml");
    let want = out[0]
        .files
        .iter()
        .find(|f| f.path == "qemu_virt_aarch64/can_virt_config.bin")
        .expect("compose wrote can_virt's configuration");
    let have = std::fs::read(dir.join("can_virt_config.bin")).expect("committed bin");
    assert!(
        have == want.bytes,
        "tests/sel4/systems/can/can_virt_config.bin is stale: regenerate it (see this test's doc)"
    );
}
