//! A register-level model of a virtio-mmio v2 transport with a virtio-blk
//! device behind it (a `Vec<u8>` disk), reading its split virtqueue from a
//! model of physical memory — the same memory the driver's [`TestDma`]
//! writes — plus knobs for every misbehaviour the driver must survive.
//!
//! Chains are executed when QueueNotify is written (`auto`) or when a test
//! calls [`Device::process`]; `reverse` completes a batch newest first.
#![allow(dead_code)]
// A register or chain the model does not expect is a test failure.
#![allow(clippy::panic, clippy::unwrap_used)]
// Test-only model: splits 64-bit values into register halves.
#![allow(clippy::cast_possible_truncation)]

use std::cell::RefCell;
use std::rc::Rc;

use drv_virtio_blk_mmio::regs::*;
use drv_virtio_blk_mmio::{DataWindow, DataWindows, DmaRegion, Mmio, Reg};

/// Physical memory: a few disjoint RAM ranges.
#[derive(Default)]
pub struct Phys {
    ranges: Vec<(u64, Vec<u8>)>,
}

impl Phys {
    pub fn add(&mut self, paddr: u64, len: usize) {
        self.ranges.push((paddr, vec![0; len]));
    }

    /// The bytes at `paddr..paddr+len`; a bus error (panic) outside RAM.
    pub fn bytes(&mut self, paddr: u64, len: usize) -> &mut [u8] {
        for (base, mem) in &mut self.ranges {
            if paddr >= *base && paddr + len as u64 <= *base + mem.len() as u64 {
                let off = (paddr - *base) as usize;
                return &mut mem[off..off + len];
            }
        }
        panic!("DMA outside RAM: {paddr:#x}+{len:#x}");
    }

    pub fn read16(&mut self, paddr: u64) -> u16 {
        u16::from_le_bytes(self.bytes(paddr, 2).try_into().unwrap())
    }
    pub fn read32(&mut self, paddr: u64) -> u32 {
        u32::from_le_bytes(self.bytes(paddr, 4).try_into().unwrap())
    }
    pub fn read64(&mut self, paddr: u64) -> u64 {
        u64::from_le_bytes(self.bytes(paddr, 8).try_into().unwrap())
    }
    pub fn write16(&mut self, paddr: u64, v: u16) {
        self.bytes(paddr, 2).copy_from_slice(&v.to_le_bytes());
    }
    pub fn write32(&mut self, paddr: u64, v: u32) {
        self.bytes(paddr, 4).copy_from_slice(&v.to_le_bytes());
    }
}

pub type Shared = Rc<RefCell<Phys>>;

/// The driver's view of its DMA region: the same model memory.
pub struct TestDma {
    pub phys: Shared,
    pub paddr: u64,
    pub len: usize,
}

impl TestDma {
    fn ok(&self, off: usize, w: usize) -> bool {
        off + w <= self.len && off % w == 0
    }
}

impl DmaRegion for TestDma {
    fn paddr(&self) -> u64 {
        self.paddr
    }
    fn len(&self) -> usize {
        self.len
    }
    fn read8(&self, off: usize) -> u8 {
        assert!(self.ok(off, 1), "driver read8 at {off:#x}");
        self.phys.borrow_mut().bytes(self.paddr + off as u64, 1)[0]
    }
    fn read16(&self, off: usize) -> u16 {
        assert!(self.ok(off, 2), "driver read16 at {off:#x}");
        self.phys.borrow_mut().read16(self.paddr + off as u64)
    }
    fn read32(&self, off: usize) -> u32 {
        assert!(self.ok(off, 4), "driver read32 at {off:#x}");
        self.phys.borrow_mut().read32(self.paddr + off as u64)
    }
    fn write8(&mut self, off: usize, v: u8) {
        assert!(self.ok(off, 1), "driver write8 at {off:#x}");
        self.phys.borrow_mut().bytes(self.paddr + off as u64, 1)[0] = v;
    }
    fn write16(&mut self, off: usize, v: u16) {
        assert!(self.ok(off, 2), "driver write16 at {off:#x}");
        self.phys.borrow_mut().write16(self.paddr + off as u64, v);
    }
    fn write32(&mut self, off: usize, v: u32) {
        assert!(self.ok(off, 4), "driver write32 at {off:#x}");
        self.phys.borrow_mut().write32(self.paddr + off as u64, v);
    }
    fn write64(&mut self, off: usize, v: u64) {
        assert!(self.ok(off, 8), "driver write64 at {off:#x}");
        self.phys
            .borrow_mut()
            .bytes(self.paddr + off as u64, 8)
            .copy_from_slice(&v.to_le_bytes());
    }
}

