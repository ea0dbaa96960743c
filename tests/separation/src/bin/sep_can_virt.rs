//! Safety stand-in (can_virt): see `bulkhead_separation_pds::can_virt`.
#![no_std]
#![no_main]

type CanVirt = bulkhead_separation_pds::can_virt::CanVirt<false>;

bulkhead_runtime::protection_domain!(CanVirt);
