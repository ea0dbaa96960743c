//! The `bulkhead` command-line tool (skeleton).
#![forbid(unsafe_code)]

fn main() {}
