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
//!
//! And a Linux guest (`tests/sel4/systems/linux.system`): Debian's arm64
//! kernel and busybox initramfs from `scripts/guest-image.sh`, with the
//! cluster guest's composed device tree adapted for seL4 ([`sel4_dts`]:
//! PSCI over `smc`, `/chosen` naming the initrd), must reach its shell on
//! hvc0 through the same console path.
//!
//! Without `MICROKIT_SDK` at build time they are reported as ignored with a
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
        let console = with_sdk::boot(
            "tests/sel4/systems/vm.system",
            "build/sel4-tests/vm",
            &verdict,
        );
        if let Some(why) = verdict(&console) {
            panic!("vm.system: {why}; console:\n{console}");
        }
    }
}

#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, BOOT_TIMEOUT};
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    /// Boots `system` on QEMU `virt` (debug config) with `scripts/sdk.sh
    /// qemu`, packing into `out`, and returns the console once `verdict`
    /// is good or the timeout passed.
    pub fn boot(system: &str, out: &str, verdict: &dyn Fn(&str) -> Option<String>) -> String {
        let sdk = std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too");
        let mut child = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args(["qemu", &sdk, "qemu_virt_aarch64", "debug", system])
            // The system's sidecar names the packages.
            .env_remove("PD_PACKAGES")
            // Its own output directory: no race with other packing runs.
            .env("SDK_BUILD_DIR", out)
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

/// Where the VMM puts the cluster guest's initrd: compose's rule, RAM +
/// RAM/2 of its 128 MiB at 0x4000_0000 (`vmm/sel4` `linux_placement`).
const CLUSTER_INITRD: u64 = 0x4000_0000 + 0x800_0000 / 2;

/// Adapts a composed guest device tree (dtc source) for seL4: the PSCI
/// conduit becomes `smc` (a guest `hvc` enters seL4 as a system call, with
/// whatever the guest left in x7 as its number) and `/chosen` names the
/// initrd the VMM loads (compose writes neither today).
fn sel4_dts(dts: &str, initrd_len: u64) -> Result<String, String> {
    if dts.matches("method = \"hvc\";").count() + dts.matches("method = \"smc\";").count() != 1 {
        return Err("expected exactly one PSCI method".into());
    }
    if dts.contains("linux,initrd-start") {
        return Err("the tree already names an initrd".into());
    }
    let at = dts.find("bootargs = ").ok_or("no /chosen bootargs")?;
    let end = at + dts[at..].find(';').ok_or("unterminated bootargs")? + 1;
    let start = CLUSTER_INITRD;
    let props = format!(
        "\n\t\tlinux,initrd-start = <0x00 {start:#x}>;\n\t\tlinux,initrd-end = <0x00 {:#x}>;",
        start + initrd_len
    );
    let mut out = String::with_capacity(dts.len() + props.len());
    out.push_str(&dts[..end]);
    out.push_str(&props);
    out.push_str(&dts[end..]);
    Ok(out.replace("method = \"hvc\";", "method = \"smc\";"))
}

/// What is wrong with a Linux guest's console, or `None` once it reached
/// its shell.
fn linux_verdict(console: &str) -> Option<String> {
    const FORBIDDEN_LINUX: &[&str] =
        &["MON|ERROR", "seL4(CPU", "Kernel panic", "refused", "cannot"];
    if let Some((f, l)) = console.lines().find_map(|l| {
        FORBIDDEN_LINUX
            .iter()
            .find(|f| l.contains(**f))
            .map(|f| (f, l))
    }) {
        return Some(format!("forbidden {f:?} in line {l:?}"));
    }
    let chain = [
        "cluster_vmm: Linux Image at 0x40200000",
        "cluster_vmm: first PSCI call 0x84000000",
        "cluster| BH-INFO kernel=",
        "cluster| BULKHEAD-GUEST-READY",
        "cluster| BusyBox v",
        // serial_driver prints whole lines, so the prompt itself (no
        // newline) only shows with the next line; the banner's last line
        // is the shell running.
        "cluster| Enter 'help' for a list of built-in commands.",
    ];
    chain_end(console, &chain)
        .err()
        .map(|w| format!("missing (in order): {w:?}"))
}

#[test]
fn the_device_tree_is_adapted_for_sel4_and_nothing_else_changes() {
    let dts = "/ {\n\tchosen {\n\t\tbootargs = \"console=hvc0 root=/dev/vda ro\";\n\t};\n\tpsci {\n\t\tmethod = \"hvc\";\n\t};\n};\n";
    let out = sel4_dts(dts, 0x1000).unwrap();
    assert!(out.contains("method = \"smc\";") && !out.contains("\"hvc\""));
    assert!(out.contains("linux,initrd-start = <0x00 0x44000000>;"));
    assert!(out.contains("linux,initrd-end = <0x00 0x44001000>;"));
    assert_eq!(
        out.replace("\n\t\tlinux,initrd-start = <0x00 0x44000000>;\n\t\tlinux,initrd-end = <0x00 0x44001000>;", "")
            .replace("smc", "hvc"),
        dts
    );
    assert!(sel4_dts(&out, 1).is_err(), "already adapted");
    assert!(sel4_dts("/ { };", 1).is_err());
    // The guest RAM the rule assumes is the system file's.
    let sys = std::fs::read_to_string(root().join("tests/sel4/systems/linux.system")).unwrap();
    assert!(sys.contains("<memory_region name=\"cluster_ram\" size=\"0x800_0000\""));
}

#[test]
fn the_linux_verdict_wants_the_shell_and_no_fault() {
    let good = "cluster_vmm: Linux Image at 0x40200000 (1 bytes)\ncluster_vmm: first PSCI call 0x84000000\ncluster| BH-INFO kernel=6.1\ncluster| BULKHEAD-GUEST-READY uptime=3.95\ncluster| BusyBox v1.35.0\ncluster| Enter 'help' for a list of built-in commands.\n";
    assert_eq!(linux_verdict(good), None);
    assert!(linux_verdict(&good.replace("Enter 'help'", "")).is_some());
    assert!(linux_verdict(&format!("{good}\n[ 1.0] Kernel panic - not syncing")).is_some());
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn a_debian_linux_guest_boots_to_its_shell_in_a_vm() {
    #[cfg(microkit_sdk)]
    {
        use std::process::Command;
        let root = root();
        // The guest images (Debian packages through apt; a no-op when up
        // to date).
        let st = Command::new("scripts/guest-image.sh")
            .current_dir(&root)
            .env_remove("GUEST_OUT")
            .stdout(std::process::Stdio::inherit())
            .status()
            .expect("scripts/guest-image.sh runs");
        assert!(st.success(), "scripts/guest-image.sh failed");
        let out = "build/sel4-tests/linux";
        let dir = root.join(out);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["Image", "initrd.cpio.gz"] {
            std::fs::copy(root.join("build/guest").join(f), dir.join(f)).unwrap();
        }
        let initrd_len = std::fs::metadata(dir.join("initrd.cpio.gz")).unwrap().len();
        let dtc = |args: &[&str], input: Option<&std::path::Path>| {
            let mut c = Command::new("dtc");
            c.args(args);
            if let Some(i) = input {
                c.arg(i);
            }
            let o = c
                .output()
                .expect("dtc runs (device-tree-compiler, scripts/setup.sh)");
            assert!(
                o.status.success(),
                "dtc: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            o.stdout
        };
        let composed = root.join("system/automotive/qemu_virt_aarch64/cluster.dtb");
        let dts =
            String::from_utf8(dtc(&["-q", "-I", "dtb", "-O", "dts"], Some(&composed))).unwrap();
        let adapted = sel4_dts(&dts, initrd_len).unwrap_or_else(|e| panic!("{e}"));
        let src = dir.join("cluster-sel4.dts");
        std::fs::write(&src, adapted).unwrap();
        let blob = dtc(&["-q", "-I", "dts", "-O", "dtb"], Some(&src));
        std::fs::write(dir.join("cluster-sel4.dtb"), blob).unwrap();
        let console = with_sdk::boot("tests/sel4/systems/linux.system", out, &linux_verdict);
        if let Some(why) = linux_verdict(&console) {
            panic!("linux.system: {why}; console:\n{console}");
        }
    }
}
