//! Hostile and asynchronous cases of the virtio-blk model, on real split
//! rings in a test guest RAM, with a memory backend that completes when the
//! test says so. Every hostile case asserts the exact status (or used
//! length) and that a second guest's device still reads what it wrote.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

extern crate std;
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use bulkhead_blk_protocol::{Op, Request, Status};
use bulkhead_virtio::{GuestMemory, Queue, QueueContext, SliceMemory, VirtioDevice};

use super::device::*;

const BASE: u64 = 0x4000_0000;
const RAM: usize = 256 * 1024;
const QS: u16 = 16;
const DESC: u64 = BASE;
const AVAIL: u64 = BASE + 0x1000;
const USED: u64 = BASE + 0x2000;
const BUF: u64 = BASE + 0x4000;
const CAPACITY: u64 = 64;

struct MemBackend {
    disk: Vec<u8>,
    out: Vec<u8>,
    inn: Vec<u8>,
    pending: VecDeque<Request>,
    accept: bool,
}

impl BlkBackend for MemBackend {
    fn data_out(&mut self) -> &mut [u8] {
        &mut self.out
    }
    fn data_in(&self) -> &[u8] {
        &self.inn
    }
    fn submit(&mut self, req: &Request) -> bool {
        if self.accept {
            self.pending.push_back(*req);
        }
        self.accept
    }
}

struct Guest {
    ram: Vec<u8>,
    queue: Queue,
    dev: VirtioBlk<MemBackend>,
    avail_idx: u16,
    used_seen: u16,
    next_desc: u16,
}

impl Guest {
    fn new(read_only: bool) -> Guest {
        let mut queue = Queue::new(QUEUE_SIZE);
        queue.set_size(u32::from(QS));
        queue.set_desc_table(DESC);
        queue.set_avail_ring(AVAIL);
        queue.set_used_ring(USED);
        queue.set_ready(0).unwrap();
        let backend = MemBackend {
            disk: vec![0; CAPACITY as usize * 512],
            out: vec![0; DATA_REGION_BYTES],
            inn: vec![0; DATA_REGION_BYTES],
            pending: VecDeque::new(),
            accept: true,
        };
        let mut serial = [0u8; 20];
        serial[..6].copy_from_slice(b"blk-g0");
        let dev = VirtioBlk::new(
            backend,
            BlkConfig {
                capacity: CAPACITY,
                read_only,
                serial,
            },
        );
        Guest {
            ram: vec![0; RAM],
            queue,
            dev,
            avail_idx: 0,
            used_seen: 0,
            next_desc: 0,
        }
    }

