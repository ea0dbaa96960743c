//! The virtio-mmio v2 register state machine, device side (§4.2.2).
//!
//! The VMM decodes a guest's access to the device's MMIO window into
//! `(offset, width, value)` and calls [`MmioTransport::read`] or
//! [`MmioTransport::write`]. A write to QueueNotify returns
//! [`WriteEffect::QueueNotify`]; the VMM then calls
//! [`MmioTransport::process_queue`] with guest memory and raises the IRQ if
//! [`MmioTransport::interrupt_pending`].
//!
//! Rule-breaking accesses never index anything out of range and never
//! panic: control registers need 32-bit aligned accesses (else
//! [`MmioError`]); config space takes naturally aligned 8/16/32/64-bit
//! accesses, reading 0 and ignoring writes past its end; writes the state
//! does not allow are ignored. Every such event is counted in
//! [`TransportStats`].

use crate::device::{QueueContext, VirtioDevice};
use crate::mem::GuestMemory;
use crate::queue::{Queue, QueueError};
use crate::spec::feature::{RING_RESET, TRANSPORT_MASK, TRANSPORT_SUPPORTED, VERSION_1};
use crate::spec::reg::{self, INT_CONFIG, INT_VRING};
use crate::spec::status::{
    ACKNOWLEDGE, DEVICE_NEEDS_RESET, DRIVER, DRIVER_OK, FAILED, FEATURES_OK,
};

/// Most queues one device may have.
pub const MAX_QUEUES: usize = 8;

/// Why a device model cannot be put behind a transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// More than [`MAX_QUEUES`] queues, or none.
    QueueCount,
    /// A queue with QueueSizeMax 0 or above 32768.
    QueueMaxSize,
    /// A transport feature bit this crate does not implement.
    UnsupportedFeature,
}

/// A register access the transport refuses (the VMM decides what the guest
/// sees; reading 0 and ignoring the write is what real hardware does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// Not a 32-bit aligned access to 0x000–0x0fc, or not a naturally
    /// aligned 1/2/4/8-byte access to config space.
    BadAccess,
    /// No register at this offset.
    UnknownRegister,
    /// The value does not fit the access width.
    ValueTooWide,
}

/// What a register write asks the VMM to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    /// Nothing.
    None,
    /// The driver notified this (valid, ready) queue after DRIVER_OK: call
    /// [`MmioTransport::process_queue`].
    QueueNotify(u16),
    /// InterruptStatus bits were acknowledged: re-evaluate the IRQ line.
    InterruptAck,
    /// The driver reset the device.
    Reset,
    /// DRIVER_OK was accepted and the device activated.
    Activated,
}

/// Counters of driver errors and ignored accesses, per device. They are for
/// the VMM's logs and tests; nothing in the guest can read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Refused accesses (wrong width or alignment, unknown register).
    pub bad_accesses: u32,
    /// Config-space accesses past its end (read 0 / write ignored).
    pub config_out_of_range: u32,
    /// Writes ignored in the current state (read-only register, queue
    /// registers while ready or for an absent queue, status bits cleared
    /// without reset, features after FEATURES_OK, …) and reads of
    /// write-only registers.
    pub ignored: u32,
    /// FEATURES_OK refused.
    pub features_refused: u32,
    /// QueueReady refused (absent queue, bad size or alignment, before
    /// FEATURES_OK).
    pub queue_ready_refused: u32,
    /// QueueNotify for an absent or not-ready queue, or before DRIVER_OK.
    pub notifies_ignored: u32,
    /// Times DEVICE_NEEDS_RESET was set.
    pub needs_reset: u32,
    /// The last fatal queue error.
    pub last_queue_error: Option<QueueError>,
}

