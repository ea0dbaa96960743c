//! The FlexCAN driver behind the real CAN virtualiser: two guests share the
//! controller; a late urgent frame displaces a waiting low-priority one and
//! reaches the wire first; frames from the bus reach the subscribed guest.

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod model;

use bulkhead_can_frame::{CanId, Frame};
use bulkhead_virt_can::{Admission, Arbitration, Budget, IdFilter, Policy, Virtualiser};
use drv_flexcan::{Config, Filter, FlexCan};
use model::Model;

fn f(id: u16) -> Frame {
    Frame::classic(CanId::standard(id).unwrap(), &id.to_le_bytes()[..1]).unwrap()
}

#[test]
fn two_guests_share_the_controller_in_id_order() {
    let all = IdFilter {
        id: 0,
        mask: 0,
        extended: false,
    };
    let only_0x5xx = IdFilter {
        id: 0x500,
        mask: 0x700,
        extended: false,
    };
    let p0 = Policy::new(&[all], &[all], Budget::default()).unwrap();
    let p1 = Policy::new(&[only_0x5xx], &[all], Budget::default()).unwrap();
    let mut v: Virtualiser<2, 8> = Virtualiser::new(&[p0, p1], 2, false, Arbitration::ById);
    assert!(v.start(0) && v.start(1));
    // Hardware filters: the union of the guests' RX filters.
    let hw = [
        Filter {
            id: 0,
            mask: 0,
            extended: false,
        },
        Filter {
            id: 0x500,
            mask: 0x700,
            extended: false,
        },
    ];
    let (m, h) = Model::new().handle();
    let mut c = FlexCan::new(
        h,
        &Config {
            nominal_bps: 500_000,
            data_bps: None,
            tx_slots: 2,
            filters: &hw,
        },
    )
    .unwrap();

    for id in [0x600, 0x601, 0x602] {
        assert!(matches!(v.submit(1, &f(id), 0), Admission::Queued(_)));
    }
    v.poll(&mut c);
    // 0x600 goes on the bus; guest 0's urgent frame arrives meanwhile.
    assert!(m.borrow_mut().start_tx().is_some());
    assert!(matches!(v.submit(0, &f(0x010), 0), Admission::Queued(_)));
    v.poll(&mut c);
    m.borrow_mut().finish_tx(true);
    for _ in 0..4 {
        v.poll(&mut c);
        m.borrow_mut().drain();
    }
    v.poll(&mut c);
    let ids: Vec<u32> = m
        .borrow()
        .wire
        .iter()
        .map(|(_, fr)| fr.id().raw())
        .collect();
    assert_eq!(ids, vec![0x600, 0x010, 0x601, 0x602]);
    assert_eq!(v.counters(0).unwrap().sent, 1);
    assert_eq!(v.counters(1).unwrap().sent, 3);

    // From the far side: 0x510 is for both guests, 0x123 only for guest 0.
    assert!(m.borrow_mut().inject(&f(0x510)).is_some());
    assert!(m.borrow_mut().inject(&f(0x123)).is_some());
    v.poll(&mut c);
    let mut g0 = Vec::new();
    while let Some(r) = v.rx_pop(0) {
        g0.push(r.frame.id().raw());
    }
    let mut g1 = Vec::new();
    while let Some(r) = v.rx_pop(1) {
        g1.push(r.frame.id().raw());
    }
    assert!(g0.ends_with(&[0x510, 0x123]), "guest 0 got {g0:x?}");
    assert!(
        g1.ends_with(&[0x510]) && !g1.contains(&0x123),
        "guest 1 got {g1:x?}"
    );
    assert!(m.borrow().violations.is_empty());
}
