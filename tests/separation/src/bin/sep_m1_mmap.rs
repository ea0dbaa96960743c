//! M1 attacker: tries to map every descriptor number shared and writable (a region handle it was not given, or its own read-only one).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: mmap of descriptors 3..64");
        for fd in 3..64 {
            // SAFETY: an attack: asks the kernel for a new shared writable
            // mapping of whatever the descriptor is.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                debug_println!("sep: ATTACK SUCCEEDED: mapped descriptor {fd}");
                halt(3)
            }
        }
        debug_println!("sep: every mmap refused by the kernel (no seccomp stop)");
        halt(4)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
