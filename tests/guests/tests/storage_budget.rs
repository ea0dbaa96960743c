//! Per-guest I/O budgets on the host board (issue 7: "one guest cannot
//! starve another"), with real processes: two guests on one GPT disk image
//! through their VMMs, `blk_virt` and `blk_driver`, the system composed
//! here from [`DESC`] (as `system/automotive` sets storage up: the cluster
//! read-only, infotainment writable, both budgeted). Both guests run
//! `src/bin/blk_flood.rs`: infotainment reads back to back as fast as the
//! device answers, the cluster reads one block every 500 ms.
//!
//! What is asserted, from the guests' logs:
//! 1. infotainment's completed reads in any window of `k` budget periods
//!    never exceed `(k + 2) × ops + 1`, for `k` = 1 and 10, and over the
//!    whole run `(run / period + 2) × ops + 1`. Why that bound: the bucket
//!    holds at most `ops` tokens and refills at most once per period, but
//!    a refill is applied at the first event after its boundary (the tick,
//!    up to a quarter period late), so a window of `k` periods can see
//!    `k + 1` refills on top of the tokens it starts with; the guest reads
//!    at queue depth 1, so at most one read dispatched before the window
//!    completes inside it (the `+ 1`). Measured: at most `2 × ops + 1` in
//!    one period and `11 × ops + 1` in ten (budget plus one period, plus
//!    the read in flight).
//! 2. the cluster's reads all complete, in order, with the right bytes.
//!    No latency bound is asserted: on this shared 2-core machine wall
//!    time is not ours (the slowest is printed: 7-65 ms measured, with
//!    and without budgets alike).
//! 3. infotainment still gets most of its budget (≥ 60 %; 80-100 % measured,
//!    each of its QD1 reads crossing five processes on a loaded machine):
//!    throttled requests are served after each refill even when nothing
//!    else happens (compose binds `blk_virt` a host timer tick at a quarter
//!    of the shortest budget period).
//!
//! The same system with infotainment's budget removed shows (1) is not
//! vacuous: its flood then exceeds `3 × ops + 1` in some period (35-176
//! measured, against at most 11 budgeted). With the tick removed (3)
//! fails: a refill is then noticed only at the cluster's reads (one per
//! 500 ms = 10 periods) or while infotainment's own burst is still running,
//! so it gets well under 60 % of its budget (22-40 % measured; about
//! 40 % with a cluster read every 200 ms), and once the cluster is done
//! its pending read waits for ever. (2) holds with or without budgets
//! against this QD1 flood: the virtualiser's round robin gives the cluster
//! every other driver slot. If the host lacks ptrace, a test prints
//! `SKIPPED: <why>`.

// A panic is how an integration test fails.
#![allow(clippy::panic, clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bulkhead_host::{run_file, HostError, RunOptions};
use drv_host_blk_file::gpt::{build, PartSpec};

/// Infotainment's budget: reads per period, and the period.
const OPS: u64 = 5;
const PERIOD_US: u64 = 50_000;
/// How long the guests run (`blk_flood.rs`: `RUN`).
const RUN_US: u64 = 3_000_000;
/// Partitions (sectors), as [`DESC`] places them.
const CLUSTER: (u64, u64) = (2048, 2048);
const INFOTAINMENT: (u64, u64) = (4096, 16384);
const DISK_SECTORS: u64 = 32768;

/// The description; `INFO_BUDGET` becomes infotainment's budget (or nothing).
const DESC: &str = r#"
name = "storage-budget"
description = "Two guests on one disk; infotainment floods within its budget"
boards = ["host"]

[[partition]]
name = "cluster"
start = "1M"
size = "1M"

[[partition]]
name = "infotainment"
start = "2M"
size = "8M"

[[guest]]
name = "cluster"
ram = "4M"
storage = { partition = "cluster", read_only = true, budget = { ops = 100, bytes = "4M", period_us = 20000 } }

