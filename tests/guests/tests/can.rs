//! The CAN path as real processes on the host board: two trapping test
//! guests (`can_cluster`, `can_infotainment`) drive virtio-can through
//! their VMM PDs, `can_virt` and the host `can_driver` (the bus model in
//! wall time with scripted ECUs), in the system `bulkhead compose` made
//! from `systems/can.toml`. Every assertion is on what the bus model
//! recorded (`trace bus` lines of `can_driver`) and what the guests say.
//!
//! Two runs (10 s each, so a loaded machine still finishes them) serve
//! the tests: the scenario and the bus-off; each check is a
//! function that is also run on a doctored copy of the transcript, so each
//! test shows it can fail. If the host lacks ptrace: `SKIPPED: <why>`.

// A panic is how an integration test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bulkhead_host::{run_file, HostError, RunOptions};

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: where cargo put this test and the programs.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
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

/// Builds the PD programs and the CAN guests into this target dir.
pub fn build() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo_build(&["-p", "bulkhead-vmm-host", "-p", "bulkhead-virt-can-pd"]);
        cargo_build(&["-p", "drv-host-can-bus", "--bin", "can_driver"]);
        cargo_build(&[
            "-p",
            "bulkhead-test-guests",
            "--bin",
            "can_cluster",
            "--bin",
            "can_infotainment",
            "--bin",
            "can_collider",
        ]);
    });
}

/// The bus of the scenario: ECUs for each guest's range, one for nobody,
/// two broadcast ids both guests take (counters make frames distinct).
const SCRIPT: &str = "\
bitrate 500000
trace bus
periodic body 0x110 20000 1000 0a00 count
periodic media 0x410 20000 2000 0c00 count
periodic gateway 0x7e0 20000 3000 00 count
periodic bc1 0x601 10000 4000 01 count
periodic bc2 0x602 10000 4500 02 count
";

