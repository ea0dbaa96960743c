//! `can_virt`'s configuration, as `bulkhead compose` writes it
//! (`tools/compose/src/sections.rs`): the hops section `0x0003_0001` and the
//! CAN policy section `0x0003_0002`.
//!
//! Compose gives ids without a format flag; the rule here: a TX id above
//! 0x7FF is a 29-bit id, else an 11-bit one; an RX filter whose id or mask
//! has a bit above 0x7FF matches 29-bit frames, else 11-bit frames.
//!
//! ```
//! use bulkhead_virt_can_pd::config::filter;
//! assert!(!filter(0x100, 0x700).extended);
//! assert!(filter(0x1234, 0x1fff_ffff).extended);
//! ```

use bulkhead_can_frame::{MAX_EXTENDED_ID, MAX_STANDARD_ID};
use bulkhead_config::{ConfigError, ConfigRegion, FieldReader};
use bulkhead_virt_can::{Budget, IdFilter, Policy, MAX_FILTERS};

/// Hops section type (compose: CAN class base | 1).
pub const HOPS: u32 = 0x0003_0001;
/// CAN policy section type.
pub const CAN_POLICY: u32 = 0x0003_0002;
/// Guests one `can_virt` serves here.
pub const GUESTS: usize = 4;

/// One guest's hop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// `can_virt`'s channel id to the guest's VMM.
    pub channel: u8,
    /// The guest's index in the description.
    pub guest: u32,
    /// Vaddr of the hop (`req`; `resp` at +0x1000).
    pub hop: u64,
    /// The guest's policy.
    pub policy: Policy,
}

/// The whole configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Channel id to the driver.
    pub driver_channel: u8,
    /// Vaddr of the driver hop.
    pub driver_hop: u64,
    /// The guests, in hop order (the virtualiser's guest index).
    pub clients: [Client; GUESTS],
    /// How many of `clients` are used.
    pub len: usize,
}

/// Why the configuration is refused. Each variant's doc is its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigProblem {
    /// a section is missing
    Missing(u32),
    /// a section has a version other than 1
    Version(u32),
    /// a section does not parse
    Format(ConfigError),
    /// more guests than this PD serves
    TooManyGuests(u32),
    /// a channel id above 62
    BadChannel(u32),
    /// a policy names a channel no hop has
    UnknownChannel(u32),
    /// more filters or whitelist ids than a policy holds
    TooManyFilters,
    /// an id above 0x1FFF_FFFF
    BadId(u32),
    /// a hop has no policy
    NoPolicy(u8),
}

impl From<ConfigError> for ConfigProblem {
    fn from(e: ConfigError) -> Self {
        Self::Format(e)
    }
}

impl core::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing(t) => write!(f, "configuration section {t:#010x} missing"),
            Self::Version(t) => write!(f, "configuration section {t:#010x}: version not 1"),
            Self::Format(e) => write!(f, "configuration does not parse: {e:?}"),
            Self::TooManyGuests(n) => write!(f, "{n} guests, at most {GUESTS}"),
            Self::BadChannel(c) => write!(f, "channel id {c} out of range"),
            Self::UnknownChannel(c) => write!(f, "policy for channel {c}, which no hop has"),
            Self::TooManyFilters => write!(f, "more than {MAX_FILTERS} filters or ids"),
            Self::BadId(id) => write!(f, "CAN id {id:#x} out of range"),
            Self::NoPolicy(c) => write!(f, "hop on channel {c} has no policy"),
        }
    }
}

/// An RX filter from compose's `(id, mask)` (format rule in the module doc).
pub fn filter(id: u32, mask: u32) -> IdFilter {
    let ext = (id | mask) > u32::from(MAX_STANDARD_ID);
    IdFilter {
        id,
        mask,
        extended: ext,
    }
}

/// A whitelist entry for exactly `id` (format rule in the module doc).
pub fn exact(id: u32) -> IdFilter {
    let ext = id > u32::from(MAX_STANDARD_ID);
    IdFilter {
        id,
        mask: if ext {
            MAX_EXTENDED_ID
        } else {
            u32::from(MAX_STANDARD_ID)
        },
        extended: ext,
    }
}

