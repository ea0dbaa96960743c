//! A driver nobody here wrote against our device side: the `virtio-drivers`
//! crate's `VirtIOConsole` runs over a `Transport` that forwards every
//! register access to our [`MmioTransport`] (as the VMM does for a trapped
//! access), with its rings and DMA buffers in a test guest RAM that our
//! device side reaches only through [`GuestMemory`].
//!
//! Small device models sit behind it: a console (virtio-console, §5.3: rx
//! queue 0, tx queue 1, config `{cols, rows, max_nr_ports, emerg_wr}`) for
//! `VirtIOConsole`, and a RAM disk (virtio-blk, §5.2) for `VirtIOBlk`, whose
//! requests arrive as indirect tables.
#![allow(clippy::unwrap_used, clippy::panic, unsafe_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use bulkhead_virtio::spec::{feature, reg};
use bulkhead_virtio::{
    DescriptorChain, GuestMemory, MemError, MmioTransport, QueueContext, QueueError, VirtioDevice,
    WriteEffect,
};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::device::console::{Size, VirtIOConsole};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 4 << 20;

// ---------------------------------------------------------------- guest RAM

/// Guest RAM: one page-aligned host allocation. The guest-side driver writes
/// it through raw pointers handed out by [`TestHal`]; the device side copies
/// through [`GuestMemory`]. No Rust reference to it ever exists, so the two
/// raw-pointer views never alias a reference.
#[derive(Clone, Copy)]
struct Ram {
    ptr: NonNull<u8>,
}

impl Ram {
    fn new() -> Self {
        let layout = std::alloc::Layout::from_size_align(RAM_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        Self {
            ptr: NonNull::new(p).unwrap(),
        }
    }

    fn offset(gpa: u64, len: usize) -> Result<usize, MemError> {
        let off = usize::try_from(gpa.checked_sub(RAM_BASE).ok_or(MemError::OutOfRange)?)
            .map_err(|_| MemError::OutOfRange)?;
        match off.checked_add(len) {
            Some(end) if end <= RAM_SIZE => Ok(off),
            _ => Err(MemError::OutOfRange),
        }
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = Self::offset(gpa, buf.len())?;
        // SAFETY: `off + buf.len() <= RAM_SIZE` was checked; the allocation
        // lives for the whole test (it is leaked); `buf` is a separate
        // host buffer, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let off = Self::offset(gpa, data.len())?;
        // SAFETY: as in `read`, with the copy going the other way.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(off), data.len())
        };
        Ok(())
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        Self::offset(gpa, usize::try_from(len).map_err(|_| MemError::OutOfRange)?).map(|_| ())
    }
}

thread_local! {
    /// This thread's guest RAM and bump allocator (the Hal is static).
    static GUEST: RefCell<Option<(Ram, usize)>> = const { RefCell::new(None) };
}

fn alloc(len: usize) -> (PhysAddr, NonNull<u8>) {
    GUEST.with(|g| {
        let mut g = g.borrow_mut();
        let (ram, next) = g.as_mut().unwrap();
        let off = *next;
        *next = (off + len).next_multiple_of(PAGE_SIZE);
        assert!(*next <= RAM_SIZE, "test guest RAM exhausted");
        // SAFETY: `off < RAM_SIZE`, inside the allocation.
        let p = unsafe { ram.ptr.add(off) };
        (RAM_BASE + off as u64, p)
    })
}

/// The guest's HAL: DMA memory and shared (bounce) buffers come from guest
/// RAM, as in a guest whose only memory the VMM can see is its RAM region.
struct TestHal;

