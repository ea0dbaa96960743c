//! The block virtualiser's configuration section: one record per client
//! (guest VMM), in client order (client `i` is the `i`-th record and the
//! `i`-th `blk_G_*` hop). Decoded with `bulkhead-config`'s `FieldReader`, so
//! a malformed region is a `ConfigError`, never a panic.
//!
//! Payload (version 1, little endian): `u32 count`, then `count` records of
//! 80 bytes: `u8 selector` (0 by table index, 1 by GPT name, 2 by GPT unique
//! GUID), `u8 read_only` (0/1), `u16` zero, `u32 index`, `[u8;16] guid`
//! (on-disk byte order), `u8 name_len` (≤ 36), 3 zero bytes, `[u8;36] name`
//! (UTF-8, zero padded), `u32 period_us`, `u32 requests_per_period`,
//! `u64 bytes_per_period` (0 = unlimited for either budget).

use bulkhead_config::{ConfigError, FieldReader, SectionType};

/// Clients one virtualiser serves at most.
pub const MAX_CLIENTS: usize = 8;
/// Bytes of one client record.
pub const RECORD_LEN: usize = 80;

/// How a client's partition is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector<'a> {
    /// GPT entry index or MBR slot.
    Index(u32),
    /// GPT partition name.
    Name(&'a str),
    /// GPT unique partition GUID, on-disk byte order.
    Guid([u8; 16]),
}

/// A client's I/O budget: a token bucket refilled every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Refill period in microseconds (≥ 1 when any limit is set).
    pub period_us: u32,
    /// Requests per period; 0 = unlimited.
    pub requests: u32,
    /// Bytes per period; 0 = unlimited.
    pub bytes: u64,
}

impl Budget {
    /// No limits.
    pub const UNLIMITED: Budget = Budget {
        period_us: 1000,
        requests: 0,
        bytes: 0,
    };
}

/// One client's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig<'a> {
    /// Its partition.
    pub partition: Selector<'a>,
    /// Writes, discards and write-zeroes fail with IOERR.
    pub read_only: bool,
    /// Its I/O budget.
    pub budget: Budget,
}

/// The section: every client's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkClients<'a> {
    clients: [ClientConfig<'a>; MAX_CLIENTS],
    count: usize,
}

const NONE: ClientConfig<'static> = ClientConfig {
    partition: Selector::Index(0),
    read_only: true,
    budget: Budget::UNLIMITED,
};

impl<'a> BlkClients<'a> {
    /// The clients, in hop order.
    pub fn clients(&self) -> &[ClientConfig<'a>] {
        &self.clients[..self.count]
    }

    /// A section value from `clients` (host tools and tests).
    ///
    /// # Errors
    /// [`ConfigError::TooLarge`] for more than [`MAX_CLIENTS`].
    pub fn new(clients: &[ClientConfig<'a>]) -> Result<Self, ConfigError> {
        let mut s = BlkClients {
            clients: [NONE; MAX_CLIENTS],
            count: clients.len(),
        };
        s.clients
            .get_mut(..clients.len())
            .ok_or(ConfigError::TooLarge)?
            .copy_from_slice(clients);
        Ok(s)
    }

    /// The payload bytes of this section (host tools and tests; `out` must
    /// hold `4 + 80 × count` bytes). Returns the length written.
    pub fn encode_into(&self, out: &mut [u8]) -> Option<usize> {
        let len = 4 + RECORD_LEN * self.count;
        let out = out.get_mut(..len)?;
        out.fill(0);
        out[0..4].copy_from_slice(&u32::try_from(self.count).ok()?.to_le_bytes());
        for (c, rec) in self
            .clients()
            .iter()
            .zip(out[4..].chunks_exact_mut(RECORD_LEN))
        {
            let (sel, index, guid, name): (u8, u32, [u8; 16], &str) = match c.partition {
                Selector::Index(i) => (0, i, [0; 16], ""),
                Selector::Name(n) => (1, 0, [0; 16], n),
                Selector::Guid(g) => (2, 0, g, ""),
            };
            rec[0] = sel;
            rec[1] = u8::from(c.read_only);
            rec[4..8].copy_from_slice(&index.to_le_bytes());
            rec[8..24].copy_from_slice(&guid);
            let nb = name.as_bytes();
            rec[24] = u8::try_from(nb.len()).ok().filter(|&n| n <= 36)?;
            rec[28..28 + nb.len()].copy_from_slice(nb);
            rec[64..68].copy_from_slice(&c.budget.period_us.to_le_bytes());
            rec[68..72].copy_from_slice(&c.budget.requests.to_le_bytes());
            rec[72..80].copy_from_slice(&c.budget.bytes.to_le_bytes());
        }
        Some(len)
    }
}

fn invalid(r: &FieldReader<'_>) -> ConfigError {
    ConfigError::InvalidField {
        offset: r.position(),
    }
}

impl<'a> SectionType<'a> for BlkClients<'a> {
    // Storage class 0x0002, virtualiser half, first id.
    const ID: u32 = 0x0002_0001;
    const VERSION: u16 = 1;

