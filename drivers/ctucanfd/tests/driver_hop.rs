//! The `ctucanfd_driver` PD's end of the `drv` hop (`drv-can-driver-hop`)
//! over in-memory rings (its `testkit` plays the virtualiser), with the CTU
//! CAN FD driver on the register model behind it: what the virtualiser sees.
//! The FlexCAN crate runs the same hop against its own model
//! (`drivers/flexcan/tests/driver_hop.rs`): one hop, both controllers.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod model;

use std::cell::RefCell;
use std::rc::Rc;

use bulkhead_can_frame::{CanId, Frame};
use bulkhead_can_protocol::controller::BusState;
use bulkhead_can_protocol::driver_hop::{decode_ready, decode_status};
use bulkhead_can_protocol::{drv_op, drv_status, WireFrame, EVENT_ID};
use drv_can_driver_hop::testkit::{connect, Virt};
use drv_can_driver_hop::Hop;
use drv_ctucanfd::{Config, CtuCanFd, PCI_CLOCK_HZ, TX_BUFFERS};
use model::{Handle, Model};

fn setup() -> (Rc<RefCell<Model>>, CtuCanFd<Handle>, Hop, Virt) {
    let (m, h) = Model::new().handle();
    let cfg = Config {
        clock_hz: PCI_CLOCK_HZ,
        nominal_bps: 500_000,
        data_bps: Some(2_000_000),
        tx_slots: TX_BUFFERS,
    };
    let can = CtuCanFd::new(h, &cfg).unwrap();
    let (hop, virt) = connect(TX_BUFFERS, true);
    (m, can, hop, virt)
}

fn std(id: u16, data: &[u8]) -> Frame {
    Frame::classic(CanId::standard(id).unwrap(), data).unwrap()
}

#[test]
fn frames_leave_in_id_order_whatever_the_slot_and_a_waiting_one_aborts() {
    let (m, mut can, mut hop, mut v) = setup();
    let ready = v.answers();
    assert_eq!(
        (ready[0].id, ready[0].status),
        (EVENT_ID, drv_status::READY)
    );
    assert_eq!(decode_ready(ready[0].payload.timestamp), Some((4, true)));
    // Slots filled highest id first: the controller must still offer the
    // lowest id first (TX_PRIORITY re-ranked on every SUBMIT).
    let fd = Frame::fd(CanId::standard(0x200).unwrap(), &[0x5a; 20], true).unwrap();
    v.submit(0, &std(0x600, &[6]));
    v.submit(1, &std(0x400, &[4]));
    v.submit(2, &fd);
    v.submit(3, &std(0x050, &[5]));
    hop.serve(&mut can, 0).unwrap();
    assert_eq!(m.borrow_mut().start_tx(), Some(3), "0x050 first");
    // 0x600 is still waiting: ABORT takes it back.
    v.send(drv_op::ABORT, 0, WireFrame::default());
    hop.serve(&mut can, 1).unwrap();
    assert_eq!(
        v.slot_answers(),
        vec![(0, drv_status::ABORTED, std(0x600, &[6]))]
    );
    m.borrow_mut().finish_tx(true);
    m.borrow_mut().drain();
    hop.serve(&mut can, 2).unwrap();
    let mut done = v.slot_answers();
    done.sort_by_key(|d| d.0);
    assert_eq!(
        done,
        vec![
            (1, drv_status::SENT, std(0x400, &[4])),
            (2, drv_status::SENT, fd),
            (3, drv_status::SENT, std(0x050, &[5])),
        ]
    );
    let wire: Vec<u32> = m.borrow().wire.iter().map(|(_, f)| f.id().raw()).collect();
    assert_eq!(wire, vec![0x050, 0x200, 0x400]);
}

#[test]
fn received_frames_and_fault_states_reach_the_virtualiser() {
    let (m, mut can, mut hop, mut v) = setup();
    v.answers();
    let fd = Frame::fd(CanId::extended(0x1abc_def0).unwrap(), &[7; 64], false).unwrap();
    assert!(m.borrow_mut().inject(&std(0x123, &[1, 2, 3])));
    assert!(m.borrow_mut().inject(&fd));
    hop.serve(&mut can, 0).unwrap();
    let a = v.answers();
    let rx: Vec<Frame> = a
        .iter()
        .filter(|r| r.status == drv_status::RX)
        .map(|r| r.payload.to_frame().unwrap())
        .collect();
    assert_eq!(rx, vec![std(0x123, &[1, 2, 3]), fd]);

    // Error-passive, then bus-off: each change is a STATUS; no recovery
    // until RECOVER.
    m.borrow_mut().set_counters(140, 2);
    hop.serve(&mut can, 1).unwrap();
    m.borrow_mut().set_counters(256, 2);
    hop.serve(&mut can, 2).unwrap();
    m.borrow_mut().idle(500);
    hop.serve(&mut can, 3).unwrap();
    let states: Vec<BusState> = v
        .answers()
        .iter()
        .filter(|r| r.status == drv_status::STATUS)
        .map(|r| decode_status(r.payload.timestamp).unwrap().state)
        .collect();
    assert_eq!(states, vec![BusState::Passive, BusState::BusOff]);
    v.send(drv_op::RECOVER, 0, WireFrame::default());
    hop.serve(&mut can, 4).unwrap();
    m.borrow_mut().idle(128);
    hop.serve(&mut can, 5).unwrap();
    let last = v
        .answers()
        .iter()
        .filter(|r| r.status == drv_status::STATUS)
        .map(|r| decode_status(r.payload.timestamp).unwrap())
        .next_back()
        .unwrap();
    assert_eq!((last.state, last.tec, last.rec), (BusState::Active, 0, 0));
}
