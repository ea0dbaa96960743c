//! Reading the disk's partition table through the driver before serving
//! anyone. `bulkhead_virt_blk::table::read_table` is synchronous; a PD
//! cannot block in an event handler, so [`TableLoader`] runs it over the
//! sectors fetched so far: a sector it lacks makes it stop, that sector's
//! chunk is fetched with one driver read into the `drv` hop's `in` region,
//! and the parse runs again when the chunk arrives. A GPT needs at most
//! the MBR, a header and 128 KiB of entries (twice with the backup), so a
//! few chunks suffice; [`MAX_CHUNKS`] bounds the work a hostile table can
//! cause.

use bulkhead_blk_protocol::{Request, Response, Status};
use bulkhead_runtime::Region;
use bulkhead_virt_blk::table::{read_table, PartitionTable, ReadError, SectorSource, TableError};

/// Sectors one fetch reads (32 KiB).
pub const CHUNK_SECTORS: u32 = 64;
const CHUNK_BYTES: u64 = CHUNK_SECTORS as u64 * 512;
/// Chunks fetched at most.
pub const MAX_CHUNKS: usize = 16;
/// Table-read request ids have this bit set (the virtualiser's ids come
/// later and are refused by this loader anyway).
const ID_TAG: u32 = 0x8000_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Empty,
    Asked { lba: u64, id: u32 },
    Have { lba: u64, count: u32 },
    Failed { lba: u64 },
}

/// What to do next.
// Returned once per pass; no heap to box the table into.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Send this read to the driver (unless it was sent already: `fresh`).
    Fetch {
        /// The read.
        req: Request,
        /// Not sent before.
        fresh: bool,
    },
    /// Waiting for the driver.
    Wait,
    /// The table, or why there is none.
    Done(Result<PartitionTable, TableError>),
}

/// The loader's state.
#[derive(Debug)]
pub struct TableLoader {
    sectors: u64,
    chunks: [Chunk; MAX_CHUNKS],
    seq: u32,
}

/// Where fetched chunks land: the `drv` hop's `in` region in the PD.
pub trait ChunkStore {
    /// Copies `buf.len()` bytes at `off` out; false if out of range.
    fn read(&self, off: usize, buf: &mut [u8]) -> bool;
}

impl ChunkStore for Region {
    fn read(&self, off: usize, buf: &mut [u8]) -> bool {
        self.copy_out(off, buf).is_ok()
    }
}

struct Cached<'a, S: ChunkStore + ?Sized> {
    me: &'a TableLoader,
    data: &'a S,
    miss: Option<u64>,
}

impl<S: ChunkStore + ?Sized> SectorSource for Cached<'_, S> {
    fn sectors(&self) -> u64 {
        self.me.sectors
    }

    fn read_sector(&mut self, lba: u64, buf: &mut [u8; 512]) -> Result<(), ReadError> {
        for (k, c) in self.me.chunks.iter().enumerate() {
            match *c {
                Chunk::Have { lba: l, count } if (l..l + u64::from(count)).contains(&lba) => {
                    let off = k as u64 * CHUNK_BYTES + (lba - l) * 512;
                    let off = usize::try_from(off).map_err(|_| ReadError)?;
                    return self.data.read(off, buf).then_some(()).ok_or(ReadError);
                }
                Chunk::Failed { lba: l } if (l..l + u64::from(CHUNK_SECTORS)).contains(&lba) => {
                    return Err(ReadError)
                }
                Chunk::Asked { lba: l, .. } if (l..l + u64::from(CHUNK_SECTORS)).contains(&lba) => {
                    self.miss = Some(lba);
                    return Err(ReadError);
                }
                _ => {}
            }
        }
        if lba >= self.me.sectors {
            return Err(ReadError);
        }
        self.miss = Some(lba);
        Err(ReadError)
    }
}

impl TableLoader {
    /// A loader for a disk of `sectors` sectors.
    pub fn new(sectors: u64) -> TableLoader {
        TableLoader {
            sectors,
            chunks: [Chunk::Empty; MAX_CHUNKS],
            seq: 0,
        }
    }

    /// Parses with what it has (`data` is the `drv` hop's `in` region,
    /// which must hold [`MAX_CHUNKS`] × 32 KiB); says what to fetch next.
    pub fn step<S: ChunkStore + ?Sized>(&mut self, data: &S) -> Step {
        let mut src = Cached {
            me: self,
            data,
            miss: None,
        };
        let result = read_table(&mut src);
        let miss = src.miss;
        match (result, miss) {
            // Whatever it concluded, it lacked a sector: fetch and retry.
            (Err(_), Some(lba)) => self.fetch(lba),
            (r, _) => Step::Done(r),
        }
    }

    fn fetch(&mut self, lba: u64) -> Step {
        let start = lba - lba % u64::from(CHUNK_SECTORS);
        if let Some((k, id)) = self.chunks.iter().enumerate().find_map(|(k, c)| match *c {
            Chunk::Asked { lba: l, id } if l == start => Some((k, id)),
            _ => None,
        }) {
            return Step::Fetch {
                req: self.read(k, start, id),
                fresh: false,
            };
        }
        let Some(k) = self.chunks.iter().position(|c| *c == Chunk::Empty) else {
            return Step::Done(Err(TableError::Io));
        };
        self.seq = self.seq.wrapping_add(1);
        let id = ID_TAG | (self.seq & 0x7FFF_FF00) | u32::try_from(k).unwrap_or(0);
        self.chunks[k] = Chunk::Asked { lba: start, id };
        Step::Fetch {
            req: self.read(k, start, id),
            fresh: true,
        }
    }

