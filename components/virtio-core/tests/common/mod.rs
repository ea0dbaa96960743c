//! An in-test guest: Vec-backed guest RAM, a tiny driver that lays out split
//! rings and chains by hand (so it can break every rule), and an echo device
//! model behind the real [`MmioTransport`].
#![allow(dead_code, clippy::unwrap_used)]

use bulkhead_virtio::spec::{feature, reg, ring, status};
use bulkhead_virtio::{
    DescriptorChain, MmioTransport, QueueContext, QueueError, SliceMemory, TransportStats,
    VirtioDevice, WriteEffect,
};

pub const RAM_BASE: u64 = 0x4000_0000;
pub const RAM_SIZE: usize = 0x10000;
pub const QS: u16 = 16;
pub const DESC: u64 = RAM_BASE;
pub const AVAIL: u64 = RAM_BASE + 0x1000;
pub const USED: u64 = RAM_BASE + 0x2000;
/// Indirect tables go here.
pub const TABLES: u64 = RAM_BASE + 0x3000;
/// Data buffers go here, 0x100 bytes each.
pub const DATA: u64 = RAM_BASE + 0x4000;
pub const CONFIG: [u8; 12] = *b"bulkhead-cfg";
/// Buffers per chain the echo device accepts.
pub const CAP: usize = 8;

/// Echo device: reads every readable byte (up to 256), writes them back
/// with each byte inverted into the writable buffers, and completes the
/// chain with the number of bytes written. In `hold` mode it pops chains
/// but keeps them (an asynchronous backend).
#[derive(Default)]
pub struct Echo {
    pub config: [u8; 12],
    pub activated: Option<u64>,
    pub notifies: u32,
    pub resets: u32,
    pub hold: bool,
    pub held: Vec<DescriptorChain<CAP>>,
    pub extra_features: u64,
    /// A chain from before a reset, completed at the next notify.
    pub late: Option<DescriptorChain<CAP>>,
    pub late_result: Option<Result<(), QueueError>>,
    /// A careless model: ignore queue errors instead of returning them.
    pub swallow_errors: bool,
}

impl Echo {
    pub fn new() -> Self {
        Self {
            config: CONFIG,
            ..Self::default()
        }
    }
}

impl VirtioDevice for Echo {
    fn device_id(&self) -> u32 {
        0x2a
    }
    fn features(&self) -> u64 {
        feature::INDIRECT_DESC | feature::EVENT_IDX | feature::RING_RESET | 1 | self.extra_features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QS, QS]
    }
    fn config_len(&self) -> usize {
        self.config.len()
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        data.copy_from_slice(&self.config[offset..offset + data.len()]);
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config[offset..offset + data.len()].copy_from_slice(data);
    }
    fn activate(&mut self, features: u64) {
        self.activated = Some(features);
    }
    fn reset(&mut self) {
        self.activated = None;
        self.resets += 1;
        self.held.clear();
    }
    fn queue_notify(&mut self, _queue: u16, ctx: &mut QueueContext<'_>) -> Result<(), QueueError> {
        self.notifies += 1;
        if let Some(c) = self.late.take() {
            self.late_result = Some(ctx.add_used(&c, 4));
        }
        loop {
            let chain = match ctx.pop::<CAP>() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(_) if self.swallow_errors => return Ok(()),
                Err(e) => return Err(e),
            };
            if self.hold {
                self.held.push(chain);
                continue;
            }
            let mut buf = [0u8; 256];
            let n = chain.reader().read(ctx.memory(), &mut buf).unwrap();
            for b in &mut buf[..n] {
                *b = !*b;
            }
            let mut w = chain.writer();
            w.write(ctx.memory_mut(), &buf[..n]).unwrap();
            let len = w.written();
            ctx.add_used(&chain, len)?;
        }
        Ok(())
    }
}

/// One guest: its RAM, its device, and the driver's ring state.
pub struct Guest {
    pub ram: Vec<u8>,
    pub dev: MmioTransport<Echo>,
    pub next_avail: u16,
    pub used_seen: u16,
    pub irqs: u32,
}

impl Guest {
    /// A guest whose device is reset but not initialised.
    pub fn new() -> Self {
        Self::with_device(Echo::new())
    }

    pub fn with_device(dev: Echo) -> Self {
        Self {
            ram: vec![0; RAM_SIZE],
            dev: MmioTransport::new(dev).unwrap(),
            next_avail: 0,
            used_seen: 0,
            irqs: 0,
        }
    }

    /// A guest that went through §3.1.1 with `features` on queue 0.
    pub fn ready(features: u64) -> Self {
        let mut g = Self::new();
        g.init(features);
        g
    }

    pub fn r(&mut self, off: u64) -> u32 {
        u32::try_from(self.dev.read(off, 4).unwrap()).unwrap()
    }

    pub fn w(&mut self, off: u64, v: u32) -> WriteEffect {
        let e = self.dev.write(off, 4, u64::from(v)).unwrap();
        if let WriteEffect::QueueNotify(q) = e {
            self.process(q);
        }
        e
    }

    /// What the VMM does after a QueueNotify.
    pub fn process(&mut self, q: u16) {
        let mut mem = SliceMemory::new(RAM_BASE, &mut self.ram);
        if self.dev.process_queue(q, &mut mem) {
            self.irqs += 1;
        }
    }

    pub fn status(&mut self) -> u32 {
        self.r(reg::STATUS)
    }

