//! The two ends of one ring: [`Producer`] and [`Consumer`], and the notification protocol.
//!
//! Each end keeps its own index in a private field and only *writes* it to
//! shared memory; it never reads it back (the peer could have scribbled on
//! it). The peer's index is loaded once per refresh and validated with
//! wrapping arithmetic — `tail - head <= capacity` — before it is used, and
//! slot positions are `index & (capacity - 1)`, so no value of any shared word
//! can make either end touch memory outside its ring. A failed validation
//! poisons the end: every later call returns the same [`RingError::Corrupt`]
//! until it is attached again, because a neighbour that wrote an impossible
//! index is faulty and must be restarted, not trusted a second time.
//!
//! Notifications (`need_signal`, see README "Notification protocol"):
//!
//! ```
//! use bulkhead_ring::{CacheLine, Consumer, Producer, Region, Armed};
//! let lines: Vec<CacheLine> = (0..8).map(|_| CacheLine::new()).collect();
//! let region = Region::from_lines(&lines);
//! let mut tx = Producer::<u32>::attach(region, 8)?;
//! let mut rx = Consumer::<u32>::attach(region, 8)?;
//!
//! // Consumer, out of work: ask for a signal, then sleep only if still empty.
//! assert_eq!(rx.arm_signal()?, Armed::MaySleep);
//! // Producer: publish, then signal only if the consumer asked.
//! tx.push(&7)?;
//! assert!(tx.notify_needed());   // -> microkit_notify(channel)
//! tx.push(&8)?;
//! assert!(!tx.notify_needed());  // consumer did not ask again: no syscall
//! assert_eq!(rx.pop()?, Some(7));
//! # Ok::<(), bulkhead_ring::RingError>(())
//! ```

use core::marker::PhantomData;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use crate::layout::{self, HEADER_WORDS};
use crate::{Pod, Region, RingError};

/// What [`Consumer::arm_signal`] found after asking for a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Armed {
    /// Entries arrived meanwhile: keep consuming, do not sleep. The request
    /// for a signal has been withdrawn (a signal may still arrive; the
    /// consumer's loop must tolerate a spurious wake-up).
    Pending,
    /// The ring was empty after the request was visible to the producer: it is
    /// safe to wait for the notification, which the producer will send after
    /// its next publish.
    MaySleep,
}

/// The shared words of one ring, located once at attach time.
#[derive(Debug)]
struct View<'a> {
    tail: &'a AtomicU32,
    head: &'a AtomicU32,
    need_signal: &'a AtomicU32,
    slots: &'a [AtomicU32],
    capacity: u32,
    mask: u32,
}

impl<'a> View<'a> {
    /// Locates the header and slots of a ring of `capacity` `T`s in `region`,
    /// writes our layout tag at `own_tag` and checks the peer's at `peer_tag`.
    fn attach<T: Pod>(
        region: Region<'a>,
        capacity: u32,
        own_tag: usize,
        peer_tag: usize,
    ) -> Result<Self, RingError> {
        let needed = layout::ring_bytes(capacity, T::WORDS)?;
        if region.len_bytes() < needed {
            return Err(RingError::RegionTooSmall {
                needed,
                got: region.len_bytes(),
            });
        }
        let words = region.words();
        let word = |i: usize| {
            words
                .get(i)
                .ok_or(RingError::RegionTooSmall { needed, got: 0 })
        };
        let cap = usize::try_from(capacity).map_err(|_| RingError::BadCapacity)?;
        let slot_words = u32::try_from(T::WORDS).map_err(|_| RingError::SlotTooLarge)?;
        let slots = words
            .get(HEADER_WORDS..HEADER_WORDS + cap * T::WORDS)
            .ok_or(RingError::RegionTooSmall {
                needed,
                got: region.len_bytes(),
            })?;

        let ours = layout::tag(capacity, slot_words);
        word(own_tag)?.store(ours, Ordering::Relaxed);
        let theirs = word(peer_tag)?.load(Ordering::Relaxed);
        // Zero: the peer has not attached yet (a fresh Microkit region is zeroed).
        if theirs != 0 && theirs != ours {
            return Err(RingError::LayoutMismatch { ours, theirs });
        }
        Ok(Self {
            tail: word(layout::TAIL)?,
            head: word(layout::HEAD)?,
            need_signal: word(layout::NEED_SIGNAL)?,
            slots,
            capacity,
            mask: capacity - 1,
        })
    }

