//! The host board's wire format between the supervisor (`bulkhead-host`) and
//! a PD process: the boot message, control messages and PPC messages.
//!
//! All integers are little-endian. Strings are a `u8` length and UTF-8 bytes.
//! Decoding never panics: every read is bounds-checked and a malformed
//! message is a [`WireError`].
//!
//! Boot message (supervisor → PD, once, on the control socket, with the PD's
//! file descriptors attached as `SCM_RIGHTS`; `fd` fields index that array):
//!
//! | field | encoding |
//! |---|---|
//! | magic | `b"BHBOOT01"` |
//! | PD name | str |
//! | flags | u8, bit 0 = passive |
//! | regions | u16 n, then n × (str mr, str setvar_vaddr symbol or "", u64 vaddr, u64 size, u8 perms r=1 w=2 x=4, u16 fd) |
//! | channel handles | u16 n, then n × (u8 id, u8 [`ChanKind`], u16 fd) |
//! | setvars | u16 n, then n × (str symbol, u64 value) |
//! | children | u16 n, then n × u8 id |
//! | vCPUs | u16 n, then n × u8 id |
//! | host resources | u16 n, then n × (str name, u16 fd) |
//!
//! Control messages are fixed-size [`Control`] records in both directions.
//!
//! A PPC channel direction is three descriptors at consecutive indices from
//! its `fd`: the *call* eventfd (caller → callee, non-blocking), the *reply*
//! eventfd (callee → caller, blocking) and a [`PPC_BUF_SIZE`] memfd both
//! ends map — the host board's IPC buffer: a call area at byte 0 and a reply
//! area at byte 2048, each u64 sequence number, u64 label, u64 count, then
//! the message registers; a reply echoes its call's sequence number. Each side copies the registers out before using them
//! and clamps the count, since the peer can write the buffer at any time.

/// Boot message magic.
pub const BOOT_MAGIC: &[u8; 8] = b"BHBOOT01";

/// Largest boot message the PD accepts.
pub const MAX_BOOT_LEN: usize = 64 * 1024;

/// Most file descriptors one boot message may carry (Linux `SCM_MAX_FD`).
pub const MAX_BOOT_FDS: usize = 253;

/// Size of a PPC message buffer (one page; label, count and the message
/// registers use the first 528 bytes, see [`crate::MAX_MRS`]).
pub const PPC_BUF_SIZE: usize = 4096;

/// Descriptors per PPC channel handle (call, reply, buffer).
pub const PPC_FDS: usize = 3;

/// Size of one control record.
pub const CONTROL_LEN: usize = 48;

/// A malformed wire message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The message ended early.
    Truncated,
    /// Wrong magic.
    BadMagic,
    /// A string is not UTF-8.
    BadString,
    /// An enum field has an unknown value.
    BadValue,
    /// The output buffer is too small (encoding).
    NoRoom,
    /// Bytes left over after the last field.
    TrailingBytes,
}

/// What a channel handle is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ChanKind {
    /// eventfd this PD waits on: the peer signals channel `id`.
    NotifyIn = 1,
    /// eventfd this PD writes to notify the peer on channel `id`.
    NotifyOut = 2,
    /// Call/reply/buffer triple with which this PD makes PPCs on channel `id`.
    PpcCaller = 3,
    /// Call/reply/buffer triple on which this PD receives PPCs on channel `id`.
    PpcCallee = 4,
    /// eventfd on which IRQ `id` is delivered.
    Irq = 5,
}

impl ChanKind {
    fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            1 => ChanKind::NotifyIn,
            2 => ChanKind::NotifyOut,
            3 => ChanKind::PpcCaller,
            4 => ChanKind::PpcCallee,
            5 => ChanKind::Irq,
            _ => return Err(WireError::BadValue),
        })
    }
}

/// A bounds-checked little-endian reader.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// A `u8`.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }

    /// A `u16`.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.bytes(4)?);
        Ok(u32::from_le_bytes(a))
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-prefixed string.
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let n = self.u8()?;
        core::str::from_utf8(self.bytes(n as usize)?).map_err(|_| WireError::BadString)
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