/// One request as the device executed it: (type, sector, data bytes).
pub type Executed = (u32, u64, u32);

/// The transport + block device.
pub struct Device {
    pub phys: Shared,
    // Identity and capabilities (knobs).
    pub magic: u32,
    pub version: u32,
    pub device_id: u32,
    pub offered: u64,
    pub queue_max: u32,
    pub size_max: u32,
    /// `max_discard_sectors`, `max_discard_seg`, `max_write_zeroes_sectors`,
    /// `max_write_zeroes_seg`.
    pub discard_limits: (u32, u32),
    pub write_zeroes_limits: (u32, u32),
    pub disk: Vec<u8>,
    /// FEATURES_OK never sticks.
    pub refuse_features: bool,
    /// QueueReady reads 1 whatever is written.
    pub queue_ready_stuck: bool,
    /// Status never reads 0 after a reset.
    pub reset_stuck: bool,
    /// ConfigGeneration changes on every read.
    pub generation_flips: bool,
    /// DEVICE_NEEDS_RESET is set when the driver writes DRIVER_OK.
    pub needs_reset_on_driver_ok: bool,
    /// Run chains when QueueNotify is written.
    pub auto: bool,
    /// Complete a batch newest first.
    pub reverse: bool,
    /// Write this status byte instead of the real outcome.
    pub status_override: Option<u8>,
    // Transport state.
    pub status: u32,
    dev_sel: u32,
    drv_sel: u32,
    pub driver_features: u64,
    queue_sel: u32,
    pub queue_num: u32,
    pub queue_ready: u32,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub isr: u32,
    generation: u32,
    last_avail: u16,
    used_idx: u16,
    // Observations.
    pub notifies: u32,
    pub resets: u32,
    pub executed: Vec<Executed>,
}

pub const DMA_PADDR: u64 = 0x5000_0000;
pub const DMA_LEN: usize = 0x4000;
pub const OUT_PADDR: u64 = 0x5100_0000;
pub const IN_PADDR: u64 = 0x5200_0000;
pub const WINDOW_LEN: usize = 0x2_0000;
/// Disk size in sectors.
pub const SECTORS: usize = 2048;

pub fn windows() -> DataWindows {
    DataWindows {
        write_data: DataWindow {
            paddr: OUT_PADDR,
            len: WINDOW_LEN as u64,
        },
        read_data: DataWindow {
            paddr: IN_PADDR,
            len: WINDOW_LEN as u64,
        },
    }
}

