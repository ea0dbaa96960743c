//! A hostile test guest: nonsense register writes, then Hostile::Unsupported.
fn main() {
    bulkhead_test_guests::run_hostile(bulkhead_test_guests::Hostile::Unsupported)
}
