//! Shared storage end to end on the host board (issue 7): the system
//! `systems/storage.toml` composes (`systems/storage/`), two trapping test
//! guests driving `virtio-drivers`' `VirtIOBlk` through their VMM PDs,
//! `blk_virt` and `blk_driver` — real processes — on two partitions of one
//! GPT disk image built with `drivers/host-blk-file`'s builder; `beta`'s
//! partition is read-only. After each run the image file itself is read
//! and checked. If the host lacks ptrace, a test prints `SKIPPED: <why>`.
//!
//! The runs are serialised (one system at a time: they are timing-bound
//! and the machine is small).

// A panic is how an integration test fails.
#![allow(clippy::panic, clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bulkhead_host::{run_file, HostError, RunOptions, RunOutcome};
use drv_host_blk_file::gpt::{build, PartSpec};

const REGENERATE: &str =
    "bulkhead compose tests/guests/systems/storage.toml -o tests/guests/systems/storage";
/// Disk, partitions (sectors): as `systems/storage.toml` says.
const DISK_SECTORS: u64 = 32768;
const ALPHA: (u64, u64) = (2048, 16384);
const BETA: (u64, u64) = (18432, 2048);
const BLOCK: u64 = 8;

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn systems() -> PathBuf {
    here().join("systems")
}

/// `target/<profile>`: where cargo put this test and the programs.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Builds the PD and guest programs into this target dir.
fn build_programs() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let run = |args: &[&str]| {
            let mut cmd = Command::new(&cargo);
            cmd.current_dir(here().join("../.."))
                .arg("build")
                .args(args)
                .arg("--target-dir")
                .arg(bin_dir().parent().unwrap());
            if bin_dir().file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().unwrap().success(),
                "cargo build {args:?} failed"
            );
        };
        run(&["-p", "bulkhead-vmm-host", "-p", "bulkhead-virt-blk-pd"]);
        run(&["-p", "drv-host-blk-file", "--bin", "blk_driver"]);
        run(&[
            "-p",
            "bulkhead-test-guests",
            "--bin",
            "blk_guest",
            "--bin",
            "blk_reader",
            "--bin",
            "blk_oob",
            "--bin",
            "blk_dying",
            "--bin",
            "blk_writer_long",
        ]);
    });
}

/// The guests' data: byte `i` of sector `s` (relative to the partition)
/// of a guest whose capacity is `tag` (as `src/bin/blk_guest.rs`).
fn pattern(tag: u64, s: u64, i: usize) -> u8 {
    let x = s
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(tag.wrapping_mul(131))
        .wrapping_add(i as u64 * 7);
    (x ^ (x >> 11) ^ (s >> 3)) as u8
}

fn sectors_of(tag: u64, first: u64, n: u64) -> Vec<u8> {
    (first..first + n)
        .flat_map(|s| (0..512).map(move |i| pattern(tag, s, i)))
        .collect()
}

/// The disk image: GPT by the project's builder, `beta` filled with its
/// guest's pattern, `alpha` zero.
fn make_image(path: &Path) -> Vec<u8> {
    let placed = build(
        path,
        DISK_SECTORS,
        &[
            PartSpec {
                name: "alpha".into(),
                sectors: ALPHA.1,
            },
            PartSpec {
                name: "beta".into(),
                sectors: BETA.1,
            },
        ],
    )
    .unwrap();
    let got: Vec<(u64, u64)> = placed.iter().map(|p| (p.first, p.sectors)).collect();
    assert_eq!(
        got,
        [ALPHA, BETA],
        "the builder must place what storage.toml says"
    );
    let mut img = std::fs::read(path).unwrap();
    let at = (BETA.0 * 512) as usize;
    img[at..at + (BETA.1 * 512) as usize].copy_from_slice(&sectors_of(BETA.1, 0, BETA.1));
    std::fs::write(path, &img).unwrap();
    img
}

