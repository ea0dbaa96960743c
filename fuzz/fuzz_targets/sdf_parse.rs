//! Fuzz the `.system` parser and checker (body in tests/fuzz-harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz_harness::sdf::sdf_parse(data);
});
