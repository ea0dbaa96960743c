//! `virtio_blk_driver`: the driver PD for QEMU's `virtio-blk-device` on
//! `qemu_virt_aarch64`. It owns one virtio-mmio transport page, the
//! device's IRQ and DMA, and serves blk-protocol requests from `blk_virt`
//! on the `blk_drv_*` hop.
//!
//! What the `.system` file must give it (names are the runtime's region
//! names; each map needs `setvar_vaddr="<name>_vaddr"
//! setvar_size="<name>_size"`):
//! - `virtio_blk_regs`: the 4 KiB page of eight virtio-mmio transports that
//!   holds the block device, `cached="false"`; the PD uses the first
//!   transport in the page with a block device behind it.
//! - `blk_dma`: the queue memory (≥ [`DMA_BYTES`]), `cached="false"`, at a
//!   fixed `phys_addr`, and `<setvar symbol="blk_dma_paddr"
//!   region_paddr="blk_dma"/>`.
//! - `blk_drv_req` / `blk_drv_resp` (rw): the request and response rings.
//! - `blk_drv_out` (r) and `blk_drv_in` (rw): the data windows, each at a
//!   fixed `phys_addr` (the device reaches them by physical address) with
//!   `blk_drv_out_paddr` / `blk_drv_in_paddr` setvars.
//! - channel id 0 to `blk_virt`; the transport's IRQ (GIC INTID 48 + slot)
//!   as id 1.
//!
//! On the host board there is no virtio-mmio transport: the PD says so and
//! halts (the host board's block driver is `drv-host-blk-file`).
#![no_std]
#![no_main]

use bulkhead_blk_protocol::{Request, Response, Status, WireRequest, WireResponse};
use bulkhead_ring::{Armed, Consumer, Producer, Region as RingRegion};
use core::sync::atomic::{fence, Ordering};

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region, RuntimeError};
use drv_virtio_blk_mmio::regs::{DEVICE_ID, DEVICE_ID_BLK, F_RO, MAGIC, MAGIC_VALUE, WINDOW};
use drv_virtio_blk_mmio::{
    DataWindow, DataWindows, Mmio, VirtioBlk, VolatileDma, VolatileMmio, DMA_BYTES,
};

/// Channel to `blk_virt`.
const VIRT: Channel = Channel::new(0);
/// The transport's interrupt.
const IRQ: Channel = Channel::new(1);
/// Entries in each ring of the hop (`blk_virt` attaches with the same;
/// `components/virt-blk-pd` `hop.rs` defines the hop).
const RING_CAPACITY: u32 = 64;
/// Bytes of the response page the ring owns; the info block follows.
const RING_BYTES: usize = 0x800;
/// Bytes of the request ring's page (32-byte slots: it needs the page).
const REQ_RING_BYTES: usize = 0x1000;
/// The info block this (lower) side publishes in `blk_drv_resp`: `u64
/// "BLKI" << 32 | epoch` (written last), `u64 sectors`, `u64 flags` (bit 0
/// read-only). The epoch counts the driver's starts, so `blk_virt` sees a
/// restart and resends what the driver held.
const INFO_OFFSET: usize = 0x800;
const INFO_MAGIC: u64 = 0x424c_4b49;

#[cfg(target_os = "none")]
mod paddr {
    bulkhead_sel4_abi::setvar!(
        /// Physical address of `blk_dma` (`region_paddr`).
        pub blk_dma_paddr
    );
    bulkhead_sel4_abi::setvar!(
        /// Physical address of `blk_drv_out` (`region_paddr`).
        pub blk_drv_out_paddr
    );
    bulkhead_sel4_abi::setvar!(
        /// Physical address of `blk_drv_in` (`region_paddr`).
        pub blk_drv_in_paddr
    );

    /// (dma, out, in) physical addresses as the tool patched them.
    pub fn get() -> Option<(u64, u64, u64)> {
        let p = (
            blk_dma_paddr.get(),
            blk_drv_out_paddr.get(),
            blk_drv_in_paddr.get(),
        );
        (p.0 != 0 && p.1 != 0 && p.2 != 0).then_some(p)
    }
}

#[cfg(not(target_os = "none"))]
mod paddr {
    /// The host board has no physical addresses to give a device.
    pub fn get() -> Option<(u64, u64, u64)> {
        None
    }
}

type Blk = VirtioBlk<VolatileMmio, VolatileDma>;