/// A bounds-checked little-endian writer into a caller's buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Writes from the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        let end = self.pos.checked_add(b.len()).ok_or(WireError::NoRoom)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(WireError::NoRoom)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    /// Appends a `u8`.
    pub fn u8(&mut self, v: u8) -> Result<(), WireError> {
        self.bytes(&[v])
    }

    /// Appends a `u16`.
    pub fn u16(&mut self, v: u16) -> Result<(), WireError> {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) -> Result<(), WireError> {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) -> Result<(), WireError> {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a length-prefixed string (at most 255 bytes).
    pub fn str(&mut self, s: &str) -> Result<(), WireError> {
        let n = u8::try_from(s.len()).map_err(|_| WireError::BadString)?;
        self.u8(n)?;
        self.bytes(s.as_bytes())
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }
}

/// One memory region record of a boot message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootRegion<'a> {
    /// Memory region name.
    pub mr: &'a str,
    /// `setvar_vaddr` symbol of the map, or "".
    pub symbol: &'a str,
    /// Virtual address.
    pub vaddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits r=1 w=2 x=4.
    pub perms: u8,
    /// Index into the attached descriptors.
    pub fd: u16,
}

/// One channel handle record of a boot message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootChannel {
    /// Local channel id.
    pub id: u8,
    /// What the handle is for.
    pub kind: ChanKind,
    /// Index into the attached descriptors.
    pub fd: u16,
}

/// A decoded, validated boot message. Lists are decoded lazily from the
/// validated bytes.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    /// PD name.
    pub name: &'a str,
    /// Whether the PD is passive.
    pub passive: bool,
    sections: [&'a [u8]; 6],
    counts: [u16; 6],
}

const SEC_REGIONS: usize = 0;
const SEC_CHANNELS: usize = 1;
const SEC_SETVARS: usize = 2;
const SEC_CHILDREN: usize = 3;
const SEC_VCPUS: usize = 4;
const SEC_RESOURCES: usize = 5;

fn skip_record(r: &mut Reader<'_>, sec: usize) -> Result<(), WireError> {
    match sec {
        SEC_REGIONS => {
            r.str()?;
            r.str()?;
            r.bytes(8 + 8 + 1 + 2)?;
        }
        SEC_CHANNELS => {
            r.u8()?;
            ChanKind::from_u8(r.u8()?)?;
            r.u16()?;
        }
        SEC_SETVARS => {
            r.str()?;
            r.u64()?;
        }
        SEC_CHILDREN | SEC_VCPUS => {
            r.u8()?;
        }
        _ => {
            r.str()?;
            r.u16()?;
        }
    }
    Ok(())
}

impl<'a> Boot<'a> {
    /// Validates and decodes a boot message.
    pub fn parse(buf: &'a [u8]) -> Result<Boot<'a>, WireError> {
        let mut r = Reader::new(buf);
        if r.bytes(8)? != BOOT_MAGIC {
            return Err(WireError::BadMagic);
        }
        let name = r.str()?;
        let flags = r.u8()?;
        let mut sections: [&[u8]; 6] = [&[]; 6];
        let mut counts = [0u16; 6];
        for sec in 0..6 {
            let n = r.u16()?;
            let start = r.pos;
            for _ in 0..n {
                skip_record(&mut r, sec)?;
            }
            sections[sec] = &buf[start..r.pos];
            counts[sec] = n;
        }
        r.finish()?;
        Ok(Boot {
            name,
            passive: flags & 1 != 0,
            sections,
            counts,
        })
    }

    fn records(&self, sec: usize) -> (Reader<'a>, u16) {
        (Reader::new(self.sections[sec]), self.counts[sec])
    }

    /// The memory regions.
    pub fn regions(&self) -> impl Iterator<Item = BootRegion<'a>> {
        let (mut r, n) = self.records(SEC_REGIONS);
        (0..n).map_while(move |_| {
            Some(BootRegion {
                mr: r.str().ok()?,
                symbol: r.str().ok()?,
                vaddr: r.u64().ok()?,
                size: r.u64().ok()?,
                perms: r.u8().ok()?,
                fd: r.u16().ok()?,
            })
        })
    }

