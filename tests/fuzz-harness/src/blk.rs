//! Fuzz targets for storage: `gpt_parse` (a disk's partition table, which
//! whoever wrote the disk controls) and `blk_request` (a guest's virtio-blk
//! chain, and the same bytes as a neighbour's block-protocol request). Any
//! panic is a bug.

use std::collections::VecDeque;

use bulkhead_blk_protocol::{Op, Request, Response, Status};
use bulkhead_virt_blk::crc32::crc32;
use bulkhead_virt_blk::table::{read_table, ReadError, SectorSource, SECTOR};
use bulkhead_virt_blk::{ClientPolicy, Hops, Virtualiser};
use bulkhead_virtio::{GuestMemory, Queue, QueueContext, SliceMemory, VirtioDevice};
use bulkhead_vmm_devices::blk::{BlkBackend, BlkConfig, VirtioBlk, SLOT_BYTES};

struct Image<'a>(&'a [u8]);

impl SectorSource for Image<'_> {
    fn sectors(&self) -> u64 {
        (self.0.len() / SECTOR) as u64
    }
    fn read_sector(&mut self, lba: u64, buf: &mut [u8; SECTOR]) -> Result<(), ReadError> {
        let at = usize::try_from(lba)
            .map_err(|_| ReadError)?
            .checked_mul(SECTOR)
            .ok_or(ReadError)?;
        buf.copy_from_slice(self.0.get(at..at + SECTOR).ok_or(ReadError)?);
        Ok(())
    }
}

fn check(image: &[u8]) {
    let disk = Image(image);
    let sectors = disk.sectors();
    if let Ok(t) = read_table(&mut Image(image)) {
        let parts = t.partitions();
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len >= 1 && p.first.checked_add(p.len).is_some_and(|e| e <= sectors));
            for q in &parts[i + 1..] {
                assert!(
                    p.first + p.len <= q.first || q.first + q.len <= p.first,
                    "overlap"
                );
            }
        }
    }
}

/// Parses `data` as a disk image, then again with a protective MBR and the
/// primary GPT header's and entry array's CRCs made valid, so the fuzzer
/// reaches the range checks behind them.
pub fn gpt_parse(data: &[u8]) {
    check(data);
    let mut img = data.to_vec();
    let min = 40 * SECTOR;
    if img.len() < min {
        img.resize(min, 0);
    }
    img[446 + 4] = 0xEE;
    img[510] = 0x55;
    img[511] = 0xAA;
    img[512..520].copy_from_slice(b"EFI PART");
    img[512 + 24..512 + 32].copy_from_slice(&1u64.to_le_bytes());
    let count = u32::from_le_bytes([img[512 + 80], img[512 + 81], img[512 + 82], img[512 + 83]]);
    let size = u32::from_le_bytes([img[512 + 84], img[512 + 85], img[512 + 86], img[512 + 87]]);
    let lba = u64::from_le_bytes(img[512 + 72..512 + 80].try_into().unwrap_or([0; 8]));
    let bytes = u64::from(count).saturating_mul(u64::from(size));
    if bytes <= 128 * 1024 {
        let start = usize::try_from(lba.saturating_mul(512)).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(bytes).unwrap_or(usize::MAX));
        if let Some(arr) = img.get(start..end) {
            let c = crc32(arr);
            img[512 + 88..512 + 92].copy_from_slice(&c.to_le_bytes());
        }
    }
    let hsize = usize::try_from(u32::from_le_bytes([img[524], img[525], img[526], img[527]]))
        .unwrap_or(0)
        .clamp(92, 512);
    img[512 + 16..512 + 20].fill(0);
    let c = crc32(&img[512..512 + hsize]);
    img[512 + 16..512 + 20].copy_from_slice(&c.to_le_bytes());
    check(&img);
}

const BASE: u64 = 0x4000_0000;
const RAM: usize = 0x10000;
const QS: u16 = 8;
const CAPACITY: u64 = 64;

struct Backend {
    out: Vec<u8>,
    inn: Vec<u8>,
    pending: VecDeque<Request>,
}

impl BlkBackend for Backend {
    fn data_out(&mut self) -> &mut [u8] {
        &mut self.out
    }
    fn data_in(&self) -> &[u8] {
        &self.inn
    }
    fn submit(&mut self, req: &Request) -> bool {
        // Whatever the device sends must be a valid, in-capacity request.
        assert!(req.validate().is_ok());
        if req.op != Op::Flush {
            assert!(req.end_sector().is_some_and(|e| e <= CAPACITY));
        }
        assert!(req.data_range(self.out.len()).is_some());
        self.pending.push_back(*req);
        true
    }
}

struct NullHops;
impl Hops for NullHops {
    fn to_driver(&mut self, req: &Request) -> bool {
        assert!(req.validate().is_ok());
        assert!(req.op == Op::Flush || req.end_sector().is_some_and(|e| e <= 32 + 16));
        true
    }
    fn to_client(&mut self, _c: usize, _r: &Response) -> bool {
        true
    }
    fn client_to_driver(&mut self, _c: usize, _a: u64, _b: u64, _l: u32) -> bool {
        true
    }
    fn driver_to_client(&mut self, _c: usize, _a: u64, _b: u64, _l: u32) -> bool {
        true
    }
}

