//! M1 attacker: writes the address of the other VMM console ring (serial_cluster_out in cluster_vmm).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: writing other VMM region address {OTHER_VMM_VADDR:#x}");
        // SAFETY: an attack: a store to an address this PD has no map at.
        unsafe { core::ptr::write_volatile(OTHER_VMM_VADDR as *mut u64, 0xdead) };
        debug_println!("sep: ATTACK SUCCEEDED: wrote the other VMM region address");
        halt(3)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
