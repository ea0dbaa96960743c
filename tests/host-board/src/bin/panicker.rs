//! Test PD: panics in `init` after lockdown; the panic must surface as a
//! fault report, not as a forbidden syscall or a silent exit.
#![no_std]
#![no_main]

use bulkhead_runtime::{ChannelSet, Handler};

struct Panicker;

impl Handler for Panicker {
    #[allow(clippy::panic)] // the point of this PD
    fn init() -> Self {
        panic!("panicker: deliberate panic")
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Panicker);
