//! Fuzz targets `virtio_mmio_regs` and `virtio_desc_walk`: a hostile guest
//! driving the virtio device side (`bulkhead-virtio`). Any panic is a bug;
//! the bodies also assert the rules the device side promises.
//!
//! `virtio_mmio_regs`: the input is `[ops_len: u16][ops][guest RAM]`, the
//! ops a sequence of register accesses against a virtio-mmio device; a
//! QueueNotify runs the queue as the VMM would.
//!
//! `virtio_desc_walk`: the input is `[size_log2][features][desc: u16]
//! [avail: u16][used: u16][n_ops][ops][guest RAM]` (ring offsets relative to
//! RAM); the ops pop (every chain is checked, read and written), complete,
//! let the guest scribble on its RAM, or ask for a notification.

use bulkhead_virtio::spec::{feature, reg, status};
use bulkhead_virtio::{
    DescriptorChain, GuestMemory, MmioTransport, Queue, QueueContext, QueueError, SliceMemory,
    VirtioDevice, WriteEffect,
};

const RAM_BASE: u64 = 0x1000;
const RAM_SIZE: usize = 0x2000;
const CAP: usize = 8;
const CONFIG_LEN: usize = 10;

/// A little-endian reader over the fuzz bytes that yields zeros at the end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
}

/// A device model that checks what the transport promises it.
struct Probe {
    config: [u8; CONFIG_LEN],
    notifies: u32,
}

impl VirtioDevice for Probe {
    fn device_id(&self) -> u32 {
        2
    }
    fn features(&self) -> u64 {
        0b101 | feature::INDIRECT_DESC | feature::EVENT_IDX | feature::RING_RESET
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[8, 256]
    }
    fn config_len(&self) -> usize {
        CONFIG_LEN
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        // Indexing panics if the transport ever passes a range past the end.
        data.copy_from_slice(&self.config[offset..offset + data.len()]);
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config[offset..offset + data.len()].copy_from_slice(data);
    }
    fn activate(&mut self, _features: u64) {}
    fn reset(&mut self) {}
    fn queue_notify(&mut self, _queue: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        self.notifies += 1;
        // A bounded number of chains per notify, echoing like a real model.
        for _ in 0..32 {
            let Some(chain) = ctx.pop::<CAP>()? else {
                break;
            };
            let mut buf = [0u8; 64];
            let n = chain.reader().read(ctx.memory(), &mut buf).unwrap_or(0);
            let mut w = chain.writer();
            let _ = w.write(ctx.memory_mut(), &buf[..n]);
            let len = w.written();
            ctx.add_used(&chain, len)?;
        }
        Ok(())
    }
}

/// Register accesses against a virtio-mmio device.
pub fn virtio_mmio_regs(data: &[u8]) {
    // [ops_len: u16][ops][guest RAM seed]
    let mut b = Bytes(data);
    let ops_len = usize::from(b.u16()).min(b.0.len());
    let (ops, seed) = b.0.split_at(ops_len);
    let mut ram = [0u8; RAM_SIZE];
    let n = seed.len().min(RAM_SIZE);
    ram[..n].copy_from_slice(&seed[..n]);
    let mut mem = SliceMemory::new(RAM_BASE, &mut ram);
    let Ok(mut dev) = MmioTransport::new(Probe {
        config: *b"0123456789",
        notifies: 0,
    }) else {
        return;
    };
    let mut b = Bytes(ops);
    for _ in 0..512 {
        if b.0.is_empty() {
            break;
        }
        let op = b.u8();
        // Mostly the register window, sometimes anywhere.
        let offset = if op & 0x80 != 0 {
            b.u64()
        } else {
            u64::from(b.u16() & 0x1ff)
        };
        let width = [4u8, 4, 1, 2, 8, 3, 0, 16][usize::from(op >> 4 & 7)];
        match op & 0x0f {
            0..=5 => {
                let r = dev.read(offset, width);
                if offset == reg::MAGIC_VALUE && width == 4 {
                    assert_eq!(r, Ok(u64::from(reg::MAGIC)));
                }
            }
            6..=13 => {
                let value = match width {
                    1 => u64::from(b.u8()),
                    2 => u64::from(b.u16()),
                    8 => b.u64(),
                    _ => u64::from(b.u32()),
                };
                if let Ok(WriteEffect::QueueNotify(q)) = dev.write(offset, width, value) {
                    let before = dev.device().notifies;
                    dev.process_queue(q, &mut mem);
                    assert!(dev.device().notifies <= before + 1);
                }
            }
            14 => dev.config_changed(),
            _ => {
                // A notify the transport did not approve must not reach the model.
                let q = b.u16();
                let allowed = dev.status() & status::DRIVER_OK != 0
                    && dev.status() & (status::DEVICE_NEEDS_RESET | status::FAILED) == 0
                    && dev.queue(q).is_some_and(|q| q.ready() && !q.stopped());
                let before = dev.device().notifies;
                dev.process_queue(q, &mut mem);
                assert_eq!(dev.device().notifies, before + u32::from(allowed));
            }
        }
        let s = dev.status();
        assert!(
            s & status::DRIVER_OK == 0 || s & status::FEATURES_OK != 0,
            "DRIVER_OK without FEATURES_OK"
        );
        assert_eq!(dev.interrupt_status() & !3, 0);
        if s & status::FEATURES_OK != 0 {
            let f = dev.driver_features();
            assert_eq!(
                f & !dev.offered_features(),
                0,
                "accepted an unoffered feature"
            );
        }
        assert_eq!(
            dev.read(reg::QUEUE_NUM_MAX + 0x1000, 4).ok(),
            Some(0),
            "config past the end reads 0"
        );
    }
}

