//! Class `can` (slot 3): virtio-can (`vmm/devices/src/can`) whose backend
//! is the hop to `can_virt` — TX/START/STOP into the hop's `req` ring,
//! answers and received frames from its `resp` ring, by the rules of
//! `bulkhead_can_protocol::vmm_hop`.
//!
//! The slot wraps the transport itself rather than `VirtioMmio`, because a
//! bus-off must raise a configuration-change interrupt
//! (`MmioTransport::config_changed`), which only the transport's owner can.
//!
//! The device asks its backend synchronously (`start`, `transmit`); the
//! hop answers later. So `start` succeeds unless the guest is known to be
//! held bus-off (a START_REFUSED then turns the status to BUSOFF, as a
//! bus-off would), and `transmit` returns a tag at once; the tag's
//! SENT/NOT_SENT completes the chain (LATE_TX_ACK). Tags carry an epoch
//! that STOP advances, so an answer to a frame from before a STOP can never
//! complete a later chain.

use bulkhead_can_frame::Frame;
use bulkhead_can_protocol::{vmm_op, vmm_status, WireFrame, EVENT_ID, RING_CAPACITY};
use bulkhead_ring::{Armed, Consumer, Fifo, Producer, Region as RingRegion, Request, Response};
use bulkhead_virtio::{GuestMemory, MmioTransport, WriteEffect};
use bulkhead_vmm_core::MmioDevice;
use bulkhead_vmm_devices::can::{CanBackend, TxAdmit, VirtioCan};

use crate::hops::{hop_region_name, NameBuf};
use crate::Class;

/// The CAN slot as the VMM's bus holds it.
pub type Device = CanSlot;

/// Received frames the backend holds for the device.
const RX_HOLD: usize = 64;

/// Whether this VMM has a CAN hop: compose's region `can_<guest>_req`.
pub fn present_by_name() -> bool {
    let mut b = NameBuf::new();
    hop_region_name(&mut b, Class::Can, "req")
        .is_some_and(|n| bulkhead_runtime::Region::get(n).is_ok())
}

fn ring(part: &str) -> Option<RingRegion<'static>> {
    let mut b = NameBuf::new();
    let r = bulkhead_runtime::Region::get(hop_region_name(&mut b, Class::Can, part)?).ok()?;
    // SAFETY: the runtime mapped `r.size()` bytes at `r.vaddr()` read-write
    // for the PD's life, and this PD touches the region only through the
    // ring built here (atomic word accesses).
    unsafe { RingRegion::from_raw(r.vaddr() as *mut u8, r.size()) }.ok()
}

/// The device over the hop, or `None` if the transport refuses the model
/// (a programming error, reported by the caller).
pub fn attach() -> Option<Device> {
    let backend = RingCan::new(
        ring("req").and_then(|r| Producer::attach(r, RING_CAPACITY).ok()),
        ring("resp").and_then(|r| Consumer::attach(r, RING_CAPACITY).ok()),
    );
    Some(CanSlot {
        transport: MmioTransport::new(VirtioCan::new(backend, true)).ok()?,
    })
}

/// The virtio-can backend: the hop to `can_virt`.
pub struct RingCan {
    tx: Option<Producer<'static, Request<WireFrame>>>,
    rx: Option<Consumer<'static, Response<WireFrame>>>,
    /// Tags are `epoch << 16 | seq`; STOP advances the epoch.
    epoch: u32,
    seq: u32,
    /// TX sent and not yet answered (bounded by the ring).
    outstanding: u32,
    done: Fifo<(u32, bool), { RING_CAPACITY as usize }>,
    frames: Fifo<Frame, RX_HOLD>,
    bus_off: bool,
    /// `can_virt` asked to be notified.
    pub notify: bool,
    /// Answers that were not understood or not ours (a faulty neighbour).
    pub bad_answers: u32,
}

impl RingCan {
    fn new(
        tx: Option<Producer<'static, Request<WireFrame>>>,
        rx: Option<Consumer<'static, Response<WireFrame>>>,
    ) -> Self {
        let mut me = Self {
            tx,
            rx,
            epoch: 0,
            seq: 0,
            outstanding: 0,
            done: Fifo::new(),
            frames: Fifo::new(),
            bus_off: false,
            notify: false,
            bad_answers: 0,
        };
        // Arm the answer ring so can_virt signals.
        me.pump();
        me
    }

    fn send(&mut self, id: u32, op: u32, payload: WireFrame) -> bool {
        let Some(p) = self.tx.as_mut() else {
            return false;
        };
        match p.push(&Request { id, op, payload }) {
            Ok(()) => {
                self.notify |= p.notify_needed();
                true
            }
            Err(bulkhead_ring::RingError::Full) => false,
            Err(_) => {
                // A corrupt ring: the neighbour is faulty; stop using it.
                self.tx = None;
                false
            }
        }
    }