struct Driver {
    blk: Blk,
    requests: Consumer<'static, WireRequest>,
    responses: Producer<'static, WireResponse>,
    /// A request popped while every slot was held.
    held: Option<Request>,
    /// An answer to a malformed request that found the response ring full.
    refused: Option<Response>,
}

fn ring(name: &str, limit: usize) -> Option<RingRegion<'static>> {
    let r = Region::get(name).ok()?;
    // SAFETY: the runtime mapped `r.size()` bytes at `r.vaddr()` read-write
    // for the PD's life, and this PD touches the first `limit` bytes only
    // through the ring built on it (atomic word accesses), the info block
    // after them only through the runtime's checked accessors.
    unsafe { RingRegion::from_raw(r.vaddr() as *mut u8, r.size().min(limit)) }.ok()
}

/// Publishes the disk's size for `blk_virt`, one epoch after the last
/// (the block survives a restart of this PD: its memory is kept).
fn publish(blk: &Blk) -> Result<u32, RuntimeError> {
    let resp = Region::get("blk_drv_resp")?;
    let state = resp.read_u64(INFO_OFFSET)?;
    let last = if state >> 32 == INFO_MAGIC {
        u32::try_from(state & 0xffff_ffff).unwrap_or(0)
    } else {
        0
    };
    let epoch = last.wrapping_add(1).max(1);
    let read_only = blk.features() & F_RO != 0;
    resp.write_u64(INFO_OFFSET + 8, blk.capacity())?;
    resp.write_u64(INFO_OFFSET + 16, u64::from(read_only))?;
    fence(Ordering::Release);
    resp.atomic_u64(INFO_OFFSET)?
        .store(INFO_MAGIC << 32 | u64::from(epoch), Ordering::Release);
    Ok(epoch)
}

/// The first transport in the mapped page with a block device behind it.
fn find_transport(page: &Region) -> Option<(VolatileMmio, usize)> {
    (0..page.size() / WINDOW).find_map(|slot| {
        let base = page.vaddr() + slot * WINDOW;
        // SAFETY: `base..base + WINDOW` lies inside the page the runtime
        // mapped uncached for the PD's life (slot < size / WINDOW); one
        // transport's window, used only through this value.
        let mut m = unsafe { VolatileMmio::new(base as *mut u32, WINDOW) };
        (m.read32(MAGIC_VALUE) == MAGIC && m.read32(DEVICE_ID) == DEVICE_ID_BLK)
            .then_some((m, slot))
    })
}

fn window(name: &str, paddr: u64) -> Option<DataWindow> {
    let r = Region::get(name).ok()?;
    Some(DataWindow {
        paddr,
        len: u64::try_from(r.size()).ok()?,
    })
}

fn start() -> Result<Driver, &'static str> {
    let (dma_paddr, out_paddr, in_paddr) =
        paddr::get().ok_or("no physical addresses (blk_*_paddr setvars; not on the host board)")?;
    let regs = Region::get("virtio_blk_regs").map_err(|_| "no virtio_blk_regs region")?;
    let (mmio, slot) = find_transport(&regs).ok_or("no virtio-blk device in virtio_blk_regs")?;
    let dma = Region::get("blk_dma").map_err(|_| "no blk_dma region")?;
    if dma.size() < DMA_BYTES || !dma.perms().write {
        return Err("blk_dma too small or not writable");
    }
    // SAFETY: `blk_dma` is mapped read-write (checked) for the PD's life,
    // page-aligned, physically contiguous from its fixed phys_addr (the
    // .system file's contract), and used only through this value.
    let dma = unsafe { VolatileDma::new(dma.vaddr() as *mut u8, dma.size(), dma_paddr) };
    let windows = DataWindows {
        write_data: window("blk_drv_out", out_paddr).ok_or("no blk_drv_out region")?,
        read_data: window("blk_drv_in", in_paddr).ok_or("no blk_drv_in region")?,
    };
    let blk = match VirtioBlk::init(mmio, dma, windows) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("virtio_blk_driver: device refused: {e:?}");
            return Err("device bring-up failed");
        }
    };
    let requests = Consumer::attach(
        ring("blk_drv_req", REQ_RING_BYTES).ok_or("no blk_drv_req")?,
        RING_CAPACITY,
    )
    .map_err(|_| "blk_drv_req ring refused")?;
    let responses = Producer::attach(
        ring("blk_drv_resp", RING_BYTES).ok_or("no blk_drv_resp")?,
        RING_CAPACITY,
    )
    .map_err(|_| "blk_drv_resp ring refused")?;
    let epoch = publish(&blk).map_err(|_| "cannot publish the info block in blk_drv_resp")?;
    debug_println!(
        "virtio_blk_driver: transport {slot}: {} sectors, features {:#x}, queue {}, {} slots, epoch {epoch}",
        blk.capacity(),
        blk.features(),
        blk.queue_size(),
        blk.slots()
    );
    Ok(Driver {
        blk,
        requests,
        responses,
        held: None,
        refused: None,
    })
}

