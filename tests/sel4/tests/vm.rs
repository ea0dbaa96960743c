//! seL4 VM boot test on QEMU `virt` (seL4 in hypervisor mode): two VMs,
//! one VMM PD each (`vmm/sel4`), console path virtio-console → serial_virt
//! → serial_driver (`tests/sel4/systems/vm.system`).
//!
//! - the `cluster` guest (`guest_ticker`) prints through its virtio-console
//!   and keeps printing `tick N`;
//! - the `infotainment` guest (`guest_abort`) reads an address where its VM
//!   has no device: its VMM reports the access and injects a data abort,
//!   the guest's own EL1 handler reports it (ESR: data abort from the same
//!   EL, synchronous external abort) and powers off through PSCI, and its
//!   VMM reports that;
//! - after all that the cluster guest is still ticking (a later tick than
//!   any seen before the abort), and no PD faulted.
//!
//! Without `MICROKIT_SDK` at build time it is reported as ignored with a
//! `SKIPPED:` reason (see build.rs and boot.rs).

use std::path::PathBuf;
use std::time::Duration;

/// Lines each VM's story must show, in this order (fragments). The two
/// stories interleave freely: the guests run concurrently.
const CLUSTER: &[&str] = &[
    "cluster_vmm: guest loaded, entry 0x40200000",
    "cluster| hello from guest_ticker",
];
/// The infotainment guest's story; its last line ends it.
const INFOTAINMENT: &[&str] = &[
    "infotainment_vmm: guest loaded, entry 0x40200000",
    "infotainment| hello from guest_abort",
    "infotainment_vmm: guest 4-byte read at 0x9000000",
    "hits no device: data abort injected",
    "infotainment| guest: data abort at 0x9000000 (ESR 0x96000010",
    "infotainment_vmm: guest powered off (PSCI)",
];

/// Where `chain` ends in `console` (fragments found in order), or the
/// first fragment missing.
fn chain_end(console: &str, chain: &[&'static str]) -> Result<usize, &'static str> {
    let mut at = 0;
    for want in chain {
        match console[at..].find(want) {
            Some(i) => at += i + want.len(),
            None => return Err(want),
        }
    }
    Ok(at)
}

/// Fragments no line may contain: a PD fault, a kernel complaint, a guest
/// that did not abort, a refused image.
const FORBIDDEN: &[&str] = &[
    "MON|ERROR",
    "seL4(CPU",
    "FAIL",
    "refused",
    "cannot",
    "guest panic",
];

/// Ticks the cluster guest must print after the infotainment guest is off.
const TICKS_AFTER: u64 = 3;

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The highest `cluster| tick N` in `text`.
fn last_tick(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split("cluster| tick ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .max()
}

/// What is wrong with `console`, or `None` when it shows everything the
/// test wants.
fn verdict(console: &str) -> Option<String> {
    if let Err(want) = chain_end(console, CLUSTER) {
        return Some(format!("missing (in order): {want:?}"));
    }
    let at = match chain_end(console, INFOTAINMENT) {
        Ok(at) => at,
        Err(want) => return Some(format!("missing (in order): {want:?}")),
    };
    if let Some((f, l)) = console
        .lines()
        .find_map(|l| FORBIDDEN.iter().find(|f| l.contains(**f)).map(|f| (f, l)))
    {
        return Some(format!("forbidden {f:?} in line {l:?}"));
    }
    let before = last_tick(&console[..at]).unwrap_or(0);
    match last_tick(&console[at..]) {
        Some(t) if t >= before + TICKS_AFTER => None,
        t => Some(format!(
            "cluster stopped ticking: tick {before} before the power-off, {t:?} after"
        )),
    }
}

#[test]
fn the_verdict_needs_order_no_faults_and_ticks_after_the_abort() {
    let good = "\
cluster_vmm: guest loaded, entry 0x40200000, RAM 0x1000000 bytes at 0x40000000
infotainment_vmm: guest loaded, entry 0x40200000, RAM 0x1000000 bytes at 0x40000000
infotainment| hello from guest_abort
cluster| hello from guest_ticker
infotainment_vmm: guest 4-byte read at 0x9000000 (pc 0x402001d8) hits no device: data abort injected
cluster| tick 1
infotainment| guest: data abort at 0x9000000 (ESR 0x96000010, pc 0x402001d8, vector 4): powering off
infotainment_vmm: guest powered off (PSCI)
cluster| tick 2
cluster| tick 3
cluster| tick 4
";
    assert_eq!(verdict(good), None);
    let stalled = good.replace("cluster| tick 4\n", "");
    assert!(verdict(&stalled).unwrap().contains("stopped ticking"));
    let faulted = format!("{good}MON|ERROR: faulting PD: cluster_vmm\n");
    assert!(verdict(&faulted).unwrap().contains("forbidden"));
    let no_abort = good.replace("hits no device: data abort injected", "");
    assert!(verdict(&no_abort).unwrap().contains("missing"));
    let swapped = good.replace("infotainment_vmm: guest powered off (PSCI)\n", "")
        + "infotainment_vmm: guest powered off (PSCI)\n";
    assert!(
        verdict(&swapped).unwrap().contains("stopped ticking"),
        "ticks must follow the power-off"
    );
    assert_eq!(last_tick("cluster| tick 9\ncluster| tick 10\n"), Some(10));
}

/// The system file gives each VM what the VMM and the guests assume.
#[test]
fn the_system_maps_guest_ram_and_the_gic_where_the_vmm_expects_them() {
    let sys =
        std::fs::read_to_string(root().join("tests/sel4/systems/vm.system")).expect("vm.system");
    for vm in ["cluster", "infotainment"] {
        assert!(sys.contains(&format!(
            "<map mr=\"{vm}_ram\" vaddr=\"0x4000_0000\" perms=\"rwx\" />"
        )));
    }
    assert_eq!(
        sys.matches("<map mr=\"gic_vcpu\" vaddr=\"0x0801_0000\"")
            .count(),
        2
    );
    assert!(
        sys.contains("phys_addr=\"0x0804_0000\""),
        "QEMU virt's GICV"
    );
    for sym in ["guest_ram", "guest_image", "serial_tx", "serial_rx"] {
        assert_eq!(
            sys.matches(&format!("setvar_vaddr=\"{sym}_vaddr\""))
                .count(),
            2,
            "{sym}"
        );
    }
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn two_vms_one_aborts_into_its_own_handler_the_other_keeps_running() {
    #[cfg(microkit_sdk)]
    {
        let console = with_sdk::boot("tests/sel4/systems/vm.system");
        if let Some(why) = verdict(&console) {
            panic!("vm.system: {why}; console:\n{console}");
        }
    }
}

#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, verdict, BOOT_TIMEOUT};
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    /// Boots `system` on QEMU `virt` (debug config) with `scripts/sdk.sh
    /// qemu` and returns the console once the verdict is good or the
    /// timeout passed.
    pub fn boot(system: &str) -> String {
        let sdk = std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too");
        let mut child = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args(["qemu", &sdk, "qemu_virt_aarch64", "debug", system])
            // The system's sidecar names the packages.
            .env_remove("PD_PACKAGES")
            // Its own output directory: no race with other packing runs.
            .env("SDK_BUILD_DIR", "build/sel4-tests/vm")
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
        while Instant::now() < deadline && verdict(&text).is_some() {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
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
