//! Two Debian Linux guests on seL4 at once (`tests/sel4/systems/linux2.system`):
//! the `cluster` VM (128 MiB) and the `infotainment` VM (512 MiB), one VMM
//! PD each (`vmm/sel4`), both on QEMU `virt`, must reach their BusyBox
//! shell on hvc0 through virtio-console → serial_virt → serial_driver.
//! Each guest also has a virtio-blk disk: its own partition of one GPT
//! image (QEMU's virtio-blk-device under `virtio_blk_driver` and
//! `blk_virt`; the cluster's partition read-only). Each guest must see
//! exactly one disk, of its partition's size; the infotainment guest boots
//! twice (`bh.boots=2`: writes a file, `reboot -f` through PSCI
//! `SYSTEM_RESET`, reads it back). Afterwards, on the host, the cluster
//! partition and everything outside the infotainment partition must be
//! unchanged, and the infotainment partition must hold the second boot's
//! token. The test prints how long each guest took from the first loader
//! line (QEMU has started running the image) to its first `READY` line and
//! to its shell (for infotainment: after its reboot).
//!
//! Each guest boots its composed device tree (`system/automotive/
//! qemu_virt_aarch64/<vm>.dtb`) as is, but for infotainment's `bh.boots=2`
//! ([`guest_dts`]); the VMM names the initrd in `/chosen` itself.
//!
//! Without `MICROKIT_SDK` at build time the boot test is reported as
//! ignored with a `SKIPPED:` reason (see build.rs and boot.rs).

use std::path::PathBuf;
use std::time::Duration;

/// The guests: name, RAM bytes at 0x4000_0000 (as in their composed trees
/// and in linux2.system).
const GUESTS: [(&str, u64); 2] = [("cluster", 0x800_0000), ("infotainment", 0x2000_0000)];

/// Guest-physical RAM base of every VM (the composed trees' memory node).
const RAM_BASE: u64 = 0x4000_0000;

/// Sectors of each guest's partition (8 MiB) and of the whole disk.
const PART_SECTORS: u64 = 16 * 1024;
#[cfg_attr(not(microkit_sdk), allow(dead_code))]
const DISK_SECTORS: u64 = 4 * PART_SECTORS;

/// The kernel command-line addition that makes the infotainment guest
/// write, reboot and read back (guest/README.md, `bh-auto`).
#[cfg_attr(not(microkit_sdk), allow(dead_code))]
const INFOTAINMENT_ARGS: &str = " bh.boots=2";

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

/// A composed guest tree (dtc source) as this test boots it: `extra`
/// appended to `/chosen` `bootargs`, nothing else. The tree must use PSCI
/// over `smc` and name no initrd: `vmm/sel4` writes
/// `linux,initrd-start/end` into the tree it loads.
fn guest_dts(dts: &str, extra: &str) -> Result<String, String> {
    if dts.contains("linux,initrd-start") {
        return Err("the tree already names an initrd (the VMM's to write)".into());
    }
    if dts.matches("method = \"smc\";").count() != 1 {
        return Err("expected PSCI over smc (compose's conduit for seL4)".into());
    }
    let key = "bootargs = \"";
    let at = dts.find(key).ok_or("no /chosen bootargs")? + key.len();
    let end = at + dts[at..].find('"').ok_or("unterminated bootargs")?;
    Ok(format!("{}{extra}{}", &dts[..end], &dts[end..]))
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

/// The whole story of `vm` (tagged lines, in order): to the shell, and for
/// infotainment the write, the reboot and the read-back first.
fn story(vm: &str) -> Vec<String> {
    let disk = format!("BH-INFO block vda sectors={PART_SECTORS}");
    let mut want: Vec<&str> = vec!["BH-INFO kernel=", &disk, "BULKHEAD-GUEST-READY"];
    if vm == "infotainment" {
        want.extend([
            "BH-BLK read NONE",
            "BH-AUTO boot 1 of 2",
            "BH-BLK write OK boot-1",
            "BH-AUTO reboot",
            "BH-INFO kernel=",
            &disk,
            "BULKHEAD-GUEST-READY",
            "BH-BLK read OK boot-1",
            "BH-AUTO boot 2 of 2",
            "BH-BLK write OK boot-2",
            "BH-AUTO done",
        ]);
    }
    let shell = shell_chain(vm);
    want.iter()
        .map(|f| format!("{vm}| {f}"))
        .chain(shell[shell.len() - 2..].iter().cloned())
        .collect()
}

/// Block devices `vm` reported (`BH-INFO block ...` lines) per boot, one
/// entry per `BH-INFO kernel=` line.
fn disks_per_boot(console: &str, vm: &str) -> Vec<Vec<String>> {
    let (kernel, block) = (
        format!("{vm}| BH-INFO kernel="),
        format!("{vm}| BH-INFO block "),
    );
    let mut boots: Vec<Vec<String>> = Vec::new();
    for l in console.lines() {
        if l.contains(&kernel) {
            boots.push(Vec::new());
        } else if let (Some(i), Some(b)) = (l.find(&block), boots.last_mut()) {
            b.push(l[i + block.len()..].trim().to_string());
        }
    }
    boots
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
        if let Err(w) = chain_end(console, &story(vm)) {
            return Some(format!("{vm}: missing (in order): {w:?}"));
        }
        let want = vec![format!("vda sectors={PART_SECTORS}")];
        if let Some(b) = disks_per_boot(console, vm).iter().find(|b| **b != want) {
            return Some(format!(
                "{vm}: a boot saw disks {b:?}, not exactly {want:?}"
            ));
        }
    }
    None
}

