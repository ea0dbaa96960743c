//! The driver against the register-level model in `model/`: bring-up and
//! negotiation, the data path (zero-copy through the two data windows),
//! FUA and flush, local refusals, out-of-order completion, back-pressure,
//! and every way the device can be wrong (at init and at run time).
#![allow(clippy::unwrap_used, clippy::panic)]
// Test patterns: small indices folded into bytes on purpose.
#![allow(clippy::cast_possible_truncation)]

mod model;

use bulkhead_blk_protocol::{Op, Request, Response, Status, FLAG_FUA};
use drv_virtio_blk_mmio::regs::*;
use drv_virtio_blk_mmio::*;
use model::*;

type Blk = VirtioBlk<ModelMmio, TestDma>;

fn up() -> (Shared, std::rc::Rc<std::cell::RefCell<Device>>, Blk) {
    let (phys, dev, mmio, dma) = rig();
    let blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
    (phys, dev, blk)
}

fn responses(blk: &mut Blk) -> Vec<Response> {
    let mut out = Vec::new();
    blk.take_responses(|r| {
        out.push(*r);
        true
    });
    out.sort_by_key(|r| r.id);
    out
}

/// Submits, kicks, handles interrupts (a FUA write takes two: the write's
/// and its flush's), returns the one response.
fn run(blk: &mut Blk, req: &Request) -> Status {
    blk.submit(req).unwrap();
    blk.kick();
    let mut r = Vec::new();
    for _ in 0..3 {
        blk.interrupt().unwrap();
        r.extend(responses(blk));
        if !r.is_empty() {
            break;
        }
    }
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].id, req.id);
    r[0].status
}

#[test]
fn brings_the_device_up_and_negotiates_only_what_it_knows() {
    let (_p, dev, blk) = up();
    let d = dev.borrow();
    assert_eq!(
        d.status,
        S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK
    );
    // Offered: VERSION_1, FLUSH, DISCARD, WRITE_ZEROES and many others
    // (indirect, event index, ring reset, topology...); taken: those four.
    let taken = F_VERSION_1 | F_FLUSH | F_DISCARD | F_WRITE_ZEROES;
    assert_eq!(d.driver_features, taken);
    assert_eq!(blk.features(), taken);
    assert_eq!((d.queue_num, d.queue_ready), (128, 1));
    assert_eq!(d.desc, DMA_PADDR + DESC_OFF as u64);
    assert_eq!(d.avail, DMA_PADDR + AVAIL_OFF as u64);
    assert_eq!(d.used, DMA_PADDR + USED_OFF as u64);
    assert_eq!(blk.capacity(), SECTORS as u64);
    assert_eq!((blk.queue_size(), blk.slots()), (128, MAX_SLOTS));
    assert_eq!(d.resets, 1, "starts from a reset device");
}

#[test]
fn writes_and_reads_go_zero_copy_through_the_windows() {
    let (phys, dev, mut blk) = up();
    let pattern: Vec<u8> = (0..1024).map(|i| (i * 13 + 5) as u8).collect();
    phys.borrow_mut()
        .bytes(OUT_PADDR + 4096, 1024)
        .copy_from_slice(&pattern);
    assert_eq!(run(&mut blk, &Request::write(1, 10, 2, 4096)), Status::Ok);
    assert_eq!(&dev.borrow().disk[10 * 512..12 * 512], &pattern[..]);
    assert_eq!(run(&mut blk, &Request::read(2, 10, 2, 512)), Status::Ok);
    assert_eq!(phys.borrow_mut().bytes(IN_PADDR + 512, 1024), &pattern[..]);
    assert_eq!(dev.borrow().executed, [(T_OUT, 10, 1024), (T_IN, 10, 1024)]);
    assert_eq!(blk.stats.device_completed, 2);
    assert_eq!(blk.held(), 0);
}

