//! The driver end of the `drv` hop (`drv-can-driver-hop`, which both CAN
//! driver PDs use) over in-memory rings (its `testkit` plays the
//! virtualiser), with the
//! FlexCAN driver on the register-level model behind it: the rules of
//! `bulkhead_can_protocol::driver_hop` as the virtualiser sees them.

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod model;

use std::cell::RefCell;
use std::rc::Rc;

use bulkhead_can_frame::{CanId, Frame};
use bulkhead_can_protocol::controller::BusState;
use bulkhead_can_protocol::driver_hop::{decode_ready, decode_status};
use bulkhead_can_protocol::{drv_op, drv_status, WireFrame, EVENT_ID, RING_CAPACITY};
use bulkhead_ring::Response;
use drv_can_driver_hop::testkit::{connect, connect_into_full_ring, Virt};
use drv_can_driver_hop::Hop;
use drv_flexcan::{Config, Filter, FlexCan};
use model::{Handle, Model};

fn setup() -> (Rc<RefCell<Model>>, FlexCan<Handle>, Hop, Virt) {
    let (m, h) = Model::new().handle();
    let cfg = Config {
        nominal_bps: 500_000,
        data_bps: Some(2_000_000),
        tx_slots: 4,
        filters: &Filter::ACCEPT_ALL,
    };
    let can = FlexCan::new(h, &cfg).unwrap();
    let (hop, virt) = connect(4, true);
    (m, can, hop, virt)
}

fn std(id: u16, data: &[u8]) -> Frame {
    Frame::classic(CanId::standard(id).unwrap(), data).unwrap()
}

fn frame(r: &Response<WireFrame>) -> Frame {
    r.payload.to_frame().unwrap()
}

#[test]
fn ready_then_one_echoed_answer_per_submit_in_id_order_with_abort_of_the_waiting_one() {
    let (m, mut can, mut hop, mut v) = setup();
    let ready = v.answers();
    assert_eq!(ready.len(), 1);
    assert_eq!(
        (ready[0].id, ready[0].status),
        (EVENT_ID, drv_status::READY)
    );
    assert_eq!(decode_ready(ready[0].payload.timestamp), Some((4, true)));

    // Submitted low priority first; the controller still offers 0x100 first.
    v.submit(0, &std(0x700, &[7]));
    v.submit(1, &std(0x100, &[1]));
    hop.serve(&mut can, 0).unwrap();
    let status = v.answers();
    assert_eq!(status.len(), 1, "only the first STATUS: {status:?}");
    assert_eq!(status[0].status, drv_status::STATUS);
    assert_eq!(m.borrow_mut().start_tx(), Some(2), "MB 2 = slot 1 = 0x100");

    // ABORT the waiting 0x700: ABORTED, echoing it. ABORT of the one on the
    // bus: nothing now, SENT later. ABORT of an empty slot: ignored.
    v.send(drv_op::ABORT, 0, WireFrame::default());
    v.send(drv_op::ABORT, 1, WireFrame::default());
    v.send(drv_op::ABORT, 3, WireFrame::default());
    hop.serve(&mut can, 5).unwrap();
    let a = v.answers();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0].id, a[0].status), (0, drv_status::ABORTED));
    assert_eq!(frame(&a[0]), std(0x700, &[7]));

    m.borrow_mut().finish_tx(true);
    hop.serve(&mut can, 6).unwrap();
    let s = v.answers();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!((s[0].id, s[0].status), (1, drv_status::SENT));
    assert_eq!(frame(&s[0]), std(0x100, &[1]));
    let wire: Vec<u32> = m.borrow().wire.iter().map(|(_, f)| f.id().raw()).collect();
    assert_eq!(wire, vec![0x100], "the aborted frame never reached the bus");
    assert_eq!(hop.rx_dropped, 0);
}

#[test]
fn refused_submits_are_answered_failed_once_and_fd_goes_through() {
    let (m, mut can, mut hop, mut v) = setup();
    v.answers();
    let fd = Frame::fd(CanId::standard(0x1ab).unwrap(), &[0xa5; 12], true).unwrap();
    v.submit(0, &fd);
    v.submit(0, &std(0x10, &[])); // slot busy
    v.submit(4, &std(0x11, &[])); // slot out of range
    let mut bad = WireFrame::from_frame(&std(0x12, &[1]), 0);
    bad.flags |= 1 << 9; // undefined flag
    v.send(drv_op::SUBMIT, 2, bad);
    v.send(0x77, 3, WireFrame::default()); // unknown op: ignored
    hop.serve(&mut can, 9).unwrap();
    let a: Vec<(u32, u32)> = v
        .answers()
        .iter()
        .filter(|r| r.id != EVENT_ID)
        .map(|r| (r.id, r.status))
        .collect();
    assert_eq!(
        a,
        vec![
            (0, drv_status::FAILED),
            (4, drv_status::FAILED),
            (2, drv_status::FAILED)
        ]
    );
    assert_eq!(hop.bad_requests, 4);
    m.borrow_mut().drain();
    hop.serve(&mut can, 10).unwrap();
    let s = v.answers();
    assert_eq!((s[0].id, s[0].status), (0, drv_status::SENT));
    assert_eq!(frame(&s[0]), fd);
    assert_eq!(m.borrow().wire[0].1, fd);
}