fn channel(c: u32) -> Result<u8, ConfigProblem> {
    u8::try_from(c)
        .ok()
        .filter(|c| *c < 63)
        .ok_or(ConfigProblem::BadChannel(c))
}

fn payload<'a>(cfg: &ConfigRegion<'a>, t: u32) -> Result<&'a [u8], ConfigProblem> {
    let s = cfg.section(t).ok_or(ConfigProblem::Missing(t))?;
    if s.version != 1 {
        return Err(ConfigProblem::Version(t));
    }
    Ok(s.payload())
}

impl Config {
    /// Reads both sections from `cfg`.
    ///
    /// # Errors
    /// [`ConfigProblem`] for anything missing, malformed or inconsistent.
    pub fn from_region(cfg: &ConfigRegion<'_>) -> Result<Config, ConfigProblem> {
        Self::parse(payload(cfg, HOPS)?, payload(cfg, CAN_POLICY)?)
    }

    /// Reads the hops and policy payloads.
    ///
    /// # Errors
    /// [`ConfigProblem`].
    pub fn parse(hops: &[u8], policy: &[u8]) -> Result<Config, ConfigProblem> {
        let mut me = Config::default();
        let mut r = FieldReader::new(hops);
        me.driver_channel = channel(r.u32()?)?;
        let n = r.u32()?;
        me.driver_hop = r.u64()?;
        let _data_size = r.u64()?;
        let len = usize::try_from(n).unwrap_or(usize::MAX);
        if len > GUESTS {
            return Err(ConfigProblem::TooManyGuests(n));
        }
        me.len = len;
        for c in &mut me.clients[..len] {
            c.channel = channel(r.u32()?)?;
            c.guest = r.u32()?;
            c.hop = r.u64()?;
        }
        let mut seen = [false; GUESTS];
        let mut r = FieldReader::new(policy);
        let count = r.u32()?;
        let _pad = r.u32()?;
        for _ in 0..count {
            let ch = r.u32()?;
            let nf = usize::from(r.u16()?);
            let nt = usize::from(r.u16()?);
            let (frames, bits, period_us, _pad) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
            if nf > MAX_FILTERS || nt > MAX_FILTERS {
                return Err(ConfigProblem::TooManyFilters);
            }
            let mut rx = [IdFilter::default(); MAX_FILTERS];
            for f in &mut rx[..nf] {
                let (id, mask) = (r.u32()?, r.u32()?);
                if id > MAX_EXTENDED_ID || mask > MAX_EXTENDED_ID {
                    return Err(ConfigProblem::BadId(id.max(mask)));
                }
                *f = filter(id, mask);
            }
            let mut tx = [IdFilter::default(); MAX_FILTERS];
            for f in &mut tx[..nt] {
                let id = r.u32()?;
                if id > MAX_EXTENDED_ID {
                    return Err(ConfigProblem::BadId(id));
                }
                *f = exact(id);
            }
            // Entries are padded to 8 bytes.
            let pad = r.position() % 8;
            if pad != 0 {
                r.bytes(8 - pad)?;
            }
            let budget = Budget {
                period_ns: u64::from(period_us) * 1000,
                frames,
                bits,
            };
            let policy = Policy::new(&rx[..nf], &tx[..nt], budget)
                .map_err(|_| ConfigProblem::TooManyFilters)?;
            let k = me.clients[..len]
                .iter()
                .position(|c| u32::from(c.channel) == ch)
                .ok_or(ConfigProblem::UnknownChannel(ch))?;
            me.clients[k].policy = policy;
            seen[k] = true;
        }
        if let Some(k) = (0..len).find(|&k| !seen[k]) {
            return Err(ConfigProblem::NoPolicy(me.clients[k].channel));
        }
        Ok(me)
    }

