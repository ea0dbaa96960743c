//! `can_driver` on the host board: the CAN bus model (`drv-host-can-bus`)
//! run against wall time, with scripted ECUs on it, behind the driver hop
//! of `bulkhead_can_protocol::driver_hop`, and optionally bridged to a
//! SocketCAN interface.
//!
//! Bus time is `CLOCK_MONOTONIC` minus the moment the driver started, and
//! every timestamp it reports is `CLOCK_MONOTONIC` ns (so the other host
//! processes can compare). The PD has no timer: while the bus has events
//! coming it sleeps (`clock_nanosleep`) until the next one, at most
//! [`POLL_NS`] at a time so that frames the virtualiser hands over to an
//! idle bus wait at most that long; with nothing coming it returns to the
//! event loop and the virtualiser's notification wakes it. Frames are
//! handed to the model when the driver takes them from the ring: the time
//! the bus sees is the time the controller got them.
//!
//! Configuration: the hop from the PD's `DEVICE` section (`0x0003_8001`,
//! `tools/compose/src/sections.rs`); the bus and ECUs from the host
//! resource `can_script` ([`script`]); a SocketCAN bridge when the resource
//! `can0` is bound (`[[can]]` in the `.host.toml`).
#![cfg_attr(not(test), no_main)]
// Unit tests (`cargo test --bin can_driver`) build this without the PD
// entry point, so the event-loop side is unused there.
#![cfg_attr(test, allow(dead_code))]

mod arena;
mod bridge;
mod script;

use bulkhead_can_protocol::driver_hop::{encode_ready, encode_status};
use bulkhead_can_protocol::{
    drv_op, drv_status, WireFrame, EVENT_ID, QUEUE_REGION_BYTES, RESP_OFFSET, RING_CAPACITY,
};
use bulkhead_ring::{Armed, Consumer, Producer, Region as RingRegion, Request, Response};
use bulkhead_runtime::bulkhead_config::FieldReader;
use bulkhead_runtime::{debug_println, Channel, ChannelSet, Handler};
use drv_host_can_bus::bulkhead_can_frame::Frame;
use drv_host_can_bus::{CanBus, ErrorState, NodeConfig, NodeId, TxId, TxOutcome};

#[cfg(not(test))]
#[global_allocator]
static HEAP: arena::Arena = arena::Arena::new();

/// The DEVICE section of a CAN driver.
const DEVICE: u32 = 0x0003_8001;
/// Longest sleep while the bus is idle but has events coming.
const POLL_NS: u64 = 50_000;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

fn sleep_until(t: u64) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(t / 1_000_000_000).unwrap_or(0),
        tv_nsec: libc::c_long::try_from(t % 1_000_000_000).unwrap_or(0),
    };
    // SAFETY: plain syscall with a valid timespec; an interruption only
    // makes the sleep shorter.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            core::ptr::null_mut(),
        )
    };
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

struct Driver {
    bus: CanBus,
    me: NodeId,
    /// Receives everything (trace bus, bridge out).
    monitor: Option<NodeId>,
    ecus: Vec<NodeId>,
    /// Twin ECUs and the frame each offers against ours.
    twins: Vec<(NodeId, Frame)>,
    names: Vec<String>,
    /// CLOCK_MONOTONIC at bus time 0.
    t0: u64,
    slots: Vec<Option<(TxId, Frame)>>,
    req: Option<Consumer<'static, Request<WireFrame>>>,
    resp: Option<Producer<'static, Response<WireFrame>>>,
    virt: Channel,
    reported: (ErrorState, u16, u16),
    status_due: bool,
    notify: bool,
    trace_bus: bool,
    trace_tx: bool,
    bridge: Option<bridge::Bridge>,
    rx_dropped: u64,
}

