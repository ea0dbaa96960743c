//! The driver: initialisation and feature negotiation (VIRTIO 1.x §3.1.1,
//! §4.2.3), one split virtqueue (§2.7) in the DMA region, and block
//! requests in and out.
//!
//! The device is trusted as hardware is — it masters the bus, nothing can
//! stop it writing any RAM — but what it *reports* is still checked: a
//! used-ring index that moves past what we made available, a used id that
//! is not the head of a chain the device holds, or a status byte that is no
//! status are typed [`DeviceError`]s (the device is reset and every request
//! it held is answered IOERR), never a panic or a wrong completion.

use bulkhead_blk_protocol::{Op, Request, Response, Status, FLAG_FUA};
use drv_mmio::Mmio;

use crate::dma::DmaRegion;
use crate::regs::*;

/// Largest queue size the driver sets (the layout below is sized for it).
pub const MAX_QUEUE: u16 = 128;
/// Requests the driver holds at once, at most.
pub const MAX_SLOTS: usize = 32;
/// Descriptors per request: header, data, status. Slot `i` owns
/// descriptors `3i..3i+3`; its chains always start at `3i`.
const DESC_PER_SLOT: usize = 3;

/// DMA region layout (offsets from its start). Fixed, sized for
/// [`MAX_QUEUE`] and [`MAX_SLOTS`]: descriptor table (16 B each).
pub const DESC_OFF: usize = 0;
/// Available ring: flags, idx, ring\[Q\], used_event.
pub const AVAIL_OFF: usize = 0x800;
/// Used ring: flags, idx, {id, len}\[Q\], avail_event.
pub const USED_OFF: usize = 0x1000;
/// Request headers, 16 bytes per slot (device-readable).
pub const HDR_OFF: usize = 0x1800;
/// Discard / write-zeroes segments, 16 bytes per slot (device-readable):
/// `le64 sector, le32 num_sectors, le32 flags`.
pub const SEG_OFF: usize = 0x1a00;
/// Status bytes, one per slot (device-writable).
pub const STATUS_OFF: usize = 0x1c00;
/// Bytes the DMA region must have at least.
pub const DMA_BYTES: usize = STATUS_OFF + MAX_SLOTS;

const _: () = assert!(DESC_OFF + 16 * MAX_QUEUE as usize <= AVAIL_OFF);
const _: () = assert!(AVAIL_OFF + 6 + 2 * MAX_QUEUE as usize <= USED_OFF);
const _: () = assert!(USED_OFF + 6 + 8 * MAX_QUEUE as usize <= HDR_OFF);
const _: () = assert!(HDR_OFF + 16 * MAX_SLOTS <= SEG_OFF);
const _: () = assert!(SEG_OFF + 16 * MAX_SLOTS <= STATUS_OFF);
const _: () = assert!(MAX_SLOTS * DESC_PER_SLOT <= MAX_QUEUE as usize);

/// Status reads while waiting for a reset to finish (QEMU finishes at once).
const RESET_POLLS: u32 = 1000;
/// Attempts at reading the configuration space untorn.
const CONFIG_TRIES: u32 = 16;
/// Written to a slot's status byte before the device sees it: not a status
/// the device may write, so a "completion" the device did not fill in is
/// caught.
const STATUS_UNSET: u8 = 0xff;

/// Where the data of requests lives, by physical address: the `blk_drv_out`
/// region (write payloads, the device reads them) and `blk_drv_in` (read
/// payloads, the device writes them). A request's `data_offset` is into the
/// one its op uses, exactly as on the host board's file driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataWindow {
    /// Physical address of byte 0.
    pub paddr: u64,
    /// Bytes.
    pub len: u64,
}

/// The two data windows of the `blk_drv_*` hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataWindows {
    /// `blk_drv_out`: payloads of writes.
    pub write_data: DataWindow,
    /// `blk_drv_in`: payloads of reads.
    pub read_data: DataWindow,
}

