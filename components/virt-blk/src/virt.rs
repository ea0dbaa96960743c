//! The block virtualiser's state machine: client requests in, driver
//! requests out, completions back, with no heap and no trust in either side.
//!
//! Per client: a bounded FIFO of accepted requests (already translated to
//! absolute sectors, or carrying the error they will complete with), a token
//! bucket, and a reserved share of the driver slots. Per driver slot: the
//! request it carries, in state `Ready` (to be sent), `Sent` (the driver has
//! it) or `Done` (the client's response is still to be pushed).
//!
//! Ordering and durability rules:
//! - A client sees a write's `Ok` only after the driver's `Ok` for it.
//! - A client's requests reach the driver in the order it sent them; a flush
//!   is forwarded as a driver flush, which covers every write the driver
//!   completed before receiving it — in particular every write already
//!   acknowledged to the client when its flush arrived.
//! - Driver restart ([`Virtualiser::driver_restarted`]): every `Sent` slot
//!   goes back to `Ready` and is sent again under a new id (its write data is
//!   still in the virtualiser-owned `blk_drv_out` slot, so the resend writes
//!   the same bytes to the same sectors: idempotent). A response carrying an
//!   old id is refused, so nothing completes twice.
//!
//! Fairness: a client may hold at most `D / clients` driver slots, so a
//! flooding client never holds the slot another needs, and each
//! [`Virtualiser::dispatch_round`] gives every client with budget at most
//! one new driver request, round robin. Bound (tested): a request of an
//! idle-enough client (below its share, with tokens) is sent to the driver in
//! the first round after it was accepted, whatever the others queue.

use bulkhead_blk_protocol::{Op, Request, Response, Status, SECTOR};

use crate::config::{Budget, ClientConfig, Selector, MAX_CLIENTS};
use crate::table::PartitionTable;

/// Where a client's requests may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPolicy {
    /// First absolute sector of its partition.
    pub first: u64,
    /// Partition length in sectors.
    pub len: u64,
    /// Modifying requests fail with IOERR.
    pub read_only: bool,
    /// Its budget.
    pub budget: Budget,
}

impl ClientPolicy {
    /// No sectors, read-only: what unused entries of a policy array hold.
    pub const NONE: ClientPolicy = ClientPolicy {
        first: 0,
        len: 0,
        read_only: true,
        budget: Budget::UNLIMITED,
    };
}

/// Why the virtualiser cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// The configured partition is not in the table (client index).
    NoPartition(usize),
    /// Two clients were given overlapping partitions (client index).
    Shared(usize),
    /// No clients, more than [`MAX_CLIENTS`], or fewer driver slots than
    /// clients.
    Shape,
}

/// Resolves each client's configured partition in `table`.
///
/// # Errors
/// [`SetupError::NoPartition`] or [`SetupError::Shared`]: two guests must
/// never see the same sectors, so a configuration that would is refused.
pub fn resolve(
    clients: &[ClientConfig<'_>],
    table: &PartitionTable,
    out: &mut [ClientPolicy; MAX_CLIENTS],
) -> Result<usize, SetupError> {
    if clients.len() > MAX_CLIENTS {
        return Err(SetupError::Shape);
    }
    for (i, c) in clients.iter().enumerate() {
        let p = match c.partition {
            Selector::Index(n) => table.by_index(n),
            Selector::Name(n) => table.by_name(n),
            Selector::Guid(g) => table.by_guid(&g),
        }
        .ok_or(SetupError::NoPartition(i))?;
        if out[..i]
            .iter()
            .any(|q| p.first < q.first + q.len && q.first < p.first + p.len)
        {
            return Err(SetupError::Shared(i));
        }
        out[i] = ClientPolicy {
            first: p.first,
            len: p.len,
            read_only: c.read_only,
            budget: c.budget,
        };
    }
    Ok(clients.len())
}

/// The links the virtualiser drives; implemented over the rings and data
/// regions by the PD, over memory by tests.
pub trait Hops {
    /// Pushes a request to the driver; false if its ring is full.
    fn to_driver(&mut self, req: &Request) -> bool;
    /// Pushes a response to `client`; false if its ring is full.
    fn to_client(&mut self, client: usize, rsp: &Response) -> bool;
    /// Copies `len` bytes from `client`'s `_out` region at `client_off` to
    /// the driver's `_out` region at `driver_off`; false if either range is
    /// outside its region.
    fn client_to_driver(
        &mut self,
        client: usize,
        client_off: u64,
        driver_off: u64,
        len: u32,
    ) -> bool;
    /// Copies `len` bytes from the driver's `_in` region at `driver_off` to
    /// `client`'s `_in` region at `client_off`; false if either range is
    /// outside its region.
    fn driver_to_client(
        &mut self,
        client: usize,
        driver_off: u64,
        client_off: u64,
        len: u32,
    ) -> bool;
}

/// A client request accepted into a client FIFO.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The client's id, echoed back.
    id: u32,
    op: Op,
    flags: u8,
    /// Absolute first sector.
    sector: u64,
    count: u32,
    client_off: u64,
    len: u32,
    /// Completes with this status without reaching the driver.
    fail: Option<Status>,
}

