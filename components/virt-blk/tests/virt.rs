//! The virtualiser against an in-memory driver model with a volatile write
//! cache: bounds, read-only, fairness under a flooding client, and a
//! property test over random interleavings of client requests, out-of-order
//! driver completions, driver crashes (with and without the write reaching
//! the cache first) and restarts.
//!
//! Durability model: a driver `Ok` for a write puts it in the device's
//! volatile cache (FUA: durable at once); a driver flush makes every write
//! completed before the flush was received durable; a driver crash loses
//! only what the driver held (the cache belongs to the device/kernel); a
//! power cut keeps only the durable state.
#![allow(clippy::cast_possible_truncation, clippy::unwrap_used)] // test sizes are tiny

use std::collections::{HashMap, VecDeque};

use bulkhead_blk_protocol::{Op, Request, Response, Status, FLAG_FUA};
use bulkhead_virt_blk::config::Budget;
use bulkhead_virt_blk::{ClientPolicy, Hops, Virtualiser};
use proptest::prelude::*;

const SLOT: u32 = 4 * 512;
const D: usize = 8;
const Q: usize = 16;
const CLIENT_REGION: usize = Q * SLOT as usize;

/// Disk sectors; the first 4 bytes of a sector hold the tag of the write
/// that last wrote it (0 = never written).
#[derive(Default)]
struct Driver {
    durable: Vec<u32>,
    /// Completed writes in completion order: (sector, tag).
    log: Vec<(u64, u32)>,
    /// Log entries already durable.
    applied: usize,
    /// Requests received, not answered: (request, log length at receipt).
    held: Vec<(Request, usize)>,
}

impl Driver {
    fn cache_view(&self, sector: u64) -> u32 {
        let mut v = self.durable[sector as usize];
        for &(s, t) in &self.log[self.applied..] {
            if s == sector {
                v = t;
            }
        }
        v
    }
    fn persist_upto(&mut self, upto: usize) {
        while self.applied < upto {
            let (s, t) = self.log[self.applied];
            self.durable[s as usize] = t;
            self.applied += 1;
        }
    }
}

struct Env {
    driver: Driver,
    drv_out: Vec<u8>,
    drv_in: Vec<u8>,
    client_out: Vec<Vec<u8>>,
    client_in: Vec<Vec<u8>>,
    responses: Vec<VecDeque<Response>>,
    /// Client ring capacity (small, to exercise held responses).
    resp_cap: usize,
    driver_ring_full: bool,
}

impl Env {
    fn new(clients: usize, sectors: usize) -> Env {
        Env {
            driver: Driver {
                durable: vec![0; sectors],
                ..Driver::default()
            },
            drv_out: vec![0; D * SLOT as usize],
            drv_in: vec![0; D * SLOT as usize],
            client_out: vec![vec![0; CLIENT_REGION]; clients],
            client_in: vec![vec![0; CLIENT_REGION]; clients],
            responses: vec![VecDeque::new(); clients],
            resp_cap: 64,
            driver_ring_full: false,
        }
    }

    /// The driver executes held request `k`; `respond: false` models a
    /// crash after the medium saw the write but before the response.
    fn complete(&mut self, v: &mut Virtualiser<Q, D>, k: usize, respond: bool) {
        let (r, log_at_receipt) = self.driver.held.remove(k);
        let off = r.data_offset as usize;
        match r.op {
            Op::Write => {
                for s in 0..u64::from(r.count) {
                    let at = off + s as usize * 512;
                    let tag = u32::from_le_bytes(self.drv_out[at..at + 4].try_into().unwrap());
                    self.driver.log.push((r.sector + s, tag));
                }
                if r.flags & FLAG_FUA != 0 {
                    let n = self.driver.log.len();
                    self.driver.persist_upto(n);
                }
            }
            Op::Read => {
                for s in 0..u64::from(r.count) {
                    let at = off + s as usize * 512;
                    let tag = self.driver.cache_view(r.sector + s);
                    self.drv_in[at..at + 4].copy_from_slice(&tag.to_le_bytes());
                }
            }
            Op::Flush => self.driver.persist_upto(log_at_receipt),
            Op::Discard | Op::WriteZeroes => {}
        }
        if respond {
            let rsp = Response {
                id: r.id,
                status: Status::Ok,
            };
            v.driver_response(&rsp, self)
                .expect("driver answers what it holds");
        }
    }
}