#[test]
fn fua_write_is_answered_after_a_flush_and_flush_reaches_the_device() {
    let (_p, dev, mut blk) = up();
    let mut w = Request::write(7, 3, 1, 0);
    w.flags = FLAG_FUA;
    assert_eq!(run(&mut blk, &w), Status::Ok);
    assert_eq!(dev.borrow().executed, [(T_OUT, 3, 512), (T_FLUSH, 0, 0)]);
    assert_eq!(
        run(&mut blk, &Request::no_data(8, Op::Flush, 0, 0)),
        Status::Ok
    );
    assert_eq!(dev.borrow().flushes(), 2);
    // A failed FUA write is answered at once, without the flush.
    dev.borrow_mut().status_override = Some(BLK_S_IOERR);
    assert_eq!(run(&mut blk, &w), Status::IoErr);
    assert_eq!(dev.borrow().flushes(), 2);
}

#[test]
fn without_flush_feature_a_flush_is_answered_locally() {
    let (_phys, dev, mmio, dma) = rig();
    dev.borrow_mut().offered = F_VERSION_1;
    let mut blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
    let mut w = Request::write(1, 0, 1, 0);
    w.flags = FLAG_FUA;
    assert_eq!(run(&mut blk, &w), Status::Ok);
    assert_eq!(
        run(&mut blk, &Request::no_data(2, Op::Flush, 0, 0)),
        Status::Ok
    );
    assert_eq!(dev.borrow().executed, [(T_OUT, 0, 512)]);
}

#[test]
fn requests_it_cannot_serve_are_refused_without_the_device() {
    let (_p, dev, mut blk) = up();
    let mut bad_len = Request::read(1, 0, 1, 0);
    bad_len.data_len = 100;
    let cases = [
        (Request::read(1, SECTORS as u64, 1, 0), Status::IoErr),
        (Request::read(2, SECTORS as u64 - 1, 2, 0), Status::IoErr),
        (Request::write(3, u64::MAX, 1, 0), Status::IoErr),
        (
            Request::read(4, 0, 2, WINDOW_LEN as u64 - 512),
            Status::IoErr,
        ),
        (Request::write(5, 0, 1, u64::MAX - 100), Status::IoErr),
        (bad_len, Status::IoErr),
        (
            Request::no_data(6, Op::Discard, SECTORS as u64 - 4, 8),
            Status::IoErr,
        ),
        (
            Request::no_data(7, Op::WriteZeroes, 0, 1 << 23),
            Status::IoErr,
        ),
        (Request::no_data(9, Op::Discard, 3, 0), Status::Ok),
        (Request::read(8, 5, 0, 0), Status::Ok),
    ];
    for (req, want) in cases {
        blk.submit(&req).unwrap();
        blk.kick();
        let r = responses(&mut blk);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].id, r[0].status), (req.id, want), "{req:?}");
    }
    let d = dev.borrow();
    assert!(d.executed.is_empty(), "{:?}", d.executed);
    assert_eq!(d.notifies, 0, "nothing to notify about");
    assert_eq!(blk.stats.local, 10);
}

#[test]
fn read_only_device_refuses_writes_and_serves_reads() {
    let (_phys, dev, mmio, dma) = rig();
    dev.borrow_mut().offered |= F_RO;
    let mut blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
    assert_ne!(blk.features() & F_RO, 0);
    assert_eq!(run(&mut blk, &Request::write(1, 0, 1, 0)), Status::IoErr);
    assert_eq!(run(&mut blk, &Request::read(2, 0, 1, 0)), Status::Ok);
    assert_eq!(dev.borrow().executed, [(T_IN, 0, 512)]);
}

#[test]
fn size_max_is_honoured_when_offered() {
    let (_phys, dev, mmio, dma) = rig();
    dev.borrow_mut().offered |= F_SIZE_MAX;
    dev.borrow_mut().size_max = 4096;
    let mut blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
    assert_eq!(run(&mut blk, &Request::read(1, 0, 8, 0)), Status::Ok);
    assert_eq!(run(&mut blk, &Request::read(2, 0, 9, 0)), Status::IoErr);
}

