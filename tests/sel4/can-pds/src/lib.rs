//! Shared pieces of the seL4 CAN boot test's PDs (`tests/sel4/tests/can.rs`):
//! the scenario's frames, ring attachment from a PD's regions, and a compact
//! printable form of a frame, so every PD prints frames the same way and the
//! test can compare console lines.
//!
//! The scenario: the guests (or the direct driver-hop client) send
//! [`guest_frames`]; the far-side ECU waits until it has seen every id of
//! [`ECU_EXPECTS`], then answers with [`ecu_frames`], which reach each
//! guest whose filters accept them.
#![no_std]

use bulkhead_can_frame::{CanId, Frame};
use bulkhead_ring::Region as RingRegion;
use bulkhead_runtime::Region;

/// Ids the ECU must see before it answers.
pub const ECU_EXPECTS: [u32; 3] = [0x300, 0x301, 0x480];

fn classic(id: u16, data: &[u8]) -> Option<Frame> {
    Frame::classic(CanId::standard(id).ok()?, data).ok()
}

fn fd(id: u16, data: &[u8]) -> Option<Frame> {
    Frame::fd(CanId::standard(id).ok()?, data, true).ok()
}

/// What guest `who` (0 = `guest_a`, 1 = `guest_b`) sends, in order: `guest_a`
/// a classic 0x300 and an FD 0x301 (16 bytes, BRS); `guest_b` a classic
/// 0x480 and then 0x300, which its whitelist refuses.
pub fn guest_frames(who: usize) -> [Option<Frame>; 2] {
    let data: [u8; 16] = core::array::from_fn(|i| u8::try_from(i).unwrap_or(0) + 0x10);
    if who == 0 {
        [classic(0x300, &[0xca, 0xfe]), fd(0x301, &data)]
    } else {
        [classic(0x480, &[0x48]), classic(0x300, &[0xba, 0xd0])]
    }
}

/// The ECU's answers, in the order it loads them: 0x123 (for `guest_a`'s
/// filter 0x100/0x700), 0x456 (for `guest_b`'s 0x400/0x700), an FD 0x1AB of
/// 12 bytes with BRS (`guest_a`), and 0x7FF (nobody's).
pub fn ecu_frames() -> [Option<Frame>; 4] {
    let data: [u8; 12] = core::array::from_fn(|i| 0xa0 + u8::try_from(i).unwrap_or(0));
    [
        classic(0x123, &[1, 2, 3]),
        classic(0x456, &[4, 5, 6]),
        fd(0x1ab, &data),
        classic(0x7ff, &[0x7f]),
    ]
}

/// The ring in region `name` of this PD, if the description maps it.
pub fn ring(name: &str) -> Option<RingRegion<'static>> {
    let r = Region::get(name).ok()?;
    // SAFETY: the runtime mapped `r.size()` bytes at `r.vaddr()` read-write
    // for the PD's life (the description's map of a ring region), and the
    // PD touches the region only through the ring built from it.
    unsafe { RingRegion::from_raw(r.vaddr() as *mut u8, r.size()) }.ok()
}

/// A frame as one console word group: `0x123 classic [010203]`,
/// `0x1ab fd brs [a0a1…]` (payload bytes in hex, all of them).
pub struct Show<'a>(pub &'a Frame);

impl core::fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let fr = self.0;
        write!(f, "{:#x} ", fr.id().raw())?;
        if fr.is_fd() {
            f.write_str(if fr.brs() { "fd brs [" } else { "fd [" })?;
        } else if fr.is_remote() {
            f.write_str("rtr [")?;
        } else {
            f.write_str("classic [")?;
        }
        for b in fr.data() {
            write!(f, "{b:02x}")?;
        }
        f.write_str("]")
    }
}
