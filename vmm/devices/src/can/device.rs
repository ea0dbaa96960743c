//! The virtio-can device model.

use bulkhead_can_frame::virtio::{
    parse_tx, serialise, Features, F_CAN_CLASSIC, F_CAN_FD, F_LATE_TX_ACK, F_RTR_FRAMES,
    MAX_MESSAGE_LEN, MSG_RX, RESULT_NOT_OK, RESULT_OK,
};
use bulkhead_can_frame::Frame;
use bulkhead_virtio::{DescriptorChain, QueueContext, QueueError, VirtioDevice};

/// The virtio device ID of CAN.
pub const DEVICE_ID: u32 = 36;
/// Transmit queue.
pub const TX_QUEUE: u16 = 0;
/// Receive queue.
pub const RX_QUEUE: u16 = 1;
/// Control queue.
pub const CONTROL_QUEUE: u16 = 2;
/// QueueSizeMax of every queue; also the most TX chains held for LATE_TX_ACK.
pub const QUEUE_SIZE: u16 = 64;
/// Config space: `le16 status`.
pub const CONFIG_LEN: usize = 2;
/// `status` bit: the controller is bus-off.
pub const STATUS_BUSOFF: u16 = 1;
/// Control message: start the controller.
pub const CTRL_START: u16 = 0x0201;
/// Control message: stop the controller.
pub const CTRL_STOP: u16 = 0x0202;
/// Descriptors a chain may have here (a TX message is header, sdu, result).
const MAX_DESCS: usize = 4;
/// TX chains held at once (one per queue entry at most).
const PENDING: usize = QUEUE_SIZE as usize;

/// What the backend did with a validated TX frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxAdmit {
    /// Queued; its completion will carry this tag.
    Queued(u32),
    /// Refused by policy (whitelist, budget, stopped): NOT_OK, nothing sent.
    Refused,
    /// No room now: the device leaves the chain in the avail ring and retries
    /// when [`VirtioCan::poll_backend`] is next called.
    Busy,
}

/// The VMM's link to the CAN virtualiser for one guest.
pub trait CanBackend {
    /// The guest asked to start its controller; false refuses (NOT_OK).
    fn start(&mut self) -> bool;
    /// The guest stopped its controller: drop its pending frames (their
    /// completions need not be reported; the device answers NOT_OK itself).
    fn stop(&mut self);
    /// Offer a validated frame.
    fn transmit(&mut self, frame: &Frame) -> TxAdmit;
    /// A finished transmission: `(tag, sent)`.
    fn tx_completion(&mut self) -> Option<(u32, bool)>;
    /// The oldest received frame waiting for this guest, not removed.
    fn rx_peek(&self) -> Option<Frame>;
    /// Removes the frame [`CanBackend::rx_peek`] returned.
    fn rx_pop(&mut self);
    /// Whether this guest's view of the controller is bus-off.
    fn bus_off(&self) -> bool;
}

/// What the VMM must do after [`VirtioCan::poll_backend`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Process [`TX_QUEUE`]: completions are ready or TX chains wait.
    pub tx: bool,
    /// Process [`RX_QUEUE`]: a frame is waiting.
    pub rx: bool,
    /// `status` changed: raise a config-change notification.
    pub config: bool,
}

/// Counts of what the driver did wrong or what was refused (for the VMM's
/// log and for tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CanErrors {
    /// TX messages refused by validation (NOT_OK).
    pub tx_invalid: u32,
    /// TX messages while the controller was stopped (NOT_OK).
    pub tx_stopped: u32,
    /// TX messages refused by the backend's policy (NOT_OK).
    pub tx_refused: u32,
    /// Chains with no room for a result, or of the wrong direction
    /// (completed with length 0).
    pub malformed_chains: u32,
    /// RX chains too short for the waiting frame (returned with length 0;
    /// the frame was kept).
    pub rx_too_short: u32,
    /// Control messages with an unknown type or too short (NOT_OK).
    pub ctrl_invalid: u32,
    /// Guest memory refused a copy inside a validated chain.
    pub memory: u32,
}