impl Hops for Env {
    fn to_driver(&mut self, req: &Request) -> bool {
        if self.driver_ring_full {
            return false;
        }
        assert!(req.validate().is_ok());
        self.driver.held.push((*req, self.driver.log.len()));
        true
    }
    fn to_client(&mut self, client: usize, rsp: &Response) -> bool {
        let q = &mut self.responses[client];
        if q.len() >= self.resp_cap {
            return false;
        }
        q.push_back(*rsp);
        true
    }
    fn client_to_driver(&mut self, c: usize, co: u64, dof: u64, len: u32) -> bool {
        let (co, dof, len) = (co as usize, dof as usize, len as usize);
        let Some(src) = self.client_out[c].get(co..co + len) else {
            return false;
        };
        self.drv_out[dof..dof + len].copy_from_slice(src);
        true
    }
    fn driver_to_client(&mut self, c: usize, dof: u64, co: u64, len: u32) -> bool {
        let (co, dof, len) = (co as usize, dof as usize, len as usize);
        let src = &self.drv_in[dof..dof + len];
        let Some(dst) = self.client_in[c].get_mut(co..co + len) else {
            return false;
        };
        dst.copy_from_slice(src);
        true
    }
}

fn policy(first: u64, len: u64, read_only: bool) -> ClientPolicy {
    ClientPolicy {
        first,
        len,
        read_only,
        budget: Budget::UNLIMITED,
    }
}

fn drain_responses(env: &mut Env, c: usize) -> Vec<Response> {
    env.responses[c].drain(..).collect()
}

#[test]
fn bounds_and_read_only_never_reach_the_driver() {
    let mut v = Virtualiser::<Q, D>::new(&[policy(10, 20, false), policy(40, 20, true)], SLOT)
        .expect("valid");
    let mut env = Env::new(2, 64);
    // Past the end (19 + 2 > 20), overflowing, and read-only writes.
    v.submit(0, &Request::write(1, 19, 2, 0)).unwrap();
    v.submit(0, &Request::read(2, u64::MAX, 1, 0)).unwrap();
    v.submit(1, &Request::write(3, 0, 1, 0)).unwrap();
    v.submit(1, &Request::no_data(4, Op::Discard, 0, 1))
        .unwrap();
    v.submit(1, &Request::no_data(5, Op::WriteZeroes, 0, 1))
        .unwrap();
    // Data past the client's region; larger than a driver slot.
    v.submit(0, &Request::write(6, 0, 1, CLIENT_REGION as u64))
        .unwrap();
    v.submit(0, &Request::read(7, 0, 5, 0)).unwrap();
    // Garbage bytes with an id.
    let mut junk = [0xFFu8; 32];
    junk[4..8].copy_from_slice(&8u32.to_le_bytes());
    v.submit_bytes(0, &junk).unwrap();
    v.dispatch(&mut env);
    assert!(env.driver.held.is_empty(), "nothing reached the driver");
    let mut all: Vec<(u32, Status)> = drain_responses(&mut env, 0)
        .into_iter()
        .chain(drain_responses(&mut env, 1))
        .map(|r| (r.id, r.status))
        .collect();
    all.sort_by_key(|r| r.0);
    let want: Vec<(u32, Status)> = (1..=8).map(|i| (i, Status::IoErr)).collect();
    assert_eq!(all, want);
    // The last sector is fine and lands at first + 19.
    v.submit(0, &Request::write(9, 19, 1, 0)).unwrap();
    v.dispatch(&mut env);
    assert_eq!(env.driver.held.len(), 1);
    assert_eq!(env.driver.held[0].0.sector, 29);
    // Reads on the read-only client are fine.
    v.submit(1, &Request::read(10, 19, 1, 0)).unwrap();
    v.dispatch(&mut env);
    assert_eq!(env.driver.held[1].0.sector, 59);
}

