//! The virtio-blk device model (§5.2) in front of an asynchronous
//! [`BlkBackend`].
//!
//! Every request header and segment is copied out of guest memory once and
//! validated on the copy. Payload never goes to the backend by reference: a
//! write's bytes are copied into the request's slot of the data region the
//! VMM writes (`blk_G_out`), a read's bytes are copied from the same slot of
//! the region the virtualiser writes (`blk_G_in`) into the guest's buffers
//! when the backend completes. Slot `i` is bytes `[i × SLOT_BYTES, (i + 1) ×
//! SLOT_BYTES)` of both regions; the backend request names it with
//! `data_offset`, and its id is `seq << 8 | i`, so a completion for a slot
//! reused since (or from before a device reset) is refused.
//!
//! Never lose a chain: a chain is popped only when a slot is free; a request
//! the backend cannot take yet stays in its slot (`Waiting`) and is offered
//! again at the next poll; a device reset while the backend holds a request
//! orphans the slot until that completion arrives (the data region slot is
//! still the backend's), then frees it.

use bulkhead_blk_protocol::{Op, Request, Status};
use bulkhead_virtio::{DescriptorChain, GuestMemory, QueueContext, QueueError, VirtioDevice};

/// The request queue.
pub const REQUEST_QUEUE: u16 = 0;
/// QueueSizeMax.
pub const QUEUE_SIZE: u16 = 128;
/// Requests the device holds at once (slots of the data regions).
pub const DEPTH: usize = 32;
/// Data bytes one request may carry (one slot).
pub const SLOT_BYTES: u32 = 64 * 1024;
/// Bytes each data region (`blk_G_out`, `blk_G_in`) must have.
pub const DATA_REGION_BYTES: usize = DEPTH * SLOT_BYTES as usize;
/// Data segments a request may have (SEG_MAX; a chain adds header and status).
pub const SEG_MAX: u32 = 16;
/// Largest data segment (SIZE_MAX): SEG_MAX × SIZE_MAX = SLOT_BYTES.
pub const SIZE_MAX: u32 = SLOT_BYTES / SEG_MAX;
/// Sectors one discard or write-zeroes segment may name.
pub const MAX_ZERO_SECTORS: u32 = 8192;
/// Config space bytes (through `write_zeroes_may_unmap` and padding).
pub const CONFIG_LEN: usize = 60;

/// Descriptors per chain: SEG_MAX data + header + status.
const MAX_DESCS: usize = SEG_MAX as usize + 2;
const HEADER: u64 = 16;
const SECTOR: u64 = 512;

/// Request types (§5.2.6).
pub mod req_type {
    /// Read.
    pub const IN: u32 = 0;
    /// Write.
    pub const OUT: u32 = 1;
    /// Flush.
    pub const FLUSH: u32 = 4;
    /// Device id string.
    pub const GET_ID: u32 = 8;
    /// Discard.
    pub const DISCARD: u32 = 11;
    /// Write zeroes.
    pub const WRITE_ZEROES: u32 = 13;
}

/// Status bytes (§5.2.6).
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Failure.
    pub const IOERR: u8 = 1;
    /// Unsupported request.
    pub const UNSUPP: u8 = 2;
}

/// Feature bits (§5.2.3).
pub mod feature {
    /// `size_max` is valid.
    pub const SIZE_MAX: u64 = 1 << 1;
    /// `seg_max` is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// Read-only device.
    pub const RO: u64 = 1 << 5;
    /// `blk_size` is valid.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// Flush command.
    pub const FLUSH: u64 = 1 << 9;
    /// Discard command.
    pub const DISCARD: u64 = 1 << 13;
    /// Write-zeroes command.
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Where the device's requests go: on a VMM the `blk_G_req` ring to the
/// virtualiser and the `blk_G_out`/`blk_G_in` regions; in tests, memory or
/// the in-process virtualiser.
pub trait BlkBackend {
    /// The region the device writes payload into (`blk_G_out`), at least
    /// [`DATA_REGION_BYTES`].
    fn data_out(&mut self) -> &mut [u8];
    /// The region the backend writes read data into (`blk_G_in`).
    fn data_in(&self) -> &[u8];
    /// Takes a request; false when it cannot yet (ring full). Its
    /// completion comes later through [`VirtioBlk::complete`].
    fn submit(&mut self, req: &Request) -> bool;
}

/// What the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors (the guest's partition).
    pub capacity: u64,
    /// Offer RO and fail every modification with IOERR.
    pub read_only: bool,
    /// GET_ID string (NUL padded).
    pub serial: [u8; 20],
}

