//! `client`: calls `server` by PPC on channel 0 `CALLS` times, checks each
//! answer, and halts.
#![no_std]
#![no_main]

use bulkhead_example_pds::{CALLS, OP_SQUARE};
use bulkhead_runtime::{
    debug_println, halt, mr_get, mr_set, Channel, ChannelSet, Handler, MessageInfo,
};

const SERVER: Channel = Channel::new(0);

struct Client;

impl Handler for Client {
    fn init() -> Self {
        for x in 1..=CALLS {
            let reply = mr_set(0, x).and_then(|()| SERVER.pp_call(MessageInfo::new(OP_SQUARE, 1)));
            match reply {
                Ok(r) if r.label() == 0 && mr_get(0) == Ok(x * x) => {
                    debug_println!("client: square({x}) = {}", x * x)
                }
                Ok(r) => {
                    debug_println!("client: bad reply label {} for {x}", r.label());
                    halt(1)
                }
                Err(e) => {
                    debug_println!("client: call failed: {e}");
                    halt(1)
                }
            }
        }
        // A channel this PD does not have is a named error, not a crash.
        if let Err(e) = Channel::new(7).notify() {
            debug_println!("client: notify on channel 7 refused: {e}");
        }
        debug_println!("client: done");
        halt(0)
    }

    fn notified(&mut self, _channels: ChannelSet) {}
}

bulkhead_runtime::protection_domain!(Client);
