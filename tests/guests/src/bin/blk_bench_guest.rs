//! A test guest that measures 4 KiB random-read IOPS through the whole
//! host-board storage path: its virtio-blk device (trapped MMIO → VMM PD)
//! → `blk_virt` → `blk_driver` → the disk image.
//!
//! `virtio-drivers`' `VirtIOBlk` has a 16-entry queue, too small for queue
//! depth 32, so this guest keeps its own split virtqueue of 128 entries in
//! guest RAM (three descriptors per request) and uses `virtio-drivers`'
//! unmodified `MmioTransport` for the register accesses of set-up and for
//! notifying. It posts up to QD reads, notifies once per batch, looks at
//! the used ring for up to [`POLL`], else sleeps until the device
//! interrupts (the supervisor's eventfd) and acknowledges with one
//! register write, collects every finished read from the used ring and
//! reposts as many — the way Linux's virtio_blk with hybrid polling keeps a
//! queue full. Per batch that is one or two trapped accesses (notify,
//! acknowledge), whatever the batch size.
//!
//! The bench command (`tests/host-board`, `blk_bench`) fills every 4 KiB
//! block of the guest's partition with its own block number in the first 8
//! bytes; every read is checked. Phases alternate QD 1 and QD 32
//! ([`ROUNDS`] each, [`PHASE`] long after a warm-up) and print on stderr:
//! `blk-bench: qd=<q> round=<r> reads=<n> secs=<s> iops=<i> (…)` with the
//! phase's trapped accesses, interrupts and time asleep, then
//! `blk-bench: done`.
// Guest-physical addresses are identity-mapped pointers (x86_64 host).
#![allow(clippy::cast_possible_truncation)]

use std::ptr::{read_volatile, write_volatile};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use std::ptr::NonNull;

use bulkhead_test_guests::{setup, wait_irq, watchdog, GuestHal};
use bulkhead_vmm_host::{layout, Class};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal};

/// Queue size (the device's maximum, `vmm/devices` blk `QUEUE_SIZE`).
const QS: u16 = 128;
/// Request slots (three descriptors each).
const SLOTS: u16 = 32;
const BLOCK: u64 = 4096;
/// Measured time per phase.
const PHASE: Duration = Duration::from_secs(3);
/// Unmeasured lead-in per phase.
const WARMUP: Duration = Duration::from_millis(300);
/// How long the guest polls the used ring before sleeping on the
/// interrupt (a polling driver's window, as Linux's blk-mq hybrid polling).
const POLL: Duration = Duration::from_micros(150);
/// Rounds of (QD 1, QD 32).
const ROUNDS: u32 = 2;
/// Feature bits (virtio 1.2 §6, §5.2.3): VERSION_1 and RO (accepted so a
/// read-only partition's device still initialises).
const F_VERSION_1: u64 = 1 << 32;
const F_RO: u64 = 1 << 5;
/// The InterruptACK register (virtio-mmio, virtio 1.2 §4.2.2).
const INTERRUPT_ACK: u64 = 0x064;
/// Request types and flags (virtio 1.2 §5.2.6, §2.7.5).
const VIRTIO_BLK_T_IN: u32 = 0;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

fn fail(what: &str) -> ! {
    eprintln!("blk-bench: {what}");
    std::process::exit(2)
}

/// The split virtqueue and per-slot buffers, all in guest RAM.
struct Queue {
    desc: *mut u8,
    avail: *mut u8,
    used: *const u8,
    /// Per slot: 16-byte header at +0, status byte at +16 (32 bytes each).
    hdr: *mut u8,
    data: *mut u8,
    avail_idx: u16,
    used_seen: u16,
    free: Vec<u16>,
    /// Block number each busy slot reads.
    want: [u64; SLOTS as usize],
}

fn dma(pages: usize) -> *mut u8 {
    let (pa, va) = GuestHal::dma_alloc(pages, BufferDirection::Both);
    // Identity-mapped guest RAM: physical = virtual.
    debug_assert_eq!(pa as usize, va.as_ptr() as usize);
    va.as_ptr()
}

impl Queue {
    fn new() -> Queue {
        Queue {
            desc: dma(1),
            avail: dma(1),
            used: dma(3),
            hdr: dma(1),
            data: dma(usize::from(SLOTS)),
            avail_idx: 0,
            used_seen: 0,
            free: (0..SLOTS).rev().collect(),
            want: [0; SLOTS as usize],
        }
    }

