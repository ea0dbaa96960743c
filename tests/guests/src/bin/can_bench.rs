//! The CAN path's benchmark on the host board, in one run: frames/s and the
//! latency each frame gains on the whole path (guest driver → trapped MMIO
//! → VMM PD → ring → `can_virt` → ring → `can_driver` → the bus model in
//! wall time, and the completion back), against the bus's own frame time.
//!
//! Cases (each a system `bulkhead compose` made from
//! `systems/can-bench/*.toml`, 500 kbit/s classic bus, 8-byte frames,
//! `can_driver` with 3 TX buffers, one receiving ECU to acknowledge): one guest with one frame in flight
//! (an idle bus: the path alone), one guest at full load (8 in flight),
//! four guests at full load. Per frame, from the guests' send/completion
//! times and the driver's `trace tx` (all CLOCK_MONOTONIC):
//!
//! - total = completion seen by the guest − `send` called;
//! - frame time = end of EOF − SOF (the bus's own time for the frame);
//! - down = the time between `send` and the frame's SOF during which the
//!   bus was free (so the frame could have been on it had the path been
//!   instant) — time spent behind other frames on a busy bus is the bus's
//!   own queueing (arbitration by id), not the path's;
//! - up = completion seen by the guest − end of EOF;
//! - added = down + up: what the path adds to the frame's latency.
//!
//! `cargo build --release -p bulkhead-test-guests -p bulkhead-vmm-host
//! -p bulkhead-virt-can-pd -p drv-host-can-bus && target/release/can_bench`
// Percentile index from a float, guest index into a byte: all small values
// (at most 4 guests, at most a few thousand frames).
#![allow(clippy::cast_possible_truncation)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Case {
    name: &'static str,
    system: &'static str,
    guests: usize,
    program: &'static str,
}

const CASES: [Case; 3] = [
    Case {
        name: "1 guest, 1 frame in flight (idle bus)",
        system: "one",
        guests: 1,
        program: "can_ping",
    },
    Case {
        name: "1 guest, full load (8 in flight)",
        system: "one",
        guests: 1,
        program: "can_load",
    },
    Case {
        name: "4 guests, full load (8 in flight each)",
        system: "four",
        guests: 4,
        program: "can_load",
    },
];

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn run(case: &Case, bin: &Path) -> Result<Vec<String>, String> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("systems/can-bench")
        .join(case.system);
    let dir = std::env::temp_dir().join(format!(
        "bh-can-bench-{}-{}",
        case.system,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&src, &dir).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("script.txt"),
        "bitrate 500000\nslots 3\ntrace tx\nnode gateway\n",
    )
    .map_err(|e| e.to_string())?;
    let vmm = bin.join("vmm");
    let mut toml = String::from("[programs]\n");
    for g in 0..case.guests {
        toml += &format!("\"g{g}_vmm.elf\" = {vmm:?}\n");
    }
    toml += "[[disk]]\nname = \"can_script\"\npd = \"can_driver\"\npath = \"script.txt\"\nread_only = true\n";
    for g in 0..case.guests {
        toml += &format!("[[guest]]\nvm = \"g{g}\"\nprogram = \"{}\"\n", case.program);
    }
    std::fs::write(dir.join("host.host.toml"), toml).map_err(|e| e.to_string())?;
    let opts = bulkhead_host::RunOptions {
        search_path: vec![bin.to_path_buf()],
        timeout: Some(Duration::from_secs(8)),
        ..Default::default()
    };
    let out = bulkhead_host::run_file(&dir.join("host.system"), &opts);
    let _ = std::fs::remove_dir_all(&dir);
    out.map(|o| o.lines.iter().map(|l| l.render()).collect())
        .map_err(|e| e.to_string())
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let k = ((v.len() - 1) as f64 * p).round() as usize;
    v[k] as f64 / 1000.0
}

