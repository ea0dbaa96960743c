//! `blk_client`: a storage-test client on one blk hop (the upper end, as a
//! VMM would be). Once the lower side has published the hop's info block
//! (its partition size), it runs its [`Plan`]: the pattern of its PD name
//! over the whole partition, a flush, everything read back and compared; a
//! client whose name ends in `_b` then writes and reads one sector past its
//! partition and requires IOERR for both. One request at a time; every line
//! it prints starts with its name.
//!
//! Regions (setvar_vaddr/setvar_size names): `hop_req`, `hop_resp` (rw),
//! `hop_out` (rw), `hop_in` (r); channel 0 to the lower side.
#![no_std]
#![no_main]

use bulkhead_blk_protocol::{Op, Request, WireRequest};
use bulkhead_ring::Armed;
use bulkhead_runtime::{debug_println, pd_name, Channel, ChannelSet, Handler};
use bulkhead_sel4_blk_pds::{pattern_byte, seed, Plan, Step, SECTOR};
use bulkhead_virt_blk_pd::hop::{HopRegions, Upper};

/// Channel to the lower side (`blk_virt`).
const LOWER: Channel = Channel::new(0);
/// The upper end of the client's hop (`components/virt-blk-pd` `hop.rs`).
type Hop = Upper;

fn attach() -> Option<Hop> {
    HopRegions::named("hop").and_then(Upper::attach).ok()
}

enum State {
    /// Waiting for the info block.
    Waiting,
    /// Running the plan; the step in flight (request id) if any.
    Running(Plan, Option<(u32, Step)>, u64),
    /// Finished (or failed): takes no more events.
    Done,
}

struct Client {
    hop: Option<Hop>,
    seed: u32,
    next_id: u32,
    state: State,
}

fn fail(why: core::fmt::Arguments<'_>) -> State {
    debug_println!("{}: FAILED: {}", pd_name(), why);
    State::Done
}

