//! Guest-side virtio-can driver (VIRTIO 1.4 §5.20), written from the spec
//! for test guests: `virtio-drivers` has none. It runs over that crate's
//! [`Transport`] and [`Hal`] traits and uses its split-queue [`VirtQueue`].
//!
//! Queues: 0 tx, 1 rx, 2 control. Every message buffer lives in one DMA page
//! from [`Hal::dma_alloc`], so nothing moves while the device owns it:
//! `N` RX buffers, `N` TX messages each with its result byte, and one
//! control request/response.
//!
//! The driver is polled (no interrupts needed): [`VirtioCanDriver::send`]
//! queues a frame, [`VirtioCanDriver::poll_tx`] returns finished ones,
//! [`VirtioCanDriver::recv`] takes a received frame and gives the buffer
//! back. Control requests wait for the device's answer (a spin in a test
//! guest whose device is emulated synchronously).
#![no_std]
#![deny(unsafe_code)]

use core::ptr::NonNull;

use bulkhead_can_frame::virtio::{
    parse_rx, serialise, Features, VirtioCanError, F_CAN_CLASSIC, F_CAN_FD, F_LATE_TX_ACK,
    F_RTR_FRAMES, MAX_MESSAGE_LEN, MSG_TX, RESULT_OK,
};
use bulkhead_can_frame::Frame;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};

/// Transmit queue.
pub const TX_QUEUE: u16 = 0;
/// Receive queue.
pub const RX_QUEUE: u16 = 1;
/// Control queue.
pub const CONTROL_QUEUE: u16 = 2;
/// Control message: start.
pub const CTRL_START: u16 = 0x0201;
/// Control message: stop.
pub const CTRL_STOP: u16 = 0x0202;
/// `status` bit: bus-off.
pub const STATUS_BUSOFF: u16 = 1;
/// VIRTIO_F_VERSION_1.
const VERSION_1: u64 = 1 << 32;
/// Size of one message slot.
const SLOT: usize = MAX_MESSAGE_LEN;

/// Why the driver failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// the device refused the features (FEATURES_OK not kept)
    FeaturesRefused,
    /// the device offers neither classic CAN nor CAN FD
    NoFrameFormat,
    /// a queue operation failed
    Queue(virtio_drivers::Error),
    /// every TX slot is in use
    TxFull,
    /// the frame is not allowed by the negotiated features
    Frame(VirtioCanError),
    /// a control request was answered NOT_OK
    Refused,
    /// the device returned an RX buffer with nothing (or garbage) in it
    EmptyRx,
    /// the queue size N is not usable (0, not a power of two, too big)
    BadSize,
}

impl From<virtio_drivers::Error> for DriverError {
    fn from(e: virtio_drivers::Error) -> Self {
        Self::Queue(e)
    }
}

/// What the driver asks for; only offered ones are negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// VIRTIO_CAN_F_CAN_CLASSIC.
    pub classic: bool,
    /// VIRTIO_CAN_F_CAN_FD.
    pub fd: bool,
    /// VIRTIO_CAN_F_RTR_FRAMES.
    pub rtr: bool,
    /// VIRTIO_CAN_F_LATE_TX_ACK.
    pub late_tx_ack: bool,
}

impl Default for Wanted {
    fn default() -> Self {
        Self {
            classic: true,
            fd: true,
            rtr: true,
            late_tx_ack: true,
        }
    }
}

impl Wanted {
    fn bits(&self) -> u64 {
        let b = |on: bool, bit: u32| if on { 1u64 << bit } else { 0 };
        b(self.classic, F_CAN_CLASSIC)
            | b(self.fd, F_CAN_FD)
            | b(self.rtr, F_RTR_FRAMES)
            | b(self.late_tx_ack, F_LATE_TX_ACK)
    }
}

/// A finished transmission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxDone {
    /// The slot [`VirtioCanDriver::send`] returned.
    pub slot: usize,
    /// The device answered OK.
    pub ok: bool,
}

