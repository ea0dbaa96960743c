//! Fuzz target `config_region`: parse arbitrary bytes as a PD's
//! configuration region and walk every section. Any panic is a bug: a PD
//! parses its region before trusting anything in it.
//!
//! Random bytes almost never pass the checksum, so each input is also tried
//! with its checksum recomputed and the PD name taken from its own header:
//! that lets the fuzzer reach the structural checks behind the CRC.

use bulkhead_config::{crc32c, dump, ConfigRegion, FieldReader, CRC_START, HEADER_LEN};

/// Run the reader on `data` as given and with its checksum fixed.
pub fn config_region(data: &[u8]) {
    exercise(data, "fuzz");
    if data.len() < HEADER_LEN {
        return;
    }
    let mut fixed = data.to_vec();
    let total = read_u32(&fixed, 12).map_or(0, |t| t as usize);
    if (CRC_START..=fixed.len()).contains(&total) {
        let crc = crc32c(&fixed[CRC_START..total]);
        fixed[20..24].copy_from_slice(&crc.to_le_bytes());
    }
    let name_len = usize::from(fixed[24]).min(64);
    let name = String::from_utf8_lossy(&fixed[32..32 + name_len]).into_owned();
    exercise(&fixed, &name);
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse, then check what an accepted region promises: every payload lies
/// inside the region, 8-aligned, in order, and reading it never panics.
fn exercise(bytes: &[u8], pd: &str) {
    match ConfigRegion::parse(bytes, pd) {
        Err(e) => {
            let _ = e.to_string();
            let _ = e.code();
        }
        Ok(cfg) => {
            assert!(cfg.len() <= bytes.len() && cfg.len() >= HEADER_LEN);
            assert_eq!(cfg.pd_name(), pd);
            let base = bytes.as_ptr() as usize;
            let mut end = 0;
            let mut count = 0u32;
            for s in cfg.sections() {
                let start = s.payload().as_ptr() as usize - base;
                assert_eq!(start % 8, 0, "misaligned payload accepted");
                assert!(start >= end, "overlapping payloads accepted");
                end = start + s.payload().len();
                assert!(end <= cfg.len(), "payload past the end accepted");
                assert_eq!(cfg.section(s.type_id), Some(s));
                let mut r = FieldReader::new(s.payload());
                while r.u64().is_ok() {}
                while r.u8().is_ok() {}
                assert!(r.finish().is_ok());
                count += 1;
            }
            assert_eq!(count, cfg.section_count());
            let _ = dump(&cfg).to_string();
            let _ = cfg.require_understood(&[]);
        }
    }
}