impl Client {
    /// Issues `step`; false if the request ring refused it.
    fn issue(&mut self, step: Step) -> Option<u32> {
        let hop = self.hop.as_mut()?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let req = match step {
            Step::Write { sector, count } => {
                let mut buf = [0u8; SECTOR];
                for k in 0..u64::from(count) {
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = pattern_byte(self.seed, sector + k, i);
                    }
                    let at = usize::try_from(k).ok()? * SECTOR;
                    hop.regions.out.copy_in(at, &buf).ok()?;
                }
                Request::write(id, sector, count, 0)
            }
            Step::WritePast { sector } => {
                hop.regions.out.copy_in(0, &[0xee; SECTOR]).ok()?;
                Request::write(id, sector, 1, 0)
            }
            Step::Read { sector, count } => Request::read(id, sector, count, 0),
            Step::WriteZeroes { sector } => Request::no_data(id, Op::WriteZeroes, sector, 1),
            Step::ReadZeroes { sector } => Request::read(id, sector, 1, 0),
            Step::ReadPast { sector } => Request::read(id, sector, 1, 0),
            Step::Flush => Request::no_data(id, Op::Flush, 0, 0),
        };
        hop.tx.push(&WireRequest::from(&req)).ok()?;
        if hop.tx.notify_needed() {
            let _ = LOWER.notify();
        }
        Some(id)
    }

    /// Whether a completed read holds the pattern.
    fn verify(&self, sector: u64, count: u32) -> Result<(), u64> {
        let Some(hop) = self.hop.as_ref() else {
            return Err(sector);
        };
        let mut buf = [0u8; SECTOR];
        for k in 0..u64::from(count) {
            let at = usize::try_from(k).map_err(|_| sector + k)? * SECTOR;
            hop.regions
                .inp
                .copy_out(at, &mut buf)
                .map_err(|_| sector + k)?;
            let good = buf
                .iter()
                .enumerate()
                .all(|(i, &b)| b == pattern_byte(self.seed, sector + k, i));
            if !good {
                return Err(sector + k);
            }
        }
        Ok(())
    }

    /// Whether a completed one-sector read holds zeroes.
    fn verify_zeroes(&self, sector: u64) -> Result<(), u64> {
        let hop = self.hop.as_ref().ok_or(sector)?;
        let mut buf = [0xffu8; SECTOR];
        hop.regions.inp.copy_out(0, &mut buf).map_err(|_| sector)?;
        if buf.iter().all(|&b| b == 0) {
            Ok(())
        } else {
            Err(sector)
        }
    }

    /// Advances the state machine as far as the responses allow.
    fn run(&mut self) {
        loop {
            let state = core::mem::replace(&mut self.state, State::Done);
            self.state = match state {
                State::Waiting => {
                    let Some(sectors) = self.hop.as_ref().and_then(|h| h.info()).map(|i| i.sectors)
                    else {
                        self.state = State::Waiting;
                        return;
                    };
                    debug_println!("{}: partition of {} sectors", pd_name(), sectors);
                    State::Running(Plan::new(sectors, pd_name().ends_with("_b")), None, sectors)
                }
                State::Running(mut plan, None, sectors) => match plan.next() {
                    None => {
                        debug_println!("{}: done", pd_name());
                        State::Done
                    }
                    Some(step) => match self.issue(step) {
                        Some(id) => State::Running(plan, Some((id, step)), sectors),
                        None => fail(format_args!("could not issue {step:?}")),
                    },
                },
                State::Running(plan, Some((id, step)), sectors) => {
                    let Some(hop) = self.hop.as_mut() else {
                        return;
                    };
                    let rsp = match hop.rx.pop() {
                        Ok(Some(w)) => w.decode(),
                        Ok(None) => match hop.rx.arm_signal() {
                            Ok(Armed::Pending) => {
                                self.state = State::Running(plan, Some((id, step)), sectors);
                                continue;
                            }
                            Ok(Armed::MaySleep) => {
                                self.state = State::Running(plan, Some((id, step)), sectors);
                                return;
                            }
                            Err(e) => {
                                self.state = fail(format_args!("response ring: {e:?}"));
                                return;
                            }
                        },
                        Err(e) => {
                            self.state = fail(format_args!("response ring: {e:?}"));
                            return;
                        }
                    };
                    match rsp {
                        Ok(r) if r.id != id => {
                            fail(format_args!("response for id {} (waiting for {id})", r.id))
                        }
                        Ok(r) if r.status != step.expect() => fail(format_args!(
                            "{step:?} got {:?}, expected {:?}",
                            r.status,
                            step.expect()
                        )),
                        Ok(_) => {
                            let checked = match step {
                                Step::Read { sector, count } => self.verify(sector, count),
                                Step::ReadZeroes { sector } => self.verify_zeroes(sector),
                                _ => Ok(()),
                            };
                            match (checked, step) {
                                (Err(s), _) => {
                                    fail(format_args!("sector {s} does not hold the pattern"))
                                }
                                (Ok(()), Step::Read { sector, count })
                                    if sector + u64::from(count) == sectors =>
                                {
                                    debug_println!(
                                        "{}: wrote, flushed and verified {} sectors",
                                        pd_name(),
                                        sectors
                                    );
                                    State::Running(plan, None, sectors)
                                }
                                (Ok(()), Step::ReadZeroes { sector }) => {
                                    debug_println!(
                                        "{}: write-zeroes of sector {sector} read back as zeroes",
                                        pd_name()
                                    );
                                    State::Running(plan, None, sectors)
                                }
                                (Ok(()), Step::WritePast { .. }) => {
                                    debug_println!(
                                        "{}: write past the partition: IOERR",
                                        pd_name()
                                    );
                                    State::Running(plan, None, sectors)
                                }
                                (Ok(()), Step::ReadPast { .. }) => {
                                    debug_println!("{}: read past the partition: IOERR", pd_name());
                                    State::Running(plan, None, sectors)
                                }
                                (Ok(()), _) => State::Running(plan, None, sectors),
                            }
                        }
                        Err(e) => fail(format_args!("malformed response: {e:?}")),
                    }
                }
                State::Done => return,
            };
        }
    }
}

impl Handler for Client {
    fn init() -> Self {
        let hop = attach();
        let mut me = Client {
            state: if hop.is_some() {
                State::Waiting
            } else {
                fail(format_args!("no blk hop (hop_req/resp/out/in)"))
            },
            hop,
            seed: seed(pd_name()),
            next_id: 1,
        };
        me.run();
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.run();
    }
}

bulkhead_runtime::protection_domain!(
    Client,
    regions: [hop_req: rw, hop_resp: rw, hop_out: rw, hop_in: r]
);
