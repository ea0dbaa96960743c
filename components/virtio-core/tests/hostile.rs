//! Hostile-driver suite: each case breaks one rule of the VIRTIO spec (test
//! names carry the 1.2 clause), asserts exactly what the attacking guest
//! gets, and asserts that a second guest with its own RAM and device,
//! served before and after, is unaffected.
#![allow(clippy::unwrap_used)]

mod common;

use bulkhead_virtio::spec::{feature, reg, ring::*, status};
use bulkhead_virtio::{ChainError, MmioError, QueueError, WriteEffect};
use common::*;

const IND: u64 = BASE | feature::INDIRECT_DESC;

/// Publishes `head`, notifies, and asserts the chain came back with length
/// 0, rejected for `why`, with the queue still usable.
fn assert_rejected(a: &mut Guest, head: u16, why: ChainError) {
    a.publish(head);
    a.notify(0);
    assert_eq!(
        a.take_used(),
        vec![(u32::from(head), 0)],
        "returned with len 0"
    );
    let q = a.dev.queue(0).unwrap();
    assert_eq!(q.last_chain_error(), Some(why));
    assert_eq!(q.rejected_chains(), 1);
    assert_eq!(
        a.status() & status::DEVICE_NEEDS_RESET,
        0,
        "a malformed chain is not fatal"
    );
    assert_eq!(a.irqs, 1, "the driver is told its buffer came back");
    a.assert_healthy(false);
}

