//! The `blk_virt` PD's event handling, independent of the backend: the
//! channel/region/config contract is in the crate documentation.

use bulkhead_blk_protocol::{Request, Response, WireRequest, WireResponse};
use bulkhead_ring::{Armed, RingError};
use bulkhead_runtime::{debug_println, Channel, ChannelSet};
use bulkhead_virt_blk::config::{Budget, MAX_CLIENTS};
use bulkhead_virt_blk::table::PartitionTable;
use bulkhead_virt_blk::virt::{ClientPolicy, ClientStats, Hops, SubmitError, Virtualiser};

use crate::config::{Client, VirtConfig};
use crate::hop::{copy, HopError, HopRegions, Info, Lower, Upper, DRIVER_SLOTS, SLOT_BYTES};
use crate::table::{Step, TableLoader};

/// Requests accepted per client ahead of dispatch.
pub const CLIENT_QUEUE: usize = 16;

type Virt = Virtualiser<CLIENT_QUEUE, DRIVER_SLOTS>;

/// Why `blk_virt` cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// No configuration region, or one without the two sections.
    Config,
    /// The `drv` hop is not mapped or its rings refused.
    Driver(HopError),
    /// The `drv` hop's data regions are smaller than the slots need.
    DataRegion,
}

// No heap in a PD: the phases are held inline, the PD's state is built once.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// Waiting for the driver's info block (the disk size).
    NoDisk,
    /// Reading the partition table.
    Loading(TableLoader),
    /// Serving the clients.
    Serving(Virt),
    /// The table could not be read: every request fails.
    Failed,
}

/// The PD's state.
pub struct BlkVirt {
    cfg: VirtConfig,
    driver: Upper,
    driver_channel: Channel,
    clients: [Option<Lower>; MAX_CLIENTS],
    /// A request popped from a client ring its FIFO could not take yet.
    held: [Option<WireRequest>; MAX_CLIENTS],
    phase: Phase,
    /// The driver epoch last seen (0: none yet).
    driver_epoch: u32,
    /// Rings pushed to since the last notification.
    driver_dirty: bool,
    client_dirty: [bool; MAX_CLIENTS],
    /// Info published to the client and not yet signalled.
    client_hello: [bool; MAX_CLIENTS],
    /// The runtime has a clock: budgets are enforced.
    clock: bool,
    /// Counters for the log.
    pub stale: u32,
}

/// The virtualiser's [`Hops`] over the rings and regions.
struct RingHops<'a> {
    driver: &'a mut Upper,
    clients: &'a mut [Option<Lower>; MAX_CLIENTS],
    driver_dirty: &'a mut bool,
    client_dirty: &'a mut [bool; MAX_CLIENTS],
}

impl Hops for RingHops<'_> {
    fn to_driver(&mut self, req: &Request) -> bool {
        match self.driver.tx.push(&WireRequest::from(req)) {
            Ok(()) => {
                *self.driver_dirty = true;
                true
            }
            Err(_) => false,
        }
    }

    fn to_client(&mut self, client: usize, rsp: &Response) -> bool {
        let Some(Some(c)) = self.clients.get_mut(client) else {
            // No ring to that client: nobody can be told; drop it.
            return true;
        };
        match c.tx.push(&WireResponse::from(rsp)) {
            Ok(()) => {
                self.client_dirty[client] = true;
                true
            }
            Err(RingError::Full) => false,
            Err(_) => {
                // A corrupt ring (the VMM is faulty): stop serving it.
                self.clients[client] = None;
                true
            }
        }
    }

    fn client_to_driver(
        &mut self,
        client: usize,
        client_off: u64,
        driver_off: u64,
        len: u32,
    ) -> bool {
        let Some(Some(c)) = self.clients.get(client) else {
            return false;
        };
        copy(
            &c.regions.out,
            client_off,
            &self.driver.regions.out,
            driver_off,
            len,
        )
    }

    fn driver_to_client(
        &mut self,
        client: usize,
        driver_off: u64,
        client_off: u64,
        len: u32,
    ) -> bool {
        let Some(Some(c)) = self.clients.get(client) else {
            return false;
        };
        copy(
            &self.driver.regions.inp,
            driver_off,
            &c.regions.inp,
            client_off,
            len,
        )
    }
}