/// The queue region this PD maps at `vaddr` (from its configuration),
/// checked with the runtime: mapped, writable, large enough.
fn ring(vaddr: u64) -> Option<RingRegion<'static>> {
    let r = bulkhead_runtime::Region::at(vaddr)
        .ok()
        .filter(|r| r.perms().write && r.size() >= QUEUE_REGION_BYTES)?;
    // SAFETY: the runtime mapped this read-write region at `r.vaddr()` for
    // the PD's life with at least QUEUE_REGION_BYTES (checked); it is used
    // only through the ring (atomic word accesses).
    unsafe { RingRegion::from_raw(r.vaddr() as *mut u8, QUEUE_REGION_BYTES) }.ok()
}

fn stop(why: &str) -> ! {
    debug_println!("can_driver: {why}; not starting");
    bulkhead_runtime::halt(1)
}

/// The script's text from the `can_script` resource, if bound.
fn read_script() -> Option<String> {
    let fd = bulkhead_runtime::host_resource("can_script").ok()?;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a local buffer of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else { break };
        if n == 0 || text.len() > 1 << 20 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&text).into_owned())
}

impl Driver {
    fn space(&mut self) -> u32 {
        self.resp.as_mut().and_then(|p| p.free().ok()).unwrap_or(0)
    }

    fn push(&mut self, id: u32, status: u32, payload: WireFrame) {
        let Some(p) = self.resp.as_mut() else { return };
        match p.push(&Response {
            id,
            status,
            payload,
        }) {
            Ok(()) => self.notify |= p.notify_needed(),
            Err(bulkhead_ring::RingError::Full) => {}
            Err(e) => {
                debug_println!("can_driver: response ring corrupt ({e:?}); no longer written");
                self.resp = None;
            }
        }
    }

    fn wall(&self, bus_ns: u64) -> u64 {
        self.t0.saturating_add(bus_ns)
    }

    /// Everything the bus produced since the last call.
    fn collect(&mut self) {
        while let Some(c) = self.bus.take_completion(self.me) {
            if c.outcome != TxOutcome::Sent {
                continue; // a cancel: ABORTED was answered at the time
            }
            let Some(slot) = self
                .slots
                .iter()
                .position(|s| s.is_some_and(|(t, _)| t == c.tx))
            else {
                continue;
            };
            self.slots[slot] = None;
            if self.trace_tx {
                debug_println!(
                    "tx {:#x} {} sub={} sof={} eof={}",
                    c.frame.id().raw(),
                    hex(c.frame.data()),
                    self.wall(c.submitted_ns),
                    self.wall(c.started_ns),
                    self.wall(c.done_ns)
                );
            }
            let w = WireFrame::from_frame(&c.frame, self.wall(c.done_ns));
            self.push(u32::try_from(slot).unwrap_or(0), drv_status::SENT, w);
        }
        let reserve = u32::try_from(self.slots.len() + 1).unwrap_or(u32::MAX);
        while let Some(r) = self.bus.receive(self.me) {
            if self.space() <= reserve {
                self.rx_dropped += 1;
                continue;
            }
            let w = WireFrame::from_frame(&r.frame, self.wall(r.timestamp_ns));
            self.push(EVENT_ID, drv_status::RX, w);
        }
        if let Some(m) = self.monitor {
            while let Some(r) = self.bus.receive(m) {
                if self.trace_bus {
                    let from = self.names.get(r.source.0).map_or("?", String::as_str);
                    debug_println!(
                        "bus t={} id={:#x} len={} data={} from={from}",
                        self.wall(r.timestamp_ns),
                        r.frame.id().raw(),
                        r.frame.len(),
                        hex(r.frame.data())
                    );
                }
                if let Some(b) = self.bridge.as_mut() {
                    b.send(&r.frame);
                }
            }
        }
        for &e in &self.ecus {
            while self.bus.receive(e).is_some() {}
        }
        for &(t, f) in &self.twins {
            while self.bus.receive(t).is_some() {}
            while self.bus.take_completion(t).is_some() {}
            // The twin keeps offering its frame while ours with the same id
            // waits, so the collision repeats until one side is bus-off.
            let ours = self.slots.iter().flatten().any(|(_, g)| g.id() == f.id());
            if ours && self.bus.tx_pending(t) == 0 {
                let _ = self.bus.submit(t, f);
            }
        }
        if let Ok(s) = self.bus.status(self.me) {
            let now = (s.state, s.tec, s.rec);
            if now != self.reported {
                if now.0 != self.reported.0 {
                    debug_println!(
                        "can_driver: controller {:?} at t={} (tec {}, rec {})",
                        now.0,
                        now_ns(),
                        now.1,
                        now.2
                    );
                }
                self.reported = now;
                self.status_due = true;
            }
        }
        if self.status_due && self.space() > 0 {
            self.status_due = false;
            let (state, tec, rec) = self.reported;
            let st = bulkhead_can_protocol::controller::ControllerStatus {
                state: match state {
                    ErrorState::Active => bulkhead_can_protocol::controller::BusState::Active,
                    ErrorState::Passive => bulkhead_can_protocol::controller::BusState::Passive,
                    ErrorState::BusOff => bulkhead_can_protocol::controller::BusState::BusOff,
                },
                tec,
                rec,
            };
            let w = WireFrame {
                timestamp: encode_status(st),
                ..WireFrame::default()
            };
            self.push(EVENT_ID, drv_status::STATUS, w);
        }
    }

