//! `serial_virt`: drains each VMM's console ring through the `ConsoleMux`
//! (lines tagged `cluster| `, `infotainment| `) into the ring to
//! `serial_driver`, and routes the driver's input to the selected guest.
#![no_std]
#![no_main]

use bulkhead_ring::{Armed, Consumer, Producer};
use bulkhead_runtime::{debug_println, Channel, ChannelSet, Handler};
use bulkhead_virt_console::ConsoleMux;
use bulkhead_virt_console_pd::{consumer, producer, push_bytes, Chunk, CHUNK_BYTES};

const DRIVER: Channel = Channel::new(0);
const GUESTS: [&str; 2] = ["cluster", "infotainment"];

struct Hop {
    out: Option<Consumer<'static, Chunk>>,
    input: Option<Producer<'static, Chunk>>,
    /// A chunk the mux could not take yet, and how much of it it took.
    held: Option<(Chunk, usize)>,
}

struct SerialVirt {
    mux: ConsoleMux<2>,
    hops: [Hop; 2],
    to_driver: Option<Producer<'static, Chunk>>,
    from_driver: Option<Consumer<'static, Chunk>>,
}

fn hop(out: &str, input: &str) -> Hop {
    Hop {
        out: consumer(out).ok(),
        input: producer(input).ok(),
        held: None,
    }
}

impl SerialVirt {
    /// Moves guest `g`'s output into the driver ring; returns whether the
    /// driver wants a notification.
    fn drain_guest(&mut self, g: usize) -> bool {
        let mut notify = false;
        let Self {
            mux,
            hops,
            to_driver,
            ..
        } = self;
        let Some(tx) = to_driver.as_mut() else {
            return false;
        };
        let hop = &mut hops[g];
        let mut sink = |b: &[u8]| match push_bytes(tx, b) {
            Ok((n, wake)) => {
                notify |= wake;
                n
            }
            Err(_) => b.len(),
        };
        loop {
            let (chunk, at) = match hop.held.take() {
                Some(h) => h,
                None => {
                    let Some(rx) = hop.out.as_mut() else { break };
                    match rx.pop() {
                        Ok(Some(c)) => (c, 0),
                        Ok(None) => match rx.arm_signal() {
                            Ok(Armed::Pending) => continue,
                            Ok(Armed::MaySleep) => break,
                            Err(_) => {
                                debug_println!(
                                    "serial_virt: {} ring corrupt; ignoring it",
                                    GUESTS[g]
                                );
                                hop.out = None;
                                break;
                            }
                        },
                        Err(_) => {
                            debug_println!("serial_virt: {} ring corrupt; ignoring it", GUESTS[g]);
                            hop.out = None;
                            break;
                        }
                    }
                }
            };
            let bytes = &chunk.bytes()[at..];
            let took = mux.output(g, bytes, &mut sink);
            if took < bytes.len() {
                // The driver ring is full: keep the rest for its next wake-up.
                hop.held = Some((chunk, at + took));
                break;
            }
        }
        notify
    }

    fn route_input(&mut self) {
        let Some(rx) = self.from_driver.as_mut() else {
            return;
        };
        while let Ok(Some(c)) = rx.pop() {
            self.mux.input(c.bytes());
        }
        let _ = rx.arm_signal();
        for g in 0..GUESTS.len() {
            let mut buf = [0u8; CHUNK_BYTES];
            while self.mux.input_pending(g) {
                let n = self.mux.take_input(g, &mut buf);
                let Some(tx) = self.hops[g].input.as_mut() else {
                    break;
                };
                match push_bytes(tx, &buf[..n]) {
                    Ok((_, true)) => {
                        let _ = Channel::new(1 + u8::try_from(g).unwrap_or(0)).notify();
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }
}

impl Handler for SerialVirt {
    fn init() -> Self {
        let mut me = SerialVirt {
            mux: ConsoleMux::new(GUESTS),
            hops: [
                hop("serial_cluster_req", "serial_cluster_resp"),
                hop("serial_infotainment_req", "serial_infotainment_resp"),
            ],
            to_driver: producer("serial_drv_req").ok(),
            from_driver: consumer("serial_drv_resp").ok(),
        };
        // Drain once: that arms every consumer end, so producers know to
        // signal (a ring nobody armed never wakes its consumer).
        me.notified(ChannelSet::empty());
        me
    }

    fn notified(&mut self, channels: ChannelSet) {
        // Any wake-up may mean room in the driver ring: try every guest.
        let _ = channels;
        let mut wake_driver = false;
        for g in 0..GUESTS.len() {
            wake_driver |= self.drain_guest(g);
        }
        if wake_driver {
            let _ = DRIVER.notify();
        }
        self.route_input();
    }
}

// The regions list declares the setvar symbols the seL4 backend finds the
// hop rings by (the host board ignores it).
bulkhead_runtime::protection_domain!(
    SerialVirt,
    regions: [
        serial_cluster_req: rw,
        serial_cluster_resp: rw,
        serial_infotainment_req: rw,
        serial_infotainment_resp: rw,
        serial_drv_req: rw,
        serial_drv_resp: rw,
    ]
);