fn field(l: &str, key: &str) -> Option<u64> {
    l.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn report(case: &Case, lines: &[String]) -> Result<(), String> {
    // Driver: (id, data) → (sub, sof, eof).
    let mut bus: HashMap<(u32, String), (u64, u64, u64)> = HashMap::new();
    for l in lines {
        let Some(r) = l.strip_prefix("[can_driver] tx ") else {
            continue;
        };
        let mut w = r.split_whitespace();
        let (Some(id), Some(data)) = (w.next(), w.next()) else {
            continue;
        };
        let id = u32::from_str_radix(id.trim_start_matches("0x"), 16).unwrap_or(0);
        if let (Some(a), Some(b), Some(c)) = (field(r, "sub"), field(r, "sof"), field(r, "eof")) {
            bus.insert((id, data.to_string()), (a, b, c));
        }
    }
    // Busy intervals of the bus (SOF .. EOF + 3 bits of intermission),
    // sorted, with prefix sums, to measure idle time in any window.
    let mut busy: Vec<(u64, u64)> = bus
        .values()
        .map(|&(_, sof, eof)| (sof, eof + 6_000))
        .collect();
    busy.sort_unstable();
    let mut prefix = vec![0u64];
    for &(a, b) in &busy {
        prefix.push(prefix.last().copied().unwrap_or(0) + (b - a));
    }
    // Busy time in [from, to).
    let busy_in = |from: u64, to: u64| -> u64 {
        if to <= from {
            return 0;
        }
        let i = busy.partition_point(|&(_, e)| e <= from);
        let j = busy.partition_point(|&(s, _)| s < to);
        if j <= i {
            return 0;
        }
        let mut t = prefix[j] - prefix[i];
        let (s0, _) = busy[i];
        t -= from.saturating_sub(s0).min(busy[i].1 - s0);
        let (_, e1) = busy[j - 1];
        t -= e1.saturating_sub(to).min(e1 - busy[j - 1].0);
        t
    };
    let (mut total, mut frame, mut added, mut down, mut up) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut missing = 0;
    for g in 0..case.guests {
        let p = format!("[g{g}] can-lat ");
        for l in lines.iter().filter_map(|l| l.strip_prefix(&p)) {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let [seq, sent, done] = v[..] else { continue };
            let mut data = vec![g as u8];
            data.extend_from_slice(&(seq as u32).to_le_bytes());
            data.extend_from_slice(&[0, 0, 0]);
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            let Some(&(_sub, sof, eof)) = bus.get(&(0x100 + g as u32, hex)) else {
                missing += 1;
                continue;
            };
            let d = sof.saturating_sub(sent).saturating_sub(busy_in(sent, sof));
            let u = done.saturating_sub(eof);
            total.push(done.saturating_sub(sent));
            frame.push(eof - sof);
            down.push(d);
            up.push(u);
            added.push(d + u);
            first = first.min(sof);
            last = last.max(eof);
        }
    }
    let n = total.len();
    if n == 0 {
        return Err(format!("no frames measured ({missing} unmatched)"));
    }
    let secs = (last - first) as f64 / 1e9;
    let ft50 = pct(&mut frame, 0.5);
    // Back to back, a frame takes its own time plus 3 bits of intermission.
    let ceiling = 1e6 / (ft50 + 6.0);
    println!("== {} ==", case.name);
    println!(
        "  frames: {n} in {secs:.2} s = {:.0} frames/s (bus ceiling for this frame {ceiling:.0}/s, {:.0} %)",
        n as f64 / secs,
        100.0 * n as f64 / secs / ceiling
    );
    println!("  bus's own frame time (SOF..EOF): p50 {ft50:.1} µs");
    let (t50, t99) = (pct(&mut total, 0.5), pct(&mut total, 0.99));
    let (a50, a99) = (pct(&mut added, 0.5), pct(&mut added, 0.99));
    let (d50, d99) = (pct(&mut down, 0.5), pct(&mut down, 0.99));
    let (u50, u99) = (pct(&mut up, 0.5), pct(&mut up, 0.99));
    println!("  total send→completion: p50 {t50:.1} µs, p99 {t99:.1} µs (includes waiting behind other frames)");
    println!(
        "  added by the path:     p50 {a50:.1} µs, p99 {a99:.1} µs = {:.2} / {:.2} frame times",
        a50 / ft50,
        a99 / ft50
    );
    println!("    down (bus free, frame not there yet): p50 {d50:.1} µs, p99 {d99:.1} µs");
    println!("    up (EOF → guest sees completion):     p50 {u50:.1} µs, p99 {u99:.1} µs");
    if missing > 0 {
        println!("  ({missing} guest frames without a bus record)");
    }
    Ok(())
}

fn main() {
    let exe = std::env::current_exe().unwrap_or_default();
    let bin = exe.parent().map(PathBuf::from).unwrap_or_default();
    let mut failed = false;
    for case in &CASES {
        match run(case, &bin).and_then(|lines| {
            report(case, &lines).inspect_err(|_| {
                for l in &lines {
                    eprintln!("{l}");
                }
            })
        }) {
            Ok(()) => {}
            Err(e) => {
                eprintln!("can_bench: {}: {e}", case.name);
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