    fn count_at(&self, lba: u64) -> u32 {
        let left = self.sectors.saturating_sub(lba);
        u32::try_from(left.min(u64::from(CHUNK_SECTORS))).unwrap_or(CHUNK_SECTORS)
    }

    fn read(&self, k: usize, lba: u64, id: u32) -> Request {
        Request::read(id, lba, self.count_at(lba), k as u64 * CHUNK_BYTES)
    }

    /// Whether the request with `id` is one this loader is waiting for.
    pub fn waiting_for(&self, id: u32) -> bool {
        self.chunks
            .iter()
            .any(|c| matches!(*c, Chunk::Asked { id: i, .. } if i == id))
    }

    /// A driver response: true if it was one of the loader's reads.
    pub fn response(&mut self, rsp: &Response) -> bool {
        for k in 0..MAX_CHUNKS {
            if let Chunk::Asked { lba, id } = self.chunks[k] {
                if id == rsp.id {
                    self.chunks[k] = if rsp.status == Status::Ok {
                        Chunk::Have {
                            lba,
                            count: self.count_at(lba),
                        }
                    } else {
                        Chunk::Failed { lba }
                    };
                    return true;
                }
            }
        }
        false
    }

    /// The driver restarted: reads it held are lost; ask again (new ids).
    pub fn driver_restarted(&mut self) {
        for c in &mut self.chunks {
            if matches!(c, Chunk::Asked { .. }) {
                *c = Chunk::Empty;
            }
        }
    }
}

// Test arithmetic on a 64-bit host.
#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    struct Store(Vec<u8>);
    impl ChunkStore for Store {
        fn read(&self, off: usize, buf: &mut [u8]) -> bool {
            match self.0.get(off..off + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    /// A GPT disk image with two partitions, from the project's builder.
    fn disk() -> Vec<u8> {
        use drv_host_blk_file::gpt::{build, PartSpec};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.img");
        let parts = [
            PartSpec {
                name: "a".into(),
                sectors: 2048,
            },
            PartSpec {
                name: "b".into(),
                sectors: 4096,
            },
        ];
        build(&path, 16384, &parts).unwrap();
        std::fs::read(path).unwrap()
    }

    /// Plays the driver: answers every fetch from `img` (or fails reads of
    /// sectors in `bad`); `restart_after` fetches, drops one (a restart).
    fn load(
        img: &[u8],
        bad: Option<u64>,
        restart_after: Option<usize>,
    ) -> (Result<PartitionTable, TableError>, usize) {
        let sectors = img.len() as u64 / 512;
        let mut l = TableLoader::new(sectors);
        let mut store = Store(std::vec![0u8; MAX_CHUNKS * CHUNK_BYTES as usize]);
        let mut fetches = 0;
        loop {
            match l.step(&store) {
                Step::Done(r) => return (r, fetches),
                Step::Wait => panic!("nothing outstanding"),
                Step::Fetch { req, fresh } => {
                    assert!(fresh, "a lost fetch is asked again under a new id");
                    fetches += 1;
                    assert!(fetches < 40, "bounded");
                    if restart_after == Some(fetches) {
                        l.driver_restarted();
                        continue;
                    }
                    let (s, n) = (req.sector as usize * 512, req.data_len as usize);
                    let off = req.data_offset as usize;
                    let failed = bad.is_some_and(|b| {
                        (req.sector..req.sector + u64::from(req.count)).contains(&b)
                    });
                    store.0[off..off + n].copy_from_slice(&img[s..s + n]);
                    let status = if failed { Status::IoErr } else { Status::Ok };
                    assert!(l.waiting_for(req.id));
                    assert!(l.response(&Response { id: req.id, status }));
                    assert!(
                        !l.response(&Response { id: req.id, status }),
                        "answered once"
                    );
                }
            }
        }
    }

    #[test]
    fn the_table_is_read_through_a_few_driver_reads() {
        let img = disk();
        let (t, fetches) = load(&img, None, None);
        let t = t.unwrap();
        assert_eq!(t.partitions().len(), 2);
        assert!(t.by_name("b").is_some_and(|p| p.len == 4096));
        assert!(fetches <= 3, "{fetches} fetches");
    }

    #[test]
    fn a_failed_read_or_a_driver_restart_is_handled() {
        let img = disk();
        assert_eq!(load(&img, Some(0), None).0.unwrap_err(), TableError::Io);
        assert!(load(&img, None, Some(1)).0.is_ok());
        // Damaged primary header: the backup at the disk's end is fetched.
        let mut bad = img.clone();
        bad[512 + 16] ^= 0xFF;
        let (t, fetches) = load(&bad, None, None);
        assert!(t.is_ok_and(|t| t.partitions().len() == 2));
        assert!(fetches >= 2);
        // No table at all.
        assert_eq!(
            load(&std::vec![0u8; 16384 * 512], None, None)
                .0
                .unwrap_err(),
            TableError::NoMbr
        );
    }
}
