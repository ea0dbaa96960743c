//! Fuzz the configuration-region reader (body in tests/fuzz-harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz_harness::config_region::config_region(data);
});
