//! The safety guest of `systems/can.toml`: sends its own ids 0x300 and
//! 0x301 (each answered `tx <id> ok|refused`), then for 1.5 s prints every
//! frame its RX filters let through and sends 0x301 (data `c2 n`) every
//! 100 ms — periodic traffic that must keep flowing whatever another guest
//! does to the bus.
use bulkhead_test_guests::can;

fn main() {
    let mut d = can::start();
    for i in 0..3u8 {
        for id in [0x300, 0x301] {
            let ok = can::send_wait(&mut d, &can::frame(id, &[0xc1, i]));
            can::say(&format!("tx {id:#x} {}", if ok { "ok" } else { "refused" }));
        }
    }
    for n in 0..15u8 {
        can::listen(&mut d, std::time::Duration::from_millis(100));
        let ok = can::send_wait(&mut d, &can::frame(0x301, &[0xc2, n]));
        can::say(&format!(
            "tx 0x301 {} (periodic)",
            if ok { "ok" } else { "refused" }
        ));
    }
    can::finish()
}