/// The client's budget as the virtualiser takes it: unlimited without a
/// clock (a bucket that could never refill would stop the client for good).
fn budget(c: &Client, clock: bool) -> Budget {
    let p = &c.policy;
    if !clock || p.period_us == 0 || (p.ops == 0 && p.bytes == 0) {
        return Budget::UNLIMITED;
    }
    Budget {
        period_us: p.period_us,
        requests: p.ops,
        bytes: p.bytes,
    }
}

/// `policy`'s extent must be exactly a partition of `table`.
fn client_policy(c: &Client, table: &PartitionTable, clock: bool) -> Option<ClientPolicy> {
    let (first, len) = (c.policy.start / 512, c.policy.size / 512);
    table
        .partitions()
        .iter()
        .find(|p| p.first == first && p.len == len)?;
    Some(ClientPolicy {
        first,
        len,
        read_only: c.policy.read_only,
        budget: budget(c, clock),
    })
}

impl BlkVirt {
    /// Attaches to the hops the configuration names.
    ///
    /// # Errors
    /// [`StartError`]; a client hop that cannot be attached is logged and
    /// left out (its VMM never sees a device), the others are served.
    pub fn start(cfg: VirtConfig) -> Result<BlkVirt, StartError> {
        let regions = HopRegions::at(cfg.driver_hop).map_err(StartError::Driver)?;
        let need = DRIVER_SLOTS * SLOT_BYTES as usize;
        if regions.out.size() < need || regions.inp.size() < need {
            return Err(StartError::DataRegion);
        }
        let driver = Upper::attach(regions).map_err(StartError::Driver)?;
        let mut clients: [Option<Lower>; MAX_CLIENTS] = Default::default();
        for (i, c) in cfg.clients().iter().enumerate() {
            match HopRegions::at(c.hop).and_then(Lower::attach) {
                Ok(l) => clients[i] = Some(l),
                Err(e) => debug_println!("blk_virt: guest {} hop: {:?}; not served", c.guest, e),
            }
        }
        let clock = bulkhead_runtime::time::now_us().is_some();
        for c in cfg.clients() {
            let b = budget(c, clock);
            if b != Budget::UNLIMITED {
                debug_println!(
                    "blk_virt: guest {} budget: {} ops, {} bytes per {} us",
                    c.guest,
                    b.requests,
                    b.bytes,
                    b.period_us
                );
            } else if c.policy.ops != 0 || c.policy.bytes != 0 {
                debug_println!(
                    "blk_virt: guest {} budget configured but not enforced (no clock)",
                    c.guest
                );
            }
        }
        Ok(BlkVirt {
            driver_channel: Channel::new(cfg.driver_channel),
            cfg,
            driver,
            clients,
            held: [None; MAX_CLIENTS],
            phase: Phase::NoDisk,
            driver_epoch: 0,
            driver_dirty: false,
            client_dirty: [false; MAX_CLIENTS],
            client_hello: [false; MAX_CLIENTS],
            clock,
            stale: 0,
        })
    }

    /// One pass over everything; call on every notification (and once
    /// after [`BlkVirt::start`], which arms the rings).
    ///
    /// Budgets refill from the runtime clock at every pass, so a throttled
    /// client's queued requests go out at the first event after its refill
    /// — never dropped. What guarantees such an event when nothing else
    /// happens is a periodic interrupt on any channel that is neither the
    /// driver's nor a client's (compose binds a host timer on the host
    /// board; on seL4 a timer driver PD would notify it): it is acknowledged
    /// here and otherwise only means "look at the clock".
    pub fn run(&mut self, channels: ChannelSet) {
        self.ack_ticks(channels);
        self.drain_driver();
        self.check_driver_epoch();
        self.advance_loading();
        let now = self.now_us();
        if let (Phase::Serving(v), Some(now)) = (&mut self.phase, now) {
            v.tick(now);
        }
        self.serve_clients();
        self.flush_notifications();
    }

    fn now_us(&self) -> Option<u64> {
        if self.clock {
            bulkhead_runtime::time::now_us()
        } else {
            None
        }
    }

