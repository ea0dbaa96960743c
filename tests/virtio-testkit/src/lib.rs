//! What every host test that runs the `virtio-drivers` crate against our
//! device side needs, once:
//!
//! - [`Ram`]: a test guest's RAM, one leaked page-aligned host allocation at
//!   [`RAM_BASE`]; the guest-side driver writes it through raw pointers, the
//!   device side copies through [`GuestMemory`]. No Rust reference to it
//!   ever exists, so the two raw-pointer views never alias a reference.
//! - [`install`] / [`alloc`] / [`ram`]: this thread's guest RAM and a bump
//!   allocator over it, for a test's `virtio_drivers::Hal` (a `Hal` has no
//!   `self`, so its memory is per thread).
//! - [`Vmm`]: what a VMM holds for one device: the `MmioTransport` register
//!   state machine and the guest RAM; a trapped QUEUE_NOTIFY runs the queue.
//! - [`TrapTransport`]: `virtio-drivers`' `Transport`, each call turned into
//!   the 32-bit register accesses its own MMIO transport would make, sent
//!   to any [`Registers`] (a [`Vmm`] in-process, or a test's own trap).
//!
//! Test support: a failed register access or an exhausted guest RAM is a
//! broken test, so it panics with a message (`expect`).

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use bulkhead_virtio::spec::reg;
use bulkhead_virtio::{GuestMemory, MemError, MmioTransport, VirtioDevice, WriteEffect};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{PhysAddr, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Guest-physical address of the test guest's RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Size of the test guest's RAM.
pub const RAM_SIZE: usize = 4 << 20;

/// A test guest's RAM (leaked for the process's life).
#[derive(Clone, Copy, Debug)]
pub struct Ram {
    ptr: NonNull<u8>,
}

impl Default for Ram {
    fn default() -> Self {
        Self::new()
    }
}

impl Ram {
    /// Fresh zeroed RAM.
    ///
    /// # Panics
    /// The host cannot allocate [`RAM_SIZE`] bytes.
    pub fn new() -> Self {
        let layout =
            std::alloc::Layout::from_size_align(RAM_SIZE, PAGE_SIZE).expect("guest RAM layout");
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        Self {
            ptr: NonNull::new(p).expect("guest RAM allocated"),
        }
    }

    /// The host pointer to the RAM's first byte.
    pub fn ptr(self) -> NonNull<u8> {
        self.ptr
    }

    /// Offset in RAM of `len` bytes at `gpa`.
    ///
    /// # Errors
    /// [`MemError::OutOfRange`] if any of them is outside the RAM.
    pub fn offset(gpa: u64, len: usize) -> Result<usize, MemError> {
        let off = usize::try_from(gpa.checked_sub(RAM_BASE).ok_or(MemError::OutOfRange)?)
            .map_err(|_| MemError::OutOfRange)?;
        match off.checked_add(len) {
            Some(end) if end <= RAM_SIZE => Ok(off),
            _ => Err(MemError::OutOfRange),
        }
    }

    /// The guest-physical address of a host buffer lying wholly inside this
    /// RAM, or `None`.
    pub fn gpa_of(self, buffer: NonNull<[u8]>) -> Option<u64> {
        let off = (buffer.as_ptr().cast::<u8>() as usize).checked_sub(self.ptr.as_ptr() as usize)?;
        (off.checked_add(buffer.len())? <= RAM_SIZE).then(|| RAM_BASE + off as u64)
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = Self::offset(gpa, buf.len())?;
        // SAFETY: `off + buf.len() <= RAM_SIZE` was checked; the allocation
        // is never freed; `buf` is a separate host buffer, so the ranges do
        // not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let off = Self::offset(gpa, data.len())?;
        // SAFETY: as in `read`, with the copy going the other way.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(off), data.len());
        }
        Ok(())
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        Self::offset(gpa, usize::try_from(len).map_err(|_| MemError::OutOfRange)?).map(|_| ())
    }
}