/// What the driver did wrong, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlkErrors {
    /// Chains without a device-writable status byte (completed, length 0).
    pub no_status: u32,
    /// Requests completed with IOERR because they were malformed or out of
    /// range (not backend failures).
    pub malformed: u32,
    /// Unknown request types (UNSUPP).
    pub unsupported: u32,
    /// Modifications on a read-only device.
    pub read_only: u32,
    /// Completions whose id names no request in flight.
    pub stale_completions: u32,
    /// Guest memory refused a copy inside a validated chain.
    pub memory: u32,
}

/// Why [`VirtioBlk::complete`] refused a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// Popped and translated; the backend has not taken it yet.
    Waiting,
    /// The backend holds it.
    InFlight,
    /// The backend answered; the guest is not told yet.
    Completed(Status),
    /// The backend holds it but the guest reset the device.
    Orphaned,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: State,
    seq: u32,
    chain: Option<DescriptorChain<MAX_DESCS>>,
    req: Request,
}

/// The virtio-blk device model.
pub struct VirtioBlk<B> {
    backend: B,
    config: BlkConfig,
    slots: [Slot; DEPTH],
    /// Counts of what the driver (or a faulty backend) did wrong.
    pub errors: BlkErrors,
}

/// A request's immediate outcome.
enum Parsed {
    /// Complete now with this status and used length.
    Done(u8, u32),
    /// Send to the backend.
    Backend(Request),
}

