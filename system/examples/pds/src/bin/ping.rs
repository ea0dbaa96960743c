//! `ping`: writes sequence numbers into word 0 of region `seq`, notifies
//! `pong` on channel 0, and checks `pong`'s echo in word 1 before the next.
#![no_std]
#![no_main]

use bulkhead_example_pds::{PINGPONG_DONE, PINGPONG_ROUNDS};
use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};

const PONG: Channel = Channel::new(0);

struct Ping {
    seq: Region,
    sent: u64,
}

fn send(seq: &Region, value: u64) {
    if seq
        .write_u64(0, value)
        .and_then(|()| PONG.notify())
        .is_err()
    {
        debug_println!("ping: cannot reach pong");
        halt(1);
    }
}

impl Handler for Ping {
    fn init() -> Self {
        let Ok(seq) = Region::get("seq") else {
            debug_println!("ping: region seq is not mapped");
            halt(1)
        };
        debug_println!("ping: start, {} rounds", PINGPONG_ROUNDS);
        send(&seq, 1);
        Ping { seq, sent: 1 }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(PONG) {
            return;
        }
        let echo = self.seq.read_u64(8).unwrap_or(0);
        if echo != self.sent {
            debug_println!(
                "ping: sequence broken: sent {} got back {}",
                self.sent,
                echo
            );
            halt(1);
        }
        if self.sent % 250 == 0 {
            debug_println!("ping: round {}", self.sent);
        }
        if self.sent == PINGPONG_ROUNDS {
            send(&self.seq, PINGPONG_DONE);
            debug_println!("ping: done, every echo in order");
            halt(0);
        }
        self.sent += 1;
        send(&self.seq, self.sent);
    }
}

bulkhead_runtime::protection_domain!(Ping, regions: [seq: rw]);