    /// The `T::WORDS` words of the slot for free-running index `index`.
    fn slot<T: Pod>(&self, index: u32) -> Result<&'a [AtomicU32], RingError> {
        let base =
            usize::try_from(index & self.mask).map_err(|_| RingError::BadCapacity)? * T::WORDS;
        // In range by construction (`slots` holds capacity * WORDS words and
        // the masked index is below capacity); `get` keeps that a typed error
        // rather than a panic path should it ever be wrong.
        self.slots
            .get(base..base + T::WORDS)
            .ok_or(RingError::BadCapacity)
    }
}

/// The producing end of a ring of `T`s.
#[derive(Debug)]
pub struct Producer<'a, T: Pod> {
    view: View<'a>,
    /// Our index; authoritative, never read back from shared memory.
    tail: u32,
    /// The consumer's index as last loaded and validated.
    head_seen: u32,
    poisoned: Option<RingError>,
    _slot: PhantomData<T>,
}

impl<'a, T: Pod> Producer<'a, T> {
    /// Attaches as the producer of a ring of `capacity` (a power of two)
    /// entries at the start of `region`, resuming from the `tail` stored
    /// there (zero in a fresh region).
    ///
    /// # Errors
    /// [`RingError::BadCapacity`], [`RingError::SlotTooLarge`],
    /// [`RingError::RegionTooSmall`], or [`RingError::LayoutMismatch`] if the
    /// consumer attached with a different capacity, slot size or version.
    pub fn attach(region: Region<'a>, capacity: u32) -> Result<Self, RingError> {
        let view = View::attach::<T>(region, capacity, layout::PRODUCER_TAG, layout::CONSUMER_TAG)?;
        let tail = view.tail.load(Ordering::Relaxed);
        // Assume full until the consumer's head has been loaded and validated.
        let head_seen = tail.wrapping_sub(capacity);
        Ok(Self {
            view,
            tail,
            head_seen,
            poisoned: None,
            _slot: PhantomData,
        })
    }

    /// Number of entries the ring holds.
    #[must_use]
    pub fn capacity(&self) -> u32 {
        self.view.capacity
    }

