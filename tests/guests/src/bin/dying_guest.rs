//! A console test guest that prints three lines and then kills itself
//! (SIGKILL), as a guest that crashes hard would end.
fn main() {
    bulkhead_test_guests::run_console(0, Some(3))
}