/// The first byte offset where `after` differs from `before` outside
/// `[lo, hi)` (the one range allowed to change), if any.
#[cfg_attr(not(microkit_sdk), allow(dead_code))]
fn changed_outside(before: &[u8], after: &[u8], lo: usize, hi: usize) -> Option<usize> {
    if before.len() != after.len() {
        return Some(before.len().min(after.len()));
    }
    (0..before.len()).find(|&i| (i < lo || i >= hi) && before[i] != after[i])
}

#[test]
fn only_the_allowed_range_may_change() {
    let a = [0u8; 16];
    let mut b = a;
    b[4] = 1;
    assert_eq!(changed_outside(&a, &b, 4, 8), None);
    assert_eq!(changed_outside(&a, &b, 5, 8), Some(4));
    assert_eq!(changed_outside(&a, &b[..8], 0, 16), Some(8));
}

/// The MAPS section that lets VMM `vm` find its blk hop by name
/// (`blk_<vm>_*` at the vaddrs of linux2.system).
fn vmm_config(vm: &str) -> Vec<u8> {
    use bulkhead_runtime::maps::{encode_entry, ENTRY_BYTES, MAPS_SECTION, MAPS_VERSION};
    let parts = [
        ("req", 0x7000_0000u64, 0x1000u64, "rw"),
        ("resp", 0x7000_1000, 0x1000, "rw"),
        ("out", 0x7020_0000, 0x20_0000, "rw"),
        ("in", 0x7040_0000, 0x20_0000, "r"),
    ];
    let mut maps = Vec::new();
    maps.extend_from_slice(&u32::try_from(parts.len()).expect("four maps").to_le_bytes());
    maps.extend_from_slice(&0u32.to_le_bytes());
    for (part, vaddr, size, perms) in parts {
        let mut e = [0u8; ENTRY_BYTES];
        assert!(encode_entry(
            &mut e,
            &format!("blk_{vm}_{part}"),
            vaddr,
            size,
            perms,
            true
        ));
        maps.extend_from_slice(&e);
    }
    bulkhead_config::ConfigBuilder::new(&format!("{vm}_vmm"))
        .section(MAPS_SECTION, MAPS_VERSION, &maps)
        .build()
        .expect("config region")
}

