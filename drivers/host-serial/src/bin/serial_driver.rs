//! `serial_driver` on the host board: writes what `serial_virt` sends to
//! standard output, whole lines at a time (the supervisor prefixes each).
#![no_std]
#![no_main]

use bulkhead_ring::Armed;
use bulkhead_runtime::{debug_println, ChannelSet, Handler};
use bulkhead_virt_console_pd::{consumer, Chunk};

/// Longest line kept before it is written unterminated.
const LINE: usize = 256;

struct SerialDriver {
    rx: Option<bulkhead_ring::Consumer<'static, Chunk>>,
    line: [u8; LINE],
    len: usize,
}

impl SerialDriver {
    fn put(&mut self, b: u8) {
        if b == b'\n' || self.len == LINE {
            let text = core::str::from_utf8(&self.line[..self.len]).unwrap_or("<non-UTF-8 line>");
            debug_println!("{text}");
            self.len = 0;
            if b == b'\n' {
                return;
            }
        }
        self.line[self.len] = b;
        self.len += 1;
    }
}

impl Handler for SerialDriver {
    fn init() -> Self {
        let rx = consumer("serial_drv_req").ok();
        if rx.is_none() {
            debug_println!("serial_driver: no serial_drv_req ring");
        }
        let mut me = SerialDriver {
            rx,
            line: [0; LINE],
            len: 0,
        };
        // Arms the ring (see `notified`), so serial_virt signals.
        me.notified(ChannelSet::empty());
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        loop {
            let Some(rx) = self.rx.as_mut() else { return };
            match rx.pop() {
                Ok(Some(c)) => {
                    for b in c.bytes().iter().copied() {
                        self.put(b);
                    }
                }
                Ok(None) => match rx.arm_signal() {
                    Ok(Armed::Pending) => {}
                    Ok(Armed::MaySleep) => return,
                    Err(_) => self.rx = None,
                },
                Err(_) => {
                    debug_println!("serial_driver: ring corrupt; stopped reading it");
                    self.rx = None;
                }
            }
        }
    }
}

// On seL4 (debug configs) the same program prints through the kernel's
// console; the regions list declares the ring's setvar symbols there.
bulkhead_runtime::protection_domain!(SerialDriver, regions: [serial_drv_req: rw]);