/// Pops, checks, reads, writes and completes chains from fuzzed rings.
pub fn virtio_desc_walk(data: &[u8]) {
    let mut b = Bytes(data);
    let size = 1u32 << (b.u8() % 9);
    let features = b.u8();
    let (desc, avail, used) = (b.u16(), b.u16(), b.u16());
    let n_ops = usize::from(b.u8());
    let ops: Vec<u8> = (0..n_ops).map(|_| b.u8()).collect();
    let mut ram = [0u8; RAM_SIZE];
    let n = b.0.len().min(RAM_SIZE);
    ram[..n].copy_from_slice(&b.0[..n]);
    let mut mem = SliceMemory::new(RAM_BASE, &mut ram);

    let negotiated = if features & 1 != 0 {
        feature::INDIRECT_DESC
    } else {
        0
    } | if features & 2 != 0 {
        feature::EVENT_IDX
    } else {
        0
    };
    let mut q = Queue::new(256);
    q.set_size(size);
    q.set_desc_table(RAM_BASE + u64::from(desc));
    q.set_avail_ring(RAM_BASE + u64::from(avail));
    q.set_used_ring(RAM_BASE + u64::from(used));
    if q.set_ready(negotiated).is_err() {
        return;
    }
    let mut completed: u16 = 0;
    let mut held: Vec<DescriptorChain<CAP>> = Vec::new();
    let mut ops = Bytes(&ops);
    while !ops.0.is_empty() {
        match ops.u8() % 6 {
            0 | 1 => match q.pop::<_, CAP>(&mut mem) {
                Ok(Some(chain)) => {
                    check_chain(&chain, &mut mem);
                    held.push(chain);
                }
                Ok(None) => {}
                Err(e) => {
                    assert!(e.is_fatal() || e == QueueError::NotReady);
                    assert!(q.stopped() || !q.ready());
                }
            },
            2 | 3 => {
                if let Some(chain) = held.pop() {
                    let before = q.next_used();
                    let len = ops.u32();
                    match q.add_used(&mut mem, &chain, len) {
                        Ok(()) => {
                            completed = completed.wrapping_add(1);
                            assert_eq!(q.next_used(), before.wrapping_add(1));
                            let mut idx = [0u8; 2];
                            if mem.read(RAM_BASE + u64::from(used) + 2, &mut idx).is_ok() {
                                assert_eq!(u16::from_le_bytes(idx), q.next_used());
                            }
                        }
                        Err(e) => assert!(
                            e.is_fatal()
                                || e == QueueError::NotReady
                                || e == QueueError::StaleChain
                        ),
                    }
                }
            }
            4 => {
                // The guest scribbles on its own RAM (rings included).
                let at = RAM_BASE + u64::from(ops.u16() % 0x2000);
                let v = ops.u16().to_le_bytes();
                let _ = mem.write(at, &v);
            }
            _ => {
                let _ = q.needs_notification(&mem);
            }
        }
        // Never lose a buffer: everything taken from the avail ring was
        // either returned (completed or rejected with len 0) or is held.
        if !q.stopped() && q.ready() {
            let returned =
                completed.wrapping_add(u16::try_from(q.rejected_chains() & 0xffff).unwrap_or(0));
            assert_eq!(q.next_used(), returned);
        }
    }
}

/// What a validated chain promises: bounded, in guest RAM, readable before
/// writable; and the writer reaches only writable buffers.
fn check_chain(chain: &DescriptorChain<CAP>, mem: &mut SliceMemory<'_>) {
    let mut seen_writable = false;
    let mut total = 0u64;
    let mut count = 0;
    for (gpa, len, writable) in chain.buffers() {
        assert!(len > 0);
        assert!(mem.check_range(gpa, u64::from(len)).is_ok());
        assert!(writable || !seen_writable, "readable after writable");
        seen_writable |= writable;
        total += u64::from(len);
        count += 1;
    }
    assert!(count <= CAP);
    assert_eq!(total, chain.readable_len() + chain.writable_len());
    assert!(total <= 1 << 32);
    let mut sink = [0u8; 256];
    let mut r = chain.reader();
    while r.remaining() > 0 {
        let got = r.read(mem, &mut sink).unwrap_or(0);
        assert!(got > 0);
    }
    // Write a pattern and check that only device-writable bytes changed.
    let before = mem.bytes().to_vec();
    let mut w = chain.writer();
    let pattern = [0xa5u8; 256];
    while w.remaining() > 0 {
        if w.write(mem, &pattern).unwrap_or(0) == 0 {
            break;
        }
    }
    let base = mem.base();
    for (i, (a, b)) in before.iter().zip(mem.bytes()).enumerate() {
        if a != b {
            let gpa = base + i as u64;
            assert!(
                chain
                    .buffers()
                    .any(|(g, l, wr)| wr && gpa >= g && gpa < g + u64::from(l)),
                "wrote outside the writable buffers"
            );
        }
    }
}