    fn mem(&mut self) -> SliceMemory<'_> {
        SliceMemory::new(BASE, &mut self.ram)
    }

    /// Puts a chain of `(gpa, len, writable)` buffers on the avail ring;
    /// returns its head.
    fn push(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        let n = bufs.len() as u16;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % QS;
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            let mut flags = if w { 2u16 } else { 0 };
            if k + 1 < bufs.len() {
                flags |= 1;
            }
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&((i + 1) % QS).to_le_bytes());
            self.mem().write(DESC + 16 * u64::from(i), &d).unwrap();
        }
        self.next_desc = (head + n) % QS;
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QS);
        self.mem().write(slot, &head.to_le_bytes()).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let idx = self.avail_idx;
        self.mem().write(AVAIL + 2, &idx.to_le_bytes()).unwrap();
        head
    }

    fn header(&mut self, at: u64, ty: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem().write(at, &h).unwrap();
    }

    fn poll(&mut self) {
        let mut mem = SliceMemory::new(BASE, &mut self.ram);
        let mut ctx = QueueContext::new(0, &mut self.queue, &mut mem);
        self.dev.queue_notify(0, &mut ctx).unwrap();
    }

    /// Executes every request the backend holds, completing in reverse
    /// order (out of order on purpose).
    fn serve(&mut self) {
        while let Some(r) = self.dev.backend_mut().pending.pop_back() {
            let b = self.dev.backend_mut();
            let at = r.sector as usize * 512;
            let len = r.count as usize * 512;
            let d = r.data_offset as usize;
            match r.op {
                Op::Read => b.inn[d..d + len].copy_from_slice(&b.disk[at..at + len]),
                Op::Write => b.disk[at..at + len].copy_from_slice(&b.out[d..d + len]),
                Op::Discard | Op::WriteZeroes => b.disk[at..at + len].fill(0),
                Op::Flush => {}
            }
            self.dev.complete(r.id, Status::Ok).unwrap();
        }
        self.poll();
    }

    /// Used elements not seen yet: `(head, len)`.
    fn used(&mut self) -> Vec<(u16, u32)> {
        let mut b = [0u8; 2];
        self.mem().read(USED + 2, &mut b).unwrap();
        let idx = u16::from_le_bytes(b);
        let mut out = Vec::new();
        while self.used_seen != idx {
            let mut e = [0u8; 8];
            let at = USED + 4 + 8 * u64::from(self.used_seen % QS);
            self.mem().read(at, &mut e).unwrap();
            out.push((
                u32::from_le_bytes(e[0..4].try_into().unwrap()) as u16,
                u32::from_le_bytes(e[4..8].try_into().unwrap()),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    fn byte(&mut self, gpa: u64) -> u8 {
        let mut b = [0u8];
        self.mem().read(gpa, &mut b).unwrap();
        b[0]
    }

    /// One request: header at BUF, data (if any) at BUF + 0x100 of
    /// `data_len` bytes, status at BUF + 0x80. Returns (status, used len).
    fn request(&mut self, ty: u32, sector: u64, data: Option<(u32, bool)>) -> (u8, u32) {
        self.header(BUF, ty, sector);
        self.mem().write(BUF + 0x80, &[0xEE]).unwrap();
        let mut bufs = vec![(BUF, 16, false)];
        if let Some((len, w)) = data {
            bufs.push((BUF + 0x100, len, w));
        }
        bufs.push((BUF + 0x80, 1, true));
        let head = self.push(&bufs);
        self.poll();
        self.serve();
        let used = self.used();
        assert_eq!(used.len(), 1, "exactly one completion");
        assert_eq!(used[0].0, head);
        (self.byte(BUF + 0x80), used[0].1)
    }

    /// A write then a read of a pattern round-trips.
    fn assert_healthy(&mut self) {
        let pat: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
        self.mem().write(BUF + 0x100, &pat).unwrap();
        assert_eq!(self.request(req_type::OUT, 5, Some((1024, false))), (0, 1));
        self.mem().write(BUF + 0x100, &[0u8; 1024]).unwrap();
        assert_eq!(self.request(req_type::IN, 5, Some((1024, true))), (0, 1025));
        let mut got = vec![0u8; 1024];
        self.mem().read(BUF + 0x100, &mut got).unwrap();
        assert_eq!(got, pat);
    }
}

/// Runs `attack` on guest A, asserts `(status, used len)`, then checks A
/// and an independent guest B both still work.
fn hostile(ro: bool, want: (u8, u32), attack: impl FnOnce(&mut Guest) -> (u8, u32)) -> Guest {
    let mut a = Guest::new(ro);
    let mut b = Guest::new(false);
    b.assert_healthy();
    assert_eq!(attack(&mut a), want);
    b.assert_healthy();
    if !ro {
        a.assert_healthy();
    }
    a
}

#[test]
fn sector_overflow_is_ioerr() {
    hostile(false, (status::IOERR, 1), |g| {
        g.request(req_type::IN, u64::MAX, Some((512, true)))
    });
    hostile(false, (status::IOERR, 1), |g| {
        g.request(req_type::OUT, u64::MAX - 1, Some((1024, false)))
    });
}

#[test]
fn data_past_capacity_is_ioerr_and_reaches_nothing() {
    let g = hostile(false, (status::IOERR, 1), |g| {
        g.request(req_type::OUT, CAPACITY - 1, Some((1024, false)))
    });
    assert_eq!(g.dev.errors.malformed, 1);
    // The last sector itself is fine.
    let mut g = Guest::new(false);
    assert_eq!(
        g.request(req_type::IN, CAPACITY - 1, Some((512, true))),
        (0, 513)
    );
}

#[test]
fn length_not_a_multiple_of_512_is_ioerr() {
    hostile(false, (status::IOERR, 1), |g| {
        g.request(req_type::IN, 0, Some((513, true)))
    });
    hostile(false, (status::IOERR, 1), |g| {
        g.request(req_type::OUT, 0, Some((100, false)))
    });
    // A read with no data buffer at all.
    hostile(false, (status::IOERR, 1), |g| {
        g.request(req_type::IN, 0, None)
    });
}

#[test]
fn missing_or_readable_status_buffer_returns_the_chain_untouched() {
    let g = hostile(false, (0xEE, 0), |g| {
        g.header(BUF, req_type::IN, 0);
        g.mem().write(BUF + 0x80, &[0xEE]).unwrap();
        // The "status" byte is device-readable: nothing may be written.
        g.push(&[(BUF, 16, false), (BUF + 0x80, 1, false)]);
        g.poll();
        let used = g.used();
        (g.byte(BUF + 0x80), used[0].1)
    });
    assert_eq!(g.dev.errors.no_status, 1);
    assert_eq!(g.dev.in_flight(), 0);
}

#[test]
fn header_shorter_than_16_bytes_is_ioerr() {
    hostile(false, (status::IOERR, 1), |g| {
        g.push(&[(BUF, 8, false), (BUF + 0x80, 1, true)]);
        g.poll();
        let used = g.used();
        (g.byte(BUF + 0x80), used[0].1)
    });
}

#[test]
fn unknown_types_are_unsupp() {
    for ty in [2, 3, 10, 14, 99, u32::MAX] {
        let g = hostile(false, (status::UNSUPP, 1), |g| g.request(ty, 0, None));
        assert_eq!(g.dev.errors.unsupported, 1);
    }
}

#[test]
fn get_id_needs_20_bytes() {
    hostile(false, (status::IOERR, 1), |g| {
        g.request(req_type::GET_ID, 0, Some((19, true)))
    });
    let mut g = Guest::new(false);
    assert_eq!(g.request(req_type::GET_ID, 0, Some((20, true))), (0, 21));
    let mut id = [0u8; 6];
    g.mem().read(BUF + 0x100, &mut id).unwrap();
    assert_eq!(&id, b"blk-g0");
}

fn segment(g: &mut Guest, sector: u64, n: u32, flags: u32) {
    let mut s = [0u8; 16];
    s[0..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&n.to_le_bytes());
    s[12..16].copy_from_slice(&flags.to_le_bytes());
    g.mem().write(BUF + 0x100, &s).unwrap();
}

#[test]
fn discard_and_write_zeroes_segments_are_checked() {
    for ty in [req_type::DISCARD, req_type::WRITE_ZEROES] {
        hostile(false, (status::IOERR, 1), |g| {
            segment(g, CAPACITY - 2, 3, 0);
            g.request(ty, 0, Some((16, false)))
        });
        hostile(false, (status::IOERR, 1), |g| {
            segment(g, u64::MAX, 2, 0);
            g.request(ty, 0, Some((16, false)))
        });
        hostile(false, (status::IOERR, 1), |g| {
            segment(g, 0, 0, 0);
            g.request(ty, 0, Some((16, false)))
        });
        // A huge segment count (4096 segments of 16 bytes).
        hostile(false, (status::IOERR, 1), |g| {
            g.request(ty, 0, Some((16 * 4096, false)))
        });
        // Not a whole segment.
        hostile(false, (status::IOERR, 1), |g| {
            g.request(ty, 0, Some((15, false)))
        });
    }
    hostile(false, (status::UNSUPP, 1), |g| {
        segment(g, 0, 1, 1); // unmap flag on a discard
        g.request(req_type::DISCARD, 0, Some((16, false)))
    });
    // Write-zeroes zeroes exactly its range.
    let mut g = Guest::new(false);
    g.assert_healthy(); // sectors 5 and 6 hold a pattern
    segment(&mut g, 6, 1, 1);
    assert_eq!(
        g.request(req_type::WRITE_ZEROES, 0, Some((16, false))),
        (0, 1)
    );
    let disk = &g.dev.backend().disk;
    assert!(disk[5 * 512..6 * 512].iter().any(|&b| b != 0));
    assert!(disk[6 * 512..7 * 512].iter().all(|&b| b == 0));
}

#[test]
fn read_only_device_fails_every_modification() {
    let mut g = Guest::new(true);
    assert_ne!(g.dev.features() & feature::RO, 0);
    assert_eq!(Guest::new(false).dev.features() & feature::RO, 0);
    assert_eq!(
        g.request(req_type::OUT, 0, Some((512, false))),
        (status::IOERR, 1)
    );
    segment(&mut g, 0, 1, 0);
    assert_eq!(
        g.request(req_type::DISCARD, 0, Some((16, false))),
        (status::IOERR, 1)
    );
    assert_eq!(
        g.request(req_type::WRITE_ZEROES, 0, Some((16, false))),
        (status::IOERR, 1)
    );
    assert_eq!(g.dev.errors.read_only, 3);
    assert!(g.dev.backend().disk.iter().all(|&b| b == 0));
    assert_eq!(g.request(req_type::IN, 0, Some((512, true))), (0, 513));
    assert_eq!(g.request(req_type::FLUSH, 0, None), (0, 1));
}

#[test]
fn config_space_starts_with_capacity() {
    let g = Guest::new(false);
    let mut c = [0u8; CONFIG_LEN];
    g.dev.read_config(0, &mut c);
    assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), CAPACITY);
    assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), SEG_MAX);
    assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 512);
    assert_eq!(u32::from_le_bytes(c[40..44].try_into().unwrap()), 1);
}

