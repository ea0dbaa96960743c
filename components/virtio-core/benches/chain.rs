//! Device-side descriptor-chain processing, ours against rust-vmm's
//! `virtio-queue`, on identical guest-memory layouts and chain shapes in one
//! run: 1, 3 and 16-descriptor chains and a 16-entry indirect table.
//!
//! Per iteration the driver side makes 16 chains available (one store of
//! `avail.idx`); the device pops each, validates every buffer against guest
//! RAM, reads a 16-byte request header, completes it on the used ring, and
//! asks once whether to notify. For `virtio-queue` two variants are run:
//! `vq-raw` walks the chain iterator and range-checks each descriptor
//! (the least work that validates as much as ours), `vq-reader` uses its
//! `Reader`/`Writer` (what its device crates do).
//!
//! `cargo bench -p bulkhead-virtio --bench chain`

use std::hint::black_box;

use bulkhead_virtio::spec::feature::INDIRECT_DESC;
use bulkhead_virtio::spec::ring::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use bulkhead_virtio::{GuestMemory as _, Queue as OurQueue, SliceMemory};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use virtio_queue::{Queue as VqQueue, QueueT as _, Reader, Writer};
use vm_memory::{Bytes as _, GuestAddress, GuestMemory as _, GuestMemoryMmap, Permissions};

const BASE: u64 = 0x1_0000;
const RAM: usize = 1 << 20;
const QS: u16 = 256;
const DESC: u64 = BASE;
const AVAIL: u64 = BASE + 0x1000;
const USED: u64 = BASE + 0x2000;
const TABLES: u64 = BASE + 0x4000;
const DATA: u64 = BASE + 0x1_0000;
/// Chains made available per iteration.
const BATCH: u16 = 16;
/// Our chain capacity (the device model's choice).
const CAP: usize = 16;

#[derive(Clone, Copy)]
enum Shape {
    One,
    Three,
    Sixteen,
    Indirect,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::One => "1-desc",
            Shape::Three => "3-desc",
            Shape::Sixteen => "16-desc",
            Shape::Indirect => "indirect-16",
        }
    }
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..].copy_from_slice(&next.to_le_bytes());
    d
}

/// The 16 descriptors of a 16-buffer request: header, 14 data, status.
fn sixteen(data: u64, next_base: u16) -> Vec<[u8; 16]> {
    (0u16..16)
        .map(|i| match i {
            0 => desc(data, 16, DESC_F_NEXT, next_base + 1),
            15 => desc(data + 0x1000, 1, DESC_F_WRITE, 0),
            _ => desc(
                data + 0x100 * u64::from(i),
                256,
                DESC_F_NEXT,
                next_base + i + 1,
            ),
        })
        .collect()
}