const NO_PENDING: Pending = Pending {
    id: 0,
    op: Op::Flush,
    flags: 0,
    sector: 0,
    count: 0,
    client_off: 0,
    len: 0,
    fail: None,
};

/// A bounded FIFO.
#[derive(Debug, Clone, Copy)]
struct Fifo<const Q: usize> {
    items: [Pending; Q],
    head: usize,
    len: usize,
}

impl<const Q: usize> Fifo<Q> {
    fn push(&mut self, p: Pending) -> bool {
        if self.len == Q {
            return false;
        }
        self.items[(self.head + self.len) % Q] = p;
        self.len += 1;
        true
    }
    fn front(&self) -> Option<&Pending> {
        (self.len > 0).then(|| &self.items[self.head])
    }
    fn pop(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) % Q;
            self.len -= 1;
        }
    }
}

/// Per-client counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests completed with IOERR/UNSUPP without reaching the driver
    /// (bounds, read-only, malformed).
    pub refused: u32,
    /// Requests sent to the driver (resends not counted).
    pub dispatched: u32,
    /// Responses pushed to the client.
    pub completed: u32,
}

#[derive(Debug, Clone, Copy)]
struct Client<const Q: usize> {
    policy: ClientPolicy,
    queue: Fifo<Q>,
    /// Driver slots held.
    held: usize,
    tokens_req: i64,
    tokens_bytes: i64,
    last_refill_us: u64,
    stats: ClientStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Ready,
    Sent,
    Done(Status),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: SlotState,
    client: usize,
    req: Pending,
    seq: u32,
    /// The client restarted since: finish at the driver, tell nobody.
    orphan: bool,
}

/// Why a driver response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverResponseError {
    /// The id names no request the driver currently holds (never sent,
    /// already completed, or sent before a driver restart).
    UnknownId(u32),
}

/// Why a client request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The client's FIFO is full: leave the request in its ring for now.
    Busy,
    /// No such client.
    NoClient,
}

/// The block virtualiser: up to [`MAX_CLIENTS`] clients with FIFOs of `Q`
/// requests, `D` (≤ 256) driver slots of `slot_bytes` each.
#[derive(Debug)]
pub struct Virtualiser<const Q: usize, const D: usize> {
    clients: [Client<Q>; MAX_CLIENTS],
    nclients: usize,
    slots: [Slot; D],
    slot_bytes: u32,
    /// Next client the round robin starts with.
    next: usize,
    /// Driver responses refused.
    pub stale_responses: u32,
}

