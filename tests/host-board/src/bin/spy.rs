//! Adversary: tries to signal channels it was not given, first through the
//! runtime, then by writing an eventfd increment to every descriptor number.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, RuntimeError};

struct Spy;

impl Handler for Spy {
    fn init() -> Self {
        let mut refused = 0;
        for id in 0..bulkhead_runtime::MAX_CHANNELS {
            match Channel::new(id).notify() {
                Err(RuntimeError::UndeclaredChannel(i)) if i == id => refused += 1,
                other => debug_println!("spy: channel {id}: {other:?}"),
            }
        }
        debug_println!("spy: {refused} of 62 undeclared channels refused by the runtime");
        // fd 3 is the PD's control socket to the supervisor; 0-2 are stdio.
        let one = 1u64;
        let mut written = 0;
        for fd in 4..1024 {
            // SAFETY: an attack: writes 8 bytes from a valid local to any
            // descriptor number the process might hold.
            let n = unsafe { libc::write(fd, core::ptr::addr_of!(one).cast(), 8) };
            if n == 8 {
                written += 1;
                debug_println!("spy: descriptor {fd} accepted a signal");
            }
        }
        debug_println!("spy: {written} descriptors accepted a raw signal");
        halt(0)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Spy);
