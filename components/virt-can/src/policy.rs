//! Per-guest policy and the configuration section it comes from.
//!
//! Section [`CanVirtConfig`] (type `0x0003_0001`, version 1), all fields
//! little-endian:
//!
//! ```text
//! u32 guest_count                       (1..=MAX_GUESTS)
//! per guest:
//!   u16 rx_filter_count  u16 tx_allow_count   (each ≤ MAX_FILTERS)
//!   u64 budget_period_ns (0: no budget)
//!   u32 budget_frames    u32 budget_bits
//!   rx_filter_count × { u32 id; u32 mask; u8 extended; u8 pad[3] }
//!   tx_allow_count  × { u32 id; u32 mask; u8 extended; u8 pad[3] }
//! ```

use bulkhead_can_frame::{CanId, Frame, MAX_EXTENDED_ID, MAX_STANDARD_ID};
use bulkhead_config::{ConfigError, FieldReader, SectionType};

/// Guests one virtualiser serves at most.
pub const MAX_GUESTS: usize = 8;
/// RX filters and TX allow entries per guest at most.
pub const MAX_FILTERS: usize = 16;

/// An id/mask match: a frame matches if its format is `extended` and
/// `frame_id & mask == id & mask`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdFilter {
    /// Identifier bits to compare.
    pub id: u32,
    /// Which bits are compared.
    pub mask: u32,
    /// 29-bit format (false: 11-bit).
    pub extended: bool,
}

impl IdFilter {
    /// Exactly one 11-bit id.
    pub const fn standard(id: u16) -> Self {
        Self {
            id: id as u32,
            mask: MAX_STANDARD_ID as u32,
            extended: false,
        }
    }

    /// Whether `id` matches.
    pub fn matches(&self, id: CanId) -> bool {
        id.is_extended() == self.extended && (id.raw() ^ self.id) & self.mask == 0
    }
}

/// A token bucket's size: refilled continuously, `frames` and `bits` per
/// `period_ns`, full at most one period's worth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Refill period; 0 means no budget.
    pub period_ns: u64,
    /// Frames per period.
    pub frames: u32,
    /// Stuffed wire bits per period.
    pub bits: u32,
}

/// One guest's policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    rx: [IdFilter; MAX_FILTERS],
    rx_len: usize,
    tx: [IdFilter; MAX_FILTERS],
    tx_len: usize,
    /// Transmit budget.
    pub budget: Budget,
}

/// Why a policy could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// more than MAX_FILTERS entries
    TooManyFilters,
}

impl Policy {
    /// A policy from its filters and budget.
    ///
    /// # Errors
    /// [`PolicyError::TooManyFilters`].
    pub fn new(rx: &[IdFilter], tx: &[IdFilter], budget: Budget) -> Result<Self, PolicyError> {
        if rx.len() > MAX_FILTERS || tx.len() > MAX_FILTERS {
            return Err(PolicyError::TooManyFilters);
        }
        let mut p = Self {
            budget,
            rx_len: rx.len(),
            tx_len: tx.len(),
            ..Self::default()
        };
        p.rx[..rx.len()].copy_from_slice(rx);
        p.tx[..tx.len()].copy_from_slice(tx);
        Ok(p)
    }

    /// RX acceptance filters (a frame is delivered if any matches).
    pub fn rx_filters(&self) -> &[IdFilter] {
        &self.rx[..self.rx_len]
    }

    /// TX allow list (a frame is sent only if one matches).
    pub fn tx_allowed(&self) -> &[IdFilter] {
        &self.tx[..self.tx_len]
    }

    /// Whether the guest subscribed to `frame`.
    pub fn accepts(&self, frame: &Frame) -> bool {
        self.rx_filters().iter().any(|f| f.matches(frame.id()))
    }

    /// Whether the guest may send `frame`.
    pub fn may_send(&self, frame: &Frame) -> bool {
        self.tx_allowed().iter().any(|f| f.matches(frame.id()))
    }
}

/// The virtualiser's configuration section: one [`Policy`] per guest, in
/// guest order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanVirtConfig {
    guests: [Policy; MAX_GUESTS],
    len: usize,
}

impl CanVirtConfig {
    /// From policies (at most [`MAX_GUESTS`]; extra ones are ignored —
    /// callers building configurations check the length first).
    pub fn new(policies: &[Policy]) -> Self {
        let len = policies.len().min(MAX_GUESTS);
        let mut guests = [Policy::default(); MAX_GUESTS];
        guests[..len].copy_from_slice(&policies[..len]);
        Self { guests, len }
    }

    /// The guests' policies.
    pub fn guests(&self) -> &[Policy] {
        &self.guests[..self.len]
    }
}

fn read_filter(r: &mut FieldReader<'_>) -> Result<IdFilter, ConfigError> {
    let at = r.position();
    let id = r.u32()?;
    let mask = r.u32()?;
    let extended = r.bool()?;
    let pad = r.bytes(3)?;
    let max = if extended {
        MAX_EXTENDED_ID
    } else {
        u32::from(MAX_STANDARD_ID)
    };
    if pad != [0, 0, 0] || id > max || mask > max {
        return Err(ConfigError::InvalidField { offset: at });
    }
    Ok(IdFilter { id, mask, extended })
}

