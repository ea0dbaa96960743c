//! The driver end of the CAN virtualiser's `drv` hop
//! (`bulkhead_can_protocol::driver_hop`), independent of the controller:
//! every CAN driver PD (`drv-ctucanfd`'s `ctucanfd_driver`, `drv-flexcan`'s
//! `flexcan_driver`) serves the hop with this one implementation, so the
//! protocol rules live in one place.
//!
//! - [`Hop`]: requests applied to a `CanController`, outcomes reported back;
//! - [`pd::DriverHop`]: the PD glue (rings found by region name, the
//!   virtualiser notified, a corrupt hop dropped while the controller is
//!   kept drained);
//! - `testkit` (feature): the virtualiser's end over in-memory rings, for
//!   the drivers' host tests.
#![cfg_attr(not(feature = "testkit"), no_std)]

mod hop;
pub mod pd;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use hop::Hop;
