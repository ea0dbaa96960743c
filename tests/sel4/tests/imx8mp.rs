//! seL4 boot tests on QEMU's `imx8mp-evk` for the i.MX drivers' PDs, with
//! the real virtualisers in front of them:
//!
//! - `console-imx8mp.system`: two `console_client` PDs (as `cluster` and
//!   `infotainment`) -> `serial_virt` -> `imx_uart_driver` on UART2, the
//!   console QEMU gives the test. Every client line must come out of the
//!   UART whole, tagged with its client by `serial_virt`, in each client's
//!   order — including a 150-byte line that crosses ring chunks and the
//!   32-byte TX FIFO (the driver's backpressure path).
//!
//! - `storage-imx8mp.system`: `usdhc_blk_driver` on the SD card QEMU puts
//!   in uSDHC2, `blk_virt` and two `blk_client`s on a GPT card with
//!   partitions `client_a` and `client_b` (`storage.system`'s clients and
//!   configuration, the driver swapped). Each client writes its pattern
//!   over its partition, flushes, reads it back, zeroes and restores its
//!   last sector; `blk_client_b` gets IOERR past its partition. Then, on
//!   the host, each partition of the image holds exactly its client's
//!   pattern and every other sector is unchanged.
//!
//! Without `MICROKIT_SDK` at build time the boot tests are reported as
//! ignored with a `SKIPPED:` reason (see build.rs and boot.rs).

// Host-side offsets into a disk image of a few MiB.
#![allow(clippy::cast_possible_truncation)]

use std::path::PathBuf;
use std::time::Duration;

use bulkhead_sel4_blk_pds::{pattern_byte, seed, SECTOR};
use bulkhead_sel4_console_pds::{long_byte, LINES, LONG};
#[cfg_attr(not(microkit_sdk), allow(unused_imports))]
use drv_host_blk_file::gpt::{self, PartSpec, Placed};

/// Lines no console of these tests may contain.
const FORBIDDEN: &[&str] = &["stopping", "corrupt", "MON|ERROR", "panicked", "no serial_"];

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines the console must show for client PD `pd` tagged `tag`, in
/// order.
fn client_lines(tag: &str, pd: &str) -> Vec<String> {
    let mut v: Vec<String> = (1..=LINES)
        .map(|n| format!("{tag}| {pd}: line {n} of {LINES}"))
        .collect();
    let long: String = (0..LONG).map(|i| char::from(long_byte(i))).collect();
    v.push(format!("{tag}| {pd}: long {long}"));
    v
}

/// The first of `want` not found, in order, among the console's lines.
fn missing_in_order<'w>(want: &'w [String], console: &str) -> Option<&'w str> {
    let mut lines = console.lines().map(|l| l.trim_end_matches('\r'));
    want.iter()
        .find(|w| !lines.any(|l| l == w.as_str()))
        .map(String::as_str)
}

#[test]
fn missing_in_order_needs_whole_lines_in_order() {
    let want = client_lines("cluster", "cluster");
    let mut console: String = want.iter().map(|l| format!("{l}\r\n")).collect();
    assert_eq!(missing_in_order(&want, &console), None);
    // Another client's and the kernel's lines in between are fine.
    console = format!("x\n{}\ninfotainment| y\n{}", want[0], want[1..].join("\n"));
    assert_eq!(missing_in_order(&want, &console), None);
    // Swapped order, a cut line, a byte lost from the long line: missing.
    let swapped = format!("{}\n{}\n{}\n{}", want[1], want[0], want[2], want[3]);
    assert!(missing_in_order(&want, &swapped).is_some());
    let cut = &want[3][..want[3].len() - 1];
    let lost = format!("{}\n{}\n{}\n{cut}", want[0], want[1], want[2]);
    assert_eq!(missing_in_order(&want, &lost), Some(want[3].as_str()));
}