    fn set_desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        // SAFETY: descriptor `i` < QS lies in the one page of the table
        // (QS × 16 = 2048 bytes), guest RAM this guest owns.
        unsafe {
            let d = self.desc.add(16 * usize::from(i));
            write_volatile(d.cast::<u64>(), addr);
            write_volatile(d.add(8).cast::<u32>(), len);
            write_volatile(d.add(12).cast::<u16>(), flags);
            write_volatile(d.add(14).cast::<u16>(), next);
        }
    }

    /// Posts a 4 KiB read of `block` (partition-relative) in a free slot.
    fn post(&mut self, block: u64) {
        let Some(h) = self.free.pop() else { return };
        self.want[usize::from(h)] = block;
        // SAFETY: slot `h` < SLOTS: its 32 header bytes lie in the header
        // page (SLOTS × 32 = 1024 bytes).
        let hdr = unsafe { self.hdr.add(32 * usize::from(h)) };
        // SAFETY: as above; header fields: type, reserved, sector.
        unsafe {
            write_volatile(hdr.cast::<u32>(), VIRTIO_BLK_T_IN);
            write_volatile(hdr.add(4).cast::<u32>(), 0);
            write_volatile(hdr.add(8).cast::<u64>(), block * (BLOCK / 512));
            write_volatile(hdr.add(16), 0xFF);
        }
        // SAFETY: slot `h`'s 4 KiB of the data pages.
        let data = unsafe { self.data.add(BLOCK as usize * usize::from(h)) };
        let d0 = 3 * h;
        self.set_desc(d0, hdr as u64, 16, DESC_F_NEXT, d0 + 1);
        self.set_desc(
            d0 + 1,
            data as u64,
            BLOCK as u32,
            DESC_F_NEXT | DESC_F_WRITE,
            d0 + 2,
        );
        self.set_desc(d0 + 2, hdr as u64 + 16, 1, DESC_F_WRITE, 0);
        // SAFETY: the avail ring's entry and index lie in its page (4 + 2 ×
        // QS bytes); the fence orders the entry before the index (virtio
        // §2.7.13: the device may read the entry once it sees the index).
        unsafe {
            let slot = self.avail.add(4 + 2 * usize::from(self.avail_idx % QS));
            write_volatile(slot.cast::<u16>(), d0);
            self.avail_idx = self.avail_idx.wrapping_add(1);
            fence(Ordering::SeqCst);
            write_volatile(self.avail.add(2).cast::<u16>(), self.avail_idx);
        }
    }

    /// Collects finished reads, checking each; returns how many.
    fn reap(&mut self) -> u64 {
        // SAFETY: the used ring's index at byte 2 of its pages.
        let idx = unsafe { read_volatile(self.used.add(2).cast::<u16>()) };
        fence(Ordering::SeqCst);
        let mut n = 0;
        while self.used_seen != idx {
            // SAFETY: used element `used_seen % QS` lies in the used ring
            // (4 + 8 × QS bytes).
            let head = unsafe {
                read_volatile(
                    self.used
                        .add(4 + 8 * usize::from(self.used_seen % QS))
                        .cast::<u32>(),
                )
            };
            let h = u16::try_from(head / 3).unwrap_or(u16::MAX);
            if head % 3 != 0 || h >= SLOTS || self.free.contains(&h) {
                fail(&format!("device returned a bad head {head}"));
            }
            // SAFETY: slot `h`'s status byte and the first 8 data bytes.
            let (status, first) = unsafe {
                (
                    read_volatile(self.hdr.add(32 * usize::from(h) + 16)),
                    read_volatile(self.data.add(BLOCK as usize * usize::from(h)).cast::<u64>()),
                )
            };
            if status != 0 {
                fail(&format!(
                    "read of block {} failed: status {status}",
                    self.want[usize::from(h)]
                ));
            }
            if first != self.want[usize::from(h)] {
                fail(&format!(
                    "block {} read back as block {first}",
                    self.want[usize::from(h)]
                ));
            }
            self.free.push(h);
            self.used_seen = self.used_seen.wrapping_add(1);
            n += 1;
        }
        n
    }

    /// Looks at the used ring for up to `limit` (yielding between looks)
    /// before the caller sleeps: a completion that comes that soon costs no
    /// interrupt and no acknowledgement trap.
    fn poll(&mut self, limit: Duration) -> u64 {
        let start = Instant::now();
        loop {
            let n = self.reap();
            if n > 0 || start.elapsed() >= limit {
                return n;
            }
            std::thread::yield_now();
        }
    }

    fn in_flight(&self) -> u16 {
        SLOTS - self.free.len() as u16
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The device: its transport and the guest-physical address of its
/// InterruptACK register.
struct Dev {
    t: MmioTransport<'static>,
    ack: *mut u32,
    /// Interrupts taken and sleeps that timed out (for the report).
    irqs: u64,
    timeouts: u64,
    /// Notifications sent.
    notifies: u64,
    /// Time spent in trapped accesses and asleep.
    trapped: Duration,
    asleep: Duration,
}

impl Dev {
    /// The virtio-blk device in the blk class's slot, once the VMM shows
    /// it (the slot reads as zeros until `blk_virt` has read the partition
    /// table): probed for up to ten seconds.
    fn probe() -> Option<Dev> {
        let at = layout::slot(Class::Blk.index() as u64);
        let header = NonNull::new(at as *mut VirtIOHeader)?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            // SAFETY: the slot is in the reserved MMIO range; every access
            // to it traps into the VMM, which emulates the device.
            if let Ok(t) = unsafe { MmioTransport::new(header, layout::SLOT_SIZE as usize) } {
                if t.device_type() == DeviceType::Block {
                    let ack = (at + INTERRUPT_ACK) as *mut u32;
                    return Some(Dev {
                        t,
                        ack,
                        irqs: 0,
                        timeouts: 0,
                        notifies: 0,
                        trapped: Duration::ZERO,
                        asleep: Duration::ZERO,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sleeps until the device interrupts (or `ms` pass), then
    /// acknowledges, so that later completions raise the line again.
    fn sleep(&mut self, ms: i32) {
        let t0 = Instant::now();
        let woke = wait_irq(ms);
        let t1 = Instant::now();
        self.asleep += t1 - t0;
        if woke {
            self.irqs += 1;
            // SAFETY: the slot's InterruptACK register; the write traps into
            // the VMM by design. Used-buffer and configuration bits.
            unsafe { write_volatile(self.ack, 0b11) };
            self.trapped += t1.elapsed();
        } else {
            self.timeouts += 1;
        }
    }
}

/// Keeps `qd` reads in flight for `warmup` + `measure`; returns the reads
/// completed during `measure` and its exact length.
fn phase(
    d: &mut Dev,
    q: &mut Queue,
    rng: &mut Rng,
    blocks: u64,
    qd: u16,
    warmup: Duration,
    measure: Duration,
) -> (u64, Duration) {
    let start = Instant::now();
    let mut counted: Option<(Instant, u64)> = None;
    let mut done = 0u64;
    loop {
        let now = Instant::now();
        if counted.is_none() && now - start >= warmup {
            counted = Some((now, done));
        }
        if let Some((t0, d0)) = counted {
            if now - t0 >= measure {
                // Let the tail finish so the next phase starts empty.
                while q.in_flight() > 0 {
                    if q.reap() == 0 {
                        d.sleep(100);
                    }
                }
                return (done - d0, now - t0);
            }
        }
        let mut posted = false;
        while q.in_flight() < qd {
            q.post(rng.next() % blocks);
            posted = true;
        }
        if posted {
            // One trapped register write for the whole batch.
            let t0 = Instant::now();
            d.t.notify(0);
            d.trapped += t0.elapsed();
            d.notifies += 1;
        }
        let mut n = q.reap();
        if n == 0 {
            n = q.poll(POLL);
        }
        if n == 0 {
            d.sleep(100);
        }
        done += n;
    }
}

fn main() {
    watchdog(60);
    if let Err(e) = setup() {
        fail(&format!("setup failed: {e:?}"));
    }
    let Some(mut d) = Dev::probe() else {
        fail("no virtio-blk device")
    };
    let t = &mut d.t;
    // Device initialisation (virtio 1.2 §3.1.1) through the transport's
    // own register accessors.
    t.set_status(DeviceStatus::empty());
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let offered = t.read_device_features();
    if offered & F_VERSION_1 == 0 {
        fail("device does not offer VERSION_1");
    }
    t.write_driver_features(offered & (F_VERSION_1 | F_RO));
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
    if !t.get_status().contains(DeviceStatus::FEATURES_OK) {
        fail("device refused the features");
    }
    if t.max_queue_size(0) < u32::from(QS) {
        fail("queue 0 is smaller than 128");
    }
    let mut q = Queue::new();
    t.queue_set(
        0,
        u32::from(QS),
        q.desc as u64,
        q.avail as u64,
        q.used as u64,
    );
    t.finish_init();
    let lo: u32 = t.read_config_space(0).unwrap_or(0);
    let hi: u32 = t.read_config_space(4).unwrap_or(0);
    let sectors = u64::from(hi) << 32 | u64::from(lo);
    let blocks = sectors / (BLOCK / 512);
    if blocks == 0 {
        fail("empty disk");
    }
    eprintln!("blk-bench: {sectors} sectors, {blocks} blocks of 4 KiB, queue {QS}");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..ROUNDS {
        for qd in [1u16, 32] {
            watchdog(60);
            (d.irqs, d.timeouts, d.notifies) = (0, 0, 0);
            (d.trapped, d.asleep) = (Duration::ZERO, Duration::ZERO);
            let (reads, secs) = phase(&mut d, &mut q, &mut rng, blocks, qd, WARMUP, PHASE);
            let secs = secs.as_secs_f64();
            eprintln!(
                "blk-bench: qd={qd} round={round} reads={reads} secs={secs:.3} iops={:.0} \
                 (notifies {}, interrupts {}, sleeps timed out {}; {:.0} ms in trapped accesses, \
                 {:.0} ms asleep)",
                reads as f64 / secs,
                d.notifies,
                d.irqs,
                d.timeouts,
                d.trapped.as_secs_f64() * 1e3,
                d.asleep.as_secs_f64() * 1e3
            );
        }
    }
    eprintln!("blk-bench: done");
    watchdog(0);
    std::process::exit(0)
}
