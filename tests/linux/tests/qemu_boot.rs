//! Boots the Debian guest under plain QEMU `virt` (TCG) with the composed
//! device tree of the `cluster` guest instead of QEMU's own, and QEMU's
//! virtio-mmio transports standing in for the VMM's windows: checks the
//! image and that device tree together, without seL4.
//!
//! The guest must reach its shell on hvc0 (virtio-console on window 0),
//! see exactly its own disk (virtio-blk on window 1; a second disk on a
//! transport its device tree does not list must stay invisible), keep a
//! file across a reboot, run `bh-dd`, survive `bh-fault` (a data abort
//! kills only the reading process) and panic on `bh-crash`. Prints — and writes to
//! `build/guest/qemu-baseline.txt` — the time from QEMU start to the shell
//! and the dd throughput: the plain-QEMU baseline for the seL4 path.

// Helpers outside #[test] fns fail the test the same way a test does.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bulkhead_linux_tests::dt::GuestDt;
use bulkhead_linux_tests::qemu::Console;
use bulkhead_linux_tests::report::{Dd, Info};
use bulkhead_linux_tests::{repo_root, GuestImages};

const BOOT: Duration = Duration::from_secs(120);
const CMD: Duration = Duration::from_secs(60);
const DISK_MIB: u64 = 256;
const INTRUDER_MIB: u64 = 16;
const DD_MIB: u64 = 64;

/// One QEMU boot at a time: they share two cores, and the figures the
/// cluster test records should not include a neighbour's boot.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Sparse disk images that are removed with the value.
struct Disks(Vec<PathBuf>);

