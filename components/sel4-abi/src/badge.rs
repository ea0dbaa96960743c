//! Decoding the badge a PD receives on its input capability.
//!
//! libmicrokit `src/main.c` (`handler_loop`): bit 63 set → a protected
//! procedure call on channel `badge & 0x3f`; else bit 62 set → a fault of
//! child PD / vCPU `badge & 0xff`; else every set bit is a notification or
//! IRQ id. The tool mints those badges in `capdl/builder.rs` (`PPC_BADGE`
//! = 1 << 63 | channel, `FAULT_BADGE` = 1 << 62 | id, notifications
//! `1 << channel id`).

/// Bit 63: the sender called a PPC endpoint.
pub const PPC_BIT: u64 = 1 << 63;
/// Bit 62: the kernel delivered a fault of a child or vCPU.
pub const FAULT_BIT: u64 = 1 << 62;
/// Mask for the channel of a PPC badge.
pub const CHANNEL_MASK: u64 = 0x3f;
/// Mask for the child/vCPU id of a fault badge.
pub const CHILD_MASK: u64 = 0xff;

/// What one received badge means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// Protected procedure call on this channel.
    Protected(u64),
    /// Fault of this child PD or vCPU.
    Fault(u64),
    /// Notifications and IRQs: bit `n` set means id `n` fired. May be 0 (a
    /// spurious wake-up): libmicrokit then calls nothing, nor do we.
    Notified(u64),
}

/// Decodes a badge exactly as libmicrokit does. libmicrokit tests the fault
/// bit before the PPC bit; the tool never mints a badge with both, but we
/// keep libmicrokit's order so a surprise decodes the same way.
#[must_use]
pub const fn decode(badge: u64) -> Event {
    if badge & FAULT_BIT != 0 {
        Event::Fault(badge & CHILD_MASK)
    } else if badge & PPC_BIT != 0 {
        Event::Protected(badge & CHANNEL_MASK)
    } else {
        Event::Notified(badge)
    }
}

impl Event {
    /// The ids libmicrokit would pass to `notified`, one call each, in
    /// ascending order; empty for a zero badge or a non-notification event.
    pub fn channels(self) -> impl Iterator<Item = u32> {
        let bits = match self {
            Event::Notified(b) => b,
            _ => 0,
        };
        (0..64u32).filter(move |i| bits & (1u64 << i) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppc_badges_carry_the_channel_in_six_bits() {
        assert_eq!(decode(PPC_BIT | 5), Event::Protected(5));
        assert_eq!(decode(PPC_BIT | 61), Event::Protected(61));
        assert_eq!(decode(PPC_BIT | 0x7f), Event::Protected(0x3f));
    }

    #[test]
    fn fault_badges_carry_the_child_in_eight_bits() {
        assert_eq!(decode(FAULT_BIT | 3), Event::Fault(3));
        assert_eq!(decode(FAULT_BIT | 0x1ff), Event::Fault(0xff));
        // libmicrokit tests is_fault before is_endpoint.
        assert_eq!(decode(FAULT_BIT | PPC_BIT | 1), Event::Fault(1));
    }

    #[test]
    fn other_badges_are_notification_bitmasks() {
        assert_eq!(decode(0b1010), Event::Notified(0b1010));
        let ids: Vec<u32> = decode(0b1010 | 1 << 61).channels().collect();
        assert_eq!(ids, [1, 3, 61]);
        assert_eq!(decode(0).channels().count(), 0);
        assert_eq!(decode(PPC_BIT | 2).channels().count(), 0);
    }
}
