//! The whole storage path in one process: `virtio-drivers`' `VirtIOBlk`
//! (code nobody here wrote) in three test guests → forwarded register
//! accesses → our virtio-mmio transport and virtio-blk device → the block
//! virtualiser → the file driver → one GPT image built by our builder. Two
//! guests read and write their partitions (blocking, then with requests of
//! both in flight together), every byte checked in the guests and in the
//! image file; a third, read-only guest's writes fail; requests past a
//! partition return IOERR and change nothing.
//!
//! Whole-system runs (guests as trapping host-board processes, driver
//! restart under load, a guest killed mid-request) need the host board's
//! trapping guests; this test is the layer they sit on.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    unsafe_code
)]

mod common;

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::Rc;

use bulkhead_virt_blk::config::{Budget, ClientConfig, Selector};
use bulkhead_virtio::{GuestMemory, MemError, WriteEffect};
use bulkhead_virtio_testkit::{Registers, TrapTransport};
use common::World;
use drv_host_blk_file::gpt::{build, PartSpec, Placed};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::{BufferDirection, Error, Hal, PhysAddr, PAGE_SIZE};

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 8 << 20;
/// Guest RAM below this holds rings (never reused); above it, a rotating
/// area for the bounce buffers `share` hands out.
const DMA_AREA: usize = 1 << 20;

/// One guest's RAM: a leaked page-aligned allocation reached by the guest
/// driver through raw pointers from the Hal, and by our device side only
/// through `GuestMemory` copies.
#[derive(Clone, Copy)]
struct Ram(NonNull<u8>);

impl Ram {
    fn new() -> Ram {
        let layout = std::alloc::Layout::from_size_align(RAM_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: non-zero size.
        Ram(NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap())
    }

    fn at(gpa: u64, len: usize) -> Result<usize, MemError> {
        let off = usize::try_from(gpa.checked_sub(RAM_BASE).ok_or(MemError::OutOfRange)?)
            .map_err(|_| MemError::OutOfRange)?;
        (off.checked_add(len).is_some_and(|e| e <= RAM_SIZE))
            .then_some(off)
            .ok_or(MemError::OutOfRange)
    }
}

impl GuestMemory for Ram {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = Self::at(gpa, buf.len())?;
        // SAFETY: in bounds (checked); the allocation is never freed; `buf`
        // is host memory outside it.
        unsafe {
            std::ptr::copy_nonoverlapping(self.0.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let off = Self::at(gpa, data.len())?;
        // SAFETY: as in `read`, the other way.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.0.as_ptr().add(off), data.len())
        };
        Ok(())
    }
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        Self::at(gpa, usize::try_from(len).map_err(|_| MemError::OutOfRange)?).map(|_| ())
    }
}

struct GuestAlloc {
    ram: Ram,
    dma_next: usize,
    share_next: usize,
}