impl Driver {
    /// Pushes every answer that fits into the response ring; returns how
    /// many went.
    fn answer(&mut self) -> usize {
        let Driver {
            blk,
            responses,
            refused,
            ..
        } = self;
        let mut push = |r: &Response| responses.push(&WireResponse::from(r)).is_ok();
        let mut n = 0;
        if let Some(r) = *refused {
            if !push(&r) {
                return 0;
            }
            *refused = None;
            n += 1;
        }
        n + blk.take_responses(push)
    }

    /// The next request to submit: the one held back, else the next one
    /// from the ring. A malformed one is answered IOERR at once (under the
    /// id in its bytes) and skipped.
    fn next_request(&mut self) -> Option<Request> {
        if let Some(r) = self.held.take() {
            return Some(r);
        }
        while self.refused.is_none() {
            let w = match self.requests.pop() {
                Ok(Some(w)) => w,
                Ok(None) => return None,
                Err(_) => {
                    debug_println!("virtio_blk_driver: request ring corrupt; stopping");
                    halt(1);
                }
            };
            match w.decode() {
                Ok(r) => return Some(r),
                Err(e) => {
                    debug_println!("virtio_blk_driver: malformed request: {e:?}");
                    let id = u32::from_le_bytes([w.0[4], w.0[5], w.0[6], w.0[7]]);
                    self.refused = Some(Response {
                        id,
                        status: Status::IoErr,
                    });
                    self.answer();
                }
            }
        }
        None
    }

    /// Moves answers to the response ring and requests to the device until
    /// nothing moves; notifies `blk_virt` once if it asked.
    fn pump(&mut self) {
        loop {
            let mut moved = self.answer() > 0;
            while let Some(req) = self.next_request() {
                if self.blk.submit(&req).is_err() {
                    // Every slot is held: wait for a completion.
                    self.held = Some(req);
                    break;
                }
                moved = true;
            }
            self.blk.kick();
            if let Err(e) = self.blk.collect() {
                debug_println!(
                    "virtio_blk_driver: device error {e:?}: device reset, requests fail"
                );
            }
            moved |= self.answer() > 0;
            if moved {
                continue;
            }
            if self.held.is_some() || self.refused.is_some() {
                break;
            }
            // Idle: sleep unless a request slipped in after the last pop.
            match self.requests.arm_signal() {
                Ok(Armed::Pending) => continue,
                _ => break,
            }
        }
        if self.responses.notify_needed() {
            let _ = VIRT.notify();
        }
    }
}

/// The PD: `None` when bring-up failed (it then answers nothing and says
/// why once); and whether the device's interrupt has arrived yet (logged
/// once, so a boot transcript shows the IRQ path works).
struct Pd(Option<Driver>, bool);

impl Handler for Pd {
    fn init() -> Self {
        match start() {
            Ok(mut d) => {
                d.pump();
                // The info block is new: tell the upper side.
                let _ = VIRT.notify();
                Pd(Some(d), false)
            }
            Err(why) => {
                debug_println!("virtio_blk_driver: not started: {why}");
                Pd(None, false)
            }
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        let Some(d) = self.0.as_mut() else { return };
        if channels.contains(IRQ) {
            if !self.1 {
                self.1 = true;
                debug_println!("virtio_blk_driver: first interrupt");
            }
            if let Err(e) = d.blk.interrupt() {
                debug_println!(
                    "virtio_blk_driver: device error {e:?}: device reset, requests fail"
                );
            }
            let _ = IRQ.irq_ack();
        }
        d.pump();
    }
}

bulkhead_runtime::protection_domain!(
    Pd,
    regions: [
        virtio_blk_regs: rw,
        blk_dma: rw,
        blk_drv_req: rw,
        blk_drv_resp: rw,
        blk_drv_out: r,
        blk_drv_in: rw,
    ]
);
