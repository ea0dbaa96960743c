//! seL4 storage tests on QEMU `virt` with QEMU's `virtio-blk-device` as the
//! disk (a modern virtio-mmio transport, slot 31), driven by the
//! `virtio_blk_driver` PD (`drivers/virtio-blk-mmio`).
//!
//! - `storage-driver.system`: one `blk_client` directly on the driver hop
//!   writes its pattern over the whole disk, flushes, reads it all back and
//!   compares; then the disk image on the host must hold exactly that
//!   pattern in every sector.
//!
//! Each test builds its disk image under `build/storage/` (the path the
//! system's `.qemu-args` sidecar names), packs into its own
//! `SDK_BUILD_DIR`, boots, waits for its lines (or a failure line), stops
//! QEMU, and then reads the image file.
//!
//! Without `MICROKIT_SDK` at build time they are reported as ignored with a
//! `SKIPPED:` reason (see build.rs and boot.rs).

use std::path::PathBuf;
use std::time::Duration;

use bulkhead_sel4_blk_pds::{pattern_byte, seed, SECTOR};

/// Fragments no console line may contain: a PD fault, a kernel complaint, a
/// client or the driver giving up.
const FORBIDDEN: &[&str] = &[
    "MON|ERROR",
    "seL4(CPU",
    "FAILED",
    "not started",
    "device error",
    "PANIC",
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

/// What only runs with an SDK.
#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, verdict, BOOT_TIMEOUT};
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    pub fn sdk() -> String {
        std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too")
    }

    /// Packs `system` into `out` (relative to the repo root), boots it on
    /// `qemu_virt_aarch64`, and returns the console once `verdict` is
    /// satisfied, a forbidden line appeared, QEMU ended, or the timeout
    /// passed. QEMU is stopped before this returns, so the disk image is
    /// complete on the host.
    pub fn boot(system: &str, out: &str, want: &[String]) -> String {
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
            match verdict(&text, want) {
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
        let want: Vec<String> = [
            format!("virtio_blk_driver: transport 7: {SECTORS} sectors"),
            format!("blk_client_a: partition of {SECTORS} sectors"),
            format!("blk_client_a: wrote, flushed and verified {SECTORS} sectors"),
            "blk_client_a: done".to_string(),
        ]
        .into();
        let console = with_sdk::boot(
            "tests/sel4/systems/storage-driver.system",
            "build/storage/driver",
            &want,
        );
        if let Some(v) = verdict(&console, &want) {
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