    /// Takes the virtualiser's requests.
    fn requests(&mut self) {
        loop {
            let Some(c) = self.req.as_mut() else { return };
            let r = match c.pop() {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    debug_println!("can_driver: request ring corrupt ({e:?}); no longer read");
                    self.req = None;
                    return;
                }
            };
            let slot = usize::try_from(r.id).unwrap_or(usize::MAX);
            match r.op {
                drv_op::SUBMIT => {
                    let ok = match (r.payload.to_frame(), self.slots.get(slot)) {
                        (Ok(f), Some(None)) => match self.bus.submit(self.me, f) {
                            Ok(tx) => {
                                self.slots[slot] = Some((tx, f));
                                for &(n, t) in &self.twins {
                                    if t.id() == f.id() && self.bus.tx_pending(n) == 0 {
                                        let _ = self.bus.submit(n, t);
                                    }
                                }
                                true
                            }
                            Err(_) => false,
                        },
                        _ => false,
                    };
                    if !ok {
                        self.push(r.id, drv_status::FAILED, r.payload);
                    }
                }
                drv_op::ABORT => {
                    if let Some(Some((tx, f))) = self.slots.get(slot).copied() {
                        if self.bus.cancel(self.me, tx) {
                            self.slots[slot] = None;
                            let w = WireFrame::from_frame(&f, now_ns());
                            self.push(r.id, drv_status::ABORTED, w);
                        }
                    }
                }
                drv_op::RECOVER => {
                    let _ = self.bus.request_recovery(self.me);
                }
                _ => {}
            }
        }
    }

    /// Runs the bus up to now, event by event (a STATUS per event that
    /// changed a counter), answering as it goes.
    fn advance(&mut self) {
        let now = now_ns().saturating_sub(self.t0);
        while self.bus.next_event_time().is_some_and(|t| t <= now) {
            self.bus.step();
            self.collect();
        }
        self.bus.run_until(now);
        self.collect();
    }

    fn run(&mut self) {
        loop {
            self.advance();
            self.requests();
            if let Some(b) = self.bridge.as_mut() {
                for f in b.receive() {
                    let _ = self.bus.submit(b.node, f);
                }
            }
            self.advance();
            if core::mem::take(&mut self.notify) {
                let _ = self.virt.notify();
            }
            let now = now_ns().saturating_sub(self.t0);
            match self.bus.next_event_time() {
                Some(t) => sleep_until(self.wall(t.min(now + POLL_NS))),
                None if self.bridge.is_some() => sleep_until(self.wall(now + POLL_NS)),
                None => {
                    let Some(c) = self.req.as_mut() else { return };
                    match c.arm_signal() {
                        Ok(Armed::Pending) => {}
                        Ok(Armed::MaySleep) | Err(_) => return,
                    }
                }
            }
        }
    }
}

