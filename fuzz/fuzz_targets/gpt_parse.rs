//! Fuzz the block virtualiser's GPT/MBR partition-table parser (body in tests/fuzz-harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_fuzz_harness::blk::gpt_parse(data);
});
