//! The safety policy format (skeleton).
#![forbid(unsafe_code)]