thread_local! {
    static GUESTS: RefCell<Vec<GuestAlloc>> = const { RefCell::new(Vec::new()) };
    /// Which guest the driver code running now belongs to.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

fn on<R>(g: usize, f: impl FnOnce() -> R) -> R {
    CURRENT.with(|c| c.set(g));
    f()
}

fn alloc(len: usize, dma: bool) -> (PhysAddr, NonNull<u8>) {
    GUESTS.with(|gs| {
        let mut gs = gs.borrow_mut();
        let g = &mut gs[CURRENT.with(Cell::get)];
        let len = len.max(1).next_multiple_of(PAGE_SIZE);
        let off = if dma {
            let off = g.dma_next;
            g.dma_next += len;
            assert!(g.dma_next <= DMA_AREA, "ring area exhausted");
            off
        } else {
            // Bounce buffers rotate: far fewer are live at once than fit.
            if g.share_next + len > RAM_SIZE {
                g.share_next = DMA_AREA;
            }
            let off = g.share_next;
            g.share_next += len;
            off
        };
        // SAFETY: `off + len <= RAM_SIZE`.
        (RAM_BASE + off as u64, unsafe { g.ram.0.add(off) })
    })
}

struct GuestHal;

// SAFETY: allocations are distinct page-aligned ranges of the current
// guest's RAM, which is never freed; `share` copies into such a range and
// `unshare` copies back; bounce ranges are reused only after far more
// allocations than requests in flight.
unsafe impl Hal for GuestHal {
    fn dma_alloc(pages: usize, _d: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        alloc(pages * PAGE_SIZE, true)
    }
    unsafe fn dma_dealloc(_p: PhysAddr, _v: NonNull<u8>, _pages: usize) -> i32 {
        0
    }
    unsafe fn mmio_phys_to_virt(_p: PhysAddr, _s: usize) -> NonNull<u8> {
        panic!("registers are forwarded, never mapped")
    }
    unsafe fn share(buffer: NonNull<[u8]>, d: BufferDirection) -> PhysAddr {
        let (gpa, p) = alloc(buffer.len(), false);
        if d != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is readable; `p` has room.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    buffer.as_ptr().cast::<u8>(),
                    p.as_ptr(),
                    buffer.len(),
                )
            };
        }
        gpa
    }
    unsafe fn unshare(gpa: PhysAddr, buffer: NonNull<[u8]>, d: BufferDirection) {
        if d != BufferDirection::DriverToDevice {
            let off = Ram::at(gpa, buffer.len()).unwrap();
            let ram = GUESTS.with(|gs| gs.borrow()[CURRENT.with(Cell::get)].ram);
            // SAFETY: in bounds; the caller guarantees `buffer` is writable.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    ram.0.as_ptr().add(off),
                    buffer.as_ptr().cast::<u8>(),
                    buffer.len(),
                )
            };
        }
    }
}

/// What the VMMs and the PDs below them hold.
struct Sys {
    world: World,
    rams: Vec<Ram>,
    /// Run the virtualiser and driver inside every notify (blocking calls);
    /// off, requests pile up until `settle` (concurrent phase).
    auto: bool,
}

impl Sys {
    fn settle(&mut self) {
        self.world.pump();
        for (d, ram) in self.world.devs.iter_mut().zip(self.rams.iter_mut()) {
            d.process_queue(0, ram);
        }
    }
}

/// Guest `g`'s register window as its VMM traps it (under
/// `bulkhead-virtio-testkit`'s `TrapTransport`, `virtio-drivers`' transport
/// whose every call becomes the register accesses a trapped guest makes).
struct Trap {
    sys: Rc<RefCell<Sys>>,
    g: usize,
}

impl Registers for Trap {
    fn read(&self, off: u64, width: u8) -> u64 {
        let mut s = self.sys.borrow_mut();
        s.world.devs[self.g].read(off, width).unwrap()
    }
    fn write(&mut self, off: u64, width: u8, v: u64) {
        let mut s = self.sys.borrow_mut();
        let g = self.g;
        if let WriteEffect::QueueNotify(q) = s.world.devs[g].write(off, width, v).unwrap() {
            let mut ram = s.rams[g];
            s.world.devs[g].process_queue(q, &mut ram);
            if s.auto {
                s.settle();
            }
        }
    }
}

const DISK_SECTORS: u64 = 24 * 2048;

/// The image, where its partitions are, the system, the three guests.
type Setup = (
    tempfile::NamedTempFile,
    Vec<Placed>,
    Rc<RefCell<Sys>>,
    Vec<VirtIOBlk<GuestHal, TrapTransport<Trap>>>,
);

/// A request in flight: guest, token, and the buffers lent to the device.
type InFlight = (usize, u16, Box<BlkReq>, Vec<u8>, Box<BlkResp>);