#[test]
fn out_of_order_completions_answer_the_right_requests() {
    let (phys, dev, mut blk) = up();
    dev.borrow_mut().auto = false;
    dev.borrow_mut().reverse = true;
    for i in 0..4u32 {
        let off = u64::from(i) * 512;
        phys.borrow_mut()
            .bytes(OUT_PADDR + off, 512)
            .fill(0x10 + i as u8);
        blk.submit(&Request::write(100 + i, u64::from(i), 1, off))
            .unwrap();
    }
    blk.kick();
    assert_eq!(dev.borrow().notifies, 1, "one notify per batch");
    assert_eq!(blk.collect().unwrap(), 0);
    assert_eq!(dev.borrow_mut().process(), 4);
    assert_eq!(blk.interrupt().unwrap(), 4);
    let r = responses(&mut blk);
    assert_eq!(
        r.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        (100..104).map(|i| (i, Status::Ok)).collect::<Vec<_>>()
    );
    for i in 0..4usize {
        assert!(dev.borrow().disk[i * 512..(i + 1) * 512]
            .iter()
            .all(|&b| b == 0x10 + i as u8));
    }
}

#[test]
fn busy_when_every_slot_is_held_and_responses_wait_for_room() {
    let (_p, dev, mut blk) = up();
    dev.borrow_mut().auto = false;
    for i in 0..MAX_SLOTS as u32 {
        blk.submit(&Request::read(i, 0, 1, 0)).unwrap();
    }
    assert_eq!(blk.submit(&Request::read(99, 0, 1, 0)), Err(Busy));
    blk.kick();
    dev.borrow_mut().process();
    blk.interrupt().unwrap();
    // The consumer has room for 5 only.
    let mut got = 0;
    assert_eq!(
        blk.take_responses(|_| {
            got += 1;
            got <= 5
        }),
        5
    );
    assert_eq!(blk.held(), MAX_SLOTS - 5);
    blk.submit(&Request::read(99, 0, 1, 0)).unwrap();
    assert_eq!(responses(&mut blk).len(), MAX_SLOTS - 5);
}

#[test]
fn rings_wrap_many_times_with_a_small_queue() {
    let (_phys, dev, mmio, dma) = rig();
    dev.borrow_mut().queue_max = 6; // not a power of two: 4 is used
    let mut blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
    assert_eq!((blk.queue_size(), blk.slots()), (4, 1));
    for i in 0..300u32 {
        let s = u64::from(i % 64);
        assert_eq!(run(&mut blk, &Request::read(i, s, 1, 0)), Status::Ok);
    }
    assert_eq!(dev.borrow().executed.len(), 300);
}

#[test]
fn restarted_driver_starts_from_a_reset_device() {
    let (phys, dev, mmio, dma) = rig();
    let mut blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
    dev.borrow_mut().auto = false;
    blk.submit(&Request::read(1, 0, 1, 0)).unwrap();
    blk.kick();
    // The PD restarts: a new incarnation over the same device and memory.
    let mmio = ModelMmio(dev.clone());
    let dma = TestDma {
        phys: phys.clone(),
        paddr: DMA_PADDR,
        len: DMA_LEN,
    };
    let mut blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
    dev.borrow_mut().auto = true;
    assert_eq!(dev.borrow().resets, 2);
    assert_eq!(run(&mut blk, &Request::read(2, 1, 1, 0)), Status::Ok);
    assert_eq!(dev.borrow().executed, [(T_IN, 1, 512)], "old chain dropped");
}

fn init_error(f: impl FnOnce(&mut Device)) -> (InitError, u32) {
    let (_phys, dev, mmio, dma) = rig();
    f(&mut dev.borrow_mut());
    let e = VirtioBlk::init(mmio, dma, windows()).unwrap_err();
    let status = dev.borrow().status;
    (e, status)
}

