//! The whole CAN path in one process, in simulated bus time: test guests
//! with the guest-side driver → virtio-mmio registers and guest RAM → the
//! virtio-can device → the virtualiser → [`BusController`] → the bus.
//!
//! Guest RAM is one page-aligned host allocation shared by all guests of a
//! test (isolation between guests' memory is the VMM's business, not what
//! these tests check); the driver side writes it through raw pointers from
//! [`TestHal`], the device side copies through `GuestMemory`
//! (`bulkhead-virtio-testkit`: the RAM, the [`Vmm`] and the forwarding
//! transport).
#![allow(unsafe_code, clippy::unwrap_used, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::Rc;

use bulkhead_can_frame::Frame;
use bulkhead_can_protocol::WireFrame;
use bulkhead_config::{ConfigBuilder, ConfigRegion};
use bulkhead_ring::Pod;
use bulkhead_virt_can::{Admission, Arbitration, CanVirtConfig, Policy, Virtualiser};
use bulkhead_virtio_can_driver::{TxDone, VirtioCanDriver, Wanted};
use bulkhead_virtio_testkit::{alloc, install, ram, Ram, TrapTransport};
use bulkhead_vmm_devices::can::{CanBackend, TxAdmit, VirtioCan, RX_QUEUE, TX_QUEUE};
use drv_host_can_bus::CanBus;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use crate::adapter::BusController;

/// Guests per virtualiser in these tests.
pub const GUESTS: usize = 4;
/// Frames outstanding / queued per guest in the virtualiser.
pub const DEPTH: usize = 32;
/// The virtualiser type under test.
pub type Virt = Virtualiser<GUESTS, DEPTH>;
/// Buffers per queue of the guest driver.
pub const DRIVER_BUFS: usize = 16;
/// The guest driver type.
pub type Driver = VirtioCanDriver<TestHal, Forward, DRIVER_BUFS>;

/// The test guests' HAL: DMA pages and bounce buffers from guest RAM.
pub struct TestHal;

// SAFETY: `dma_alloc` returns distinct zeroed page-aligned ranges of guest
// RAM that outlive every user; `share` only accepts buffers inside guest RAM
// and returns their own guest-physical address, so the device only ever
// sees guest RAM.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        alloc(pages * PAGE_SIZE, PAGE_SIZE)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        panic!("registers are reached through the forwarding transport")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // The driver's buffers are all in its DMA page, i.e. in guest RAM:
        // hand the device their guest-physical address, no bounce copy (a
        // bump-allocated bounce buffer per frame would exhaust the RAM).
        ram()
            .gpa_of(buffer)
            .expect("virtio-can driver buffers live in guest RAM")
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // Shared in place: nothing to copy back.
    }
}

/// A frame through the ring format between the VMM and the virtualiser
/// (`bulkhead-can-protocol`), as it would cross a shared-memory ring.
fn over_ring(frame: &Frame) -> Option<Frame> {
    let w = WireFrame::from_frame(frame, 0);
    let mut words = [0u32; WireFrame::WORDS];
    w.store(&mut |i, x| words[i] = x);
    WireFrame::load(&mut |i| words[i]).to_frame().ok()
}

/// The VMM's link from one guest's virtio-can to the virtualiser.
pub struct GuestBackend {
    virt: Rc<RefCell<Virt>>,
    guest: usize,
    clock: Rc<Cell<u64>>,
}

impl CanBackend for GuestBackend {
    fn start(&mut self) -> bool {
        self.virt.borrow_mut().start(self.guest)
    }
    fn stop(&mut self) {
        self.virt.borrow_mut().stop(self.guest);
    }
    fn transmit(&mut self, frame: &Frame) -> TxAdmit {
        let Some(frame) = over_ring(frame) else {
            return TxAdmit::Refused;
        };
        match self
            .virt
            .borrow_mut()
            .submit(self.guest, &frame, self.clock.get())
        {
            Admission::Queued(tag) => TxAdmit::Queued(tag),
            Admission::Refused(_) => TxAdmit::Refused,
            Admission::Full => TxAdmit::Busy,
        }
    }
    fn tx_completion(&mut self) -> Option<(u32, bool)> {
        self.virt.borrow_mut().take_completion(self.guest)
    }
    fn rx_peek(&self) -> Option<Frame> {
        self.virt
            .borrow()
            .rx_peek(self.guest)
            .and_then(|r| over_ring(&r.frame))
    }
    fn rx_pop(&mut self) {
        self.virt.borrow_mut().rx_pop(self.guest);
    }
    fn bus_off(&self) -> bool {
        self.virt.borrow().is_bus_off(self.guest)
    }
}

