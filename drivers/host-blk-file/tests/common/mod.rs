//! The whole block path in one process, as the host board wires it with
//! PDs: per guest a virtio-blk device whose backend is a `Link` (the
//! `blk_G_req`/`blk_G_resp` rings and `blk_G_out`/`blk_G_in` regions), the
//! virtualiser, the `blk_drv_*` hop and the file driver. `pump` plays the
//! virtualiser and driver PDs until nothing moves. Shared by `tests/e2e.rs`
//! and `benches/iops.rs`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::Path;

use bulkhead_blk_protocol::{Request, Response};
use bulkhead_virt_blk::config::MAX_CLIENTS;
use bulkhead_virt_blk::table::{read_table, ReadError, SectorSource, SECTOR};
use bulkhead_virt_blk::virt::resolve;
use bulkhead_virt_blk::{BlkClients, ClientConfig, ClientPolicy, Hops, Virtualiser};
use bulkhead_virtio::MmioTransport;
use bulkhead_vmm_devices::blk::{
    BlkBackend, BlkConfig, VirtioBlk, DATA_REGION_BYTES, DEPTH, SLOT_BYTES,
};
use drv_host_blk_file::FileDisk;

/// Ring capacity of every hop.
pub const RING: usize = 64;
/// Virtualiser FIFO depth per client and driver slots.
pub type Virt = Virtualiser<64, 32>;

/// One guest's hop to the virtualiser.
pub struct Link {
    pub out: Vec<u8>,
    pub inn: Vec<u8>,
    pub req: VecDeque<Request>,
    pub resp: VecDeque<Response>,
}

impl BlkBackend for Link {
    fn data_out(&mut self) -> &mut [u8] {
        &mut self.out
    }
    fn data_in(&self) -> &[u8] {
        &self.inn
    }
    fn submit(&mut self, req: &Request) -> bool {
        if self.req.len() >= RING {
            return false;
        }
        self.req.push_back(*req);
        true
    }
}

/// Everything below the devices.
pub struct Below {
    pub virt: Virt,
    pub disk: FileDisk,
    pub drv_out: Vec<u8>,
    pub drv_in: Vec<u8>,
    pub drv_req: VecDeque<Request>,
}

pub struct World {
    pub devs: Vec<MmioTransport<VirtioBlk<Link>>>,
    pub below: Below,
}

struct View<'a> {
    links: Vec<&'a mut Link>,
    drv_out: &'a mut Vec<u8>,
    drv_in: &'a mut Vec<u8>,
    drv_req: &'a mut VecDeque<Request>,
}

impl Hops for View<'_> {
    fn to_driver(&mut self, req: &Request) -> bool {
        if self.drv_req.len() >= RING {
            return false;
        }
        self.drv_req.push_back(*req);
        true
    }
    fn to_client(&mut self, c: usize, rsp: &Response) -> bool {
        let q = &mut self.links[c].resp;
        if q.len() >= RING {
            return false;
        }
        q.push_back(*rsp);
        true
    }
    fn client_to_driver(&mut self, c: usize, co: u64, dof: u64, len: u32) -> bool {
        let (co, dof, len) = (co as usize, dof as usize, len as usize);
        match (
            self.links[c].out.get(co..co + len),
            self.drv_out.get_mut(dof..dof + len),
        ) {
            (Some(s), Some(d)) => {
                d.copy_from_slice(s);
                true
            }
            _ => false,
        }
    }
    fn driver_to_client(&mut self, c: usize, dof: u64, co: u64, len: u32) -> bool {
        let (co, dof, len) = (co as usize, dof as usize, len as usize);
        match (
            self.drv_in.get(dof..dof + len),
            self.links[c].inn.get_mut(co..co + len),
        ) {
            (Some(s), Some(d)) => {
                d.copy_from_slice(s);
                true
            }
            _ => false,
        }
    }
}

struct Sectors<'a>(&'a FileDisk);
impl SectorSource for Sectors<'_> {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn read_sector(&mut self, lba: u64, buf: &mut [u8; SECTOR]) -> Result<(), ReadError> {
        self.0.read_sectors(lba, buf).map_err(|_| ReadError)
    }
}

