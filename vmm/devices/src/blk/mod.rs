//! virtio-blk (§5.2): the guest's view of its partition, forwarded to the
//! block virtualiser through [`BlkBackend`] with payload copied through
//! fixed slots of the `blk_G_out` / `blk_G_in` data regions.

mod device;

pub use device::{
    feature, req_type, status, BlkBackend, BlkConfig, BlkErrors, UnknownId, VirtioBlk, CONFIG_LEN,
    DATA_REGION_BYTES, DEPTH, MAX_ZERO_SECTORS, QUEUE_SIZE, REQUEST_QUEUE, SEG_MAX, SIZE_MAX,
    SLOT_BYTES,
};

#[cfg(test)]
mod tests;