/// The device model type.
pub type Device = VirtioCan<GuestBackend>;

/// What the VMM holds for one guest: the register state machine and RAM.
pub type Vmm = bulkhead_virtio_testkit::Vmm<Device>;
/// `virtio-drivers`' `Transport`, each call turned into register accesses
/// trapped into [`Vmm`].
pub type Forward = bulkhead_virtio_testkit::Forward<Device>;

/// A periodic frame a test guest sends.
#[derive(Clone, Copy, Debug)]
pub struct Periodic {
    /// The frame.
    pub frame: Frame,
    /// Period (ns).
    pub period_ns: u64,
    /// Next release (ns).
    pub next_ns: u64,
}

/// A frame a test guest sent, and how it ended.
#[derive(Clone, Copy, Debug)]
pub struct SentLog {
    /// The frame.
    pub frame: Frame,
    /// When the guest queued it.
    pub released_ns: u64,
    /// When the driver saw it complete (simulated time of that poll).
    pub completed_ns: Option<u64>,
    /// The device's answer.
    pub ok: Option<bool>,
}

/// One test guest: the driver and what it does.
pub struct Guest {
    /// The guest-side driver.
    pub driver: Driver,
    /// Its VMM side.
    pub vmm: Rc<RefCell<Vmm>>,
    /// Frames it sends periodically.
    pub periodic: Vec<Periodic>,
    /// Keep the driver's TX ring full of this frame (100 % load).
    pub flood: Option<Frame>,
    /// What it sent (by driver slot while in flight).
    pub sent: Vec<SentLog>,
    in_flight: Vec<(usize, usize)>,
    /// What it received, with the simulated time it was read.
    pub received: Vec<(Frame, u64)>,
    /// RX buffers the device returned empty.
    pub rx_empty: u32,
    /// Completions of raw messages (`driver.send_raw`), in order.
    pub raw_done: Vec<TxDone>,
}

impl Guest {
    /// Sends `frame` now; records it. Returns the driver slot.
    pub fn send(&mut self, frame: &Frame, now: u64) -> Option<usize> {
        let slot = self.driver.send(frame).ok()?;
        self.sent.push(SentLog {
            frame: *frame,
            released_ns: now,
            completed_ns: None,
            ok: None,
        });
        self.in_flight.push((slot, self.sent.len() - 1));
        Some(slot)
    }

    /// Drains TX completions and received frames at time `now`.
    pub fn drain(&mut self, now: u64) {
        while let Some(done) = self.driver.poll_tx() {
            if let Some(k) = self.in_flight.iter().position(|&(s, _)| s == done.slot) {
                let (_, i) = self.in_flight.remove(k);
                self.sent[i].completed_ns = Some(now);
                self.sent[i].ok = Some(done.ok);
            } else {
                self.raw_done.push(done);
            }
        }
        loop {
            match self.driver.recv() {
                Ok(Some(f)) => self.received.push((f, now)),
                Ok(None) => break,
                Err(_) => {
                    // The buffer went back re-posted; the device may hand it
                    // back empty again at once, so stop for this round.
                    self.rx_empty += 1;
                    break;
                }
            }
        }
    }
}

/// Everything in one process.
pub struct System {
    /// The controller adapter (owns the bus).
    pub ctrl: BusController,
    /// The virtualiser.
    pub virt: Rc<RefCell<Virt>>,
    /// The guests, in virtualiser guest order.
    pub guests: Vec<Guest>,
    clock: Rc<Cell<u64>>,
}

