//! Fuzz target bodies, shared by `fuzz/` (cargo-fuzz, nightly) and the corpus replay test that `make test` runs.
#![forbid(unsafe_code)]

pub mod blk;
pub mod can;
pub mod config_region;
pub mod policy;
pub mod ring;
pub mod sdf;
pub mod virtio;
