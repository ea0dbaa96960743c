//! A driver nobody here wrote against our device side: the `virtio-drivers`
//! crate's `VirtIOConsole` runs over a `Transport` that forwards every
//! register access to our `MmioTransport` (as the VMM does for a trapped
//! access; `bulkhead-virtio-testkit`'s `TrapTransport` over its `Vmm`), with its rings and DMA buffers in a test guest RAM that our
//! device side reaches only through [`GuestMemory`].
//!
//! Small device models sit behind it: a console (virtio-console, §5.3: rx
//! queue 0, tx queue 1, config `{cols, rows, max_nr_ports, emerg_wr}`) for
//! `VirtIOConsole`, and a RAM disk (virtio-blk, §5.2) for `VirtIOBlk`, whose
//! requests arrive as indirect tables.
#![allow(clippy::unwrap_used, clippy::panic, unsafe_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::ptr::NonNull;
use std::sync::mpsc;
use std::time::Duration;

use bulkhead_virtio::spec::feature;
use bulkhead_virtio::{DescriptorChain, GuestMemory, QueueContext, QueueError, VirtioDevice};
use bulkhead_virtio_testkit::{alloc, install, ram, Forward, Ram, TrapTransport, Vmm};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::device::console::{Size, VirtIOConsole};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// The guest's HAL: DMA memory and shared (bounce) buffers come from guest
/// RAM, as in a guest whose only memory the VMM can see is its RAM region.
struct TestHal;

// SAFETY: `dma_alloc` returns distinct, zeroed, page-aligned ranges of the
// guest RAM allocation, which outlives every user; `share` copies into such a
// range and `unshare` copies back, so the device only sees guest RAM.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        alloc(pages * PAGE_SIZE, PAGE_SIZE)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        panic!("registers are reached through the forwarding transport, not mapped")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let (gpa, p) = alloc(len.max(1), PAGE_SIZE);
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
            // SAFETY: `off + len` is inside guest RAM (checked); the
            // caller guarantees `buffer` is valid for writes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    ram().ptr().as_ptr().add(off),
                    buffer.as_ptr().cast::<u8>(),
                    buffer.len(),
                )
            };
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

// ------------------------------------------------------------------- test

fn console_round_trip() {
    let ram = Ram::new();
    install(ram);
    let vmm = Vmm::shared(Console::default(), ram);
    let mut console =
        VirtIOConsole::<TestHal, Forward<Console>>::new(TrapTransport(vmm.clone())).unwrap();

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
    install(ram);
    let disk = RamDisk {
        disk: vec![0; 512 * 16],
        features: None,
        requests: 0,
    };
    let vmm = Vmm::shared(disk, ram);
    let mut blk = VirtIOBlk::<TestHal, Forward<RamDisk>>::new(TrapTransport(vmm.clone())).unwrap();
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
