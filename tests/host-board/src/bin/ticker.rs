//! Test PD: counts IRQs on channel 5 (a host timer bound in the `.host.toml`
//! file), acknowledges each, and halts after three.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler};

const TIMER: Channel = Channel::new(5);

struct Ticker {
    ticks: u32,
}

impl Handler for Ticker {
    fn init() -> Self {
        if let Err(e) = Channel::new(4).irq_ack() {
            debug_println!("ticker: ack on channel 4: {e}");
        }
        Ticker { ticks: 0 }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(TIMER) {
            return;
        }
        self.ticks += 1;
        debug_println!("ticker: tick {}", self.ticks);
        if TIMER.irq_ack().is_err() {
            halt(1);
        }
        if self.ticks == 3 {
            halt(0);
        }
    }
}

bulkhead_runtime::protection_domain!(Ticker);