impl System {
    /// A controller with `slots` TX buffers on `bus`, a virtualiser with
    /// `policies` in `mode`, and one started test guest per policy asking
    /// for `wanted`.
    pub fn new(
        bus: CanBus,
        policies: &[Policy],
        mode: Arbitration,
        slots: usize,
        wanted: Wanted,
    ) -> Self {
        let ram = Ram::new();
        install(ram);
        let fd = bus.config().fd;
        let ctrl = BusController::new(bus, "gateway", slots);
        // The policies reach the virtualiser as its PD would get them: as a
        // configuration region, parsed and its CAN section decoded.
        let region = ConfigBuilder::new("can_virt")
            .typed(&CanVirtConfig::new(policies))
            .build()
            .unwrap();
        let config = ConfigRegion::parse(&region, "can_virt")
            .unwrap()
            .get::<CanVirtConfig>()
            .unwrap();
        let virt = Rc::new(RefCell::new(Virt::new(config.guests(), slots, fd, mode)));
        let clock = Rc::new(Cell::new(0));
        let mut guests = Vec::new();
        for g in 0..policies.len() {
            let backend = GuestBackend {
                virt: virt.clone(),
                guest: g,
                clock: clock.clone(),
            };
            let vmm = Vmm::shared(VirtioCan::new(backend, fd), ram);
            let mut driver = Driver::new(TrapTransport(vmm.clone()), wanted).unwrap();
            driver.start().unwrap();
            guests.push(Guest {
                driver,
                vmm,
                periodic: Vec::new(),
                flood: None,
                sent: Vec::new(),
                in_flight: Vec::new(),
                received: Vec::new(),
                rx_empty: 0,
                raw_done: Vec::new(),
            });
        }
        Self {
            ctrl,
            virt,
            guests,
            clock,
        }
    }

    /// Simulated time.
    pub fn now(&self) -> u64 {
        self.ctrl.bus.now()
    }

    /// One round of the virtualiser PD and the VMMs at the current time:
    /// poll the controller, then let every device collect its events, then
    /// let every guest drain and act, then poll again for what they sent.
    pub fn service(&mut self) {
        let now = self.now();
        self.clock.set(now);
        for _ in 0..3 {
            self.virt.borrow_mut().poll(&mut self.ctrl);
            for g in &mut self.guests {
                let s = g.vmm.borrow_mut().dev.device_mut().poll_backend();
                let mut vmm = g.vmm.borrow_mut();
                if s.tx {
                    vmm.kick(TX_QUEUE);
                }
                if s.rx {
                    vmm.kick(RX_QUEUE);
                }
                if s.config {
                    vmm.dev.config_changed();
                    vmm.config_irqs += 1;
                }
                drop(vmm);
                g.drain(now);
                for p in &mut g.periodic {
                    while p.next_ns <= now {
                        let f = p.frame;
                        p.next_ns += p.period_ns;
                        let slot = g.driver.send(&f).ok();
                        if let Some(slot) = slot {
                            g.sent.push(SentLog {
                                frame: f,
                                released_ns: now,
                                completed_ns: None,
                                ok: None,
                            });
                            g.in_flight.push((slot, g.sent.len() - 1));
                        }
                    }
                }
                if let Some(f) = g.flood {
                    while g.driver.tx_in_flight() < DRIVER_BUFS {
                        if g.send(&f, now).is_none() {
                            break;
                        }
                    }
                }
            }
        }
        self.virt.borrow_mut().poll(&mut self.ctrl);
    }

    /// Runs every bus event and guest release up to `t`, servicing after
    /// each (the virtualiser reacts in zero simulated time).
    pub fn run_until(&mut self, t: u64) {
        self.service();
        loop {
            let release = self
                .guests
                .iter()
                .flat_map(|g| g.periodic.iter().map(|p| p.next_ns))
                .min();
            let bus = self.ctrl.bus.next_event_time();
            let next = match (bus, release) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(u64::MAX),
            };
            if next > t {
                break;
            }
            if bus == Some(next) {
                self.ctrl.bus.step();
            } else {
                self.ctrl.bus.run_until(next);
            }
            self.service();
        }
        self.ctrl.bus.run_until(t);
        self.service();
    }
}