    /// The channel handles.
    pub fn channels(&self) -> impl Iterator<Item = BootChannel> + 'a {
        let (mut r, n) = self.records(SEC_CHANNELS);
        (0..n).map_while(move |_| {
            Some(BootChannel {
                id: r.u8().ok()?,
                kind: ChanKind::from_u8(r.u8().ok()?).ok()?,
                fd: r.u16().ok()?,
            })
        })
    }

    /// The setvars as (symbol, value).
    pub fn setvars(&self) -> impl Iterator<Item = (&'a str, u64)> {
        let (mut r, n) = self.records(SEC_SETVARS);
        (0..n).map_while(move |_| Some((r.str().ok()?, r.u64().ok()?)))
    }

    /// The child ids.
    pub fn children(&self) -> impl Iterator<Item = u8> + 'a {
        let (mut r, n) = self.records(SEC_CHILDREN);
        (0..n).map_while(move |_| r.u8().ok())
    }

    /// The vCPU ids.
    pub fn vcpus(&self) -> impl Iterator<Item = u8> + 'a {
        let (mut r, n) = self.records(SEC_VCPUS);
        (0..n).map_while(move |_| r.u8().ok())
    }

    /// The host resources as (name, fd index).
    pub fn resources(&self) -> impl Iterator<Item = (&'a str, u16)> {
        let (mut r, n) = self.records(SEC_RESOURCES);
        (0..n).map_while(move |_| Some((r.str().ok()?, r.u16().ok()?)))
    }
}

/// Builder for a boot message (used by the supervisor). Sections must be
/// written in order: regions, channels, setvars, children, vCPUs, resources;
/// call [`BootWriter::section`] before each with its record count.
#[derive(Debug)]
pub struct BootWriter<'a> {
    w: Writer<'a>,
}

impl<'a> BootWriter<'a> {
    /// Starts a boot message for PD `name`.
    pub fn new(buf: &'a mut [u8], name: &str, passive: bool) -> Result<Self, WireError> {
        let mut w = Writer::new(buf);
        w.bytes(BOOT_MAGIC)?;
        w.str(name)?;
        w.u8(u8::from(passive))?;
        Ok(BootWriter { w })
    }

    /// Starts the next section with `count` records.
    pub fn section(&mut self, count: u16) -> Result<(), WireError> {
        self.w.u16(count)
    }

    /// A region record.
    pub fn region(&mut self, r: &BootRegion<'_>) -> Result<(), WireError> {
        self.w.str(r.mr)?;
        self.w.str(r.symbol)?;
        self.w.u64(r.vaddr)?;
        self.w.u64(r.size)?;
        self.w.u8(r.perms)?;
        self.w.u16(r.fd)
    }

    /// A channel record.
    pub fn channel(&mut self, c: &BootChannel) -> Result<(), WireError> {
        self.w.u8(c.id)?;
        self.w.u8(c.kind as u8)?;
        self.w.u16(c.fd)
    }

    /// A setvar record.
    pub fn setvar(&mut self, name: &str, value: u64) -> Result<(), WireError> {
        self.w.str(name)?;
        self.w.u64(value)
    }

    /// A child or vCPU id record.
    pub fn id(&mut self, id: u8) -> Result<(), WireError> {
        self.w.u8(id)
    }

    /// A host resource record.
    pub fn resource(&mut self, name: &str, fd: u16) -> Result<(), WireError> {
        self.w.str(name)?;
        self.w.u16(fd)
    }

    /// Length of the finished message.
    pub fn finish(self) -> usize {
        self.w.len()
    }
}

