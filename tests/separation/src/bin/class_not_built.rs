//! Placeholder for a PD whose device class is not built for the host board
//! (Ethernet, audio in `system/automotive/host.system`): says so once and
//! then only counts what it is sent, so the rest of the reference system
//! runs with every PD present and nothing pretends to serve that class.
//! The separation suite reports the items needing that class as not
//! covered; this PD provides nothing they could pass on.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, pd_name, ChannelSet, Handler};

struct NotBuilt {
    signals: u64,
}

impl Handler for NotBuilt {
    fn init() -> Self {
        debug_println!(
            "{}: device class not built for the host board; this PD is an idle placeholder",
            pd_name()
        );
        NotBuilt { signals: 0 }
    }

    fn notified(&mut self, _channels: ChannelSet) {
        // Requests are neither served nor answered: the class does not exist here.
        self.signals += 1;
    }
}

bulkhead_runtime::protection_domain!(NotBuilt);