#[test]
fn stale_and_duplicate_driver_responses_are_refused() {
    let mut v = Virtualiser::<Q, D>::new(&[policy(0, 64, false)], SLOT).expect("valid");
    let mut env = Env::new(1, 64);
    v.submit(0, &Request::write(1, 0, 1, 0)).unwrap();
    v.dispatch(&mut env);
    let old = env.driver.held[0].0;
    v.driver_restarted();
    env.driver.held.clear();
    v.dispatch(&mut env);
    let new = env.driver.held[0].0;
    assert_ne!(old.id, new.id);
    let ok = |id| Response {
        id,
        status: Status::Ok,
    };
    assert!(v.driver_response(&ok(old.id), &mut env).is_err());
    assert!(drain_responses(&mut env, 0).is_empty());
    assert!(v.driver_response(&ok(new.id), &mut env).is_ok());
    assert!(v.driver_response(&ok(new.id), &mut env).is_err());
    assert!(v.driver_response(&ok(0xdead_beef), &mut env).is_err());
    assert_eq!(drain_responses(&mut env, 0).len(), 1);
    assert_eq!(v.stale_responses, 3);
}

/// Guest A keeps its FIFO full; guest B's single request is sent to the
/// driver in the first dispatch round after B submits it, and completes
/// after at most `share(A) + 1` driver completions in FIFO order.
#[test]
fn flooding_client_cannot_starve_another() {
    let mut v = Virtualiser::<Q, D>::new(&[policy(0, 32, false), policy(32, 32, false)], SLOT)
        .expect("valid");
    let mut env = Env::new(2, 64);
    let mut next_a = 0u32;
    let mut refill_a = |v: &mut Virtualiser<Q, D>| {
        while v.submit(0, &Request::read(next_a, 0, 1, 0)).is_ok() {
            next_a += 1;
        }
    };
    refill_a(&mut v);
    v.dispatch(&mut env);
    assert_eq!(env.driver.held.len(), v.share(), "A holds only its share");
    for round in 0..50 {
        refill_a(&mut v);
        if round == 10 {
            v.submit(1, &Request::read(777, 3, 1, 0)).unwrap();
            assert!(v.dispatch_round(&mut env));
            assert!(
                env.driver.held.iter().any(|(r, _)| r.sector == 35),
                "B's request reached the driver in one round"
            );
        }
        // The driver completes in arrival order, one per round.
        if !env.driver.held.is_empty() {
            env.complete(&mut v, 0, true);
        }
        v.dispatch_round(&mut env);
        if round >= 10 && env.responses[1].iter().any(|r| r.id == 777) {
            assert!(round - 10 <= v.share(), "B completed within the bound");
            return;
        }
        env.responses[0].clear();
    }
    panic!("B's request never completed");
}

/// Guest 0 is killed with requests queued and at the driver: the driver
/// finishes what it holds, guest 0's new incarnation gets no stale
/// responses, guest 1 is unaffected and the slots come back.
#[test]
fn a_client_killed_mid_request_leaves_the_other_and_the_disk_consistent() {
    let mut v = Virtualiser::<Q, D>::new(&[policy(0, 20, false), policy(20, 20, false)], SLOT)
        .expect("valid");
    let mut env = Env::new(2, 40);
    for i in 0..8u32 {
        env.client_out[0][i as usize * 512..][..4].copy_from_slice(&(100 + i).to_le_bytes());
        v.submit(0, &Request::write(i, u64::from(i), 1, u64::from(i) * 512))
            .unwrap();
    }
    v.submit(1, &Request::read(50, 0, 1, 0)).unwrap();
    v.dispatch(&mut env);
    let held_for_0 = env
        .driver
        .held
        .iter()
        .filter(|(r, _)| r.sector < 20)
        .count();
    assert_eq!(held_for_0, v.share());
    v.client_restarted(0);
    while !env.driver.held.is_empty() {
        env.complete(&mut v, 0, true);
        v.dispatch(&mut env);
    }
    assert!(
        drain_responses(&mut env, 0).is_empty(),
        "no stale responses"
    );
    assert_eq!(drain_responses(&mut env, 1).len(), 1);
    assert_eq!(v.outstanding(), 0);
    // Each write the driver held landed whole; the dropped ones not at all.
    for s in 0..8u64 {
        let t = env.driver.cache_view(s);
        assert!(t == 0 || t == 100 + s as u32);
    }
    // The new incarnation has every slot of its share again.
    for i in 0..4u32 {
        v.submit(0, &Request::read(200 + i, 0, 1, 0)).unwrap();
    }
    v.dispatch(&mut env);
    assert_eq!(env.driver.held.len(), v.share());
}