/// A control record between supervisor and PD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// PD → supervisor after set-up: where a restart puts PC and SP.
    Ready {
        /// Restart entry point.
        pc: u64,
        /// Initial stack pointer.
        sp: u64,
    },
    /// Supervisor → parent: child `child` faulted.
    Fault {
        /// Child id.
        child: u8,
        /// [`crate::FaultKind`] value (the fault message's label).
        kind: u64,
        /// Program counter.
        pc: u64,
        /// Faulting address.
        addr: u64,
        /// Host signal number.
        detail: u64,
    },
    /// Parent → supervisor: the answer to a [`Control::Fault`].
    FaultReply {
        /// Child id.
        child: u8,
        /// Resume the child where it faulted.
        resume: bool,
    },
    /// Parent → supervisor: restart child.
    Restart {
        /// Child id.
        child: u8,
    },
    /// Parent → supervisor: stop child.
    Stop {
        /// Child id.
        child: u8,
    },
    /// Supervisor → VMM: the guest on vCPU `vcpu` accessed a guest-physical
    /// address no RAM backs (a VM fault). The supervisor decoded the
    /// faulting instruction; `syndrome` carries width, direction and
    /// register in the aarch64 data-abort ISS layout (see
    /// [`crate::VmFaultInfo`]).
    VcpuFault {
        /// vCPU id.
        vcpu: u8,
        /// Guest program counter.
        pc: u64,
        /// Guest-physical address.
        addr: u64,
        /// ISS-style syndrome.
        syndrome: u64,
        /// The value stored (writes; 0 for reads).
        value: u64,
    },
    /// VMM → supervisor: the answer to a [`Control::VcpuFault`].
    VcpuReply {
        /// vCPU id.
        vcpu: u8,
        /// Complete the access and resume the guest; `false` stops it.
        resume: bool,
        /// The value a load returns.
        value: u64,
    },
    /// VMM → supervisor: raise virtual IRQ `irq` of vCPU `vcpu`.
    VcpuIrq {
        /// vCPU id.
        vcpu: u8,
        /// The line.
        irq: u16,
    },
    /// VMM → supervisor: stop vCPU `vcpu` (the guest program ends).
    VcpuStop {
        /// vCPU id.
        vcpu: u8,
    },
}