/// Asserts a fatal queue error: DEVICE_NEEDS_RESET with a config
/// interrupt, nothing on the used ring, further notifies ignored, and a
/// reset brings the device back.
fn assert_needs_reset(a: &mut Guest, why: QueueError) {
    assert_ne!(a.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(a.dev.stats().last_queue_error, Some(why));
    assert_eq!(a.used_idx(), 0, "no chain completed");
    assert_ne!(a.r(reg::INTERRUPT_STATUS) & reg::INT_CONFIG, 0);
    assert_eq!(
        a.notify(0),
        WriteEffect::None,
        "a broken device touches no queue"
    );
    a.init(BASE);
    a.assert_healthy(false);
}

#[test]
fn spec_2_7_5_2_descriptor_loop_is_returned_with_len_0() {
    with_victim(BASE, |a| {
        // Zero-length descriptors use no chain capacity, so only the
        // loop bound stops this walk.
        a.desc(0, DATA, 0, DESC_F_NEXT, 1);
        a.desc(1, DATA + 0x100, 0, DESC_F_NEXT, 0);
        assert_rejected(a, 0, ChainError::TooLong);
    });
    with_victim(BASE, |a| {
        // With data, the device's chain capacity stops it first.
        a.desc(0, DATA, 16, DESC_F_NEXT, 1);
        a.desc(1, DATA + 0x100, 16, DESC_F_NEXT, 0);
        assert_rejected(a, 0, ChainError::TooManyBuffers);
    });
}

#[test]
fn spec_2_7_5_2_self_loop_is_returned_with_len_0() {
    with_victim(BASE, |a| {
        a.desc(3, DATA, 0, DESC_F_NEXT | DESC_F_WRITE, 3);
        assert_rejected(a, 3, ChainError::TooLong);
    });
}

#[test]
fn spec_2_7_5_next_out_of_range_is_returned_with_len_0() {
    with_victim(BASE, |a| {
        a.desc(0, DATA, 8, DESC_F_NEXT, QS);
        assert_rejected(a, 0, ChainError::NextOutOfRange);
    });
    with_victim(BASE, |a| {
        a.desc(0, DATA, 8, DESC_F_NEXT, u16::MAX);
        assert_rejected(a, 0, ChainError::NextOutOfRange);
    });
}

#[test]
fn buffer_outside_guest_ram_is_returned_with_len_0() {
    let end = RAM_BASE + RAM_SIZE as u64;
    for (addr, len) in [(end - 8, 16u32), (end, 1), (RAM_BASE - 1, 2), (0x1000, 8)] {
        with_victim(BASE, |a| {
            a.desc(0, addr, len, DESC_F_WRITE, 0);
            assert_rejected(a, 0, ChainError::BufferOutOfRange);
        });
    }
}

#[test]
fn buffer_address_wrapping_u64_is_returned_with_len_0() {
    with_victim(BASE, |a| {
        a.desc(0, u64::MAX - 7, 16, DESC_F_WRITE, 0);
        assert_rejected(a, 0, ChainError::BufferOutOfRange);
    });
}

#[test]
fn huge_length_is_returned_with_len_0() {
    with_victim(BASE, |a| {
        a.desc(0, DATA, 8, DESC_F_NEXT, 1);
        a.desc(1, DATA + 0x100, u32::MAX, DESC_F_WRITE, 0);
        assert_rejected(a, 0, ChainError::BufferOutOfRange);
    });
}

#[test]
fn zero_length_descriptors_carry_nothing_and_are_accepted() {
    with_victim(BASE, |a| {
        a.put(DATA + 0x10, b"abcd");
        // A zero-length buffer's address is never used, even a wild one.
        a.desc(0, DATA, 0, DESC_F_NEXT, 1);
        a.desc(1, u64::MAX, 0, DESC_F_NEXT, 2);
        a.desc(2, DATA + 0x10, 4, DESC_F_NEXT, 3);
        a.desc(3, DATA + 0x200, 0, DESC_F_WRITE | DESC_F_NEXT, 4);
        a.desc(4, DATA + 0x300, 8, DESC_F_WRITE, 0);
        a.publish(0);
        a.notify(0);
        assert_eq!(a.take_used(), vec![(0, 4)]);
        assert_eq!(
            a.get(DATA + 0x300, 4),
            b"abcd".iter().map(|b| !b).collect::<Vec<_>>()
        );
        assert_eq!(a.dev.queue(0).unwrap().rejected_chains(), 0);
    });
}

#[test]
fn spec_2_7_4_2_readable_after_writable_is_rejected_and_nothing_written() {
    with_victim(BASE, |a| {
        a.put(DATA, &[0xaa; 8]);
        a.put(DATA + 0x100, b"readable");
        a.desc(0, DATA, 8, DESC_F_WRITE | DESC_F_NEXT, 1);
        a.desc(1, DATA + 0x100, 8, 0, 0);
        assert_rejected(a, 0, ChainError::ReadableAfterWritable);
        assert_eq!(
            a.get(DATA, 8),
            [0xaa; 8],
            "the writable buffer was not written"
        );
        assert_eq!(a.get(DATA + 0x100, 8), b"readable");
    });
}

#[test]
fn spec_2_7_5_3_1_indirect_without_negotiation_is_rejected() {
    with_victim(BASE, |a| {
        a.desc_at(TABLES, 0, DATA, 8, DESC_F_WRITE, 0);
        a.desc(0, TABLES, 16, DESC_F_INDIRECT, 0);
        assert_rejected(a, 0, ChainError::IndirectNotNegotiated);
    });
}

#[test]
fn spec_2_7_5_3_1_nested_indirect_is_rejected() {
    with_victim(IND, |a| {
        a.desc_at(TABLES + 0x100, 0, DATA, 8, DESC_F_WRITE, 0);
        a.desc_at(TABLES, 0, TABLES + 0x100, 16, DESC_F_INDIRECT, 0);
        a.desc(0, TABLES, 16, DESC_F_INDIRECT, 0);
        assert_rejected(a, 0, ChainError::NestedIndirect);
    });
}

#[test]
fn spec_2_7_5_3_1_indirect_with_next_is_rejected() {
    with_victim(IND, |a| {
        a.desc_at(TABLES, 0, DATA, 8, DESC_F_WRITE, 0);
        a.desc(0, TABLES, 16, DESC_F_INDIRECT | DESC_F_NEXT, 1);
        a.desc(1, DATA + 0x100, 8, DESC_F_WRITE, 0);
        assert_rejected(a, 0, ChainError::IndirectWithNext);
    });
}

#[test]
fn spec_2_7_5_3_1_indirect_table_length_must_be_a_nonzero_multiple_of_16_and_at_most_qs() {
    for len in [0u32, 8, 24, 16 * (u32::from(QS) + 1)] {
        with_victim(IND, |a| {
            a.desc_at(TABLES, 0, DATA, 8, DESC_F_WRITE, 0);
            a.desc(0, TABLES, len, DESC_F_INDIRECT, 0);
            assert_rejected(a, 0, ChainError::IndirectBadLength);
        });
    }
}

#[test]
fn indirect_table_outside_guest_ram_is_rejected() {
    with_victim(IND, |a| {
        a.desc(0, RAM_BASE + RAM_SIZE as u64 - 16, 32, DESC_F_INDIRECT, 0);
        assert_rejected(a, 0, ChainError::IndirectOutOfRange);
    });
}

#[test]
fn spec_2_7_5_2_loop_inside_indirect_table_is_rejected() {
    with_victim(IND, |a| {
        a.desc_at(TABLES, 0, DATA, 8, DESC_F_NEXT, 1);
        a.desc_at(TABLES, 1, DATA, 8, DESC_F_NEXT, 0);
        a.desc(0, TABLES, 32, DESC_F_INDIRECT, 0);
        assert_rejected(a, 0, ChainError::TooLong);
    });
    with_victim(IND, |a| {
        // `next` must stay inside the indirect table, not the queue's.
        a.desc_at(TABLES, 0, DATA, 8, DESC_F_NEXT, 2);
        a.desc(0, TABLES, 32, DESC_F_INDIRECT, 0);
        assert_rejected(a, 0, ChainError::NextOutOfRange);
    });
}

#[test]
fn chain_with_more_buffers_than_the_device_accepts_is_returned_with_len_0() {
    with_victim(BASE, |a| {
        let n = u16::try_from(CAP).unwrap() + 1;
        for i in 0..n {
            let last = i + 1 == n;
            a.desc(
                i,
                DATA + u64::from(i) * 0x10,
                4,
                if last { 0 } else { DESC_F_NEXT },
                i + 1,
            );
        }
        assert_rejected(a, 0, ChainError::TooManyBuffers);
    });
}

#[test]
fn spec_2_7_6_1_avail_idx_jump_sets_needs_reset() {
    with_victim(BASE, |a| {
        a.set_avail_idx(QS + 1);
        a.notify(0);
        assert_needs_reset(a, QueueError::AvailIdxJump);
    });
}

#[test]
fn spec_2_7_6_1_avail_idx_going_backwards_sets_needs_reset() {
    with_victim(BASE, |a| {
        a.assert_healthy(false);
        a.set_avail_idx(0);
        a.notify(0);
        assert_ne!(a.status() & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(
            a.dev.stats().last_queue_error,
            Some(QueueError::AvailIdxJump)
        );
        assert_eq!(a.used_idx(), 1, "only the earlier good chain was completed");
    });
}

#[test]
fn head_index_out_of_range_sets_needs_reset() {
    with_victim(BASE, |a| {
        a.publish(QS);
        a.notify(0);
        assert_needs_reset(a, QueueError::HeadOutOfRange);
    });
}

#[test]
fn spec_4_2_2_1_rings_outside_guest_ram_set_needs_reset() {
    with_victim(BASE, |a| {
        a.w(reg::STATUS, 0);
        a.w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        a.write_features(BASE);
        a.w(reg::STATUS, 11);
        // Aligned, but the 256-byte table runs past the end of RAM.
        a.setup_queue(
            0,
            u32::from(QS),
            RAM_BASE + RAM_SIZE as u64 - 16,
            AVAIL,
            USED,
        );
        a.w(reg::STATUS, 15);
        a.publish(0);
        a.notify(0);
        assert_needs_reset(a, QueueError::RingOutOfRange);
    });
}

#[test]
fn spec_4_2_2_queue_sel_out_of_range_never_indexes_anything() {
    with_victim(BASE, |a| {
        let before = a.dev.queue(0).unwrap().addresses();
        for sel in [2u32, 8, 1000, u32::MAX] {
            a.w(reg::QUEUE_SEL, sel);
            assert_eq!(a.r(reg::QUEUE_NUM_MAX), 0, "0 = no such queue");
            a.w(reg::QUEUE_NUM, 4);
            a.w(reg::QUEUE_DESC_LOW, 0x1000);
            a.w(reg::QUEUE_READY, 1);
            assert_eq!(a.r(reg::QUEUE_READY), 0);
            a.w(reg::QUEUE_RESET, 1);
        }
        assert_eq!(a.dev.stats().queue_ready_refused, 4);
        assert_eq!(a.dev.stats().ignored, 12);
        assert_eq!(a.dev.queue(0).unwrap().addresses(), before);
        assert!(a.dev.queue(2).is_none());
        assert_eq!(
            a.status(),
            15,
            "refusing an absent queue is not a device error"
        );
        a.assert_healthy(false);
    });
}

#[test]
fn spec_4_2_2_2_config_read_past_the_end_reads_0() {
    with_victim(BASE, |a| {
        assert_eq!(a.dev.read(0x100, 8), Ok(u64::from_le_bytes(*b"bulkhead")));
        assert_eq!(a.dev.read(0x100 + 12, 1), Ok(0));
        assert_eq!(a.dev.read(0x100 + 8, 8), Ok(0), "straddling the end");
        assert_eq!(a.dev.read(0x100 + 0xffff_0000, 4), Ok(0));
        assert_eq!(a.dev.read(u64::MAX - 7, 8), Ok(0));
        assert_eq!(a.dev.stats().config_out_of_range, 4);
    });
}

#[test]
fn spec_4_2_2_2_config_write_past_the_end_is_ignored() {
    with_victim(BASE, |a| {
        assert_eq!(
            a.dev.write(0x100 + 12, 4, 0xdead_beef),
            Ok(WriteEffect::None)
        );
        assert_eq!(a.dev.write(0x100 + 8, 8, u64::MAX), Ok(WriteEffect::None));
        assert_eq!(a.dev.write(u64::MAX - 7, 8, 1), Ok(WriteEffect::None));
        assert_eq!(a.dev.device().config, CONFIG);
        assert_eq!(a.dev.stats().config_out_of_range, 3);
        // In range it works, at every width.
        a.dev.write(0x100 + 11, 1, u64::from(b'G')).unwrap();
        a.dev
            .write(0x100 + 8, 2, u64::from(u16::from_le_bytes(*b"CF")))
            .unwrap();
        assert_eq!(&a.dev.device().config[8..], b"CFfG");
    });
}

#[test]
fn spec_4_2_2_2_config_access_at_odd_widths_or_misaligned_is_refused() {
    with_victim(BASE, |a| {
        assert_eq!(a.dev.read(0x100, 3), Err(MmioError::BadAccess));
        assert_eq!(a.dev.read(0x100, 0), Err(MmioError::BadAccess));
        assert_eq!(a.dev.read(0x100, 16), Err(MmioError::BadAccess));
        assert_eq!(a.dev.read(0x101, 2), Err(MmioError::BadAccess));
        assert_eq!(a.dev.read(0x102, 4), Err(MmioError::BadAccess));
        assert_eq!(a.dev.write(0x104, 8, 0), Err(MmioError::BadAccess));
        assert_eq!(a.dev.write(0x100, 16, 0), Err(MmioError::BadAccess));
        assert_eq!(a.dev.read(0x101, 1), Ok(u64::from(b'u')));
        assert_eq!(a.dev.stats().bad_accesses, 7);
        assert_eq!(a.dev.device().config, CONFIG);
    });
}

#[test]
fn spec_4_2_2_2_control_registers_need_aligned_32_bit_access() {
    with_victim(BASE, |a| {
        assert_eq!(a.dev.read(reg::MAGIC_VALUE, 2), Err(MmioError::BadAccess));
        assert_eq!(a.dev.read(reg::MAGIC_VALUE, 8), Err(MmioError::BadAccess));
        assert_eq!(a.dev.read(0x002, 4), Err(MmioError::BadAccess));
        assert_eq!(a.dev.write(reg::STATUS, 1, 0), Err(MmioError::BadAccess));
        assert_eq!(
            a.dev.write(reg::QUEUE_NOTIFY + 2, 4, 0),
            Err(MmioError::BadAccess)
        );
        assert_eq!(a.dev.read(0x0f0, 4), Err(MmioError::UnknownRegister));
        assert_eq!(a.dev.write(0x0c4, 4, 1), Err(MmioError::UnknownRegister));
        assert_eq!(
            a.dev.write(reg::QUEUE_SEL, 4, 1 << 32),
            Err(MmioError::ValueTooWide)
        );
        assert_eq!(a.dev.write(0x100, 1, 0x100), Err(MmioError::ValueTooWide));
        assert_eq!(a.dev.stats().bad_accesses, 9);
        assert_eq!(a.status(), 15, "no access changed the state");
        assert_eq!(a.dev.device().config, CONFIG);
    });
}

#[test]
fn spec_4_2_2_1_reset_mid_request_never_completes_into_the_new_rings() {
    with_victim(BASE, |a| {
        a.dev.device_mut().hold = true;
        a.desc(0, DATA, 4, DESC_F_NEXT, 1);
        a.desc(1, DATA + 0x100, 16, DESC_F_WRITE, 0);
        a.publish(0);
        a.notify(0);
        assert_eq!(a.used_idx(), 0);
        let held = a.dev.device_mut().held.pop().unwrap();
        // Reset while the backend still holds the chain, then start over.
        a.init(BASE);
        assert_eq!(a.dev.device().resets, 2);
        a.dev.device_mut().late = Some(held);
        a.notify(0);
        assert_eq!(
            a.dev.device().late_result,
            Some(Err(QueueError::StaleChain))
        );
        assert_eq!(
            a.used_idx(),
            0,
            "the stale chain did not reach the new used ring"
        );
        assert_eq!(a.get(DATA + 0x100, 16), [0; 16]);
        a.dev.device_mut().hold = false;
        a.assert_healthy(false);
    });
}

#[test]
fn spec_2_6_1_queue_reset_mid_request_makes_held_chains_stale() {
    with_victim(BASE | feature::RING_RESET, |a| {
        a.dev.device_mut().hold = true;
        a.desc(0, DATA + 0x100, 16, DESC_F_WRITE, 0);
        a.publish(0);
        a.notify(0);
        let held = a.dev.device_mut().held.pop().unwrap();
        a.w(reg::QUEUE_SEL, 0);
        a.w(reg::QUEUE_RESET, 1);
        assert_eq!(a.r(reg::QUEUE_RESET), 0, "reset complete");
        assert_eq!(a.r(reg::QUEUE_READY), 0);
        a.ram[..0x3000].fill(0);
        a.next_avail = 0;
        a.used_seen = 0;
        a.setup_queue(0, u32::from(QS), DESC, AVAIL, USED);
        a.dev.device_mut().late = Some(held);
        a.dev.device_mut().hold = false;
        a.notify(0);
        assert_eq!(
            a.dev.device().late_result,
            Some(Err(QueueError::StaleChain))
        );
        assert_eq!(a.used_idx(), 0);
        a.assert_healthy(false);
    });
}

#[test]
fn queue_reset_without_ring_reset_negotiated_is_ignored() {
    with_victim(BASE, |a| {
        a.w(reg::QUEUE_SEL, 0);
        a.w(reg::QUEUE_RESET, 1);
        assert_eq!(a.r(reg::QUEUE_READY), 1);
        assert_eq!(a.dev.stats().ignored, 1);
        a.assert_healthy(false);
    });
}

#[test]
fn spec_2_7_10_notification_storm_is_bounded_and_silent() {
    with_victim(BASE | feature::EVENT_IDX, |a| {
        for _ in 0..10_000 {
            a.notify(0);
        }
        assert_eq!(a.dev.device().notifies, 10_000);
        assert_eq!(a.used_idx(), 0);
        assert_eq!(a.irqs, 0);
        assert_eq!(a.r(reg::INTERRUPT_STATUS), 0);
        for q in [1u32, 2, 0xffff, u32::MAX] {
            assert_eq!(a.notify(q), WriteEffect::None);
        }
        assert_eq!(
            a.dev.stats().notifies_ignored,
            4,
            "queue 1 is not ready, 2+ absent"
        );
        a.assert_healthy(false);
    });
}

#[test]
fn spec_2_2_2_features_ok_with_unoffered_bits_is_refused() {
    for (sel, word) in [(0u32, 1u32 << 23), (1, 1 << 2), (2, 1), (u32::MAX, 1)] {
        with_victim(BASE, |a| {
            a.w(reg::STATUS, 0);
            a.w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
            a.write_features(BASE);
            a.w(reg::DRIVER_FEATURES_SEL, sel);
            a.w(reg::DRIVER_FEATURES, word | if sel == 1 { 1 } else { 0 });
            a.w(reg::STATUS, 11);
            assert_eq!(a.status(), 3, "FEATURES_OK reads back clear");
            assert_eq!(a.dev.stats().features_refused, 1);
        });
    }
}

#[test]
fn spec_6_1_features_ok_without_version_1_is_refused() {
    with_victim(BASE, |a| {
        a.w(reg::STATUS, 0);
        a.w(reg::STATUS, 3);
        a.write_features(feature::INDIRECT_DESC);
        a.w(reg::STATUS, 11);
        assert_eq!(a.status(), 3);
    });
}

#[test]
fn spec_3_1_1_features_cannot_change_after_features_ok() {
    with_victim(BASE, |a| {
        a.w(reg::DRIVER_FEATURES_SEL, 0);
        a.w(reg::DRIVER_FEATURES, 0xffff_ffff);
        assert_eq!(a.dev.driver_features(), BASE);
        assert_eq!(a.dev.stats().ignored, 1);
        a.assert_healthy(false);
    });
}

#[test]
fn spec_2_7_queue_size_not_power_of_two_or_above_max_is_refused() {
    for size in [0u32, 12, u32::from(QS) * 2, 65536, u32::MAX] {
        with_victim(BASE, |a| {
            a.w(reg::STATUS, 0);
            a.w(reg::STATUS, 3);
            a.write_features(BASE);
            a.w(reg::STATUS, 11);
            a.setup_queue(0, size, DESC, AVAIL, USED);
            assert_eq!(a.r(reg::QUEUE_READY), 0);
            assert_eq!(a.dev.stats().queue_ready_refused, 1);
            assert_eq!(a.status(), 11 | status::DEVICE_NEEDS_RESET);
        });
    }
}

#[test]
fn spec_2_7_misaligned_queue_addresses_are_refused() {
    for (d, av, u) in [
        (DESC + 8, AVAIL, USED),
        (DESC, AVAIL + 1, USED),
        (DESC, AVAIL, USED + 2),
    ] {
        with_victim(BASE, |a| {
            a.w(reg::STATUS, 0);
            a.w(reg::STATUS, 3);
            a.write_features(BASE);
            a.w(reg::STATUS, 11);
            a.setup_queue(0, u32::from(QS), d, av, u);
            assert_eq!(a.r(reg::QUEUE_READY), 0);
            assert_ne!(a.status() & status::DEVICE_NEEDS_RESET, 0);
        });
    }
}

#[test]
fn spec_3_1_1_queue_ready_before_features_ok_is_refused() {
    with_victim(BASE, |a| {
        a.w(reg::STATUS, 0);
        a.w(reg::STATUS, 3);
        a.setup_queue(0, u32::from(QS), DESC, AVAIL, USED);
        assert_eq!(a.r(reg::QUEUE_READY), 0);
        assert_eq!(a.dev.stats().queue_ready_refused, 1);
    });
}

#[test]
fn spec_2_1_2_driver_ok_without_features_ok_sets_needs_reset() {
    with_victim(BASE, |a| {
        a.w(reg::STATUS, 0);
        a.w(reg::STATUS, 3);
        a.setup_queue(0, u32::from(QS), DESC, AVAIL, USED);
        a.w(reg::STATUS, 3 | status::DRIVER_OK);
        assert_eq!(a.status(), 3 | status::DEVICE_NEEDS_RESET);
        assert_eq!(a.dev.device().activated, None);
        a.publish(0);
        assert_eq!(a.notify(0), WriteEffect::None);
        assert_eq!(a.dev.device().notifies, 0);
        a.init(BASE);
        a.assert_healthy(false);
    });
}

#[test]
fn spec_2_1_2_no_buffer_consumed_before_driver_ok() {
    with_victim(BASE, |a| {
        a.w(reg::STATUS, 0);
        a.w(reg::STATUS, 3);
        a.write_features(BASE);
        a.w(reg::STATUS, 11);
        a.setup_queue(0, u32::from(QS), DESC, AVAIL, USED);
        a.desc(0, DATA, 8, DESC_F_WRITE, 0);
        a.publish(0);
        let ram = a.ram.clone();
        assert_eq!(a.notify(0), WriteEffect::None);
        assert_eq!(a.ram, ram, "guest RAM untouched");
        assert_eq!(a.dev.device().notifies, 0);
        assert_eq!(a.dev.stats().notifies_ignored, 1);
        // DRIVER_OK: now the pending chain is consumed at the next notify.
        a.w(reg::STATUS, 15);
        a.notify(0);
        assert_eq!(a.take_used(), vec![(0, 0)]);
    });
}

#[test]
fn spec_2_1_1_status_bits_only_clear_through_reset() {
    with_victim(BASE, |a| {
        a.w(reg::STATUS, status::ACKNOWLEDGE);
        assert_eq!(a.status(), 15);
        // The driver cannot set the device's DEVICE_NEEDS_RESET either.
        a.w(reg::STATUS, 15 | status::DEVICE_NEEDS_RESET);
        assert_eq!(a.status(), 15);
        a.w(reg::STATUS, 15 | 0x100);
        assert_eq!(a.status(), 15);
        assert_eq!(a.dev.stats().ignored, 2);
        a.assert_healthy(false);
    });
}

#[test]
fn spec_4_2_3_2_queue_registers_are_frozen_while_ready() {
    with_victim(BASE, |a| {
        let before = a.dev.queue(0).unwrap().addresses();
        a.w(reg::QUEUE_SEL, 0);
        a.w(reg::QUEUE_NUM, 2);
        a.w(reg::QUEUE_DESC_LOW, 0x10);
        a.w(reg::QUEUE_DRIVER_HIGH, 1);
        a.w(reg::QUEUE_DEVICE_LOW, 0);
        assert_eq!(a.dev.queue(0).unwrap().addresses(), before);
        assert_eq!(a.dev.queue(0).unwrap().size(), QS);
        assert_eq!(a.dev.stats().ignored, 4);
        a.assert_healthy(false);
    });
}

#[test]
fn spec_4_2_2_2_read_only_registers_ignore_writes() {
    with_victim(BASE, |a| {
        for r in [
            reg::MAGIC_VALUE,
            reg::VERSION,
            reg::DEVICE_ID,
            reg::INTERRUPT_STATUS,
            reg::CONFIG_GENERATION,
        ] {
            a.w(r, 0xffff_ffff);
        }
        assert_eq!(a.r(reg::MAGIC_VALUE), reg::MAGIC);
        assert_eq!(a.r(reg::VERSION), 2);
        assert_eq!(a.r(reg::DEVICE_ID), 0x2a);
        assert_eq!(a.r(reg::INTERRUPT_STATUS), 0);
        assert_eq!(a.r(reg::CONFIG_GENERATION), 0);
        assert_eq!(a.dev.stats().ignored, 5);
        a.assert_healthy(false);
    });
}

#[test]
fn fatal_error_sets_needs_reset_even_if_the_model_swallows_it() {
    with_victim(BASE, |a| {
        a.dev.device_mut().swallow_errors = true;
        a.publish(QS + 7);
        a.notify(0);
        assert_needs_reset(a, QueueError::HeadOutOfRange);
    });
}
