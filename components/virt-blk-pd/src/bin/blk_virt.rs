//! `blk_virt`: the block virtualiser PD (see the crate documentation for
//! its configuration, regions and channels).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, ChannelSet, Child, FaultInfo, Handler, MessageInfo};
use bulkhead_virt_blk_pd::config::VirtConfig;
use bulkhead_virt_blk_pd::pd::BlkVirt;

struct BlkVirtPd(BlkVirt);

fn stop(why: core::fmt::Arguments<'_>) -> ! {
    debug_println!("blk_virt: {}", why);
    bulkhead_runtime::halt(1)
}

impl Handler for BlkVirtPd {
    fn init() -> Self {
        let cfg = match bulkhead_runtime::config() {
            Ok(Some(c)) => c,
            Ok(None) => stop(format_args!("no configuration region")),
            Err(e) => stop(format_args!("configuration: {e}")),
        };
        let cfg = VirtConfig::parse(&cfg)
            .unwrap_or_else(|e| stop(format_args!("configuration refused: {e:?}")));
        let mut me = BlkVirt::start(cfg).unwrap_or_else(|e| stop(format_args!("{e:?}")));
        // Arms every ring and reads the driver's info if it is up already.
        me.run(ChannelSet::empty());
        BlkVirtPd(me)
    }

    fn notified(&mut self, channels: ChannelSet) {
        self.0.run(channels);
    }

    /// A system may make the driver a child of `blk_virt`: a faulted
    /// driver is restarted (Microkit restart, memory kept). The driver then
    /// publishes a new epoch and `blk_virt` resends what it held.
    fn fault(&mut self, child: Child, msg: MessageInfo) -> bool {
        let f = FaultInfo::from_message(msg);
        debug_println!(
            "blk_virt: child {} faulted ({} at {:#x}, pc {:#x}); restarting it",
            child.id(),
            f.kind.name(),
            f.addr,
            f.pc
        );
        if let Err(e) = child.restart() {
            debug_println!("blk_virt: restart of child {} failed: {e}", child.id());
        }
        false
    }
}

bulkhead_runtime::protection_domain!(
    BlkVirtPd,
    regions: [
        blk_hop0_req: rw, blk_hop0_resp: rw, blk_hop0_out: rw, blk_hop0_in: r,
        blk_hop1_req: rw, blk_hop1_resp: rw, blk_hop1_out: r, blk_hop1_in: rw,
        blk_hop2_req: rw, blk_hop2_resp: rw, blk_hop2_out: r, blk_hop2_in: rw,
        blk_hop3_req: rw, blk_hop3_resp: rw, blk_hop3_out: r, blk_hop3_in: rw,
        blk_hop4_req: rw, blk_hop4_resp: rw, blk_hop4_out: r, blk_hop4_in: rw,
    ]
);
