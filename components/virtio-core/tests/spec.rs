//! Positive spec-clause tests (VIRTIO 1.2 numbering): what a well-behaved
//! driver must see from our device side.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;

use bulkhead_virtio::spec::{feature, reg, ring::*, status};
use bulkhead_virtio::{GuestMemory, MemError, Queue, SliceMemory};
use common::*;

#[test]
fn verify_spec_4_2_2_1_identification_registers() {
    let mut g = Guest::new();
    assert_eq!(g.r(reg::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(g.r(reg::VERSION), 2);
    assert_eq!(g.r(reg::DEVICE_ID), 0x2a);
    assert_eq!(g.r(reg::VENDOR_ID), 0);
    g.w(reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        g.r(reg::DEVICE_FEATURES),
        1 | 1 << 8,
        "VERSION_1 and RING_RESET"
    );
    g.w(reg::DEVICE_FEATURES_SEL, 0);
    assert_eq!(g.r(reg::DEVICE_FEATURES), 1 | 1 << 28 | 1 << 29);
    g.w(reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(g.r(reg::DEVICE_FEATURES), 0);
    g.w(reg::QUEUE_SEL, 1);
    assert_eq!(g.r(reg::QUEUE_NUM_MAX), u32::from(QS));
    // §4.2.2: an absent shared-memory region has length −1.
    g.w(reg::SHM_SEL, 0);
    assert_eq!(g.r(reg::SHM_LEN_LOW), u32::MAX);
    assert_eq!(g.r(reg::SHM_LEN_HIGH), u32::MAX);
}

#[test]
fn verify_spec_4_2_2_1_reset_clears_interrupt_status_and_queue_ready() {
    let mut g = Guest::ready(BASE);
    g.assert_healthy(true);
    assert_eq!(g.r(reg::INTERRUPT_STATUS), reg::INT_VRING);
    g.w(reg::STATUS, 0);
    assert_eq!(g.r(reg::INTERRUPT_STATUS), 0);
    assert_eq!(g.r(reg::STATUS), 0);
    for q in 0..2 {
        g.w(reg::QUEUE_SEL, q);
        assert_eq!(g.r(reg::QUEUE_READY), 0);
    }
    assert_eq!(g.dev.device().activated, None);
}

#[test]
fn verify_spec_4_2_2_1_interrupt_status_kept_until_acknowledged() {
    let mut g = Guest::ready(BASE);
    g.assert_healthy(true);
    g.dev.config_changed();
    assert_eq!(g.r(reg::INTERRUPT_STATUS), reg::INT_VRING | reg::INT_CONFIG);
    assert_eq!(
        g.w(reg::INTERRUPT_ACK, reg::INT_VRING),
        bulkhead_virtio::WriteEffect::InterruptAck
    );
    assert_eq!(g.r(reg::INTERRUPT_STATUS), reg::INT_CONFIG);
    assert!(g.dev.interrupt_pending());
    g.w(reg::INTERRUPT_ACK, reg::INT_CONFIG);
    assert!(!g.dev.interrupt_pending());
}

#[test]
fn verify_spec_4_2_2_1_config_generation_changes_with_config() {
    let mut g = Guest::ready(BASE);
    let before = g.r(reg::CONFIG_GENERATION);
    g.dev.device_mut().config[0] = b'B';
    g.dev.config_changed();
    assert_eq!(g.r(reg::CONFIG_GENERATION), before.wrapping_add(1));
    assert_eq!(g.dev.read(0x100, 1), Ok(u64::from(b'B')));
}

#[test]
fn verify_spec_2_2_2_features_ok_accepts_every_offered_subset() {
    for f in [
        BASE,
        BASE | 1,
        BASE | feature::INDIRECT_DESC,
        BASE | feature::EVENT_IDX | feature::RING_RESET,
    ] {
        let mut g = Guest::ready(f);
        assert_eq!(g.dev.device().activated, Some(f));
        g.assert_healthy(true);
    }
}

#[test]
fn verify_spec_2_7_5_3_2_direct_descriptors_then_one_indirect_table() {
    let mut g = Guest::ready(BASE | feature::INDIRECT_DESC);
    g.put(DATA, b"ab");
    g.put(DATA + 0x10, b"cd");
    g.desc(0, DATA, 2, DESC_F_NEXT, 1);
    // §2.7.5.3.2: the WRITE flag on the descriptor naming a table is ignored.
    g.desc(1, TABLES, 32, DESC_F_INDIRECT | DESC_F_WRITE, 0);
    g.desc_at(TABLES, 0, DATA + 0x10, 2, DESC_F_NEXT, 1);
    g.desc_at(TABLES, 1, DATA + 0x100, 8, DESC_F_WRITE, 0);
    g.publish(0);
    g.notify(0);
    assert_eq!(g.take_used(), vec![(0, 4)]);
    assert_eq!(
        g.get(DATA + 0x100, 4),
        b"abcd".iter().map(|b| !b).collect::<Vec<_>>()
    );
}

#[test]
fn verify_spec_2_7_5_1_device_never_writes_a_readable_buffer() {
    let mut g = Guest::ready(BASE);
    g.put(DATA, &[7; 32]);
    // 32 readable bytes echoed into an 8-byte writable buffer: the writer
    // stops at 8 and never spills into the readable one.
    g.desc(0, DATA, 32, DESC_F_NEXT, 1);
    g.desc(1, DATA + 0x100, 8, DESC_F_WRITE, 0);
    g.publish(0);
    g.notify(0);
    assert_eq!(g.take_used(), vec![(0, 8)]);
    assert_eq!(g.get(DATA, 32), [7; 32]);
    assert_eq!(g.get(DATA + 0x100, 9), [!7, !7, !7, !7, !7, !7, !7, !7, 0]);
}

#[test]
fn descriptors_are_copied_once_a_later_guest_change_does_not_reach_the_device() {
    let mut g = Guest::ready(BASE);
    g.dev.device_mut().hold = true;
    g.put(DATA, b"safe");
    g.desc(0, DATA, 4, DESC_F_NEXT, 1);
    g.desc(1, DATA + 0x100, 4, DESC_F_WRITE, 0);
    g.publish(0);
    g.notify(0);
    let chain = g.dev.device_mut().held.pop().unwrap();
    // The guest rewrites the descriptors after the device validated them.
    g.desc(0, 0xdead_0000, 0x1000, DESC_F_NEXT, 1);
    g.desc(1, DATA, 4, 0, 0);
    let bufs: Vec<_> = chain.buffers().collect();
    assert_eq!(bufs, vec![(DATA, 4, false), (DATA + 0x100, 4, true)]);
}

#[test]
fn verify_spec_2_7_7_2_without_event_idx_no_interrupt_flag_is_honoured() {
    let mut g = Guest::ready(BASE);
    g.put_u16(AVAIL, AVAIL_F_NO_INTERRUPT);
    g.echo(b"quiet");
    assert_eq!(g.irqs, 0);
    g.put_u16(AVAIL, 0);
    g.echo(b"loud");
    assert_eq!(g.irqs, 1);
}

#[test]
fn verify_spec_2_7_7_2_with_event_idx_interrupt_exactly_when_used_event_is_passed() {
    let mut g = Guest::ready(BASE | feature::EVENT_IDX);
    // NO_INTERRUPT must be ignored with EVENT_IDX.
    g.put_u16(AVAIL, AVAIL_F_NO_INTERRUPT);
    let used_event = AVAIL + 4 + 2 * u64::from(QS);
    g.put_u16(used_event, 1);
    g.echo(b"first");
    assert_eq!(g.irqs, 0, "used idx 0 -> 1 does not pass used_event 1");
    g.echo(b"second");
    assert_eq!(g.irqs, 1, "used idx 1 -> 2 passes used_event 1");
    g.w(reg::INTERRUPT_ACK, reg::INT_VRING);
    g.echo(b"third");
    assert_eq!(g.irqs, 1);
}

#[test]
fn verify_spec_2_7_10_avail_event_tells_the_driver_where_to_notify() {
    let mut g = Guest::ready(BASE | feature::EVENT_IDX);
    let avail_event = USED + 4 + 8 * u64::from(QS);
    g.echo(b"one");
    g.echo(b"two");
    assert_eq!(
        g.get_u16(avail_event),
        2,
        "notify me when you add past index 2"
    );
}

#[test]
fn verify_spec_2_7_used_ring_wraps_past_65535() {
    let mut g = Guest::ready(BASE);
    for i in 0..70_000u32 {
        g.echo(&i.to_le_bytes());
    }
    assert_eq!(g.used_idx(), 4464, "70 000 mod 65 536");
    assert_eq!(g.dev.queue(0).unwrap().rejected_chains(), 0);
}

/// Guest memory that records the order of writes and fences.
struct Recorder<'a> {
    inner: SliceMemory<'a>,
    log: RefCell<Vec<String>>,
}

impl GuestMemory for Recorder<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.log
            .borrow_mut()
            .push(format!("write {:#x} {}", gpa, data.len()));
        self.inner.write(gpa, data)
    }
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        self.inner.check_range(gpa, len)
    }
    fn acquire_fence(&self) {
        self.log.borrow_mut().push("acquire".into());
    }
    fn release_fence(&self) {
        self.log.borrow_mut().push("release".into());
    }
    fn full_fence(&self) {
        self.log.borrow_mut().push("full".into());
    }
}