#[test]
fn every_init_failure_is_a_typed_error() {
    assert_eq!(init_error(|d| d.magic = 0).0, InitError::BadMagic(0));
    assert_eq!(init_error(|d| d.version = 1).0, InitError::Legacy);
    assert_eq!(init_error(|d| d.version = 3).0, InitError::BadVersion(3));
    assert_eq!(init_error(|d| d.device_id = 0).0, InitError::NoDevice);
    assert_eq!(init_error(|d| d.device_id = 1).0, InitError::NotBlk(1));
    assert_eq!(
        init_error(|d| d.reset_stuck = true).0,
        InitError::ResetTimeout
    );
    let (e, status) = init_error(|d| d.offered = F_FLUSH);
    assert_eq!(e, InitError::NoVersion1);
    assert_ne!(status & S_FAILED, 0, "driver gave up visibly");
    let (e, status) = init_error(|d| d.refuse_features = true);
    assert_eq!(e, InitError::FeaturesRefused);
    assert_ne!(status & S_FAILED, 0);
    assert_eq!(
        init_error(|d| d.queue_ready_stuck = true).0,
        InitError::QueueInUse
    );
    assert_eq!(init_error(|d| d.queue_max = 0).0, InitError::NoQueue);
    assert_eq!(
        init_error(|d| d.queue_max = 2).0,
        InitError::QueueTooSmall(2)
    );
    assert_eq!(
        init_error(|d| d.generation_flips = true).0,
        InitError::ConfigUnstable
    );
    assert_eq!(
        init_error(|d| d.needs_reset_on_driver_ok = true).0,
        InitError::NeedsReset
    );
}

#[test]
fn bad_dma_region_or_windows_are_refused() {
    let (_phys, _dev, mmio, mut dma) = rig();
    dma.len = DMA_BYTES - 1;
    assert_eq!(
        VirtioBlk::init(mmio, dma, windows()).unwrap_err(),
        InitError::DmaRegion
    );
    let (_phys, _dev, mmio, mut dma) = rig();
    dma.paddr += 8;
    assert_eq!(
        VirtioBlk::init(mmio, dma, windows()).unwrap_err(),
        InitError::DmaRegion
    );
    let (_phys, _dev, mmio, dma) = rig();
    let mut w = windows();
    w.read_data.paddr = u64::MAX - 10;
    assert_eq!(
        VirtioBlk::init(mmio, dma, w).unwrap_err(),
        InitError::DataWindow
    );
}

/// One request held by the device, then `break_it`; the driver must
/// report `want`, reset the device, answer the held request IOERR and
/// refuse everything later.
fn device_fault(break_it: impl FnOnce(&mut Device), want: DeviceError) {
    let (_p, dev, mut blk) = up();
    dev.borrow_mut().auto = false;
    blk.submit(&Request::read(5, 0, 1, 0)).unwrap();
    blk.kick();
    break_it(&mut dev.borrow_mut());
    assert_eq!(blk.interrupt(), Err(want));
    assert_eq!(blk.broken(), Some(want));
    assert_eq!(dev.borrow().status, 0, "device reset");
    assert_eq!(
        responses(&mut blk),
        [Response {
            id: 5,
            status: Status::IoErr
        }]
    );
    assert_eq!(blk.collect(), Ok(0));
    assert_eq!(run(&mut blk, &Request::read(6, 0, 1, 0)), Status::IoErr);
    assert_eq!(blk.held(), 0);
}

#[test]
fn used_index_jump_is_a_device_error() {
    device_fault(
        |d| d.jump_used(2),
        DeviceError::UsedIndexJump { last: 0, now: 2 },
    );
    // Backwards is a jump too (by 65535).
    device_fault(
        |d| d.jump_used(u16::MAX),
        DeviceError::UsedIndexJump {
            last: 0,
            now: u16::MAX,
        },
    );
}

#[test]
fn bad_used_ids_are_device_errors() {
    // Not a chain head; the head of a free slot; past the queue.
    device_fault(|d| d.push_bogus_used(1), DeviceError::BadUsedId(1));
    device_fault(|d| d.push_bogus_used(3), DeviceError::BadUsedId(3));
    device_fault(
        |d| d.push_bogus_used(0xffff_ffff),
        DeviceError::BadUsedId(0xffff_ffff),
    );
}

