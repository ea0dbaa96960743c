//! The virtio-console device model.

use bulkhead_virtio::{DescriptorChain, QueueContext, QueueError, VirtioDevice};

/// Receive queue (device writes input for the driver).
pub const RX_QUEUE: u16 = 0;
/// Transmit queue (driver's output).
pub const TX_QUEUE: u16 = 1;
/// QueueSizeMax of both queues.
pub const QUEUE_SIZE: u16 = 64;
/// Config space: `le16 cols; le16 rows; le32 max_nr_ports; le32 emerg_wr`.
pub const CONFIG_LEN: usize = 12;
/// Descriptors a chain may have here; longer chains are completed with
/// length 0 by the queue layer.
const MAX_DESCS: usize = 16;
/// Bytes copied per step between guest memory and the backend.
const CHUNK: usize = 256;
/// Offset of `emerg_wr` in config space.
const EMERG_WR: usize = 8;

/// Where console bytes go and come from.
pub trait ConsoleBackend {
    /// Take up to `bytes.len()` output bytes; return how many were taken
    /// (0 when full).
    fn output(&mut self, bytes: &[u8]) -> usize;
    /// Whether input is waiting.
    fn input_pending(&self) -> bool;
    /// Move up to `buf.len()` waiting input bytes into `buf`; return how
    /// many.
    fn input(&mut self, buf: &mut [u8]) -> usize;
}

/// A TX chain the backend has not taken in full yet.
#[derive(Clone, Copy)]
struct InFlight {
    chain: DescriptorChain<MAX_DESCS>,
    /// Readable bytes already given to the backend.
    done: u64,
}

/// The virtio-console device model.
pub struct VirtioConsole<B> {
    backend: B,
    cols: u16,
    rows: u16,
    tx: Option<InFlight>,
    /// Counts of what the driver did wrong (for the VMM's log).
    pub errors: ConsoleErrors,
}

/// What the driver did wrong, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsoleErrors {
    /// TX chains with a device-writable buffer (completed with length 0).
    pub tx_writable: u32,
    /// RX chains with a device-readable buffer (returned with length 0).
    pub rx_readable: u32,
    /// Guest memory refused a copy inside a validated chain.
    pub memory: u32,
}

impl<B: ConsoleBackend> VirtioConsole<B> {
    /// A console of `cols`×`rows` in front of `backend`.
    pub fn new(backend: B, cols: u16, rows: u16) -> Self {
        VirtioConsole {
            backend,
            cols,
            rows,
            tx: None,
            errors: ConsoleErrors::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, to feed input or drain output.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Push the rest of `f`'s readable bytes to the backend; true when all
    /// were taken.
    fn drain(&mut self, f: &mut InFlight, ctx: &mut QueueContext<'_>) -> bool {
        let mut reader = f.chain.reader();
        let mut buf = [0u8; CHUNK];
        // Skip what the backend already has: re-reading guest memory here is
        // harmless, the bytes already handed out are never looked at again.
        let mut skip = f.done;
        while skip > 0 {
            let n = usize::try_from(skip).map_or(CHUNK, |s| s.min(CHUNK));
            match reader.read(ctx.memory(), &mut buf[..n]) {
                Ok(0) | Err(_) => return true,
                Ok(got) => skip -= got as u64,
            }
        }
        loop {
            let got = match reader.read(ctx.memory(), &mut buf) {
                Ok(0) => return true,
                Ok(n) => n,
                Err(_) => {
                    self.errors.memory = self.errors.memory.saturating_add(1);
                    return true;
                }
            };
            let took = self.backend.output(&buf[..got]);
            f.done += took as u64;
            if took < got {
                return false;
            }
        }
    }

    fn transmit(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        loop {
            let mut f = match self.tx.take() {
                Some(f) => f,
                None => match ctx.pop::<MAX_DESCS>()? {
                    Some(chain) => InFlight { chain, done: 0 },
                    None => return Ok(()),
                },
            };
            if f.chain.writable_len() > 0 {
                // §5.3.6.2: the driver MUST NOT put device-writable buffers
                // on a transmitq; complete it unread.
                self.errors.tx_writable = self.errors.tx_writable.saturating_add(1);
                ctx.add_used(&f.chain, 0)?;
                continue;
            }
            if !self.drain(&mut f, ctx) {
                self.tx = Some(f);
                return Ok(());
            }
            ctx.add_used(&f.chain, 0)?;
        }
    }

    fn receive(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        let mut buf = [0u8; CHUNK];
        while self.backend.input_pending() {
            let Some(chain) = ctx.pop::<MAX_DESCS>()? else {
                return Ok(());
            };
            if chain.readable_len() > 0 || chain.writable_len() == 0 {
                self.errors.rx_readable = self.errors.rx_readable.saturating_add(1);
                ctx.add_used(&chain, 0)?;
                continue;
            }
            let mut writer = chain.writer();
            while writer.remaining() > 0 && self.backend.input_pending() {
                let room = usize::try_from(writer.remaining()).map_or(CHUNK, |r| r.min(CHUNK));
                let n = self.backend.input(&mut buf[..room]);
                if n == 0 {
                    break;
                }
                if writer.write(ctx.memory_mut(), &buf[..n]).is_err() {
                    self.errors.memory = self.errors.memory.saturating_add(1);
                    break;
                }
            }
            let written = writer.written();
            ctx.add_used(&chain, written)?;
        }
        Ok(())
    }
}

impl<B: ConsoleBackend> VirtioDevice for VirtioConsole<B> {
    fn device_id(&self) -> u32 {
        3
    }

    fn features(&self) -> u64 {
        // VIRTIO_CONSOLE_F_SIZE (0) so cols/rows are meaningful,
        // VIRTIO_CONSOLE_F_EMERG_WRITE (2) so early output has a path.
        (1 << 0) | (1 << 2)
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut cfg = [0u8; CONFIG_LEN];
        cfg[0..2].copy_from_slice(&self.cols.to_le_bytes());
        cfg[2..4].copy_from_slice(&self.rows.to_le_bytes());
        cfg[4..8].copy_from_slice(&1u32.to_le_bytes());
        // emerg_wr reads as 0.
        if let Some(src) = cfg.get(offset..offset.saturating_add(data.len())) {
            data.copy_from_slice(src);
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        // §5.3.4: a write to emerg_wr outputs its low byte.
        if offset == EMERG_WR {
            if let Some(&b) = data.first() {
                let _ = self.backend.output(&[b]);
            }
        }
    }

    fn activate(&mut self, _features: u64) {}

    fn reset(&mut self) {
        self.tx = None;
    }

    fn queue_notify(&mut self, queue: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        match queue {
            RX_QUEUE => self.receive(ctx),
            TX_QUEUE => self.transmit(ctx),
            _ => Ok(()),
        }
    }
}
