//! `flexcan_driver`: the CAN driver PD for the i.MX8M Plus — brings up
//! FlexCAN1 (40 MHz clock, 500 kbit/s, CAN FD data phase 2 Mbit/s, 4 TX
//! message buffers arbitrated lowest-id-first with abort) and serves the CAN
//! virtualiser's `drv` hop. It is the `can_driver` program of the
//! `imx8mp_evk` automotive image (`scripts/sdk.sh` copies it under that name
//! when the system's `.pd-aliases` sidecar says so).
//!
//! Hardware filters: the driver is not told the guests' filters on the
//! driver hop, so it programs the widest union — every standard and every
//! extended id — and the virtualiser filters per guest in software. A
//! narrower union can be given through `drv_flexcan::Config::filters`.
//!
//! Bus-off: automatic recovery stays disabled (CTRL1.BOFFREC); recovery
//! starts only on the virtualiser's RECOVER, and the interrupt handler
//! disables automatic recovery again once the controller is back.
//!
//! What the description must give it (compose's names): `flexcan1_regs`
//! (64 KiB, uncached), `can_drv_req` / `can_drv_resp`; channel 0 = the
//! virtualiser, IRQ channel 1 = FlexCAN1's interrupt (INTID 174). On seL4
//! each map needs `setvar_vaddr`/`setvar_size` named as above.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};
use drv_can_driver_hop::pd::DriverHop;
use drv_flexcan::mmio::volatile::VolatileMmio;
use drv_flexcan::{Config, Filter, FlexCan, InitError};

const VIRT: Channel = Channel::new(0);
const IRQ: Channel = Channel::new(1);
/// TX message buffers (one per virtualiser slot).
const TX_SLOTS: usize = 4;
struct FlexDriver {
    can: FlexCan<VolatileMmio>,
    hop: DriverHop,
}

fn fail(what: &str) -> ! {
    debug_println!("flexcan_driver: {}; stopping", what);
    halt(1)
}

impl FlexDriver {
    fn serve(&mut self) {
        // `driver_hop` timestamps are ns of the driver's monotonic clock
        // (0 where the platform gives the PD none).
        let now = bulkhead_runtime::time::now_ns().unwrap_or(0);
        self.can.set_now(now);
        self.hop.serve(&mut self.can, now);
    }
}

impl Handler for FlexDriver {
    fn init() -> Self {
        let regs = Region::get("flexcan1_regs").unwrap_or_else(|_| fail("no flexcan1_regs map"));
        // SAFETY: `flexcan1_regs` is the description's uncached device map
        // of FlexCAN1's registers, given to this PD alone, for its life.
        let mmio = unsafe { VolatileMmio::new(regs.vaddr(), regs.size()) };
        let cfg = Config {
            nominal_bps: 500_000,
            data_bps: Some(2_000_000),
            tx_slots: TX_SLOTS,
            filters: &Filter::ACCEPT_ALL,
        };
        let can = FlexCan::new(mmio, &cfg).unwrap_or_else(|e| {
            fail(match e {
                InitError::Timeout => "FlexCAN1 does not answer reset/freeze (clock gated?)",
                InitError::BitTiming => "bit rates not reachable from 40 MHz",
                InitError::Slots | InitError::NoFilters => "bad configuration",
            })
        });
        // `FlexCan::new` soft-reset the controller: no MB holds a frame, so
        // READY can go out at once (rule 1).
        let hop = DriverHop::attach(VIRT, "flexcan_driver", TX_SLOTS, true);
        let mut me = FlexDriver { can, hop };
        debug_println!("flexcan_driver: FlexCAN1 up, 500k/2M, {} TX MBs", TX_SLOTS);
        me.serve();
        me
    }

    fn notified(&mut self, channels: ChannelSet) {
        self.serve();
        if channels.contains(IRQ) {
            // MB flags are cleared as completions and frames are taken;
            // `service` clears the error flags and re-disables automatic
            // recovery once a requested recovery is done.
            self.can.service();
            self.serve();
            let _ = IRQ.irq_ack();
        }
    }
}

bulkhead_runtime::protection_domain!(
    FlexDriver,
    regions: [flexcan1_regs: rw, can_drv_req: rw, can_drv_resp: rw]
);