// SAFETY: `dma_alloc` returns distinct, zeroed, page-aligned ranges of the
// guest RAM allocation, which outlives every user; `share` copies into such a
// range and `unshare` copies back, so the device only sees guest RAM.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        alloc(pages * PAGE_SIZE)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        panic!("registers are reached through the forwarding transport, not mapped")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let (gpa, p) = alloc(len.max(1));
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid for `len`
            // bytes; `p` has room for `len` bytes of guest RAM.
            unsafe { std::ptr::copy_nonoverlapping(buffer.as_ptr().cast::<u8>(), p.as_ptr(), len) };
        }
        gpa
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        if direction != BufferDirection::DriverToDevice {
            let off = Ram::offset(paddr, buffer.len()).unwrap();
            GUEST.with(|g| {
                let ram = g.borrow().as_ref().unwrap().0;
                // SAFETY: `off + len` is inside guest RAM (checked); the
                // caller guarantees `buffer` is valid for writes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        ram.ptr.as_ptr().add(off),
                        buffer.as_ptr().cast::<u8>(),
                        buffer.len(),
                    )
                };
            });
        }
    }
}

// ---------------------------------------------------------- console device

const ROWS: u16 = 25;
const COLS: u16 = 80;

/// A minimal virtio-console: TX bytes go to `output`, `input` bytes are
/// delivered to RX buffers, and an RX buffer is popped only when there is
/// something to put in it (never lose a guest buffer).
#[derive(Default)]
struct Console {
    output: Vec<u8>,
    input: VecDeque<u8>,
    features: Option<u64>,
}

