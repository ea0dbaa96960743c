//! The device side of one split virtqueue (§2.7): configuration checked when
//! the driver makes the queue ready, popping validated chains from the
//! available ring, completing them on the used ring, and notification
//! suppression (EVENT_IDX, NO_INTERRUPT).
//!
//! What a rule-breaking driver gets, case by case:
//!
//! | driver error | outcome |
//! |---|---|
//! | bad size/alignment at QueueReady | QueueReady refused (stays 0) |
//! | rings not inside guest RAM | [`QueueError::RingOutOfRange`], fatal |
//! | `avail.idx − last_seen > QS` | [`QueueError::AvailIdxJump`], fatal |
//! | head index ≥ QS in the avail ring | [`QueueError::HeadOutOfRange`], fatal |
//! | malformed chain ([`ChainError`]) | returned to the used ring with len 0, queue usable |
//!
//! "Fatal" means the queue stops (no further guest-memory access) until the
//! driver resets it; the transport then sets `DEVICE_NEEDS_RESET`. Fatal
//! cases are the ones where the device cannot name a buffer to give back: a
//! bad head index or an avail index that jumped leaves no id to return, and
//! rings outside RAM leave nowhere to return it. Every chain the device can
//! name is returned, so no buffer is ever lost.
//!
//! Ordering (§2.7.13): `avail.idx` is read, then an acquire fence, then the
//! ring entries it covers; a used element is written, then a release fence,
//! then `used.idx`. The fences are [`GuestMemory`]'s, so the VMM's memory
//! decides how they reach the guest's vCPUs.

use crate::chain::{walk, ChainError, DescriptorChain};
use crate::mem::{read_u16, write_u16, GuestMemory, MemError};
use crate::spec::feature::{EVENT_IDX, INDIRECT_DESC};
use crate::spec::ring::{AVAIL_F_NO_INTERRUPT, DESC_SIZE, MAX_QUEUE_SIZE, USED_ELEM_SIZE};

/// A queue operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is not ready (QueueReady is 0) or has been stopped.
    NotReady,
    /// QueueSize is 0, not a power of two, or above QueueSizeMax.
    InvalidSize,
    /// A ring address is not aligned (descriptors 16, avail 2, used 4) or a
    /// ring's end overflows.
    Misaligned,
    /// A ring is not entirely inside guest RAM. Fatal.
    RingOutOfRange,
    /// The driver's `avail.idx` moved more than the queue size past the last
    /// entry the device saw. Fatal.
    AvailIdxJump,
    /// The avail ring names a head descriptor ≥ the queue size. Fatal.
    HeadOutOfRange,
    /// The chain was popped before the queue was reset: its buffers belong
    /// to the driver again and must not be completed.
    StaleChain,
}

impl QueueError {
    /// Whether the queue stopped and the device needs a reset.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            Self::RingOutOfRange | Self::AvailIdxJump | Self::HeadOutOfRange
        )
    }
}

/// `vring_need_event` (§2.7.7.2 with EVENT_IDX): whether moving the used index
/// from `old` to `new` passes the driver's `event` index, in wrapping u16
/// arithmetic.
pub fn vring_need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// One split virtqueue, device side.
#[derive(Clone, Debug)]
pub struct Queue {
    max_size: u16,
    // Driver-written configuration, validated by `set_ready`.
    req_size: u32,
    desc: u64,
    avail: u64,
    used: u64,
    ready: bool,
    // Valid while ready.
    size: u16,
    event_idx: bool,
    indirect: bool,
    // Runtime state.
    rings_checked: bool,
    fatal: Option<QueueError>,
    last_avail: u16,
    avail_shadow: u16,
    next_used: u16,
    signalled_used: u16,
    epoch: u32,
    rejected: u32,
    last_chain_error: Option<ChainError>,
}

impl Queue {
    /// A queue the driver may size up to `max_size` (clamped to 32768).
    pub fn new(max_size: u16) -> Self {
        let max_size = max_size.min(MAX_QUEUE_SIZE);
        Self {
            max_size,
            req_size: u32::from(max_size),
            desc: 0,
            avail: 0,
            used: 0,
            ready: false,
            size: 0,
            event_idx: false,
            indirect: false,
            rings_checked: false,
            fatal: None,
            last_avail: 0,
            avail_shadow: 0,
            next_used: 0,
            signalled_used: 0,
            epoch: 0,
            rejected: 0,
            last_chain_error: None,
        }
    }