impl<B: BlkBackend> VirtioBlk<B> {
    /// A device showing `config` in front of `backend`.
    pub fn new(backend: B, config: BlkConfig) -> Self {
        let req = Request::no_data(0, Op::Flush, 0, 0);
        VirtioBlk {
            backend,
            config,
            slots: [Slot {
                state: State::Free,
                seq: 0,
                chain: None,
                req,
            }; DEPTH],
            errors: BlkErrors::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Requests the backend holds.
    pub fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, State::InFlight | State::Orphaned))
            .count()
    }

    /// The backend finished request `id` with `status`. The guest learns it
    /// at the next [`VirtioDevice::queue_notify`] (the VMM's poll after a
    /// backend notification).
    ///
    /// # Errors
    /// [`UnknownId`] (counted) if no request with that id is in flight.
    pub fn complete(&mut self, id: u32, st: Status) -> Result<(), UnknownId> {
        let i = (id & 0xFF) as usize;
        let Some(s) = self.slots.get_mut(i).filter(|s| s.seq == id >> 8) else {
            self.errors.stale_completions = self.errors.stale_completions.saturating_add(1);
            return Err(UnknownId(id));
        };
        match s.state {
            State::InFlight => s.state = State::Completed(st),
            State::Orphaned => s.state = State::Free,
            _ => {
                self.errors.stale_completions = self.errors.stale_completions.saturating_add(1);
                return Err(UnknownId(id));
            }
        }
        Ok(())
    }

    fn count(c: &mut u32) {
        *c = c.saturating_add(1);
    }

    /// Writes the status byte into the last device-writable byte.
    fn write_status(
        mem: &mut dyn GuestMemory,
        chain: &DescriptorChain<MAX_DESCS>,
        st: u8,
    ) -> Result<(), ()> {
        let last = chain.buffers().filter(|b| b.2).last().ok_or(())?;
        // A stored buffer is never empty and lies inside guest RAM (walk).
        let gpa = last.0 + u64::from(last.1) - 1;
        mem.write(gpa, &[st]).map_err(|_| ())
    }

    fn parse(
        &mut self,
        slot: usize,
        chain: &DescriptorChain<MAX_DESCS>,
        mem: &mut dyn GuestMemory,
    ) -> Parsed {
        let ioerr = |e: &mut BlkErrors| {
            Self::count(&mut e.malformed);
            Parsed::Done(status::IOERR, 1)
        };
        let mut hdr = [0u8; 16];
        let mut reader = chain.reader();
        if chain.readable_len() < HEADER || reader.read_exact(mem, &mut hdr).is_err() {
            return ioerr(&mut self.errors);
        }
        let mut w4 = [0u8; 4];
        w4.copy_from_slice(&hdr[0..4]);
        let ty = u32::from_le_bytes(w4);
        let mut w8 = [0u8; 8];
        w8.copy_from_slice(&hdr[8..16]);
        let sector = u64::from_le_bytes(w8);
        let extra_in = chain.readable_len() - HEADER;
        let data_out = chain.writable_len() - 1;
        let cap = self.config.capacity;
        let off = u64::try_from(slot).unwrap_or(0) * u64::from(SLOT_BYTES);
        let id = (self.slots[slot].seq << 8) | u32::try_from(slot).unwrap_or(0);
        let in_cap = |s: u64, n: u64| s.checked_add(n).is_some_and(|end| end <= cap);
        match ty {
            req_type::IN => {
                let ok = extra_in == 0
                    && data_out > 0
                    && data_out % SECTOR == 0
                    && data_out <= u64::from(SLOT_BYTES)
                    && in_cap(sector, data_out / SECTOR);
                if !ok {
                    return ioerr(&mut self.errors);
                }
                let count = u32::try_from(data_out / SECTOR).unwrap_or(0);
                Parsed::Backend(Request::read(id, sector, count, off))
            }
            req_type::OUT => {
                if self.config.read_only {
                    Self::count(&mut self.errors.read_only);
                    return Parsed::Done(status::IOERR, 1);
                }
                let ok = data_out == 0
                    && extra_in > 0
                    && extra_in % SECTOR == 0
                    && extra_in <= u64::from(SLOT_BYTES)
                    && in_cap(sector, extra_in / SECTOR);
                if !ok {
                    return ioerr(&mut self.errors);
                }
                let len = usize::try_from(extra_in).unwrap_or(0);
                let start = usize::try_from(off).unwrap_or(0);
                let Some(dst) = self.backend.data_out().get_mut(start..start + len) else {
                    return ioerr(&mut self.errors);
                };
                if reader.read_exact(mem, dst).is_err() {
                    Self::count(&mut self.errors.memory);
                    return Parsed::Done(status::IOERR, 1);
                }
                let count = u32::try_from(extra_in / SECTOR).unwrap_or(0);
                Parsed::Backend(Request::write(id, sector, count, off))
            }
            req_type::FLUSH => {
                if extra_in != 0 || data_out != 0 {
                    return ioerr(&mut self.errors);
                }
                Parsed::Backend(Request::no_data(id, Op::Flush, 0, 0))
            }
            req_type::GET_ID => {
                if extra_in != 0 || data_out < 20 {
                    return ioerr(&mut self.errors);
                }
                let mut w = chain.writer();
                if w.write_all(mem, &self.config.serial).is_err() {
                    Self::count(&mut self.errors.memory);
                    return Parsed::Done(status::IOERR, 1);
                }
                Parsed::Done(status::OK, 21)
            }
            req_type::DISCARD | req_type::WRITE_ZEROES => {
                if self.config.read_only {
                    Self::count(&mut self.errors.read_only);
                    return Parsed::Done(status::IOERR, 1);
                }
                // One segment per request (max_*_seg = 1): a count of more,
                // however large, is refused without reading past the first.
                if extra_in != 16 || data_out != 0 {
                    return ioerr(&mut self.errors);
                }
                let mut seg = [0u8; 16];
                if reader.read_exact(mem, &mut seg).is_err() {
                    return ioerr(&mut self.errors);
                }
                w8.copy_from_slice(&seg[0..8]);
                let start = u64::from_le_bytes(w8);
                w4.copy_from_slice(&seg[8..12]);
                let n = u32::from_le_bytes(w4);
                w4.copy_from_slice(&seg[12..16]);
                let flags = u32::from_le_bytes(w4);
                let (op, allowed) = if ty == req_type::DISCARD {
                    (Op::Discard, 0)
                } else {
                    // Bit 0: unmap allowed (we always write zeroes).
                    (Op::WriteZeroes, 1)
                };
                if flags & !allowed != 0 {
                    Self::count(&mut self.errors.unsupported);
                    return Parsed::Done(status::UNSUPP, 1);
                }
                if n == 0 || n > MAX_ZERO_SECTORS || !in_cap(start, u64::from(n)) {
                    return ioerr(&mut self.errors);
                }
                Parsed::Backend(Request::no_data(id, op, start, n))
            }
            _ => {
                Self::count(&mut self.errors.unsupported);
                Parsed::Done(status::UNSUPP, 1)
            }
        }
    }

    /// Tells the guest about completed slots.
    fn finish(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        for i in 0..DEPTH {
            let State::Completed(st) = self.slots[i].state else {
                continue;
            };
            let s = self.slots[i];
            self.slots[i].state = State::Free;
            self.slots[i].chain = None;
            let Some(chain) = s.chain else { continue };
            let mut code = st.code();
            let mut len = 1;
            if st == Status::Ok && s.req.op == Op::Read {
                let r = s.req.data_range(self.backend.data_in().len());
                let copied = r.and_then(|r| self.backend.data_in().get(r)).map(|data| {
                    let mut w = chain.writer();
                    w.write_all(ctx.memory_mut(), data).is_ok()
                });
                if copied == Some(true) {
                    len += s.req.data_len;
                } else {
                    Self::count(&mut self.errors.memory);
                    code = status::IOERR;
                }
            }
            if Self::write_status(ctx.memory_mut(), &chain, code).is_err() {
                Self::count(&mut self.errors.memory);
            }
            ctx.add_used(&chain, len)?;
        }
        Ok(())
    }

    fn offer_waiting(&mut self) -> bool {
        for s in &mut self.slots {
            if s.state == State::Waiting {
                if !self.backend.submit(&s.req) {
                    return false;
                }
                s.state = State::InFlight;
            }
        }
        true
    }
}