impl Drop for Disks {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A guest booted until its READY line, with what it reported.
struct Booted {
    console: Console,
    images: GuestImages,
    dt: GuestDt,
    ram_mib: u64,
    /// QEMU start to BULKHEAD-GUEST-READY.
    ready: Duration,
    _disks: Disks,
}

/// Boots `guest` (its composed `qemu_virt_aarch64` device tree) with a
/// virtio-console on window 0, a `DISK_MIB` disk on window 1 and an
/// `INTRUDER_MIB` disk on a QEMU transport the tree does not list, and
/// checks what the guest saw: its shell on hvc0, exactly those two virtio
/// devices and exactly its own disk. `extra_args` are appended to the
/// device tree's command line.
fn boot(guest: &str, extra_args: &str) -> Booted {
    let images = bulkhead_linux_tests::build_guest_images().unwrap_or_else(|e| panic!("{e}"));
    let dtb_path = repo_root().join(format!("system/automotive/qemu_virt_aarch64/{guest}.dtb"));
    let g = GuestDt::parse(&std::fs::read(&dtb_path).unwrap()).unwrap();
    // QEMU virt's RAM starts at 0x4000_0000 too; -m must equal the guest's
    // RAM, since QEMU rewrites the memory node from -m.
    assert_eq!(
        g.ram.0, 0x4000_0000,
        "guest RAM base differs from QEMU virt's"
    );
    let ram_mib = g.ram.1 >> 20;
    // Window c is class c (tools/compose/src/dt.rs): 0 console, 1 block.
    let transport = |c: usize| {
        let w = g
            .virtio
            .get(c)
            .unwrap_or_else(|| panic!("{guest} has no window {c}"));
        w.qemu_virt_transport()
            .unwrap_or_else(|| panic!("window {w:x?} is not one of QEMU virt's transports"))
    };
    let (con, blk) = (transport(0), transport(1));
    let intruder = (0..32u64)
        .find(|n| g.virtio.iter().all(|w| w.qemu_virt_transport() != Some(*n)))
        .unwrap();

    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let disk = tmp.join(format!("{guest}-disk-{}.img", std::process::id()));
    let other = tmp.join(format!("{guest}-intruder-{}.img", std::process::id()));
    for (p, mib) in [(&disk, DISK_MIB), (&other, INTRUDER_MIB)] {
        std::fs::File::create(p)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
    }
    let disks = Disks(vec![disk.clone(), other.clone()]);

    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-machine", g.qemu_virt_machine()])
        .args(["-cpu", "cortex-a53", "-smp", "1"])
        .args(["-m", &format!("{ram_mib}M")])
        .args(["-display", "none", "-monitor", "none", "-serial", "none"])
        .args(["-nodefaults", "-no-user-config"])
        .arg("-kernel")
        .arg(&images.image)
        .arg("-initrd")
        .arg(&images.initrd)
        .arg("-dtb")
        .arg(&dtb_path)
        // QEMU writes -append into /chosen/bootargs of the given tree.
        .args(["-append", &format!("{} {extra_args}", g.bootargs)])
        .args(["-chardev", "stdio,id=con,signal=off"])
        .args([
            "-device",
            &format!("virtio-serial-device,bus=virtio-mmio-bus.{con}"),
        ])
        .args(["-device", "virtconsole,chardev=con"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=disk",
            disk.display()
        ))
        .args([
            "-device",
            &format!("virtio-blk-device,drive=disk,bus=virtio-mmio-bus.{blk}"),
        ])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=other",
            other.display()
        ))
        .args([
            "-device",
            &format!("virtio-blk-device,drive=other,bus=virtio-mmio-bus.{intruder}"),
        ]);
    let mut c = Console::spawn(cmd).unwrap();

    let ready = c
        .wait_for("BULKHEAD-GUEST-READY", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    let info = Info::parse(&c.transcript()).unwrap_or_else(|e| panic!("{e}\n{}", c.transcript()));
    assert_eq!(info.kernel, images.version.kernel_release());
    assert_eq!(info.console, "hvc0");
    // The kernel ran on the composed tree, not one of QEMU's making.
    assert!(
        info.model.starts_with(&format!("Bulkhead guest {guest} ")),
        "{info:?}"
    );
    let devices: Vec<_> = info
        .virtio
        .iter()
        .map(|d| (d.id, d.driver.as_str()))
        .collect();
    assert_eq!(
        devices,
        [(3, "virtio_console"), (2, "virtio_blk")],
        "{info:?}"
    );
    assert_eq!(
        info.blocks,
        [("vda".to_string(), (DISK_MIB << 20) / 512)],
        "exactly its own disk"
    );
    assert!(
        !c.transcript().contains("BULKHEAD-GUEST-ERROR"),
        "{}",
        c.transcript()
    );
    Booted {
        console: c,
        images,
        dt: g,
        ram_mib,
        ready,
        _disks: disks,
    }
}

