//! Property tests: the rings against a `VecDeque` model, and against a hostile peer.
//!
//! - `spec_fifo_matches_vecdeque`: honest producer and consumer, random
//!   interleavings of push/pop/arm/notify, every result equal to the model's.
//! - `spec_hostile_producer_*` / `spec_hostile_consumer_*`: one side honest,
//!   the other replaced by arbitrary writes to any word of the region
//!   (indices, flags, slots). The honest side must behave exactly as the
//!   layout spec says (README "Validation"), never panic, and never write
//!   outside its own words of the layout (guard words after the ring stay
//!   intact).

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};

use bulkhead_ring::layout::{self, HEADER_WORDS};
use bulkhead_ring::{Armed, CacheLine, Consumer, Producer, Region, RingError};
use proptest::prelude::*;

const GUARD: u32 = 0xDEAD_BEEF;

/// A region holding one ring of `cap` u64s plus two guard lines after it.
struct Mem {
    lines: Vec<CacheLine>,
    ring_words: usize,
}

impl Mem {
    fn new(cap: u32) -> Self {
        let bytes = layout::ring_bytes(cap, 2).unwrap();
        let lines: Vec<CacheLine> = (0..bytes / 64 + 2).map(|_| CacheLine::new()).collect();
        let m = Mem {
            lines,
            ring_words: bytes / 4,
        };
        for w in &m.words()[m.ring_words..] {
            w.store(GUARD, Ordering::Relaxed);
        }
        m
    }
    fn region(&self) -> Region<'_> {
        Region::from_lines(&self.lines)
    }
    fn words(&self) -> Vec<&AtomicU32> {
        self.lines.iter().flat_map(|l| l.0.iter()).collect()
    }
    fn word(&self, i: usize) -> u32 {
        self.words()[i].load(Ordering::Relaxed)
    }
    fn set(&self, i: usize, v: u32) {
        self.words()[i].store(v, Ordering::Relaxed);
    }
    fn guards_intact(&self) -> bool {
        self.words()[self.ring_words..]
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == GUARD)
    }
    fn slot_value(&self, index: u32, cap: u32) -> u64 {
        let base = HEADER_WORDS + (index & (cap - 1)) as usize * 2;
        u64::from(self.word(base)) | u64::from(self.word(base + 1)) << 32
    }
}

#[derive(Debug, Clone)]
enum Op {
    Push(u64),
    Pop,
    Arm,
    Notify,
    Available,
    Free,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u64>().prop_map(Op::Push),
        3 => Just(Op::Pop),
        1 => Just(Op::Arm),
        1 => Just(Op::Notify),
        1 => Just(Op::Available),
        1 => Just(Op::Free),
    ]
}

fn capacity() -> impl Strategy<Value = u32> {
    (0u32..5).prop_map(|k| 1 << k)
}

proptest! {
    #[test]
    fn spec_fifo_matches_vecdeque(cap in capacity(), ops in proptest::collection::vec(op(), 0..300)) {
        let mem = Mem::new(cap);
        let mut p = Producer::<u64>::attach(mem.region(), cap).unwrap();
        let mut c = Consumer::<u64>::attach(mem.region(), cap).unwrap();
        let mut model: VecDeque<u64> = VecDeque::new();
        let mut asked = false; // consumer's pending request for a signal
        for op in ops {
            match op {
                Op::Push(v) => {
                    let r = p.push(&v);
                    if model.len() == cap as usize {
                        prop_assert_eq!(r, Err(RingError::Full));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        model.push_back(v);
                    }
                }
                Op::Pop => prop_assert_eq!(c.pop(), Ok(model.pop_front())),
                Op::Arm => {
                    let r = c.arm_signal().unwrap();
                    if model.is_empty() {
                        prop_assert_eq!(r, Armed::MaySleep);
                        asked = true;
                    } else {
                        prop_assert_eq!(r, Armed::Pending);
                        asked = false;
                    }
                }
                Op::Notify => {
                    prop_assert_eq!(p.notify_needed(), asked);
                    asked = false;
                }
                Op::Available => prop_assert_eq!(c.available(), Ok(u32::try_from(model.len()).unwrap())),
                Op::Free => prop_assert_eq!(p.free(), Ok(cap - u32::try_from(model.len()).unwrap())),
            }
        }
        prop_assert!(mem.guards_intact());
    }
}