    /// Loads and validates the consumer's `head`.
    fn refresh(&mut self) -> Result<(), RingError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        let head = self.view.head.load(Ordering::Acquire);
        if self.tail.wrapping_sub(head) > self.view.capacity {
            let e = RingError::Corrupt {
                ours: self.tail,
                theirs: head,
            };
            self.poisoned = Some(e);
            return Err(e);
        }
        self.head_seen = head;
        Ok(())
    }

    /// Free slots, after re-reading the consumer's index.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] if the consumer's index is impossible.
    pub fn free(&mut self) -> Result<u32, RingError> {
        self.refresh()?;
        Ok(self.view.capacity - self.tail.wrapping_sub(self.head_seen))
    }

    /// Copies `item` into the next slot and publishes it (release store of
    /// `tail`). Call [`Producer::notify_needed`] after a batch of pushes.
    ///
    /// # Errors
    /// [`RingError::Full`] (nothing written), or [`RingError::Corrupt`] if the
    /// consumer's index is impossible.
    pub fn push(&mut self, item: &T) -> Result<(), RingError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        if self.tail.wrapping_sub(self.head_seen) >= self.view.capacity {
            self.refresh()?;
            if self.tail.wrapping_sub(self.head_seen) >= self.view.capacity {
                return Err(RingError::Full);
            }
        }
        let slot = self.view.slot::<T>(self.tail)?;
        item.store(&mut |i, w| {
            if let Some(word) = slot.get(i) {
                word.store(w, Ordering::Relaxed);
            }
        });
        self.tail = self.tail.wrapping_add(1);
        // Release: the slot words above are visible to a consumer that
        // acquires this tail.
        self.view.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// After publishing: whether the consumer asked to be notified. If so the
    /// request is consumed (cleared) and the caller must signal the consumer
    /// (`microkit_notify`) exactly once.
    ///
    /// The full fence orders our `tail` store before the `need_signal` load;
    /// the consumer fences between its `need_signal` store and its `tail`
    /// load. With both fences at least one side sees the other's write, so
    /// either we see the request, or the consumer sees our entry and does not
    /// sleep (`proofs/ring/ring.pml` checks this; its `BUG_*` variants show
    /// the failure without either half).
    #[must_use = "if true, the consumer is (about to be) asleep and must be signalled"]
    pub fn notify_needed(&mut self) -> bool {
        fence(Ordering::SeqCst);
        if self.view.need_signal.load(Ordering::Relaxed) != 0 {
            self.view.need_signal.store(0, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// The consuming end of a ring of `T`s.
#[derive(Debug)]
pub struct Consumer<'a, T: Pod> {
    view: View<'a>,
    /// Our index; authoritative, never read back from shared memory.
    head: u32,
    /// The producer's index as last loaded and validated.
    tail_seen: u32,
    poisoned: Option<RingError>,
    _slot: PhantomData<T>,
}

impl<'a, T: Pod> Consumer<'a, T> {
    /// Attaches as the consumer of a ring of `capacity` (a power of two)
    /// entries at the start of `region`, resuming from the `head` stored
    /// there (zero in a fresh region).
    ///
    /// # Errors
    /// As [`Producer::attach`].
    pub fn attach(region: Region<'a>, capacity: u32) -> Result<Self, RingError> {
        let view = View::attach::<T>(region, capacity, layout::CONSUMER_TAG, layout::PRODUCER_TAG)?;
        let head = view.head.load(Ordering::Relaxed);
        Ok(Self {
            view,
            head,
            tail_seen: head,
            poisoned: None,
            _slot: PhantomData,
        })
    }

    /// Number of entries the ring holds.
    #[must_use]
    pub fn capacity(&self) -> u32 {
        self.view.capacity
    }

    /// Loads and validates the producer's `tail`; returns the entries available.
    fn refresh(&mut self) -> Result<u32, RingError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        // Copy the neighbour's index once; everything below uses the copy.
        let tail = self.view.tail.load(Ordering::Acquire);
        let available = tail.wrapping_sub(self.head);
        if available > self.view.capacity {
            let e = RingError::Corrupt {
                ours: self.head,
                theirs: tail,
            };
            self.poisoned = Some(e);
            return Err(e);
        }
        self.tail_seen = tail;
        Ok(available)
    }

    /// Entries available, after re-reading the producer's index.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] if the producer's index is impossible.
    pub fn available(&mut self) -> Result<u32, RingError> {
        self.refresh()
    }

    /// Copies the oldest entry out of its slot and releases the slot.
    /// `Ok(None)` when the ring is empty. The value is a copy: validate its
    /// contents (e.g. [`crate::BufDesc::range_in`]) before acting on it.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] if the producer's index is impossible.
    pub fn pop(&mut self) -> Result<Option<T>, RingError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        if self.head == self.tail_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        let slot = self.view.slot::<T>(self.head)?;
        let item = T::load(&mut |i| slot.get(i).map_or(0, |w| w.load(Ordering::Relaxed)));
        self.head = self.head.wrapping_add(1);
        // Release: our reads of the slot happen before the producer, having
        // acquired this head, overwrites it.
        self.view.head.store(self.head, Ordering::Release);
        Ok(Some(item))
    }

    /// Asks the producer for a notification, then re-checks the ring: call it
    /// when [`Consumer::pop`] returned `None`, and sleep (`microkit` wait,
    /// i.e. return from `notified`) only on [`Armed::MaySleep`].
    ///
    /// # Errors
    /// [`RingError::Corrupt`] if the producer's index is impossible.
    pub fn arm_signal(&mut self) -> Result<Armed, RingError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        self.view.need_signal.store(1, Ordering::SeqCst);
        // Pairs with the fence in `Producer::notify_needed`: the request is
        // globally visible before we look at tail again.
        fence(Ordering::SeqCst);
        if self.refresh()? == 0 {
            Ok(Armed::MaySleep)
        } else {
            // Work arrived meanwhile; withdraw the request to save the
            // producer a syscall (harmless if it already signalled).
            self.view.need_signal.store(0, Ordering::Relaxed);
            Ok(Armed::Pending)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheLine;
    use std::vec::Vec;

    fn lines(n: usize) -> Vec<CacheLine> {
        (0..n).map(|_| CacheLine::new()).collect()
    }

    #[test]
    fn fifo_wraps_around_many_times() {
        let mem = lines(12);
        let r = Region::from_lines(&mem);
        let mut p = Producer::<u64>::attach(r, 4).unwrap();
        let mut c = Consumer::<u64>::attach(r, 4).unwrap();
        for round in 0..100u64 {
            for k in 0..3 {
                p.push(&(round * 10 + k)).unwrap();
            }
            for k in 0..3 {
                assert_eq!(c.pop().unwrap(), Some(round * 10 + k));
            }
            assert_eq!(c.pop().unwrap(), None);
        }
    }

    #[test]
    fn full_ring_refuses_and_writes_nothing() {
        let mem = lines(12);
        let r = Region::from_lines(&mem);
        let mut p = Producer::<u32>::attach(r, 2).unwrap();
        let mut c = Consumer::<u32>::attach(r, 2).unwrap();
        p.push(&1).unwrap();
        p.push(&2).unwrap();
        assert_eq!(p.push(&3), Err(RingError::Full));
        assert_eq!(c.pop().unwrap(), Some(1));
        p.push(&3).unwrap();
        assert_eq!(c.pop().unwrap(), Some(2));
        assert_eq!(c.pop().unwrap(), Some(3));
    }

    #[test]
    fn indices_survive_u32_wrap() {
        let mem = lines(12);
        let r = Region::from_lines(&mem);
        // Both ends resume from indices just below the wrap.
        r.words()[layout::TAIL].store(u32::MAX - 1, Ordering::Relaxed);
        r.words()[layout::HEAD].store(u32::MAX - 1, Ordering::Relaxed);
        let mut p = Producer::<u32>::attach(r, 4).unwrap();
        let mut c = Consumer::<u32>::attach(r, 4).unwrap();
        for i in 0..10 {
            p.push(&i).unwrap();
            assert_eq!(c.pop().unwrap(), Some(i));
        }
    }

    #[test]
    fn corrupt_tail_is_reported_and_sticky() {
        let mem = lines(12);
        let r = Region::from_lines(&mem);
        let mut c = Consumer::<u32>::attach(r, 4).unwrap();
        r.words()[layout::TAIL].store(5, Ordering::Relaxed);
        let e = RingError::Corrupt { ours: 0, theirs: 5 };
        assert_eq!(c.pop(), Err(e));
        r.words()[layout::TAIL].store(0, Ordering::Relaxed);
        assert_eq!(c.pop(), Err(e));
        assert_eq!(c.arm_signal(), Err(e));
    }

    #[test]
    fn corrupt_head_is_reported_to_the_producer() {
        let mem = lines(12);
        let r = Region::from_lines(&mem);
        let mut p = Producer::<u32>::attach(r, 4).unwrap();
        // Consumer claims to have consumed more than was produced.
        r.words()[layout::HEAD].store(3, Ordering::Relaxed);
        assert_eq!(p.free(), Err(RingError::Corrupt { ours: 0, theirs: 3 }));
        assert!(p.push(&1).is_err());
    }

    #[test]
    fn layout_mismatch_between_the_two_configurations() {
        let mem = lines(16);
        let r = Region::from_lines(&mem);
        let _p = Producer::<u32>::attach(r, 8).unwrap();
        let e = Consumer::<u32>::attach(r, 4).unwrap_err();
        assert!(matches!(e, RingError::LayoutMismatch { .. }));
        assert!(matches!(
            Consumer::<u64>::attach(r, 8),
            Err(RingError::LayoutMismatch { .. })
        ));
        assert!(Consumer::<u32>::attach(r, 8).is_ok());
    }

    #[test]
    fn producer_signals_only_when_asked() {
        let mem = lines(12);
        let r = Region::from_lines(&mem);
        let mut p = Producer::<u32>::attach(r, 4).unwrap();
        let mut c = Consumer::<u32>::attach(r, 4).unwrap();
        p.push(&1).unwrap();
        assert!(!p.notify_needed());
        assert_eq!(c.arm_signal(), Ok(Armed::Pending));
        assert!(!p.notify_needed(), "request withdrawn when work was found");
        assert_eq!(c.pop(), Ok(Some(1)));
        assert_eq!(c.arm_signal(), Ok(Armed::MaySleep));
        p.push(&2).unwrap();
        assert!(p.notify_needed());
        assert!(!p.notify_needed(), "one request, one signal");
    }

    #[test]
    fn zero_sized_slots_still_count() {
        let mem = lines(8);
        let r = Region::from_lines(&mem);
        let mut p = Producer::<()>::attach(r, 4).unwrap();
        let mut c = Consumer::<()>::attach(r, 4).unwrap();
        p.push(&()).unwrap();
        assert_eq!(c.pop(), Ok(Some(())));
        assert_eq!(c.pop(), Ok(None));
    }
}
