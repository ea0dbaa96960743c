//! What a storage-test client does, as plain logic the PD and the host-side
//! test share: the byte pattern each client writes (derived from its PD
//! name, so the test can recompute it from the disk image) and the plan of
//! requests with the status each must get.
//!
//! ```
//! use bulkhead_blk_protocol::Status;
//! use bulkhead_sel4_blk_pds::{pattern_byte, seed, Plan, Step};
//! let s = seed("blk_client_a");
//! assert_ne!(pattern_byte(s, 0, 0), pattern_byte(seed("blk_client_b"), 0, 0));
//! let mut plan = Plan::new(300, true);
//! assert_eq!(plan.next(), Some(Step::Write { sector: 0, count: 128 }));
//! ```
#![no_std]
#![forbid(unsafe_code)]

use bulkhead_blk_protocol::Status;

/// Sectors per request: 64 KiB, one `blk_virt` payload slot.
pub const CHUNK_SECTORS: u32 = 128;

/// Bytes per sector.
pub const SECTOR: usize = 512;

/// FNV-1a of a PD name: the seed of its pattern.
pub fn seed(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Byte `i` of sector `sector` (partition-relative) of the client whose
/// seed is `seed`. Differs between neighbouring sectors, offsets and
/// clients, so a misplaced, stale or foreign sector is caught.
pub fn pattern_byte(seed: u32, sector: u64, i: usize) -> u8 {
    // Partition sectors and in-sector offsets are small: the low 32 bits
    // identify them.
    let s = u32::try_from(sector & 0xffff_ffff).unwrap_or(0);
    let i = u32::try_from(i & 0xffff_ffff).unwrap_or(0);
    let mut x = seed ^ s.wrapping_mul(0x9e37_79b9) ^ i.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2c1b_3c6d);
    x ^= x >> 12;
    x.to_le_bytes()[0]
}

/// One request of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write the pattern over `count` sectors at `sector`; expect OK.
    Write {
        /// First sector.
        sector: u64,
        /// Sectors.
        count: u32,
    },
    /// Flush; expect OK.
    Flush,
    /// Read `count` sectors at `sector` and compare with the pattern.
    Read {
        /// First sector.
        sector: u64,
        /// Sectors.
        count: u32,
    },
    /// Write zeroes over one sector; expect OK.
    WriteZeroes {
        /// The sector.
        sector: u64,
    },
    /// Read one sector and require zeroes.
    ReadZeroes {
        /// The sector.
        sector: u64,
    },
    /// Write one sector just past the partition; expect IOERR.
    WritePast {
        /// The sector (= the partition's length).
        sector: u64,
    },
    /// Read one sector just past the partition; expect IOERR.
    ReadPast {
        /// The sector.
        sector: u64,
    },
}

impl Step {
    /// The status this step must get.
    pub fn expect(self) -> Status {
        match self {
            Step::WritePast { .. } | Step::ReadPast { .. } => Status::IoErr,
            _ => Status::Ok,
        }
    }
}

/// The requests of one client, in order: write the pattern over the whole
/// partition in chunks, flush, read it all back; write zeroes over the last
/// sector, read zeroes there, write its pattern again (so the partition
/// ends as the pattern); then, when `probe`, one write and one read just
/// past the end.
#[derive(Debug, Clone)]
pub struct Plan {
    sectors: u64,
    probe: bool,
    phase: u8,
    at: u64,
}

impl Plan {
    /// The plan for a partition of `sectors`.
    pub fn new(sectors: u64, probe: bool) -> Plan {
        Plan {
            sectors,
            probe,
            phase: 0,
            at: 0,
        }
    }

    fn chunk(&mut self) -> Option<(u64, u32)> {
        if self.at >= self.sectors {
            return None;
        }
        let n = (self.sectors - self.at).min(u64::from(CHUNK_SECTORS));
        let sector = self.at;
        self.at += n;
        Some((sector, u32::try_from(n).unwrap_or(CHUNK_SECTORS)))
    }
}

impl Iterator for Plan {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        loop {
            match self.phase {
                0 => match self.chunk() {
                    Some((sector, count)) => return Some(Step::Write { sector, count }),
                    None => {
                        self.phase = 1;
                        self.at = 0;
                    }
                },
                1 => {
                    self.phase = 2;
                    return Some(Step::Flush);
                }
                2 => match self.chunk() {
                    Some((sector, count)) => return Some(Step::Read { sector, count }),
                    None => self.phase = if self.sectors == 0 { 6 } else { 3 },
                },
                3 => {
                    self.phase = 4;
                    return Some(Step::WriteZeroes {
                        sector: self.sectors - 1,
                    });
                }
                4 => {
                    self.phase = 5;
                    return Some(Step::ReadZeroes {
                        sector: self.sectors - 1,
                    });
                }
                5 => {
                    self.phase = 6;
                    return Some(Step::Write {
                        sector: self.sectors - 1,
                        count: 1,
                    });
                }
                6 => {
                    self.phase = if self.probe { 7 } else { 8 };
                }
                7 => {
                    self.phase = 9;
                    return Some(Step::WritePast {
                        sector: self.sectors,
                    });
                }
                9 => {
                    self.phase = 8;
                    return Some(Step::ReadPast {
                        sector: self.sectors,
                    });
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn plan_covers_the_partition_then_probes() {
        let steps: Vec<Step> = Plan::new(300, true).collect();
        assert_eq!(
            steps,
            [
                Step::Write {
                    sector: 0,
                    count: 128
                },
                Step::Write {
                    sector: 128,
                    count: 128
                },
                Step::Write {
                    sector: 256,
                    count: 44
                },
                Step::Flush,
                Step::Read {
                    sector: 0,
                    count: 128
                },
                Step::Read {
                    sector: 128,
                    count: 128
                },
                Step::Read {
                    sector: 256,
                    count: 44
                },
                Step::WriteZeroes { sector: 299 },
                Step::ReadZeroes { sector: 299 },
                Step::Write {
                    sector: 299,
                    count: 1
                },
                Step::WritePast { sector: 300 },
                Step::ReadPast { sector: 300 },
            ]
        );
        assert_eq!(Plan::new(128, false).count(), 6);
        assert_eq!(Plan::new(0, false).collect::<Vec<_>>(), [Step::Flush]);
        assert_eq!(Step::WritePast { sector: 1 }.expect(), Status::IoErr);
        assert_eq!(Step::Flush.expect(), Status::Ok);
    }

    #[test]
    fn patterns_differ_by_client_sector_and_offset() {
        let a = seed("blk_client_a");
        let b = seed("blk_client_b");
        let sector = |s, sec| {
            (0..SECTOR)
                .map(|i| pattern_byte(s, sec, i))
                .collect::<Vec<u8>>()
        };
        assert_ne!(sector(a, 0), sector(b, 0));
        assert_ne!(sector(a, 0), sector(a, 1));
        // Not constant within a sector, and never all zero (a blank disk).
        let s = sector(a, 5);
        assert!(s.iter().any(|&x| x != s[0]));
        assert!((0..64).all(|n| sector(a, n).iter().any(|&x| x != 0)));
    }
}