    /// Acknowledges the timer IRQ(s) among `channels` so they fire again.
    fn ack_ticks(&self, channels: ChannelSet) {
        for ch in channels.iter() {
            let id = ch.id();
            let known =
                id == self.cfg.driver_channel || self.cfg.clients().iter().any(|c| c.channel == id);
            if !known {
                // A channel that is not an IRQ refuses the ack (NotAnIrq):
                // nothing to do for it either way.
                let _ = ch.irq_ack();
            }
        }
    }

    /// The virtualiser's counters for client `i` (None before serving).
    pub fn stats(&self, i: usize) -> Option<ClientStats> {
        match &self.phase {
            Phase::Serving(v) => v.stats(i),
            _ => None,
        }
    }

    fn drain_driver(&mut self) {
        loop {
            let rsp = match self.driver.rx.pop() {
                Ok(Some(r)) => r,
                Ok(None) => match self.driver.rx.arm_signal() {
                    Ok(Armed::Pending) => continue,
                    Ok(Armed::MaySleep) => return,
                    Err(_) => return self.driver_ring_corrupt(),
                },
                Err(_) => return self.driver_ring_corrupt(),
            };
            let Ok(rsp) = rsp.decode() else {
                self.stale = self.stale.saturating_add(1);
                continue;
            };
            let Self {
                phase,
                driver,
                clients,
                driver_dirty,
                client_dirty,
                ..
            } = self;
            let known = match phase {
                Phase::Loading(l) => l.response(&rsp),
                Phase::Serving(v) => {
                    let mut hops = RingHops {
                        driver,
                        clients,
                        driver_dirty,
                        client_dirty,
                    };
                    v.driver_response(&rsp, &mut hops).is_ok()
                }
                Phase::NoDisk | Phase::Failed => false,
            };
            if !known {
                self.stale = self.stale.saturating_add(1);
            }
        }
    }

    fn driver_ring_corrupt(&mut self) {
        // Nothing can be served without the driver; the driver's restart
        // re-attaches on its side, not ours, so this is final.
        debug_println!("blk_virt: driver response ring corrupt; stopping service");
        self.phase = Phase::Failed;
    }

    fn check_driver_epoch(&mut self) {
        let Some(info) = self.driver.info() else {
            return;
        };
        if info.epoch == self.driver_epoch {
            return;
        }
        let first = self.driver_epoch == 0;
        self.driver_epoch = info.epoch;
        match &mut self.phase {
            Phase::NoDisk => self.phase = Phase::Loading(TableLoader::new(info.sectors)),
            Phase::Loading(l) if !first => l.driver_restarted(),
            Phase::Serving(v) if !first => {
                let n = v.outstanding();
                v.driver_restarted();
                debug_println!(
                    "blk_virt: driver restarted (epoch {}); resending {} request(s)",
                    info.epoch,
                    n
                );
            }
            _ => {}
        }
    }

    fn advance_loading(&mut self) {
        let Phase::Loading(l) = &mut self.phase else {
            return;
        };
        let table = match l.step(&self.driver.regions.inp) {
            Step::Wait | Step::Fetch { fresh: false, .. } => return,
            Step::Fetch { req, fresh: true } => {
                // Full ring: the loader asks again on the next pass.
                if self.driver.tx.push(&WireRequest::from(&req)).is_ok() {
                    self.driver_dirty = true;
                } else {
                    l.driver_restarted();
                }
                return;
            }
            Step::Done(t) => t,
        };
        let table = match table {
            Ok(t) => t,
            Err(e) => {
                debug_println!(
                    "blk_virt: no usable partition table ({:?}); every request fails",
                    e
                );
                self.phase = Phase::Failed;
                self.publish_clients(&[ClientPolicy::NONE; MAX_CLIENTS]);
                return;
            }
        };
        let mut policies = [ClientPolicy::NONE; MAX_CLIENTS];
        for (i, c) in self.cfg.clients().iter().enumerate() {
            match client_policy(c, &table, self.clock) {
                Some(p) => policies[i] = p,
                None => debug_println!(
                    "blk_virt: guest {}: bytes {:#x}+{:#x} are not a partition on the disk; every request fails",
                    c.guest,
                    c.policy.start,
                    c.policy.size
                ),
            }
        }
        let n = self.cfg.clients().len();
        match Virt::new(&policies[..n], SLOT_BYTES) {
            Ok(v) => {
                debug_println!(
                    "blk_virt: {} partition(s) on a {}-sector disk; serving {} guest(s)",
                    table.partitions().len(),
                    self.driver.info().map_or(0, |i| i.sectors),
                    n
                );
                self.phase = Phase::Serving(v);
                self.publish_clients(&policies);
            }
            Err(e) => {
                debug_println!("blk_virt: cannot serve: {:?}", e);
                self.phase = Phase::Failed;
            }
        }
    }

