//! The infotainment guest of `systems/can.toml`: tries to send the
//! cluster's id 0x300 (its whitelist has only 0x480/0x481, so each must be
//! refused and never reach the bus), sends its own 0x480, then prints
//! every frame its RX filters let through for 1.5 s.
use bulkhead_test_guests::can;

fn main() {
    let mut d = can::start();
    for i in 0..3u8 {
        let ok = can::send_wait(&mut d, &can::frame(0x300, &[0xba, i]));
        can::say(&format!("tx 0x300 {}", if ok { "ok" } else { "refused" }));
    }
    for i in 0..3u8 {
        let ok = can::send_wait(&mut d, &can::frame(0x480, &[0x1f, i]));
        can::say(&format!("tx 0x480 {}", if ok { "ok" } else { "refused" }));
    }
    can::listen(&mut d, std::time::Duration::from_millis(1500));
    can::finish()
}
