//! Fuzz the safety-policy parser and checker (body in tests/fuzz-harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz_harness::policy::policy_parse(data);
});