fn setup() -> Setup {
    let img = tempfile::NamedTempFile::new().unwrap();
    let parts = [
        ("cluster", 4 * 2048),
        ("infotainment", 6 * 2048),
        ("maps", 2048),
    ];
    let specs: Vec<PartSpec> = parts
        .iter()
        .map(|&(n, s)| PartSpec {
            name: n.into(),
            sectors: s,
        })
        .collect();
    let placed = build(img.path(), DISK_SECTORS, &specs).unwrap();
    let budget = Budget {
        period_us: 1000,
        requests: 0,
        bytes: 0,
    };
    let clients = [
        ClientConfig {
            partition: Selector::Name("cluster"),
            read_only: false,
            budget,
        },
        ClientConfig {
            partition: Selector::Guid(placed[1].guid),
            read_only: false,
            budget,
        },
        ClientConfig {
            partition: Selector::Index(2),
            read_only: true,
            budget,
        },
    ];
    let world = World::new(img.path(), &clients);
    let rams: Vec<Ram> = (0..3).map(|_| Ram::new()).collect();
    GUESTS.with(|gs| {
        *gs.borrow_mut() = rams
            .iter()
            .map(|&ram| GuestAlloc {
                ram,
                dma_next: 0,
                share_next: DMA_AREA,
            })
            .collect();
    });
    let sys = Rc::new(RefCell::new(Sys {
        world,
        rams,
        auto: true,
    }));
    let blks = (0..3)
        .map(|g| {
            on(g, || {
                VirtIOBlk::<GuestHal, _>::new(TrapTransport(Trap {
                    sys: sys.clone(),
                    g,
                }))
                .unwrap()
            })
        })
        .collect();
    (img, placed, sys, blks)
}

/// Deterministic contents: guest `g`, write `round`, sector `s`.
fn pattern(g: usize, round: u32, sector: u64, buf: &mut [u8]) {
    for (k, chunk) in buf.chunks_mut(512).enumerate() {
        let tag = (g as u64) << 56 | u64::from(round) << 32 | (sector + k as u64);
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = (tag.rotate_left((i % 64) as u32) as u8) ^ (i as u8);
        }
    }
}

fn image_bytes(img: &tempfile::NamedTempFile) -> Vec<u8> {
    std::fs::read(img.path()).unwrap()
}