impl VirtioDevice for Console {
    fn device_id(&self) -> u32 {
        3
    }
    fn features(&self) -> u64 {
        // SIZE, EMERG_WRITE.
        1 | 1 << 2 | feature::INDIRECT_DESC | feature::EVENT_IDX
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 16]
    }
    fn config_len(&self) -> usize {
        12
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut cfg = [0u8; 12];
        cfg[0..2].copy_from_slice(&COLS.to_le_bytes());
        cfg[2..4].copy_from_slice(&ROWS.to_le_bytes());
        cfg[4..8].copy_from_slice(&1u32.to_le_bytes());
        data.copy_from_slice(&cfg[offset..offset + data.len()]);
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        // emerg_wr: the low byte of the 32-bit field at offset 8.
        if offset == 8 {
            self.output.push(data[0]);
        }
    }
    fn activate(&mut self, features: u64) {
        self.features = Some(features);
    }
    fn reset(&mut self) {
        self.features = None;
    }
    fn queue_notify(&mut self, queue: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        match queue {
            1 => {
                while let Some(chain) = ctx.pop::<4>()? {
                    let mut buf = vec![0u8; usize::try_from(chain.readable_len()).unwrap()];
                    let n = chain.reader().read(ctx.memory(), &mut buf).unwrap();
                    self.output.extend_from_slice(&buf[..n]);
                    ctx.add_used(&chain, 0)?;
                }
            }
            _ => {
                while !self.input.is_empty() {
                    let Some(chain) = ctx.pop::<4>()? else { break };
                    let take = self
                        .input
                        .len()
                        .min(usize::try_from(chain.writable_len()).unwrap());
                    let data: Vec<u8> = self.input.drain(..take).collect();
                    let mut w = chain.writer();
                    w.write(ctx.memory_mut(), &data).unwrap();
                    let len = w.written();
                    ctx.add_used(&chain, len)?;
                }
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------ forwarding transport

/// What the VMM would hold: the device's register state machine and the
/// guest's RAM.
struct Vmm<D> {
    dev: MmioTransport<D>,
    ram: Ram,
    irqs: u32,
}

impl<D: VirtioDevice> Vmm<D> {
    fn read(&mut self, off: u64) -> u32 {
        u32::try_from(self.dev.read(off, 4).unwrap()).unwrap()
    }

    /// A trapped write: on QueueNotify, run the queue (the VMM's job).
    fn write(&mut self, off: u64, v: u32) {
        if let WriteEffect::QueueNotify(q) = self.dev.write(off, 4, u64::from(v)).unwrap() {
            self.kick(q);
        }
    }

    fn kick(&mut self, q: u16) {
        if self.dev.process_queue(q, &mut self.ram) {
            self.irqs += 1;
        }
    }
}

/// `virtio-drivers`' `Transport`, each call turned into the register
/// accesses its own `MmioTransport` would make.
struct Forward<D>(Rc<RefCell<Vmm<D>>>);

impl<D: VirtioDevice> Forward<D> {
    fn r(&self, off: u64) -> u32 {
        self.0.borrow_mut().read(off)
    }
    fn w(&mut self, off: u64, v: u32) {
        self.0.borrow_mut().write(off, v);
    }
    fn w64(&mut self, lo: u64, v: u64) {
        self.w(lo, u32::try_from(v & 0xffff_ffff).unwrap());
        self.w(lo + 4, u32::try_from(v >> 32).unwrap());
    }
}

impl<D: VirtioDevice> Transport for Forward<D> {
    fn device_type(&self) -> DeviceType {
        DeviceType::try_from(self.r(reg::DEVICE_ID)).unwrap()
    }
    fn read_device_features(&mut self) -> u64 {
        self.w(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.r(reg::DEVICE_FEATURES);
        self.w(reg::DEVICE_FEATURES_SEL, 1);
        u64::from(lo) | u64::from(self.r(reg::DEVICE_FEATURES)) << 32
    }
    fn write_driver_features(&mut self, f: u64) {
        self.w(reg::DRIVER_FEATURES_SEL, 0);
        self.w(
            reg::DRIVER_FEATURES,
            u32::try_from(f & 0xffff_ffff).unwrap(),
        );
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, u32::try_from(f >> 32).unwrap());
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
        let mut bytes = [0u8; 8];
        let base = reg::CONFIG + offset as u64;
        let mut vmm = self.0.borrow_mut();
        if matches!(size, 1 | 2 | 4 | 8) && offset % size == 0 {
            let v = vmm.dev.read(base, u8::try_from(size).unwrap()).unwrap();
            bytes = v.to_le_bytes();
        } else {
            for (i, b) in bytes.iter_mut().enumerate().take(size) {
                *b = u8::try_from(vmm.dev.read(base + i as u64, 1).unwrap()).unwrap();
            }
        }
        Ok(T::read_from_bytes(&bytes[..size]).unwrap())
    }
    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        let b = value.as_bytes();
        let mut v = [0u8; 8];
        v[..b.len()].copy_from_slice(b);
        let width = u8::try_from(b.len()).unwrap();
        self.0
            .borrow_mut()
            .dev
            .write(reg::CONFIG + offset as u64, width, u64::from_le_bytes(v))
            .unwrap();
        Ok(())
    }
}

// ------------------------------------------------------------------- test

fn console_round_trip() {
    let ram = Ram::new();
    GUEST.with(|g| *g.borrow_mut() = Some((ram, 0)));
    let vmm = Rc::new(RefCell::new(Vmm {
        dev: MmioTransport::new(Console::default()).unwrap(),
        ram,
        irqs: 0,
    }));
    let mut console =
        VirtIOConsole::<TestHal, Forward<Console>>::new(Forward(vmm.clone())).unwrap();

    // Negotiation went through our FEATURES_OK checks.
    let negotiated = vmm.borrow().dev.device().features.unwrap();
    assert_eq!(
        negotiated,
        1 | 1 << 2 | feature::INDIRECT_DESC | feature::EVENT_IDX | feature::VERSION_1
    );
    assert_eq!(
        console.size().unwrap(),
        Some(Size {
            columns: COLS,
            rows: ROWS
        })
    );

    // TX: the driver busy-waits on our used ring.
    console.send_bytes(b"hello from virtio-drivers\n").unwrap();
    writeln!(console, "line {}", 2).unwrap();
    for &c in b"ok" {
        console.send(c).unwrap();
    }
    console.emergency_write(b'!').unwrap();
    assert_eq!(
        vmm.borrow().dev.device().output,
        b"hello from virtio-drivers\nline 2\nok!"
    );

    // RX: the driver posted one buffer at init; the device had nothing, so
    // it left the buffer available. Input arrives; the VMM kicks queue 0.
    assert_eq!(console.recv(true).unwrap(), None);
    vmm.borrow_mut().dev.device_mut().input.extend(b"hi");
    vmm.borrow_mut().kick(0);
    assert!(
        vmm.borrow().dev.interrupt_pending(),
        "EVENT_IDX asked for this interrupt"
    );
    assert!(console.ack_interrupt().unwrap());
    assert!(!vmm.borrow().dev.interrupt_pending());
    assert_eq!(console.recv(true).unwrap(), Some(b'h'));
    assert_eq!(console.recv(true).unwrap(), Some(b'i'));
    assert_eq!(console.recv(true).unwrap(), None);

    // Nothing the driver did was a rule violation.
    let v = vmm.borrow();
    assert_eq!(v.dev.stats(), &Default::default());
    assert_eq!(v.dev.queue(1).unwrap().rejected_chains(), 0);
    assert_eq!(v.dev.status() & 64, 0);
    drop(v);
    drop(console);
    // The driver's Drop disabled both queues through QueueReady = 0: the
    // device may no longer touch them, even when kicked.
    assert!(!vmm.borrow().dev.queue(0).unwrap().ready());
    assert!(!vmm.borrow().dev.queue(1).unwrap().ready());
    vmm.borrow_mut().dev.device_mut().input.extend(b"late");
    vmm.borrow_mut().kick(0);
    assert_eq!(
        vmm.borrow().dev.device().input.len(),
        4,
        "nothing delivered to a disabled queue"
    );
}

/// Runs `f` in its own thread (fresh guest RAM) under a watchdog: the
/// driver busy-waits on the used ring, so a device bug would hang it.
fn with_watchdog(f: fn()) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(f);
        let _ = tx.send(r.is_ok());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(true) => {}
        Ok(false) => panic!("the driver scenario failed (see the panic above)"),
        Err(_) => panic!("watchdog: the virtio-drivers driver hung waiting for our device"),
    }
}