#[test]
fn verify_spec_2_7_8_2_used_element_before_used_idx_with_release_between() {
    let mut ram = vec![0u8; 0x4000];
    let base = 0x10_0000;
    let mut q = Queue::new(4);
    q.set_size(4);
    q.set_desc_table(base);
    q.set_avail_ring(base + 0x100);
    q.set_used_ring(base + 0x200);
    q.set_ready(0).unwrap();
    ram[0..16].copy_from_slice(&[0x00, 0x10, 0x10, 0, 0, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0]);
    ram[0x102..0x104].copy_from_slice(&1u16.to_le_bytes());
    let mut mem = Recorder {
        inner: SliceMemory::new(base, &mut ram),
        log: RefCell::new(Vec::new()),
    };
    let chain = q.pop::<_, 2>(&mut mem).unwrap().unwrap();
    assert_eq!(
        mem.log.borrow().as_slice(),
        ["acquire"],
        "avail.idx read, then acquire"
    );
    mem.log.borrow_mut().clear();
    q.add_used(&mut mem, &chain, 8).unwrap();
    assert_eq!(
        mem.log.borrow().as_slice(),
        [
            format!("write {:#x} 8", base + 0x204),
            "release".into(),
            format!("write {:#x} 2", base + 0x202)
        ]
    );
    mem.log.borrow_mut().clear();
    assert!(q.needs_notification(&mem).unwrap());
    assert_eq!(
        mem.log.borrow().as_slice(),
        ["full"],
        "used idx visible before reading avail.flags"
    );
    let _ = status::DRIVER_OK;
}
