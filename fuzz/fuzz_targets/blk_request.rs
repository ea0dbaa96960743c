//! Fuzz the virtio-blk device model and the virtualiser's request intake (body in tests/fuzz-harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz_harness::blk::blk_request(data);
});