    fn publish_clients(&mut self, policies: &[ClientPolicy; MAX_CLIENTS]) {
        for (i, c) in self.clients.iter().enumerate() {
            let Some(c) = c else { continue };
            let p = policies[i];
            let info = Info {
                epoch: 1,
                sectors: p.len,
                read_only: p.read_only,
            };
            if c.publish(&info).is_err() {
                debug_println!("blk_virt: client {} info not published", i);
            }
            // The VMM builds its device when it sees the info.
            self.client_hello[i] = true;
        }
    }

    fn serve_clients(&mut self) {
        let Self {
            phase,
            driver,
            clients,
            held,
            driver_dirty,
            client_dirty,
            ..
        } = self;
        let Phase::Serving(v) = phase else {
            return;
        };
        for i in 0..MAX_CLIENTS {
            loop {
                let w = match held[i].take() {
                    Some(w) => w,
                    None => {
                        let Some(c) = clients[i].as_mut() else { break };
                        match c.rx.pop() {
                            Ok(Some(w)) => w,
                            Ok(None) => match c.rx.arm_signal() {
                                Ok(Armed::Pending) => continue,
                                Ok(Armed::MaySleep) => break,
                                Err(_) => {
                                    clients[i] = None;
                                    break;
                                }
                            },
                            Err(_) => {
                                // A corrupt ring: the VMM is faulty.
                                clients[i] = None;
                                break;
                            }
                        }
                    }
                };
                match v.submit_bytes(i, &w.0) {
                    Ok(()) => {}
                    Err(SubmitError::Busy) => {
                        held[i] = Some(w);
                        break;
                    }
                    Err(SubmitError::NoClient) => break,
                }
            }
        }
        let mut hops = RingHops {
            driver,
            clients,
            driver_dirty,
            client_dirty,
        };
        v.dispatch(&mut hops);
    }

    fn flush_notifications(&mut self) {
        if core::mem::take(&mut self.driver_dirty) && self.driver.tx.notify_needed() {
            let _ = self.driver_channel.notify();
        }
        for i in 0..MAX_CLIENTS {
            let dirty = core::mem::take(&mut self.client_dirty[i]);
            let hello = core::mem::take(&mut self.client_hello[i]);
            let Some(c) = self.clients[i].as_mut() else {
                continue;
            };
            // `notify_needed` only after a push (it clears the request).
            if hello || (dirty && c.tx.notify_needed()) {
                if let Some(cl) = self.cfg.clients().get(i) {
                    let _ = Channel::new(cl.channel).notify();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_enforced_only_with_a_clock_and_a_limit() {
        let mut c = Client::default();
        c.policy.period_us = 10_000;
        c.policy.ops = 5;
        c.policy.bytes = 1 << 20;
        let b = budget(&c, true);
        assert_eq!((b.period_us, b.requests, b.bytes), (10_000, 5, 1 << 20));
        // No clock: a bucket could never refill.
        assert_eq!(budget(&c, false), Budget::UNLIMITED);
        // No limit, or no period: nothing to enforce.
        let (mut open, mut no_period) = (c, c);
        open.policy.ops = 0;
        open.policy.bytes = 0;
        no_period.policy.period_us = 0;
        assert_eq!(budget(&open, true), Budget::UNLIMITED);
        assert_eq!(budget(&no_period, true), Budget::UNLIMITED);
        // One limit alone is kept.
        let mut ops_only = c;
        ops_only.policy.bytes = 0;
        assert_eq!(budget(&ops_only, true).requests, 5);
    }

    #[test]
    fn the_state_fits_a_small_pd_stack() {
        // Handler state lives on the PD's stack (no heap): keep it well
        // below a 64 KiB seL4 PD stack.
        let n = core::mem::size_of::<BlkVirt>();
        extern crate std;
        std::eprintln!("BlkVirt: {n} bytes");
        assert!(n < 16 * 1024, "BlkVirt is {n} bytes");
    }
}