impl World {
    /// Opens `image`, reads its partition table and builds one device per
    /// client of `clients` (the virtualiser's configuration section).
    pub fn new(image: &Path, clients: &[ClientConfig<'_>]) -> World {
        let disk = FileDisk::open(image, false).unwrap();
        let table = read_table(&mut Sectors(&disk)).unwrap();
        let section = BlkClients::new(clients).unwrap();
        let mut all = [ClientPolicy::NONE; MAX_CLIENTS];
        let n = resolve(section.clients(), &table, &mut all).unwrap();
        let policies = &all[..n];
        let virt = Virt::new(policies, SLOT_BYTES).unwrap();
        let devs = policies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut serial = [0u8; 20];
                let s = format!("bulkhead-blk-{i}");
                serial[..s.len()].copy_from_slice(s.as_bytes());
                let link = Link {
                    out: vec![0; DATA_REGION_BYTES],
                    inn: vec![0; DATA_REGION_BYTES],
                    req: VecDeque::new(),
                    resp: VecDeque::new(),
                };
                let cfg = BlkConfig {
                    capacity: p.len,
                    read_only: p.read_only,
                    serial,
                };
                MmioTransport::new(VirtioBlk::new(link, cfg)).unwrap()
            })
            .collect();
        let region = DEPTH * SLOT_BYTES as usize;
        World {
            devs,
            below: Below {
                virt,
                disk,
                drv_out: vec![0; region],
                drv_in: vec![0; region],
                drv_req: VecDeque::new(),
            },
        }
    }

    /// Runs the virtualiser and the driver until nothing moves; completions
    /// reach the devices (the guests see them at the next `process_queue`).
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            let b = &mut self.below;
            let mut view = View {
                links: self
                    .devs
                    .iter_mut()
                    .map(|d| d.device_mut().backend_mut())
                    .collect(),
                drv_out: &mut b.drv_out,
                drv_in: &mut b.drv_in,
                drv_req: &mut b.drv_req,
            };
            for c in 0..view.links.len() {
                while let Some(r) = view.links[c].req.front().copied() {
                    if b.virt.submit(c, &r).is_err() {
                        break;
                    }
                    view.links[c].req.pop_front();
                    moved = true;
                }
            }
            b.virt.dispatch(&mut view);
            while let Some(r) = view.drv_req.pop_front() {
                let rsp = b.disk.handle(&r, view.drv_out, view.drv_in);
                b.virt.driver_response(&rsp, &mut view).unwrap();
                b.virt.dispatch(&mut view);
                moved = true;
            }
            drop(view);
            for d in &mut self.devs {
                let dev = d.device_mut();
                while let Some(rsp) = dev.backend_mut().resp.pop_front() {
                    dev.complete(rsp.id, rsp.status).unwrap();
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }
}

/// A minimal guest-side virtio-blk driver over raw split rings (queue size
/// 64, so queue depth 32 is possible, which `virtio-drivers`' 16-entry
/// queue is not): used by the benchmark.
pub struct RawGuest {
    pub ram: Vec<u8>,
    avail_idx: u16,
    used_seen: u16,
    free: Vec<u16>,
}

pub const RAW_BASE: u64 = 0x4000_0000;
const RAW_QS: u16 = 64;
const RAW_DESC: u64 = 0;
const RAW_AVAIL: u64 = 0x1000;
const RAW_USED: u64 = 0x2000;
/// Per request `h` (head = 3h): header at 0x4000 + 32h, status at +16,
/// data at 0x10000 + 4096h.
const RAW_HDR: u64 = 0x4000;
const RAW_DATA: u64 = 0x10000;

