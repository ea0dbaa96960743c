//! Test PD: reports what its configuration region holds.
#![no_std]
#![no_main]

use bulkhead_runtime::{config, debug_println, halt, ChannelSet, Handler};

struct Configured;

impl Handler for Configured {
    fn init() -> Self {
        match config() {
            Ok(Some(c)) => {
                debug_println!(
                    "configured: config for {} with {} sections",
                    c.pd_name(),
                    c.section_count()
                )
            }
            Ok(None) => debug_println!("configured: no configuration"),
            Err(e) => debug_println!("configured: {e}"),
        }
        halt(0)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Configured);