    /// The used clients.
    pub fn clients(&self) -> &[Client] {
        &self.clients[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn le(v: &mut Vec<u8>, x: u64, n: usize) {
        v.extend_from_slice(&x.to_le_bytes()[..n]);
    }

    /// Bytes as compose writes them for two guests (the automotive
    /// system's policies).
    fn sections() -> (Vec<u8>, Vec<u8>) {
        let mut h = Vec::new();
        le(&mut h, 0, 4);
        le(&mut h, 2, 4);
        le(&mut h, 0x6600_0000, 8);
        le(&mut h, 0, 8);
        for (ch, g, va) in [(1u64, 0u64, 0x6680_0000u64), (2, 1, 0x6700_0000)] {
            le(&mut h, ch, 4);
            le(&mut h, g, 4);
            le(&mut h, va, 8);
        }
        let mut p = Vec::new();
        le(&mut p, 2, 4);
        le(&mut p, 0, 4);
        // cluster: 1 filter, 2 ids, 100 frames / 20000 bits / 10 ms.
        for x in [
            1u64,
            1 | 2 << 16,
            100,
            20000,
            10000,
            0,
            0x100,
            0x700,
            0x300,
            0x301,
        ] {
            le(&mut p, x, 4);
        }
        // infotainment: 1 filter, one 29-bit id.
        for x in [
            2u64,
            1 | 1 << 16,
            20,
            4000,
            10000,
            0,
            0x400,
            0x700,
            0x18da_f110,
        ] {
            le(&mut p, x, 4);
        }
        le(&mut p, 0, 4); // pad to 8
        (h, p)
    }

    #[test]
    fn compose_sections_become_policies_per_hop() {
        use bulkhead_can_frame::{CanId, Frame};
        let (h, p) = sections();
        let c = Config::parse(&h, &p).unwrap();
        assert_eq!((c.driver_channel, c.driver_hop, c.len), (0, 0x6600_0000, 2));
        let [a, b] = [c.clients[0], c.clients[1]];
        assert_eq!((a.channel, a.guest, a.hop), (1, 0, 0x6680_0000));
        assert_eq!((b.channel, b.guest, b.hop), (2, 1, 0x6700_0000));
        let f = |id: u16| Frame::classic(CanId::standard(id).unwrap(), &[]).unwrap();
        assert!(a.policy.accepts(&f(0x1ff)) && !a.policy.accepts(&f(0x200)));
        assert!(a.policy.may_send(&f(0x301)) && !a.policy.may_send(&f(0x302)));
        assert_eq!(a.policy.budget.period_ns, 10_000_000);
        let ext = Frame::classic(CanId::extended(0x18da_f110).unwrap(), &[]).unwrap();
        assert!(b.policy.may_send(&ext));
        assert!(!b.policy.may_send(&f(0x110)), "the 11-bit id is another id");
    }

    #[test]
    fn bad_sections_are_refused_not_guessed() {
        let (h, p) = sections();
        assert!(matches!(
            Config::parse(&h[..20], &p),
            Err(ConfigProblem::Format(_))
        ));
        assert!(Config::parse(&h, &p[..p.len() - 8]).is_err());
        let mut p2 = p.clone();
        p2[8] = 9; // the first policy's channel: no such hop
        assert_eq!(
            Config::parse(&h, &p2),
            Err(ConfigProblem::UnknownChannel(9))
        );
        let mut p3 = p.clone();
        p3[0] = 1; // one policy only: the second hop has none
        assert_eq!(Config::parse(&h, &p3), Err(ConfigProblem::NoPolicy(2)));
        let mut h2 = h.clone();
        h2[4] = 5;
        assert_eq!(Config::parse(&h2, &p), Err(ConfigProblem::TooManyGuests(5)));
        // Random bytes never panic.
        for seed in 0u32..2000 {
            let mut x = seed.wrapping_mul(2_654_435_761);
            let mut b = p.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = x as usize % b.len();
                b[i] = (x >> 24) as u8;
            }
            let _ = Config::parse(&h, &b);
        }
    }
}