#[test]
fn virtio_drivers_console_talks_to_our_device_side() {
    with_watchdog(console_round_trip);
}

#[test]
fn virtio_drivers_blk_talks_to_our_device_side_through_indirect_tables() {
    with_watchdog(blk_round_trip);
}

// -------------------------------------------------------------- blk device

const SECTORS: u64 = 16;
const BLK_ID: &[u8; 20] = b"bulkhead-ramdisk-001";

/// A RAM disk: IN, OUT, FLUSH and GET_ID; anything else UNSUPP; a sector
/// range past the end IOERR.
struct RamDisk {
    disk: Vec<u8>,
    features: Option<u64>,
    requests: u32,
}

impl RamDisk {
    fn serve(&mut self, chain: &DescriptorChain<8>, ctx: &mut QueueContext<'_>) -> u32 {
        let mut r = chain.reader();
        let mut hdr = [0u8; 16];
        let mut w = chain.writer();
        if r.read_exact(ctx.memory(), &mut hdr).is_err() || chain.writable_len() == 0 {
            return 0;
        }
        let kind = u32::from_le_bytes(hdr[..4].try_into().unwrap());
        let sector = u64::from_le_bytes(hdr[8..].try_into().unwrap());
        let data_in = usize::try_from(chain.writable_len() - 1).unwrap();
        let range = |len: usize| {
            let start = usize::try_from(sector.checked_mul(512)?).ok()?;
            let end = start.checked_add(len)?;
            (end <= self.disk.len()).then_some(start..end)
        };
        let status = match kind {
            0 => match range(data_in) {
                Some(rg) => {
                    let data = self.disk[rg].to_vec();
                    w.write_all(ctx.memory_mut(), &data).unwrap();
                    0
                }
                None => 1,
            },
            1 => {
                let len = usize::try_from(r.remaining()).unwrap();
                match range(len) {
                    Some(rg) => {
                        let mut data = vec![0u8; len];
                        r.read_exact(ctx.memory(), &mut data).unwrap();
                        self.disk[rg].copy_from_slice(&data);
                        0
                    }
                    None => 1,
                }
            }
            4 => 0,
            8 => {
                w.write_all(ctx.memory_mut(), BLK_ID).unwrap();
                0
            }
            _ => 2,
        };
        // The status byte is the last writable byte.
        let skip = usize::try_from(w.remaining() - 1).unwrap();
        w.write_all(ctx.memory_mut(), &vec![0; skip]).unwrap();
        w.write_all(ctx.memory_mut(), &[status]).unwrap();
        w.written()
    }
}

