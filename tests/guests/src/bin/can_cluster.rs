//! The safety guest of `systems/can.toml`: sends its own ids 0x300 and
//! 0x301 (each answered `tx <id> ok|refused`), then prints every frame its
//! RX filters let through for 1.5 s.
#[path = "can_shared/mod.rs"]
mod can;

fn main() {
    let mut d = can::start();
    for i in 0..3u8 {
        for id in [0x300, 0x301] {
            let ok = can::send_wait(&mut d, &can::frame(id, &[0xc1, i]));
            can::say(&format!("tx {id:#x} {}", if ok { "ok" } else { "refused" }));
        }
    }
    can::listen(&mut d, std::time::Duration::from_millis(1500));
    can::finish()
}