    /// Takes `can_virt`'s answers. Call when it signalled.
    pub fn pump(&mut self) {
        loop {
            // Room for whatever the next answer is: a frame waits in the
            // ring rather than being dropped here.
            if self.frames.len() == RX_HOLD || self.done.len() == RING_CAPACITY as usize {
                return;
            }
            let Some(c) = self.rx.as_mut() else { return };
            let r = match c.pop() {
                Ok(Some(r)) => r,
                Ok(None) => match c.arm_signal() {
                    Ok(Armed::Pending) => continue,
                    Ok(Armed::MaySleep) => return,
                    Err(_) => {
                        self.rx = None;
                        return;
                    }
                },
                Err(_) => {
                    self.rx = None;
                    return;
                }
            };
            match (r.id, r.status) {
                (EVENT_ID, vmm_status::RX) => match r.payload.to_frame() {
                    Ok(f) => {
                        let _ = self.frames.push(f);
                    }
                    Err(_) => self.bad_answers += 1,
                },
                (EVENT_ID, vmm_status::BUS_OFF) => self.bus_off = true,
                (EVENT_ID, vmm_status::BUS_OK) => self.bus_off = false,
                (_, vmm_status::STARTED) => {}
                (_, vmm_status::START_REFUSED) => self.bus_off = true,
                (id, st @ (vmm_status::SENT | vmm_status::NOT_SENT)) => {
                    if id >> 16 == self.epoch & 0x7fff && self.outstanding > 0 {
                        self.outstanding -= 1;
                        let _ = self.done.push((id, st == vmm_status::SENT));
                    } else {
                        // From before a STOP: the device answered already.
                    }
                }
                _ => self.bad_answers += 1,
            }
        }
    }
}

impl CanBackend for RingCan {
    fn start(&mut self) -> bool {
        !self.bus_off && self.send(0, vmm_op::START, WireFrame::default())
    }

    fn stop(&mut self) {
        let _ = self.send(0, vmm_op::STOP, WireFrame::default());
        self.epoch = (self.epoch + 1) & 0x7fff;
        self.outstanding = 0;
        self.done.clear();
        self.frames.clear();
    }

    fn transmit(&mut self, frame: &Frame) -> TxAdmit {
        if self.outstanding >= RING_CAPACITY {
            return TxAdmit::Busy;
        }
        let tag = self.epoch << 16 | (self.seq & 0xffff);
        if !self.send(tag, vmm_op::TX, WireFrame::from_frame(frame, 0)) {
            return TxAdmit::Busy;
        }
        self.seq = self.seq.wrapping_add(1);
        self.outstanding += 1;
        TxAdmit::Queued(tag)
    }

    fn tx_completion(&mut self) -> Option<(u32, bool)> {
        self.done.pop()
    }

    fn rx_peek(&self) -> Option<Frame> {
        self.frames.peek()
    }

    fn rx_pop(&mut self) {
        let _ = self.frames.pop();
    }

    fn bus_off(&self) -> bool {
        self.bus_off
    }
}

/// The CAN slot: the virtio-mmio transport around the virtio-can model.
pub struct CanSlot {
    transport: MmioTransport<VirtioCan<RingCan>>,
}

impl CanSlot {
    /// The backend (for its `notify` flag).
    pub fn backend_mut(&mut self) -> &mut RingCan {
        self.transport.device_mut().backend_mut()
    }

    /// `can_virt` signalled: take its answers (the bus poll then runs the
    /// device against them).
    pub fn pump(&mut self) {
        self.backend_mut().pump();
    }
}

impl MmioDevice for CanSlot {
    fn read(&mut self, offset: u64, width: u8, _ram: &mut dyn GuestMemory) -> Result<u64, ()> {
        self.transport.read(offset, width).map_err(|_| ())
    }

