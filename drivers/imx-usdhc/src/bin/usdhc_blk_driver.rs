//! `usdhc_blk_driver`: the block driver PD for an SD card behind the i.MX
//! uSDHC (uSDHC2, the i.MX8M Plus EVK's SD slot). It brings the card up,
//! publishes its size in the `blk_drv` hop's info block and serves
//! blk-protocol requests from `blk_virt` on that hop, one at a time, by
//! PIO (see the crate doc for why not ADMA2): reads land in `blk_drv_in`,
//! writes come from `blk_drv_out`, at the offsets the requests name.
//!
//! Every request is checked against the hop before the card is touched:
//! payload inside its data region, `data_len == count × 512`, sectors
//! inside the card. A request that fails a check, or that the card fails,
//! is answered IOERR; DISCARD keeps the data (a valid discard),
//! WRITE_ZEROES writes zero blocks, 4 KiB per command; FLUSH is
//! OK at once, since a write's CMD24/CMD25 completes only after the card
//! took the data (SD cards keep no volatile write cache unless the host
//! enables one with CMD48, which this driver never does).
//!
//! What the description must give it (compose's names): `usdhc2_regs` (the
//! 64 KiB window, uncached); `blk_drv_req` / `blk_drv_resp` (rw) and
//! `blk_drv_out` (r) / `blk_drv_in` (rw), each map with
//! `setvar_vaddr="<name>_vaddr" setvar_size="<name>_size"`; channel 0 =
//! `blk_virt`. The controller is polled, so no IRQ channel is needed.
#![no_std]
#![no_main]

use bulkhead_blk_protocol::{Op, Request, Response, Status, WireResponse};
use bulkhead_ring::{Armed, RingError};
use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};
use bulkhead_virt_blk_pd::hop::{HopRegions, Info, Lower};
use drv_imx_usdhc::regs::{
    BLOCK_SIZE, CMD_XFR_TYP, INT_CC, INT_STATUS, INT_TC, PRES_STATE, RSPTYP_48_BUSY, SYS_CTRL,
    VEND_SPEC, XFR_DPSEL, XFR_RSPTYP_SHIFT,
};
use drv_imx_usdhc::{Mmio, SdError, Usdhc, VolatileMmio};
use drv_mmio::Reg;

const VIRT: Channel = Channel::new(0);
/// The uSDHC root clock on the i.MX8M Plus EVK (Linux's EVK device tree
/// assigns 200 MHz to the uSDHC clocks; QEMU ignores the dividers).
const BASE_HZ: u32 = 200_000_000;
/// Sector size of the blk protocol and of SD block addressing.
const SECTOR: u64 = 512;
/// Sectors one WRITE_ZEROES command writes at a time.
const ZERO_SECTORS: u64 = 8;
/// The payload of those writes.
static ZEROES: [u8; 4096] = [0; 4096];

/// SYS_CTRL bits `[3:0]`: reserved on the i.MX8M uSDHC, reset value ones
/// (the manual's SYS_CTRL reset value is 0x0080_800F).
const SYS_CTRL_RESERVED_ONES: u32 = 0xF;

/// PRES_STATE.DLSL`[0]`: the level of DAT0 (low while the card is busy).
const PRES_DAT0: u32 = 1 << 24;

/// The register window, with two adjustments that make QEMU's imx-usdhc
/// (10.x) behave as the silicon does and change nothing on the silicon:
///
/// - SYS_CTRL's reserved low bits are kept at their reset value on every
///   write. The driver's read-modify-writes keep them on silicon already;
///   QEMU resets them to zero and takes bit 0 as the generic SDHCI
///   "internal clock enable" its PRES_STATE.SDSTB follows (and bit 2 as the
///   SD clock enable it needs to send a command), so the clock never reads
///   stable there (seen: PRES_STATE 0x01ff0080, SYS_CTRL 0x000e10f0).
/// - After a command with a busy response (R1b, no data), transfer
///   complete is reported once the command completed and DAT0 is high,
///   which is what TC means there: the uSDHC raises it when the card
///   releases DAT0. QEMU never raises it (its imx-usdhc sets
///   SDHCI_QUIRK_NO_BUSY_IRQ), so CMD7 timed out there.
#[derive(Debug)]
struct Window {
    mmio: VolatileMmio,
    /// A busy-response command is outstanding and its CC has been seen.
    busy: Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Idle,
    Issued,
    Completed,
}

impl Mmio for Window {
    fn read32(&mut self, r: Reg) -> u32 {
        let mut v = self.mmio.read32(r);
        if r == INT_STATUS && self.busy != Busy::Idle {
            if v & INT_CC != 0 {
                self.busy = Busy::Completed;
            }
            if self.busy == Busy::Completed && self.mmio.read32(PRES_STATE) & PRES_DAT0 != 0 {
                v |= INT_TC;
            }
        }
        v
    }

