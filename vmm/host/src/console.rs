//! Class `serial` (slot 0): virtio-console whose backend is the hop to
//! `serial_virt` — output into the hop's `req` ring, input from its `resp`
//! ring (`components/virt-console-pd`).

use bulkhead_ring::{Consumer, Producer};
use bulkhead_virt_console_pd::{push_bytes, Chunk, CHUNK_BYTES};
use bulkhead_vmm_core::VirtioMmio;
use bulkhead_vmm_devices::console::{ConsoleBackend, VirtioConsole};

use crate::hops::{hop_region_name, NameBuf};
use crate::Class;

/// The console as the VMM's bus holds it.
pub type Device = VirtioMmio<VirtioConsole<RingConsole>>;

/// Console size the device reports (the test guests and Linux ignore it).
const COLS: u16 = 80;
const ROWS: u16 = 25;

/// Whether this VMM has a console hop by name: the setvar symbols
/// `serial_tx`/`serial_rx` (hand-written systems) or compose's region
/// `serial_<guest>_req`.
pub fn present_by_name() -> bool {
    let mut b = NameBuf::new();
    bulkhead_runtime::Region::get("serial_tx").is_ok()
        || hop_region_name(&mut b, Class::Serial, "req")
            .is_some_and(|n| bulkhead_runtime::Region::get(n).is_ok())
}

/// The console device over the hop, or `None` if the transport refuses
/// the model (a programming error, reported by the caller).
pub fn attach() -> Option<Device> {
    VirtioMmio::new(VirtioConsole::new(RingConsole::attach(), COLS, ROWS)).ok()
}

/// The virtio-console backend: output is pushed into the hop's `req` ring
/// (to `serial_virt`), input comes from its `resp` ring.
pub struct RingConsole {
    tx: Option<Producer<'static, Chunk>>,
    rx: Option<Consumer<'static, Chunk>>,
    /// Input popped from the ring but not yet given to the guest.
    pending: [u8; CHUNK_BYTES],
    pending_len: usize,
    pending_at: usize,
    /// `serial_virt` asked to be notified.
    pub notify: bool,
}

fn ring_name<'a>(b: &'a mut NameBuf, symbol: &'a str, part: &str) -> &'a str {
    // Hand-written systems name the ends by setvar symbol; compose by the
    // region name only.
    if bulkhead_runtime::Region::get(symbol).is_ok() {
        return symbol;
    }
    hop_region_name(b, Class::Serial, part).unwrap_or(symbol)
}

impl RingConsole {
    /// Attaches the rings (symbols `serial_tx`/`serial_rx`, else regions
    /// `serial_<guest>_req`/`_resp`); a missing one leaves that direction
    /// off.
    pub fn attach() -> RingConsole {
        let (mut a, mut b) = (NameBuf::new(), NameBuf::new());
        let mut me = RingConsole {
            tx: bulkhead_virt_console_pd::producer(ring_name(&mut a, "serial_tx", "req")).ok(),
            rx: bulkhead_virt_console_pd::consumer(ring_name(&mut b, "serial_rx", "resp")).ok(),
            pending: [0; CHUNK_BYTES],
            pending_len: 0,
            pending_at: 0,
            notify: false,
        };
        // Arm the input ring, so serial_virt signals when input arrives.
        me.refill();
        me
    }

    fn refill(&mut self) {
        if self.pending_at < self.pending_len {
            return;
        }
        let Some(rx) = self.rx.as_mut() else { return };
        loop {
            match rx.pop() {
                Ok(Some(c)) => {
                    let b = c.bytes();
                    self.pending[..b.len()].copy_from_slice(b);
                    self.pending_len = b.len();
                    self.pending_at = 0;
                    return;
                }
                Ok(None) => match rx.arm_signal() {
                    Ok(bulkhead_ring::Armed::Pending) => {}
                    Ok(bulkhead_ring::Armed::MaySleep) => return,
                    Err(_) => break,
                },
                Err(_) => break,
            }
        }
        // A corrupt ring: the neighbour is faulty; stop reading it.
        self.rx = None;
    }

    /// Pulls the next input chunk from the ring, if the last is used up.
    pub fn poll_input(&mut self) {
        self.refill();
    }
}

impl ConsoleBackend for RingConsole {
    fn output(&mut self, bytes: &[u8]) -> usize {
        let Some(tx) = self.tx.as_mut() else {
            // Nowhere to go: consume, as a disconnected UART would.
            return bytes.len();
        };
        match push_bytes(tx, bytes) {
            Ok((n, notify)) => {
                self.notify |= notify;
                n
            }
            Err(_) => {
                self.tx = None;
                bytes.len()
            }
        }
    }

    fn input_pending(&self) -> bool {
        self.pending_at < self.pending_len
    }

    fn input(&mut self, buf: &mut [u8]) -> usize {
        let avail = &self.pending[self.pending_at..self.pending_len];
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pending_at += n;
        n
    }
}
