//! `blk_virt`: the block virtualiser PD (see the crate documentation for
//! its configuration, regions and channels).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, ChannelSet, Handler};
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