thread_local! {
    /// This thread's guest RAM and the bump allocator's next free offset.
    static GUEST: RefCell<Option<(Ram, usize)>> = const { RefCell::new(None) };
}

/// Makes `ram` this thread's guest RAM, with nothing allocated yet.
pub fn install(ram: Ram) {
    GUEST.with(|g| *g.borrow_mut() = Some((ram, 0)));
}

/// This thread's guest RAM.
///
/// # Panics
/// No [`install`] on this thread.
pub fn ram() -> Ram {
    GUEST.with(|g| {
        g.borrow()
            .as_ref()
            .expect("install() the guest RAM first")
            .0
    })
}

/// `len` bytes of this thread's guest RAM at an `align`-aligned offset
/// (never freed): their guest-physical address and host pointer.
///
/// # Panics
/// No [`install`], or the RAM is exhausted.
pub fn alloc(len: usize, align: usize) -> (PhysAddr, NonNull<u8>) {
    GUEST.with(|g| {
        let mut g = g.borrow_mut();
        let (ram, next) = g.as_mut().expect("install() the guest RAM first");
        let off = next.next_multiple_of(align);
        *next = off + len;
        assert!(*next <= RAM_SIZE, "test guest RAM exhausted");
        // SAFETY: `off < RAM_SIZE` (checked just above), inside the
        // allocation.
        let p = unsafe { ram.ptr.add(off) };
        (RAM_BASE + off as u64, p)
    })
}

/// What the VMM holds for one device: its register state machine and the
/// guest's RAM.
pub struct Vmm<D> {
    /// The virtio-mmio transport around the device.
    pub dev: MmioTransport<D>,
    /// The guest RAM the device's queues live in.
    pub ram: Ram,
    /// Used-buffer interrupts the device raised.
    pub irqs: u32,
    /// Config-change interrupts (counted by the test that raises them).
    pub config_irqs: u32,
}

impl<D: VirtioDevice> Vmm<D> {
    /// `dev` behind a fresh transport, over `ram`, shared with the
    /// [`TrapTransport`] that forwards to it.
    ///
    /// # Panics
    /// The device's description is not one `MmioTransport` accepts.
    pub fn shared(dev: D, ram: Ram) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            dev: MmioTransport::new(dev).expect("a valid device"),
            ram,
            irqs: 0,
            config_irqs: 0,
        }))
    }

    /// Runs queue `q` (what the VMM does on a trapped QUEUE_NOTIFY).
    pub fn kick(&mut self, q: u16) {
        if self.dev.process_queue(q, &mut self.ram) {
            self.irqs += 1;
        }
    }
}

/// One trapped register access at a time, as a VMM sees them.
pub trait Registers {
    /// A read of `width` bytes at `off` in the device's register window.
    fn read(&self, off: u64, width: u8) -> u64;
    /// A write of `width` bytes at `off`, with whatever it sets off.
    fn write(&mut self, off: u64, width: u8, value: u64);
}

impl<D: VirtioDevice> Registers for Rc<RefCell<Vmm<D>>> {
    fn read(&self, off: u64, width: u8) -> u64 {
        self.borrow_mut()
            .dev
            .read(off, width)
            .expect("a valid register read")
    }

    fn write(&mut self, off: u64, width: u8, value: u64) {
        let effect = self
            .borrow_mut()
            .dev
            .write(off, width, value)
            .expect("a valid register write");
        if let WriteEffect::QueueNotify(q) = effect {
            self.borrow_mut().kick(q);
        }
    }
}

/// `virtio-drivers`' `Transport` over trapped register accesses.
pub struct TrapTransport<R>(pub R);

/// The transport a test guest's driver uses over an in-process [`Vmm`].
pub type Forward<D> = TrapTransport<Rc<RefCell<Vmm<D>>>>;

impl<R: Registers> TrapTransport<R> {
    fn r(&self, off: u64) -> u32 {
        u32::try_from(self.0.read(off, 4)).expect("a 32-bit register")
    }