impl VirtioDevice for RamDisk {
    fn device_id(&self) -> u32 {
        2
    }
    fn features(&self) -> u64 {
        // FLUSH.
        1 << 9 | feature::INDIRECT_DESC | feature::EVENT_IDX
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16]
    }
    fn config_len(&self) -> usize {
        24
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        let mut cfg = [0u8; 24];
        cfg[..8].copy_from_slice(&SECTORS.to_le_bytes());
        data.copy_from_slice(&cfg[offset..offset + data.len()]);
    }
    fn write_config(&mut self, _offset: usize, _data: &[u8]) {}
    fn activate(&mut self, features: u64) {
        self.features = Some(features);
    }
    fn reset(&mut self) {
        self.features = None;
    }
    fn queue_notify(&mut self, _queue: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        while let Some(chain) = ctx.pop::<8>()? {
            self.requests += 1;
            let len = self.serve(&chain, ctx);
            ctx.add_used(&chain, len)?;
        }
        Ok(())
    }
}

fn blk_round_trip() {
    let ram = Ram::new();
    GUEST.with(|g| *g.borrow_mut() = Some((ram, 0)));
    let disk = RamDisk {
        disk: vec![0; 512 * 16],
        features: None,
        requests: 0,
    };
    let vmm = Rc::new(RefCell::new(Vmm {
        dev: MmioTransport::new(disk).unwrap(),
        ram,
        irqs: 0,
    }));
    let mut blk = VirtIOBlk::<TestHal, Forward<RamDisk>>::new(Forward(vmm.clone())).unwrap();
    let negotiated = vmm.borrow().dev.device().features.unwrap();
    assert_eq!(
        negotiated,
        1 << 9 | feature::INDIRECT_DESC | feature::EVENT_IDX | feature::VERSION_1
    );
    assert_eq!(blk.capacity(), SECTORS);

    let pattern: Vec<u8> = (0..1024u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    blk.write_blocks(3, &pattern).unwrap();
    assert_eq!(
        &vmm.borrow().dev.device().disk[3 * 512..5 * 512],
        pattern.as_slice()
    );
    let mut back = vec![0u8; 1024];
    blk.read_blocks(3, &mut back).unwrap();
    assert_eq!(back, pattern);
    // Past the end: the device answers IOERR, the driver reports it.
    assert!(blk
        .read_blocks(usize::try_from(SECTORS).unwrap(), &mut back[..512])
        .is_err());
    blk.flush().unwrap();
    let mut id = [0u8; 20];
    assert_eq!(blk.device_id(&mut id).unwrap(), 20);
    assert_eq!(&id, BLK_ID);

    // The driver used indirect tables (descriptor 0 of the queue names one).
    let desc = vmm.borrow().dev.queue(0).unwrap().addresses().0;
    let mut d = [0u8; 16];
    ram.read(desc, &mut d).unwrap();
    assert_eq!(u16::from_le_bytes([d[12], d[13]]) & 4, 4, "INDIRECT");

    let v = vmm.borrow();
    assert_eq!(
        v.dev.device().requests,
        5,
        "write, read, read past the end, flush, get-id"
    );
    assert_eq!(v.dev.stats(), &Default::default());
    assert_eq!(v.dev.queue(0).unwrap().rejected_chains(), 0);
}