/// blk_virt's configuration: driver on channel 0 (hop at 0x6200_0000, 2 MiB
/// data regions), cluster on channel 1 (hop 0x6280_0000, read-only),
/// infotainment on channel 2 (hop 0x6300_0000); each its partition, no
/// budget.
fn blk_virt_config(parts: &[drv_host_blk_file::gpt::Placed]) -> Vec<u8> {
    use bulkhead_virt_blk_pd::config::{HOPS, POLICY, VERSION};
    let mut hops = bulkhead_config::SectionWriter::new();
    hops.u32(0).u32(2).u64(0x6200_0000).u64(0x20_0000);
    hops.u32(1).u32(0).u64(0x6280_0000);
    hops.u32(2).u32(1).u64(0x6300_0000);
    let mut policy = bulkhead_config::SectionWriter::new();
    policy.u32(2).u32(0);
    for ((channel, flags), p) in [(1u32, 1u32), (2, 0)].into_iter().zip(parts) {
        policy
            .u32(channel)
            .u32(flags)
            .u64(p.first * 512)
            .u64(p.sectors * 512);
        policy.u32(0).u32(0).u64(0);
    }
    bulkhead_config::ConfigBuilder::new("blk_virt")
        .section(HOPS, VERSION, &hops.into_bytes())
        .section(POLICY, VERSION, &policy.into_bytes())
        .build()
        .expect("config region")
}

/// The partitions, cluster's first.
fn partitions() -> Vec<drv_host_blk_file::gpt::PartSpec> {
    GUESTS
        .iter()
        .map(|(vm, _)| drv_host_blk_file::gpt::PartSpec {
            name: (*vm).into(),
            sectors: PART_SECTORS,
        })
        .collect()
}

