//! Items that need a device class, run on the reference system
//! ([`Profile::Reference`]) through its real paths: test guests drive
//! virtio-can and virtio-blk through their VMM PDs, `can_virt`/`blk_virt`
//! and the host `can_driver` (bus model, `trace bus`) / `blk_driver` (a
//! scratch GPT disk image laid out as `blk_virt`'s configuration says).
//!
//! The guests are `tests/guests` programs (`can_cluster`,
//! `can_infotainment`, `blk_oob`); what they print and what the bus model
//! traces is the evidence.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_virt_blk_pd::config::VirtConfig;
use sha2::{Digest, Sha256};

use crate::scenario::{Ctx, Profile, RunResult, Variant, UNTRUSTED_PD};
use crate::{Outcome, Status};

/// How long a run with CAN guests lasts (each sends, then listens 1.5 s).
pub const CAN_RUN: Duration = Duration::from_secs(5);

/// How long a run with a block guest lasts.
pub const BLK_RUN: Duration = Duration::from_secs(4);

/// Why the stand-in system covers no device item.
const STAND_IN: &str = "the stand-in system has no device classes: this item runs on the reference system (system/automotive/host.system, its real CAN and storage paths; make separation runs it)";

/// C1 (insertion / masquerade / wrong addressing): infotainment sends the
/// cluster's CAN id and addresses blocks past its partition.
pub fn c1(ctx: &mut Ctx) -> Outcome {
    if ctx.profile != Profile::Reference {
        return Outcome::new(Status::NotCovered(STAND_IN.into()));
    }
    let mut errs = Vec::new();
    let mut ev = Vec::new();
    for part in [can_whitelist, storage_bounds] {
        match part(ctx) {
            Ok((e, v)) => {
                errs.extend(e);
                ev.extend(v);
            }
            Err(e) => return crate::items::run_error(e.to_string()),
        }
    }
    Outcome {
        status: if errs.is_empty() {
            Status::Passed
        } else {
            Status::Failed(errs.join("; "))
        },
        evidence: ev,
        distributions: Vec::new(),
    }
}

/// The 11-bit ids more than one guest's RX filters accept (from
/// `can_virt`'s configuration region), at most `max`.
fn shared_ids(ctx: &Ctx, max: usize) -> Result<Vec<u32>, String> {
    let mr = ctx
        .sd
        .memory_regions
        .iter()
        .find(|m| m.name == "can_virt_config")
        .ok_or("no can_virt_config region")?;
    let Some(bulkhead_sdf::model::Prefill::Path(p)) = &mr.prefill else {
        return Err("can_virt_config has no prefill file".into());
    };
    let bytes = std::fs::read(ctx.base.join(p)).map_err(|e| format!("{p}: {e}"))?;
    let region = bulkhead_config::ConfigRegion::parse(&bytes, "can_virt")
        .map_err(|e| format!("{p}: {e:?}"))?;
    let cfg = bulkhead_virt_can_pd::config::Config::from_region(&region)
        .map_err(|e| format!("{p}: {e:?}"))?;
    let mut out = Vec::new();
    for id in 0..0x800u16 {
        let Ok(cid) = bulkhead_can_frame::CanId::standard(id) else {
            continue;
        };
        let Ok(f) = bulkhead_can_frame::Frame::classic(cid, &[0]) else {
            continue;
        };
        if cfg
            .clients()
            .iter()
            .filter(|c| c.policy.accepts(&f))
            .count()
            >= 2
        {
            out.push(u32::from(id));
            if out.len() == max {
                break;
            }
        }
    }
    Ok(out)
}

/// C4 (asymmetric delivery): broadcast frames on the bus reach every
/// subscribed guest, in the bus's order, with no gap.
pub fn c4(ctx: &mut Ctx) -> Outcome {
    if ctx.profile != Profile::Reference {
        return Outcome::new(Status::NotCovered(STAND_IN.into()));
    }
    match broadcast(ctx) {
        Ok(None) => Outcome::new(Status::NotCovered(
            "no CAN id passes more than one guest's RX filters in this system (can_virt's configuration), so nothing is delivered to several guests; fan-out is tested on tests/guests/systems/can.toml (shared 0x600-0x60f)".into(),
        )),
        Ok(Some((errs, ev))) => Outcome {
            status: if errs.is_empty() {
                Status::Passed
            } else {
                Status::Failed(errs.join("; "))
            },
            evidence: ev,
            distributions: Vec::new(),
        },
        Err(e) => crate::items::run_error(e.to_string()),
    }
}