    fn decode(payload: &'a [u8]) -> Result<Self, ConfigError> {
        let mut r = FieldReader::new(payload);
        let count = r.u32()?;
        let count = usize::try_from(count)
            .ok()
            .filter(|&c| c <= MAX_CLIENTS)
            .ok_or_else(|| invalid(&r))?;
        let mut s = BlkClients {
            clients: [NONE; MAX_CLIENTS],
            count,
        };
        for slot in s.clients.iter_mut().take(count) {
            let sel = r.u8()?;
            let read_only = r.bool()?;
            if r.u16()? != 0 {
                return Err(invalid(&r));
            }
            let index = r.u32()?;
            let mut guid = [0u8; 16];
            guid.copy_from_slice(r.bytes(16)?);
            let name_len = usize::from(r.u8()?);
            if r.bytes(3)? != [0, 0, 0] || name_len > 36 {
                return Err(invalid(&r));
            }
            let name_field = r.bytes(36)?;
            let name = core::str::from_utf8(&name_field[..name_len]).map_err(|_| invalid(&r))?;
            let partition = match sel {
                0 => Selector::Index(index),
                1 if !name.is_empty() => Selector::Name(name),
                2 if guid != [0; 16] => Selector::Guid(guid),
                _ => return Err(invalid(&r)),
            };
            let budget = Budget {
                period_us: r.u32()?,
                requests: r.u32()?,
                bytes: r.u64()?,
            };
            if budget.period_us == 0 && (budget.requests != 0 || budget.bytes != 0) {
                return Err(invalid(&r));
            }
            *slot = ClientConfig {
                partition,
                read_only,
                budget,
            };
        }
        r.finish()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_config::{ConfigBuilder, ConfigRegion};

    #[test]
    fn round_trip_through_a_region() {
        let clients = [
            ClientConfig {
                partition: Selector::Name("cluster"),
                read_only: false,
                budget: Budget {
                    period_us: 1000,
                    requests: 100,
                    bytes: 1 << 20,
                },
            },
            ClientConfig {
                partition: Selector::Index(1),
                read_only: true,
                budget: Budget::UNLIMITED,
            },
        ];
        let s = BlkClients::new(&clients).expect("fits");
        let mut buf = [0u8; 4 + 2 * RECORD_LEN];
        let n = s.encode_into(&mut buf).expect("encodes");
        let region = ConfigBuilder::new("blk_virt")
            .section(BlkClients::ID, BlkClients::VERSION, &buf[..n])
            .build()
            .expect("builds");
        let parsed = ConfigRegion::parse(&region, "blk_virt").expect("parses");
        let got: BlkClients<'_> = parsed.get().expect("decodes");
        assert_eq!(got.clients(), &clients);
    }

    #[test]
    fn hostile_payloads_are_errors() {
        let mut buf = [0u8; 4 + RECORD_LEN];
        let s = BlkClients::new(&[NONE]).expect("fits");
        s.encode_into(&mut buf).expect("encodes");
        assert!(BlkClients::decode(&buf).is_ok());
        let mut b = buf;
        b[0] = 9; // more clients than records / than MAX_CLIENTS
        assert!(BlkClients::decode(&b).is_err());
        let mut b = buf;
        b[4] = 7; // unknown selector
        assert!(BlkClients::decode(&b).is_err());
        let mut b = buf;
        b[4 + 24] = 37; // name too long
        assert!(BlkClients::decode(&b).is_err());
        let mut b = buf;
        b[4 + 64..4 + 68].fill(0); // period 0 …
        b[4 + 68] = 1; // … with a request limit
        assert!(BlkClients::decode(&b).is_err());
        assert!(BlkClients::decode(&buf[..40]).is_err());
    }
}