/// Why the device could not be brought up. After any of them the driver
/// has written FAILED to the device status (where it got that far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// MagicValue is not "virt": not a virtio-mmio transport.
    BadMagic(u32),
    /// Version 1: a legacy transport (QEMU needs
    /// `-global virtio-mmio.force-legacy=false`).
    Legacy,
    /// A transport version this driver does not know.
    BadVersion(u32),
    /// DeviceID 0: the transport has no device behind it.
    NoDevice,
    /// Not a block device (its DeviceID).
    NotBlk(u32),
    /// The status did not read 0 after a reset.
    ResetTimeout,
    /// The device does not offer VERSION_1.
    NoVersion1,
    /// The device did not keep FEATURES_OK: it refuses our feature subset.
    FeaturesRefused,
    /// Queue 0 is already live (QueueReady reads non-zero after a reset).
    QueueInUse,
    /// QueueNumMax is 0: the device has no queue 0.
    NoQueue,
    /// QueueNumMax (given) leaves room for no request chain.
    QueueTooSmall(u32),
    /// The DMA region is smaller than [`DMA_BYTES`] or not 16-byte aligned
    /// physically.
    DmaRegion,
    /// A data window's physical range wraps around.
    DataWindow,
    /// ConfigGeneration kept changing while the capacity was read.
    ConfigUnstable,
    /// The device set DEVICE_NEEDS_RESET during initialisation.
    NeedsReset,
}

/// What the device did wrong at run time. The driver then resets the
/// device (so it stops using the queue and the data windows), answers
/// every request it held with IOERR, and answers every later one IOERR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// The used index moved by more than the chains the device holds.
    UsedIndexJump {
        /// Our last used index.
        last: u16,
        /// What the device wrote.
        now: u16,
    },
    /// A used element names a descriptor that is not the head of a chain
    /// the device holds.
    BadUsedId(u32),
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
}

/// [`VirtioBlk::submit`] had no free slot: keep the request and submit it
/// again after responses were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Counters for the driver's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests the device completed (FUA write + its flush count once).
    pub device_completed: u32,
    /// Requests answered without the device (refused, or nothing to do).
    pub local: u32,
    /// Device completions whose status byte was not OK.
    pub device_errors: u32,
    /// Device completions whose status byte was no virtio-blk status.
    pub bad_status: u32,
}

/// What a slot's chain is doing on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The request itself.
    Request,
    /// The flush that makes a completed FUA write durable.
    FuaFlush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    Device(Request, Phase),
    Done(Response),
}

/// A virtio-blk device on a virtio-mmio transport, driven through queue 0.
#[derive(Debug)]
pub struct VirtioBlk<M: Mmio, D: DmaRegion> {
    mmio: M,
    dma: D,
    windows: DataWindows,
    queue: u16,
    nslots: usize,
    slots: [Slot; MAX_SLOTS],
    /// Next free-running available index we publish.
    avail_idx: u16,
    /// Used index up to which we have consumed.
    last_used: u16,
    /// Available entries published since the last notify.
    unnotified: bool,
    features: u64,
    capacity: u64,
    size_max: Option<u32>,
    /// Largest discard, in sectors (0: not negotiated or not usable).
    max_discard: u32,
    /// Largest write-zeroes, in sectors (0: not negotiated or not usable).
    max_write_zeroes: u32,
    broken: Option<DeviceError>,
    /// Counters.
    pub stats: Stats,
}

fn slot_status(b: u8) -> Option<Status> {
    match b {
        BLK_S_OK => Some(Status::Ok),
        BLK_S_IOERR => Some(Status::IoErr),
        BLK_S_UNSUPP => Some(Status::Unsupported),
        _ => None,
    }
}

fn split(v: u64) -> (u32, u32) {
    // Truncation intended: the two halves of a 64-bit register pair.
    #[allow(clippy::cast_possible_truncation)]
    (v as u32, (v >> 32) as u32)
}