/// `data` laid out as a guest's virtio-blk request: 8 descriptors (their
/// addresses folded into guest RAM so buffers are mostly valid), then the
/// bytes those buffers hold. The device must complete the chain exactly once
/// (length 0 or a status) and send the backend only valid in-range
/// requests. The first 32 bytes also go to the virtualiser as a
/// block-protocol request from a client.
pub fn blk_request(data: &[u8]) {
    let mut ram = vec![0u8; RAM];
    // Descriptor table at 0 (8 × 16 bytes), folded.
    for i in 0..usize::from(QS) {
        let d = data.get(i * 12..i * 12 + 12).unwrap_or(&[]);
        let mut b = [0u8; 12];
        b[..d.len()].copy_from_slice(d);
        let addr = BASE + 0x3000 + u64::from(u16::from_le_bytes([b[0], b[1]]) & 0x7fff);
        let len = u32::from(u16::from_le_bytes([b[4], b[5]]) & 0x1fff);
        let flags = u16::from(b[8] & 0x3);
        let next = u16::from(b[10] % 8);
        let e = &mut ram[i * 16..i * 16 + 16];
        e[0..8].copy_from_slice(&addr.to_le_bytes());
        e[8..12].copy_from_slice(&len.to_le_bytes());
        e[12..14].copy_from_slice(&flags.to_le_bytes());
        e[14..16].copy_from_slice(&next.to_le_bytes());
    }
    let rest = data.get(96..).unwrap_or(&[]);
    let n = rest.len().min(RAM - 0x3000);
    ram[0x3000..0x3000 + n].copy_from_slice(&rest[..n]);
    // One avail entry naming head 0.
    ram[0x1002..0x1004].copy_from_slice(&1u16.to_le_bytes());

    let mut queue = Queue::new(128);
    queue.set_size(u32::from(QS));
    queue.set_desc_table(BASE);
    queue.set_avail_ring(BASE + 0x1000);
    queue.set_used_ring(BASE + 0x2000);
    if queue.set_ready(0).is_err() {
        return;
    }
    // One chain uses slot 0 only: one slot of region keeps runs fast.
    let backend = Backend {
        out: vec![0; SLOT_BYTES as usize],
        inn: vec![0; SLOT_BYTES as usize],
        pending: VecDeque::new(),
    };
    let ro = data.first().is_some_and(|b| b & 1 == 1);
    let mut dev = VirtioBlk::new(
        backend,
        BlkConfig {
            capacity: CAPACITY,
            read_only: ro,
            serial: *b"fuzz-blk-serial-0000",
        },
    );
    let mut mem = SliceMemory::new(BASE, &mut ram);
    {
        let mut ctx = QueueContext::new(0, &mut queue, &mut mem);
        let _ = dev.queue_notify(0, &mut ctx);
    }
    while let Some(r) = dev.backend_mut().pending.pop_front() {
        assert!(
            !(ro && r.op.modifies()),
            "read-only device sent a modification"
        );
        let _ = dev.complete(r.id, Status::Ok);
    }
    {
        let mut ctx = QueueContext::new(0, &mut queue, &mut mem);
        let _ = dev.queue_notify(0, &mut ctx);
    }
    let mut idx = [0u8; 2];
    if mem.read(BASE + 0x2002, &mut idx).is_ok() && !queue.stopped() {
        assert_eq!(
            u16::from_le_bytes(idx),
            1,
            "the chain completed exactly once"
        );
    }

    // The same bytes as a client's block-protocol request.
    let policies = [
        ClientPolicy {
            first: 32,
            len: 16,
            read_only: ro,
            budget: bulkhead_virt_blk::Budget::UNLIMITED,
        },
        ClientPolicy::NONE,
    ];
    if let Ok(mut v) = Virtualiser::<4, 4>::new(&policies, 4096) {
        let _ = v.submit_bytes(0, data.get(..32).unwrap_or(data));
        v.dispatch(&mut NullHops);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The seeds reach past the checks they are meant to pass.
    #[test]
    fn seeds_are_what_they_say() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/gpt_parse");
        let valid = std::fs::read(dir.join("valid_two_partitions")).unwrap();
        let t = read_table(&mut Image(&valid)).unwrap();
        assert_eq!(t.partitions().len(), 2);
        assert!(t.by_name("cluster").is_some());
        let damaged = std::fs::read(dir.join("primary_damaged")).unwrap();
        let t = read_table(&mut Image(&damaged)).unwrap();
        assert_eq!(t.kind, bulkhead_virt_blk::table::TableKind::GptBackup);
        let overlapping = std::fs::read(dir.join("overlapping")).unwrap();
        assert!(read_table(&mut Image(&overlapping)).is_err());
    }
}
