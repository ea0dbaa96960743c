//! Benchmark guest: one frame in flight at a time for 3 s (an otherwise
//! idle bus: the path's own latency), then prints each frame's send and
//! completion times (see `can_bench`).
use bulkhead_test_guests::can;

fn main() {
    can::load(1, 3)
}
