//! seL4 storage tests on QEMU `virt` with QEMU's `virtio-blk-device` as the
//! disk (a modern virtio-mmio transport, slot 31), driven by the
//! `virtio_blk_driver` PD (`drivers/virtio-blk-mmio`).
//!
//! - `storage-driver.system`: one `blk_client` directly on the driver hop
//!   writes its pattern over the whole disk, flushes, reads it all back and
//!   compares, zeroes its last sector (WRITE_ZEROES), reads zeroes there
//!   and writes the pattern back; then the disk image on the host must hold
//!   exactly that pattern in every sector.
//!
//! - `storage.system`: the driver, `blk_virt` and two clients on a GPT
//!   disk with partitions `client_a` and `client_b` (1 MiB each). Each
//!   client writes its pattern over its whole partition, flushes, reads it
//!   back and compares (and the write-zeroes round trip above);
//!   `blk_client_b` also writes and reads one sector past
//!   its partition and must get IOERR for both. Then, on the host, each
//!   partition must hold exactly its client's pattern, and every other byte
//!   of the image (GPT, gaps, the rest of the disk) must be unchanged.
//!
//! Each test builds its disk image under `build/storage/` (the path the
//! system's `.qemu-args` sidecar names), packs into its own
//! `SDK_BUILD_DIR`, boots, waits for its lines (or a failure line), stops
//! QEMU, and then reads the image file.
//!
//! Without `MICROKIT_SDK` at build time they are reported as ignored with a
//! `SKIPPED:` reason (see build.rs and boot.rs).

// Host-side offsets into disk images of a few MiB.
#![allow(clippy::cast_possible_truncation)]

use std::path::PathBuf;
use std::time::Duration;

use bulkhead_sel4_blk_pds::{pattern_byte, seed, SECTOR};
#[cfg_attr(not(microkit_sdk), allow(unused_imports))]
use drv_host_blk_file::gpt::{self, PartSpec, Placed};

