//! Fuzz the ring reader against a hostile neighbour's region contents (body in tests/fuzz-harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz_harness::ring::ring_reader(data);
});