#[test]
fn two_guests_on_two_partitions_every_byte_verified() {
    let (img, placed, sys, mut blks) = setup();
    let caps: Vec<u64> = (0..3).map(|g| on(g, || blks[g].capacity())).collect();
    assert_eq!(
        caps,
        vec![placed[0].sectors, placed[1].sectors, placed[2].sectors]
    );
    assert!(on(2, || blks[2].readonly()));
    assert!(!on(0, || blks[0].readonly()));
    let mut id = [0u8; 20];
    on(1, || blks[1].device_id(&mut id)).unwrap();
    assert!(id.starts_with(b"bulkhead-blk-1"));

    // Model of what each guest's partition must hold.
    let mut model: Vec<Vec<u8>> = (0..2)
        .map(|g| vec![0u8; (caps[g] * 512) as usize])
        .collect();

    // Phase 1: blocking requests, the guests taking turns; sizes 1–32
    // sectors, spread over the partition including its last sector.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..60u32 {
        for g in 0..2 {
            let n = 1 + next() % 32;
            let sector = if round % 10 == 9 {
                caps[g] - n
            } else {
                next() % (caps[g] - n)
            };
            let mut buf = vec![0u8; (n * 512) as usize];
            pattern(g, round, sector, &mut buf);
            on(g, || blks[g].write_blocks(sector as usize, &buf)).unwrap();
            model[g][(sector * 512) as usize..((sector + n) * 512) as usize].copy_from_slice(&buf);
        }
    }
    on(0, || blks[0].flush()).unwrap();

    // Phase 2: both guests with 8 writes in flight at once, completed
    // together after the virtualiser interleaves them.
    sys.borrow_mut().auto = false;
    let mut reqs: Vec<InFlight> = Vec::new();
    for k in 0..8u32 {
        for g in 0..2 {
            let n = 1 + u64::from(k);
            let sector = next() % (caps[g] - n);
            let mut buf = vec![0u8; (n * 512) as usize];
            pattern(g, 100 + k, sector, &mut buf);
            model[g][(sector * 512) as usize..((sector + n) * 512) as usize].copy_from_slice(&buf);
            let mut req = Box::new(BlkReq::default());
            let mut resp = Box::new(BlkResp::default());
            // SAFETY: req, buf and resp stay alive and untouched until the
            // matching complete_write_blocks below.
            let token = on(g, || unsafe {
                blks[g].write_blocks_nb(sector as usize, &mut req, &buf, &mut resp)
            })
            .unwrap();
            reqs.push((g, token, req, buf, resp));
        }
    }
    {
        let s = sys.borrow();
        let held: usize = s.world.devs.iter().map(|d| d.device().in_flight()).sum();
        assert_eq!(held, 16, "both guests' requests are in flight together");
    }
    sys.borrow_mut().settle();
    for (g, token, req, buf, mut resp) in reqs {
        // SAFETY: the same buffers as passed to write_blocks_nb.
        on(g, || unsafe {
            blks[g].complete_write_blocks(token, &req, &buf, &mut resp)
        })
        .unwrap();
    }
    sys.borrow_mut().auto = true;

    // Every byte, through the guests.
    for g in 0..2 {
        let mut buf = vec![0u8; 64 * 512];
        for start in (0..caps[g]).step_by(64) {
            let n = (caps[g] - start).min(64) as usize;
            on(g, || {
                blks[g].read_blocks(start as usize, &mut buf[..n * 512])
            })
            .unwrap();
            let want = &model[g][(start * 512) as usize..(start * 512) as usize + n * 512];
            assert!(
                buf[..n * 512] == *want,
                "guest {g} sectors {start}..+{n} differ"
            );
        }
    }
    // Every byte, in the image: each partition holds its guest's model and
    // nothing else on the disk was touched (zero outside the GPT areas).
    let disk = image_bytes(&img);
    for g in 0..2 {
        let at = (placed[g].first * 512) as usize;
        assert!(
            disk[at..at + model[g].len()] == model[g],
            "image partition {g}"
        );
    }
    let maps = (placed[2].first * 512) as usize;
    assert!(
        disk[maps..maps + 2048 * 512].iter().all(|&b| b == 0),
        "RO partition untouched"
    );
    let gaps = [
        (34 * 512, (placed[0].first * 512) as usize),
        (
            ((placed[0].first + placed[0].sectors) * 512) as usize,
            (placed[1].first * 512) as usize,
        ),
    ];
    for (a, b) in gaps {
        assert!(
            disk[a..b].iter().all(|&x| x == 0),
            "bytes between partitions changed"
        );
    }
    drop(sys);
}

#[test]
fn past_the_partition_and_read_only_fail_and_change_nothing() {
    let (img, placed, sys, mut blks) = setup();
    let before = image_bytes(&img);
    let cap0 = placed[0].sectors as usize;
    let buf = vec![0xA5u8; 2 * 512];
    // Straddling the end, at the end, far past it.
    for sector in [cap0 - 1, cap0, cap0 + placed[1].sectors as usize] {
        assert_eq!(
            on(0, || blks[0].write_blocks(sector, &buf)),
            Err(Error::IoError)
        );
        let mut rb = vec![0u8; 1024];
        assert_eq!(
            on(0, || blks[0].read_blocks(sector, &mut rb)),
            Err(Error::IoError)
        );
    }
    // The read-only guest: writes fail, reads work.
    assert_eq!(on(2, || blks[2].write_blocks(0, &buf)), Err(Error::IoError));
    let mut rb = vec![1u8; 1024];
    on(2, || blks[2].read_blocks(0, &mut rb)).unwrap();
    assert!(rb.iter().all(|&b| b == 0));
    assert!(image_bytes(&img) == before, "no byte of the image changed");
    // The other guest is unaffected.
    on(1, || blks[1].write_blocks(3, &buf)).unwrap();
    let mut back = vec![0u8; 1024];
    on(1, || blks[1].read_blocks(3, &mut back)).unwrap();
    assert_eq!(back, buf);
    let s = sys.borrow();
    let refused = s.world.devs[0].device().errors.malformed;
    assert_eq!(refused, 6, "the device refused them before the virtualiser");
}