#[test]
fn rx_events_in_bus_order_and_a_full_ring_drops_rx_but_keeps_room_for_answers() {
    let (m, mut can, mut hop, mut v) = setup();
    v.answers();
    hop.serve(&mut can, 0).unwrap();
    v.answers();
    let mut sent = 0u16;
    // Never read by the virtualiser: RX fills the ring up to the reserve.
    for _ in 0..8 {
        for _ in 0..4 {
            m.borrow_mut().inject(&std(0x200 + sent, &[]));
            sent += 1;
        }
        hop.serve(&mut can, 1).unwrap();
    }
    assert!(hop.rx_dropped > 0, "32 frames cannot all fit");
    // The reserve still takes a SUBMIT's answer.
    v.submit(0, &std(0x50, &[]));
    hop.serve(&mut can, 2).unwrap();
    m.borrow_mut().drain();
    hop.serve(&mut can, 3).unwrap();
    let all = v.answers();
    let rx: Vec<u32> = all
        .iter()
        .filter(|r| r.status == drv_status::RX)
        .map(|r| frame(r).id().raw())
        .collect();
    assert_eq!(rx.len() + hop.rx_dropped as usize, usize::from(sent));
    assert!(rx.windows(2).all(|w| w[0] < w[1]), "bus order: {rx:x?}");
    assert_eq!(rx.first(), Some(&0x200));
    assert!(
        all.iter()
            .any(|r| (r.id, r.status) == (0, drv_status::SENT)),
        "the slot answer found room"
    );
}

#[test]
fn bus_off_is_reported_and_recovery_waits_for_recover() {
    let (m, mut can, mut hop, mut v) = setup();
    v.answers();
    m.borrow_mut().set_counters(256, 3);
    hop.serve(&mut can, 0).unwrap();
    let st: Vec<_> = v
        .answers()
        .iter()
        .filter(|r| r.status == drv_status::STATUS)
        .map(|r| decode_status(r.payload.timestamp).unwrap())
        .collect();
    assert_eq!(st.last().map(|s| s.state), Some(BusState::BusOff));
    m.borrow_mut().idle(1000);
    can.service();
    hop.serve(&mut can, 1).unwrap();
    assert!(
        v.answers().is_empty(),
        "no recovery, so no change, without RECOVER"
    );
    v.send(drv_op::RECOVER, 0, WireFrame::default());
    hop.serve(&mut can, 2).unwrap();
    m.borrow_mut().idle(128);
    can.service();
    hop.serve(&mut can, 3).unwrap();
    let st: Vec<_> = v
        .answers()
        .iter()
        .filter(|r| r.status == drv_status::STATUS)
        .map(|r| decode_status(r.payload.timestamp).unwrap())
        .collect();
    let last = st.last().copied().unwrap();
    assert_eq!((last.state, last.tec, last.rec), (BusState::Active, 0, 0));
}

#[test]
fn a_restart_into_a_full_response_ring_announces_ready_once_there_is_room() {
    let (m, h) = Model::new().handle();
    let cfg = Config {
        nominal_bps: 500_000,
        data_bps: None,
        tx_slots: 4,
        filters: &Filter::ACCEPT_ALL,
    };
    let mut can = FlexCan::new(h, &cfg).unwrap();
    // The driver's previous life filled the response ring; nobody read it.
    let (mut hop, mut v) = connect_into_full_ring(4, false);
    v.submit(0, &std(0x10, &[1]));
    m.borrow_mut().inject(&std(0x20, &[2]));
    hop.serve(&mut can, 0).unwrap();
    assert!(m.borrow().next_tx().is_none(), "nothing taken before READY");
    assert_eq!(hop.rx_dropped, 1, "RX drained and counted meanwhile");
    let stale = v.answers();
    assert_eq!(stale.len(), RING_CAPACITY as usize);
    assert!(stale.iter().all(|a| a.status == drv_status::SENT));
    hop.serve(&mut can, 1).unwrap();
    let a = v.answers();
    assert_eq!((a[0].id, a[0].status), (EVENT_ID, drv_status::READY));
    assert_eq!(decode_ready(a[0].payload.timestamp), Some((4, false)));
    m.borrow_mut().drain();
    hop.serve(&mut can, 2).unwrap();
    assert!(v
        .answers()
        .iter()
        .any(|r| (r.id, r.status) == (0, drv_status::SENT)));
}
