//! CAN scenario tests and the adapter from the virtualiser's controller
//! interface to the simulated bus.
