//! `blk_virt`'s configuration as compose writes it
//! (`tools/compose/src/sections.rs`): the hops section `0x0002_0001` and
//! the storage policy `0x0002_0002`, both version 1. Every field comes from
//! a region another tool wrote: a bad one is a [`ConfigError`], never a
//! panic.

use bulkhead_config::{ConfigError, ConfigRegion, FieldReader};
use bulkhead_virt_blk::config::MAX_CLIENTS;

/// Hops section: driver channel, clients, hop vaddrs.
pub const HOPS: u32 = 0x0002_0001;
/// Storage policy section: per client partition extent, read-only, budget.
pub const POLICY: u32 = 0x0002_0002;
/// The version of both sections this PD reads.
pub const VERSION: u16 = 1;

/// One client's entry of the policy section (bytes on the whole disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Writes, discards and write-zeroes fail.
    pub read_only: bool,
    /// First byte of its partition on the disk.
    pub start: u64,
    /// Partition bytes.
    pub size: u64,
    /// Requests per period (0: unlimited).
    pub ops: u32,
    /// Budget period in µs (0: no budget).
    pub period_us: u32,
    /// Bytes per period (0: unlimited).
    pub bytes: u64,
}

/// One client: its channel, guest index and hop, and its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Client {
    /// Channel id to its VMM (guest index + 1).
    pub channel: u8,
    /// Guest index in the description.
    pub guest: u32,
    /// Vaddr of its hop's `req` region.
    pub hop: u64,
    /// Its policy.
    pub policy: Policy,
}

/// The whole configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtConfig {
    /// Channel id to the driver.
    pub driver_channel: u8,
    /// Vaddr of the `drv` hop's `req` region.
    pub driver_hop: u64,
    /// Bytes of each data region (`out`, `in`).
    pub data_size: u64,
    clients: [Client; MAX_CLIENTS],
    count: usize,
}

fn channel(r: &mut FieldReader<'_>) -> Result<u8, ConfigError> {
    let at = r.position();
    u8::try_from(r.u32()?)
        .ok()
        .filter(|&c| c < 63)
        .ok_or(ConfigError::InvalidField { offset: at })
}

fn section<'a>(cfg: &ConfigRegion<'a>, id: u32) -> Result<&'a [u8], ConfigError> {
    let s = cfg
        .section(id)
        .ok_or(ConfigError::MissingSection { type_id: id })?;
    if s.version != VERSION {
        return Err(ConfigError::SectionVersion {
            type_id: id,
            found: s.version,
            expected: VERSION,
        });
    }
    Ok(s.payload())
}

impl VirtConfig {
    /// The clients in hop order (client `i` is the `i`-th hop).
    pub fn clients(&self) -> &[Client] {
        &self.clients[..self.count]
    }

    /// Reads both sections of `cfg`.
    ///
    /// # Errors
    /// A missing section, a truncated or trailing payload, a channel out of
    /// range, more than [`MAX_CLIENTS`] clients, a client without a policy
    /// entry (or two entries for one channel), an extent not in whole
    /// sectors.
    pub fn parse(cfg: &ConfigRegion<'_>) -> Result<VirtConfig, ConfigError> {
        Self::from_payloads(section(cfg, HOPS)?, section(cfg, POLICY)?)
    }