impl RawGuest {
    /// Negotiates VERSION_1 and sets up queue 0 on `dev`, as a driver would.
    pub fn attach(dev: &mut MmioTransport<VirtioBlk<Link>>) -> RawGuest {
        use bulkhead_virtio::spec::reg;
        let mut w = |off: u64, v: u64| {
            dev.write(off, 4, v).unwrap();
        };
        w(reg::STATUS, 1 | 2);
        w(reg::DRIVER_FEATURES_SEL, 1);
        w(reg::DRIVER_FEATURES, 1); // VERSION_1 (bit 32)
        w(reg::DRIVER_FEATURES_SEL, 0);
        w(reg::DRIVER_FEATURES, 0);
        w(reg::STATUS, 1 | 2 | 8);
        w(reg::QUEUE_SEL, 0);
        w(reg::QUEUE_NUM, u64::from(RAW_QS));
        w(reg::QUEUE_DESC_LOW, RAW_BASE + RAW_DESC);
        w(reg::QUEUE_DESC_HIGH, 0);
        w(reg::QUEUE_DRIVER_LOW, RAW_BASE + RAW_AVAIL);
        w(reg::QUEUE_DRIVER_HIGH, 0);
        w(reg::QUEUE_DEVICE_LOW, RAW_BASE + RAW_USED);
        w(reg::QUEUE_DEVICE_HIGH, 0);
        w(reg::QUEUE_READY, 1);
        w(reg::STATUS, 1 | 2 | 8 | 4);
        assert_eq!(dev.status() & 64, 0, "device accepted the set-up");
        RawGuest {
            ram: vec![0; 0x10000 + 4096 * usize::from(RAW_QS / 3)],
            avail_idx: 0,
            used_seen: 0,
            free: (0..RAW_QS / 3).rev().collect(),
        }
    }

    /// Slots free for another request.
    pub fn can_post(&self) -> bool {
        !self.free.is_empty()
    }

    /// Posts a 4 KiB read of `sector`; returns its slot.
    pub fn post_read(&mut self, sector: u64) -> u16 {
        let h = self.free.pop().unwrap();
        let hdr = RAW_HDR + 32 * u64::from(h);
        let data = RAW_DATA + 4096 * u64::from(h);
        let put = |ram: &mut Vec<u8>, at: u64, b: &[u8]| {
            ram[at as usize..at as usize + b.len()].copy_from_slice(b);
        };
        let mut hb = [0u8; 16];
        hb[8..16].copy_from_slice(&sector.to_le_bytes());
        put(&mut self.ram, hdr, &hb);
        let descs = [(hdr, 16u32, 1u16), (data, 4096, 3), (hdr + 16, 1, 2)];
        for (k, (addr, len, flags)) in descs.into_iter().enumerate() {
            let i = 3 * h + k as u16;
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&(RAW_BASE + addr).to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&(i + 1).to_le_bytes());
            put(&mut self.ram, RAW_DESC + 16 * u64::from(i), &d);
        }
        let slot = RAW_AVAIL + 4 + 2 * u64::from(self.avail_idx % RAW_QS);
        put(&mut self.ram, slot, &(3 * h).to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let idx = self.avail_idx;
        put(&mut self.ram, RAW_AVAIL + 2, &idx.to_le_bytes());
        h
    }

    /// Collects completions: returns how many, checking every status is OK.
    pub fn reap(&mut self) -> usize {
        let at = RAW_USED as usize + 2;
        let idx = u16::from_le_bytes([self.ram[at], self.ram[at + 1]]);
        let mut n = 0;
        while self.used_seen != idx {
            let e = RAW_USED as usize + 4 + 8 * usize::from(self.used_seen % RAW_QS);
            let head = u16::from_le_bytes([self.ram[e], self.ram[e + 1]]);
            let h = head / 3;
            let st = RAW_HDR as usize + 32 * usize::from(h) + 16;
            assert_eq!(self.ram[st], 0, "read failed");
            self.free.push(h);
            self.used_seen = self.used_seen.wrapping_add(1);
            n += 1;
        }
        n
    }

    /// The 4 KiB read into slot `h`.
    pub fn data(&self, h: u16) -> &[u8] {
        let at = RAW_DATA as usize + 4096 * usize::from(h);
        &self.ram[at..at + 4096]
    }
}
