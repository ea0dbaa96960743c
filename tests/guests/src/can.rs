//! What the CAN test guests share: a `virtio-drivers` `Transport`
//! (`bulkhead-virtio-testkit`'s `TrapTransport` over [`TrapMmio`]) whose
//! every register access is a trapping load or store at the CAN slot
//! (`virtio-drivers`' own `MmioTransport` refuses device id 36, which it
//! does not know), the guest-side driver over it, and the line format the
//! tests read (`can-guest: …` on stderr, shown as `[<vm>] …`).

// Test guests are x86_64 Linux programs (the host board): guest-physical
// addresses (u64) and pointers (usize) are the same width, and register
// offsets and values fit their fields by the virtio-mmio layout.
#![allow(clippy::cast_possible_truncation)]

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::{setup, wait_irq, watchdog, GuestHal};
use bulkhead_can_frame::{CanId, Frame};
use bulkhead_virtio::spec::reg;
use bulkhead_virtio_can_driver::{VirtioCanDriver, Wanted};
use bulkhead_virtio_testkit::{Registers, TrapTransport};
use bulkhead_vmm_host::layout;
use virtio_drivers::transport::Transport;

/// The CAN class's slot (compose: class index 3).
pub const CAN_SLOT: u64 = 3;
/// TX and RX buffers of the guest driver.
pub const BUFS: usize = 16;

/// Register accesses to one virtio-mmio slot, each of which traps.
pub struct TrapMmio {
    base: NonNull<u32>,
}

impl TrapMmio {
    /// The slot `k` of the VMM's layout.
    pub fn slot(k: u64) -> Self {
        let p = layout::slot(k) as usize as *mut u32;
        Self {
            base: NonNull::new(p).unwrap_or(NonNull::dangling()),
        }
    }

