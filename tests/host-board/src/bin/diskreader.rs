//! Test PD: reads the first line of host resource `disk` (bound in the
//! host-binding file and opened by the supervisor before lockdown).
#![no_std]
#![no_main]

use bulkhead_runtime::{debug_println, halt, host_resource, ChannelSet, Handler};

struct DiskReader;

impl Handler for DiskReader {
    fn init() -> Self {
        let fd = match host_resource("disk") {
            Ok(fd) => fd,
            Err(e) => {
                debug_println!("diskreader: {e}");
                halt(1)
            }
        };
        let mut buf = [0u8; 64];
        // SAFETY: buf is a valid writable buffer; read is on the allow-list.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        let text = core::str::from_utf8(&buf[..usize::try_from(n).unwrap_or(0)]).unwrap_or("?");
        debug_println!("diskreader: {}", text.lines().next().unwrap_or(""));
        if let Err(e) = host_resource("tap") {
            debug_println!("diskreader: tap: {e}");
        }
        halt(0)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(DiskReader);