#[test]
fn token_bucket_limits_requests_per_period() {
    let limited = ClientPolicy {
        budget: Budget {
            period_us: 1000,
            requests: 2,
            bytes: 0,
        },
        ..policy(0, 32, false)
    };
    let mut v = Virtualiser::<Q, D>::new(&[limited, policy(32, 32, false)], SLOT).unwrap();
    let mut env = Env::new(2, 64);
    for i in 0..6 {
        v.submit(0, &Request::read(i, 0, 1, 0)).unwrap();
    }
    v.dispatch(&mut env);
    assert_eq!(env.driver.held.len(), 2);
    while !env.driver.held.is_empty() {
        env.complete(&mut v, 0, true);
    }
    v.dispatch(&mut env);
    assert_eq!(env.driver.held.len(), 0, "no tokens before the period ends");
    v.tick(1000);
    v.dispatch(&mut env);
    assert_eq!(env.driver.held.len(), 2);
}

#[derive(Debug, Clone)]
enum Action {
    Write {
        client: usize,
        sector: u64,
        count: u32,
        fua: bool,
    },
    Read {
        client: usize,
        sector: u64,
    },
    Flush {
        client: usize,
    },
    Complete {
        pick: usize,
    },
    CompleteThenCrash {
        pick: usize,
    },
    Crash,
    RingFull(bool),
    Dispatch,
    KillClient {
        client: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..2usize, 0..16u64, 1..4u32, any::<bool>()).prop_map(|(client, sector, count, fua)| Action::Write { client, sector, count, fua: fua && sector % 3 == 0 }),
        1 => (0..2usize, 0..16u64).prop_map(|(client, sector)| Action::Read { client, sector }),
        1 => (0..2usize).prop_map(|client| Action::Flush { client }),
        4 => any::<usize>().prop_map(|pick| Action::Complete { pick }),
        1 => any::<usize>().prop_map(|pick| Action::CompleteThenCrash { pick }),
        1 => Just(Action::Crash),
        1 => any::<bool>().prop_map(Action::RingFull),
        2 => Just(Action::Dispatch),
        1 => (0..2usize).prop_map(|client| Action::KillClient { client }),
    ]
}

#[derive(Clone, Copy)]
enum Kind {
    Write { tag: u32 },
    Read { sector: u64 },
    Flush,
}

#[derive(Default)]
struct Guest {
    inflight: HashMap<u32, (Kind, u64, u32, usize)>,
    /// Per absolute sector: tags in issue order (one write in flight at most).
    history: HashMap<u64, Vec<u32>>,
    /// Per absolute sector: latest acknowledged tag.
    acked: HashMap<u64, u32>,
    /// Per flush id: the acked tags when it was submitted.
    flush_snap: HashMap<u32, Vec<(u64, u32)>>,
    /// Tags that must be durable (covered by an acked flush, or FUA).
    must_be_durable: Vec<(u64, u32)>,
    slot_busy: [bool; Q],
    /// Writes in flight when the guest was killed: (sector, tag).
    maybe: Vec<(u64, u32)>,
}