    fn write(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
        ram: &mut dyn GuestMemory,
    ) -> Result<(), ()> {
        match self.transport.write(offset, width, value) {
            Ok(WriteEffect::QueueNotify(q)) => {
                self.transport.process_queue(q, ram);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(_) => Err(()),
        }
    }

    fn irq_level(&self) -> bool {
        self.transport.interrupt_pending()
    }

    fn poll(&mut self, ram: &mut dyn GuestMemory) {
        let s = self.transport.device_mut().poll_backend();
        if s.config {
            self.transport.config_changed();
        }
        if s.tx {
            self.transport
                .process_queue(bulkhead_vmm_devices::can::TX_QUEUE, ram);
        }
        if s.rx {
            self.transport
                .process_queue(bulkhead_vmm_devices::can::RX_QUEUE, ram);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The backend over in-memory rings, the test playing `can_virt`.
    use super::*;
    use bulkhead_can_frame::CanId;
    use bulkhead_ring::{CacheLine, Region};
    extern crate std;
    use std::vec::Vec;

    fn ring<T: bulkhead_ring::Pod>() -> (Producer<'static, T>, Consumer<'static, T>) {
        let n = 4096 / core::mem::size_of::<CacheLine>();
        let lines: &'static [CacheLine] = std::boxed::Box::leak(
            (0..n)
                .map(|_| CacheLine::new())
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let r = Region::from_lines(lines);
        (
            Producer::attach(r, RING_CAPACITY).unwrap(),
            Consumer::attach(r, RING_CAPACITY).unwrap(),
        )
    }

    /// The backend, what it asked `can_virt`, and `can_virt`'s answer ring.
    fn backend() -> (
        RingCan,
        Consumer<'static, Request<WireFrame>>,
        Producer<'static, Response<WireFrame>>,
    ) {
        let (rq_p, rq_c) = ring();
        let (rs_p, rs_c) = ring();
        (RingCan::new(Some(rq_p), Some(rs_c)), rq_c, rs_p)
    }

    fn f(id: u16) -> Frame {
        Frame::classic(CanId::standard(id).unwrap(), &[1, 2]).unwrap()
    }

    fn answer(
        p: &mut Producer<'static, Response<WireFrame>>,
        id: u32,
        status: u32,
        fr: Option<Frame>,
    ) {
        let payload = fr.map_or_else(WireFrame::default, |x| WireFrame::from_frame(&x, 0));
        p.push(&Response {
            id,
            status,
            payload,
        })
        .unwrap();
    }

    #[test]
    fn a_tag_is_answered_once_and_answers_from_before_a_stop_are_ignored() {
        let (mut b, mut virt, mut ans) = backend();
        assert!(b.start());
        let TxAdmit::Queued(t1) = b.transmit(&f(0x100)) else {
            panic!()
        };
        let r = virt.pop().unwrap().unwrap();
        assert_eq!(virt.pop().unwrap().unwrap().op, vmm_op::TX);
        assert_eq!(r.op, vmm_op::START);
        answer(&mut ans, t1, vmm_status::SENT, None);
        answer(&mut ans, t1, vmm_status::SENT, None); // duplicate
        b.pump();
        assert_eq!(b.tx_completion(), Some((t1, true)));
        assert_eq!(
            b.tx_completion(),
            None,
            "a duplicate answer is not a second completion"
        );
        let TxAdmit::Queued(t2) = b.transmit(&f(0x100)) else {
            panic!()
        };
        b.stop();
        answer(&mut ans, t2, vmm_status::NOT_SENT, None);
        b.pump();
        assert_eq!(b.tx_completion(), None, "from before the STOP");
        let TxAdmit::Queued(t3) = b.transmit(&f(0x100)) else {
            panic!()
        };
        assert_ne!(t3 >> 16, t2 >> 16, "a new epoch");
        assert_ne!(t3, EVENT_ID);
    }

    #[test]
    fn held_bus_off_refuses_start_until_released() {
        let (mut b, _virt, mut ans) = backend();
        answer(&mut ans, 0, vmm_status::START_REFUSED, None);
        b.pump();
        assert!(b.bus_off() && !b.start());
        answer(&mut ans, EVENT_ID, vmm_status::BUS_OK, None);
        b.pump();
        assert!(!b.bus_off() && b.start());
        answer(&mut ans, EVENT_ID, vmm_status::BUS_OFF, None);
        b.pump();
        assert!(b.bus_off());
    }

    #[test]
    fn received_frames_wait_in_order_and_garbage_is_counted() {
        let (mut b, _virt, mut ans) = backend();
        for id in [0x10, 0x11, 0x12] {
            answer(&mut ans, EVENT_ID, vmm_status::RX, Some(f(id)));
        }
        let mut bad = WireFrame::from_frame(&f(0x13), 0);
        bad.flags = 0x40;
        ans.push(&Response {
            id: EVENT_ID,
            status: vmm_status::RX,
            payload: bad,
        })
        .unwrap();
        answer(&mut ans, 5, 0x999, None);
        b.pump();
        let mut got = Vec::new();
        while let Some(x) = b.rx_peek() {
            got.push(x.id().raw());
            b.rx_pop();
        }
        assert_eq!(got, [0x10, 0x11, 0x12]);
        assert_eq!(b.bad_answers, 2);
    }

    #[test]
    fn transmit_is_busy_when_the_ring_is_full_and_nothing_is_lost() {
        let (mut b, mut virt, _ans) = backend();
        let mut n = 0;
        while let TxAdmit::Queued(_) = b.transmit(&f(0x100)) {
            n += 1;
        }
        assert_eq!(n, RING_CAPACITY);
        let mut popped = 0;
        while virt.pop().unwrap().is_some() {
            popped += 1;
        }
        assert_eq!(popped, RING_CAPACITY, "every queued frame is on the ring");
        assert_eq!(
            b.transmit(&f(0x100)),
            TxAdmit::Busy,
            "32 outstanding until answered"
        );
    }
}