/// A TX chain waiting for its frame to be on the bus (LATE_TX_ACK).
#[derive(Clone, Copy)]
struct Pending {
    chain: DescriptorChain<MAX_DESCS>,
    /// The backend's tag; `None` while the backend had no room for it yet.
    tag: Option<u32>,
    /// Set once the outcome is known; the chain completes on the next TX
    /// processing.
    result: Option<u8>,
}

/// The virtio-can device model.
pub struct VirtioCan<B> {
    backend: B,
    offered: u64,
    features: Features,
    late_ack: bool,
    started: bool,
    status: u16,
    pending: [Option<Pending>; PENDING],
    /// Counts of refused requests.
    pub errors: CanErrors,
}

impl<B: CanBackend> VirtioCan<B> {
    /// A device offering classic CAN, RTR frames and LATE_TX_ACK, plus FD if
    /// `fd` (the bus supports it).
    pub fn new(backend: B, fd: bool) -> Self {
        let mut offered = (1 << F_CAN_CLASSIC) | (1 << F_RTR_FRAMES) | (1 << F_LATE_TX_ACK);
        if fd {
            offered |= 1 << F_CAN_FD;
        }
        Self {
            backend,
            offered,
            features: Features::default(),
            late_ack: false,
            started: false,
            status: 0,
            pending: [None; PENDING],
            errors: CanErrors::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Whether the guest's controller is started.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The config `status` word.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// TX chains held until their frame is on the bus.
    pub fn pending_tx(&self) -> usize {
        self.pending.iter().flatten().count()
    }

    /// Collects backend events (completions, bus-off, received frames) and
    /// says what the VMM must do. Bus-off stops the controller and completes
    /// every pending TX with NOT_OK (on the next TX processing).
    pub fn poll_backend(&mut self) -> Service {
        let mut service = Service::default();
        while let Some((tag, sent)) = self.backend.tx_completion() {
            // Completions for chains already answered (STOP, or without
            // LATE_TX_ACK) find no pending entry and are dropped.
            if let Some(p) = self
                .pending
                .iter_mut()
                .flatten()
                .find(|p| p.tag == Some(tag) && p.result.is_none())
            {
                p.result = Some(if sent { RESULT_OK } else { RESULT_NOT_OK });
                service.tx = true;
            }
        }
        let busoff = self.backend.bus_off();
        let status = if busoff { STATUS_BUSOFF } else { 0 };
        if status != self.status {
            self.status = status;
            service.config = true;
            if busoff {
                self.stop_controller();
                service.tx = true;
            }
        }
        // Finished chains to complete, or chains the backend had no room for
        // to offer again.
        if self
            .pending
            .iter()
            .flatten()
            .any(|p| p.result.is_some() || p.tag.is_none())
        {
            service.tx = true;
        }
        service.rx = self.started && self.backend.rx_peek().is_some();
        service
    }

    /// STOPPED: every pending TX will complete NOT_OK.
    fn stop_controller(&mut self) {
        if self.started {
            self.backend.stop();
        }
        self.started = false;
        for p in self.pending.iter_mut().flatten() {
            p.result.get_or_insert(RESULT_NOT_OK);
        }
    }

    fn count(field: &mut u32) {
        *field = field.saturating_add(1);
    }

    /// Writes the one-byte result into `chain`'s writable part and
    /// completes it.
    fn complete(
        &mut self,
        chain: &DescriptorChain<MAX_DESCS>,
        result: u8,
        ctx: &mut QueueContext<'_>,
    ) -> Result<(), QueueError> {
        let mut w = chain.writer();
        let len = match w.write(ctx.memory_mut(), &[result]) {
            Ok(_) => w.written(),
            Err(_) => {
                Self::count(&mut self.errors.memory);
                0
            }
        };
        ctx.add_used(chain, len)
    }

    fn transmit(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        // Finished ones first: frees room for new chains.
        for i in 0..PENDING {
            if let Some(Pending {
                chain,
                result: Some(r),
                ..
            }) = self.pending[i]
            {
                self.pending[i] = None;
                self.complete(&chain, r, ctx)?;
            }
        }
        loop {
            // A chain the backend had no room for goes first: popping more
            // now would let a later frame overtake it.
            if self
                .pending
                .iter()
                .flatten()
                .any(|p| p.tag.is_none() && p.result.is_none())
            {
                return Ok(());
            }
            // Never pop a chain that could not be held (§ "never pop a chain
            // you cannot complete"): keep one free slot in hand.
            let Some(slot) = self.pending.iter().position(Option::is_none) else {
                return Ok(());
            };
            let Some(chain) = ctx.pop::<MAX_DESCS>()? else {
                return Ok(());
            };
            if chain.writable_len() == 0 || chain.readable_len() == 0 {
                Self::count(&mut self.errors.malformed_chains);
                ctx.add_used(&chain, 0)?;
                continue;
            }
            // Copy, then validate the copy; never re-read guest memory.
            let mut buf = [0u8; MAX_MESSAGE_LEN];
            let want = usize::try_from(chain.readable_len())
                .map_or(MAX_MESSAGE_LEN, |n| n.min(MAX_MESSAGE_LEN));
            let mut r = chain.reader();
            let got = match r.read(ctx.memory(), &mut buf[..want]) {
                Ok(n) => n,
                Err(_) => {
                    Self::count(&mut self.errors.memory);
                    self.complete(&chain, RESULT_NOT_OK, ctx)?;
                    continue;
                }
            };
            let frame = match parse_tx(&buf[..got], self.features) {
                Ok(f) => f,
                Err(_) => {
                    Self::count(&mut self.errors.tx_invalid);
                    self.complete(&chain, RESULT_NOT_OK, ctx)?;
                    continue;
                }
            };
            if !self.started {
                Self::count(&mut self.errors.tx_stopped);
                self.complete(&chain, RESULT_NOT_OK, ctx)?;
                continue;
            }
            match self.backend.transmit(&frame) {
                TxAdmit::Queued(tag) if self.late_ack => {
                    self.pending[slot] = Some(Pending {
                        chain,
                        tag: Some(tag),
                        result: None,
                    });
                }
                TxAdmit::Queued(_) => self.complete(&chain, RESULT_OK, ctx)?,
                TxAdmit::Refused => {
                    Self::count(&mut self.errors.tx_refused);
                    self.complete(&chain, RESULT_NOT_OK, ctx)?;
                }
                TxAdmit::Busy => {
                    // Hold it unsent; the backend said it will have room
                    // later, and order is kept by not popping more.
                    self.pending[slot] = Some(Pending {
                        chain,
                        tag: None,
                        result: None,
                    });
                    return Ok(());
                }
            }
        }
    }

    /// Retries held chains the backend had no room for, oldest slot first,
    /// before any new chain is popped. The chain is read again from guest
    /// memory: the driver may have changed it meanwhile, and the new bytes
    /// are validated like any others, so that is harmless.
    fn retry_held(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        for i in 0..PENDING {
            let Some(p) = self.pending[i] else { continue };
            if p.tag.is_some() || p.result.is_some() {
                continue;
            }
            let mut buf = [0u8; MAX_MESSAGE_LEN];
            let want = usize::try_from(p.chain.readable_len())
                .map_or(MAX_MESSAGE_LEN, |n| n.min(MAX_MESSAGE_LEN));
            let got = p
                .chain
                .reader()
                .read(ctx.memory(), &mut buf[..want])
                .unwrap_or(0);
            let Ok(frame) = parse_tx(&buf[..got], self.features) else {
                self.pending[i] = None;
                Self::count(&mut self.errors.tx_invalid);
                self.complete(&p.chain, RESULT_NOT_OK, ctx)?;
                continue;
            };
            match self.backend.transmit(&frame) {
                TxAdmit::Busy => return Ok(()),
                TxAdmit::Queued(tag) if self.late_ack => {
                    self.pending[i] = Some(Pending {
                        tag: Some(tag),
                        ..p
                    });
                }
                TxAdmit::Queued(_) => {
                    self.pending[i] = None;
                    self.complete(&p.chain, RESULT_OK, ctx)?;
                }
                TxAdmit::Refused => {
                    self.pending[i] = None;
                    Self::count(&mut self.errors.tx_refused);
                    self.complete(&p.chain, RESULT_NOT_OK, ctx)?;
                }
            }
        }
        Ok(())
    }

    fn receive(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        if !self.started {
            return Ok(());
        }
        while let Some(frame) = self.backend.rx_peek() {
            let mut msg = [0u8; MAX_MESSAGE_LEN];
            let Ok(n) = serialise(&frame, MSG_RX, &mut msg) else {
                // Cannot happen for a validated frame; drop it rather than
                // loop on it.
                self.backend.rx_pop();
                continue;
            };
            let Some(chain) = ctx.pop::<MAX_DESCS>()? else {
                return Ok(());
            };
            if chain.readable_len() > 0 || chain.writable_len() < n as u64 {
                // Returned empty; the frame stays for the next buffer.
                Self::count(&mut self.errors.rx_too_short);
                ctx.add_used(&chain, 0)?;
                continue;
            }
            let mut w = chain.writer();
            if w.write(ctx.memory_mut(), &msg[..n]).is_err() {
                Self::count(&mut self.errors.memory);
                ctx.add_used(&chain, 0)?;
                continue;
            }
            let written = w.written();
            ctx.add_used(&chain, written)?;
            self.backend.rx_pop();
        }
        Ok(())
    }

    fn control(&mut self, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        while let Some(chain) = ctx.pop::<MAX_DESCS>()? {
            if chain.writable_len() == 0 {
                Self::count(&mut self.errors.malformed_chains);
                ctx.add_used(&chain, 0)?;
                continue;
            }
            let mut buf = [0u8; 2];
            let ok = chain.reader().read_exact(ctx.memory(), &mut buf).is_ok();
            let result = match (ok, u16::from_le_bytes(buf)) {
                (true, CTRL_START) => {
                    if self.status & STATUS_BUSOFF == 0 && (self.started || self.backend.start()) {
                        self.started = true;
                        RESULT_OK
                    } else {
                        RESULT_NOT_OK
                    }
                }
                (true, CTRL_STOP) => {
                    self.stop_controller();
                    RESULT_OK
                }
                _ => {
                    Self::count(&mut self.errors.ctrl_invalid);
                    RESULT_NOT_OK
                }
            };
            self.complete(&chain, result, ctx)?;
        }
        Ok(())
    }
}

impl<B: CanBackend> VirtioDevice for VirtioCan<B> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        self.offered
    }

