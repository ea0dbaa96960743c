//! Benchmark guest: keeps 8 frames in flight for 3 s (full load on the
//! bus), then prints each frame's send and completion times (see
//! `can_bench`).
use bulkhead_test_guests::can;

fn main() {
    can::load(8, 3)
}
