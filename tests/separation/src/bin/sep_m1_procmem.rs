//! M1 attacker: writes another process memory with process_vm_writev (the host-side route around the maps).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: process_vm_writev into pid 1");
        let v = 0u64;
        let local = libc::iovec {
            iov_base: core::ptr::addr_of!(v) as *mut libc::c_void,
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: SAFETY_RING_VADDR as *mut libc::c_void,
            iov_len: 8,
        };
        // SAFETY: an attack: the iovecs are valid; the kernel decides.
        let n = unsafe { libc::process_vm_writev(1, &local, 1, &remote, 1, 0) };
        if n == 8 {
            debug_println!("sep: ATTACK SUCCEEDED: wrote another process");
            halt(3)
        }
        debug_println!("sep: process_vm_writev refused by the kernel (no seccomp stop)");
        halt(4)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
