//! The configuration-region container (skeleton; see README).
#![no_std]
#![forbid(unsafe_code)]
