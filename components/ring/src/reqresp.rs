//! Shape (b): request/response rings with ids, for out-of-order completion.
//!
//! The requester pushes [`Request`]s on one ring and pops [`Response`]s from
//! another; the responder may complete them in any order (a block device
//! reorders, a CAN controller completes per mailbox). Ids come from an
//! [`InFlight`] table on the requester's side, which also rejects a response
//! whose id is not outstanding — never issued, already completed, or from an
//! earlier use of the same slot — so a faulty responder cannot make the
//! requester complete one request twice or complete the wrong one.
//!
//! ```
//! use bulkhead_ring::{InFlight, Request, Response};
//! let mut table = InFlight::<8>::new();
//! let a = table.issue().expect("free id");
//! let b = table.issue().expect("free id");
//! let _req = Request { id: a, op: 1, payload: [0u32; 2] };
//! // The responder finishes b first.
//! let rsp = Response { id: b, status: 0, payload: () };
//! assert!(table.complete(rsp.id).is_ok());
//! assert!(table.complete(rsp.id).is_err()); // duplicate
//! assert!(table.complete(a).is_ok());
//! ```

use crate::{Pod, RingError};

/// A request: `id` (echoed in the response), operation code, payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request<P> {
    /// Requester-chosen id, echoed in the matching [`Response`].
    pub id: u32,
    /// Operation code; its meaning belongs to the protocol using the ring.
    pub op: u32,
    /// Operation arguments.
    pub payload: P,
}

/// Words: `id`, `op`, then the payload's words.
impl<P: Pod> Pod for Request<P> {
    const WORDS: usize = 2 + P::WORDS;
    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        put(0, self.id);
        put(1, self.op);
        self.payload.store(&mut |i, w| put(2 + i, w));
    }
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        Request {
            id: get(0),
            op: get(1),
            payload: P::load(&mut |i| get(2 + i)),
        }
    }
}

/// A response: the request's `id`, a status code, payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Response<P> {
    /// Id of the request this completes.
    pub id: u32,
    /// Status; its values belong to the protocol using the ring.
    pub status: u32,
    /// Results.
    pub payload: P,
}

/// Words: `id`, `status`, then the payload's words.
impl<P: Pod> Pod for Response<P> {
    const WORDS: usize = 2 + P::WORDS;
    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        put(0, self.id);
        put(1, self.status);
        self.payload.store(&mut |i, w| put(2 + i, w));
    }
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        Response {
            id: get(0),
            status: get(1),
            payload: P::load(&mut |i| get(2 + i)),
        }
    }
}

/// The requester's table of outstanding ids, `N` at most (`N <= 65536`).
///
/// An id is `generation << 16 | slot`: the generation changes each time a
/// slot is reused, so a late duplicate response to an earlier request that
/// used the same slot is rejected too.
#[derive(Debug, Clone)]
pub struct InFlight<const N: usize> {
    busy: [bool; N],
    generation: [u16; N],
    outstanding: usize,
}

impl<const N: usize> Default for InFlight<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> InFlight<N> {
    /// An empty table.
    #[must_use]
    pub const fn new() -> Self {
        const { assert!(N <= 1 << 16, "slot index must fit in 16 bits") };
        Self {
            busy: [false; N],
            generation: [0; N],
            outstanding: 0,
        }
    }

    /// Requests outstanding.
    #[must_use]
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// A fresh id for a new request, or `None` if `N` are outstanding.
    pub fn issue(&mut self) -> Option<u32> {
        let slot = self.busy.iter().position(|b| !b)?;
        // Below N <= 2^16 (asserted in `new`), so this conversion succeeds.
        let index = u32::try_from(slot).ok()?;
        self.busy[slot] = true;
        self.outstanding += 1;
        Some(u32::from(self.generation[slot]) << 16 | index)
    }

    /// Marks `id` completed (call on each response popped).
    ///
    /// # Errors
    /// [`RingError::UnknownId`] if `id` is not outstanding (never issued,
    /// already completed, or stale).
    pub fn complete(&mut self, id: u32) -> Result<(), RingError> {
        let slot = usize::try_from(id & 0xffff).map_err(|_| RingError::UnknownId(id))?;
        let gen = id >> 16;
        match (self.busy.get(slot), self.generation.get(slot)) {
            (Some(true), Some(&g)) if u32::from(g) == gen => {
                self.busy[slot] = false;
                self.generation[slot] = g.wrapping_add(1);
                self.outstanding -= 1;
                Ok(())
            }
            _ => Err(RingError::UnknownId(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_until_completed_and_stale_ids_fail() {
        let mut t = InFlight::<2>::new();
        let a = t.issue().unwrap();
        let b = t.issue().unwrap();
        assert_ne!(a, b);
        assert_eq!(t.issue(), None);
        t.complete(a).unwrap();
        let a2 = t.issue().unwrap();
        assert_eq!(a2 & 0xffff, a & 0xffff, "slot reused");
        assert_eq!(
            t.complete(a),
            Err(RingError::UnknownId(a)),
            "stale generation"
        );
        t.complete(a2).unwrap();
        t.complete(b).unwrap();
        assert_eq!(t.outstanding(), 0);
        assert!(t.complete(0xffff).is_err(), "slot out of range");
    }

    #[test]
    fn request_layout_is_id_op_payload() {
        let r = Request {
            id: 1,
            op: 2,
            payload: 0x0000_0004_0000_0003_u64,
        };
        let mut w = [0u32; 4];
        r.store(&mut |i, x| w[i] = x);
        assert_eq!(w, [1, 2, 3, 4]);
        assert_eq!(Request::<u64>::load(&mut |i| w[i]), r);
    }
}