/// What a hostile peer does between the honest side's calls.
#[derive(Debug, Clone)]
enum Hostile {
    /// Write `value` into word `index` (taken modulo the ring's words, so
    /// header, slots and padding are all hit).
    Poke { index: usize, value: u32 },
    /// Write an index close to the honest side's, where off-by-one bugs live.
    Near { delta: i8 },
    /// Let the honest side act.
    Act,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        2 => (any::<usize>(), any::<u32>()).prop_map(|(index, value)| Hostile::Poke { index, value }),
        2 => any::<i8>().prop_map(|delta| Hostile::Near { delta }),
        4 => Just(Hostile::Act),
    ]
}

proptest! {
    /// The consumer facing a producer that writes anything anywhere.
    #[test]
    fn spec_hostile_producer_cannot_break_the_consumer(
        cap in capacity(),
        start in any::<u32>(),
        ops in proptest::collection::vec((hostile(), any::<bool>()), 0..200),
    ) {
        let mem = Mem::new(cap);
        mem.set(layout::HEAD, start);
        mem.set(layout::TAIL, start);
        let mut c = Consumer::<u64>::attach(mem.region(), cap).unwrap();
        // Reference model of the consumer, straight from the README.
        let (mut head, mut tail_seen, mut poison) = (start, start, None::<RingError>);
        for (h, arm) in ops {
            match h {
                Hostile::Poke { index, value } => mem.set(index % mem.ring_words, value),
                Hostile::Near { delta } => mem.set(layout::TAIL, head.wrapping_add_signed(i32::from(delta))),
                Hostile::Act if arm => {
                    let r = c.arm_signal();
                    let expect = if let Some(e) = poison { Err(e) } else {
                        let tail = mem.word(layout::TAIL);
                        if tail.wrapping_sub(head) > cap {
                            poison = Some(RingError::Corrupt { ours: head, theirs: tail });
                            Err(poison.unwrap())
                        } else {
                            tail_seen = tail;
                            Ok(if tail == head { Armed::MaySleep } else { Armed::Pending })
                        }
                    };
                    prop_assert_eq!(r, expect);
                }
                Hostile::Act => {
                    let tail = mem.word(layout::TAIL);
                    // Peeked before pop: the value the slot holds now is what
                    // pop must return (nobody writes during the call).
                    let slot = mem.slot_value(head, cap);
                    let r = c.pop();
                    let expect = if let Some(e) = poison { Err(e) } else if head != tail_seen {
                        Ok(Some(slot))
                    } else if tail.wrapping_sub(head) > cap {
                        poison = Some(RingError::Corrupt { ours: head, theirs: tail });
                        Err(poison.unwrap())
                    } else {
                        tail_seen = tail;
                        if tail == head { Ok(None) } else { Ok(Some(slot)) }
                    };
                    prop_assert_eq!(r, expect);
                    if let Ok(Some(_)) = expect {
                        head = head.wrapping_add(1);
                        // The consumer publishes its own index, whatever the
                        // peer wrote there.
                        prop_assert_eq!(mem.word(layout::HEAD), head);
                    }
                }
            }
            prop_assert!(mem.guards_intact());
        }
    }

    /// The producer facing a consumer that writes anything anywhere.
    #[test]
    fn spec_hostile_consumer_cannot_break_the_producer(
        cap in capacity(),
        ops in proptest::collection::vec((hostile(), any::<u64>()), 0..200),
    ) {
        let mem = Mem::new(cap);
        let mut p = Producer::<u64>::attach(mem.region(), cap).unwrap();
        // Reference model: attach assumes full until head is read.
        let (mut tail, mut head_seen, mut poison) = (0u32, 0u32.wrapping_sub(cap), None::<RingError>);
        for (h, v) in ops {
            match h {
                Hostile::Poke { index, value } => mem.set(index % mem.ring_words, value),
                Hostile::Near { delta } => mem.set(layout::HEAD, tail.wrapping_add_signed(i32::from(delta))),
                Hostile::Act => {
                    let head = mem.word(layout::HEAD);
                    let r = p.push(&v);
                    let expect = if let Some(e) = poison { Err(e) } else if tail.wrapping_sub(head_seen) < cap {
                        Ok(())
                    } else if tail.wrapping_sub(head) > cap {
                        poison = Some(RingError::Corrupt { ours: tail, theirs: head });
                        Err(poison.unwrap())
                    } else {
                        head_seen = head;
                        if tail.wrapping_sub(head) == cap { Err(RingError::Full) } else { Ok(()) }
                    };
                    prop_assert_eq!(r, expect);
                    if expect.is_ok() {
                        prop_assert_eq!(mem.slot_value(tail, cap), v);
                        tail = tail.wrapping_add(1);
                        prop_assert_eq!(mem.word(layout::TAIL), tail);
                    }
                }
            }
            prop_assert!(mem.guards_intact());
        }
    }
}