impl<const Q: usize, const D: usize> Virtualiser<Q, D> {
    /// A virtualiser for `policies` (client order = hop order) whose driver
    /// data regions hold `D` slots of `slot_bytes` (a multiple of 512).
    ///
    /// # Errors
    /// [`SetupError::Shape`] for no clients, too many, `D` above 256 or
    /// below the client count, or a bad `slot_bytes`.
    pub fn new(policies: &[ClientPolicy], slot_bytes: u32) -> Result<Self, SetupError> {
        let n = policies.len();
        if n == 0 || n > MAX_CLIENTS || D > 256 || D < n || Q == 0 {
            return Err(SetupError::Shape);
        }
        if slot_bytes == 0 || u64::from(slot_bytes) % SECTOR != 0 {
            return Err(SetupError::Shape);
        }
        let empty = Client {
            policy: ClientPolicy {
                first: 0,
                len: 0,
                read_only: true,
                budget: Budget::UNLIMITED,
            },
            queue: Fifo {
                items: [NO_PENDING; Q],
                head: 0,
                len: 0,
            },
            held: 0,
            tokens_req: 0,
            tokens_bytes: 0,
            last_refill_us: 0,
            stats: ClientStats::default(),
        };
        let mut clients = [empty; MAX_CLIENTS];
        for (c, p) in clients.iter_mut().zip(policies) {
            c.policy = *p;
            c.tokens_req = i64::from(p.budget.requests);
            c.tokens_bytes = i64::try_from(p.budget.bytes).unwrap_or(i64::MAX);
        }
        Ok(Virtualiser {
            clients,
            nclients: n,
            slots: [Slot {
                state: SlotState::Free,
                client: 0,
                req: NO_PENDING,
                seq: 0,
                orphan: false,
            }; D],
            slot_bytes,
            next: 0,
            stale_responses: 0,
        })
    }

    /// Driver slots one client may hold.
    pub fn share(&self) -> usize {
        (D / self.nclients).max(1)
    }

    /// A client's counters.
    pub fn stats(&self, client: usize) -> Option<ClientStats> {
        self.clients[..self.nclients].get(client).map(|c| c.stats)
    }