#[test]
fn the_configurations_are_what_the_pds_read() {
    for (vm, _) in GUESTS {
        let bytes = vmm_config(vm);
        let name = format!("{vm}_vmm");
        let region = bulkhead_config::ConfigRegion::parse(&bytes, &name).expect("parses");
        let maps = bulkhead_runtime::maps::MapTable::from_config(&region).expect("maps");
        let req = maps.by_name(&format!("blk_{vm}_req")).expect("req");
        assert_eq!(req.vaddr, 0x7000_0000);
        assert!(bytes.len() <= 0x1000);
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("linux2-config");
    std::fs::create_dir_all(&dir).unwrap();
    let parts =
        drv_host_blk_file::gpt::build(&dir.join("disk.img"), DISK_SECTORS, &partitions()).unwrap();
    let bytes = blk_virt_config(&parts);
    let region = bulkhead_config::ConfigRegion::parse(&bytes, "blk_virt").expect("parses");
    let cfg = bulkhead_virt_blk_pd::config::VirtConfig::parse(&region).expect("blk_virt reads it");
    let c = cfg.clients();
    assert_eq!((c[0].channel, c[0].hop), (1, 0x6280_0000));
    assert!(c[0].policy.read_only && !c[1].policy.read_only);
    assert_eq!(c[1].policy.size, PART_SECTORS * 512);
    let sys = std::fs::read_to_string(root().join("tests/sel4/systems/linux2.system")).unwrap();
    for (vm, hop) in [("cluster", "0x6280_0000"), ("infotainment", "0x6300_0000")] {
        for needle in [
            format!("<map mr=\"blk_{vm}_req\" vaddr=\"{hop}\""),
            format!("<map mr=\"blk_{vm}_req\" vaddr=\"0x7000_0000\""),
            format!("<map mr=\"blk_{vm}_in\" vaddr=\"0x7040_0000\" perms=\"r\""),
        ] {
            assert!(sys.contains(&needle), "linux2.system lacks {needle}");
        }
    }
}

#[test]
fn the_tree_gets_only_the_extra_arguments() {
    let dts = "/ {\n\tchosen {\n\t\tbootargs = \"console=hvc0\";\n\t};\n\tpsci {\n\t\tmethod = \"smc\";\n\t};\n};\n";
    let out = guest_dts(dts, " bh.boots=2").unwrap();
    assert_eq!(out, dts.replace("hvc0\"", "hvc0 bh.boots=2\""));
    assert_eq!(guest_dts(dts, "").unwrap(), dts);
    let named = dts.replace("bootargs", "linux,initrd-start = <0 1>;\n\t\tbootargs");
    assert!(guest_dts(&named, "").is_err(), "the VMM names the initrd");
    assert!(guest_dts(&dts.replace("smc", "hvc"), "").is_err());
    assert!(guest_dts("/ { };", "").is_err());
}

#[test]
fn the_verdict_wants_both_shells_and_no_fault() {
    let mut good = String::new();
    for (vm, _) in GUESTS {
        for l in story(vm) {
            good.push_str(&l);
            good.push('\n');
        }
    }
    assert_eq!(verdict(&good), None);
    let two_disks = good.replacen(
        "cluster| BULKHEAD",
        "cluster| BH-INFO block vdb sectors=8\ncluster| BULKHEAD",
        1,
    );
    assert!(verdict(&two_disks).unwrap().contains("exactly"));
    let small = good.replacen("sectors=16384", "sectors=16383", 1);
    assert!(verdict(&small).is_some());
    let no_readback = good.replace("read OK boot-1", "read NONE");
    assert!(verdict(&no_readback).unwrap().contains("infotainment"));
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
            for c in [
                0u32,
                u32::try_from(RAM_BASE).unwrap(),
                0,
                u32::try_from(ram).unwrap(),
            ] {
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
        let dir = root().join(out);
        // The path linux2.qemu-args names.
        let img = dir.join("disk.img");
        let parts =
            drv_host_blk_file::gpt::build(&img, DISK_SECTORS, &partitions()).expect("GPT image");
        // Mark every partition byte so the comparison sees any write.
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
            for p in &parts {
                let fill = vec![0x5a; usize::try_from(p.sectors * 512).unwrap()];
                f.write_all_at(&fill, p.first * 512).unwrap();
            }
        }
        let before = std::fs::read(&img).unwrap();
        std::fs::write(dir.join("blk_virt_config.bin"), blk_virt_config(&parts)).unwrap();
        for (vm, _) in GUESTS {
            std::fs::write(dir.join(format!("{vm}_vmm_config.bin")), vmm_config(vm)).unwrap();
        }
        let (console, times) = with_sdk::boot("tests/sel4/systems/linux2.system", out, &verdict);
        if let Some(why) = verdict(&console) {
            panic!("linux2.system: {why}; console:\n{console}");
        }
        // The storage story as it happened (VMM lines may be cut into by a
        // higher-priority PD's line, so they are shown, not parsed).
        for l in console.lines().filter(|l| {
            [
                "BH-BLK",
                "BH-AUTO",
                "BH-INFO block",
                "_vmm: blk:",
                "guest reset",
            ]
            .iter()
            .any(|m| l.contains(m))
        }) {
            println!("linux2: {}", l.trim_end());
        }
        for (what, t) in times {
            println!(
                "linux2: {what} {:.1} s after the first loader line",
                t.as_secs_f64()
            );
        }
        let after = std::fs::read(&img).unwrap();
        let info = &parts[1];
        let (lo, hi) = (
            usize::try_from(info.first * 512).unwrap(),
            usize::try_from((info.first + info.sectors) * 512).unwrap(),
        );
        if let Some(at) = changed_outside(&before, &after, lo, hi) {
            panic!("disk byte {at:#x} outside infotainment's partition [{lo:#x}, {hi:#x}) changed");
        }
        assert!(
            after[lo..hi].windows(7).any(|w| w == b"boot-2\n"),
            "infotainment's partition lacks the second boot's token"
        );
    }
}

#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{guest_dts, root, shell_chain, BOOT_TIMEOUT, GUESTS, INFOTAINMENT_ARGS};
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
    // Test set-up: a failure here is the test's failure, with its message.
    #[allow(clippy::unwrap_used, clippy::panic)]
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
        for (vm, _) in GUESTS {
            let composed = root.join(format!("system/automotive/qemu_virt_aarch64/{vm}.dtb"));
            let dts = String::from_utf8(dtc(&["-q", "-I", "dtb", "-O", "dts"], &composed)).unwrap();
            let extra = if vm == "infotainment" {
                INFOTAINMENT_ARGS
            } else {
                ""
            };
            let adapted = guest_dts(&dts, extra).unwrap_or_else(|e| panic!("{vm}: {e}"));
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
    ) -> (String, Vec<(String, Duration)>) {
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
                    let marks = [
                        ("first READY", format!("{vm}| BULKHEAD-GUEST-READY")),
                        ("at its shell", shell.last().expect("a chain").clone()),
                    ];
                    for (what, mark) in marks {
                        let what = format!("{vm} {what}");
                        if !times.iter().any(|(w, _)| *w == what) && text.contains(mark.as_str()) {
                            times.push((what, t0.elapsed()));
                        }
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
