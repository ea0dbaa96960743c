//! `console_client`: stands where a guest's VMM sits on `serial_virt`'s
//! client hop. At start it writes [`LINES`] numbered lines and then one
//! line of [`LONG`] pattern bytes (wider than a chunk and than the UART
//! FIFO) into its `serial_tx` ring, each naming the PD, and notifies
//! `serial_virt`; a full ring is retried on the next wake-up.
//!
//! Maps: `serial_tx` (this client's `serial_<guest>_req`), `serial_rx`
//! (its `serial_<guest>_resp`, unused); channel 0 = `serial_virt`.
#![no_std]
#![no_main]

use bulkhead_ring::Producer;
use bulkhead_runtime::{debug_println, pd_name, Channel, ChannelSet, Handler};
use bulkhead_sel4_console_pds::{long_byte, LINES, LONG};
use bulkhead_virt_console_pd::{producer, push_bytes, Chunk};

const VIRT: Channel = Channel::new(0);
/// Room for the longest line: the PD name, the label and the pattern.
const BUF: usize = 256;

struct Client {
    tx: Option<Producer<'static, Chunk>>,
    /// Everything this client writes, composed once.
    out: [u8; BUF * 4],
    len: usize,
    sent: usize,
}

/// A `core::fmt::Write` into a byte slice that drops what does not fit.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if let Some(slot) = self.buf.get_mut(self.at) {
                *slot = b;
                self.at += 1;
            }
        }
        Ok(())
    }
}

impl Client {
    fn compose(&mut self) {
        use core::fmt::Write;
        let mut c = Cursor {
            buf: &mut self.out,
            at: 0,
        };
        let name = pd_name();
        for n in 1..=LINES {
            let _ = writeln!(c, "{name}: line {n} of {LINES}");
        }
        let _ = write!(c, "{name}: long ");
        for i in 0..LONG {
            let _ = c.write_char(char::from(long_byte(i)));
        }
        let _ = writeln!(c);
        self.len = c.at;
    }

    fn send(&mut self) {
        let Some(tx) = self.tx.as_mut() else { return };
        let rest = self.out.get(self.sent..self.len).unwrap_or(&[]);
        if rest.is_empty() {
            return;
        }
        match push_bytes(tx, rest) {
            Ok((n, _)) => self.sent += n,
            Err(_) => {
                debug_println!("console_client: serial_tx ring corrupt");
                self.tx = None;
            }
        }
        // serial_virt drains on any wake-up; a notification it did not
        // ask for costs one pass.
        let _ = VIRT.notify();
    }
}

impl Handler for Client {
    fn init() -> Self {
        let tx = producer("serial_tx").ok();
        if tx.is_none() {
            debug_println!("console_client: no serial_tx ring");
        }
        let mut me = Client {
            tx,
            out: [0; BUF * 4],
            len: 0,
            sent: 0,
        };
        me.compose();
        me.send();
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.send();
    }
}

bulkhead_runtime::protection_domain!(Client, regions: [serial_tx: rw, serial_rx: rw]);