/// How a test runs the system.
struct Setup<'a> {
    name: &'a str,
    alpha: &'a str,
    beta: &'a str,
    /// Make `blk_driver` a child of `blk_virt` (which restarts it on a
    /// fault).
    driver_child: bool,
    until: Option<&'a str>,
    secs: u64,
}

/// What a run left: its lines and the image file's bytes afterwards
/// (the processes are gone: a power-cut style stop), and the bytes before.
struct Ran {
    out: RunOutcome,
    before: Vec<u8>,
    after: Vec<u8>,
}

impl Ran {
    fn lines(&self) -> Vec<String> {
        self.out.lines.iter().map(|l| l.render()).collect()
    }

    fn guest(&self, vm: &str) -> Vec<String> {
        self.out.transcript(vm)
    }

    fn has(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }

    /// Sectors `[first, first + n)` of the partition at `part` after the run.
    fn sectors(&self, part: (u64, u64), first: u64, n: u64) -> &[u8] {
        let at = ((part.0 + first) * 512) as usize;
        &self.after[at..at + (n * 512) as usize]
    }
}

/// The sectors a guest logged `ack <sector>` for.
fn acked(lines: &[String]) -> BTreeSet<u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The pid of this process's child running `blk_driver`.
fn driver_pid() -> Option<i32> {
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1);
        if head.ends_with("(blk_driver") && ppid == Some(me.as_str()) {
            return e.file_name().to_str()?.parse().ok();
        }
    }
    None
}

