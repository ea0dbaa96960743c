//! M1 attacker: reads the address where the safety CAN ring (can_cluster_resp) lives in cluster_vmm and can_virt.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};
#[allow(unused_imports)]
use bulkhead_separation_pds::*;

struct Attacker;

impl Handler for Attacker {
    fn init() -> Self {
        debug_println!("sep: reading safety ring address {SAFETY_RING_VADDR:#x}");
        // SAFETY: an attack: a load from an address this PD has no map at.
        let v = unsafe { core::ptr::read_volatile(SAFETY_RING_VADDR as *const u64) };
        debug_println!("sep: ATTACK SUCCEEDED: read {v:#x}");
        halt(3)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Attacker);