    /// QueueSizeMax.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// QueueReady.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The validated queue size (0 while not ready).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Whether a fatal error stopped the queue.
    pub fn stopped(&self) -> bool {
        self.fatal.is_some()
    }

    /// The fatal error that stopped the queue, if any.
    pub fn fatal_error(&self) -> Option<QueueError> {
        self.fatal
    }

    /// The reset epoch (see [`DescriptorChain::epoch`]).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Malformed chains returned with length 0 since the last reset.
    pub fn rejected_chains(&self) -> u32 {
        self.rejected
    }

    /// Why the last malformed chain was rejected.
    pub fn last_chain_error(&self) -> Option<ChainError> {
        self.last_chain_error
    }

    /// The next used index the device will publish.
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// The guest-physical addresses `(desc, avail, used)` as configured.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (self.desc, self.avail, self.used)
    }

    /// QueueSize as written (ignored while ready).
    pub fn set_size(&mut self, size: u32) {
        if !self.ready {
            self.req_size = size;
        }
    }

    /// QueueDesc (ignored while ready).
    pub fn set_desc_table(&mut self, gpa: u64) {
        if !self.ready {
            self.desc = gpa;
        }
    }

    /// QueueDriver, the available ring (ignored while ready).
    pub fn set_avail_ring(&mut self, gpa: u64) {
        if !self.ready {
            self.avail = gpa;
        }
    }

    /// QueueDevice, the used ring (ignored while ready).
    pub fn set_used_ring(&mut self, gpa: u64) {
        if !self.ready {
            self.used = gpa;
        }
    }

    /// QueueReady = 1 with the negotiated `features`: checks the size and the
    /// ring alignment (§2.7: descriptors 16, avail 2, used 4) and starts a
    /// fresh ring state.
    ///
    /// # Errors
    /// [`QueueError::InvalidSize`] or [`QueueError::Misaligned`]; the queue
    /// stays not ready.
    pub fn set_ready(&mut self, features: u64) -> Result<(), QueueError> {
        if self.ready {
            return Ok(());
        }
        let size = u16::try_from(self.req_size).map_err(|_| QueueError::InvalidSize)?;
        if size == 0 || !size.is_power_of_two() || size > self.max_size {
            return Err(QueueError::InvalidSize);
        }
        if self.desc % 16 != 0 || self.avail % 2 != 0 || self.used % 4 != 0 {
            return Err(QueueError::Misaligned);
        }
        let (d, a, u) = Self::ring_lengths(size);
        for (base, len) in [(self.desc, d), (self.avail, a), (self.used, u)] {
            base.checked_add(len).ok_or(QueueError::Misaligned)?;
        }
        self.size = size;
        self.event_idx = features & EVENT_IDX != 0;
        self.indirect = features & INDIRECT_DESC != 0;
        self.ready = true;
        self.start_fresh();
        Ok(())
    }

    /// QueueReady = 0, a queue reset (QueueReset) or a device reset: the
    /// queue forgets its configuration and every chain popped so far.
    pub fn reset(&mut self) {
        let (max, epoch) = (self.max_size, self.epoch.wrapping_add(1));
        *self = Self::new(max);
        self.epoch = epoch;
    }

    fn start_fresh(&mut self) {
        self.rings_checked = false;
        self.fatal = None;
        self.last_avail = 0;
        self.avail_shadow = 0;
        self.next_used = 0;
        self.signalled_used = 0;
        self.rejected = 0;
        self.last_chain_error = None;
    }

    /// Bytes of the descriptor table, avail ring and used ring, including
    /// `used_event` and `avail_event`.
    fn ring_lengths(size: u16) -> (u64, u64, u64) {
        let s = u64::from(size);
        (DESC_SIZE * s, 6 + 2 * s, 6 + USED_ELEM_SIZE * s)
    }

    /// Stops the queue on a fatal error.
    fn fail(&mut self, e: QueueError) -> QueueError {
        if e.is_fatal() {
            self.fatal = Some(e);
        }
        e
    }

    /// Ready, not stopped, and (once) the rings checked against guest RAM.
    fn usable<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<(), QueueError> {
        if !self.ready || self.fatal.is_some() {
            return Err(QueueError::NotReady);
        }
        if !self.rings_checked {
            let (d, a, u) = Self::ring_lengths(self.size);
            for (base, len) in [(self.desc, d), (self.avail, a), (self.used, u)] {
                if mem.check_range(base, len).is_err() {
                    return Err(self.fail(QueueError::RingOutOfRange));
                }
            }
            self.rings_checked = true;
        }
        Ok(())
    }

    // Ring field addresses. No overflow: `set_ready` checked every ring's
    // end, and every offset below is inside its ring.
    fn avail_flags(&self) -> u64 {
        self.avail
    }
    fn avail_idx(&self) -> u64 {
        self.avail + 2
    }
    fn avail_slot(&self, slot: u16) -> u64 {
        self.avail + 4 + 2 * u64::from(slot)
    }
    fn used_event(&self) -> u64 {
        self.avail_slot(self.size)
    }
    fn used_idx(&self) -> u64 {
        self.used + 2
    }
    fn used_slot(&self, slot: u16) -> u64 {
        self.used + 4 + USED_ELEM_SIZE * u64::from(slot)
    }
    fn avail_event(&self) -> u64 {
        self.used_slot(self.size)
    }

    /// Reads `avail.idx` once and checks it against the last entry seen.
    fn read_avail_idx<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Result<u16, QueueError> {
        let idx =
            read_u16(mem, self.avail_idx()).map_err(|_| self.fail(QueueError::RingOutOfRange))?;
        if idx.wrapping_sub(self.last_avail) > self.size {
            return Err(self.fail(QueueError::AvailIdxJump));
        }
        mem.acquire_fence();
        self.avail_shadow = idx;
        Ok(idx)
    }

    /// Whether the driver has made another chain available.
    fn has_avail<M: GuestMemory + ?Sized>(&mut self, mem: &mut M) -> Result<bool, QueueError> {
        if self.last_avail != self.avail_shadow {
            return Ok(true);
        }
        if self.read_avail_idx(mem)? != self.last_avail {
            return Ok(true);
        }
        if self.event_idx {
            // §2.7.10: ask to be notified when the driver adds past what the
            // device has seen, then look again so an addition racing with
            // this write is not missed.
            write_u16(mem, self.avail_event(), self.last_avail)
                .map_err(|_| self.fail(QueueError::RingOutOfRange))?;
            mem.full_fence();
            return Ok(self.read_avail_idx(mem)? != self.last_avail);
        }
        Ok(false)
    }

    /// Pops the next available chain, validated into a [`DescriptorChain`]
    /// of at most `N` buffers. Malformed chains met on the way are returned
    /// to the used ring with length 0 and skipped.
    ///
    /// # Errors
    /// [`QueueError::NotReady`] if the queue is not ready or stopped; a fatal
    /// error (see the module table) stops the queue.
    pub fn pop<M: GuestMemory + ?Sized, const N: usize>(
        &mut self,
        mem: &mut M,
    ) -> Result<Option<DescriptorChain<N>>, QueueError> {
        self.usable(mem)?;
        while self.has_avail(mem)? {
            let slot = self.last_avail & (self.size - 1);
            let head = read_u16(mem, self.avail_slot(slot))
                .map_err(|_| self.fail(QueueError::RingOutOfRange))?;
            if head >= self.size {
                return Err(self.fail(QueueError::HeadOutOfRange));
            }
            self.last_avail = self.last_avail.wrapping_add(1);
            match walk(mem, self.desc, self.size, head, self.indirect, self.epoch) {
                Ok(chain) => return Ok(Some(chain)),
                Err(e) => {
                    self.rejected = self.rejected.saturating_add(1);
                    self.last_chain_error = Some(e);
                    self.push_used(mem, head, 0)?;
                }
            }
        }
        Ok(None)
    }

    /// Returns `chain` to the driver with `len` bytes written (clamped to
    /// the chain's writable length).
    ///
    /// # Errors
    /// [`QueueError::StaleChain`] if the queue was reset since the pop (the
    /// used ring is not touched), [`QueueError::NotReady`], or a fatal error.
    pub fn add_used<M: GuestMemory + ?Sized, const N: usize>(
        &mut self,
        mem: &mut M,
        chain: &DescriptorChain<N>,
        len: u32,
    ) -> Result<(), QueueError> {
        if chain.epoch() != self.epoch {
            return Err(QueueError::StaleChain);
        }
        self.usable(mem)?;
        let len = u64::from(len).min(chain.writable_len());
        self.push_used(mem, chain.head(), u32::try_from(len).unwrap_or(u32::MAX))
    }

    fn push_used<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        id: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        let slot = self.next_used & (self.size - 1);
        let mut elem = [0u8; 8];
        let (i, l) = elem.split_at_mut(4);
        i.copy_from_slice(&u32::from(id).to_le_bytes());
        l.copy_from_slice(&len.to_le_bytes());
        let r = mem.write(self.used_slot(slot), &elem).and_then(|()| {
            // §2.7.8.2: the element (and the buffer contents before it)
            // must be visible before the index that publishes it.
            mem.release_fence();
            write_u16(mem, self.used_idx(), self.next_used.wrapping_add(1))
        });
        r.map_err(|_: MemError| self.fail(QueueError::RingOutOfRange))?;
        self.next_used = self.next_used.wrapping_add(1);
        Ok(())
    }

    /// Whether the driver wants a used-buffer notification for what was
    /// added since the last call (§2.7.7.2): with EVENT_IDX, when the used
    /// index passed `used_event`; without, unless `avail.flags` has
    /// NO_INTERRUPT. Nothing added means no notification.
    ///
    /// # Errors
    /// [`QueueError::NotReady`] or a fatal error.
    pub fn needs_notification<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<bool, QueueError> {
        self.usable(mem)?;
        let (old, new) = (self.signalled_used, self.next_used);
        if old == new {
            return Ok(false);
        }
        self.signalled_used = new;
        // The used index write must be visible before reading the driver's
        // suppression state, or a driver re-enabling interrupts is missed.
        mem.full_fence();
        if self.event_idx {
            let event = read_u16(mem, self.used_event())
                .map_err(|_| self.fail(QueueError::RingOutOfRange))?;
            Ok(vring_need_event(event, new, old))
        } else {
            let flags = read_u16(mem, self.avail_flags())
                .map_err(|_| self.fail(QueueError::RingOutOfRange))?;
            Ok(flags & AVAIL_F_NO_INTERRUPT == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §2.7.7.2 (EVENT_IDX): notify exactly when the new used index passes
    /// `used_event`, across the u16 wrap. Exhaustive over a window of
    /// events and batch sizes around the wrap.
    #[test]
    fn verify_spec_2_7_7_2_need_event_is_wrapping_interval_test() {
        for old in [0u16, 1, 100, 65530, 65535] {
            for batch in 0u16..=8 {
                let new = old.wrapping_add(batch);
                for d in 0u16..=10 {
                    let event = old.wrapping_add(d).wrapping_sub(1);
                    // Passing `event` means event ∈ [old, new).
                    let expect = d >= 1 && d <= batch;
                    assert_eq!(
                        vring_need_event(event, new, old),
                        expect,
                        "old {old} batch {batch} event {event}"
                    );
                }
            }
        }
    }

    #[test]
    fn verify_spec_2_7_queue_size_must_be_power_of_two_and_at_most_max() {
        let mut q = Queue::new(256);
        for bad in [0u32, 3, 255, 512, 65536, u32::MAX] {
            q.set_size(bad);
            assert_eq!(q.set_ready(0), Err(QueueError::InvalidSize), "size {bad}");
            assert!(!q.ready());
        }
        q.set_size(256);
        assert_eq!(q.set_ready(0), Ok(()));
    }

    #[test]
    fn verify_spec_2_7_ring_alignment_is_enforced() {
        for (d, a, u) in [
            (8u64, 0u64, 0u64),
            (0, 1, 0),
            (0, 0, 2),
            (u64::MAX - 15, 0, 0),
        ] {
            let mut q = Queue::new(16);
            q.set_desc_table(d);
            q.set_avail_ring(a);
            q.set_used_ring(u);
            assert_eq!(q.set_ready(0), Err(QueueError::Misaligned));
        }
    }
}