/// Runs the system; `during` runs beside it, given the image's path.
fn run(s: &Setup<'_>, during: impl FnOnce(&Path) + Send) -> Option<Ran> {
    build_programs();
    let _one = serial();
    let dir = std::env::temp_dir().join(format!("bh-storage-{}-{}", s.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("host")).unwrap();
    for e in std::fs::read_dir(systems().join("storage/host")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("host").join(e.file_name())).unwrap();
    }
    let mut system = std::fs::read_to_string(systems().join("storage/host.system")).unwrap();
    if s.driver_child {
        // Microkit nesting: blk_driver becomes blk_virt's child 0.
        let start = system.find("    <!-- blk driver:").unwrap();
        let end = start
            + system[start..].find("    </protection_domain>\n").unwrap()
            + "    </protection_domain>\n".len();
        let driver = system[start..end].replace(
            "<protection_domain name=\"blk_driver\"",
            "<protection_domain name=\"blk_driver\" id=\"0\"",
        );
        system.replace_range(start..end, "");
        let virt = system.find("<protection_domain name=\"blk_virt\"").unwrap();
        let close = virt + system[virt..].find("    </protection_domain>").unwrap();
        let nested: String = driver.lines().map(|l| format!("    {l}\n")).collect();
        system.insert_str(close, &nested);
    }
    let sys = dir.join("host.system");
    std::fs::write(&sys, &system).unwrap();
    let vmm = bin_dir().join("vmm");
    std::fs::write(
        dir.join("host.host.toml"),
        format!(
            "[programs]\n\"alpha_vmm.elf\" = {vmm:?}\n\"beta_vmm.elf\" = {vmm:?}\n\n\
             [[disk]]\nname = \"disk0\"\npd = \"blk_driver\"\npath = \"storage.img\"\nread_only = false\n\n\
             [[guest]]\nvm = \"alpha\"\nprogram = \"{}\"\n\n[[guest]]\nvm = \"beta\"\nprogram = \"{}\"\n",
            s.alpha, s.beta
        ),
    )
    .unwrap();
    let image = dir.join("storage.img");
    let before = make_image(&image);
    let opts = RunOptions {
        search_path: vec![bin_dir()],
        timeout: Some(Duration::from_secs(s.secs)),
        until_line: s.until.map(str::to_string),
        ..RunOptions::default()
    };
    let out = std::thread::scope(|scope| {
        let image = image.clone();
        scope.spawn(move || during(&image));
        run_file(&sys, &opts)
    });
    let out = match out {
        Ok(o) => o,
        Err(HostError::Os(what, e)) if what.contains("ptrace") => {
            eprintln!("SKIPPED: {what}: {e}");
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    let after = std::fs::read(&image).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let ran = Ran { out, before, after };
    for l in ran.lines() {
        eprintln!("{l}");
    }
    assert!(!ran.has("FAILED"), "a guest reported a failure");
    Some(ran)
}

/// Every block `alpha` logged as acknowledged holds its data on disk.
fn alpha_acks_on_disk(r: &Ran) -> usize {
    let acks = acked(&r.guest("alpha"));
    for &s in &acks {
        assert_eq!(
            r.sectors(ALPHA, s, BLOCK),
            &sectors_of(ALPHA.1, s, BLOCK)[..],
            "acknowledged write at alpha sector {s} is not on the disk"
        );
    }
    acks.len()
}

/// Nothing outside alpha's partition changed (beta holds its pattern, the
/// GPT and the gaps are as built).
fn only_alpha_changed(r: &Ran) {
    let (a, b) = (
        (ALPHA.0 * 512) as usize,
        ((ALPHA.0 + ALPHA.1) * 512) as usize,
    );
    assert!(
        r.before[..a] == r.after[..a],
        "bytes before alpha's partition changed"
    );
    assert!(
        r.before[b..] == r.after[b..],
        "bytes after alpha's partition changed"
    );
}

#[test]
fn composed_files_are_up_to_date() {
    let src = std::fs::read_to_string(systems().join("storage.toml")).unwrap();
    let out =
        bulkhead_compose::compose(&src, "storage.toml", &systems(), None).unwrap_or_else(|d| {
            panic!(
                "{}",
                d.iter()
                    .map(|d| d.render("storage.toml"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
    let mut stale = Vec::new();
    for o in out {
        for f in &o.files {
            let path = systems().join("storage").join(&f.path);
            if std::fs::read(&path).ok().as_deref() != Some(&f.bytes[..]) {
                stale.push(format!("tests/guests/systems/storage/{}", f.path));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale or missing:\n  {}\nregenerate them with:\n  {REGENERATE}",
        stale.join("\n  ")
    );
}

#[test]
fn two_guests_write_and_read_concurrently_every_byte_verified() {
    let Some(r) = run(
        &Setup {
            name: "rw",
            alpha: "blk_guest",
            beta: "blk_reader",
            driver_child: false,
            until: Some(r"^\[alpha\] verified"),
            secs: 30,
        },
        |_| {},
    ) else {
        return;
    };
    let (a, b) = (r.guest("alpha"), r.guest("beta"));
    assert!(
        a.iter().any(|l| l.starts_with("verified ")),
        "alpha did not finish: {a:?}"
    );
    assert!(
        b.iter().any(|l| l == "verified round 1"),
        "beta did not finish a round: {b:?}"
    );
    let n = alpha_acks_on_disk(&r);
    assert!(n >= 20, "only {n} writes in the run");
    only_alpha_changed(&r);
}

#[test]
fn a_request_past_the_partition_fails_and_changes_nothing() {
    let Some(r) = run(
        &Setup {
            name: "oob",
            alpha: "blk_oob",
            beta: "blk_reader",
            driver_child: false,
            until: Some("oob read far past the end"),
            secs: 30,
        },
        |_| {},
    ) else {
        return;
    };
    let a = r.guest("alpha");
    for what in [
        "write straddling the end",
        "write at the end",
        "read at the end",
        "read far past the end",
    ] {
        assert!(
            a.iter()
                .any(|l| l.starts_with(&format!("oob {what}: refused"))),
            "{what}: {a:?}"
        );
    }
    assert!(r.before == r.after, "the image changed");
}

#[test]
fn the_read_only_guests_writes_fail() {
    let Some(r) = run(
        &Setup {
            name: "ro",
            alpha: "blk_oob",
            beta: "blk_reader",
            driver_child: false,
            until: Some("verified round 1"),
            secs: 30,
        },
        |_| {},
    ) else {
        return;
    };
    let b = r.guest("beta");
    assert!(b.iter().any(|l| l.ends_with("read-only")), "{b:?}");
    assert_eq!(
        b.iter()
            .filter(|l| l.starts_with("ro write at") && l.contains("refused"))
            .count(),
        2,
        "{b:?}"
    );
    let (s, e) = ((BETA.0 * 512) as usize, ((BETA.0 + BETA.1) * 512) as usize);
    assert!(r.before[s..e] == r.after[s..e], "beta's partition changed");
}

#[test]
fn a_guest_killed_mid_request_leaves_the_other_and_the_disk_consistent() {
    let Some(r) = run(
        &Setup {
            name: "kill",
            alpha: "blk_dying",
            beta: "blk_reader",
            driver_child: false,
            until: Some("verified round 6"),
            secs: 30,
        },
        |_| {},
    ) else {
        return;
    };
    let lines = r.lines();
    let killed = lines
        .iter()
        .position(|l| l.contains("guest alpha: killed by signal 9"))
        .expect("alpha was not killed");
    let later = lines
        .iter()
        .skip(killed)
        .any(|l| l.starts_with("[beta] verified round"));
    assert!(later, "beta did not go on verifying after alpha died");
    assert_eq!(alpha_acks_on_disk(&r), 40);
    // The write in flight when alpha died landed whole or not at all.
    let s = 40 * BLOCK;
    let got = r.sectors(ALPHA, s, BLOCK);
    assert!(
        got == &sectors_of(ALPHA.1, s, BLOCK)[..] || got.iter().all(|b| *b == 0),
        "the in-flight write is torn"
    );
    only_alpha_changed(&r);
}

#[test]
fn a_driver_killed_and_restarted_mid_load_loses_no_acknowledged_write() {
    let Some(r) = run(
        &Setup {
            name: "restart",
            alpha: "blk_writer_long",
            beta: "blk_reader",
            driver_child: true,
            // Then every process is killed at once: a power cut.
            until: Some(r"^\[alpha\] verified"),
            secs: 30,
        },
        |image| {
            // Once alpha's first write is on the image, kill the driver ten
            // times while alpha goes on writing (for 2.5 s), each time at
            // whatever it is doing: waiting, or in the middle of a request
            // (the log says how many requests blk_virt had to resend).
            let first = ALPHA.0 * 512;
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                let img = std::fs::read(image).unwrap_or_default();
                if img
                    .get(first as usize..first as usize + 512)
                    .is_some_and(|b| b.iter().any(|x| *x != 0))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(120));
                let pid = driver_pid().expect("no blk_driver process");
                // SAFETY: plain syscall on our own child process; SIGSEGV
                // stops it as a crash would, and its parent PD (blk_virt)
                // restarts it.
                unsafe { libc::kill(pid, libc::SIGSEGV) };
            }
        },
    ) else {
        return;
    };
    let lines = r.lines();
    let first = lines
        .iter()
        .position(|l| l.contains("blk_virt: child 0 faulted"))
        .expect("the driver was not killed");
    assert!(
        r.has("[blk_driver] blk_driver: start 11"),
        "the driver did not start again ten times"
    );
    assert!(r.has("blk_virt: driver restarted (epoch 11)"));
    let last = lines
        .iter()
        .rposition(|l| l.contains("blk_virt: child 0 faulted"))
        .unwrap();
    let before = lines[..first]
        .iter()
        .filter(|l| l.starts_with("[alpha] ack "))
        .count();
    let after = lines[last..]
        .iter()
        .filter(|l| l.starts_with("[alpha] ack "))
        .count();
    assert!(
        before > 0 && after > 0,
        "not mid-load: {before} acks before, {after} after"
    );
    let resent: usize = lines
        .iter()
        .filter_map(|l| l.split("resending ").nth(1))
        .filter_map(|t| t.split(' ').next()?.parse::<usize>().ok())
        .sum();
    let n = alpha_acks_on_disk(&r);
    eprintln!(
        "{n} acknowledged writes found on the image; {resent} request(s) resent after restarts"
    );
    only_alpha_changed(&r);
}
