//! What a system description lets each component touch.
//!
//! ```
//! use bulkhead_sdf::model::SystemDescription;
//! let sys = SystemDescription::default();
//! let model = bulkhead_inspect::access::AccessModel::of(&sys);
//! assert!(bulkhead_inspect::report::text(&model).contains("0 PDs"));
//! ```
#![forbid(unsafe_code)]

pub mod access;
pub mod graph;
pub mod report;