impl<M: Mmio, D: DmaRegion> VirtioBlk<M, D> {
    /// Resets the device behind `mmio` and brings it up: checks it is a
    /// modern virtio block device, negotiates features (VERSION_1 required;
    /// FLUSH, RO, SIZE_MAX taken when offered; nothing else), sets up queue
    /// 0 in `dma` and reads the capacity.
    ///
    /// Called again after a restart of the driver PD, it starts from a
    /// reset device, so nothing a previous incarnation queued survives
    /// (the virtualiser resends what it had not seen answered).
    ///
    /// # Errors
    /// An [`InitError`] naming the first thing wrong.
    pub fn init(mut mmio: M, mut dma: D, windows: DataWindows) -> Result<Self, InitError> {
        let magic = mmio.read32(MAGIC_VALUE);
        if magic != MAGIC {
            return Err(InitError::BadMagic(magic));
        }
        match mmio.read32(VERSION) {
            2 => {}
            1 => return Err(InitError::Legacy),
            v => return Err(InitError::BadVersion(v)),
        }
        match mmio.read32(DEVICE_ID) {
            DEVICE_ID_BLK => {}
            0 => return Err(InitError::NoDevice),
            id => return Err(InitError::NotBlk(id)),
        }
        let fail = |mmio: &mut M, status: u32, e: InitError| {
            mmio.write32(STATUS, status | S_FAILED);
            Err(e)
        };
        mmio.write32(STATUS, 0);
        if !(0..RESET_POLLS).any(|_| mmio.read32(STATUS) == 0) {
            return fail(&mut mmio, 0, InitError::ResetTimeout);
        }
        let mut status = S_ACKNOWLEDGE;
        mmio.write32(STATUS, status);
        status |= S_DRIVER;
        mmio.write32(STATUS, status);

        mmio.write32(DEVICE_FEATURES_SEL, 0);
        let low = mmio.read32(DEVICE_FEATURES);
        mmio.write32(DEVICE_FEATURES_SEL, 1);
        let high = mmio.read32(DEVICE_FEATURES);
        let offered = u64::from(high) << 32 | u64::from(low);
        if offered & F_VERSION_1 == 0 {
            return fail(&mut mmio, status, InitError::NoVersion1);
        }
        let features = offered & ACCEPTED;
        let (lo, hi) = split(features);
        mmio.write32(DRIVER_FEATURES_SEL, 0);
        mmio.write32(DRIVER_FEATURES, lo);
        mmio.write32(DRIVER_FEATURES_SEL, 1);
        mmio.write32(DRIVER_FEATURES, hi);
        status |= S_FEATURES_OK;
        mmio.write32(STATUS, status);
        if mmio.read32(STATUS) & S_FEATURES_OK == 0 {
            return fail(&mut mmio, status, InitError::FeaturesRefused);
        }

        mmio.write32(QUEUE_SEL, 0);
        if mmio.read32(QUEUE_READY) != 0 {
            return fail(&mut mmio, status, InitError::QueueInUse);
        }
        let max = mmio.read32(QUEUE_NUM_MAX);
        if max == 0 {
            return fail(&mut mmio, status, InitError::NoQueue);
        }
        // Split queues are a power of two in size (§2.7).
        let cap = max.min(u32::from(MAX_QUEUE));
        let queue = 1u32 << (31 - cap.leading_zeros());
        if (queue as usize) < DESC_PER_SLOT {
            return fail(&mut mmio, status, InitError::QueueTooSmall(max));
        }
        let queue = u16::try_from(queue).unwrap_or(MAX_QUEUE);
        let base = dma.paddr();
        if dma.len() < DMA_BYTES || base % 16 != 0 || base.checked_add(DMA_BYTES as u64).is_none() {
            return fail(&mut mmio, status, InitError::DmaRegion);
        }
        for w in [windows.write_data, windows.read_data] {
            if w.paddr.checked_add(w.len).is_none() {
                return fail(&mut mmio, status, InitError::DataWindow);
            }
        }
        // The queue memory may hold a previous incarnation's state.
        for off in (0..DMA_BYTES).step_by(4) {
            dma.write32(off, 0);
        }
        dma.barrier();
        mmio.write32(QUEUE_NUM, u32::from(queue));
        for (l, h, addr) in [
            (QUEUE_DESC_LOW, QUEUE_DESC_HIGH, base + DESC_OFF as u64),
            (QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, base + AVAIL_OFF as u64),
            (QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, base + USED_OFF as u64),
        ] {
            let (lo, hi) = split(addr);
            mmio.write32(l, lo);
            mmio.write32(h, hi);
        }
        mmio.write32(QUEUE_READY, 1);

        let mut config = None;
        for _ in 0..CONFIG_TRIES {
            let before = mmio.read32(CONFIG_GENERATION);
            let cap_lo = mmio.read32(CONFIG_CAPACITY_LOW);
            let cap_hi = mmio.read32(CONFIG_CAPACITY_HIGH);
            let size_max = mmio.read32(CONFIG_SIZE_MAX);
            // One segment per request: a limit of 0 sectors or 0 segments
            // makes the operation unusable.
            let usable = |sectors: u32, segs: u32| if segs == 0 { 0 } else { sectors };
            let discard = usable(
                mmio.read32(CONFIG_MAX_DISCARD_SECTORS),
                mmio.read32(CONFIG_MAX_DISCARD_SEG),
            );
            let zeroes = usable(
                mmio.read32(CONFIG_MAX_WRITE_ZEROES_SECTORS),
                mmio.read32(CONFIG_MAX_WRITE_ZEROES_SEG),
            );
            if mmio.read32(CONFIG_GENERATION) == before {
                let capacity = u64::from(cap_hi) << 32 | u64::from(cap_lo);
                config = Some((capacity, size_max, discard, zeroes));
                break;
            }
        }
        let Some((capacity, size_max, discard, zeroes)) = config else {
            return fail(&mut mmio, status, InitError::ConfigUnstable);
        };

        status |= S_DRIVER_OK;
        mmio.write32(STATUS, status);
        if mmio.read32(STATUS) & S_DEVICE_NEEDS_RESET != 0 {
            return fail(&mut mmio, status, InitError::NeedsReset);
        }
        Ok(VirtioBlk {
            mmio,
            dma,
            windows,
            queue,
            nslots: (usize::from(queue) / DESC_PER_SLOT).min(MAX_SLOTS),
            slots: [Slot::Free; MAX_SLOTS],
            avail_idx: 0,
            last_used: 0,
            unnotified: false,
            features,
            capacity,
            size_max: (features & F_SIZE_MAX != 0).then_some(size_max),
            max_discard: if features & F_DISCARD != 0 {
                discard
            } else {
                0
            },
            max_write_zeroes: if features & F_WRITE_ZEROES != 0 {
                zeroes
            } else {
                0
            },
            broken: None,
            stats: Stats::default(),
        })
    }