/// Guest RAM image (offset 0 = `BASE`) with `BATCH` chains of `shape` and
/// an avail ring whose every slot names one of them.
fn layout(shape: Shape) -> Vec<u8> {
    let mut ram = vec![0u8; RAM];
    let mut put = |gpa: u64, b: &[u8]| {
        let o = usize::try_from(gpa - BASE).expect("inside RAM");
        ram[o..o + b.len()].copy_from_slice(b);
    };
    for c in 0..BATCH {
        let head = c * 16;
        let data = DATA + u64::from(c) * 0x4000;
        put(data, b"request-header!!");
        let table = DESC + 16 * u64::from(head);
        match shape {
            Shape::One => put(table, &desc(data, 64, 0, 0)),
            Shape::Three => {
                put(table, &desc(data, 16, DESC_F_NEXT, head + 1));
                put(table + 16, &desc(data + 0x100, 512, DESC_F_NEXT, head + 2));
                put(table + 32, &desc(data + 0x400, 1, DESC_F_WRITE, 0));
            }
            Shape::Sixteen => {
                for (i, d) in sixteen(data, head).iter().enumerate() {
                    put(table + 16 * i as u64, d);
                }
            }
            Shape::Indirect => {
                let ind = TABLES + u64::from(c) * 0x100;
                put(table, &desc(ind, 256, DESC_F_INDIRECT, 0));
                for (i, d) in sixteen(data, 0).iter().enumerate() {
                    put(ind + 16 * i as u64, d);
                }
            }
        }
    }
    for slot in 0..QS {
        put(
            AVAIL + 4 + 2 * u64::from(slot),
            &((slot % BATCH) * 16).to_le_bytes(),
        );
    }
    ram
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("chain");
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    for shape in [Shape::One, Shape::Three, Shape::Sixteen, Shape::Indirect] {
        // Ours.
        let mut ram = layout(shape);
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let mut q = OurQueue::new(QS);
        q.set_size(u32::from(QS));
        q.set_desc_table(DESC);
        q.set_avail_ring(AVAIL);
        q.set_used_ring(USED);
        q.set_ready(INDIRECT_DESC).expect("valid queue");
        let mut avail: u16 = 0;
        g.bench_function(BenchmarkId::new("ours", shape.name()), |b| {
            b.iter(|| {
                avail = avail.wrapping_add(BATCH);
                mem.write(AVAIL + 2, &avail.to_le_bytes())
                    .expect("avail idx");
                while let Some(chain) = q.pop::<_, CAP>(&mut mem).expect("well-formed") {
                    let mut hdr = [0u8; 16];
                    chain.reader().read_exact(&mem, &mut hdr).expect("header");
                    black_box(&hdr);
                    q.add_used(&mut mem, &chain, 1).expect("used");
                }
                black_box(q.needs_notification(&mem).expect("notify"));
            });
        });

        // virtio-queue over vm-memory's GuestMemoryMmap, same bytes.
        let gm = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(BASE), RAM)]).expect("mmap");
        gm.write_slice(&layout(shape), GuestAddress(BASE))
            .expect("layout");
        let new_vq = || {
            let mut vq = VqQueue::new(QS).expect("queue");
            vq.set_size(QS);
            vq.set_desc_table_address(Some(u32::try_from(DESC).expect("32-bit")), Some(0));
            vq.set_avail_ring_address(Some(u32::try_from(AVAIL).expect("32-bit")), Some(0));
            vq.set_used_ring_address(Some(u32::try_from(USED).expect("32-bit")), Some(0));
            vq.set_ready(true);
            vq
        };
        let mut vq = new_vq();
        let mut avail: u16 = 0;
        g.bench_function(BenchmarkId::new("vq-raw", shape.name()), |b| {
            b.iter(|| {
                avail = avail.wrapping_add(BATCH);
                gm.write_obj(avail, GuestAddress(AVAIL + 2))
                    .expect("avail idx");
                while let Some(chain) = vq.pop_descriptor_chain(&gm) {
                    let head = chain.head_index();
                    let mut hdr = [0u8; 16];
                    let mut first = true;
                    for d in chain {
                        let access = if d.is_write_only() {
                            Permissions::Write
                        } else {
                            Permissions::Read
                        };
                        assert!(
                            gm.check_range(d.addr(), d.len() as usize, access),
                            "buffer in RAM"
                        );
                        if first {
                            gm.read_slice(&mut hdr, d.addr()).expect("header");
                            first = false;
                        }
                        black_box(d.is_write_only());
                    }
                    black_box(&hdr);
                    vq.add_used(&gm, head, 1).expect("used");
                }
                black_box(vq.needs_notification(&gm).expect("notify"));
            });
        });

        let mut vq = new_vq();
        gm.write_obj(0u16, GuestAddress(USED + 2))
            .expect("used idx");
        let mut avail: u16 = 0;
        gm.write_obj(avail, GuestAddress(AVAIL + 2))
            .expect("avail idx");
        g.bench_function(BenchmarkId::new("vq-reader", shape.name()), |b| {
            b.iter(|| {
                avail = avail.wrapping_add(BATCH);
                gm.write_obj(avail, GuestAddress(AVAIL + 2))
                    .expect("avail idx");
                while let Some(chain) = vq.pop_descriptor_chain(&gm) {
                    let head = chain.head_index();
                    let mut r: Reader<'_, ()> = Reader::new(&gm, chain.clone()).expect("reader");
                    let w: Writer<'_, ()> = Writer::new(&gm, chain).expect("writer");
                    black_box(r.read_obj::<[u8; 16]>().expect("header"));
                    black_box(w.available_bytes());
                    vq.add_used(&gm, head, 1).expect("used");
                }
                black_box(vq.needs_notification(&gm).expect("notify"));
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