/// What guest `g` received, in order: (id, data hex).
fn received(r: &RunResult, g: &str) -> Vec<(u32, String)> {
    let p = format!("[{g}] can-guest: rx ");
    r.lines
        .iter()
        .filter_map(|l| l.strip_prefix(&p))
        .filter_map(|x| {
            let (id, data) = x.split_once(' ').unwrap_or((x, ""));
            let id = u32::from_str_radix(id.trim_start_matches("0x"), 16).ok()?;
            Some((id, data.to_string()))
        })
        .collect()
}

/// Whether `part` is a contiguous run of `whole`.
fn contiguous_in<T: PartialEq>(part: &[T], whole: &[T]) -> bool {
    part.is_empty() || whole.windows(part.len()).any(|w| w == part)
}

/// `None`: no id is shared, nothing to check.
fn broadcast(ctx: &mut Ctx) -> Result<Option<Findings>, String> {
    let shared = shared_ids(ctx, 2)?;
    if shared.is_empty() {
        return Ok(None);
    }
    let dir = ctx.scratch("can-bc")?;
    let script = dir.join("can_script.txt");
    let mut text = String::from("bitrate 500000\ntrace bus\n");
    for (i, id) in shared.iter().enumerate() {
        text.push_str(&format!(
            "periodic bc{i} {id:#x} {} {} 0{i} count\n",
            10_000 * shared.len(),
            4000 + 500 * i
        ));
    }
    std::fs::write(&script, text).map_err(|e| format!("{}: {e}", script.display()))?;
    let r = ctx.run(
        Variant {
            guests: &[
                ("cluster", "can_cluster"),
                ("infotainment", "can_infotainment"),
            ],
            files: &[("can_script", "can_driver", script.as_path(), true)],
            ..Variant::attack(None)
        },
        CAN_RUN,
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    let on_bus: Vec<(u32, String)> = bus_frames(&r)
        .into_iter()
        .filter(|(id, _)| shared.contains(id))
        .collect();
    let mut errs = Vec::new();
    let mut ev = vec![format!(
        "ids {shared:x?} pass more than one guest's filters: {} such frames on the bus (100/s)",
        on_bus.len()
    )];
    for g in ["cluster", "infotainment"] {
        let got: Vec<(u32, String)> = received(&r, g)
            .into_iter()
            .filter(|(id, _)| shared.contains(id))
            .collect();
        ev.push(format!(
            "{g}: {} broadcast frames received, first {:?}, last {:?}",
            got.len(),
            got.first(),
            got.last()
        ));
        // Each guest listens for 1.5 s: at 100 frames/s that is ~150.
        if got.len() < 50 {
            errs.push(format!(
                "{g} received {} broadcast frames in its 1.5 s of listening ({} on the bus)",
                got.len(),
                on_bus.len()
            ));
        } else if !contiguous_in(&got, &on_bus) {
            errs.push(format!(
                "{g}'s broadcast frames are not a gapless run of the bus's (lost, duplicated or reordered)"
            ));
        }
    }
    errs.extend(
        others_affected(ctx, &r)?
            .into_iter()
            .map(|e| format!("CAN: {e}")),
    );
    Ok(Some((errs, ev)))
}

fn count(r: &RunResult, exact: &str) -> usize {
    r.lines.iter().filter(|l| *l == exact).count()
}

/// A frame the bus model traced: (id, data hex).
fn bus_frames(r: &RunResult) -> Vec<(u32, String)> {
    let field = |l: &str, k: &str| -> Option<String> {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(k).and_then(|x| x.strip_prefix('=')))
            .map(str::to_string)
    };
    r.lines
        .iter()
        .filter_map(|l| l.strip_prefix("[can_driver] bus "))
        .filter_map(|l| {
            let id = field(l, "id")?;
            let id = u32::from_str_radix(id.trim_start_matches("0x"), 16).ok()?;
            Some((id, field(l, "data").unwrap_or_default()))
        })
        .collect()
}