    /// Disk size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The features negotiated.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The queue size set.
    pub fn queue_size(&self) -> u16 {
        self.queue
    }

    /// Requests the driver can hold at once.
    pub fn slots(&self) -> usize {
        self.nslots
    }

    /// The device error that stopped the driver, if any.
    pub fn broken(&self) -> Option<DeviceError> {
        self.broken
    }

    /// Requests held (on the device or answered but not yet taken).
    pub fn held(&self) -> usize {
        self.slots[..self.nslots]
            .iter()
            .filter(|s| **s != Slot::Free)
            .count()
    }

    /// Whether the request can be answered without the device, and how.
    fn local_answer(&self, req: &Request) -> Option<Status> {
        if self.broken.is_some() || req.validate().is_err() {
            return Some(Status::IoErr);
        }
        if req.op.modifies() && self.features & F_RO != 0 {
            return Some(Status::IoErr);
        }
        let in_disk = req.end_sector().is_some_and(|e| e <= self.capacity);
        match req.op {
            Op::Discard | Op::WriteZeroes => {
                let max = if req.op == Op::Discard {
                    self.max_discard
                } else {
                    self.max_write_zeroes
                };
                if max == 0 {
                    // Not negotiated, or the device allows none.
                    Some(Status::Unsupported)
                } else if !in_disk || req.count > max {
                    Some(Status::IoErr)
                } else if req.count == 0 {
                    Some(Status::Ok)
                } else {
                    None
                }
            }
            // Without FLUSH the device has no volatile cache (§5.2.6.2):
            // every completed write is already durable.
            Op::Flush => (self.features & F_FLUSH == 0).then_some(Status::Ok),
            Op::Read | Op::Write => {
                let window = if req.op == Op::Read {
                    self.windows.read_data
                } else {
                    self.windows.write_data
                };
                let in_window = req
                    .data_offset
                    .checked_add(u64::from(req.data_len))
                    .is_some_and(|e| e <= window.len);
                let seg_ok = self.size_max.is_none_or(|m| req.data_len <= m);
                if !in_disk || !in_window || !seg_ok {
                    Some(Status::IoErr)
                } else if req.count == 0 {
                    Some(Status::Ok)
                } else {
                    None
                }
            }
        }
    }