impl<B: BlkBackend> VirtioDevice for VirtioBlk<B> {
    fn device_id(&self) -> u32 {
        2
    }

    fn features(&self) -> u64 {
        let ro = if self.config.read_only {
            feature::RO
        } else {
            0
        };
        feature::SIZE_MAX
            | feature::SEG_MAX
            | feature::BLK_SIZE
            | feature::FLUSH
            | feature::DISCARD
            | feature::WRITE_ZEROES
            | ro
            | bulkhead_virtio::spec::feature::INDIRECT_DESC
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut c = [0u8; CONFIG_LEN];
        c[0..8].copy_from_slice(&self.config.capacity.to_le_bytes());
        c[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        // 16..20 geometry: not offered.
        c[20..24].copy_from_slice(&512u32.to_le_bytes());
        // 24..32 topology: not offered; 32 writeback, 34 num_queues: not
        // offered (no CONFIG_WCE, no MQ).
        c[36..40].copy_from_slice(&MAX_ZERO_SECTORS.to_le_bytes());
        c[40..44].copy_from_slice(&1u32.to_le_bytes());
        c[44..48].copy_from_slice(&1u32.to_le_bytes());
        c[48..52].copy_from_slice(&MAX_ZERO_SECTORS.to_le_bytes());
        c[52..56].copy_from_slice(&1u32.to_le_bytes());
        if let Some(src) = c.get(offset..offset.saturating_add(data.len())) {
            data.copy_from_slice(src);
        }
    }

    fn write_config(&mut self, _offset: usize, _data: &[u8]) {
        // Every field is read-only (no CONFIG_WCE).
    }

    fn activate(&mut self, _features: u64) {}

    fn reset(&mut self) {
        for s in &mut self.slots {
            s.chain = None;
            s.state = match s.state {
                // The backend still owns the slot's data region bytes.
                State::InFlight | State::Orphaned => State::Orphaned,
                _ => State::Free,
            };
        }
    }

    fn queue_notify(&mut self, _queue: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        self.finish(ctx)?;
        if !self.offer_waiting() {
            return Ok(());
        }
        while let Some(i) = self.slots.iter().position(|s| s.state == State::Free) {
            let Some(chain) = ctx.pop::<MAX_DESCS>()? else {
                break;
            };
            if chain.writable_len() == 0 {
                // No status byte to report in: return it untouched.
                Self::count(&mut self.errors.no_status);
                ctx.add_used(&chain, 0)?;
                continue;
            }
            self.slots[i].seq = self.slots[i].seq.wrapping_add(1) & 0x00FF_FFFF;
            match self.parse(i, &chain, ctx.memory_mut()) {
                Parsed::Done(st, len) => {
                    if Self::write_status(ctx.memory_mut(), &chain, st).is_err() {
                        Self::count(&mut self.errors.memory);
                    }
                    ctx.add_used(&chain, len)?;
                }
                Parsed::Backend(req) => {
                    let s = &mut self.slots[i];
                    s.chain = Some(chain);
                    s.req = req;
                    if self.backend.submit(&req) {
                        s.state = State::InFlight;
                    } else {
                        s.state = State::Waiting;
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}
