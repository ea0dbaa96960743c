//! Test guest: says hello, then prints `tick N` lines forever, so a test
//! can see it keep running while another guest fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn guest_main() -> ! {
    use bulkhead_guests_aarch64::{console_init, delay, println};
    console_init();
    println!("hello from guest_ticker");
    let mut n: u64 = 0;
    loop {
        n += 1;
        println!("tick {n}");
        delay(20_000_000);
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("guest_ticker is a bare-metal guest: build it for aarch64-unknown-none");
}