    /// Takes `req` (already decoded from the ring). It is either put on
    /// the device or answered at once (refused, or nothing to do); either
    /// way its response comes from [`VirtioBlk::take_responses`]. Call
    /// [`VirtioBlk::kick`] after a batch.
    ///
    /// # Errors
    /// [`Busy`] when every slot is held.
    pub fn submit(&mut self, req: &Request) -> Result<(), Busy> {
        let slot = self.slots[..self.nslots]
            .iter()
            .position(|s| *s == Slot::Free)
            .ok_or(Busy)?;
        match self.local_answer(req) {
            Some(status) => {
                self.stats.local += 1;
                self.slots[slot] = Slot::Done(Response { id: req.id, status });
            }
            None => self.post(slot, req, Phase::Request),
        }
        Ok(())
    }

    /// Writes slot `slot`'s chain for `req` and publishes it.
    fn post(&mut self, slot: usize, req: &Request, phase: Phase) {
        let base = self.dma.paddr();
        let seg = SEG_OFF + 16 * slot;
        // (type, the data descriptor: physical address, length, direction)
        let (kind, data) = match (phase, req.op) {
            (Phase::Request, Op::Read) => (
                T_IN,
                Some((
                    self.windows.read_data.paddr + req.data_offset,
                    req.data_len,
                    DESC_F_WRITE,
                )),
            ),
            (Phase::Request, Op::Write) => (
                T_OUT,
                Some((
                    self.windows.write_data.paddr + req.data_offset,
                    req.data_len,
                    0,
                )),
            ),
            (Phase::Request, Op::Discard | Op::WriteZeroes) => {
                // Flags 0: discard has none; write-zeroes without UNMAP
                // (the sectors must read as zeroes, nothing more).
                self.dma.write64(seg, req.sector);
                self.dma.write32(seg + 8, req.count);
                self.dma.write32(seg + 12, 0);
                let kind = if req.op == Op::Discard {
                    T_DISCARD
                } else {
                    T_WRITE_ZEROES
                };
                (kind, Some((base + seg as u64, 16, 0)))
            }
            _ => (T_FLUSH, None),
        };
        let hdr = HDR_OFF + 16 * slot;
        self.dma.write32(hdr, kind);
        self.dma.write32(hdr + 4, 0);
        // The sector field is 0 for flush, discard and write-zeroes
        // (their extent is in the segment).
        let sector = if matches!(kind, T_IN | T_OUT) {
            req.sector
        } else {
            0
        };
        self.dma.write64(hdr + 8, sector);
        self.dma.write8(STATUS_OFF + slot, STATUS_UNSET);

        // Descriptor indices 3·slot.. fit in u16: slot < MAX_SLOTS.
        let head = u16::try_from(DESC_PER_SLOT * slot).unwrap_or(0);
        let desc = |i: u16| DESC_OFF + 16 * usize::from(i);
        let mut write_desc = |i: u16, addr: u64, len: u32, flags: u16, next: u16| {
            self.dma.write64(desc(i), addr);
            self.dma.write32(desc(i) + 8, len);
            self.dma.write16(desc(i) + 12, flags);
            self.dma.write16(desc(i) + 14, next);
        };
        let status_desc = head + 2;
        match data {
            Some((addr, len, dir)) => {
                write_desc(head, base + hdr as u64, 16, DESC_F_NEXT, head + 1);
                write_desc(head + 1, addr, len, DESC_F_NEXT | dir, status_desc);
            }
            None => write_desc(head, base + hdr as u64, 16, DESC_F_NEXT, status_desc),
        }
        write_desc(
            status_desc,
            base + (STATUS_OFF + slot) as u64,
            1,
            DESC_F_WRITE,
            0,
        );
        let ring = AVAIL_OFF + 4 + 2 * usize::from(self.avail_idx % self.queue);
        self.dma.write16(ring, head);
        // The device must see the chain and the ring entry before the index.
        self.dma.barrier();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.dma.write16(AVAIL_OFF + 2, self.avail_idx);
        self.slots[slot] = Slot::Device(*req, phase);
        self.unnotified = true;
    }

    /// Tells the device about chains published since the last kick.
    pub fn kick(&mut self) {
        if self.unnotified {
            self.unnotified = false;
            // The index store must be visible before the notify write.
            self.dma.barrier();
            self.mmio.write32(QUEUE_NOTIFY, 0);
        }
    }