    /// Reads the two payloads (see [`VirtConfig::parse`]).
    ///
    /// # Errors
    /// As [`VirtConfig::parse`].
    pub fn from_payloads(hops: &[u8], policy: &[u8]) -> Result<VirtConfig, ConfigError> {
        let mut r = FieldReader::new(hops);
        let driver_channel = channel(&mut r)?;
        let at = r.position();
        let n = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
        if n > MAX_CLIENTS {
            return Err(ConfigError::InvalidField { offset: at });
        }
        let driver_hop = r.u64()?;
        let data_size = r.u64()?;
        let mut me = VirtConfig {
            driver_channel,
            driver_hop,
            data_size,
            clients: [Client::default(); MAX_CLIENTS],
            count: n,
        };
        for c in &mut me.clients[..n] {
            c.channel = channel(&mut r)?;
            c.guest = r.u32()?;
            c.hop = r.u64()?;
        }
        if r.remaining() != 0 {
            return Err(ConfigError::PayloadTrailing {
                extra: r.remaining(),
            });
        }
        let mut seen = [false; MAX_CLIENTS];
        let mut r = FieldReader::new(policy);
        let count = r.u32()?;
        let _pad = r.u32()?;
        for _ in 0..count {
            let at = r.position();
            let ch = channel(&mut r)?;
            let flags = r.u32()?;
            let p = Policy {
                read_only: flags & 1 != 0,
                start: r.u64()?,
                size: r.u64()?,
                ops: r.u32()?,
                period_us: r.u32()?,
                bytes: r.u64()?,
            };
            let bad = ConfigError::InvalidField { offset: at };
            let i = me.clients[..n]
                .iter()
                .position(|c| c.channel == ch)
                .ok_or(bad)?;
            if seen[i] || p.start % 512 != 0 || p.size % 512 != 0 || flags & !1 != 0 {
                return Err(bad);
            }
            seen[i] = true;
            me.clients[i].policy = p;
        }
        if r.remaining() != 0 {
            return Err(ConfigError::PayloadTrailing {
                extra: r.remaining(),
            });
        }
        if let Some(i) = seen[..n].iter().position(|s| !s) {
            // A client without policy would get a guessed one: refuse.
            return Err(ConfigError::InvalidField {
                offset: 24 + 16 * i,
            });
        }
        Ok(me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn hops(clients: &[(u32, u32, u64)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&u32::try_from(clients.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&0x6200_0000u64.to_le_bytes());
        v.extend_from_slice(&0x20_0000u64.to_le_bytes());
        for (ch, g, hop) in clients {
            v.extend_from_slice(&ch.to_le_bytes());
            v.extend_from_slice(&g.to_le_bytes());
            v.extend_from_slice(&hop.to_le_bytes());
        }
        v
    }

    fn policy(entries: &[(u32, u32, u64, u64)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&u32::try_from(entries.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        for (ch, flags, start, size) in entries {
            v.extend_from_slice(&ch.to_le_bytes());
            v.extend_from_slice(&flags.to_le_bytes());
            v.extend_from_slice(&start.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&[0u8; 16]);
        }
        v
    }

    #[test]
    fn composes_sections_are_read_field_by_field() {
        let c = VirtConfig::from_payloads(
            &hops(&[(1, 0, 0x6280_0000), (2, 1, 0x6300_0000)]),
            &policy(&[(2, 1, 0x20_0000, 0x10_0000), (1, 0, 0x10_0000, 0x10_0000)]),
        )
        .unwrap();
        assert_eq!(
            (c.driver_channel, c.driver_hop, c.data_size),
            (0, 0x6200_0000, 0x20_0000)
        );
        assert_eq!(c.clients().len(), 2);
        assert_eq!(c.clients()[0].hop, 0x6280_0000);
        assert!(!c.clients()[0].policy.read_only);
        assert_eq!(c.clients()[0].policy.start, 0x10_0000);
        assert!(c.clients()[1].policy.read_only);
        assert_eq!(c.clients()[1].channel, 2);
    }

    #[test]
    fn inconsistent_sections_are_refused() {
        let h = hops(&[(1, 0, 0x6280_0000)]);
        // No policy for client 1.
        assert!(VirtConfig::from_payloads(&h, &policy(&[])).is_err());
        // Policy for a channel no hop has.
        assert!(VirtConfig::from_payloads(&h, &policy(&[(5, 0, 0, 512)])).is_err());
        // Two entries for one client.
        let two = policy(&[(1, 0, 0, 512), (1, 0, 512, 512)]);
        assert!(VirtConfig::from_payloads(&h, &two).is_err());
        // Not whole sectors; unknown flag.
        assert!(VirtConfig::from_payloads(&h, &policy(&[(1, 0, 1, 512)])).is_err());
        assert!(VirtConfig::from_payloads(&h, &policy(&[(1, 2, 0, 512)])).is_err());
        // Truncated and trailing.
        let p = policy(&[(1, 0, 0, 512)]);
        assert!(VirtConfig::from_payloads(&h[..h.len() - 1], &p).is_err());
        let mut long = p.clone();
        long.push(0);
        assert!(VirtConfig::from_payloads(&h, &long).is_err());
        assert!(VirtConfig::from_payloads(&h, &p).is_ok());
        // Too many clients, channel out of range.
        let many: Vec<(u32, u32, u64)> = (0..9).map(|i| (i + 1, i, 0)).collect();
        assert!(VirtConfig::from_payloads(&hops(&many), &p).is_err());
        assert!(VirtConfig::from_payloads(&hops(&[(300, 0, 0)]), &p).is_err());
    }
}
