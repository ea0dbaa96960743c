//! Safety stand-in (cluster_vmm): on each 1 ms timer tick writes a sequence
//! number into `can_cluster_req` and notifies can_virt; the echo in
//! `can_cluster_resp` closes the round trip. Measures the round-trip time,
//! overruns (a tick finds the previous request unanswered), lost wake-ups
//! (a request unanswered for 10 periods), mismatched sequence numbers, the largest gap between ticks
//! and the ticks more than 2 ms after the previous one (S keeps its period) and a checksum of `cluster_ram` before and after.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};
use bulkhead_separation_pds::{now_ns, LAT_PER_LINE, S_TICKS, S_WARMUP};

const CAN: Channel = Channel::new(4);
const TIMER: Channel = Channel::new(5);

/// A request unanswered for this many periods counts as a lost wake-up
/// (a reply merely later than the next tick is an overrun).
const LOST_AFTER: u64 = 10;

/// Periods the path may take to come up before S gives up.
const BOOT_LIMIT: u64 = 5000;

/// A tick later than this after the previous one is late (period 1 ms).
const LATE_GAP_NS: u64 = 2_000_000;

/// Samples live in .bss: a PD has no allocator.
static LAT: [AtomicU64; S_TICKS] = [const { AtomicU64::new(0) }; S_TICKS];

struct Cluster {
    req: Region,
    resp: Region,
    ram: Region,
    tick: u64,
    t0: u64,
    outstanding: bool,
    answered: usize,
    lost: u64,
    overrun: u64,
    streak: u64,
    mismatched: u64,
    last_tick: u64,
    max_gap: u64,
    late: u64,
    /// The tick whose request was answered first (0: not yet).
    up: u64,
    sum0: u64,
}

/// FNV-1a over the region's 64-bit words.
fn checksum(r: &Region) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..r.size() / 8 {
        let w = r.read_u64(i * 8).unwrap_or(0);
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Handler for Cluster {
    fn init() -> Self {
        let (Ok(req), Ok(resp), Ok(ram)) = (
            Region::get("can_cluster_req"),
            Region::get("can_cluster_resp"),
            Region::get("cluster_ram"),
        ) else {
            debug_println!("sep: S missing a region");
            halt(2)
        };
        for i in 0..ram.size() / 8 {
            let _ = ram.write_u64(i * 8, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        let sum0 = checksum(&ram);
        let _ = TIMER.irq_ack();
        Cluster {
            req,
            resp,
            ram,
            tick: 0,
            t0: 0,
            outstanding: false,
            answered: 0,
            lost: 0,
            overrun: 0,
            streak: 0,
            mismatched: 0,
            last_tick: 0,
            max_gap: 0,
            late: 0,
            up: 0,
            sum0,
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(CAN) {
            let seq = self.resp.read_u64(0).unwrap_or(u64::MAX);
            if self.outstanding && seq == self.tick {
                let lat = now_ns().saturating_sub(self.t0);
                if self.up == 0 {
                    self.up = self.tick;
                }
                let n = self.index();
                if n > S_WARMUP && n - S_WARMUP <= S_TICKS {
                    LAT[n - S_WARMUP - 1].store(lat, Ordering::Relaxed);
                    self.answered += 1;
                }
                self.outstanding = false;
                self.streak = 0;
            } else if seq > self.tick {
                // A reply to a request never made: corruption on the path.
                self.mismatched += 1;
            }
            // seq < tick: can_virt woke late and answered an older request
            // it had read before the new one was written; the new request
            // is still outstanding.
        }
        if !channels.contains(TIMER) {
            return;
        }
        let now = now_ns();
        let n = self.index();
        if self.up == 0 && self.tick >= BOOT_LIMIT {
            debug_println!("sep: the safety path never answered in {BOOT_LIMIT} periods");
            self.finish();
        }
        if n > S_WARMUP {
            let gap = now.saturating_sub(self.last_tick);
            self.max_gap = self.max_gap.max(gap);
            if gap > LATE_GAP_NS {
                self.late += 1;
            }
            if self.outstanding {
                self.overrun += 1;
                self.streak += 1;
                if self.streak == LOST_AFTER {
                    self.lost += 1;
                    debug_println!(
                        "sep: request {} unanswered for {} periods (last reply {}, {} ns since the request)",
                        self.tick,
                        LOST_AFTER,
                        self.resp.read_u64(0).unwrap_or(0),
                        now.saturating_sub(self.t0)
                    );
                }
            }
        }
        self.last_tick = now;
        if n >= S_WARMUP + S_TICKS {
            self.finish();
        }
        self.tick += 1;
        let _ = self.req.write_u64(0, self.tick);
        self.outstanding = true;
        self.t0 = now_ns();
        let _ = CAN.notify();
        let _ = TIMER.irq_ack();
    }
}

impl Cluster {
    /// Ticks since the path first answered (0 before): the measurement
    /// starts once every PD on the path is in its event loop, since the
    /// host board starts PDs one after another.
    fn index(&self) -> usize {
        if self.up == 0 {
            0
        } else {
            usize::try_from(self.tick - self.up).unwrap_or(usize::MAX)
        }
    }

    fn finish(&self) -> ! {
        let sum1 = checksum(&self.ram);
        debug_println!(
            "sep: S ticks={} answered={} overrun={} lost={} mismatched={} max_gap_ns={} late={} up_after={} checksum_start={:#x} checksum_end={:#x}",
            S_TICKS,
            self.answered,
            self.overrun,
            self.lost,
            self.mismatched,
            self.max_gap,
            self.late,
            self.up,
            self.sum0,
            sum1
        );
        let mut i = 0;
        while i < S_TICKS {
            let end = (i + LAT_PER_LINE).min(S_TICKS);
            let mut line = Line::default();
            for s in &LAT[i..end] {
                line.push(s.load(Ordering::Relaxed));
            }
            debug_println!("sep: lat{}", line.as_str());
            i = end;
        }
        halt(0)
    }
}

/// A fixed-size text buffer for one `sep: lat` line (no allocator here).
struct Line {
    buf: [u8; 16 * 21],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Line {
            buf: [0; 16 * 21],
            len: 0,
        }
    }
}

impl Line {
    fn push(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if self.len + n + 1 > self.buf.len() {
            return;
        }
        self.buf[self.len] = b' ';
        self.len += 1;
        for d in digits[..n].iter().rev() {
            self.buf[self.len] = *d;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

bulkhead_runtime::protection_domain!(Cluster);