    /// Handles the device's interrupt: acknowledges it, checks for
    /// DEVICE_NEEDS_RESET on a configuration change, and collects
    /// completions ([`VirtioBlk::collect`]). Acknowledge the IRQ itself
    /// (`irq_ack`) afterwards.
    ///
    /// # Errors
    /// As [`VirtioBlk::collect`].
    pub fn interrupt(&mut self) -> Result<usize, DeviceError> {
        let isr = self.mmio.read32(INTERRUPT_STATUS);
        self.mmio
            .write32(INTERRUPT_ACK, isr & (INT_USED_BUFFER | INT_CONFIG_CHANGE));
        self.collect()
    }

    /// Moves every chain the device has completed to its answer (a
    /// completed FUA write goes back to the device as a flush first).
    /// Returns how many completed. Safe to call at any time (polling).
    ///
    /// # Errors
    /// The first [`DeviceError`] seen; the driver is then stopped (see
    /// [`DeviceError`]) and later calls return `Ok(0)`.
    pub fn collect(&mut self) -> Result<usize, DeviceError> {
        if self.broken.is_some() {
            return Ok(0);
        }
        if self.mmio.read32(STATUS) & S_DEVICE_NEEDS_RESET != 0 {
            return Err(self.stop(DeviceError::NeedsReset));
        }
        let now = self.dma.read16(USED_OFF + 2);
        let new = now.wrapping_sub(self.last_used);
        let on_device = self.slots[..self.nslots]
            .iter()
            .filter(|s| matches!(s, Slot::Device(..)))
            .count();
        if usize::from(new) > on_device {
            return Err(self.stop(DeviceError::UsedIndexJump {
                last: self.last_used,
                now,
            }));
        }
        // The elements must not be read before the index that covers them.
        self.dma.barrier();
        let mut reposted = false;
        for _ in 0..new {
            let elem = USED_OFF + 4 + 8 * usize::from(self.last_used % self.queue);
            let id = self.dma.read32(elem);
            let head = usize::try_from(id).unwrap_or(usize::MAX);
            let slot = head / DESC_PER_SLOT;
            let (req, phase) = match self.slots.get(slot) {
                Some(Slot::Device(r, p)) if head % DESC_PER_SLOT == 0 && slot < self.nslots => {
                    (*r, *p)
                }
                _ => return Err(self.stop(DeviceError::BadUsedId(id))),
            };
            self.last_used = self.last_used.wrapping_add(1);
            let byte = self.dma.read8(STATUS_OFF + slot);
            let status = slot_status(byte).unwrap_or_else(|| {
                self.stats.bad_status += 1;
                Status::IoErr
            });
            if status != Status::Ok {
                self.stats.device_errors += 1;
            }
            let fua = req.op == Op::Write && req.flags & FLAG_FUA != 0;
            if phase == Phase::Request
                && status == Status::Ok
                && fua
                && self.features & F_FLUSH != 0
            {
                self.post(slot, &req, Phase::FuaFlush);
                reposted = true;
            } else {
                self.stats.device_completed += 1;
                self.slots[slot] = Slot::Done(Response { id: req.id, status });
            }
        }
        if reposted {
            self.kick();
        }
        Ok(usize::from(new))
    }

    /// Resets the device (it stops using the queue and the data windows),
    /// answers what it held with IOERR and refuses everything from now on.
    fn stop(&mut self, e: DeviceError) -> DeviceError {
        self.mmio.write32(STATUS, 0);
        self.broken = Some(e);
        for s in &mut self.slots[..self.nslots] {
            if let Slot::Device(r, _) = *s {
                *s = Slot::Done(Response {
                    id: r.id,
                    status: Status::IoErr,
                });
            }
        }
        e
    }

    /// Hands answered requests to `push` (which returns false when it has
    /// no room: the rest stay for the next call) and frees their slots.
    /// Returns how many were taken.
    pub fn take_responses(&mut self, mut push: impl FnMut(&Response) -> bool) -> usize {
        let mut n = 0;
        for s in &mut self.slots[..self.nslots] {
            if let Slot::Done(r) = *s {
                if !push(&r) {
                    break;
                }
                *s = Slot::Free;
                n += 1;
            }
        }
        n
    }
}
