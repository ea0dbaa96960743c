//! T3 variant of the can_virt stand-in: faults after
//! `bulkhead_separation_pds::can_virt::CRASH_AFTER` requests and is not
//! restarted, so S must notice and carry on.
#![no_std]
#![no_main]

type CanVirt = bulkhead_separation_pds::can_virt::CanVirt<true>;

bulkhead_runtime::protection_domain!(CanVirt);
