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

use bulkhead_blk_protocol::{Request, Response, Status, WireResponse};
use bulkhead_ring::Armed;
use bulkhead_virt_blk_pd::hop::{HopRegions, Info, Lower};

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region, RuntimeError};
use drv_virtio_blk_mmio::regs::{DEVICE_ID, DEVICE_ID_BLK, F_RO, MAGIC, MAGIC_VALUE, WINDOW};
use drv_virtio_blk_mmio::{
    DataWindow, DataWindows, Mmio, VirtioBlk, VolatileDma, VolatileMmio, DMA_BYTES,
};

/// Channel to `blk_virt`.
const VIRT: Channel = Channel::new(0);
/// The transport's interrupt.
const IRQ: Channel = Channel::new(1);
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
    /// The lower end of the `blk_drv` hop (`components/virt-blk-pd`
    /// `hop.rs`: rings, data regions, info block).
    hop: Lower,
    /// A request popped while every slot was held.
    held: Option<Request>,
    /// An answer to a malformed request that found the response ring full.
    refused: Option<Response>,
}

/// Publishes the disk's size for `blk_virt` in the hop's info block, one
/// epoch after the last (the block survives a restart of this PD: its
/// memory is kept), so `blk_virt` sees a restart and resends what this PD
/// held.
fn publish(hop: &Lower, blk: &Blk) -> Result<u32, RuntimeError> {
    let epoch = hop
        .published()
        .map_or(1, |i| i.epoch.wrapping_add(1).max(1));
    hop.publish(&Info {
        epoch,
        sectors: blk.capacity(),
        read_only: blk.features() & F_RO != 0,
    })?;
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

fn window(r: &Region, paddr: u64) -> Option<DataWindow> {
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
    let hop = HopRegions::named("blk_drv")
        .and_then(Lower::attach)
        .map_err(|_| "the blk_drv hop is not mapped or its rings refused")?;
    let windows = DataWindows {
        write_data: window(&hop.regions.out, out_paddr).ok_or("blk_drv_out too large")?,
        read_data: window(&hop.regions.inp, in_paddr).ok_or("blk_drv_in too large")?,
    };
    let blk = match VirtioBlk::init(mmio, dma, windows) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("virtio_blk_driver: device refused: {e:?}");
            return Err("device bring-up failed");
        }
    };
    let epoch = publish(&hop, &blk).map_err(|_| "cannot publish the info block in blk_drv_resp")?;
    debug_println!(
        "virtio_blk_driver: transport {slot}: {} sectors, features {:#x}, queue {}, {} slots, epoch {epoch}",
        blk.capacity(),
        blk.features(),
        blk.queue_size(),
        blk.slots()
    );
    Ok(Driver {
        blk,
        hop,
        held: None,
        refused: None,
    })
}

impl Driver {
    /// Pushes every answer that fits into the response ring; returns how
    /// many went.
    fn answer(&mut self) -> usize {
        let Driver {
            blk, hop, refused, ..
        } = self;
        let mut push = |r: &Response| hop.tx.push(&WireResponse::from(r)).is_ok();
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
            let w = match self.hop.rx.pop() {
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
            match self.hop.rx.arm_signal() {
                Ok(Armed::Pending) => continue,
                _ => break,
            }
        }
        if self.hop.tx.notify_needed() {
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