impl Device {
    /// QEMU's defaults as far as they matter: modern, blk, queue 256,
    /// VERSION_1 + FLUSH + SEG_MAX + BLK_SIZE + TOPOLOGY + DISCARD +
    /// WRITE_ZEROES + CONFIG_WCE + RING_RESET + INDIRECT/EVENT_IDX offered.
    pub fn qemu_like(phys: Shared) -> Device {
        Device {
            phys,
            magic: MAGIC,
            version: 2,
            device_id: DEVICE_ID_BLK,
            offered: F_VERSION_1
                | F_FLUSH
                | 1 << 2
                | 1 << 6
                | 1 << 10
                | 1 << 11
                | 1 << 13
                | 1 << 14
                | 1 << 28
                | 1 << 29
                | 1 << 40,
            queue_max: 256,
            size_max: 0,
            discard_limits: (1 << 22, 1),
            write_zeroes_limits: (1 << 22, 1),
            disk: (0..SECTORS * 512).map(|i| (i % 251) as u8).collect(),
            refuse_features: false,
            queue_ready_stuck: false,
            reset_stuck: false,
            generation_flips: false,
            needs_reset_on_driver_ok: false,
            auto: true,
            reverse: false,
            status_override: None,
            status: 0,
            dev_sel: 0,
            drv_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queue_num: 0,
            queue_ready: 0,
            desc: 0,
            avail: 0,
            used: 0,
            isr: 0,
            generation: 0,
            last_avail: 0,
            used_idx: 0,
            notifies: 0,
            resets: 0,
            executed: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.status = if self.reset_stuck { S_ACKNOWLEDGE } else { 0 };
        self.driver_features = 0;
        self.queue_ready = 0;
        self.queue_num = 0;
        self.isr = 0;
        self.last_avail = 0;
        self.used_idx = 0;
    }

    fn live(&self) -> bool {
        self.status & S_DRIVER_OK != 0 && self.queue_ready == 1
    }

    /// Sets DEVICE_NEEDS_RESET and raises a configuration interrupt.
    pub fn needs_reset(&mut self) {
        self.status |= S_DEVICE_NEEDS_RESET;
        self.isr |= INT_CONFIG_CHANGE;
    }

    /// Publishes a used element the driver never made available.
    pub fn push_bogus_used(&mut self, id: u32) {
        self.push_used(id, 0);
        self.isr |= INT_USED_BUFFER;
    }

    /// Moves the used index by `n` without writing elements.
    pub fn jump_used(&mut self, n: u16) {
        self.used_idx = self.used_idx.wrapping_add(n);
        let used = self.used;
        self.phys.borrow_mut().write16(used + 2, self.used_idx);
        self.isr |= INT_USED_BUFFER;
    }

    fn push_used(&mut self, id: u32, len: u32) {
        let qn = self.queue_num as u16;
        let elem = self.used + 4 + 8 * u64::from(self.used_idx % qn);
        let mut p = self.phys.borrow_mut();
        p.write32(elem, id);
        p.write32(elem + 4, len);
        self.used_idx = self.used_idx.wrapping_add(1);
        p.write16(self.used + 2, self.used_idx);
    }

    /// Takes every available chain, executes it, and completes it.
    pub fn process(&mut self) -> usize {
        if !self.live() {
            return 0;
        }
        let qn = self.queue_num as u16;
        let avail_idx = self.phys.borrow_mut().read16(self.avail + 2);
        let pending = avail_idx.wrapping_sub(self.last_avail);
        assert!(
            pending <= qn,
            "driver published {pending} > queue size {qn}"
        );
        let mut heads = Vec::new();
        while self.last_avail != avail_idx {
            let at = self.avail + 4 + 2 * u64::from(self.last_avail % qn);
            heads.push(self.phys.borrow_mut().read16(at));
            self.last_avail = self.last_avail.wrapping_add(1);
        }
        if self.reverse {
            heads.reverse();
        }
        for &h in &heads {
            let written = self.execute(h);
            self.push_used(u32::from(h), written);
        }
        if !heads.is_empty() {
            self.isr |= INT_USED_BUFFER;
        }
        heads.len()
    }

    /// (addr, len, flags) of each descriptor of the chain at `head`.
    fn chain(&mut self, head: u16) -> Vec<(u64, u32, u16)> {
        let mut out = Vec::new();
        let mut i = head;
        let mut p = self.phys.borrow_mut();
        loop {
            assert!(u32::from(i) < self.queue_num, "descriptor {i} out of range");
            assert!(out.len() < 4, "chain too long");
            let d = self.desc + 16 * u64::from(i);
            let addr = p.read64(d);
            let len = p.read32(d + 8);
            let flags = p.read16(d + 12);
            let next = p.read16(d + 14);
            out.push((addr, len, flags));
            if flags & DESC_F_NEXT == 0 {
                return out;
            }
            i = next;
        }
    }

    /// Executes one request chain; returns the bytes written to the driver.
    fn execute(&mut self, head: u16) -> u32 {
        let chain = self.chain(head);
        assert!((2..=3).contains(&chain.len()), "chain {chain:?}");
        let (h_addr, h_len, h_flags) = chain[0];
        assert_eq!((h_len, h_flags & DESC_F_WRITE), (16, 0), "header");
        let (s_addr, s_len, s_flags) = *chain.last().unwrap();
        assert_eq!((s_len, s_flags & DESC_F_WRITE), (1, DESC_F_WRITE), "status");
        let (kind, sector) = {
            let mut p = self.phys.borrow_mut();
            (p.read32(h_addr), p.read64(h_addr + 8))
        };
        let data = chain.get(1).filter(|_| chain.len() == 3).copied();
        let data_len = data.map_or(0, |d| d.1);
        self.executed.push((kind, sector, data_len));
        let start = sector as usize * 512;
        let in_disk = start + data_len as usize <= self.disk.len();
        let ro = self.driver_features & F_RO != 0;
        let (status, written) = match (kind, data) {
            (T_IN, Some((addr, len, flags))) => {
                assert_eq!(flags & DESC_F_WRITE, DESC_F_WRITE, "read data not writable");
                if in_disk {
                    let l = len as usize;
                    self.phys
                        .borrow_mut()
                        .bytes(addr, l)
                        .copy_from_slice(&self.disk[start..start + l]);
                    (BLK_S_OK, len + 1)
                } else {
                    (BLK_S_IOERR, 1)
                }
            }
            (T_OUT, Some((addr, len, flags))) => {
                assert_eq!(flags & DESC_F_WRITE, 0, "write data device-writable");
                if in_disk && !ro {
                    let l = len as usize;
                    let bytes = self.phys.borrow_mut().bytes(addr, l).to_vec();
                    self.disk[start..start + l].copy_from_slice(&bytes);
                    (BLK_S_OK, 1)
                } else {
                    (BLK_S_IOERR, 1)
                }
            }
            (T_FLUSH, None) => (BLK_S_OK, 1),
            (T_DISCARD | T_WRITE_ZEROES, Some((addr, len, flags))) => {
                assert_eq!((len, flags & DESC_F_WRITE), (16, 0), "segment");
                let mut p = self.phys.borrow_mut();
                let (seg_sector, n, seg_flags) =
                    (p.read64(addr), p.read32(addr + 8), p.read32(addr + 12));
                drop(p);
                assert_eq!(sector, 0, "header sector of a discard/write-zeroes");
                assert_eq!(seg_flags, 0, "no UNMAP asked for");
                let ops = if kind == T_DISCARD {
                    self.driver_features & F_DISCARD != 0
                } else {
                    self.driver_features & F_WRITE_ZEROES != 0
                };
                assert!(ops, "op {kind} not negotiated");
                let (s0, e0) = (
                    seg_sector as usize * 512,
                    (seg_sector as usize + n as usize) * 512,
                );
                self.executed.last_mut().unwrap().1 = seg_sector;
                self.executed.last_mut().unwrap().2 = n;
                if e0 <= self.disk.len() && !ro {
                    self.disk[s0..e0].fill(0);
                    (BLK_S_OK, 1)
                } else {
                    (BLK_S_IOERR, 1)
                }
            }
            _ => (BLK_S_UNSUPP, 1),
        };
        let status = self.status_override.unwrap_or(status);
        self.phys.borrow_mut().bytes(s_addr, 1)[0] = status;
        written
    }

    /// Flushes executed so far.
    pub fn flushes(&self) -> usize {
        self.executed.iter().filter(|e| e.0 == T_FLUSH).count()
    }

    fn read(&mut self, off: usize) -> u32 {
        let cfg = |v: u64, hi: bool| if hi { (v >> 32) as u32 } else { v as u32 };
        match off {
            0x000 => self.magic,
            0x004 => self.version,
            0x008 => self.device_id,
            0x00c => 0x554d_4551,
            0x010 => match self.dev_sel {
                0 => cfg(self.offered, false),
                1 => cfg(self.offered, true),
                _ => 0,
            },
            0x034 => {
                if self.queue_sel == 0 {
                    self.queue_max
                } else {
                    0
                }
            }
            0x044 => {
                if self.queue_ready_stuck {
                    1
                } else {
                    self.queue_ready
                }
            }
            0x060 => self.isr,
            0x070 => self.status,
            0x0fc => {
                if self.generation_flips {
                    self.generation += 1;
                }
                self.generation
            }
            0x100 => cfg((self.disk.len() / 512) as u64, false),
            0x104 => cfg((self.disk.len() / 512) as u64, true),
            0x108 => self.size_max,
            0x124 => self.discard_limits.0,
            0x128 => self.discard_limits.1,
            0x130 => self.write_zeroes_limits.0,
            0x134 => self.write_zeroes_limits.1,
            _ => panic!("read of register {off:#x}"),
        }
    }

    fn write(&mut self, off: usize, v: u32) {
        let lo = |x: &mut u64, v: u32| *x = (*x & !0xffff_ffff) | u64::from(v);
        let hi = |x: &mut u64, v: u32| *x = (*x & 0xffff_ffff) | u64::from(v) << 32;
        match off {
            0x014 => self.dev_sel = v,
            0x020 => match self.drv_sel {
                0 => lo(&mut self.driver_features, v),
                1 => hi(&mut self.driver_features, v),
                _ => {}
            },
            0x024 => self.drv_sel = v,
            0x030 => self.queue_sel = v,
            0x038 => {
                assert!(v <= self.queue_max && v.is_power_of_two(), "QueueNum {v}");
                self.queue_num = v;
            }
            0x044 => self.queue_ready = v,
            0x050 => {
                assert_eq!(v, 0, "notify of queue {v}");
                self.notifies += 1;
                if self.auto {
                    self.process();
                }
            }
            0x064 => self.isr &= !v,
            0x070 => {
                if v == 0 {
                    self.reset();
                    return;
                }
                let mut v = v;
                let new = v & !self.status;
                if new & S_FEATURES_OK != 0 {
                    let unknown = self.driver_features & !self.offered != 0;
                    if self.refuse_features || unknown {
                        v &= !S_FEATURES_OK;
                    }
                }
                if new & S_DRIVER_OK != 0 && self.needs_reset_on_driver_ok {
                    v |= S_DEVICE_NEEDS_RESET;
                }
                self.status = v | (self.status & S_DEVICE_NEEDS_RESET);
            }
            0x080 => lo(&mut self.desc, v),
            0x084 => hi(&mut self.desc, v),
            0x090 => lo(&mut self.avail, v),
            0x094 => hi(&mut self.avail, v),
            0x0a0 => lo(&mut self.used, v),
            0x0a4 => hi(&mut self.used, v),
            _ => panic!("write of {v:#x} to register {off:#x}"),
        }
    }
}

/// The driver's register access, into the shared model.
pub struct ModelMmio(pub Rc<RefCell<Device>>);

impl std::fmt::Debug for ModelMmio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelMmio")
    }
}

impl std::fmt::Debug for TestDma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestDma({:#x}+{:#x})", self.paddr, self.len)
    }
}

impl Mmio for ModelMmio {
    fn read32(&mut self, r: Reg) -> u32 {
        self.0.borrow_mut().read(r.offset())
    }
    fn write32(&mut self, r: Reg, v: u32) {
        self.0.borrow_mut().write(r.offset(), v);
    }
}

/// Physical memory with the DMA region and both data windows, a QEMU-like
/// device, and the driver's two handles onto them.
pub fn rig() -> (Shared, Rc<RefCell<Device>>, ModelMmio, TestDma) {
    let phys: Shared = Rc::new(RefCell::new(Phys::default()));
    phys.borrow_mut().add(DMA_PADDR, DMA_LEN);
    phys.borrow_mut().add(OUT_PADDR, WINDOW_LEN);
    phys.borrow_mut().add(IN_PADDR, WINDOW_LEN);
    let dev = Rc::new(RefCell::new(Device::qemu_like(phys.clone())));
    let mmio = ModelMmio(dev.clone());
    let dma = TestDma {
        phys: phys.clone(),
        paddr: DMA_PADDR,
        len: DMA_LEN,
    };
    (phys, dev, mmio, dma)
}