fn check_durable(env: &Env, g: &[Guest; 2]) -> Result<(), TestCaseError> {
    for guest in g {
        for &(s, tag) in &guest.must_be_durable {
            let d = env.driver.durable[s as usize];
            let h = &guest.history[&s];
            let want = h.iter().position(|&t| t == tag).expect("tag issued");
            let have = h.iter().position(|&t| t == d);
            prop_assert!(
                have.is_some_and(|i| i >= want),
                "sector {s}: durable {d} but {tag} was flushed"
            );
        }
    }
    Ok(())
}

fn collect(env: &mut Env, g: &mut [Guest; 2], first: [u64; 2]) -> Result<(), TestCaseError> {
    for c in 0..2 {
        for rsp in drain_responses(env, c) {
            let Some((kind, sector, count, slot)) = g[c].inflight.remove(&rsp.id) else {
                return Err(TestCaseError::fail(format!(
                    "response for unknown id {}",
                    rsp.id
                )));
            };
            g[c].slot_busy[slot] = false;
            prop_assert_eq!(rsp.status, Status::Ok);
            match kind {
                Kind::Write { tag } => {
                    for s in 0..u64::from(count) {
                        let abs = first[c] + sector + s;
                        // Never acknowledged before the driver did.
                        prop_assert_eq!(env.driver.cache_view(abs), tag);
                        g[c].acked.insert(abs, tag);
                    }
                }
                Kind::Read { sector } => {
                    let abs = first[c] + sector;
                    let at = slot * SLOT as usize;
                    let got = u32::from_le_bytes(env.client_in[c][at..at + 4].try_into().unwrap());
                    let acked = g[c].acked.get(&abs).copied().unwrap_or(0);
                    // Or a killed incarnation's write that landed after it.
                    let h = g[c].history.get(&abs).cloned().unwrap_or_default();
                    let pos = |x: u32| h.iter().position(|&y| y == x);
                    let landed = g[c].maybe.contains(&(abs, got)) && pos(got) > pos(acked);
                    prop_assert!(
                        got == acked || landed,
                        "read {} but acknowledged {}",
                        got,
                        acked
                    );
                }
                Kind::Flush => {
                    let snap = g[c].flush_snap.remove(&rsp.id).unwrap_or_default();
                    g[c].must_be_durable.extend(snap);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_acknowledged_write_is_lost_or_duplicated(actions in proptest::collection::vec(action(), 1..200)) {
        let first = [0u64, 20];
        let mut v = Virtualiser::<Q, D>::new(&[policy(0, 20, false), policy(20, 20, false)], SLOT).unwrap();
        let mut env = Env::new(2, 40);
        env.resp_cap = 3;
        let mut g: [Guest; 2] = Default::default();
        let mut next_id = 1u32;
        let mut next_tag = 1u32;
        for a in actions {
            match a {
                Action::Write { client, sector, count, fua } => {
                    let sector = sector.min(20 - u64::from(count));
                    let abs = first[client] + sector;
                    // A well-behaved guest: no write to a sector with a read or write in flight.
                    let busy = g[client].inflight.values().any(|(k, s, n, _)| !matches!(k, Kind::Flush) && *s < sector + u64::from(count) && sector < *s + u64::from(*n));
                    let Some(slot) = g[client].slot_busy.iter().position(|b| !b) else { continue };
                    if busy { continue; }
                    let tag = next_tag;
                    next_tag += 1;
                    for s in 0..count as usize {
                        let at = slot * SLOT as usize + s * 512;
                        env.client_out[client][at..at + 4].copy_from_slice(&tag.to_le_bytes());
                        g[client].history.entry(abs + s as u64).or_default().push(tag);
                    }
                    let mut r = Request::write(next_id, sector, count, (slot * SLOT as usize) as u64);
                    if fua { r.flags = FLAG_FUA; }
                    if v.submit(client, &r).is_ok() {
                        g[client].slot_busy[slot] = true;
                        g[client].inflight.insert(next_id, (Kind::Write { tag }, sector, count, slot));
                        next_id += 1;
                    } else {
                        for s in 0..u64::from(count) { g[client].history.get_mut(&(abs + s)).unwrap().pop(); }
                    }
                }
                Action::Read { client, sector } => {
                    let writing = g[client].inflight.values().any(|(k, s, n, _)| matches!(k, Kind::Write { .. }) && *s <= sector && sector < *s + u64::from(*n));
                    let Some(slot) = g[client].slot_busy.iter().position(|b| !b) else { continue };
                    if writing { continue; }
                    if v.submit(client, &Request::read(next_id, sector, 1, (slot * SLOT as usize) as u64)).is_ok() {
                        g[client].slot_busy[slot] = true;
                        g[client].inflight.insert(next_id, (Kind::Read { sector }, sector, 1, slot));
                        next_id += 1;
                    }
                }
                Action::Flush { client } => {
                    let Some(slot) = g[client].slot_busy.iter().position(|b| !b) else { continue };
                    if v.submit(client, &Request::no_data(next_id, Op::Flush, 0, 0)).is_ok() {
                        g[client].slot_busy[slot] = true;
                        let snap = g[client].acked.iter().map(|(&s, &t)| (s, t)).collect();
                        g[client].flush_snap.insert(next_id, snap);
                        g[client].inflight.insert(next_id, (Kind::Flush, 0, 0, slot));
                        next_id += 1;
                    }
                }
                Action::Complete { pick } => {
                    if !env.driver.held.is_empty() {
                        let k = pick % env.driver.held.len();
                        env.complete(&mut v, k, true);
                    }
                }
                Action::CompleteThenCrash { pick } => {
                    if !env.driver.held.is_empty() {
                        let k = pick % env.driver.held.len();
                        env.complete(&mut v, k, false);
                    }
                    env.driver.held.clear();
                    v.driver_restarted();
                }
                Action::Crash => {
                    env.driver.held.clear();
                    v.driver_restarted();
                }
                Action::RingFull(full) => env.driver_ring_full = full,
                Action::Dispatch => v.dispatch(&mut env),
                Action::KillClient { client } => {
                    // The guest forgets what it had in flight; what it had
                    // acknowledged (and flushed) must still hold.
                    v.client_restarted(client);
                    let guest = &mut g[client];
                    for (_, (kind, sector, count, _)) in guest.inflight.drain() {
                        if let Kind::Write { tag } = kind {
                            // The write may or may not land: both are allowed.
                            for s in 0..u64::from(count) {
                                let abs = first[client] + sector + s;
                                guest.maybe.push((abs, tag));
                            }
                        }
                    }
                    guest.slot_busy = [false; Q];
                    guest.flush_snap.clear();
                }
            }
            collect(&mut env, &mut g, first)?;
            check_durable(&env, &g)?;
        }
        // Quiesce: everything outstanding completes exactly once.
        env.driver_ring_full = false;
        for _ in 0..1000 {
            v.dispatch(&mut env);
            if env.driver.held.is_empty() && g.iter().all(|x| x.inflight.is_empty()) { break; }
            if !env.driver.held.is_empty() { env.complete(&mut v, 0, true); }
            collect(&mut env, &mut g, first)?;
        }
        collect(&mut env, &mut g, first)?;
        prop_assert!(g.iter().all(|x| x.inflight.is_empty()), "every request answered");
        // No acknowledged write lost, none replaced by an older one.
        for guest in &g {
            for (&s, &t) in &guest.acked {
                let have = env.driver.cache_view(s);
                // A killed incarnation's write to the sector may have landed
                // only if it was issued after the last acknowledged one.
                let h = &guest.history[&s];
                let pos = |x: u32| h.iter().position(|&y| y == x);
                let ok = have == t
                    || (guest.maybe.contains(&(s, have)) && pos(have) > pos(t));
                prop_assert!(ok, "sector {}: {} but acknowledged {}", s, have, t);
            }
        }
        // Power cut: only durable state remains; flushed/FUA writes are there.
        check_durable(&env, &g)?;
    }
}
