//! A test guest that prints through virtio-console with the unmodified
//! `virtio-drivers` driver: a greeting, five numbered lines, `done`, then it
//! echoes input.
fn main() {
    bulkhead_test_guests::run_console(5, None)
}
