//! `can_ecu`: another ECU on the same CAN bus, for the seL4 CAN test. It owns
//! the *second* `ctucan_pci` card (slot 2; the system under test owns slot
//! 1): it programs that card's BARs through the card's own ECAM page, brings
//! up its core 0 on the shared `can-bus`, prints every frame it sees
//! (`can_ecu: saw …`), and once it has seen every id of
//! [`bulkhead_sel4_can_pds::ECU_EXPECTS`] it sends its answers
//! (`can_ecu: sent …` per completion).
//!
//! Maps: `ecu_ecam` = the 4 KiB ECAM page of 00:02.0; `ecu_bars` = a piece
//! of the 32-bit PCI window at [`ECU_BARS_PADDR`] for that card's BARs.
//! IRQ channel 1 = INTA of slot 2 (INTID 37 by `virt`'s swizzle).
#![no_std]
#![no_main]

use bulkhead_can_protocol::controller::CanController;
use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};
use bulkhead_sel4_can_pds::{ecu_frames, Show, ECU_EXPECTS};
use drv_ctucanfd::{probe_pci, Config, CtuCanFd, PCI_CLOCK_HZ};
use drv_pci_ecam::mmio::volatile::VolatileMmio;
use drv_pci_ecam::{Ecam, Mmio, Window};

const IRQ: Channel = Channel::new(1);
/// The card's slot on bus 0.
const SLOT: usize = 2;
/// Physical base of the `ecu_bars` map (the description's `phys_addr`).
const ECU_BARS_PADDR: u64 = 0x1010_0000;

/// The one ECAM page of slot [`SLOT`], seen at its bus-0 ECAM offset: every
/// other function reads as absent (all-ones) and ignores writes.
struct OnePage(VolatileMmio);

impl Mmio for OnePage {
    fn read32(&self, offset: usize) -> u32 {
        match offset.checked_sub(SLOT << 15) {
            Some(o) if o < 0x1000 => self.0.read32(o),
            _ => u32::MAX,
        }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        if let Some(o) = offset.checked_sub(SLOT << 15).filter(|&o| o < 0x1000) {
            self.0.write32(o, value);
        }
    }
}

struct Ecu {
    can: CtuCanFd<VolatileMmio>,
    seen: [bool; ECU_EXPECTS.len()],
    answered: bool,
}

fn fail(what: &str) -> ! {
    debug_println!("can_ecu: {}; stopping", what);
    halt(1)
}

impl Ecu {
    fn poll(&mut self) {
        while let Some(r) = self.can.receive() {
            debug_println!("can_ecu: saw {}", Show(&r.frame));
            let id = r.frame.id().raw();
            if let Some(i) = ECU_EXPECTS.iter().position(|&e| e == id) {
                self.seen[i] = true;
            }
        }
        while let Some(done) = self.can.completion() {
            let frames = ecu_frames();
            if let Some(Some(f)) = frames.get(done.slot) {
                let how = if done.sent { "sent" } else { "failed" };
                debug_println!("can_ecu: {} {}", how, Show(f));
            }
        }
        if !self.answered && self.seen.iter().all(|&s| s) {
            self.answered = true;
            debug_println!("can_ecu: saw every expected id; answering");
            for (slot, f) in ecu_frames().iter().enumerate() {
                let Some(f) = f else { continue };
                if self.can.submit(slot, f, f.arbitration_key()).is_err() {
                    debug_println!("can_ecu: cannot load {}", Show(f));
                }
            }
        }
    }
}

impl Handler for Ecu {
    fn init() -> Self {
        let page = Region::get("ecu_ecam").unwrap_or_else(|_| fail("no ecu_ecam map"));
        let bars = Region::get("ecu_bars").unwrap_or_else(|_| fail("no ecu_bars map"));
        // SAFETY: `ecu_ecam` is this PD's uncached map of slot 2's ECAM
        // page, given to it alone, for the PD's life.
        let mut ecam = Ecam::new(OnePage(unsafe {
            VolatileMmio::new(page.vaddr(), page.size())
        }));
        let size = u64::try_from(bars.size()).unwrap_or(0);
        let mut window = Window::new(ECU_BARS_PADDR, ECU_BARS_PADDR + size);
        let card = probe_pci(&mut ecam, &mut window)
            .unwrap_or_else(|_| fail("no ctucan_pci in slot 2 or its BARs do not fit"));
        let off = card
            .cores
            .addr
            .checked_sub(ECU_BARS_PADDR)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o + 0x4000 <= bars.size())
            .unwrap_or_else(|| fail("core registers outside the ecu_bars map"));
        debug_println!(
            "can_ecu: ctucan_pci at 00:{:02x}.{}, INTA -> INTID {}",
            card.bdf.dev,
            card.bdf.func,
            card.intid.unwrap_or(0)
        );
        // SAFETY: `off..off + 0x4000` (core 0 of the card) lies inside the
        // uncached `ecu_bars` map (checked above), where this PD just placed
        // BAR1; no other PD maps it.
        let mmio = unsafe { VolatileMmio::new(bars.vaddr() + off, 0x4000) };
        let cfg = Config {
            clock_hz: PCI_CLOCK_HZ,
            nominal_bps: 500_000,
            data_bps: Some(2_000_000),
            tx_slots: 4,
        };
        let can = CtuCanFd::new(mmio, &cfg).unwrap_or_else(|_| fail("core 0 does not come up"));
        debug_println!("can_ecu: on the bus");
        Ecu {
            can,
            seen: [false; ECU_EXPECTS.len()],
            answered: false,
        }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(IRQ) {
            self.poll();
            self.can.ack_interrupts();
            self.poll();
            let _ = IRQ.irq_ack();
        }
    }
}

bulkhead_runtime::protection_domain!(Ecu, regions: [ecu_ecam: rw, ecu_bars: rw]);