impl Handler for Driver {
    fn init() -> Self {
        let cfg = match bulkhead_runtime::config() {
            Ok(Some(c)) => c,
            _ => stop("no configuration region"),
        };
        let Some(sec) = cfg.section(DEVICE).filter(|s| s.version == 1) else {
            stop("no DEVICE section (0x0003_8001, version 1)")
        };
        let mut r = FieldReader::new(sec.payload());
        let (Ok(channel), Ok(_windows), Ok(hop)) = (r.u32(), r.u32(), r.u64()) else {
            stop("DEVICE section too short")
        };
        let script = match read_script().map(|t| script::parse(&t)) {
            None => script::parse("").unwrap_or_else(|e| stop(&e)),
            Some(Ok(s)) => s,
            Some(Err(e)) => stop(&e),
        };
        let mut bus = CanBus::new(script.bus);
        let fd = script.bus.fd;
        let me = bus.attach(NodeConfig::named("can_driver"));
        let mut names = vec!["can_driver".to_string()];
        let mut ecus = Vec::new();
        for e in &script.ecus {
            let node = match e.traffic {
                Some(t) => bus.attach_scripted(&e.name, &[t]),
                None => Ok(bus.attach(NodeConfig::named(&e.name))),
            };
            match node {
                Ok(n) => {
                    ecus.push(n);
                    names.push(e.name.clone());
                }
                Err(err) => stop(&format!("ECU {}: {err}", e.name)),
            }
        }
        let mut twins = Vec::new();
        for (name, f) in &script.twins {
            twins.push((bus.attach(NodeConfig::named(name)), *f));
            names.push(name.clone());
        }
        let mut bridge = bridge::Bridge::open(&mut bus);
        if bridge.is_some() {
            names.push("socketcan".into());
        }
        let monitor = (script.trace_bus || bridge.is_some()).then(|| {
            names.push("monitor".into());
            bus.attach(NodeConfig::named("monitor"))
        });
        if let Some(b) = bridge.as_mut() {
            b.monitor = monitor;
        }
        let mut me = Driver {
            bus,
            me,
            monitor,
            ecus,
            twins,
            names,
            t0: now_ns(),
            slots: vec![None; usize::try_from(script.slots).unwrap_or(1)],
            req: ring(hop).and_then(|r| Consumer::attach(r, RING_CAPACITY).ok()),
            resp: ring(hop + RESP_OFFSET as u64)
                .and_then(|r| Producer::attach(r, RING_CAPACITY).ok()),
            virt: Channel::new(u8::try_from(channel).unwrap_or(u8::MAX)),
            reported: (ErrorState::Active, 0, 0),
            status_due: false,
            notify: false,
            trace_bus: script.trace_bus,
            trace_tx: script.trace_tx,
            bridge,
            rx_dropped: 0,
        };
        if me.req.is_none() || me.resp.is_none() {
            debug_println!("can_driver: the driver hop's rings at {hop:#x} are not usable");
        }
        debug_println!(
            "can_driver: {} bit/s{}, {} TX buffer(s), {} ECU(s), SocketCAN bridge {}",
            1_000_000_000 / u64::from(me.bus.config().timing.nominal_ns.max(1)),
            if fd { " FD" } else { " classic" },
            me.slots.len(),
            me.ecus.len(),
            if me.bridge.is_some() { "on" } else { "off" }
        );
        let ready = WireFrame {
            timestamp: encode_ready(script.slots, fd),
            ..WireFrame::default()
        };
        me.push(EVENT_ID, drv_status::READY, ready);
        me.run();
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.run();
    }
}

#[cfg(not(test))]
bulkhead_runtime::protection_domain!(Driver);
