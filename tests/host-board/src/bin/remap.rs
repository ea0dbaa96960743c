//! Adversary: tries to make its read-only map writable with `mprotect`.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler, Region};

struct Remap;

impl Handler for Remap {
    fn init() -> Self {
        let Ok(ro) = Region::get("ro") else { halt(1) };
        debug_println!(
            "remap: mprotect({:#x}, {:#x}, READ|WRITE)",
            ro.vaddr(),
            ro.size()
        );
        // SAFETY: an attack: asks the kernel to change a mapping the
        // description made read-only. If it succeeded, memory the runtime
        // hands out as read-only would change permissions under it.
        let r = unsafe {
            libc::mprotect(
                ro.vaddr() as *mut libc::c_void,
                ro.size(),
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if r == 0 {
            debug_println!("remap: mprotect succeeded: isolation broken");
        } else {
            // Only reachable without the seccomp filter: the read-only
            // descriptor alone makes the kernel refuse (EACCES).
            debug_println!("remap: mprotect refused by the kernel");
        }
        halt(2)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Remap);