impl Control {
    /// Encodes into a fixed-size record.
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let (tag, a, b, c, d, e) = match *self {
            Control::Ready { pc, sp } => (1u32, pc, sp, 0, 0, 0),
            Control::Fault {
                child,
                kind,
                pc,
                addr,
                detail,
            } => (2, u64::from(child), kind, pc, addr, detail),
            Control::FaultReply { child, resume } => {
                (3, u64::from(child), u64::from(resume), 0, 0, 0)
            }
            Control::Restart { child } => (4, u64::from(child), 0, 0, 0, 0),
            Control::Stop { child } => (5, u64::from(child), 0, 0, 0, 0),
            Control::VcpuFault {
                vcpu,
                pc,
                addr,
                syndrome,
                value,
            } => (6, u64::from(vcpu), pc, addr, syndrome, value),
            Control::VcpuReply {
                vcpu,
                resume,
                value,
            } => (7, u64::from(vcpu), u64::from(resume), value, 0, 0),
            Control::VcpuIrq { vcpu, irq } => (8, u64::from(vcpu), u64::from(irq), 0, 0, 0),
            Control::VcpuStop { vcpu } => (9, u64::from(vcpu), 0, 0, 0, 0),
        };
        let mut out = [0u8; CONTROL_LEN];
        out[0..4].copy_from_slice(&tag.to_le_bytes());
        for (i, v) in [a, b, c, d, e].iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Decodes a record.
    pub fn decode(buf: &[u8]) -> Result<Control, WireError> {
        let mut r = Reader::new(buf);
        let tag = r.u32()?;
        r.u32()?;
        let a = r.u64()?;
        let b = r.u64()?;
        let c = r.u64()?;
        let d = r.u64()?;
        let e = r.u64()?;
        r.finish()?;
        let id = |v: u64| u8::try_from(v).map_err(|_| WireError::BadValue);
        Ok(match tag {
            1 => Control::Ready { pc: a, sp: b },
            2 => Control::Fault {
                child: id(a)?,
                kind: b,
                pc: c,
                addr: d,
                detail: e,
            },
            3 => Control::FaultReply {
                child: id(a)?,
                resume: b != 0,
            },
            4 => Control::Restart { child: id(a)? },
            5 => Control::Stop { child: id(a)? },
            6 => Control::VcpuFault {
                vcpu: id(a)?,
                pc: b,
                addr: c,
                syndrome: d,
                value: e,
            },
            7 => Control::VcpuReply {
                vcpu: id(a)?,
                resume: b != 0,
                value: c,
            },
            8 => Control::VcpuIrq {
                vcpu: id(a)?,
                irq: u16::try_from(b).map_err(|_| WireError::BadValue)?,
            },
            9 => Control::VcpuStop { vcpu: id(a)? },
            _ => return Err(WireError::BadValue),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_round_trip() {
        let mut buf = [0u8; 512];
        let mut w = BootWriter::new(&mut buf, "ping", true).unwrap();
        w.section(1).unwrap();
        w.region(&BootRegion {
            mr: "shared",
            symbol: "buf",
            vaddr: 0x400_0000,
            size: 0x1000,
            perms: 3,
            fd: 0,
        })
        .unwrap();
        w.section(2).unwrap();
        w.channel(&BootChannel {
            id: 1,
            kind: ChanKind::NotifyIn,
            fd: 1,
        })
        .unwrap();
        w.channel(&BootChannel {
            id: 1,
            kind: ChanKind::NotifyOut,
            fd: 2,
        })
        .unwrap();
        w.section(1).unwrap();
        w.setvar("buf", 0x400_0000).unwrap();
        w.section(1).unwrap();
        w.id(3).unwrap();
        w.section(0).unwrap();
        w.section(1).unwrap();
        w.resource("disk", 3).unwrap();
        let n = w.finish();
        let b = Boot::parse(&buf[..n]).unwrap();
        assert_eq!(b.name, "ping");
        assert!(b.passive);
        let r: [BootRegion<'_>; 1] = [b.regions().next().unwrap()];
        assert_eq!(r[0].vaddr, 0x400_0000);
        assert_eq!(b.channels().count(), 2);
        assert_eq!(b.setvars().next(), Some(("buf", 0x400_0000)));
        assert_eq!(b.children().next(), Some(3));
        assert_eq!(b.vcpus().count(), 0);
        assert_eq!(b.resources().next(), Some(("disk", 3)));
        // Every truncation is an error, never a panic.
        for cut in 0..n {
            assert!(Boot::parse(&buf[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            Boot::parse(&buf[..n + 1]).err(),
            Some(WireError::TrailingBytes)
        );
    }

    #[test]
    fn control_round_trip() {
        for c in [
            Control::Ready { pc: 1, sp: 2 },
            Control::Fault {
                child: 4,
                kind: 2,
                pc: 5,
                addr: 6,
                detail: 11,
            },
            Control::FaultReply {
                child: 4,
                resume: true,
            },
            Control::Restart { child: 9 },
            Control::Stop { child: 9 },
            Control::VcpuFault {
                vcpu: 0,
                pc: 0x40_1000,
                addr: 0x1000_0070,
                syndrome: 0x0180_0000,
                value: 7,
            },
            Control::VcpuReply {
                vcpu: 0,
                resume: true,
                value: 0x7472_6976,
            },
            Control::VcpuIrq { vcpu: 1, irq: 33 },
            Control::VcpuStop { vcpu: 1 },
        ] {
            assert_eq!(Control::decode(&c.encode()), Ok(c));
        }
        let mut bad = Control::Restart { child: 1 }.encode();
        bad[8] = 0;
        bad[9] = 1; // child 256
        assert_eq!(Control::decode(&bad), Err(WireError::BadValue));
        assert!(Control::decode(&bad[..40]).is_err());
    }
}