#[test]
fn a_chain_completed_twice_is_a_device_error() {
    let (_p, dev, mut blk) = up();
    dev.borrow_mut().auto = false;
    blk.submit(&Request::read(1, 0, 1, 0)).unwrap();
    blk.kick();
    dev.borrow_mut().process();
    assert_eq!(blk.interrupt(), Ok(1));
    // Slot 0 is answered (not yet taken); slot 1 is on the device.
    blk.submit(&Request::read(2, 0, 1, 0)).unwrap();
    blk.kick();
    // The device repeats slot 0's completion instead of finishing slot 1.
    dev.borrow_mut().push_bogus_used(0);
    assert_eq!(blk.interrupt(), Err(DeviceError::BadUsedId(0)));
    // With nothing on the device, any completion is an index jump.
    let (_p, dev, mut blk) = up();
    assert_eq!(run(&mut blk, &Request::read(1, 0, 1, 0)), Status::Ok);
    dev.borrow_mut().push_bogus_used(0);
    assert_eq!(
        blk.interrupt(),
        Err(DeviceError::UsedIndexJump { last: 1, now: 2 })
    );
}

#[test]
fn needs_reset_at_run_time_is_a_device_error() {
    device_fault(|d| d.needs_reset(), DeviceError::NeedsReset);
}

#[test]
fn a_status_byte_that_is_no_status_is_an_io_error_not_a_stop() {
    let (_p, dev, mut blk) = up();
    dev.borrow_mut().status_override = Some(7);
    assert_eq!(run(&mut blk, &Request::read(1, 0, 1, 0)), Status::IoErr);
    assert_eq!(blk.stats.bad_status, 1);
    dev.borrow_mut().status_override = None;
    assert_eq!(run(&mut blk, &Request::read(2, 0, 1, 0)), Status::Ok);
    // A completion the device never filled in (status still unset).
    dev.borrow_mut().status_override = Some(0xff);
    assert_eq!(run(&mut blk, &Request::read(3, 0, 1, 0)), Status::IoErr);
    assert_eq!(blk.broken(), None);
}

#[test]
fn discard_and_write_zeroes_go_to_the_device_as_one_segment() {
    let (_p, dev, mut blk) = up();
    assert!(dev.borrow().disk[20 * 512..24 * 512]
        .iter()
        .any(|&b| b != 0));
    assert_eq!(
        run(&mut blk, &Request::no_data(1, Op::WriteZeroes, 20, 4)),
        Status::Ok
    );
    assert!(dev.borrow().disk[20 * 512..24 * 512]
        .iter()
        .all(|&b| b == 0));
    assert_ne!(dev.borrow().disk[24 * 512], 0, "nothing past the extent");
    assert_eq!(
        run(&mut blk, &Request::no_data(2, Op::Discard, 100, 8)),
        Status::Ok
    );
    assert_eq!(
        dev.borrow().executed,
        [(T_WRITE_ZEROES, 20, 4), (T_DISCARD, 100, 8)]
    );
}

#[test]
fn discard_and_write_zeroes_are_unsupported_without_their_features() {
    for (offered, limits_zero) in [
        (F_VERSION_1 | F_FLUSH, false),
        (F_VERSION_1 | F_DISCARD | F_WRITE_ZEROES, true),
    ] {
        let (_phys, dev, mmio, dma) = rig();
        dev.borrow_mut().offered = offered;
        if limits_zero {
            // Negotiated, but the device allows no segment.
            dev.borrow_mut().discard_limits = (8, 0);
            dev.borrow_mut().write_zeroes_limits = (0, 1);
        }
        let mut blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
        for op in [Op::Discard, Op::WriteZeroes] {
            assert_eq!(
                run(&mut blk, &Request::no_data(1, op, 0, 8)),
                Status::Unsupported
            );
        }
        assert!(dev.borrow().executed.is_empty());
    }
}

#[test]
fn discard_respects_the_device_limit() {
    let (_phys, dev, mmio, dma) = rig();
    dev.borrow_mut().discard_limits = (16, 1);
    let mut blk = VirtioBlk::init(mmio, dma, windows()).unwrap();
    assert_eq!(
        run(&mut blk, &Request::no_data(1, Op::Discard, 0, 16)),
        Status::Ok
    );
    assert_eq!(
        run(&mut blk, &Request::no_data(2, Op::Discard, 0, 17)),
        Status::IoErr
    );
    assert_eq!(dev.borrow().executed, [(T_DISCARD, 0, 16)]);
}