[[guest]]
name = "infotainment"
ram = "4M"
storage = { partition = "infotainment"INFO_BUDGET }
"#;

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: where cargo put this test and the programs.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn build_programs() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        for args in [
            &["-p", "bulkhead-vmm-host", "-p", "bulkhead-virt-blk-pd"][..],
            &["-p", "drv-host-blk-file", "--bin", "blk_driver"],
            &["-p", "bulkhead-test-guests", "--bin", "blk_flood"],
        ] {
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
        }
    });
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Byte `i` of sector `s` of a guest whose capacity is `tag` (as
/// `src/bin/blk_guest.rs`).
fn pattern(tag: u64, s: u64, i: usize) -> u8 {
    let x = s
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(tag.wrapping_mul(131))
        .wrapping_add(i as u64 * 7);
    (x ^ (x >> 11) ^ (s >> 3)) as u8
}

/// The image: GPT by the project's builder, the cluster's partition
/// filled with its pattern (its reads are checked against it).
fn make_image(path: &Path) {
    let placed = build(
        path,
        DISK_SECTORS,
        &[
            PartSpec {
                name: "cluster".into(),
                sectors: CLUSTER.1,
            },
            PartSpec {
                name: "infotainment".into(),
                sectors: INFOTAINMENT.1,
            },
        ],
    )
    .unwrap();
    let got: Vec<(u64, u64)> = placed.iter().map(|p| (p.first, p.sectors)).collect();
    assert_eq!(
        got,
        [CLUSTER, INFOTAINMENT],
        "the builder must place what DESC says"
    );
    let mut img = std::fs::read(path).unwrap();
    for s in 0..CLUSTER.1 {
        for i in 0..512 {
            img[((CLUSTER.0 + s) * 512) as usize + i] = pattern(CLUSTER.1, s, i);
        }
    }
    std::fs::write(path, &img).unwrap();
}

/// What the guests logged.
struct Logs {
    /// Infotainment's completion times (µs since its first read started).
    flood: Vec<u64>,
    /// The cluster's reads: (index, latency µs).
    cluster: Vec<(u64, u64)>,
    blk_virt: Vec<String>,
}

/// Composes [`DESC`] (infotainment budgeted or not), runs it, returns the
/// logs. `tick`: keep compose's timer tick for `blk_virt`.
fn run(name: &str, budget: bool, tick: bool) -> Option<Logs> {
    build_programs();
    let _one = serial();
    let info = if budget {
        format!(", budget = {{ ops = {OPS}, bytes = \"64M\", period_us = {PERIOD_US} }}")
    } else {
        String::new()
    };
    let desc = DESC.replace("INFO_BUDGET", &info);
    let dir = std::env::temp_dir().join(format!("bh-budget-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = bulkhead_compose::compose(&desc, "budget.toml", &dir, None).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.render("budget.toml"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let mut timer = String::new();
    for o in out {
        for f in &o.files {
            let p = dir.join(&f.path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &f.bytes).unwrap();
            if f.path == "host.host.toml" {
                let text = String::from_utf8(f.bytes.clone()).unwrap();
                if let Some(at) = text.find("[[timer_irq]]") {
                    let block: Vec<&str> = text[at..].lines().take(4).collect();
                    timer = block.join("\n") + "\n";
                }
            }
        }
    }
    // The cluster is always budgeted, so compose always binds the tick.
    assert!(
        timer.contains("pd = \"blk_virt\""),
        "no tick bound: {timer:?}"
    );
    let mut system = std::fs::read_to_string(dir.join("host.system")).unwrap();
    if !tick {
        assert!(
            system.contains("<irq irq=\"1000\" id=\"61\""),
            "compose bound no tick"
        );
        system = system.replace(
            "        <irq irq=\"1000\" id=\"61\" trigger=\"level\" />\n",
            "",
        );
        timer.clear();
    }
    std::fs::write(dir.join("host.system"), &system).unwrap();
    let vmm = bin_dir().join("vmm");
    let flood = bin_dir().join("blk_flood");
    std::fs::write(
        dir.join("host.host.toml"),
        format!(
            "[programs]\n\"cluster_vmm.elf\" = {vmm:?}\n\"infotainment_vmm.elf\" = {vmm:?}\n\n\
             [[disk]]\nname = \"disk0\"\npd = \"blk_driver\"\npath = \"disk.img\"\nread_only = false\n\n\
             {timer}\n\
             [[guest]]\nvm = \"cluster\"\nprogram = {flood:?}\n\n\
             [[guest]]\nvm = \"infotainment\"\nprogram = {flood:?}\n"
        ),
    )
    .unwrap();
    make_image(&dir.join("disk.img"));
    let opts = RunOptions {
        search_path: vec![bin_dir()],
        timeout: Some(Duration::from_secs(9)),
        until_line: None,
        ..RunOptions::default()
    };
    let out = match run_file(&dir.join("host.system"), &opts) {
        Ok(o) => o,
        Err(HostError::Os(what, e)) if what.contains("ptrace") => {
            eprintln!("SKIPPED: {what}: {e}");
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<String> = out.lines.iter().map(|l| l.render()).collect();
    for l in lines
        .iter()
        .filter(|l| !l.contains(" c ") && !l.contains(": c "))
    {
        eprintln!("{l}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("FAILED")),
        "a guest reported a failure"
    );
    let info = out.transcript("infotainment");
    let cl = out.transcript("cluster");
    // Without the tick a throttled read can wait for ever once the cluster
    // is done (nothing else wakes `blk_virt`): its run need not finish.
    assert!(
        !tick || info.iter().any(|l| l.starts_with("flood ")),
        "infotainment did not finish its run"
    );
    assert!(
        cl.iter().any(|l| l.starts_with("cluster ")),
        "the cluster did not finish its run"
    );
    let flood = info
        .iter()
        .filter_map(|l| l.strip_prefix("c "))
        .flat_map(|l| l.split(' ').map(|t| t.parse::<u64>().unwrap()))
        .collect();
    let cluster = cl
        .iter()
        .filter_map(|l| l.strip_prefix("r "))
        .map(|l| {
            let (k, us) = l.split_once(' ').unwrap();
            (k.parse().unwrap(), us.trim().parse().unwrap())
        })
        .collect();
    let blk_virt = lines
        .into_iter()
        .filter(|l| l.contains("blk_virt"))
        .collect();
    Some(Logs {
        flood,
        cluster,
        blk_virt,
    })
}

/// The most completions in any window `[t, t + len)`.
fn max_in_window(times: &[u64], len: u64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= len {
            lo += 1;
        }
        best = best.max(hi + 1 - lo);
    }
    best
}

/// The cluster's reads came back, all of them, in order (`blk_flood.rs`
/// checked every byte); returns the slowest latency in µs.
fn cluster_complete(l: &Logs) -> u64 {
    // 3 s at one read per 500 ms: 6 reads if none were late; allow half
    // for a loaded machine (sleeps overshoot), but every one logged is done.
    assert!(
        l.cluster.len() >= 3,
        "the cluster completed only {} reads",
        l.cluster.len()
    );
    for (i, &(k, _)) in l.cluster.iter().enumerate() {
        assert_eq!(k, i as u64, "cluster reads out of order");
    }
    l.cluster.iter().map(|&(_, us)| us).max().unwrap_or(0)
}

#[test]
fn a_flooding_guest_stays_within_its_budget_and_the_other_is_served() {
    let Some(l) = run("budgeted", true, true) else {
        return;
    };
    assert!(
        l.blk_virt
            .iter()
            .any(|s| s.contains(&format!("budget: {OPS} ops"))),
        "blk_virt did not report enforcing infotainment's budget"
    );
    let n = l.flood.len() as u64;
    let one = max_in_window(&l.flood, PERIOD_US);
    let ten = max_in_window(&l.flood, 10 * PERIOD_US);
    let slowest = cluster_complete(&l);
    let periods = RUN_US / PERIOD_US;
    eprintln!(
        "budgeted: infotainment {n} reads in {} s (budget {} per run), max {one} in one period, {ten} in ten; \
         cluster {} reads, slowest {slowest} us",
        RUN_US / 1_000_000,
        OPS * periods,
        l.cluster.len()
    );
    // (1) never above the budget: the slack of a late refill, one read in
    // flight (see the module documentation).
    assert!(
        one as u64 <= 3 * OPS + 1,
        "{one} reads in one {PERIOD_US} us period"
    );
    assert!(ten as u64 <= 12 * OPS + 1, "{ten} reads in ten periods");
    assert!(n <= OPS * (periods + 2) + 1, "{n} reads in the run");
    // (3) throttled, not stopped.
    assert!(
        n * 100 >= OPS * periods * 60,
        "only {n} reads: throttled requests are not served after the refill"
    );
}

#[test]
fn without_a_budget_the_flood_exceeds_what_the_budget_allows() {
    // The measure of the first test is sensitive: the same flood, unbudgeted,
    // breaks its bound (1). The cluster is served all the same (the
    // virtualiser's round robin, not the budget, guarantees that against a
    // QD1 flood).
    let Some(l) = run("unbudgeted", false, true) else {
        return;
    };
    let one = max_in_window(&l.flood, PERIOD_US);
    let slowest = cluster_complete(&l);
    eprintln!(
        "unbudgeted: infotainment {} reads, max {one} in one period; cluster {} reads, slowest {slowest} us",
        l.flood.len(),
        l.cluster.len()
    );
    assert!(
        one as u64 > 3 * OPS + 1,
        "an unbudgeted flood did only {one} reads per period: the budget test proves nothing"
    );
}

#[test]
fn without_the_tick_a_throttled_guest_waits_for_other_events() {
    // (3) is the tick's doing: without it, infotainment's refill is only
    // noticed at the cluster's reads (one per 500 ms = 10 periods) or during
    // its own burst.
    let Some(l) = run("no-tick", true, false) else {
        return;
    };
    let n = l.flood.len() as u64;
    let periods = RUN_US / PERIOD_US;
    eprintln!(
        "no tick: infotainment {n} reads (budget {} per run)",
        OPS * periods
    );
    cluster_complete(&l);
    assert!(
        n * 100 < OPS * periods * 60,
        "{n} reads without a tick: the tick test proves nothing"
    );
}

#[test]
fn the_window_count_is_right() {
    assert_eq!(max_in_window(&[], 10), 0);
    assert_eq!(max_in_window(&[0, 5, 9, 10, 11, 30], 10), 4);
    assert_eq!(max_in_window(&[0, 10, 20], 10), 1);
    assert_eq!(max_in_window(&[0, 1, 2, 3], 10), 4);
}