impl SectionType<'_> for CanVirtConfig {
    const ID: u32 = 0x0003_0001;
    const VERSION: u16 = 1;

    fn decode(payload: &[u8]) -> Result<Self, ConfigError> {
        let mut r = FieldReader::new(payload);
        let at = r.position();
        let count =
            usize::try_from(r.u32()?).map_err(|_| ConfigError::InvalidField { offset: at })?;
        if count == 0 || count > MAX_GUESTS {
            return Err(ConfigError::InvalidField { offset: at });
        }
        let mut cfg = Self {
            guests: [Policy::default(); MAX_GUESTS],
            len: count,
        };
        for g in cfg.guests.iter_mut().take(count) {
            let at = r.position();
            let rx_len = usize::from(r.u16()?);
            let tx_len = usize::from(r.u16()?);
            if rx_len > MAX_FILTERS || tx_len > MAX_FILTERS {
                return Err(ConfigError::InvalidField { offset: at });
            }
            let budget = Budget {
                period_ns: r.u64()?,
                frames: r.u32()?,
                bits: r.u32()?,
            };
            g.rx_len = rx_len;
            g.tx_len = tx_len;
            g.budget = budget;
            for f in g.rx.iter_mut().take(rx_len) {
                *f = read_filter(&mut r)?;
            }
            for f in g.tx.iter_mut().take(tx_len) {
                *f = read_filter(&mut r)?;
            }
        }
        r.finish()?;
        Ok(cfg)
    }
}

#[cfg(feature = "std")]
impl bulkhead_config::SectionEncode for CanVirtConfig {
    fn encode(&self, out: &mut bulkhead_config::SectionWriter) {
        out.u32(u32::try_from(self.len).unwrap_or(0));
        for g in self.guests() {
            out.u16(u16::try_from(g.rx_len).unwrap_or(0));
            out.u16(u16::try_from(g.tx_len).unwrap_or(0));
            out.u64(g.budget.period_ns);
            out.u32(g.budget.frames);
            out.u32(g.budget.bits);
            for f in g.rx_filters().iter().chain(g.tx_allowed()) {
                out.u32(f.id).u32(f.mask).bool(f.extended).bytes(&[0, 0, 0]);
            }
        }
    }
}

/// A continuous token bucket in exact integer arithmetic: tokens are kept
/// scaled by the period, so refilling `elapsed` adds `elapsed × rate` with
/// no rounding.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Bucket {
    frames: u64,
    bits: u64,
    last_ns: u64,
}

impl Bucket {
    /// Full at time 0.
    pub(crate) fn full(b: &Budget) -> Self {
        Self {
            frames: u64::from(b.frames).saturating_mul(b.period_ns),
            bits: u64::from(b.bits).saturating_mul(b.period_ns),
            last_ns: 0,
        }
    }

    /// Takes one frame of `bits` if the bucket holds it at `now`.
    pub(crate) fn take(&mut self, b: &Budget, bits: u16, now: u64) -> bool {
        if b.period_ns == 0 {
            return true;
        }
        let elapsed = now.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now);
        let cap_f = u64::from(b.frames).saturating_mul(b.period_ns);
        let cap_b = u64::from(b.bits).saturating_mul(b.period_ns);
        self.frames = self
            .frames
            .saturating_add(elapsed.saturating_mul(u64::from(b.frames)))
            .min(cap_f);
        self.bits = self
            .bits
            .saturating_add(elapsed.saturating_mul(u64::from(b.bits)))
            .min(cap_b);
        let need_f = b.period_ns;
        let need_b = u64::from(bits).saturating_mul(b.period_ns);
        if self.frames >= need_f && self.bits >= need_b {
            self.frames -= need_f;
            self.bits -= need_b;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_config::{ConfigBuilder, ConfigRegion};

    #[test]
    fn filters_match_format_and_masked_bits() {
        let f = IdFilter {
            id: 0x120,
            mask: 0x7f0,
            extended: false,
        };
        assert!(f.matches(CanId::standard(0x12f).unwrap()));
        assert!(!f.matches(CanId::standard(0x130).unwrap()));
        assert!(!f.matches(CanId::extended(0x120).unwrap()));
    }

    #[test]
    fn section_round_trips_and_rejects_bad_fields() {
        let p = Policy::new(
            &[IdFilter::standard(0x100)],
            &[IdFilter {
                id: 0x1234_5678,
                mask: 0x1fff_ffff,
                extended: true,
            }],
            Budget {
                period_ns: 1_000_000,
                frames: 10,
                bits: 1500,
            },
        )
        .unwrap();
        let cfg = CanVirtConfig::new(&[p, Policy::default()]);
        let bytes = ConfigBuilder::new("can_virt").typed(&cfg).build().unwrap();
        let region = ConfigRegion::parse(&bytes, "can_virt").unwrap();
        assert_eq!(region.get::<CanVirtConfig>().unwrap(), cfg);

        let mut w = bulkhead_config::SectionWriter::new();
        w.u32(1).u16(1).u16(0).u64(0).u32(0).u32(0);
        w.u32(0x800).u32(0x7ff).bool(false).bytes(&[0, 0, 0]); // id > 11 bits
        assert!(CanVirtConfig::decode(&w.into_bytes()).is_err());
        let mut w = bulkhead_config::SectionWriter::new();
        w.u32(9);
        assert!(CanVirtConfig::decode(&w.into_bytes()).is_err());
        assert!(CanVirtConfig::decode(&[1, 0, 0]).is_err());
    }

    #[test]
    fn bucket_refills_exactly() {
        let b = Budget {
            period_ns: 1000,
            frames: 2,
            bits: 300,
        };
        let mut k = Bucket::full(&b);
        assert!(k.take(&b, 100, 0));
        assert!(k.take(&b, 100, 0));
        assert!(!k.take(&b, 100, 0), "frames exhausted");
        assert!(!k.take(&b, 100, 499), "half a frame refilled");
        assert!(k.take(&b, 100, 500));
        let mut k = Bucket::full(&b);
        assert!(k.take(&b, 200, 0));
        assert!(!k.take(&b, 200, 0), "bits exhausted before frames");
        assert!(Bucket::default().take(&Budget::default(), 999, 0));
    }
}