#[cfg_attr(
    not(qemu_aarch64),
    ignore = "SKIPPED: qemu-system-aarch64 not on PATH — the Linux guest is not booted"
)]
#[cfg_attr(
    all(qemu_aarch64, not(linux_guest)),
    ignore = "SKIPPED: BULKHEAD_SKIP_LINUX_GUEST set — the Debian guest is not built"
)]
#[test]
fn cluster_guest_boots_under_plain_qemu_with_its_composed_device_tree() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let b = boot("cluster", "");
    let (mut c, imgs, ram_mib, ready) = (b.console, b.images, b.ram_mib, b.ready);
    let prompt = c.wait_for("guest# ", CMD).unwrap_or_else(|e| panic!("{e}"));
    let token = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| format!("bh{}", d.as_nanos()))
        .unwrap_or_else(|_| "bh-token".into());
    let out = c
        .run(&format!("bh-blk write {token}"), CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains(&format!("BH-BLK write OK {token}")), "{out}");
    let out = c
        .run(&format!("bh-dd {DD_MIB}"), Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    let dd = Dd::parse_all(&out);
    let whats: Vec<_> = dd.iter().map(|d| d.what.as_str()).collect();
    assert_eq!(whats, ["write", "read", "rawwrite", "rawread"], "{out}");
    assert!(
        dd.iter().all(|d| d.bytes == DD_MIB << 20 && d.us > 0),
        "{out}"
    );

    let rebooted = c.elapsed();
    c.send("reboot -f").unwrap_or_else(|e| panic!("{e}"));
    let reboot = c
        .wait_for("BULKHEAD-GUEST-READY", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    c.wait_for("guest# ", CMD).unwrap_or_else(|e| panic!("{e}"));
    let out = c
        .run(&format!("bh-blk check {token}"), CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains(&format!("BH-BLK check OK {token}")), "{out}");

    // A read of a hole in the guest map aborts in the guest and kills only
    // the reader; the shell goes on.
    let out = c.run("bh-fault", CMD).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("BH-FAULT 0x0b000000 abort sig=7"), "{out}");
    // The guest crashes its own kernel on request (for the seL4 test that a
    // crashed guest does not disturb the other).
    c.send("bh-crash").unwrap_or_else(|e| panic!("{e}"));
    c.wait_for("BH-CRASH now", CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    c.wait_for("end Kernel panic", CMD)
        .unwrap_or_else(|e| panic!("{e}"));
    drop(c);

    let mut report = String::new();
    let _ = writeln!(report, "# plain QEMU baseline (scripts/guest-image.sh guest, cluster.dtb, TCG cortex-a53, -m {ram_mib}M)");
    let (kpkg, kver) = imgs.version.kernel_package();
    let _ = writeln!(
        report,
        "kernel={} ({kpkg} {kver})",
        imgs.version.kernel_release()
    );
    // The host is shared: its load says how comparable the figures are.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(report, "host-loadavg={}", load.trim());
    let _ = writeln!(report, "qemu-start-to-ready-s={:.2}", ready.as_secs_f64());
    let _ = writeln!(report, "qemu-start-to-prompt-s={:.2}", prompt.as_secs_f64());
    let _ = writeln!(
        report,
        "reboot-to-ready-s={:.2}",
        (reboot - rebooted).as_secs_f64()
    );
    for d in &dd {
        let _ = writeln!(
            report,
            "dd-{}-MiBps={:.1} ({} MiB, 1 MiB blocks)",
            d.what,
            d.mib_per_s(),
            d.bytes >> 20
        );
    }
    eprint!("{report}");
    let _ = std::fs::write(repo_root().join("build/guest/qemu-baseline.txt"), report);
}

#[cfg_attr(
    not(qemu_aarch64),
    ignore = "SKIPPED: qemu-system-aarch64 not on PATH — the Linux guest is not booted"
)]
#[cfg_attr(
    all(qemu_aarch64, not(linux_guest)),
    ignore = "SKIPPED: BULKHEAD_SKIP_LINUX_GUEST set — the Debian guest is not built"
)]
#[test]
fn infotainment_guest_boots_under_plain_qemu_with_its_composed_device_tree() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Unattended (bin/bh-auto), as a guest without console input is
    // tested on seL4: two boots, the second must find what the first wrote.
    let b = boot("infotainment", "bh.boots=2 bh.fault=1");
    assert!(b.dt.bootargs.contains("console=hvc0"));
    let mut c = b.console;
    let mut expect = |line: &str| c.wait_for(line, BOOT).unwrap_or_else(|e| panic!("{e}"));
    for line in [
        "BH-BLK read NONE",
        "BH-AUTO boot 1 of 2",
        "BH-BLK write OK boot-1",
        "BH-FAULT 0x0b000000 abort sig=7",
        "BH-AUTO reboot",
        "BULKHEAD-GUEST-READY",
        "BH-BLK read OK boot-1",
        "BH-AUTO boot 2 of 2",
        "BH-BLK write OK boot-2",
        "BH-FAULT 0x0b000000 abort sig=7",
        "BH-AUTO done",
    ] {
        expect(line);
    }
    let shell = expect("guest# ");
    eprintln!(
        "infotainment ({} MiB): QEMU start to READY {:.2} s, two unattended boots to the shell {:.2} s",
        b.ram_mib,
        b.ready.as_secs_f64(),
        shell.as_secs_f64()
    );
}
