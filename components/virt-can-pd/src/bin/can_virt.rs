//! `can_virt`: the CAN virtualiser PD. Reads its hops and per-guest policy
//! from its configuration (`bulkhead compose`), attaches the rings at the
//! vaddrs given there, and runs [`CanVirt::service`] on every wake-up.
#![no_std]
#![no_main]

use bulkhead_can_protocol::{QUEUE_REGION_BYTES, RESP_OFFSET, RING_CAPACITY};
use bulkhead_ring::{Consumer, Pod, Producer, Region as RingRegion};
use bulkhead_runtime::{debug_println, Channel, ChannelSet, Handler};
use bulkhead_virt_can::Policy;
use bulkhead_virt_can_pd::{clock, CanVirt, Config, DriverLink, GuestHop, GUESTS};

/// The ring region at `vaddr`: the queue region this PD maps there,
/// checked with the runtime (mapped, writable, large enough). Both
/// backends know every map of a composed system (on seL4 from compose's
/// MAPS section), so a vaddr nothing is mapped at is refused.
fn region(vaddr: u64) -> Option<RingRegion<'static>> {
    let r = match bulkhead_runtime::Region::at(vaddr) {
        Ok(r) if r.perms().write && r.size() >= QUEUE_REGION_BYTES => r,
        Ok(_) => {
            debug_println!("can_virt: region at {vaddr:#x} is not a writable queue region");
            return None;
        }
        Err(e) => {
            debug_println!("can_virt: no region at {vaddr:#x}: {e}");
            return None;
        }
    };
    // SAFETY: the runtime maps this read-write region at `r.vaddr()` with
    // at least QUEUE_REGION_BYTES (checked) for the PD's life; this PD
    // touches it only through the ring (atomic word accesses).
    unsafe { RingRegion::from_raw(r.vaddr() as *mut u8, QUEUE_REGION_BYTES) }.ok()
}

fn producer<T: Pod>(vaddr: u64) -> Option<Producer<'static, T>> {
    Producer::attach(region(vaddr)?, RING_CAPACITY).ok()
}

fn consumer<T: Pod>(vaddr: u64) -> Option<Consumer<'static, T>> {
    Consumer::attach(region(vaddr)?, RING_CAPACITY).ok()
}

fn resp(hop: u64) -> u64 {
    hop + RESP_OFFSET as u64
}

struct Pd {
    core: CanVirt<'static>,
    driver: Channel,
    channels: [u8; GUESTS],
    reported: [bool; GUESTS + 1],
    /// Whitelist drops last logged, per guest.
    logged_drops: [u64; GUESTS],
    /// Bus-offs last logged, per guest.
    logged_bus_offs: [u64; GUESTS],
}

impl Pd {
    fn run(&mut self) {
        let s = self.core.service(clock::now_ns());
        if s.driver {
            let _ = self.driver.notify();
        }
        for (g, ch) in self.channels.iter().enumerate() {
            if s.guests & (1 << g) != 0 {
                let _ = Channel::new(*ch).notify();
            }
        }
        self.report();
    }

    /// Logs problems once and whitelist drops at powers of two (a flood
    /// cannot flood the log).
    fn report(&mut self) {
        if let Some(e) = self.core.link.broken {
            if !self.reported[GUESTS] {
                self.reported[GUESTS] = true;
                debug_println!("can_virt: driver hop corrupt ({e:?}); no longer read");
            }
        }
        for g in 0..GUESTS {
            if let Some(e) = self.core.hop(g).and_then(|h| h.broken) {
                if !self.reported[g] {
                    self.reported[g] = true;
                    debug_println!("can_virt: guest {g}'s hop corrupt ({e:?}); cut off");
                }
            }
            let Some(c) = self.core.counters(g) else {
                continue;
            };
            if c.bus_offs != self.logged_bus_offs[g] {
                self.logged_bus_offs[g] = c.bus_offs;
                debug_println!(
                    "can_virt: guest {g} (channel {}) stopped for a bus-off its traffic caused ({} TEC rise(s) charged); held until released",
                    self.channels[g],
                    c.errors
                );
            }
            let n = c.dropped_whitelist;
            if n != self.logged_drops[g] && n.is_power_of_two() {
                self.logged_drops[g] = n;
                debug_println!(
                    "can_virt: guest {g} (channel {}): {n} frame(s) dropped by its TX whitelist; sent {}, over budget {}",
                    self.channels[g],
                    c.sent,
                    c.dropped_budget
                );
            }
        }
    }
}

fn stop(why: &dyn core::fmt::Display) -> ! {
    debug_println!("can_virt: {why}; not starting");
    bulkhead_runtime::halt(1)
}

impl Handler for Pd {
    fn init() -> Self {
        let cfg = match bulkhead_runtime::config() {
            Ok(Some(c)) => c,
            Ok(None) => stop(&"no configuration region"),
            Err(e) => stop(&e),
        };
        let cfg = Config::from_region(&cfg).unwrap_or_else(|e| stop(&e));
        let link = DriverLink::new(producer(cfg.driver_hop), consumer(resp(cfg.driver_hop)));
        let mut policies = [Policy::default(); GUESTS];
        let mut hops: [Option<GuestHop<'static>>; GUESTS] = [const { None }; GUESTS];
        let mut channels = [0u8; GUESTS];
        for (g, c) in cfg.clients().iter().enumerate() {
            policies[g] = c.policy;
            channels[g] = c.channel;
            hops[g] = Some(GuestHop::new(consumer(c.hop), producer(resp(c.hop))));
        }
        debug_println!(
            "can_virt: {} guest(s), driver on channel {}",
            cfg.len,
            cfg.driver_channel
        );
        let mut me = Pd {
            core: CanVirt::new(&policies[..cfg.len], link, hops),
            driver: Channel::new(cfg.driver_channel),
            channels,
            reported: [false; GUESTS + 1],
            logged_drops: [0; GUESTS],
            logged_bus_offs: [0; GUESTS],
        };
        // Drain once: arms every consumer end so the peers signal.
        me.run();
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.run();
    }
}

bulkhead_runtime::protection_domain!(Pd);
