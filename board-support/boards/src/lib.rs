//! Board facts (skeleton).
#![no_std]
#![forbid(unsafe_code)]
