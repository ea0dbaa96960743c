//! [`CanController`] for one node of the simulated bus: what the host
//! board's CAN driver gives the virtualiser.

use bulkhead_virt_can::{
    BusState, CanController, ControllerError, ControllerStatus, Received, SlotDone,
};
use drv_host_can_bus::bulkhead_can_frame::Frame;
use drv_host_can_bus::{BusError, CanBus, ErrorState, NodeId, TxCompletion, TxId, TxOutcome};

/// One controller on a [`CanBus`], with `slots` TX buffers. It owns the bus
/// so the test can step it.
pub struct BusController {
    /// The simulated bus.
    pub bus: CanBus,
    /// This controller's node.
    pub node: NodeId,
    slots: Vec<Option<TxId>>,
    /// Every frame this controller put on the bus, in order.
    pub sent: Vec<TxCompletion>,
}

impl BusController {
    /// Attaches a controller node named `name` with `slots` TX buffers.
    pub fn new(mut bus: CanBus, name: &str, slots: usize) -> Self {
        let node = bus.attach(drv_host_can_bus::NodeConfig::named(name));
        Self {
            bus,
            node,
            slots: vec![None; slots],
            sent: Vec::new(),
        }
    }
}

impl CanController for BusController {
    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn submit(
        &mut self,
        slot: usize,
        frame: &Frame,
        _priority: u32,
    ) -> Result<(), ControllerError> {
        // The model's node offers its lowest arbitration key first, which is
        // the priority the virtualiser passes.
        match self.slots.get(slot) {
            Some(None) => {}
            _ => return Err(ControllerError::BadSlot),
        }
        let tx = self.bus.submit(self.node, *frame).map_err(|e| match e {
            BusError::FdNotEnabled => ControllerError::Unsupported,
            _ => ControllerError::BadSlot,
        })?;
        self.slots[slot] = Some(tx);
        Ok(())
    }

    fn abort(&mut self, slot: usize) -> bool {
        let Some(Some(tx)) = self.slots.get(slot).copied() else {
            return false;
        };
        if self.bus.cancel(self.node, tx) {
            self.slots[slot] = None;
            // Its Cancelled completion is skipped in `completion`.
            true
        } else {
            false
        }
    }

    fn completion(&mut self) -> Option<SlotDone> {
        loop {
            let c = self.bus.take_completion(self.node)?;
            let Some(slot) = self.slots.iter().position(|&t| t == Some(c.tx)) else {
                continue; // aborted: already reported by `abort`
            };
            self.slots[slot] = None;
            let sent = c.outcome == TxOutcome::Sent;
            if sent {
                self.sent.push(c);
            }
            return Some(SlotDone {
                slot,
                sent,
                at_ns: c.done_ns,
            });
        }
    }

    fn receive(&mut self) -> Option<Received> {
        self.bus.receive(self.node).map(|r| Received {
            frame: r.frame,
            at_ns: r.timestamp_ns,
        })
    }

    fn status(&self) -> ControllerStatus {
        match self.bus.status(self.node) {
            Ok(s) => ControllerStatus {
                state: match s.state {
                    ErrorState::Active => BusState::Active,
                    ErrorState::Passive => BusState::Passive,
                    ErrorState::BusOff => BusState::BusOff,
                },
                tec: s.tec,
                rec: s.rec,
            },
            Err(_) => ControllerStatus {
                state: BusState::BusOff,
                tec: 256,
                rec: 0,
            },
        }
    }

    fn recover(&mut self) -> Result<(), ControllerError> {
        self.bus
            .request_recovery(self.node)
            .map_err(|_| ControllerError::NotBusOff)
    }
}
