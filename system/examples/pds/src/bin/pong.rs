//! `pong`: on each notification checks that word 0 of region `seq` is one
//! more than last time, echoes it into word 1 and notifies `ping` back.
#![no_std]
#![no_main]

use bulkhead_example_pds::PINGPONG_DONE;
use bulkhead_runtime::{debug_println, halt, Channel, ChannelSet, Handler, Region};

const PING: Channel = Channel::new(0);

struct Pong {
    seq: Region,
    last: u64,
}

impl Handler for Pong {
    fn init() -> Self {
        let Ok(seq) = Region::get("seq") else {
            debug_println!("pong: region seq is not mapped");
            halt(1)
        };
        debug_println!("pong: ready");
        Pong { seq, last: 0 }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(PING) {
            return;
        }
        let v = self.seq.read_u64(0).unwrap_or(0);
        if v == PINGPONG_DONE {
            debug_println!("pong: done after {} rounds, no gap, no repeat", self.last);
            halt(0);
        }
        if v != self.last + 1 {
            debug_println!("pong: sequence gap: expected {} got {}", self.last + 1, v);
            halt(1);
        }
        self.last = v;
        if self
            .seq
            .write_u64(8, v)
            .and_then(|()| PING.notify())
            .is_err()
        {
            debug_println!("pong: cannot reach ping");
            halt(1);
        }
    }
}

bulkhead_runtime::protection_domain!(Pong, regions: [seq: rw]);
