//! Adversary: tries to open a host file.
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, ChannelSet, Handler};

struct Opener;

impl Handler for Opener {
    fn init() -> Self {
        debug_println!("opener: openat(/etc/hostname)");
        // SAFETY: an attack: the path is a valid C string.
        let fd = unsafe { libc::openat(libc::AT_FDCWD, c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
        debug_println!("opener: openat returned {fd}: isolation broken");
        halt(2)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Opener);
