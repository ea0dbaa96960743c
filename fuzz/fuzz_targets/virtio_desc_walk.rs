//! Fuzz the virtio device side: `virtio_desc_walk` (body in tests/fuzz-harness/src/virtio.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz_harness::virtio::virtio_desc_walk(data);
});