/// One virtio-mmio v2 device: registers, feature negotiation, queue
/// configuration and status, in front of a device model `D`.
pub struct MmioTransport<D> {
    device: D,
    queues: [Queue; MAX_QUEUES],
    num_queues: usize,
    offered: u64,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    /// The driver wrote a non-zero word for feature bits ≥ 64: no device
    /// offers those, so FEATURES_OK must be refused.
    driver_features_unknown: bool,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
    shm_sel: u32,
    stats: TransportStats,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Puts `device` behind a transport.
    ///
    /// # Errors
    /// [`TransportError`] if the device declares what the transport cannot
    /// serve.
    pub fn new(device: D) -> Result<Self, TransportError> {
        let sizes = device.queue_max_sizes();
        if sizes.is_empty() || sizes.len() > MAX_QUEUES {
            return Err(TransportError::QueueCount);
        }
        let mut queues: [Queue; MAX_QUEUES] = core::array::from_fn(|_| Queue::new(0));
        for (q, &max) in queues.iter_mut().zip(sizes) {
            if max == 0 || max > crate::spec::ring::MAX_QUEUE_SIZE {
                return Err(TransportError::QueueMaxSize);
            }
            *q = Queue::new(max);
        }
        let wanted = device.features();
        if wanted & TRANSPORT_MASK & !TRANSPORT_SUPPORTED != 0 {
            return Err(TransportError::UnsupportedFeature);
        }
        let num_queues = sizes.len();
        Ok(Self {
            device,
            queues,
            num_queues,
            offered: wanted | VERSION_1,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            driver_features_unknown: false,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
            shm_sel: 0,
            stats: TransportStats::default(),
        })
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device model, mutable (call [`Self::config_changed`] after
    /// changing its config space).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The Status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Features offered to the driver.
    pub fn offered_features(&self) -> u64 {
        self.offered
    }

    /// Features the driver accepted (final once FEATURES_OK is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// The InterruptStatus register.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// Whether the device's interrupt line should be asserted.
    pub fn interrupt_pending(&self) -> bool {
        self.interrupt_status != 0
    }

    /// Error and ignored-access counters.
    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Queue `index`, if the device has it.
    pub fn queue(&self, index: u16) -> Option<&Queue> {
        self.queues.get(..self.num_queues)?.get(usize::from(index))
    }

    /// The selected queue, if QueueSel names one the device has.
    fn selected(&mut self) -> Option<&mut Queue> {
        let i = usize::try_from(self.queue_sel).ok()?;
        self.queues.get_mut(..self.num_queues)?.get_mut(i)
    }

    /// The device changed its config space: bump ConfigGeneration so a
    /// driver reading several fields sees the change (§4.2.2.1), and raise
    /// the config-change interrupt once the driver is running.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG;
        }
    }

