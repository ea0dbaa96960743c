//! Fuzz the virtio-can TX message parser and frame encoder (body in tests/fuzz-harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz_harness::can::can_frame(data);
});
