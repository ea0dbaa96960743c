//! Two Debian Linux guests on seL4 at once (`tests/sel4/systems/linux2.system`):
//! the `cluster` VM (128 MiB) and the `infotainment` VM (512 MiB), one VMM
//! PD each (`vmm/sel4`), both on QEMU `virt`, must reach their BusyBox
//! shell on hvc0 through virtio-console → serial_virt → serial_driver.
//! The test prints how long each guest took from the first loader line
//! (QEMU has started running the image) to its shell.
//!
//! Each guest's composed device tree (`system/automotive/qemu_virt_aarch64/
//! <vm>.dtb`) gets `/chosen` entries naming the initrd the VMM places at
//! RAM + RAM/2 ([`with_initrd`]); the rest is compose's.
//!
//! Without `MICROKIT_SDK` at build time the boot test is reported as
//! ignored with a `SKIPPED:` reason (see build.rs and boot.rs).

use std::path::PathBuf;
use std::time::Duration;

/// The guests: name, RAM bytes at 0x4000_0000 (as in their composed trees
/// and in linux2.system).
const GUESTS: [(&str, u64); 2] = [("cluster", 0x800_0000), ("infotainment", 0x2000_0000)];

/// Guest-physical RAM base of every VM.
const RAM_BASE: u64 = 0x4000_0000;

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where `chain` ends in `console` (fragments in order), or the first
/// fragment missing.
fn chain_end(console: &str, chain: &[String]) -> Result<usize, String> {
    let mut at = 0;
    for want in chain {
        match console[at..].find(want.as_str()) {
            Some(i) => at += i + want.len(),
            None => return Err(want.clone()),
        }
    }
    Ok(at)
}

/// Adds `/chosen` `linux,initrd-start/end` for an initrd of `initrd_len`
/// bytes where `vmm/sel4` puts it (RAM + RAM/2) to a dtc source.
fn with_initrd(dts: &str, ram_size: u64, initrd_len: u64) -> Result<String, String> {
    if dts.contains("linux,initrd-start") {
        return Err("the tree already names an initrd".into());
    }
    if dts.matches("method = \"smc\";").count() != 1 {
        return Err("expected PSCI over smc (compose's conduit for seL4)".into());
    }
    let at = dts.find("bootargs = ").ok_or("no /chosen bootargs")?;
    let end = at + dts[at..].find(';').ok_or("unterminated bootargs")? + 1;
    let start = RAM_BASE + ram_size / 2;
    let props = format!(
        "\n\t\tlinux,initrd-start = <0x00 {start:#x}>;\n\t\tlinux,initrd-end = <0x00 {:#x}>;",
        start + initrd_len
    );
    Ok(format!("{}{props}{}", &dts[..end], &dts[end..]))
}

/// What a guest prints (tagged by serial_virt) on its way to the shell.
fn shell_chain(vm: &str) -> Vec<String> {
    [
        "BH-INFO kernel=",
        "BULKHEAD-GUEST-READY",
        "BusyBox v",
        // serial_driver prints whole lines: the prompt (no newline) shows
        // only with the next line, so the banner's last line is the shell
        // running.
        "Enter 'help' for a list of built-in commands.",
    ]
    .iter()
    .map(|f| format!("{vm}| {f}"))
    .collect()
}

/// Fragments no line may contain: a PD fault, a kernel complaint, a guest
/// panic or a VMM giving up.
const FORBIDDEN: &[&str] = &[
    "MON|ERROR",
    "seL4(CPU",
    "Kernel panic",
    "refused",
    "cannot",
    "guest stopped",
];

/// What is wrong with `console`, or `None` once both guests reached their
/// shell.
fn verdict(console: &str) -> Option<String> {
    if let Some((f, l)) = console
        .lines()
        .find_map(|l| FORBIDDEN.iter().find(|f| l.contains(**f)).map(|f| (f, l)))
    {
        return Some(format!("forbidden {f:?} in line {l:?}"));
    }
    for (vm, _) in GUESTS {
        if let Err(w) = chain_end(console, &shell_chain(vm)) {
            return Some(format!("{vm}: missing (in order): {w:?}"));
        }
    }
    None
}

#[test]
fn the_initrd_goes_into_chosen_where_the_vmm_puts_it() {
    let dts = "/ {\n\tchosen {\n\t\tbootargs = \"console=hvc0\";\n\t};\n\tpsci {\n\t\tmethod = \"smc\";\n\t};\n};\n";
    let out = with_initrd(dts, 0x2000_0000, 0x1000).unwrap();
    assert!(out.contains("linux,initrd-start = <0x00 0x50000000>;"));
    assert!(out.contains("linux,initrd-end = <0x00 0x50001000>;"));
    assert_eq!(
        out.replace(
            "\n\t\tlinux,initrd-start = <0x00 0x50000000>;\n\t\tlinux,initrd-end = <0x00 0x50001000>;",
            ""
        ),
        dts
    );
    assert!(with_initrd(&out, 0x2000_0000, 1).is_err(), "already there");
    assert!(with_initrd(&dts.replace("smc", "hvc"), 0x800_0000, 1).is_err());
    assert!(with_initrd("/ { };", 0x800_0000, 1).is_err());
}

#[test]
fn the_verdict_wants_both_shells_and_no_fault() {
    let mut good = String::new();
    for (vm, _) in GUESTS {
        for l in shell_chain(vm) {
            good.push_str(&l);
            good.push('\n');
        }
    }
    assert_eq!(verdict(&good), None);
    let one = good.replace("infotainment| Enter", "infotainment| x");
    assert!(verdict(&one).unwrap().contains("infotainment"));
    let fault = format!("{good}MON|ERROR: faulting PD: cluster_vmm\n");
    assert!(verdict(&fault).unwrap().contains("forbidden"));
}

