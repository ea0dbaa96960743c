//! The GPT builder's images read back by the virtualiser's parser, by
//! util-linux `sfdisk --json` when installed, and damaged on purpose.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::FileExt;
use std::process::Command;

use bulkhead_virt_blk::table::{
    read_table, ReadError, SectorSource, TableError, TableKind, SECTOR,
};
use drv_host_blk_file::gpt::{build, guid_to_string, PartSpec, Placed, LINUX_DATA};
use drv_host_blk_file::FileDisk;

struct Disk(FileDisk);
impl SectorSource for Disk {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn read_sector(&mut self, lba: u64, buf: &mut [u8; SECTOR]) -> Result<(), ReadError> {
        self.0.read_sectors(lba, buf).map_err(|_| ReadError)
    }
}

const DISK: u64 = 16 * 2048; // 16 MiB

fn image() -> (tempfile::NamedTempFile, Vec<Placed>) {
    let f = tempfile::NamedTempFile::new().unwrap();
    let parts = [
        PartSpec {
            name: "cluster".into(),
            sectors: 4 * 2048,
        },
        PartSpec {
            name: "infotainment".into(),
            sectors: 6 * 2048 + 7,
        },
        PartSpec {
            name: "maps".into(),
            sectors: 2048,
        },
    ];
    let placed = build(f.path(), DISK, &parts).unwrap();
    (f, placed)
}

fn parse(f: &tempfile::NamedTempFile) -> Result<bulkhead_virt_blk::PartitionTable, TableError> {
    read_table(&mut Disk(FileDisk::open(f.path(), true).unwrap()))
}

#[test]
fn builder_output_parses_back() {
    let (f, placed) = image();
    let t = parse(&f).unwrap();
    assert_eq!(t.kind, TableKind::Gpt);
    assert_eq!(t.partitions().len(), 3);
    for (i, p) in placed.iter().enumerate() {
        let got = t.by_name(&p.name).unwrap();
        assert_eq!(got.index, u32::try_from(i).unwrap());
        assert_eq!((got.first, got.len, got.guid), (p.first, p.sectors, p.guid));
        assert_eq!(t.by_guid(&p.guid).unwrap().first, p.first);
    }
}

#[test]
fn sfdisk_reads_the_same_layout() {
    if Command::new("sfdisk").arg("--version").output().is_err() {
        eprintln!("SKIPPED: sfdisk (util-linux) not installed; apt-get install fdisk");
        return;
    }
    let (f, placed) = image();
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(f.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Compare without whitespace: sfdisk's line breaks are not the point.
    let json: String = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(json.contains("\"label\":\"gpt\""), "{json}");
    for p in &placed {
        let want = format!(
            "\"start\":{},\"size\":{},\"type\":\"{}\",\"uuid\":\"{}\",\"name\":\"{}\"",
            p.first,
            p.sectors,
            LINUX_DATA,
            guid_to_string(&p.guid),
            p.name
        );
        assert!(json.contains(&want), "missing {want} in {json}");
    }
    // And sfdisk's verifier has nothing to say about the image.
    let v = Command::new("sfdisk")
        .arg("--verify")
        .arg(f.path())
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

fn poke(f: &tempfile::NamedTempFile, off: u64, bytes: &[u8]) {
    f.as_file().write_all_at(bytes, off).unwrap();
}

#[test]
fn damaged_primary_header_falls_back_to_the_backup() {
    let (f, placed) = image();
    poke(&f, 512 + 40, &[0x99]); // first_usable, header CRC now wrong
    let t = parse(&f).unwrap();
    assert_eq!(t.kind, TableKind::GptBackup);
    assert_eq!(t.by_name("maps").unwrap().first, placed[2].first);
}

#[test]
fn damaged_entry_arrays_are_refused() {
    let (f, _) = image();
    poke(&f, 2 * 512 + 32, &[1]); // primary entry 0's first LBA
    assert_eq!(parse(&f).unwrap().kind, TableKind::GptBackup);
    poke(&f, (DISK - 33) * 512 + 32, &[1]); // and the backup's
    assert!(matches!(parse(&f), Err(TableError::GptHeader(_))));
}

/// Re-signs a modified primary header and entry array (a hostile but
/// CRC-consistent table) and checks it is still refused.
fn resign(
    f: &tempfile::NamedTempFile,
    edit: impl FnOnce(&mut [u8], &mut [u8]),
) -> Result<(), TableError> {
    use bulkhead_virt_blk::crc32::crc32;
    let mut h = [0u8; 512];
    let mut a = vec![0u8; 128 * 128];
    f.as_file().read_exact_at(&mut h, 512).unwrap();
    f.as_file().read_exact_at(&mut a, 1024).unwrap();
    edit(&mut h, &mut a);
    let ac = crc32(&a);
    h[88..92].copy_from_slice(&ac.to_le_bytes());
    h[16..20].fill(0);
    let size = usize::try_from(u32::from_le_bytes(h[12..16].try_into().unwrap()))
        .unwrap()
        .clamp(92, 512);
    let hc = crc32(&h[..size]);
    h[16..20].copy_from_slice(&hc.to_le_bytes());
    poke(f, 512, &h);
    poke(f, 1024, &a);
    // Kill the backup so only the hostile primary is left.
    poke(f, (DISK - 1) * 512, b"XXXXXXXX");
    parse(f).map(|_| ())
}

/// An edit of the primary header and entry array.
type Edit = Box<dyn FnOnce(&mut [u8], &mut [u8])>;

#[test]
fn consistent_but_hostile_tables_are_refused() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "overlap",
            Box::new(|_h, a| a[128 + 32..128 + 40].copy_from_slice(&2048u64.to_le_bytes())),
        ),
        (
            "past usable",
            Box::new(|_h, a| a[40..48].copy_from_slice(&DISK.to_le_bytes())),
        ),
        (
            "reversed",
            Box::new(|_h, a| a[40..48].copy_from_slice(&100u64.to_le_bytes())),
        ),
        (
            "huge entry count",
            Box::new(|h, _a| h[80..84].copy_from_slice(&u32::MAX.to_le_bytes())),
        ),
        (
            "odd entry size",
            Box::new(|h, _a| h[84..88].copy_from_slice(&129u32.to_le_bytes())),
        ),
        (
            "entries past the end",
            Box::new(|h, _a| h[72..80].copy_from_slice(&(DISK - 2).to_le_bytes())),
        ),
        (
            "header size",
            Box::new(|h, _a| h[12..16].copy_from_slice(&600u32.to_le_bytes())),
        ),
        (
            "my_lba",
            Box::new(|h, _a| h[24..32].copy_from_slice(&7u64.to_le_bytes())),
        ),
    ];
    for (what, edit) in cases {
        let (f, _) = image();
        assert!(resign(&f, edit).is_err(), "{what} accepted");
    }
}