    fn accept_features(&self, f: u64) -> bool {
        // §5.20.3: at least one of CLASSIC and FD; RTR needs CLASSIC.
        let has = |b: u32| f & (1u64 << b) != 0;
        (has(F_CAN_CLASSIC) || has(F_CAN_FD)) && (!has(F_RTR_FRAMES) || has(F_CAN_CLASSIC))
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let cfg = self.status.to_le_bytes();
        if let Some(src) = cfg.get(offset..offset.saturating_add(data.len())) {
            data.copy_from_slice(src);
        }
    }

    fn write_config(&mut self, _offset: usize, _data: &[u8]) {
        // status is read-only.
    }

    fn activate(&mut self, features: u64) {
        self.features = Features::from_bits(features);
        self.late_ack = features & (1 << F_LATE_TX_ACK) != 0;
    }

    fn reset(&mut self) {
        if self.started {
            self.backend.stop();
        }
        self.started = false;
        self.features = Features::default();
        self.late_ack = false;
        // The chains belong to the driver again after a reset.
        self.pending = [None; PENDING];
    }

    fn queue_reset(&mut self, queue: u16) {
        if queue == TX_QUEUE {
            if self.started {
                self.backend.stop();
            }
            self.started = false;
            self.pending = [None; PENDING];
        }
    }

    fn queue_notify(&mut self, queue: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        match queue {
            TX_QUEUE => {
                self.retry_held(ctx)?;
                self.transmit(ctx)
            }
            RX_QUEUE => self.receive(ctx),
            CONTROL_QUEUE => self.control(ctx),
            _ => Ok(()),
        }
    }
}