/// Runs `systems/can/host.system` (a copy with its own binding file);
/// returns the rendered lines, or `None` if the host cannot trace.
fn run_system(
    name: &str,
    script: &str,
    cluster: &str,
    info: &str,
    secs: u64,
) -> Option<Vec<String>> {
    build();
    let dir = std::env::temp_dir().join(format!("bh-can-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("host")).unwrap();
    let src = here().join("systems/can");
    std::fs::copy(src.join("host.system"), dir.join("host.system")).unwrap();
    for e in std::fs::read_dir(src.join("host")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("host").join(e.file_name())).unwrap();
    }
    std::fs::write(dir.join("script.txt"), script).unwrap();
    let bin = bin_dir();
    let vmm = bin.join("vmm");
    std::fs::write(
        dir.join("host.host.toml"),
        format!(
            "[programs]\n\"cluster_vmm.elf\" = {vmm:?}\n\"infotainment_vmm.elf\" = {vmm:?}\n\
             [[disk]]\nname = \"can_script\"\npd = \"can_driver\"\npath = \"script.txt\"\nread_only = true\n\
             [[guest]]\nvm = \"cluster\"\nprogram = \"{cluster}\"\n\
             [[guest]]\nvm = \"infotainment\"\nprogram = \"{info}\"\n"
        ),
    )
    .unwrap();
    let opts = RunOptions {
        search_path: vec![bin],
        timeout: Some(Duration::from_secs(secs)),
        ..RunOptions::default()
    };
    let out = match run_file(&dir.join("host.system"), &opts) {
        Ok(o) => Some(o.lines.iter().map(|l| l.render()).collect()),
        Err(HostError::Os(what, e)) if what.contains("ptrace") => {
            eprintln!("SKIPPED: {what}: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The one run the tests share.
fn transcript() -> Option<&'static [String]> {
    static RUN: OnceLock<Option<Vec<String>>> = OnceLock::new();
    RUN.get_or_init(|| {
        let lines = run_system("scenario", SCRIPT, "can_cluster", "can_infotainment", 10)?;
        let done = |g: &str| lines.iter().any(|l| l == &format!("[{g}] can-guest: done"));
        assert!(
            done("cluster") && done("infotainment"),
            "a guest did not finish:\n{}",
            lines.join("\n")
        );
        Some(lines)
    })
    .as_deref()
}

/// The bus-off scenario: a twin ECU offers 0x480 (other data) whenever
/// and as long as the controller holds infotainment's 0x480.
const COLLISION: &str = "\
bitrate 500000
trace tx
node gateway
twin twin 0x480 0000
";

/// The bus-off run.
fn collision_transcript() -> Option<&'static [String]> {
    static RUN: OnceLock<Option<Vec<String>>> = OnceLock::new();
    RUN.get_or_init(|| run_system("busoff", COLLISION, "can_cluster", "can_collider", 10))
        .as_deref()
}

/// `t=` of the first line starting with `prefix`.
fn time_of(lines: &[String], prefix: &str) -> Option<u64> {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| field(l, "t"))
        .and_then(|t| t.parse().ok())
}

/// Infotainment's colliding traffic put the controller bus-off once:
/// infotainment alone is stopped (its device shows BUSOFF, its frames are
/// refused, none reached the bus), the controller rejoined after the bus's
/// own recovery (128 × 11 bits = 2.816 ms at 500 kbit/s), and every
/// periodic cluster frame went out, also after the bus-off.
fn check_containment(lines: &[String]) -> Result<(), String> {
    let stopped = |g: &str| {
        lines
            .iter()
            .filter(|l| {
                l.starts_with(&format!(
                    "[can_virt] can_virt: guest {g} stopped for a bus-off"
                ))
            })
            .count()
    };
    if stopped("1 (channel 2)") != 1 || stopped("0 (channel 1)") != 0 {
        return Err("not exactly infotainment stopped, once".into());
    }
    let offs = lines
        .iter()
        .filter(|l| l.starts_with("[can_driver] can_driver: controller BusOff"))
        .count();
    if offs != 1 {
        return Err(format!("{offs} bus-offs, 1 expected"));
    }
    let off =
        time_of(lines, "[can_driver] can_driver: controller BusOff").ok_or("no bus-off time")?;
    let on = lines
        .iter()
        .filter(|l| l.starts_with("[can_driver] can_driver: controller Active"))
        .filter_map(|l| field(l, "t").and_then(|t| t.parse::<u64>().ok()))
        .find(|&t| t > off)
        .ok_or("the controller never rejoined")?;
    if !(2_816_000..100_000_000).contains(&(on - off)) {
        return Err(format!("rejoined after {} ns", on - off));
    }
    if count(lines, "[infotainment] can-guest: bus-off: yes") != 1 {
        return Err("infotainment's device does not show BUSOFF".into());
    }
    if count(lines, "[infotainment] can-guest: tx 0x480 refused") != 3 {
        return Err("infotainment's frames were not all refused".into());
    }
    if lines
        .iter()
        .any(|l| l.starts_with("[can_driver] tx 0x480 1f"))
    {
        return Err("an infotainment frame reached the bus".into());
    }
    if count(lines, "[cluster] can-guest: tx 0x301 ok (periodic)") != 15 {
        return Err("a periodic cluster frame was not sent".into());
    }
    let after = lines
        .iter()
        .filter(|l| l.starts_with("[can_driver] tx 0x301 c2"))
        .filter_map(|l| field(l, "sof").and_then(|t| t.parse::<u64>().ok()))
        .filter(|&t| t > on)
        .count();
    if after == 0 {
        return Err("no cluster frame on the bus after the bus-off".into());
    }
    Ok(())
}

/// A frame as the bus recorded it: (id, data hex, sender).
#[derive(Clone, Debug, PartialEq, Eq)]
struct BusFrame {
    id: u32,
    data: String,
    from: String,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn bus(lines: &[String]) -> Vec<BusFrame> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("[can_driver] bus "))
        .map(|l| BusFrame {
            id: u32::from_str_radix(field(l, "id").unwrap().trim_start_matches("0x"), 16).unwrap(),
            data: field(l, "data").unwrap().to_string(),
            from: field(l, "from").unwrap().to_string(),
        })
        .collect()
}

/// What guest `g` received, in order: (id, data hex).
fn received(lines: &[String], g: &str) -> Vec<(u32, String)> {
    let p = format!("[{g}] can-guest: rx ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&p))
        .map(|r| {
            let (id, data) = r.split_once(' ').unwrap_or((r, ""));
            (
                u32::from_str_radix(id.trim_start_matches("0x"), 16).unwrap(),
                data.to_string(),
            )
        })
        .collect()
}

fn count(lines: &[String], exact: &str) -> usize {
    lines.iter().filter(|l| *l == exact).count()
}

/// Infotainment's frames with the cluster's id were refused, counted by
/// `can_virt`, and never reached the bus; its own id and the cluster's
/// legitimate 0x300 did.
fn check_whitelist(lines: &[String]) -> Result<(), String> {
    let b = bus(lines);
    let refused = count(lines, "[infotainment] can-guest: tx 0x300 refused");
    if refused != 3 {
        return Err(format!(
            "infotainment's 0x300 refused {refused} times, not 3"
        ));
    }
    if count(lines, "[infotainment] can-guest: tx 0x480 ok") != 3 {
        return Err("infotainment's own 0x480 frames were not all sent".into());
    }
    if !lines.iter().any(|l| {
        l.contains(
            "[can_virt] can_virt: guest 1 (channel 2): 2 frame(s) dropped by its TX whitelist",
        )
    }) {
        return Err("can_virt did not count the drops".into());
    }
    if let Some(f) = b.iter().find(|f| f.id == 0x300 && f.data.starts_with("ba")) {
        return Err(format!("infotainment's forged frame is on the bus: {f:?}"));
    }
    let own = b
        .iter()
        .filter(|f| f.id == 0x480 && f.data.starts_with("1f"))
        .count();
    let cluster = b
        .iter()
        .filter(|f| f.id == 0x300 && f.data.starts_with("c1"))
        .count();
    if own != 3 || cluster != 3 {
        return Err(format!("bus has {own} of infotainment's 0x480, {cluster} of the cluster's 0x300 (3 each expected)"));
    }
    Ok(())
}

fn filters(g: &str) -> fn(u32) -> bool {
    match g {
        "cluster" => |id| id & 0x700 == 0x100 || id & 0x7f0 == 0x600,
        _ => |id| id & 0x700 == 0x400 || id & 0x7f0 == 0x600,
    }
}

/// Each guest received exactly the frames on the bus its filters take (and
/// that it did not send itself): a gap-free run of them, in bus order, with
/// every id it subscribed to present and nothing else.
fn check_filters(lines: &[String]) -> Result<(), String> {
    let b = bus(lines);
    for (g, ids) in [
        ("cluster", [0x110, 0x601, 0x602]),
        ("infotainment", [0x410, 0x601, 0x602]),
    ] {
        let want = filters(g);
        let rx = received(lines, g);
        if let Some(bad) = rx.iter().find(|(id, _)| !want(*id)) {
            return Err(format!("{g} received {bad:?}, outside its filters"));
        }
        for id in ids {
            if !rx.iter().any(|(i, _)| *i == id) {
                return Err(format!("{g} never received {id:#x}"));
            }
        }
        let sent_by_other = |f: &BusFrame| !(f.from == "can_driver" && rx_is_own(g, f));
        let expected: Vec<(u32, String)> = b
            .iter()
            .filter(|f| want(f.id) && sent_by_other(f))
            .map(|f| (f.id, f.data.clone()))
            .collect();
        let start = expected
            .iter()
            .position(|e| Some(e) == rx.first())
            .ok_or_else(|| format!("{g}'s first frame {:?} is not on the bus", rx.first()))?;
        for (k, r) in rx.iter().enumerate() {
            if expected.get(start + k) != Some(r) {
                return Err(format!(
                    "{g}'s frame {k} is {r:?}, but the bus's next matching frame is {:?}",
                    expected.get(start + k)
                ));
            }
        }
        if rx.len() < 20 {
            return Err(format!("{g} received only {} frames", rx.len()));
        }
    }
    Ok(())
}

/// A frame the guest sent itself (the virtualiser does not echo those).
fn rx_is_own(g: &str, f: &BusFrame) -> bool {
    match g {
        "cluster" => f.id == 0x300 || f.id == 0x301,
        _ => f.id == 0x480 || f.id == 0x481,
    }
}

/// Both guests got the broadcast ids in the same order.
fn check_broadcast(lines: &[String]) -> Result<(), String> {
    let bc = |g: &str| -> Vec<(u32, String)> {
        received(lines, g)
            .into_iter()
            .filter(|(id, _)| id & 0x7f0 == 0x600)
            .collect()
    };
    let (a, b) = (bc("cluster"), bc("infotainment"));
    // Their common part starts at whichever guest started listening later.
    let (a, b) = if let Some(i) = a.iter().position(|x| Some(x) == b.first()) {
        (&a[i..], &b[..])
    } else if let Some(j) = b.iter().position(|x| Some(x) == a.first()) {
        (&a[..], &b[j..])
    } else {
        return Err("the guests share no broadcast frame".into());
    };
    let n = a.len().min(b.len());
    if n < 10 {
        return Err(format!("only {n} broadcast frames in common"));
    }
    if a[..n] != b[..n] {
        let k = (0..n).find(|&k| a[k] != b[k]).unwrap_or(0);
        return Err(format!(
            "order differs at {k}: cluster {:?}, infotainment {:?}",
            a[k], b[k]
        ));
    }
    Ok(())
}

/// `lines` with one line changed, for showing a check can fail.
fn doctored(lines: &[String], f: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out = lines.to_vec();
    let k = out
        .iter()
        .position(|l| f(l).is_some())
        .expect("a line to doctor");
    out[k] = f(&out[k]).unwrap();
    out
}

#[test]
fn infotainment_sending_the_clusters_id_is_dropped_counted_and_never_on_the_bus() {
    let Some(l) = transcript() else { return };
    check_whitelist(l).unwrap_or_else(|e| panic!("{e}\n{}", l.join("\n")));
    // Able to fail: a forged frame on the bus is caught.
    let forged = doctored(l, |x| {
        x.contains("bus ")
            .then(|| "[can_driver] bus t=1 id=0x300 len=2 data=ba00 from=can_driver".into())
    });
    assert!(check_whitelist(&forged).is_err());
}

#[test]
fn rx_filters_deliver_each_guest_exactly_its_ids_in_bus_order() {
    let Some(l) = transcript() else { return };
    check_filters(l).unwrap_or_else(|e| panic!("{e}\n{}", l.join("\n")));
    // Able to fail: a frame outside the cluster's filters, or a lost one.
    let leak = doctored(l, |x| {
        x.starts_with("[cluster] can-guest: rx 0x110")
            .then(|| "[cluster] can-guest: rx 0x410 0c00".into())
    });
    assert!(check_filters(&leak).is_err());
    // A lost frame in the middle of infotainment's run (one at either end
    // would only shorten the run).
    let mut lost = l.to_vec();
    let rx: Vec<usize> = (0..lost.len())
        .filter(|&i| lost[i].starts_with("[infotainment] can-guest: rx "))
        .collect();
    let k = rx[1..rx.len() - 1]
        .iter()
        .copied()
        .find(|&i| lost[i].starts_with("[infotainment] can-guest: rx 0x410"))
        .unwrap();
    lost.remove(k);
    assert!(check_filters(&lost).is_err());
}

#[test]
fn broadcast_ids_reach_both_guests_in_the_same_order() {
    let Some(l) = transcript() else { return };
    check_broadcast(l).unwrap_or_else(|e| panic!("{e}\n{}", l.join("\n")));
    // Able to fail: two broadcast frames swapped for one guest.
    let mut swapped = l.to_vec();
    let idx: Vec<usize> = swapped
        .iter()
        .enumerate()
        .filter(|(_, x)| x.starts_with("[infotainment] can-guest: rx 0x60"))
        .map(|(i, _)| i)
        .collect();
    swapped.swap(idx[4], idx[5]);
    assert!(check_broadcast(&swapped).is_err());
}

#[test]
fn a_collision_through_infotainment_stops_infotainment_alone_and_the_cluster_keeps_sending() {
    let Some(l) = collision_transcript() else {
        return;
    };
    check_containment(l).unwrap_or_else(|e| panic!("{e}\n{}", l.join("\n")));
    // Able to fail: the cluster stopped too, or its device not told.
    let both = doctored(l, |x| {
        x.starts_with("[can_virt] can_virt: guest 1 (channel 2) stopped")
            .then(|| x.replace("guest 1 (channel 2)", "guest 0 (channel 1)"))
    });
    assert!(check_containment(&both).is_err());
    let untold = doctored(l, |x| {
        (x == "[infotainment] can-guest: bus-off: yes")
            .then(|| "[infotainment] can-guest: bus-off: no".into())
    });
    assert!(check_containment(&untold).is_err());
}