#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, BOOT_TIMEOUT};
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    /// Boots `system` on `imx8mp_evk` (debug config) with `scripts/sdk.sh
    /// qemu` and returns the console once `done` holds or the timeout
    /// passed.
    pub fn boot(system: &str, build_dir: &str, done: &dyn Fn(&str) -> bool) -> String {
        let sdk = std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too");
        let mut child = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args(["qemu", &sdk, "imx8mp_evk", "debug", system])
            // The system's sidecar names the PD packages.
            .env_remove("PD_PACKAGES")
            // Its own output directory: no race with other boot tests.
            .env("SDK_BUILD_DIR", build_dir)
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
        while Instant::now() < deadline && !done(&text) {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // A late fault gets a moment to show.
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

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn imx_uart_driver_prints_both_clients_lines_through_serial_virt_on_imx8mp() {
    let cluster = client_lines("cluster", "cluster");
    let info = client_lines("infotainment", "infotainment");
    let _ = (&cluster, &info, FORBIDDEN);
    #[cfg(microkit_sdk)]
    {
        let console = with_sdk::boot(
            "tests/sel4/systems/console-imx8mp.system",
            "build/sel4-imx8mp/console",
            &|c| missing_in_order(&cluster, c).is_none() && missing_in_order(&info, c).is_none(),
        );
        assert!(
            console.contains("imx_uart_driver: UART2 up"),
            "driver never came up; console:\n{console}"
        );
        for want in [&cluster, &info] {
            let missing = missing_in_order(want, &console);
            assert!(
                missing.is_none(),
                "line {missing:?} never came out of UART2 whole and in order; console:\n{console}"
            );
        }
        let bad = console
            .lines()
            .find(|l| FORBIDDEN.iter().any(|f| l.contains(f)));
        assert!(bad.is_none(), "console has {bad:?}; console:\n{console}");
    }
}

/// Fragments no storage console line may contain: a PD fault, a kernel
/// complaint, a client or the driver giving up.
const FORBIDDEN_STORAGE: &[&str] = &[
    "MON|ERROR",
    "seL4(CPU",
    "FAILED",
    "stopping",
    "card error",
    "PANIC",
    "refused",
    "no configuration region",
    "configuration refused",
];

/// The SD card: 8 MiB (QEMU wants a power-of-two card), two 1 MiB
/// partitions.
const DISK_SECTORS: u64 = 8 * 2048;
/// Sectors of each client's partition.
const PART_SECTORS: u64 = 2048;

/// What is wrong with `console`: a forbidden line, or the first of `want`
/// missing (in order).
fn verdict(console: &str, want: &[String]) -> Option<String> {
    if let Some((f, l)) = console.lines().find_map(|l| {
        FORBIDDEN_STORAGE
            .iter()
            .find(|f| l.contains(**f))
            .map(|f| (f, l))
    }) {
        return Some(format!("forbidden {f:?} in line {l:?}"));
    }
    let mut at = 0;
    for w in want {
        match console[at..].find(w.as_str()) {
            Some(i) => at += i + w.len(),
            None => return Some(format!("missing (in order): {w:?}")),
        }
    }
    None
}

/// `console` without the lines of PD `pd` (each from `"<pd>: "` to its
/// newline).
fn without_lines_of(console: &str, pd: &str) -> String {
    let tag = format!("{pd}: ");
    let mut out = String::with_capacity(console.len());
    let mut rest = console;
    while let Some(i) = rest.find(&tag) {
        out.push_str(&rest[..i]);
        rest = match rest[i..].find('\n') {
            Some(n) => &rest[i + n + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// [`verdict`] per PD, highest priority first: a higher-priority PD's
/// line can land inside a lower one's (PDs print a character per system
/// call), so each PD's lines are looked for with the higher ones' removed.
fn verdict_by_priority(console: &str, pds: &[(&str, Vec<String>)]) -> Option<String> {
    let mut text = console.to_string();
    for (pd, want) in pds {
        if let Some(v) = verdict(&text, want) {
            return Some(format!("{pd}: {v}"));
        }
        text = without_lines_of(&text, pd);
    }
    None
}

/// The first sector of `img[first..first + sectors]` (partition-relative
/// index) that does not hold `name`'s pattern.
fn first_foreign_sector(img: &[u8], first: u64, sectors: u64, name: &str) -> Option<u64> {
    let s = seed(name);
    (0..sectors).find(|&k| {
        let Ok(at) = usize::try_from((first + k) * SECTOR as u64) else {
            return true;
        };
        img.get(at..at + SECTOR).is_none_or(|sec| {
            sec.iter()
                .enumerate()
                .any(|(i, &b)| b != pattern_byte(s, k, i))
        })
    })
}

/// blk_virt's configuration region for `storage-imx8mp.system`, as compose
/// writes it: the hops section (driver channel 0, the `drv` hop at
/// 0x6200_0000 with 2 MiB data regions, client a on channel 1 at
/// 0x6280_0000, client b on channel 2 at 0x6300_0000) and the storage
/// policy (each client's partition in bytes, writable, no budget).
fn blk_virt_config(parts: &[Placed]) -> Vec<u8> {
    use bulkhead_virt_blk_pd::config::{HOPS, POLICY, VERSION};
    let mut hops = bulkhead_config::SectionWriter::new();
    hops.u32(0).u32(2).u64(0x6200_0000).u64(0x20_0000);
    hops.u32(1).u32(0).u64(0x6280_0000);
    hops.u32(2).u32(1).u64(0x6300_0000);
    let mut policy = bulkhead_config::SectionWriter::new();
    policy.u32(2).u32(0);
    for (channel, p) in [1u32, 2].into_iter().zip(parts) {
        let start = p.first * SECTOR as u64;
        let size = p.sectors * SECTOR as u64;
        policy.u32(channel).u32(0).u64(start).u64(size);
        policy.u32(0).u32(0).u64(0);
    }
    bulkhead_config::ConfigBuilder::new("blk_virt")
        .section(HOPS, VERSION, &hops.into_bytes())
        .section(POLICY, VERSION, &policy.into_bytes())
        .build()
        .expect("config region")
}

fn parts_spec() -> [PartSpec; 2] {
    ["client_a", "client_b"].map(|name| PartSpec {
        name: name.into(),
        sectors: PART_SECTORS,
    })
}

#[test]
fn storage_imx8mp_config_and_system_agree() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage-imx8mp-config");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let parts = gpt::build(&dir.join("sd.img"), DISK_SECTORS, &parts_spec()).expect("GPT image");
    let bytes = blk_virt_config(&parts);
    let region = bulkhead_config::ConfigRegion::parse(&bytes, "blk_virt").expect("parses");
    let cfg = bulkhead_virt_blk_pd::config::VirtConfig::parse(&region).expect("blk_virt reads it");
    assert_eq!((cfg.driver_channel, cfg.driver_hop), (0, 0x6200_0000));
    let c = cfg.clients();
    assert_eq!((c[0].channel, c[0].hop), (1, 0x6280_0000));
    assert_eq!((c[1].channel, c[1].hop), (2, 0x6300_0000));
    assert_eq!(c[1].policy.start, parts[1].first * 512);
    let sys = std::fs::read_to_string(root().join("tests/sel4/systems/storage-imx8mp.system"))
        .expect("storage-imx8mp.system");
    for needle in [
        "<map mr=\"blk_drv_req\" vaddr=\"0x6200_0000\"",
        "<map mr=\"blk_a_req\" vaddr=\"0x6280_0000\"",
        "<map mr=\"blk_b_req\" vaddr=\"0x6300_0000\"",
        "<memory_region name=\"usdhc2_regs\" size=\"0x1_0000\" phys_addr=\"0x30b5_0000\" />",
    ] {
        assert!(sys.contains(needle), "storage-imx8mp.system lacks {needle}");
    }
    // The card is the image the test writes, on uSDHC2 (sd-bus 1).
    let args = std::fs::read_to_string(root().join("tests/sel4/systems/storage-imx8mp.qemu-args"))
        .expect("qemu args");
    assert!(args.contains("if=sd,bus=1,") && args.contains("file=build/storage-imx8mp/sd.img"));
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn usdhc_blk_driver_serves_two_clients_through_blk_virt_on_imx8mp() {
    let _ = (first_foreign_sector, verdict_by_priority);
    #[cfg(microkit_sdk)]
    {
        let img = root().join("build/storage-imx8mp/sd.img");
        let out = "build/storage-imx8mp/virt";
        std::fs::create_dir_all(root().join(out)).expect("mkdir");
        let parts = gpt::build(&img, DISK_SECTORS, &parts_spec()).expect("GPT image");
        // A marker in the partitions, so a sector left unwritten shows.
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&img)
                .expect("open image");
            for p in &parts {
                let fill = vec![0x5a; (p.sectors * SECTOR as u64) as usize];
                f.write_all_at(&fill, p.first * SECTOR as u64)
                    .expect("fill partition");
            }
        }
        let before = std::fs::read(&img).expect("read image");
        std::fs::write(
            root().join(out).join("blk_virt_config.bin"),
            blk_virt_config(&parts),
        )
        .expect("write blk_virt config");
        let client = |name: &str, b: bool| {
            let mut v = vec![
                format!("{name}: partition of {PART_SECTORS} sectors"),
                format!("{name}: wrote, flushed and verified {PART_SECTORS} sectors"),
                format!(
                    "{name}: write-zeroes of sector {} read back as zeroes",
                    PART_SECTORS - 1
                ),
            ];
            if b {
                v.push(format!("{name}: write past the partition: IOERR"));
                v.push(format!("{name}: read past the partition: IOERR"));
            }
            v.push(format!("{name}: done"));
            v
        };
        let pds = [
            (
                "usdhc_blk_driver",
                vec![format!("usdhc_blk_driver: card rca")],
            ),
            (
                "blk_virt",
                vec![format!(
                    "blk_virt: 2 partition(s) on a {DISK_SECTORS}-sector disk; serving 2 guest(s)"
                )],
            ),
            ("blk_client_a", client("blk_client_a", false)),
            ("blk_client_b", client("blk_client_b", true)),
        ];
        let done = |c: &str| verdict_by_priority(c, &pds);
        let console = with_sdk::boot("tests/sel4/systems/storage-imx8mp.system", out, &|c| {
            done(c).is_none_or(|v| v.contains("forbidden"))
        });
        if let Some(v) = done(&console) {
            panic!("{v}; console:\n{console}");
        }
        assert!(
            console.contains(&format!("{DISK_SECTORS} sectors")),
            "the driver must see the whole card; console:\n{console}"
        );
        let after = std::fs::read(&img).expect("read image");
        assert_eq!(after.len(), before.len());
        for (p, name) in parts.iter().zip(["blk_client_a", "blk_client_b"]) {
            assert_eq!(
                first_foreign_sector(&after, p.first, p.sectors, name),
                None,
                "partition {} must hold exactly {name}'s pattern",
                p.name
            );
        }
        let inside = |sector: u64| {
            parts
                .iter()
                .any(|p| sector >= p.first && sector < p.first + p.sectors)
        };
        let changed: Vec<u64> = (0..DISK_SECTORS)
            .filter(|&s| !inside(s))
            .filter(|&s| {
                let r = (s as usize) * SECTOR..(s as usize + 1) * SECTOR;
                before[r.clone()] != after[r]
            })
            .collect();
        assert!(
            changed.is_empty(),
            "sectors outside the partitions changed: {changed:?}"
        );
    }
}
