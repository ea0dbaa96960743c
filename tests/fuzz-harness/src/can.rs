//! Fuzz target `can_frame`: arbitrary bytes as a virtio-can TX message
//! (VIRTIO 1.4 §5.20), parsed with and without CAN FD negotiated. Any panic is
//! a bug: these bytes come from a guest.
//!
//! For every accepted message: its exact stuffed wire length lies within the
//! worst/best-case bounds, it serialises back to a message that parses to the
//! same frame, and accepting it without FD implies accepting it with FD.
//! Random bytes rarely get past the header, so each input is also tried with
//! the header forced valid (TX type, zero reserved bytes, only defined flags)
//! to reach the id and length checks.

use bulkhead_can_frame::bits::Shape;
use bulkhead_can_frame::virtio::{
    self, Features, FLAGS_KNOWN, HEADER_LEN, MAX_MESSAGE_LEN, MSG_TX,
};
use bulkhead_can_frame::{Frame, FrameBits};

const CLASSIC_RTR: Features = Features {
    classic: true,
    fd: false,
    rtr: true,
};
const CLASSIC_FD: Features = Features {
    classic: true,
    fd: true,
    rtr: true,
};
const FD_ONLY: Features = Features {
    classic: false,
    fd: true,
    rtr: false,
};

/// Runs the parser on `data` as given and with its header made valid.
pub fn can_frame(data: &[u8]) {
    exercise(data);
    if data.len() >= HEADER_LEN {
        let mut fixed = data.to_vec();
        fixed[0..2].copy_from_slice(&MSG_TX.to_le_bytes());
        fixed[5] = 0;
        fixed[6] = 0;
        fixed[7] = 0;
        let flags = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]) & FLAGS_KNOWN;
        fixed[8..12].copy_from_slice(&flags.to_le_bytes());
        exercise(&fixed);
    }
}

fn exercise(data: &[u8]) {
    let without_fd = virtio::parse_tx(data, CLASSIC_RTR);
    let with_fd = virtio::parse_tx(data, CLASSIC_FD);
    let fd_only = virtio::parse_tx(data, FD_ONLY);
    if let Ok(f) = without_fd {
        assert!(!f.is_fd(), "FD frame accepted without FD negotiated");
        assert_eq!(with_fd, Ok(f), "more features must not refuse a frame");
    }
    if let Ok(f) = fd_only {
        assert!(
            f.is_fd() && !f.is_remote(),
            "classic frame accepted with FD only"
        );
    }
    for r in [without_fd, with_fd, fd_only] {
        match r {
            Ok(f) => check_frame(&f),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

fn check_frame(f: &Frame) {
    let bits = FrameBits::new(f);
    let shape = Shape {
        extended: f.id().is_extended(),
        fd: f.is_fd(),
        brs: f.brs(),
        len: u16::try_from(f.len()).unwrap_or(u16::MAX),
    };
    assert!(bits.len() >= shape.min_wire_bits() && bits.len() <= shape.max_wire_bits());
    assert_eq!(bits.len(), f.wire_bits());
    let mut out = [0u8; MAX_MESSAGE_LEN];
    let n = virtio::serialise(f, MSG_TX, &mut out).unwrap_or(0);
    assert_eq!(n, HEADER_LEN + f.len());
    assert_eq!(
        virtio::parse_tx(&out[..n], CLASSIC_FD),
        Ok(*f),
        "round trip changed the frame"
    );
}