    fn r(&self, off: u64) -> u32 {
        let addr = self.base.as_ptr() as usize + off as usize;
        let v: u32;
        // SAFETY: a register of the slot, in the MMIO range the guest
        // reserved with no access: the load traps into the VMM, which
        // emulates it (or aborts this guest). A plain `mov` on purpose:
        // the host board decodes only mov/movzx, and an optimised
        // `read_volatile` may become `test dword ptr [..]`.
        unsafe {
            core::arch::asm!("mov {v:e}, dword ptr [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
        };
        v
    }

    /// A `width`-byte load (1, 2 or 4), zero-extended: `movzx` or `mov`.
    fn r_width(&self, off: u64, width: usize) -> u32 {
        let addr = self.base.as_ptr() as usize + off as usize;
        let v: u32;
        match width {
            // SAFETY: as in `r`, a trapping load the host board decodes.
            1 => unsafe {
                core::arch::asm!("movzx {v:e}, byte ptr [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
            },
            // SAFETY: as in `r`, a trapping load the host board decodes.
            2 => unsafe {
                core::arch::asm!("movzx {v:e}, word ptr [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
            },
            _ => return self.r(off),
        }
        v
    }

    fn w(&mut self, off: u64, v: u32) {
        let addr = self.base.as_ptr() as usize + off as usize;
        // SAFETY: as in `r`, a trapping store, a plain `mov`.
        unsafe {
            core::arch::asm!("mov dword ptr [{a}], {v:e}", a = in(reg) addr, v = in(reg) v, options(nostack))
        };
    }

    fn w64(&mut self, lo: u64, v: u64) {
        self.w(lo, (v & 0xffff_ffff) as u32);
        self.w(lo + 4, (v >> 32) as u32);
    }

    /// The slot's virtio magic and device id.
    pub fn ids(&self) -> (u32, u32) {
        (self.r(reg::MAGIC_VALUE), self.r(reg::DEVICE_ID))
    }
}

impl Registers for TrapMmio {
    fn read(&self, off: u64, width: u8) -> u64 {
        match width {
            1 | 2 => u64::from(self.r_width(off, usize::from(width))),
            // The host board decodes up to 32-bit moves: a 64-bit field is
            // two loads.
            8 => u64::from(self.r(off)) | u64::from(self.r(off + 4)) << 32,
            _ => u64::from(self.r(off)),
        }
    }

    fn write(&mut self, off: u64, width: u8, value: u64) {
        match width {
            8 => self.w64(off, value),
            // Only 32-bit registers are written (the CAN config space is
            // read-only: one le16 status).
            _ => self.w(off, value as u32),
        }
    }
}

/// The guest driver type.
pub type Driver = VirtioCanDriver<GuestHal, TrapTransport<TrapMmio>, BUFS>;

/// Prints one line the tests read.
pub fn say(s: &str) {
    eprintln!("can-guest: {s}");
}

fn die(s: &str) -> ! {
    say(&format!("FAILED: {s}"));
    std::process::exit(2)
}

/// Sets the guest up and starts its CAN controller.
pub fn start() -> Driver {
    if setup_ram().is_none() {
        die("setup failed");
    }
    start_after_setup()
}

/// Maps the guest's memory ([`setup`]); returns its RAM size.
pub fn setup_ram() -> Option<u64> {
    watchdog(30);
    match setup() {
        Ok((_, size)) => Some(size),
        Err(e) => {
            say(&format!("FAILED: setup: {e:?}"));
            None
        }
    }
}

/// Finds the CAN device and starts its controller (after [`setup_ram`]).
pub fn start_after_setup() -> Driver {
    let t = TrapMmio::slot(CAN_SLOT);
    let (magic, id) = t.ids();
    if magic != 0x7472_6976 || id != 36 {
        die(&format!(
            "no virtio-can in slot {CAN_SLOT} (magic {magic:#x}, id {id})"
        ));
    }
    let wanted = Wanted {
        fd: false,
        ..Wanted::default()
    };
    let mut d =
        Driver::new(TrapTransport(t), wanted).unwrap_or_else(|e| die(&format!("init: {e:?}")));
    d.start().unwrap_or_else(|e| die(&format!("start: {e:?}")));
    say("started");
    d
}

/// A classic frame (ids above 0x7FF are 29-bit).
pub fn frame(id: u32, data: &[u8]) -> Frame {
    let cid = if id > 0x7ff {
        CanId::extended(id)
    } else {
        CanId::standard(id as u16)
    };
    cid.and_then(|c| Frame::classic(c, data))
        .unwrap_or_else(|e| die(&format!("frame {id:#x}: {e}")))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Takes completions and received frames; prints each received frame.
/// Returns finished TX slots with their result.
pub fn drain(d: &mut Driver) -> Vec<(usize, bool)> {
    let mut done = Vec::new();
    while let Some(t) = d.poll_tx() {
        done.push((t.slot, t.ok));
    }
    while let Ok(Some(f)) = d.recv() {
        say(&format!("rx {:#x} {}", f.id().raw(), hex(f.data())));
    }
    done
}

/// Sends `f` and waits for its result (true: on the bus).
pub fn send_wait(d: &mut Driver, f: &Frame) -> bool {
    let slot = d.send(f).unwrap_or_else(|e| die(&format!("send: {e:?}")));
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        for (s, ok) in drain(d) {
            if s == slot {
                return ok;
            }
        }
        if Instant::now() > until {
            die("no TX completion in 5 s");
        }
        if wait_irq(1) {
            let _ = d.transport_mut().ack_interrupt();
        }
    }
}

/// Receives (printing every frame) for `dur`.
pub fn listen(d: &mut Driver, dur: Duration) {
    let until = Instant::now() + dur;
    while Instant::now() < until {
        drain(d);
        if wait_irq(1) {
            let _ = d.transport_mut().ack_interrupt();
        }
    }
}

/// The end of a guest's run: `done`, then idle until the run ends.
pub fn finish() -> ! {
    say("done");
    watchdog(0);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Monotonic wall time in ns (the clock `can_driver` stamps frames with).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The benchmark guests' index: the bench systems give guest `i`
/// `4 + 2·i` MiB of RAM (`systems/can-bench/*.toml`), so a guest knows
/// which id it owns (0x100 + i) without any other channel.
pub fn bench_index(ram: u64) -> u32 {
    ((ram >> 21).saturating_sub(2)) as u32
}

/// Sends 8-byte frames with id `0x100 + index` for `secs` seconds keeping
/// up to `depth` in flight, then prints `can-lat SEQ SENT_NS DONE_NS` per
/// frame (data: index, then the sequence number, little-endian) and
/// `done`.
pub fn load(depth: usize, secs: u64) -> ! {
    let ram = match setup_ram() {
        Some(r) => r,
        None => die("no RAM size"),
    };
    let index = bench_index(ram);
    let mut d = start_after_setup();
    let id = 0x100 + index;
    let mut inflight: Vec<Option<(u32, u64)>> = vec![None; BUFS];
    let mut log: Vec<(u32, u64, u64)> = Vec::new();
    let mut seq = 0u32;
    let mut refused = 0u32;
    let end = now_ns() + secs * 1_000_000_000;
    loop {
        let sending = now_ns() < end;
        while sending && inflight.iter().flatten().count() < depth {
            let mut data = [0u8; 8];
            data[0] = index as u8;
            data[1..5].copy_from_slice(&seq.to_le_bytes());
            let t = now_ns();
            match d.send(&frame(id, &data)) {
                Ok(slot) => {
                    inflight[slot] = Some((seq, t));
                    seq += 1;
                }
                Err(_) => break,
            }
        }
        for (slot, ok) in drain(&mut d) {
            let t = now_ns();
            if let Some((s, sent)) = inflight.get_mut(slot).and_then(Option::take) {
                if ok {
                    log.push((s, sent, t));
                } else {
                    refused += 1;
                }
            }
        }
        if !sending && inflight.iter().all(Option::is_none) {
            break;
        }
        if wait_irq(1) {
            let _ = d.transport_mut().ack_interrupt();
        }
    }
    watchdog(30);
    say(&format!(
        "load index={index} id={id:#x} depth={depth} sent={} refused={refused}",
        log.len()
    ));
    for (s, a, b) in &log {
        eprintln!("can-lat {s} {a} {b}");
    }
    finish()
}
