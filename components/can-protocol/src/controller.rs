//! The interface between the CAN virtualiser and a CAN controller driver.
//!
//! It lives here, in the protocol crate both sides depend on, so that a
//! driver never imports the virtualiser (they meet only in a `.system` file).
//!
//! A controller has a few TX buffers (slots). The virtualiser puts frames
//! into free slots, each with its priority (the frame's arbitration key: the
//! controller offers the lowest key first, as the bus would), and aborts a
//! lower-priority slot when a higher-priority frame needs it. An abort only
//! succeeds for a frame not yet on the bus; a successful abort produces no
//! completion.

use bulkhead_can_frame::Frame;

/// Fault-confinement state (ISO 11898-1 §12.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusState {
    /// Error-active.
    Active,
    /// Error-passive.
    Passive,
    /// Bus-off.
    BusOff,
}

/// What the controller reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerStatus {
    /// Fault-confinement state.
    pub state: BusState,
    /// Transmit error counter.
    pub tec: u16,
    /// Receive error counter.
    pub rec: u16,
}

/// How a TX slot finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotDone {
    /// The slot, free again.
    pub slot: usize,
    /// On the bus and acknowledged (false: dropped by the controller).
    pub sent: bool,
    /// When it finished, in the controller's time base (ns).
    pub at_ns: u64,
}

/// A frame the controller received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The frame.
    pub frame: Frame,
    /// Receive timestamp (ns).
    pub at_ns: u64,
}

/// Why the controller refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerError {
    /// slot index out of range or already in use
    BadSlot,
    /// the controller cannot send this frame (FD on a classic bus)
    Unsupported,
    /// recovery requested while not bus-off
    NotBusOff,
}

impl core::fmt::Display for ControllerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadSlot => "TX slot out of range or in use",
            Self::Unsupported => "frame not supported by this controller",
            Self::NotBusOff => "recovery requested while not bus-off",
        })
    }
}

/// The driver interface the virtualiser needs from a CAN controller.
pub trait CanController {
    /// Number of TX buffers.
    fn slots(&self) -> usize;
    /// Puts `frame` into free TX buffer `slot` with `priority` (lower first).
    ///
    /// # Errors
    /// [`ControllerError::BadSlot`], [`ControllerError::Unsupported`].
    fn submit(&mut self, slot: usize, frame: &Frame, priority: u32) -> Result<(), ControllerError>;
    /// Aborts `slot` if its frame is not on the bus yet; true if aborted (no
    /// completion follows), false if it is being sent or already done.
    fn abort(&mut self, slot: usize) -> bool;
    /// The next finished slot.
    fn completion(&mut self) -> Option<SlotDone>;
    /// The next received frame.
    fn receive(&mut self) -> Option<Received>;
    /// State and error counters.
    fn status(&self) -> ControllerStatus;
    /// Starts bus-off recovery (the controller rejoins after 128 × 11
    /// recessive bits).
    ///
    /// # Errors
    /// [`ControllerError::NotBusOff`].
    fn recover(&mut self) -> Result<(), ControllerError>;
}