    /// Requests the driver holds or will be sent (not yet answered).
    pub fn outstanding(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Ready | SlotState::Sent))
            .count()
    }

    /// Accepts a decoded client request: validated and translated now, sent
    /// later by [`Self::dispatch_round`].
    ///
    /// # Errors
    /// [`SubmitError::Busy`] when the client's FIFO is full (nothing is
    /// lost: the request stays in its ring), [`SubmitError::NoClient`].
    pub fn submit(&mut self, client: usize, req: &Request) -> Result<(), SubmitError> {
        let slot_bytes = self.slot_bytes;
        let c = self.clients[..self.nclients]
            .get_mut(client)
            .ok_or(SubmitError::NoClient)?;
        let p = c.policy;
        let mut pend = Pending {
            id: req.id,
            op: req.op,
            flags: req.flags,
            sector: 0,
            count: req.count,
            client_off: req.data_offset,
            len: req.data_len,
            fail: None,
        };
        let in_range = req.end_sector().is_some_and(|end| end <= p.len);
        // Malformed, larger than a driver slot, a modification on a
        // read-only client, or past the end of the partition: IOERR, and
        // nothing is sent.
        let refused = req.validate().is_err()
            || req.data_len > slot_bytes
            || (req.op.modifies() && p.read_only)
            || (req.op != Op::Flush && !in_range);
        pend.fail = refused.then_some(Status::IoErr);
        if pend.fail.is_none() && req.op != Op::Flush {
            pend.sector = p.first + req.sector;
        }
        if c.queue.push(pend) {
            Ok(())
        } else {
            Err(SubmitError::Busy)
        }
    }

    /// Accepts raw request bytes from a client ring: a malformed request
    /// still gets an IOERR response under the id found in its bytes.
    ///
    /// # Errors
    /// As [`Self::submit`].
    pub fn submit_bytes(&mut self, client: usize, bytes: &[u8]) -> Result<(), SubmitError> {
        match Request::decode(bytes) {
            Ok(r) => self.submit(client, &r),
            Err(_) => {
                let mut id = [0u8; 4];
                if let Some(b) = bytes.get(4..8) {
                    id.copy_from_slice(b);
                }
                // An impossible request (count 1, length 0) fails validation.
                let bad = Request {
                    id: u32::from_le_bytes(id),
                    op: Op::Read,
                    flags: 0,
                    sector: 0,
                    count: 1,
                    data_offset: 0,
                    data_len: 0,
                };
                self.submit(client, &bad)
            }
        }
    }

    /// Refills every client's token bucket for the time `now_us`.
    pub fn tick(&mut self, now_us: u64) {
        for c in &mut self.clients[..self.nclients] {
            let b = c.policy.budget;
            if b.period_us == 0 {
                continue;
            }
            let periods = now_us.saturating_sub(c.last_refill_us) / u64::from(b.period_us);
            if periods == 0 {
                continue;
            }
            c.last_refill_us += periods * u64::from(b.period_us);
            // Refill to the per-period amount (no banking beyond one period:
            // an idle guest cannot save up a burst that starves the other),
            // keeping any debt a large request ran up.
            c.tokens_req = (c.tokens_req + i64::from(b.requests)).min(i64::from(b.requests));
            let bytes = i64::try_from(b.bytes).unwrap_or(i64::MAX);
            c.tokens_bytes = c.tokens_bytes.saturating_add(bytes).min(bytes);
        }
    }

    fn has_budget(c: &Client<Q>) -> bool {
        let b = c.policy.budget;
        (b.requests == 0 || c.tokens_req > 0) && (b.bytes == 0 || c.tokens_bytes > 0)
    }

    fn driver_request(&self, i: usize) -> Request {
        let s = &self.slots[i];
        let idx = u32::try_from(i).unwrap_or(0);
        Request {
            id: (s.seq << 8) | idx,
            op: s.req.op,
            flags: s.req.flags,
            sector: s.req.sector,
            count: s.req.count,
            data_offset: u64::from(idx) * u64::from(self.slot_bytes),
            data_len: s.req.len,
        }
    }

    fn finish_slot<H: Hops>(&mut self, i: usize, status: Status, hops: &mut H) -> bool {
        let s = self.slots[i];
        let rsp = Response {
            id: s.req.id,
            status,
        };
        self.slots[i].state = SlotState::Done(status);
        if s.orphan || hops.to_client(s.client, &rsp) {
            self.slots[i].state = SlotState::Free;
            let c = &mut self.clients[s.client];
            c.held -= 1;
            c.stats.completed = c.stats.completed.saturating_add(1);
            true
        } else {
            false
        }
    }

    /// One round: (re)sends `Ready` slots, pushes held responses, then gives
    /// each client in turn at most one new driver request (or one refused
    /// request's response). Returns whether anything moved.
    pub fn dispatch_round<H: Hops>(&mut self, hops: &mut H) -> bool {
        let mut moved = false;
        for i in 0..D {
            match self.slots[i].state {
                SlotState::Ready => {
                    if !hops.to_driver(&self.driver_request(i)) {
                        return moved;
                    }
                    self.slots[i].state = SlotState::Sent;
                    moved = true;
                }
                SlotState::Done(st) => moved |= self.finish_slot(i, st, hops),
                _ => {}
            }
        }
        let share = self.share();
        for k in 0..self.nclients {
            let ci = (self.next + k) % self.nclients;
            let c = &self.clients[ci];
            let Some(&p) = c.queue.front() else {
                continue;
            };
            if let Some(st) = p.fail {
                let c = &mut self.clients[ci];
                if hops.to_client(
                    ci,
                    &Response {
                        id: p.id,
                        status: st,
                    },
                ) {
                    c.queue.pop();
                    c.stats.refused = c.stats.refused.saturating_add(1);
                    c.stats.completed = c.stats.completed.saturating_add(1);
                    moved = true;
                }
                continue;
            }
            // A restarted client's new requests wait until the driver has
            // finished its old incarnation's: an old write must not land
            // after a new one to the same sectors.
            let fenced = self
                .slots
                .iter()
                .any(|s| s.orphan && s.client == ci && s.state != SlotState::Free);
            if c.held >= share || !Self::has_budget(c) || fenced {
                continue;
            }
            let Some(i) = self.slots.iter().position(|s| s.state == SlotState::Free) else {
                break;
            };
            let drv_off = u64::try_from(i).unwrap_or(0) * u64::from(self.slot_bytes);
            // The write's bytes are copied once, into a slot the driver can
            // read but not change: a resend after a restart sends these.
            if p.op == Op::Write && !hops.client_to_driver(ci, p.client_off, drv_off, p.len) {
                let c = &mut self.clients[ci];
                if hops.to_client(
                    ci,
                    &Response {
                        id: p.id,
                        status: Status::IoErr,
                    },
                ) {
                    c.queue.pop();
                    c.stats.refused = c.stats.refused.saturating_add(1);
                    c.stats.completed = c.stats.completed.saturating_add(1);
                    moved = true;
                }
                continue;
            }
            let seq = self.slots[i].seq.wrapping_add(1) & 0x00FF_FFFF;
            self.slots[i] = Slot {
                state: SlotState::Ready,
                client: ci,
                req: p,
                seq,
                orphan: false,
            };
            let c = &mut self.clients[ci];
            c.queue.pop();
            c.held += 1;
            c.stats.dispatched = c.stats.dispatched.saturating_add(1);
            c.tokens_req -= 1;
            // Bytes moved, whether as payload or as zeroes/discards.
            let cost = if p.op == Op::Flush {
                0
            } else {
                i64::from(p.count) * 512
            };
            c.tokens_bytes = c.tokens_bytes.saturating_sub(cost);
            moved = true;
            if hops.to_driver(&self.driver_request(i)) {
                self.slots[i].state = SlotState::Sent;
            }
        }
        self.next = (self.next + 1) % self.nclients;
        moved
    }

    /// Runs [`Self::dispatch_round`] until nothing moves.
    pub fn dispatch<H: Hops>(&mut self, hops: &mut H) {
        while self.dispatch_round(hops) {}
    }

    /// A response from the driver (decoded). Read data is copied to the
    /// client before its response is pushed.
    ///
    /// # Errors
    /// [`DriverResponseError::UnknownId`]: ignored and counted, a faulty
    /// driver cannot complete a request twice or one it does not hold.
    pub fn driver_response<H: Hops>(
        &mut self,
        rsp: &Response,
        hops: &mut H,
    ) -> Result<(), DriverResponseError> {
        let i = (rsp.id & 0xFF) as usize;
        let ok = self
            .slots
            .get(i)
            .is_some_and(|s| s.state == SlotState::Sent && s.seq == rsp.id >> 8);
        if !ok {
            self.stale_responses = self.stale_responses.saturating_add(1);
            return Err(DriverResponseError::UnknownId(rsp.id));
        }
        let s = self.slots[i];
        let mut status = rsp.status;
        if status == Status::Ok && s.req.op == Op::Read && !s.orphan {
            let drv_off = u64::try_from(i).unwrap_or(0) * u64::from(self.slot_bytes);
            if !hops.driver_to_client(s.client, drv_off, s.req.client_off, s.req.len) {
                status = Status::IoErr;
            }
        }
        self.finish_slot(i, status, hops);
        Ok(())
    }

    /// Client `client` (its VMM or guest) restarted: its queued requests
    /// are dropped, and requests the driver holds for it finish there (a
    /// write may land, as it may on a real disk when power fails
    /// mid-request) without a response to the new incarnation, whose ids
    /// they would not match. The new incarnation's requests are held back
    /// until those have finished.
    pub fn client_restarted(&mut self, client: usize) {
        let Some(c) = self.clients[..self.nclients].get_mut(client) else {
            return;
        };
        c.queue.head = 0;
        c.queue.len = 0;
        for s in &mut self.slots {
            if s.client != client || s.state == SlotState::Free {
                continue;
            }
            if matches!(s.state, SlotState::Done(_)) {
                s.state = SlotState::Free;
                c.held -= 1;
            } else {
                s.orphan = true;
            }
        }
    }

    /// The driver restarted: everything it held is lost on its side, so
    /// every `Sent` request is sent again (under a new id) by the next
    /// [`Self::dispatch_round`].
    pub fn driver_restarted(&mut self) {
        for s in &mut self.slots {
            if s.state == SlotState::Sent {
                s.state = SlotState::Ready;
                s.seq = s.seq.wrapping_add(1) & 0x00FF_FFFF;
            }
        }
    }
}