/// Monitor reports about PDs (not guests) the unattacked system did not
/// also get, and a run that ended before its time.
fn others_affected(ctx: &mut Ctx, r: &RunResult) -> Result<Vec<String>, String> {
    let quiet = ctx.reference_run()?;
    let vms: Vec<String> = ctx
        .sd
        .all_pds()
        .iter()
        .filter_map(|p| p.virtual_machine.as_ref().map(|v| v.name.clone()))
        .collect();
    let mut errs = Vec::new();
    if r.status != 124 {
        errs.push(format!(
            "the system stopped before the end of the run (status {})",
            r.status
        ));
    }
    for (pd, t) in &r.monitor {
        // blk_driver without a disk image exits in the unattacked run;
        // here it has one.
        if pd != UNTRUSTED_PD
            && !vms.contains(pd)
            && !quiet.monitor.contains(&(pd.clone(), t.clone()))
        {
            errs.push(format!("monitor about {pd}: {t}"));
        }
    }
    Ok(errs)
}

/// Failures and evidence of one scenario.
type Findings = (Vec<String>, Vec<String>);

type Part = Result<Findings, String>;

/// Infotainment sends the cluster's id 0x300 three times: each must be
/// refused by can_virt's whitelist, counted, and never reach the bus, while
/// its own 0x480 and the cluster's own 0x300 frames do.
fn can_whitelist(ctx: &mut Ctx) -> Part {
    let dir = ctx.scratch("can")?;
    let script = dir.join("can_script.txt");
    std::fs::write(&script, "bitrate 500000\ntrace bus\n")
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let r = ctx.run(
        Variant {
            guests: &[
                ("cluster", "can_cluster"),
                ("infotainment", "can_infotainment"),
            ],
            files: &[("can_script", "can_driver", script.as_path(), true)],
            ..Variant::attack(None)
        },
        CAN_RUN,
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut errs = Vec::new();
    let mut ev = Vec::new();
    let refused = count(&r, "[infotainment] can-guest: tx 0x300 refused");
    let own = count(&r, "[infotainment] can-guest: tx 0x480 ok");
    let cluster = count(&r, "[cluster] can-guest: tx 0x300 ok");
    let bus = bus_frames(&r);
    let forged = bus
        .iter()
        .filter(|(id, d)| *id == 0x300 && d.starts_with("ba"))
        .count();
    let genuine = bus
        .iter()
        .filter(|(id, d)| *id == 0x300 && d.starts_with("c1"))
        .count();
    let counted = r
        .lines
        .iter()
        .filter(|l| l.starts_with("[can_virt]") && l.contains("dropped by its TX whitelist"))
        .filter_map(|l| {
            l.split(": ")
                .nth(2)
                .and_then(|x| x.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0);
    ev.push(format!(
        "CAN: infotainment's 3 frames with the cluster's id 0x300: {refused} refused, {forged} on the bus, can_virt counted {counted} dropped by the whitelist; its own 0x480: {own} of 3 sent; the cluster's own 0x300: {cluster} of 3 sent, {genuine} on the bus ({} frames traced)",
        bus.len()
    ));
    if refused != 3 {
        errs.push(format!(
            "CAN: infotainment's 0x300 refused {refused} times, not 3"
        ));
    }
    if forged > 0 {
        errs.push(format!(
            "CAN: {forged} of infotainment's 0x300 frames reached the bus"
        ));
    }
    if counted == 0 {
        errs.push("CAN: can_virt did not count a whitelist drop".into());
    }
    if own != 3 || cluster != 3 || genuine != 3 {
        errs.push(format!(
            "CAN: legitimate frames did not all pass (infotainment 0x480 {own}/3, cluster 0x300 {cluster}/3, on the bus {genuine}/3): the path is broken, which proves nothing about the whitelist"
        ));
    }
    errs.extend(
        others_affected(ctx, &r)?
            .into_iter()
            .map(|e| format!("CAN: {e}")),
    );
    Ok((errs, ev))
}

/// The extents of `blk_virt`'s clients from its configuration region, and
/// which one is infotainment's (by the channel its VMM uses).
fn blk_layout(ctx: &Ctx) -> Result<(Vec<(u64, u64)>, usize), String> {
    let mr = ctx
        .sd
        .memory_regions
        .iter()
        .find(|m| m.name == "blk_virt_config")
        .ok_or("no blk_virt_config region")?;
    let Some(bulkhead_sdf::model::Prefill::Path(p)) = &mr.prefill else {
        return Err("blk_virt_config has no prefill file".into());
    };
    let bytes = std::fs::read(ctx.base.join(p)).map_err(|e| format!("{p}: {e}"))?;
    let region = bulkhead_config::ConfigRegion::parse(&bytes, "blk_virt")
        .map_err(|e| format!("{p}: {e:?}"))?;
    let cfg = VirtConfig::parse(&region).map_err(|e| format!("{p}: {e:?}"))?;
    let chan = ctx
        .sd
        .channels
        .iter()
        .find_map(|c| match (&c.ends[0], &c.ends[1]) {
            (a, b) if a.pd == UNTRUSTED_PD && b.pd == "blk_virt" => Some(b.id),
            (a, b) if b.pd == UNTRUSTED_PD && a.pd == "blk_virt" => Some(a.id),
            _ => None,
        })
        .ok_or("no channel between infotainment_vmm and blk_virt")?;
    let clients = cfg.clients();
    let info = clients
        .iter()
        .position(|c| u64::from(c.channel) == chan)
        .ok_or("blk_virt has no client on infotainment_vmm's channel")?;
    Ok((
        clients
            .iter()
            .map(|c| (c.policy.start, c.policy.size))
            .collect(),
        info,
    ))
}

/// SHA-256 of the image outside `[start, end)`: of every data extent there
/// (offset and bytes; `SEEK_DATA`/`SEEK_HOLE`, so the sparse zeros of a
/// multi-GiB image cost nothing), so a write anywhere outside shows.
fn hash_outside(img: &Path, start: u64, end: u64) -> Result<String, String> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::open(img).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let fd = f.as_raw_fd();
    let seek = |off: u64, whence: i32| -> Option<u64> {
        let off = libc::off_t::try_from(off).ok()?;
        // SAFETY: lseek on a descriptor this function owns (through `f`).
        let r = unsafe { libc::lseek(fd, off, whence) };
        u64::try_from(r).ok()
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (a, b) in [(0, start), (end, len)] {
        let mut at = a;
        while at < b {
            // No data after `at` (ENXIO): the rest is a hole.
            let Some(data) = seek(at, libc::SEEK_DATA) else {
                break;
            };
            if data >= b {
                break;
            }
            let hole = seek(data, libc::SEEK_HOLE).unwrap_or(b).min(b);
            f.seek(SeekFrom::Start(data)).map_err(|e| e.to_string())?;
            h.update(data.to_le_bytes());
            let mut left = hole - data;
            while left > 0 {
                let n = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
                f.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
                h.update(&buf[..n]);
                left -= n as u64;
            }
            at = hole;
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Infotainment writes across and past the end of its partition and reads
/// past it: every request refused, and nothing outside its partition on
/// the disk changed (the cluster's partition, the partition table).
fn storage_bounds(ctx: &mut Ctx) -> Part {
    let (parts, info) = blk_layout(ctx)?;
    let dir = ctx.scratch("blk")?;
    let img: PathBuf = dir.join("disk.img");
    let mut sorted = parts.clone();
    sorted.sort_unstable();
    let end = sorted.iter().map(|(s, z)| s + z).max().unwrap_or(0);
    let specs: Vec<_> = sorted
        .iter()
        .enumerate()
        .map(|(i, (_, z))| drv_host_blk_file::gpt::PartSpec {
            name: format!("part{i}"),
            sectors: z / 512,
        })
        .collect();
    let placed = drv_host_blk_file::gpt::build(&img, (end >> 9) + 2048, &specs)
        .map_err(|e| format!("building the disk image: {e}"))?;
    if placed
        .iter()
        .zip(&sorted)
        .any(|(p, (s, z))| p.first * 512 != *s || p.sectors * 512 != *z)
    {
        return Err("the GPT builder cannot reproduce blk_virt's partition extents".into());
    }
    let (istart, isize) = parts[info];
    let before = hash_outside(&img, istart, istart + isize)?;
    let r = ctx.run(
        Variant {
            guests: &[("infotainment", "blk_oob")],
            files: &[("disk0", "blk_driver", img.as_path(), false)],
            ..Variant::attack(None)
        },
        BLK_RUN,
    )?;
    let after = hash_outside(&img, istart, istart + isize)?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut errs = Vec::new();
    let refused = r
        .lines
        .iter()
        .filter(|l| l.starts_with("[infotainment] oob ") && l.contains(": refused"))
        .count();
    let accepted: Vec<&String> = r
        .lines
        .iter()
        .filter(|l| l.starts_with("[infotainment] FAILED"))
        .collect();
    let ev = vec![format!(
        "storage: infotainment's 4 requests past its partition ({} MiB at {} MiB): {refused} refused, {} accepted; disk outside its partition sha256 {before} -> {after}",
        isize >> 20,
        istart >> 20,
        accepted.len()
    )];
    if refused != 4 {
        errs.push(format!(
            "storage: {refused} of infotainment's 4 out-of-partition requests refused{}",
            accepted
                .iter()
                .map(|l| format!(" [{l}]"))
                .collect::<String>()
        ));
    }
    if before != after {
        errs.push("storage: the disk outside infotainment's partition changed".into());
    }
    errs.extend(
        others_affected(ctx, &r)?
            .into_iter()
            .map(|e| format!("storage: {e}")),
    );
    Ok((errs, ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_trace_lines_are_read_back() {
        let r = RunResult {
            lines: vec![
                "[can_driver] bus t=5 id=0x300 len=2 data=ba00 from=can_driver".into(),
                "[can_driver] bus t=6 id=0x480 len=0 data= from=can_driver".into(),
                "[can_driver] can_driver: 500000 bit/s classic".into(),
                "[infotainment] can-guest: tx 0x300 refused".into(),
            ],
            ..RunResult::default()
        };
        assert_eq!(
            bus_frames(&r),
            vec![(0x300, "ba00".to_string()), (0x480, String::new())]
        );
        assert_eq!(count(&r, "[infotainment] can-guest: tx 0x300 refused"), 1);
    }

    #[test]
    fn a_gap_or_reorder_is_not_a_contiguous_run() {
        let bus = [1, 2, 3, 4, 5];
        assert!(contiguous_in(&[2, 3, 4], &bus));
        assert!(!contiguous_in(&[2, 4], &bus));
        assert!(!contiguous_in(&[3, 2], &bus));
        assert!(!contiguous_in(&[2, 2, 3], &bus));
    }

    #[test]
    fn a_write_outside_the_partition_changes_the_hash() {
        let dir = std::env::temp_dir().join(format!("bh-sep-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let img = dir.join("d.img");
        let f = std::fs::File::create(&img).expect("image");
        f.set_len(8 << 20).expect("sparse");
        let h0 = hash_outside(&img, 1 << 20, 2 << 20).expect("hash");
        let write_at = |off: u64| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&img)
                .expect("open");
            f.write_all_at(&[1, 2, 3], off).expect("write");
        };
        // Inside the excluded range: unchanged.
        write_at(1 << 20);
        assert_eq!(hash_outside(&img, 1 << 20, 2 << 20).expect("hash"), h0);
        // Past it: changed.
        write_at(5 << 20);
        assert_ne!(hash_outside(&img, 1 << 20, 2 << 20).expect("hash"), h0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
