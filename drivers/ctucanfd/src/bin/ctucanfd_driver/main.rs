//! `ctucanfd_driver`: the CAN driver PD for QEMU `virt` — finds the
//! `ctucan_pci` card through ECAM, assigns its BARs (no firmware does on
//! `virt`), brings up CAN core 0 (500 kbit/s, CAN FD data phase 2 Mbit/s)
//! and serves the CAN virtualiser's `drv` hop.
//!
//! What the description must give it (the names compose uses):
//! - `pcie_ecam`: bus 0 of the ECAM window (1 MiB at 0x40_1000_0000), rw,
//!   uncached;
//! - `pcie_bars`: the start of `virt`'s 32-bit PCI MMIO window (at
//!   0x1000_0000; the BARs are placed inside this map, so it must be large
//!   enough for the card's 32 KiB + 64 KiB), rw, uncached;
//! - `can_drv_req` / `can_drv_resp`: the hop's rings;
//! - channel 0 to the virtualiser, IRQ channel 1 = the card's INTA (slot
//!   `s` → INTID 32 + 3 + (s mod 4) for INTA; the PD prints the INTID it
//!   computed from the card's slot so a wrong `<irq>` shows on the console).
//!
//! On seL4 each map needs `setvar_vaddr`/`setvar_size` named as above.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};
use drv_can_driver_hop::pd::DriverHop;
use drv_ctucanfd::{probe_pci, Config, CtuCanFd, CORE_STRIDE, PCI_CLOCK_HZ, TX_BUFFERS};
use drv_pci_ecam::mmio::volatile::VolatileMmio;
use drv_pci_ecam::{Ecam, Window, VIRT_MMIO32_BASE};

const VIRT: Channel = Channel::new(0);
const IRQ: Channel = Channel::new(1);
/// Which core of the card this PD drives (the other is free for another PD).
const CORE: u64 = 0;

struct CtuDriver {
    can: CtuCanFd<VolatileMmio>,
    hop: DriverHop,
}

fn fail(what: &str) -> ! {
    debug_println!("ctucanfd_driver: {}; stopping", what);
    halt(1)
}

impl CtuDriver {
    fn serve(&mut self) {
        // `driver_hop` timestamps are ns of the driver's monotonic clock
        // (0 where the platform gives the PD none).
        let now = bulkhead_runtime::time::now_ns().unwrap_or(0);
        self.can.set_now(now);
        self.hop.serve(&mut self.can, now);
    }
}

impl Handler for CtuDriver {
    fn init() -> Self {
        let ecam_map = Region::get("pcie_ecam").unwrap_or_else(|_| fail("no pcie_ecam map"));
        let bars_map = Region::get("pcie_bars").unwrap_or_else(|_| fail("no pcie_bars map"));
        // SAFETY: `pcie_ecam` is the description's uncached device map of
        // the ECAM window, given to this PD alone, for the PD's life.
        let ecam_mmio = unsafe { VolatileMmio::new(ecam_map.vaddr(), ecam_map.size()) };
        let mut ecam = Ecam::new(ecam_mmio);
        let size = u64::try_from(bars_map.size()).unwrap_or(0);
        let mut window = Window::new(VIRT_MMIO32_BASE, VIRT_MMIO32_BASE + size);
        let card = probe_pci(&mut ecam, &mut window)
            .unwrap_or_else(|_| fail("no ctucan_pci card on bus 0 or its BARs do not fit"));
        debug_println!(
            "ctucanfd_driver: ctucan_pci at 00:{:02x}.{} BAR1 {:#x}, INTA -> INTID {}",
            card.bdf.dev,
            card.bdf.func,
            card.cores.addr,
            card.intid.unwrap_or(0)
        );
        // The window starts at the map's start, so BAR1 lies above it.
        let core_off = card
            .cores
            .addr
            .checked_sub(VIRT_MMIO32_BASE)
            .and_then(|o| o.checked_add(CORE * CORE_STRIDE))
            .and_then(|o| usize::try_from(o).ok())
            .unwrap_or(usize::MAX);
        let stride = usize::try_from(CORE_STRIDE).unwrap_or(0);
        if core_off
            .checked_add(stride)
            .is_none_or(|end| end > bars_map.size())
        {
            fail("core registers outside the pcie_bars map");
        }
        // SAFETY: `core_off..core_off + CORE_STRIDE` lies inside the
        // uncached `pcie_bars` device map (checked just above), where this
        // PD just placed BAR1; it is core 0's register window and this PD
        // is its only user.
        let mmio = unsafe { VolatileMmio::new(bars_map.vaddr() + core_off, stride) };
        let cfg = Config {
            clock_hz: PCI_CLOCK_HZ,
            nominal_bps: 500_000,
            data_bps: Some(2_000_000),
            tx_slots: TX_BUFFERS,
        };
        let can = CtuCanFd::new(mmio, &cfg).unwrap_or_else(|e| {
            fail(if e == drv_ctucanfd::InitError::NotCtuCanFd {
                "BAR1 core 0 is not a CTU CAN FD core"
            } else {
                "cannot configure the core"
            })
        });
        // The core was just reset by `CtuCanFd::new`: no buffer holds a
        // frame, so READY can go out at once (rule 1).
        let hop = DriverHop::attach(VIRT, "ctucanfd_driver", TX_BUFFERS, true);
        let mut me = CtuDriver { can, hop };
        debug_println!(
            "ctucanfd_driver: core {} up, 500k/2M, {} TX buffers",
            CORE,
            TX_BUFFERS
        );
        // Serve once: reports the first status and arms the request ring.
        me.serve();
        me
    }

    fn notified(&mut self, channels: ChannelSet) {
        self.serve();
        if channels.contains(IRQ) {
            // Every cause was drained by `serve` (completions, RX FIFO up to
            // the ring's room, status); clear the level source, then ack.
            self.can.ack_interrupts();
            self.serve();
            let _ = IRQ.irq_ack();
        }
    }
}

bulkhead_runtime::protection_domain!(
    CtuDriver,
    regions: [pcie_ecam: rw, pcie_bars: rw, can_drv_req: rw, can_drv_resp: rw]
);
