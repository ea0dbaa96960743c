//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through its
//! harness function, so `make test` catches regressions on stable Rust.
//!
//! Every corpus directory must be mapped to its harness below: an unknown
//! directory fails the test, so a new target cannot be silently skipped.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

/// The harness function of fuzz target `name`.
fn harness(name: &str) -> Option<fn(&[u8])> {
    match name {
        "sdf_parse" => Some(bulkhead_fuzz_harness::sdf::sdf_parse),
        "can_frame" => Some(bulkhead_fuzz_harness::can::can_frame),
        "config_region" => Some(bulkhead_fuzz_harness::config_region::config_region),
        "policy_parse" => Some(bulkhead_fuzz_harness::policy::policy_parse),
        "ring_reader" => Some(bulkhead_fuzz_harness::ring::ring_reader),
        "virtio_mmio_regs" => Some(bulkhead_fuzz_harness::virtio::virtio_mmio_regs),
        "virtio_desc_walk" => Some(bulkhead_fuzz_harness::virtio::virtio_desc_walk),
        "gpt_parse" => Some(bulkhead_fuzz_harness::blk::gpt_parse),
        "blk_request" => Some(bulkhead_fuzz_harness::blk::blk_request),
        _ => None,
    }
}

#[test]
fn replay_all_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut targets = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let f = harness(&name).unwrap_or_else(|| {
            panic!("fuzz/corpus/{name} has no harness: add it to harness() in replay.rs")
        });
        let mut inputs = 0;
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            if file.is_file() {
                f(&std::fs::read(&file).unwrap());
                inputs += 1;
            }
        }
        assert!(inputs > 0, "fuzz/corpus/{name} is empty");
        targets += 1;
    }
    assert!(targets > 0, "no corpora under {}", root.display());
}