    fn write32(&mut self, r: Reg, v: u32) {
        let v = if r == SYS_CTRL {
            v | SYS_CTRL_RESERVED_ONES
        } else {
            v
        };
        if r == CMD_XFR_TYP {
            let busy = (v >> XFR_RSPTYP_SHIFT) & 3 == RSPTYP_48_BUSY && v & XFR_DPSEL == 0;
            self.busy = if busy { Busy::Issued } else { Busy::Idle };
        }
        if r == INT_STATUS && v & INT_TC != 0 {
            self.busy = Busy::Idle;
        }
        self.mmio.write32(r, v);
    }
}

struct Driver {
    sd: Usdhc<Window>,
    hop: Lower,
    sectors: u64,
    /// An answer that found the response ring full.
    unsent: Option<Response>,
}

fn fail(what: &str) -> ! {
    debug_println!("usdhc_blk_driver: {}; stopping", what);
    halt(1)
}

/// `[offset, offset + len)` inside a region of `size` bytes, as a range.
fn span(offset: u64, len: u32, size: usize) -> Option<core::ops::Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= size).then_some(start..end)
}

impl Driver {
    /// Whether `req`'s sectors lie on the card and its payload is exactly
    /// `count` sectors.
    fn in_range(&self, req: &Request) -> bool {
        let end = req.sector.checked_add(u64::from(req.count));
        req.count > 0
            && end.is_some_and(|e| e <= self.sectors)
            && u64::from(req.data_len) == u64::from(req.count) * SECTOR
    }

    /// Whether `req`'s sectors lie on the card (no payload: DISCARD and
    /// WRITE_ZEROES).
    fn sectors_on_card(&self, req: &Request) -> bool {
        let end = req.sector.checked_add(u64::from(req.count));
        req.count > 0 && req.data_len == 0 && end.is_some_and(|e| e <= self.sectors)
    }

    fn execute(&mut self, req: &Request) -> Status {
        match req.op {
            Op::Flush => Status::Ok,
            Op::Read | Op::Write if !self.in_range(req) => Status::IoErr,
            Op::Discard | Op::WriteZeroes if !self.sectors_on_card(req) => Status::IoErr,
            // Dropping nothing is a valid discard: the contents stay.
            Op::Discard => Status::Ok,
            Op::WriteZeroes => {
                let mut at = req.sector;
                let end = req.sector + u64::from(req.count);
                while at < end {
                    let n = (end - at).min(ZERO_SECTORS);
                    // n <= ZERO_SECTORS, so the range is inside ZEROES.
                    let len = usize::try_from(n * SECTOR).unwrap_or(0);
                    let res = self.sd.write_blocks(at, &ZEROES[..len]);
                    if self.status(res) != Status::Ok {
                        return Status::IoErr;
                    }
                    at += n;
                }
                Status::Ok
            }
            Op::Read => {
                let inp = self.hop.regions.inp;
                let Some(r) = span(req.data_offset, req.data_len, inp.size()) else {
                    return Status::IoErr;
                };
                // SAFETY: `blk_drv_in` is mapped read-write for the PD's
                // life; `r` lies inside it (checked). blk_virt does not
                // touch a request's payload until the response is pushed.
                let all =
                    unsafe { core::slice::from_raw_parts_mut(inp.vaddr() as *mut u8, inp.size()) };
                let res = self.sd.read_blocks(req.sector, &mut all[r]);
                self.status(res)
            }
            Op::Write => {
                let out = self.hop.regions.out;
                let Some(r) = span(req.data_offset, req.data_len, out.size()) else {
                    return Status::IoErr;
                };
                // SAFETY: `blk_drv_out` is mapped (at least readable) for the
                // PD's life; `r` lies inside it (checked). blk_virt does not
                // change a request's payload until the response is pushed.
                let all =
                    unsafe { core::slice::from_raw_parts(out.vaddr() as *const u8, out.size()) };
                let res = self.sd.write_blocks(req.sector, &all[r]);
                self.status(res)
            }
        }
    }

    fn status(&mut self, r: Result<(), SdError>) -> Status {
        match r {
            Ok(()) => Status::Ok,
            Err(e) => {
                debug_println!("usdhc_blk_driver: card error {e:?}");
                if matches!(
                    e,
                    SdError::CardAbsent | SdError::CardRemoved | SdError::NotInitialised
                ) {
                    // The card is gone or forgotten: try once to bring it
                    // back (a reinserted card); its size must not change.
                    if let Ok(c) = self.sd.init() {
                        if c.blocks != self.sectors {
                            debug_println!("usdhc_blk_driver: a different card; requests fail");
                            self.sectors = 0;
                        }
                    }
                }
                Status::IoErr
            }
        }
    }