#[test]
fn a_full_backend_keeps_chains_and_completions_come_out_of_order() {
    let mut g = Guest::new(false);
    g.dev.backend_mut().accept = false;
    let mut heads = Vec::new();
    for i in 0..4u64 {
        let at = BUF + 0x1000 * i;
        g.header(at, req_type::IN, i);
        heads.push(g.push(&[
            (at, 16, false),
            (at + 0x100, 512, true),
            (at + 0x80, 1, true),
        ]));
    }
    g.poll();
    assert!(g.used().is_empty(), "nothing completed, nothing lost");
    g.dev.backend_mut().accept = true;
    g.poll();
    assert_eq!(g.dev.backend().pending.len(), 4);
    // Complete the third first.
    let r = g.dev.backend_mut().pending.remove(2).unwrap();
    g.dev.complete(r.id, Status::IoErr).unwrap();
    assert!(
        g.dev.complete(r.id, Status::Ok).is_err(),
        "no double completion"
    );
    g.poll();
    let first = g.used();
    assert_eq!(first, vec![(heads[2], 1)]);
    assert_eq!(g.byte(BUF + 0x2000 + 0x80), status::IOERR);
    g.serve();
    let mut rest: Vec<u16> = g.used().into_iter().map(|u| u.0).collect();
    rest.sort_unstable();
    assert_eq!(rest, vec![heads[0], heads[1], heads[3]]);
}

#[test]
fn reset_orphans_in_flight_requests_until_the_backend_answers() {
    let mut g = Guest::new(false);
    g.header(BUF, req_type::IN, 0);
    g.push(&[
        (BUF, 16, false),
        (BUF + 0x100, 512, true),
        (BUF + 0x80, 1, true),
    ]);
    g.poll();
    let r = g.dev.backend_mut().pending.pop_front().unwrap();
    g.dev.reset();
    assert_eq!(g.dev.in_flight(), 1, "the backend still owns the slot");
    g.dev.complete(r.id, Status::Ok).unwrap();
    assert_eq!(g.dev.in_flight(), 0);
    assert!(g.dev.complete(r.id, Status::Ok).is_err());
    assert_eq!(g.dev.errors.stale_completions, 1);
}
