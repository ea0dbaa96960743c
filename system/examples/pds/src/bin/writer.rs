//! `writer`: maps region `ro` read-only and writes to it. The runtime's
//! accessor refuses the write with a named error; the direct store then
//! faults, and the fault is reported (the PD has no parent).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler, Region};

struct Writer;

impl Handler for Writer {
    fn init() -> Self {
        let Ok(ro) = Region::get("ro") else {
            debug_println!("writer: region ro is not mapped");
            halt(1)
        };
        debug_println!("writer: ro[0] = {}", ro.read_u64(0).unwrap_or(u64::MAX));
        if let Err(e) = ro.write_u64(0, 1) {
            debug_println!("writer: runtime refused the write: {e}");
        }
        debug_println!("writer: storing to {:#x} directly", ro.vaddr());
        // SAFETY: deliberately stores through a read-only mapping to show
        // that the host kernel refuses it; the store faults and never
        // completes.
        unsafe { core::ptr::write_volatile(ro.vaddr() as *mut u64, 1) };
        debug_println!("writer: the store went through?!");
        halt(2)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Writer, regions: [ro: r]);