/// The driver, with `N` buffers per queue (a power of two, `N × 2 × 80 +
/// N + 3` bytes must fit a page).
pub struct VirtioCanDriver<H: Hal, T: Transport, const N: usize> {
    transport: T,
    tx: VirtQueue<H, N>,
    rx: VirtQueue<H, N>,
    ctl: VirtQueue<H, N>,
    page: NonNull<u8>,
    page_pa: u64,
    tx_token: [Option<u16>; N],
    tx_len: [usize; N],
    rx_token: [Option<u16>; N],
    rx_posted: [usize; N],
    rx_len: usize,
    features: u64,
}

impl<H: Hal, T: Transport, const N: usize> VirtioCanDriver<H, T, N> {
    const RX_OFF: usize = 0;
    const TX_OFF: usize = N * SLOT;
    const RES_OFF: usize = 2 * N * SLOT;
    const CTL_OFF: usize = 2 * N * SLOT + N;

    /// Initialises the device (§3.1.1) asking for `wanted`, sets up the
    /// queues and posts every RX buffer. The controller is still stopped.
    ///
    /// `virtio-drivers`' `DeviceType` has no CAN (36), so `Transport` cannot
    /// say what the device is: the caller checks the DeviceID register (36)
    /// before handing the transport over.
    ///
    /// # Errors
    /// [`DriverError`].
    pub fn new(mut transport: T, wanted: Wanted) -> Result<Self, DriverError> {
        if Self::CTL_OFF + 3 > PAGE_SIZE || N == 0 || !N.is_power_of_two() {
            return Err(DriverError::BadSize);
        }
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let mut features = offered & (wanted.bits() | VERSION_1);
        if features & (1 << F_CAN_CLASSIC) == 0 {
            // RTR needs CLASSIC (§5.20.3).
            features &= !(1 << F_RTR_FRAMES);
        }
        transport.write_driver_features(features);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            transport.set_status(DeviceStatus::FAILED);
            return Err(
                if features & ((1 << F_CAN_CLASSIC) | (1 << F_CAN_FD)) == 0 {
                    DriverError::NoFrameFormat
                } else {
                    DriverError::FeaturesRefused
                },
            );
        }
        transport.set_guest_page_size(u32::try_from(PAGE_SIZE).unwrap_or(4096));
        let tx = VirtQueue::new(&mut transport, TX_QUEUE, false, false)?;
        let rx = VirtQueue::new(&mut transport, RX_QUEUE, false, false)?;
        let ctl = VirtQueue::new(&mut transport, CONTROL_QUEUE, false, false)?;
        let (page_pa, page) = H::dma_alloc(1, BufferDirection::Both);
        let mut d = Self {
            transport,
            tx,
            rx,
            ctl,
            page,
            page_pa,
            tx_token: [None; N],
            tx_len: [0; N],
            rx_token: [None; N],
            rx_posted: [SLOT; N],
            rx_len: SLOT,
            features,
        };
        for i in 0..N {
            d.post_rx(i)?;
        }
        d.transport.finish_init();
        d.transport.notify(RX_QUEUE);
        Ok(d)
    }

    /// The negotiated feature bits.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The transport (a test guest reads its interrupt state through it).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Bytes `[off, off + len)` of the DMA page.
    #[allow(unsafe_code)]
    fn bytes(&mut self, off: usize, len: usize) -> &mut [u8] {
        debug_assert!(off + len <= PAGE_SIZE);
        // SAFETY: `page` is one page from `H::dma_alloc`, owned by this
        // driver for its whole life; callers ask only for ranges inside it
        // (the constants above are checked against PAGE_SIZE in `new`), and
        // `&mut self` makes this the only reference at a time.
        unsafe { core::slice::from_raw_parts_mut(self.page.as_ptr().add(off), len) }
    }

    /// Posts RX buffer `i` (of the current RX length).
    #[allow(unsafe_code)]
    fn post_rx(&mut self, i: usize) -> Result<(), DriverError> {
        let len = self.rx_len;
        let buf = self.bytes(Self::RX_OFF + i * SLOT, len);
        let buf: *mut [u8] = buf;
        // SAFETY: the buffer is in the driver's DMA page and is not touched
        // again until `pop_used` returns its token (`recv`).
        let token = unsafe { self.rx.add(&[], &mut [&mut *buf])? };
        self.rx_token[i] = Some(token);
        self.rx_posted[i] = len;
        Ok(())
    }

    /// Length of the RX buffers posted from now on (a test guest shortens
    /// them to check the device never loses a frame to a short buffer).
    pub fn set_rx_buffer_len(&mut self, len: usize) {
        self.rx_len = len.clamp(1, SLOT);
    }

    /// Sends a control message and waits for the answer.
    #[allow(unsafe_code)]
    fn control(&mut self, msg_type: u16) -> Result<(), DriverError> {
        self.bytes(Self::CTL_OFF, 2)
            .copy_from_slice(&msg_type.to_le_bytes());
        self.bytes(Self::CTL_OFF + 2, 1)[0] = 0xff;
        let req: *mut [u8] = self.bytes(Self::CTL_OFF, 2);
        let resp: *mut [u8] = self.bytes(Self::CTL_OFF + 2, 1);
        // SAFETY: both ranges are in the DMA page, disjoint, and not touched
        // until `add_notify_wait_pop` returns (it pops the same buffers).
        let r = unsafe {
            self.ctl
                .add_notify_wait_pop(&[&*req], &mut [&mut *resp], &mut self.transport)
        };
        r?;
        if self.bytes(Self::CTL_OFF + 2, 1)[0] == RESULT_OK {
            Ok(())
        } else {
            Err(DriverError::Refused)
        }
    }

    /// Sends a raw control message (a test guest checks bad types).
    ///
    /// # Errors
    /// [`DriverError::Refused`] when answered NOT_OK.
    pub fn control_raw(&mut self, msg_type: u16) -> Result<(), DriverError> {
        self.control(msg_type)
    }

    /// Starts the controller.
    ///
    /// # Errors
    /// [`DriverError::Refused`] when the device answers NOT_OK.
    pub fn start(&mut self) -> Result<(), DriverError> {
        self.control(CTRL_START)
    }

    /// Stops the controller; pending TX complete NOT_OK.
    ///
    /// # Errors
    /// [`DriverError::Refused`] when the device answers NOT_OK.
    pub fn stop(&mut self) -> Result<(), DriverError> {
        self.control(CTRL_STOP)
    }

    /// Config `status` (bit 0 BUSOFF).
    pub fn status(&self) -> u16 {
        self.transport
            .read_config_space::<u16>(0)
            .map(u16::from_le)
            .unwrap_or(0)
    }

    /// Whether the device reports bus-off.
    pub fn bus_off(&self) -> bool {
        self.status() & STATUS_BUSOFF != 0
    }

    /// Queues `frame`; returns its slot.
    ///
    /// # Errors
    /// [`DriverError::Frame`] when the negotiated features do not allow it,
    /// [`DriverError::TxFull`], [`DriverError::Queue`].
    pub fn send(&mut self, frame: &Frame) -> Result<usize, DriverError> {
        let f = Features::from_bits(self.features);
        if (frame.is_fd() && !f.fd) || (!frame.is_fd() && !f.classic) {
            return Err(DriverError::Frame(if frame.is_fd() {
                VirtioCanError::FdNotNegotiated
            } else {
                VirtioCanError::ClassicNotNegotiated
            }));
        }
        if frame.is_remote() && !f.rtr {
            return Err(DriverError::Frame(VirtioCanError::RtrNotNegotiated));
        }
        let mut msg = [0u8; SLOT];
        let n = serialise(frame, MSG_TX, &mut msg).map_err(DriverError::Frame)?;
        self.send_raw(&msg[..n])
    }

    /// Queues a raw TX message (a test guest sends malformed ones); returns
    /// its slot.
    ///
    /// # Errors
    /// [`DriverError::TxFull`], [`DriverError::Queue`].
    #[allow(unsafe_code)]
    pub fn send_raw(&mut self, msg: &[u8]) -> Result<usize, DriverError> {
        let slot = self
            .tx_token
            .iter()
            .position(Option::is_none)
            .ok_or(DriverError::TxFull)?;
        let n = msg.len().min(SLOT);
        self.bytes(Self::TX_OFF + slot * SLOT, n)
            .copy_from_slice(&msg[..n]);
        self.bytes(Self::RES_OFF + slot, 1)[0] = 0xff;
        let req: *mut [u8] = self.bytes(Self::TX_OFF + slot * SLOT, n);
        let res: *mut [u8] = self.bytes(Self::RES_OFF + slot, 1);
        // SAFETY: disjoint ranges of the DMA page, untouched until
        // `pop_used` returns this token (`poll_tx`).
        let token = unsafe { self.tx.add(&[&*req], &mut [&mut *res])? };
        self.tx_token[slot] = Some(token);
        self.tx_len[slot] = n;
        if self.tx.should_notify() {
            self.transport.notify(TX_QUEUE);
        }
        Ok(slot)
    }

    /// TX messages queued and not yet finished.
    pub fn tx_in_flight(&self) -> usize {
        self.tx_token.iter().flatten().count()
    }

    /// The next finished transmission.
    #[allow(unsafe_code)]
    pub fn poll_tx(&mut self) -> Option<TxDone> {
        let token = self.tx.peek_used()?;
        let slot = self.tx_token.iter().position(|&t| t == Some(token))?;
        let n = self.tx_len[slot];
        let req: *mut [u8] = self.bytes(Self::TX_OFF + slot * SLOT, n);
        let res: *mut [u8] = self.bytes(Self::RES_OFF + slot, 1);
        // SAFETY: the same buffers `send_raw` added under this token.
        let used = unsafe { self.tx.pop_used(token, &[&*req], &mut [&mut *res]) };
        self.tx_token[slot] = None;
        let ok = matches!(used, Ok(1..)) && self.bytes(Self::RES_OFF + slot, 1)[0] == RESULT_OK;
        Some(TxDone { slot, ok })
    }

    /// Takes a received frame, if any, and gives its buffer back.
    ///
    /// # Errors
    /// [`DriverError::EmptyRx`] when the device returned a buffer with no
    /// valid message (e.g. one too short for the waiting frame).
    #[allow(unsafe_code)]
    pub fn recv(&mut self) -> Result<Option<Frame>, DriverError> {
        let Some(token) = self.rx.peek_used() else {
            return Ok(None);
        };
        let Some(i) = self.rx_token.iter().position(|&t| t == Some(token)) else {
            return Err(DriverError::EmptyRx);
        };
        let len = self.rx_len_posted(i);
        let buf: *mut [u8] = self.bytes(Self::RX_OFF + i * SLOT, len);
        // SAFETY: the buffer `post_rx` added under this token.
        let used = unsafe { self.rx.pop_used(token, &[], &mut [&mut *buf])? };
        self.rx_token[i] = None;
        let n = usize::try_from(used).unwrap_or(0).min(len);
        let mut msg = [0u8; SLOT];
        msg[..n].copy_from_slice(&self.bytes(Self::RX_OFF + i * SLOT, n)[..n]);
        self.post_rx(i)?;
        if self.rx.should_notify() {
            self.transport.notify(RX_QUEUE);
        }
        parse_rx(&msg[..n], Features::from_bits(self.features))
            .map(Some)
            .map_err(|_| DriverError::EmptyRx)
    }

    /// The length buffer `i` was posted with (`pop_used` needs the very
    /// slice `add` got; a length change applies to re-posts only).
    fn rx_len_posted(&self, i: usize) -> usize {
        self.rx_posted[i]
    }
}

impl<H: Hal, T: Transport, const N: usize> Drop for VirtioCanDriver<H, T, N> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // Reset first: the device must not touch the buffers once freed.
        self.transport.set_status(DeviceStatus::empty());
        // SAFETY: the page came from `H::dma_alloc(1, ..)` in `new`, the
        // device was just reset so it holds no buffer in it, and no slice
        // of it outlives this call.
        unsafe {
            H::dma_dealloc(self.page_pa, self.page, 1);
        }
    }
}