    /// Pushes `r`; false when the response ring is full (it is kept).
    fn answer(&mut self, r: Response) -> bool {
        match self.hop.tx.push(&WireResponse::from(&r)) {
            Ok(()) => true,
            Err(RingError::Full) => {
                self.unsent = Some(r);
                false
            }
            Err(_) => fail("blk_drv_resp ring corrupt"),
        }
    }

    /// Serves requests until the request ring is empty and armed, or the
    /// response ring is full; notifies `blk_virt` if it asked.
    fn pump(&mut self) {
        loop {
            if let Some(r) = self.unsent.take() {
                if !self.answer(r) {
                    break;
                }
            }
            let w = match self.hop.rx.pop() {
                Ok(Some(w)) => w,
                Ok(None) => match self.hop.rx.arm_signal() {
                    Ok(Armed::Pending) => continue,
                    Ok(Armed::MaySleep) => break,
                    Err(_) => fail("blk_drv_req ring corrupt"),
                },
                Err(_) => fail("blk_drv_req ring corrupt"),
            };
            let r = match w.decode() {
                Ok(req) => Response {
                    id: req.id,
                    status: self.execute(&req),
                },
                Err(e) => {
                    debug_println!("usdhc_blk_driver: malformed request: {e:?}");
                    Response {
                        id: u32::from_le_bytes([w.0[4], w.0[5], w.0[6], w.0[7]]),
                        status: Status::IoErr,
                    }
                }
            };
            if !self.answer(r) {
                break;
            }
        }
        if self.hop.tx.notify_needed() {
            let _ = VIRT.notify();
        }
    }
}

impl Handler for Driver {
    fn init() -> Self {
        let regs = Region::get("usdhc2_regs").unwrap_or_else(|_| fail("no usdhc2_regs map"));
        if regs.size() < BLOCK_SIZE {
            fail("usdhc2_regs is smaller than the uSDHC's registers");
        }
        // SAFETY: `usdhc2_regs` is the description's uncached device map of
        // uSDHC2's registers, given to this PD alone, for its life.
        let mmio = unsafe { VolatileMmio::new(regs.vaddr() as *mut u32, regs.size()) };
        let mut sd = Usdhc::new(
            Window {
                mmio,
                busy: Busy::Idle,
            },
            BASE_HZ,
        );
        let card = match sd.init() {
            Ok(c) => c,
            Err(SdError::CardAbsent) => fail("no card in the uSDHC2 slot"),
            Err(e) => {
                // The controller's state says which handshake never ended.
                let r = sd.regs();
                debug_println!(
                    "usdhc_blk_driver: card bring-up failed: {e:?} (PRES_STATE {:#010x} SYS_CTRL {:#010x} INT_STATUS {:#010x} VEND_SPEC {:#010x})",
                    r.read32(PRES_STATE),
                    r.read32(SYS_CTRL),
                    r.read32(INT_STATUS),
                    r.read32(VEND_SPEC)
                );
                fail("no usable card")
            }
        };
        let hop = HopRegions::named("blk_drv")
            .and_then(Lower::attach)
            .unwrap_or_else(|_| fail("the blk_drv hop is not mapped or its rings refused"));
        // One epoch after the last: the info block outlives a restart of
        // this PD, so blk_virt sees the restart and resends.
        let epoch = hop
            .published()
            .map_or(1, |i| i.epoch.wrapping_add(1).max(1));
        let info = Info {
            epoch,
            sectors: card.blocks,
            read_only: false,
        };
        if hop.publish(&info).is_err() {
            fail("cannot publish the card's info");
        }
        debug_println!(
            "usdhc_blk_driver: card rca {:#x}, {} sectors ({}), epoch {}",
            card.rca,
            card.blocks,
            if card.high_capacity {
                "SDHC/SDXC"
            } else {
                "SDSC"
            },
            epoch
        );
        let mut me = Driver {
            sd,
            hop,
            sectors: card.blocks,
            unsent: None,
        };
        me.pump();
        // The info block is new: tell the upper side.
        let _ = VIRT.notify();
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.pump();
    }
}

bulkhead_runtime::protection_domain!(
    Driver,
    regions: [
        usdhc2_regs: rw,
        blk_drv_req: rw,
        blk_drv_resp: rw,
        blk_drv_out: r,
        blk_drv_in: rw,
    ]
);