    fn w(&mut self, off: u64, v: u32) {
        self.0.write(off, 4, u64::from(v));
    }

    fn w64(&mut self, lo: u64, v: u64) {
        self.w(lo, (v & 0xffff_ffff) as u32);
        self.w(lo + 4, (v >> 32) as u32);
    }
}

#[allow(clippy::cast_possible_truncation)] // masked / shifted to 32 bits
impl<R: Registers> Transport for TrapTransport<R> {
    fn device_type(&self) -> DeviceType {
        // virtio-drivers 0.13 knows no CAN (36): such an id reads as Socket
        // (the CAN driver never asks).
        DeviceType::try_from(self.r(reg::DEVICE_ID)).unwrap_or(DeviceType::Socket)
    }
    fn read_device_features(&mut self) -> u64 {
        self.w(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.r(reg::DEVICE_FEATURES);
        self.w(reg::DEVICE_FEATURES_SEL, 1);
        u64::from(lo) | u64::from(self.r(reg::DEVICE_FEATURES)) << 32
    }
    fn write_driver_features(&mut self, f: u64) {
        self.w(reg::DRIVER_FEATURES_SEL, 0);
        self.w(reg::DRIVER_FEATURES, (f & 0xffff_ffff) as u32);
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, (f >> 32) as u32);
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.w(reg::QUEUE_SEL, queue.into());
        self.r(reg::QUEUE_NUM_MAX)
    }
    fn notify(&mut self, queue: u16) {
        self.w(reg::QUEUE_NOTIFY, queue.into());
    }
    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.r(reg::STATUS))
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.w(reg::STATUS, status.bits());
    }
    fn set_guest_page_size(&mut self, _size: u32) {
        // virtio-mmio v2 has no GuestPageSize register.
    }
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        desc: PhysAddr,
        driver: PhysAddr,
        device: PhysAddr,
    ) {
        self.w(reg::QUEUE_SEL, queue.into());
        self.w(reg::QUEUE_NUM, size);
        self.w64(reg::QUEUE_DESC_LOW, desc);
        self.w64(reg::QUEUE_DRIVER_LOW, driver);
        self.w64(reg::QUEUE_DEVICE_LOW, device);
        self.w(reg::QUEUE_READY, 1);
    }
    fn queue_unset(&mut self, queue: u16) {
        self.w(reg::QUEUE_SEL, queue.into());
        self.w(reg::QUEUE_READY, 0);
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.w(reg::QUEUE_SEL, queue.into());
        self.r(reg::QUEUE_READY) != 0
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        let s = self.r(reg::INTERRUPT_STATUS);
        self.w(reg::INTERRUPT_ACK, s);
        InterruptStatus::from_bits_retain(s)
    }
    fn read_config_generation(&self) -> u32 {
        self.r(reg::CONFIG_GENERATION)
    }
    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let size = size_of::<T>();
        if size > 8 {
            return Err(virtio_drivers::Error::ConfigSpaceTooSmall);
        }
        let mut bytes = [0u8; 8];
        let base = reg::CONFIG + offset as u64;
        // A naturally aligned field in one access of its width (as a
        // driver does); anything else byte by byte.
        if matches!(size, 1 | 2 | 4 | 8) && offset % size == 0 {
            bytes = self.0.read(base, size as u8).to_le_bytes();
        } else {
            for (i, b) in bytes.iter_mut().enumerate().take(size) {
                *b = self.0.read(base + i as u64, 1) as u8;
            }
        }
        T::read_from_bytes(&bytes[..size]).map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        let b = value.as_bytes();
        if b.len() > 8 {
            return Err(virtio_drivers::Error::ConfigSpaceTooSmall);
        }
        let mut v = [0u8; 8];
        v[..b.len()].copy_from_slice(b);
        self.0.write(
            reg::CONFIG + offset as u64,
            b.len() as u8,
            u64::from_le_bytes(v),
        );
        Ok(())
    }
}
