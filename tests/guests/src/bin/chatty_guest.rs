//! A console test guest that prints a numbered line every 50 ms, forever.
fn main() {
    bulkhead_test_guests::run_console(0, None)
}
