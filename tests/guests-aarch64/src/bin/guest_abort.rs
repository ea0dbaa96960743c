//! Test guest: says hello, then reads an address where its VM has no
//! device. The VMM injects a data abort; this guest's own handler
//! (`guest_exception` in the library) reports it and powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn guest_main() -> ! {
    use bulkhead_guests_aarch64::{console_init, println, psci_system_off};
    console_init();
    println!("hello from guest_abort");
    println!("reading 0x9000000, where this VM has no device");
    // SAFETY: deliberately touches an address with no device behind it:
    // the access traps to the VMM, which answers with a data abort taken
    // by this guest's vector table; nothing in Rust observes the value.
    let v = unsafe { core::ptr::read_volatile(0x0900_0000 as *const u32) };
    println!("FAIL: the read returned {v:#x} instead of aborting");
    psci_system_off()
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("guest_abort is a bare-metal guest: build it for aarch64-unknown-none");
}
