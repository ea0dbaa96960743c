//! The infotainment guest of the bus-off test: sends its own 0x480 while
//! the bus script has a twin ECU offer 0x480 with other data at the same
//! moment (an id collision its frame loses), so the controller goes
//! bus-off on its traffic. Prints each result and whether its device then
//! reports BUSOFF (the configuration change the VMM raised), then `done`.
use bulkhead_test_guests::can;

fn main() {
    let mut d = can::start();
    // Let the cluster's first frames go first.
    can::listen(&mut d, std::time::Duration::from_millis(300));
    for i in 0..3u8 {
        let ok = can::send_wait(&mut d, &can::frame(0x480, &[0x1f, i]));
        can::say(&format!("tx 0x480 {}", if ok { "ok" } else { "refused" }));
    }
    can::listen(&mut d, std::time::Duration::from_millis(300));
    can::say(&format!(
        "bus-off: {}",
        if d.bus_off() { "yes" } else { "no" }
    ));
    can::finish()
}