/// The system gives each VM the RAM its composed device tree declares.
#[test]
fn the_system_matches_the_composed_guests_and_passes_the_checker() {
    let file = "linux2.system";
    let sys = std::fs::read_to_string(root().join("tests/sel4/systems").join(file)).unwrap();
    for (vm, ram) in GUESTS {
        let hex = format!("{:x}", ram);
        let (hi, lo) = hex.split_at(hex.len() - 4);
        assert!(
            sys.contains(&format!(
                "<memory_region name=\"{vm}_ram\" size=\"0x{hi}_{lo}\""
            )),
            "{vm}_ram"
        );
        let dtb = root().join(format!("system/automotive/qemu_virt_aarch64/{vm}.dtb"));
        if let Ok(blob) = std::fs::read(&dtb) {
            // The memory node's reg: <0 RAM_BASE 0 size> as big-endian cells.
            let mut reg = Vec::new();
            for c in [0u32, 0x4000_0000, 0, u32::try_from(ram).unwrap()] {
                reg.extend_from_slice(&c.to_be_bytes());
            }
            assert!(
                blob.windows(reg.len()).any(|w| w == reg.as_slice()),
                "{vm}.dtb declares other RAM"
            );
        }
    }
    let opts = bulkhead_sdf::CheckOptions {
        board: bulkhead_boards::board("qemu_virt_aarch64"),
        ..Default::default()
    };
    let report = bulkhead_sdf::check_source(&sys, file, &opts);
    assert!(report.is_valid(), "{}", report.render());
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn two_debian_guests_boot_to_their_shells_side_by_side() {
    #[cfg(microkit_sdk)]
    {
        let out = "build/sel4-tests/linux2";
        with_sdk::prepare(out);
        let (console, times) = with_sdk::boot("tests/sel4/systems/linux2.system", out, &verdict);
        if let Some(why) = verdict(&console) {
            panic!("linux2.system: {why}; console:\n{console}");
        }
        for (vm, t) in times {
            println!(
                "linux2: {vm} at its shell {:.1} s after the first loader line",
                t.as_secs_f64()
            );
        }
    }
}

#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, shell_chain, with_initrd, BOOT_TIMEOUT, GUESTS};
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    fn dtc(args: &[&str], input: &std::path::Path) -> Vec<u8> {
        let o = Command::new("dtc")
            .args(args)
            .arg(input)
            .output()
            .expect("dtc runs (device-tree-compiler, scripts/setup.sh)");
        assert!(
            o.status.success(),
            "dtc: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    /// Builds the guest images (a no-op when up to date) and puts the
    /// prefilled files into the packing directory `out`.
    pub fn prepare(out: &str) {
        let root = root();
        let st = Command::new("scripts/guest-image.sh")
            .current_dir(&root)
            .env_remove("GUEST_OUT")
            .status()
            .expect("scripts/guest-image.sh runs");
        assert!(st.success(), "scripts/guest-image.sh failed");
        let dir = root.join(out);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["Image", "initrd.cpio.gz"] {
            std::fs::copy(root.join("build/guest").join(f), dir.join(f)).unwrap();
        }
        let initrd_len = std::fs::metadata(dir.join("initrd.cpio.gz")).unwrap().len();
        for (vm, ram) in GUESTS {
            let composed = root.join(format!("system/automotive/qemu_virt_aarch64/{vm}.dtb"));
            let dts = String::from_utf8(dtc(&["-q", "-I", "dtb", "-O", "dts"], &composed)).unwrap();
            let adapted =
                with_initrd(&dts, ram, initrd_len).unwrap_or_else(|e| panic!("{vm}: {e}"));
            let src = dir.join(format!("{vm}-sel4.dts"));
            std::fs::write(&src, adapted).unwrap();
            let blob = dtc(&["-q", "-I", "dts", "-O", "dtb"], &src);
            std::fs::write(dir.join(format!("{vm}-sel4.dtb")), blob).unwrap();
        }
    }

    /// Boots `system` (debug config) packing into `out`; returns the
    /// console once `verdict` is good, a forbidden line showed, QEMU ended
    /// or the timeout passed, and for each guest that reached its shell the
    /// time from the first loader line (`LDR|`) to its shell line.
    pub fn boot(
        system: &str,
        out: &str,
        verdict: &dyn Fn(&str) -> Option<String>,
    ) -> (String, Vec<(&'static str, Duration)>) {
        let sdk = std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too");
        let mut child = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args(["qemu", &sdk, "qemu_virt_aarch64", "debug", system])
            .env_remove("PD_PACKAGES")
            .env_remove("QEMU_EXTRA_ARGS")
            .env("SDK_BUILD_DIR", out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("scripts/sdk.sh runs");
        let mut stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut text = String::new();
        let mut started: Option<Instant> = None;
        let mut times = Vec::new();
        loop {
            match verdict(&text) {
                None => break,
                Some(v) if v.starts_with("forbidden") => break,
                Some(_) => {}
            }
            if Instant::now() >= deadline {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if started.is_none() && text.contains("LDR|") {
                started = Some(Instant::now());
            }
            if let Some(t0) = started {
                for (vm, _) in GUESTS {
                    let shell = shell_chain(vm);
                    let last = shell.last().expect("a chain");
                    if !times.iter().any(|(v, _)| *v == vm) && text.contains(last.as_str()) {
                        times.push((vm, t0.elapsed()));
                    }
                }
            }
        }
        // sdk.sh `exec`s QEMU, so this is QEMU's pid.
        let _ = child.kill();
        let _ = child.wait();
        (text, times)
    }
}