    pub fn write_features(&mut self, features: u64) {
        self.w(reg::DRIVER_FEATURES_SEL, 0);
        self.w(reg::DRIVER_FEATURES, lo(features));
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, hi(features));
    }

    /// Queue registers for queue `q` at the standard layout.
    pub fn setup_queue(&mut self, q: u32, size: u32, desc: u64, avail: u64, used: u64) {
        self.w(reg::QUEUE_SEL, q);
        self.w(reg::QUEUE_NUM, size);
        self.w(reg::QUEUE_DESC_LOW, lo(desc));
        self.w(reg::QUEUE_DESC_HIGH, hi(desc));
        self.w(reg::QUEUE_DRIVER_LOW, lo(avail));
        self.w(reg::QUEUE_DRIVER_HIGH, hi(avail));
        self.w(reg::QUEUE_DEVICE_LOW, lo(used));
        self.w(reg::QUEUE_DEVICE_HIGH, hi(used));
        self.w(reg::QUEUE_READY, 1);
    }

    /// The full initialisation sequence of §3.1.1 / §4.2.3.
    pub fn init(&mut self, features: u64) {
        self.w(reg::STATUS, 0);
        self.ram.fill(0);
        self.next_avail = 0;
        self.used_seen = 0;
        self.w(reg::STATUS, status::ACKNOWLEDGE);
        self.w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        self.write_features(features);
        self.w(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_ne!(
            self.status() & status::FEATURES_OK,
            0,
            "features {features:#x} refused"
        );
        self.setup_queue(0, u32::from(QS), DESC, AVAIL, USED);
        assert_eq!(self.r(reg::QUEUE_READY), 1);
        self.w(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert_eq!(self.status(), 15);
    }

    pub fn put(&mut self, gpa: u64, bytes: &[u8]) {
        let o = usize::try_from(gpa - RAM_BASE).unwrap();
        self.ram[o..o + bytes.len()].copy_from_slice(bytes);
    }

    pub fn get(&self, gpa: u64, len: usize) -> Vec<u8> {
        let o = usize::try_from(gpa - RAM_BASE).unwrap();
        self.ram[o..o + len].to_vec()
    }

    pub fn get_u16(&self, gpa: u64) -> u16 {
        u16::from_le_bytes(self.get(gpa, 2).try_into().unwrap())
    }

    pub fn put_u16(&mut self, gpa: u64, v: u16) {
        self.put(gpa, &v.to_le_bytes());
    }

    /// Descriptor `i` of the table at `table`.
    pub fn desc_at(&mut self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.put(table + 16 * u64::from(i), &d);
    }

    pub fn desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.desc_at(DESC, i, addr, len, flags, next);
    }

    /// Puts `head` in the avail ring and bumps avail.idx.
    pub fn publish(&mut self, head: u16) {
        let slot = u64::from(self.next_avail % QS);
        self.put_u16(AVAIL + 4 + 2 * slot, head);
        self.next_avail = self.next_avail.wrapping_add(1);
        self.put_u16(AVAIL + 2, self.next_avail);
    }

    pub fn set_avail_idx(&mut self, idx: u16) {
        self.put_u16(AVAIL + 2, idx);
    }

    pub fn notify(&mut self, q: u32) -> WriteEffect {
        self.w(reg::QUEUE_NOTIFY, q)
    }

    pub fn used_idx(&self) -> u16 {
        self.get_u16(USED + 2)
    }

    /// Used element `i` as (id, len).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let e = self.get(USED + 4 + 8 * u64::from(i % QS), 8);
        (
            u32::from_le_bytes(e[..4].try_into().unwrap()),
            u32::from_le_bytes(e[4..].try_into().unwrap()),
        )
    }

    /// The used elements added since the last call.
    pub fn take_used(&mut self) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        while self.used_seen != self.used_idx() {
            v.push(self.used(self.used_seen));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        v
    }

    /// A well-formed echo round trip with a 2-descriptor chain at heads
    /// 14/15; returns what the device wrote back.
    pub fn echo(&mut self, payload: &[u8]) -> Vec<u8> {
        let (out, inp) = (DATA + 0xe00, DATA + 0xf00);
        self.put(out, payload);
        self.put(inp, &[0; 0x100]);
        self.desc(14, out, len32(payload.len()), ring::DESC_F_NEXT, 15);
        self.desc(15, inp, 0x100, ring::DESC_F_WRITE, 0);
        self.publish(14);
        self.notify(0);
        let used = self.take_used();
        assert_eq!(used, vec![(14, len32(payload.len()))], "echo round trip");
        self.get(inp, payload.len())
    }

    /// Asserts the device works for a well-behaved request and has never
    /// seen a driver error.
    pub fn assert_healthy(&mut self, clean: bool) {
        let reply = self.echo(b"ping");
        assert_eq!(reply, b"ping".iter().map(|b| !b).collect::<Vec<_>>());
        assert_eq!(self.status() & status::DEVICE_NEEDS_RESET, 0);
        if clean {
            assert_eq!(
                self.dev.stats(),
                &TransportStats::default(),
                "victim saw driver errors"
            );
            assert_eq!(self.dev.queue(0).unwrap().rejected_chains(), 0);
        }
    }
}

pub fn lo(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap()
}

pub fn hi(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap()
}

pub fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap()
}

/// Negotiated features of a plain guest.
pub const BASE: u64 = feature::VERSION_1;

/// Runs `attack` on one guest while a second guest with its own RAM and
/// device is served before and after; asserts the second is unaffected.
pub fn with_victim(features: u64, attack: impl FnOnce(&mut Guest)) {
    let mut victim = Guest::ready(features);
    victim.assert_healthy(true);
    let before = victim.ram.clone();
    let mut attacker = Guest::ready(features);
    attack(&mut attacker);
    assert_eq!(victim.ram, before, "victim RAM changed");
    victim.assert_healthy(true);
    assert_eq!(victim.dev.device().activated, Some(features));
}
