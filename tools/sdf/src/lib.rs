//! Parser, model and checker for Microkit system description (`.system`) files.
//!
//! The model ([`model`]) is shared by every tool that reads a system: the
//! checker, `report`, `graph`, `prove` and the host board.

pub mod model;