/// Fragments no console line may contain: a PD fault, a kernel complaint, a
/// client or the driver giving up.
const FORBIDDEN: &[&str] = &[
    "MON|ERROR",
    "seL4(CPU",
    "FAILED",
    "not started",
    "device error",
    "PANIC",
    "refused",
    "no configuration region",
    "configuration refused",
];

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What is wrong with `console`: a forbidden line, or the first of `want`
/// (in order) that is missing. `None` when all is there.
fn verdict(console: &str, want: &[String]) -> Option<String> {
    if let Some((f, l)) = console
        .lines()
        .find_map(|l| FORBIDDEN.iter().find(|f| l.contains(**f)).map(|f| (f, l)))
    {
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

/// [`verdict`] per PD. PDs print a character per system call, so a
/// higher-priority PD's line can land in the middle of a lower one's (seen
/// on QEMU), never the other way round. `pds` lists (name, lines it must
/// print in order) from the highest priority down; each PD's lines are
/// looked for in the console with every higher PD's lines taken out.
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

#[test]
fn verdict_and_pattern_checks_can_fail() {
    let want = vec!["a: one".to_string(), "a: two".to_string()];
    assert_eq!(verdict("a: one\na: two\n", &want), None);
    assert!(verdict("a: two\na: one\n", &want).is_some(), "order");
    assert!(verdict("a: one\nb: FAILED: x\na: two\n", &want).is_some());
    // b (lower priority) was interrupted mid-line by a.
    let torn = "b: paa: one\nrtition\na: two\nb: done\n";
    let pds = [
        ("a", want.clone()),
        ("b", vec!["b: partition".to_string(), "b: done".to_string()]),
    ];
    assert_eq!(verdict_by_priority(torn, &pds), None);
    assert!(verdict(torn, &pds[1].1).is_some(), "torn without stripping");
    let missing = "b: partition\na: one\n";
    assert!(verdict_by_priority(missing, &pds).is_some());
    let mut img = vec![0u8; 4 * SECTOR];
    let s = seed("c");
    for k in 0..2usize {
        for i in 0..SECTOR {
            img[(1 + k) * SECTOR + i] = pattern_byte(s, k as u64, i);
        }
    }
    assert_eq!(first_foreign_sector(&img, 1, 2, "c"), None);
    assert_eq!(first_foreign_sector(&img, 1, 3, "c"), Some(2));
    assert_eq!(first_foreign_sector(&img, 1, 2, "d"), Some(0));
    img[2 * SECTOR + 7] ^= 1;
    assert_eq!(first_foreign_sector(&img, 1, 2, "c"), Some(1));
}

#[test]
fn storage_systems_pass_bulkhead_check_for_qemu_virt_aarch64() {
    for file in ["storage-driver.system", "storage.system"] {
        let path = root().join("tests/sel4/systems").join(file);
        let source = std::fs::read_to_string(&path).expect("system file");
        let opts = bulkhead_sdf::CheckOptions {
            board: bulkhead_boards::board("qemu_virt_aarch64"),
            ..Default::default()
        };
        let report = bulkhead_sdf::check_source(&source, file, &opts);
        assert!(report.is_valid(), "{}", report.render());
        assert_eq!(report.warning_count(), 0, "{}", report.render());
    }
}

/// What only runs with an SDK.
#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, BOOT_TIMEOUT};
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    pub fn sdk() -> String {
        std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too")
    }

    /// Packs `system` into `out` (relative to the repo root), boots it on
    /// `qemu_virt_aarch64`, and returns the console once `verdict` says
    /// `None` (all there) or a forbidden line appeared, QEMU ended, or the
    /// timeout passed. QEMU is stopped before this returns, so the disk
    /// image is complete on the host.
    pub fn boot_until(system: &str, out: &str, verdict: &dyn Fn(&str) -> Option<String>) -> String {
        let mut child = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args(["qemu", &sdk(), "qemu_virt_aarch64", "debug", system])
            .env("SDK_BUILD_DIR", out)
            .env_remove("PD_PACKAGES")
            .env_remove("QEMU_EXTRA_ARGS")
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
        loop {
            match verdict(&text) {
                None => break,
                Some(v) if v.starts_with("forbidden") => break,
                Some(_) => {}
            }
            if Instant::now() >= deadline {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // sdk.sh `exec`s QEMU, so this is QEMU's pid; wait so the image
        // file is closed before the caller reads it.
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
fn virtio_blk_driver_serves_a_client_on_qemu() {
    #[cfg(microkit_sdk)]
    {
        // 2 MiB of zeros: the client's "partition" is the whole disk.
        const SECTORS: u64 = 4096;
        let img = root().join("build/storage/storage-driver.img");
        std::fs::create_dir_all(img.parent().expect("parent")).expect("mkdir");
        let f = std::fs::File::create(&img).expect("create image");
        f.set_len(SECTORS * SECTOR as u64).expect("size image");
        drop(f);
        // Completions arrive by interrupt (QEMU completes block requests
        // on its I/O threads), so the driver must log its first one.
        let pds = [
            (
                "virtio_blk_driver",
                vec![
                    format!("virtio_blk_driver: transport 7: {SECTORS} sectors"),
                    "virtio_blk_driver: first interrupt".to_string(),
                ],
            ),
            (
                "blk_client_a",
                vec![
                    format!("blk_client_a: partition of {SECTORS} sectors"),
                    format!("blk_client_a: wrote, flushed and verified {SECTORS} sectors"),
                    format!(
                        "blk_client_a: write-zeroes of sector {} read back as zeroes",
                        SECTORS - 1
                    ),
                    "blk_client_a: done".to_string(),
                ],
            ),
        ];
        let done = |c: &str| verdict_by_priority(c, &pds);
        let console = with_sdk::boot_until(
            "tests/sel4/systems/storage-driver.system",
            "build/storage/driver",
            &done,
        );
        if let Some(v) = done(&console) {
            panic!("{v}; console:\n{console}");
        }
        let bytes = std::fs::read(&img).expect("read image");
        assert_eq!(bytes.len() as u64, SECTORS * SECTOR as u64);
        assert_eq!(
            first_foreign_sector(&bytes, 0, SECTORS, "blk_client_a"),
            None,
            "the disk must hold the client's pattern in every sector"
        );
    }
}

/// The disk of the two-client test: 8 MiB, two 1 MiB partitions.
const DISK_SECTORS: u64 = 8 * 2048;
/// Sectors of each client's partition.
const PART_SECTORS: u64 = 2048;

/// blk_virt's configuration region for `storage.system`: compose's hops
/// section (driver channel 0, the `drv` hop at 0x6200_0000 with 2 MiB data
/// regions, client a on channel 1 at 0x6280_0000, client b on channel 2 at
/// 0x6300_0000) and storage policy (each client's partition in bytes,
/// writable, no budget).
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

#[test]
fn blk_virt_config_is_what_blk_virt_reads() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("storage-config");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let parts = gpt::build(
        &dir.join("disk.img"),
        DISK_SECTORS,
        &[
            PartSpec {
                name: "client_a".into(),
                sectors: PART_SECTORS,
            },
            PartSpec {
                name: "client_b".into(),
                sectors: PART_SECTORS,
            },
        ],
    )
    .expect("GPT image");
    let bytes = blk_virt_config(&parts);
    let region = bulkhead_config::ConfigRegion::parse(&bytes, "blk_virt").expect("parses");
    let cfg = bulkhead_virt_blk_pd::config::VirtConfig::parse(&region).expect("blk_virt reads it");
    assert_eq!((cfg.driver_channel, cfg.driver_hop), (0, 0x6200_0000));
    let c = cfg.clients();
    assert_eq!(c.len(), 2);
    assert_eq!((c[0].channel, c[0].hop), (1, 0x6280_0000));
    assert_eq!((c[1].channel, c[1].hop), (2, 0x6300_0000));
    assert_eq!(c[0].policy.start, parts[0].first * 512);
    assert_eq!(c[1].policy.size, PART_SECTORS * 512);
    assert!(!c[0].policy.read_only && !c[1].policy.read_only);
    assert!(bytes.len() <= 0x1000, "fits its 4 KiB region");
    // The system file maps what the configuration names.
    let sys = std::fs::read_to_string(root().join("tests/sel4/systems/storage.system"))
        .expect("storage.system");
    for (mr, vaddr) in [
        ("blk_drv_req", "0x6200_0000"),
        ("blk_a_req", "0x6280_0000"),
        ("blk_b_req", "0x6300_0000"),
    ] {
        let needle = format!("<map mr=\"{mr}\" vaddr=\"{vaddr}\"");
        assert!(sys.contains(&needle), "storage.system lacks {needle}");
    }
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn two_clients_share_the_disk_through_blk_virt_on_qemu() {
    #[cfg(microkit_sdk)]
    {
        let img = root().join("build/storage/storage.img");
        let out = "build/storage/virt";
        std::fs::create_dir_all(root().join(out)).expect("mkdir");
        let parts = gpt::build(
            &img,
            DISK_SECTORS,
            &[
                PartSpec {
                    name: "client_a".into(),
                    sectors: PART_SECTORS,
                },
                PartSpec {
                    name: "client_b".into(),
                    sectors: PART_SECTORS,
                },
            ],
        )
        .expect("GPT image");
        // Nothing is random in the image: fill the partitions with a marker
        // so a sector left unwritten is caught, and keep the whole image
        // to compare everything outside them afterwards.
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
        // Highest priority first (see storage.system).
        let pds = [
            (
                "virtio_blk_driver",
                vec![
                    format!("virtio_blk_driver: transport 7: {DISK_SECTORS} sectors"),
                    "virtio_blk_driver: first interrupt".to_string(),
                ],
            ),
            (
                "blk_virt",
                vec![format!(
                    "blk_virt: 2 partition(s) on a {DISK_SECTORS}-sector disk; serving 2 guest(s)"
                )],
            ),
            (
                "blk_client_a",
                vec![
                    format!("blk_client_a: partition of {PART_SECTORS} sectors"),
                    format!("blk_client_a: wrote, flushed and verified {PART_SECTORS} sectors"),
                    format!(
                        "blk_client_a: write-zeroes of sector {} read back as zeroes",
                        PART_SECTORS - 1
                    ),
                    "blk_client_a: done".to_string(),
                ],
            ),
            (
                "blk_client_b",
                vec![
                    format!("blk_client_b: partition of {PART_SECTORS} sectors"),
                    format!("blk_client_b: wrote, flushed and verified {PART_SECTORS} sectors"),
                    format!(
                        "blk_client_b: write-zeroes of sector {} read back as zeroes",
                        PART_SECTORS - 1
                    ),
                    "blk_client_b: write past the partition: IOERR".to_string(),
                    "blk_client_b: read past the partition: IOERR".to_string(),
                    "blk_client_b: done".to_string(),
                ],
            ),
        ];
        let done = |c: &str| verdict_by_priority(c, &pds);
        let console = with_sdk::boot_until("tests/sel4/systems/storage.system", out, &done);
        if let Some(v) = done(&console) {
            panic!("{v}; console:\n{console}");
        }
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