    /// Sets DEVICE_NEEDS_RESET (§2.1.2) and, after DRIVER_OK, notifies the
    /// driver through a config-change interrupt.
    pub fn set_needs_reset(&mut self) {
        if self.status & DEVICE_NEEDS_RESET == 0 {
            self.stats.needs_reset = self.stats.needs_reset.saturating_add(1);
        }
        self.status |= DEVICE_NEEDS_RESET;
        if self.status & DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG;
        }
    }

    fn ignored(&mut self) {
        self.stats.ignored = self.stats.ignored.saturating_add(1);
    }

    /// Whether the device may touch `queue` now (§2.1.2, §4.2.2.1): after
    /// DRIVER_OK, not FAILED or needing reset, and the queue ready.
    fn queue_runnable(&self, queue: u16) -> bool {
        self.status & DRIVER_OK != 0
            && self.status & (DEVICE_NEEDS_RESET | FAILED) == 0
            && self.queue(queue).is_some_and(|q| q.ready() && !q.stopped())
    }

    /// Runs the device model on `queue` with guest memory `mem` (after a
    /// [`WriteEffect::QueueNotify`], or when backend data arrived). Does
    /// nothing unless the queue may be touched. A fatal queue error sets
    /// DEVICE_NEEDS_RESET. Returns [`Self::interrupt_pending`].
    pub fn process_queue(&mut self, queue: u16, mem: &mut dyn GuestMemory) -> bool {
        if !self.queue_runnable(queue) {
            return self.interrupt_pending();
        }
        let Some(q) = self.queues.get_mut(usize::from(queue)) else {
            return self.interrupt_pending();
        };
        let mut ctx = QueueContext::new(queue, q, mem);
        let result = self.device.queue_notify(queue, &mut ctx);
        // Completions (including chains rejected with length 0) may need a
        // used-buffer notification even if the model then failed.
        let notify = q.needs_notification(mem);
        if let Ok(true) = notify {
            self.interrupt_status |= INT_VRING;
        }
        // The queue records its own fatal error even if the model swallowed
        // it; a fatal error the model made up itself counts too.
        let fatal = q.fatal_error().or(match result {
            Err(e) if e.is_fatal() => Some(e),
            _ => None,
        });
        if let Some(e) = fatal {
            self.stats.last_queue_error = Some(e);
            self.set_needs_reset();
        }
        self.interrupt_pending()
    }

    /// Device reset (Status = 0): §4.2.2.1 clears InterruptStatus and every
    /// QueueReady; the model forgets everything.
    fn reset(&mut self) {
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_unknown = false;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.shm_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
    }

    /// Whether the driver's features can be accepted (§2.2.2): a subset of
    /// the offer, VERSION_1 included (no legacy interface here), nothing
    /// beyond bit 63, and acceptable to the model.
    fn features_acceptable(&self) -> bool {
        let f = self.driver_features;
        !self.driver_features_unknown
            && f & !self.offered == 0
            && f & VERSION_1 != 0
            && self.device.accept_features(f)
    }

    fn write_status(&mut self, v: u32) -> WriteEffect {
        if v == 0 {
            self.reset();
            return WriteEffect::Reset;
        }
        // DEVICE_NEEDS_RESET is the device's bit; the driver cannot set or
        // clear it, and SUSPEND is not offered.
        let keep = self.status & DEVICE_NEEDS_RESET;
        let old = self.status & !DEVICE_NEEDS_RESET;
        let new = v & (ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK | FAILED);
        if new & old != old || v & !(new | DEVICE_NEEDS_RESET) != 0 {
            // Only a reset clears bits (§2.1.1); unknown bits are not ours.
            self.ignored();
            return WriteEffect::None;
        }
        let added = new & !old;
        let mut status = old | (added & (ACKNOWLEDGE | DRIVER | FAILED));
        if added & FEATURES_OK != 0 {
            if status & DRIVER != 0 && self.features_acceptable() {
                status |= FEATURES_OK;
            } else {
                self.stats.features_refused = self.stats.features_refused.saturating_add(1);
            }
        }
        let mut effect = WriteEffect::None;
        if added & DRIVER_OK != 0 {
            if status & FEATURES_OK != 0 && status & FAILED == 0 {
                status |= DRIVER_OK;
                effect = WriteEffect::Activated;
            } else {
                // DRIVER_OK without negotiated features: the driver skipped
                // §3.1.1 step 5; it must start over.
                self.status = status | keep;
                self.set_needs_reset();
                return WriteEffect::None;
            }
        }
        self.status = status | keep;
        if effect == WriteEffect::Activated {
            self.device.activate(self.driver_features);
        }
        effect
    }

    /// A guest read of `width` bytes at `offset` in the device's window.
    ///
    /// # Errors
    /// [`MmioError::BadAccess`] for a wrong width or alignment,
    /// [`MmioError::UnknownRegister`] for a hole in 0x000–0x0fc.
    pub fn read(&mut self, offset: u64, width: u8) -> Result<u64, MmioError> {
        if offset >= reg::CONFIG {
            return self.read_config(offset - reg::CONFIG, width);
        }
        self.check_register_access(offset, width)?;
        let v: u32 = match offset {
            reg::MAGIC_VALUE => reg::MAGIC,
            reg::VERSION => 2,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => self.device.vendor_id(),
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => low32(self.offered),
                1 => high32(self.offered),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => u32::from(self.selected().is_some_and(|q| q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            // Absent shared-memory region: length −1 (§4.2.2); base too.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            // Queue resets complete synchronously, so it always reads 0.
            reg::QUEUE_RESET => 0,
            reg::CONFIG_GENERATION => self.config_generation,
            reg::DEVICE_FEATURES_SEL
            | reg::DRIVER_FEATURES
            | reg::DRIVER_FEATURES_SEL
            | reg::QUEUE_SEL
            | reg::QUEUE_NUM
            | reg::QUEUE_NOTIFY
            | reg::INTERRUPT_ACK
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH
            | reg::SHM_SEL => {
                // Write-only (§4.2.2.2: the driver MUST NOT read these).
                self.ignored();
                0
            }
            _ => return self.unknown(),
        };
        Ok(u64::from(v))
    }

    /// A guest write of `value` (`width` bytes) at `offset` in the window.
    ///
    /// # Errors
    /// As [`Self::read`], and [`MmioError::ValueTooWide`].
    pub fn write(&mut self, offset: u64, width: u8, value: u64) -> Result<WriteEffect, MmioError> {
        if width < 8 && value >> (u32::from(width) * 8) != 0 {
            self.stats.bad_accesses = self.stats.bad_accesses.saturating_add(1);
            return Err(MmioError::ValueTooWide);
        }
        if offset >= reg::CONFIG {
            return self.write_config(offset - reg::CONFIG, width, value);
        }
        self.check_register_access(offset, width)?;
        let v = u32::try_from(value).map_err(|_| MmioError::ValueTooWide)?;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES => {
                // §3.1.1: features are written between DRIVER and FEATURES_OK.
                if self.status & FEATURES_OK != 0 || self.status & DRIVER == 0 {
                    self.ignored();
                } else {
                    match self.driver_features_sel {
                        0 => {
                            self.driver_features =
                                (self.driver_features & !0xffff_ffff) | u64::from(v)
                        }
                        1 => {
                            self.driver_features =
                                (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                        }
                        _ => self.driver_features_unknown |= v != 0,
                    }
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => self.with_idle_queue(|q| q.set_size(v)),
            reg::QUEUE_DESC_LOW => {
                self.with_idle_queue(|q| q.set_desc_table(set_low(q.addresses().0, v)))
            }
            reg::QUEUE_DESC_HIGH => {
                self.with_idle_queue(|q| q.set_desc_table(set_high(q.addresses().0, v)))
            }
            reg::QUEUE_DRIVER_LOW => {
                self.with_idle_queue(|q| q.set_avail_ring(set_low(q.addresses().1, v)))
            }
            reg::QUEUE_DRIVER_HIGH => {
                self.with_idle_queue(|q| q.set_avail_ring(set_high(q.addresses().1, v)))
            }
            reg::QUEUE_DEVICE_LOW => {
                self.with_idle_queue(|q| q.set_used_ring(set_low(q.addresses().2, v)))
            }
            reg::QUEUE_DEVICE_HIGH => {
                self.with_idle_queue(|q| q.set_used_ring(set_high(q.addresses().2, v)))
            }
            reg::QUEUE_READY => self.write_queue_ready(v),
            reg::QUEUE_NOTIFY => return Ok(self.write_queue_notify(v)),
            reg::INTERRUPT_ACK => {
                self.interrupt_status &= !v;
                return Ok(WriteEffect::InterruptAck);
            }
            reg::STATUS => return Ok(self.write_status(v)),
            reg::SHM_SEL => self.shm_sel = v,
            reg::QUEUE_RESET => self.write_queue_reset(v),
            reg::MAGIC_VALUE
            | reg::VERSION
            | reg::DEVICE_ID
            | reg::VENDOR_ID
            | reg::DEVICE_FEATURES
            | reg::QUEUE_NUM_MAX
            | reg::INTERRUPT_STATUS
            | reg::SHM_LEN_LOW
            | reg::SHM_LEN_HIGH
            | reg::SHM_BASE_LOW
            | reg::SHM_BASE_HIGH
            | reg::CONFIG_GENERATION => self.ignored(),
            _ => return self.unknown(),
        }
        Ok(WriteEffect::None)
    }

    fn unknown<T>(&mut self) -> Result<T, MmioError> {
        self.stats.bad_accesses = self.stats.bad_accesses.saturating_add(1);
        Err(MmioError::UnknownRegister)
    }

    /// §4.2.2.2: 32-bit wide and aligned accesses only for 0x000–0x0fc.
    fn check_register_access(&mut self, offset: u64, width: u8) -> Result<(), MmioError> {
        if width != 4 || offset % 4 != 0 {
            self.stats.bad_accesses = self.stats.bad_accesses.saturating_add(1);
            return Err(MmioError::BadAccess);
        }
        Ok(())
    }

    /// Applies `f` to the selected queue if it exists and is not ready
    /// (§4.2.3.2: configuration is written before QueueReady).
    fn with_idle_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        match self.selected() {
            Some(q) if !q.ready() => f(q),
            _ => self.ignored(),
        }
    }

    fn write_queue_ready(&mut self, v: u32) {
        let features = self.driver_features;
        let features_ok = self.status & FEATURES_OK != 0;
        let Some(q) = self.selected() else {
            self.stats.queue_ready_refused = self.stats.queue_ready_refused.saturating_add(1);
            return;
        };
        match v {
            0 => q.reset(),
            1 if features_ok => {
                if q.set_ready(features).is_err() {
                    self.stats.queue_ready_refused =
                        self.stats.queue_ready_refused.saturating_add(1);
                    self.set_needs_reset();
                }
            }
            _ => self.stats.queue_ready_refused = self.stats.queue_ready_refused.saturating_add(1),
        }
    }

    fn write_queue_notify(&mut self, v: u32) -> WriteEffect {
        match u16::try_from(v) {
            Ok(q) if self.queue_runnable(q) => WriteEffect::QueueNotify(q),
            _ => {
                self.stats.notifies_ignored = self.stats.notifies_ignored.saturating_add(1);
                WriteEffect::None
            }
        }
    }

    fn write_queue_reset(&mut self, v: u32) {
        let negotiated = self.driver_features & RING_RESET != 0 && self.status & FEATURES_OK != 0;
        let sel = u16::try_from(self.queue_sel).ok();
        match (self.selected(), sel) {
            (Some(q), Some(i)) if negotiated && v == 1 => {
                q.reset();
                self.device.queue_reset(i);
            }
            _ => self.ignored(),
        }
    }

    /// The config-space window `[offset, offset + width)` if the access is
    /// well-formed: `None` for a refused width or alignment.
    fn config_access(
        &mut self,
        offset: u64,
        width: u8,
    ) -> Result<Option<(usize, usize)>, MmioError> {
        // §4.2.2.2: 8-bit fields by 8-bit accesses, 16-bit by aligned 16-bit,
        // 32/64-bit by aligned 32-bit; 64-bit accesses are accepted too
        // (aligned), as some drivers use them.
        if !matches!(width, 1 | 2 | 4 | 8) || offset % u64::from(width) != 0 {
            self.stats.bad_accesses = self.stats.bad_accesses.saturating_add(1);
            return Err(MmioError::BadAccess);
        }
        let len = self.device.config_len();
        let w = usize::from(width);
        match usize::try_from(offset)
            .ok()
            .and_then(|o| Some((o, o.checked_add(w)?)))
        {
            Some((start, end)) if end <= len => Ok(Some((start, w))),
            _ => {
                self.stats.config_out_of_range = self.stats.config_out_of_range.saturating_add(1);
                Ok(None)
            }
        }
    }

    fn read_config(&mut self, offset: u64, width: u8) -> Result<u64, MmioError> {
        let Some((start, w)) = self.config_access(offset, width)? else {
            return Ok(0);
        };
        let mut b = [0u8; 8];
        let dst = b.get_mut(..w).ok_or(MmioError::BadAccess)?;
        self.device.read_config(start, dst);
        Ok(u64::from_le_bytes(b))
    }

    fn write_config(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
    ) -> Result<WriteEffect, MmioError> {
        let Some((start, w)) = self.config_access(offset, width)? else {
            return Ok(WriteEffect::None);
        };
        let b = value.to_le_bytes();
        let src = b.get(..w).ok_or(MmioError::BadAccess)?;
        self.device.write_config(start, src);
        Ok(WriteEffect::None)
    }
}

fn low32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

fn high32(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or(0)
}

fn set_low(old: u64, v: u32) -> u64 {
    (old & !0xffff_ffff) | u64::from(v)
}

fn set_high(old: u64, v: u32) -> u64 {
    (old & 0xffff_ffff) | (u64::from(v) << 32)
}
