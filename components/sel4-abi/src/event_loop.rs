//! The libmicrokit event loop, as a pure state machine plus a thin seL4
//! driver.
//!
//! libmicrokit `src/main.c` (2.3.0): `main` runs `init()`; a passive PD
//! then defers an empty signal to the monitor endpoint (cap 5), so the
//! monitor unbinds its scheduling context only once it is waiting.
//! `handler_loop` acks every IRQ in `microkit_irqs` once, then forever:
//! if a reply is owed → flush any deferred signal with `Send`, then
//! `ReplyRecv(INPUT=1, reply_tag, REPLY=4)`; else if a signal is deferred
//! → `NBSendRecv(signal_cap, signal_msg, INPUT, REPLY)`; else
//! `Recv(INPUT, REPLY)`. The badge is decoded (see [`crate::badge`]):
//! fault → `fault()` and reply iff it says so; PPC → `protected()` and
//! reply with its tag; notifications → `notified()`.
//!
//! One deliberate difference: libmicrokit keeps one deferred-signal slot
//! and silently overwrites it (a second `microkit_deferred_notify` before
//! the next receive loses the first). [`Deferred`] refuses instead
//! ([`DeferError::SlotTaken`]) so the caller can notify immediately.

use crate::badge::{decode, Event};
use crate::caps::{self, CPtr};
use crate::message::MessageInfo;

/// A signal (or an invocation sent without waiting, e.g. an IRQ ack) to be
/// sent together with the next receive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signal {
    /// Capability to send on.
    pub cap: CPtr,
    /// Tag: empty for a notification, the IRQ-ack label for an IRQ ack.
    pub info: MessageInfo,
}

/// Why a deferred operation was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeferError {
    /// The channel id is > 61 or not in this PD's patched bitmask.
    InvalidChannel(u64),
    /// A signal is already deferred for this receive.
    SlotTaken,
    /// IRQ acks need the SDK's `IRQAckIRQ` label, which this build lacks.
    NoIrqAckLabel,
}

/// What the PD may use, from its patched symbols.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Masks {
    /// `microkit_notifications`.
    pub notifications: u64,
    /// `microkit_irqs`.
    pub irqs: u64,
    /// The SDK's `IRQAckIRQ` label, when the build has one.
    pub irq_ack_label: Option<u64>,
}

impl Masks {
    /// The masks this PD was packed with (its patched symbols) and this
    /// build's `IRQAckIRQ` label, if the build had an SDK.
    #[cfg(target_os = "none")]
    #[must_use]
    pub fn patched() -> Self {
        use crate::symbols::patched::{microkit_irqs, microkit_notifications};
        Masks {
            notifications: microkit_notifications.get(),
            irqs: microkit_irqs.get(),
            #[cfg(sel4_sdk)]
            irq_ack_label: Some(crate::sdk::labels::IRQ_ACK_IRQ),
            #[cfg(not(sel4_sdk))]
            irq_ack_label: None,
        }
    }
}

fn check(mask: u64, ch: u64) -> Result<(), DeferError> {
    if ch < caps::MAX_CHANNELS && mask & (1 << ch) != 0 {
        Ok(())
    } else {
        Err(DeferError::InvalidChannel(ch))
    }
}

/// The deferred-signal slot, handed to every [`Dispatch`] call.
#[derive(Debug)]
pub struct Deferred<'a> {
    slot: &'a mut Option<Signal>,
    masks: &'a Masks,
}

impl Deferred<'_> {
    fn put(&mut self, s: Signal) -> Result<(), DeferError> {
        if self.slot.is_some() {
            return Err(DeferError::SlotTaken);
        }
        *self.slot = Some(s);
        Ok(())
    }

    /// `microkit_deferred_notify`: notify channel `ch` with the next receive.
    pub fn notify(&mut self, ch: u64) -> Result<(), DeferError> {
        check(self.masks.notifications, ch)?;
        self.put(Signal {
            cap: caps::BASE_OUTPUT_NOTIFICATION + ch,
            info: MessageInfo::EMPTY,
        })
    }

    /// `microkit_deferred_irq_ack`: ack IRQ `ch` with the next receive.
    pub fn irq_ack(&mut self, ch: u64) -> Result<(), DeferError> {
        check(self.masks.irqs, ch)?;
        let label = self.masks.irq_ack_label.ok_or(DeferError::NoIrqAckLabel)?;
        self.put(Signal {
            cap: caps::BASE_IRQ + ch,
            info: MessageInfo::with_label(label, 0),
        })
    }

    /// Whether a signal is deferred.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.slot.is_some()
    }
}

/// A PD's entry points, called by the loop.
pub trait Dispatch {
    /// Notifications/IRQs arrived: bit n of `channels` set = id n fired.
    fn notified(&mut self, channels: u64, defer: &mut Deferred<'_>);
    /// A protected procedure call on channel `ch`; the return value is
    /// the reply tag (message words go through the IPC buffer).
    fn protected(&mut self, ch: u64, info: MessageInfo, defer: &mut Deferred<'_>) -> MessageInfo;
    /// A fault of child PD / vCPU `child`; `Some(tag)` replies (resuming
    /// the faulting thread), `None` leaves it blocked.
    fn fault(
        &mut self,
        child: u64,
        info: MessageInfo,
        defer: &mut Deferred<'_>,
    ) -> Option<MessageInfo>;
}

/// The next system call the loop makes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// `Send(flush)` first if present, then `ReplyRecv(INPUT, reply, REPLY)`.
    ReplyRecv {
        /// Deferred signal flushed with a plain `Send` before replying.
        flush: Option<Signal>,
        /// Reply tag.
        reply: MessageInfo,
    },
    /// `NBSendRecv(signal.cap, signal.info, INPUT, REPLY)`.
    NBSendRecv(Signal),
    /// `Recv(INPUT, REPLY)`.
    Recv,
}

/// Loop state between system calls.
#[derive(Debug)]
pub struct LoopState {
    masks: Masks,
    reply: Option<MessageInfo>,
    deferred: Option<Signal>,
}

impl LoopState {
    /// State before `init()` runs.
    #[must_use]
    pub fn new(masks: Masks) -> Self {
        Self {
            masks,
            reply: None,
            deferred: None,
        }
    }

    /// The deferred slot, for `init()`.
    pub fn deferred(&mut self) -> Deferred<'_> {
        Deferred {
            slot: &mut self.deferred,
            masks: &self.masks,
        }
    }

    /// Call after `init()`. For a passive PD, defers the empty signal to
    /// the monitor. If `init()` had deferred a signal too, that one is
    /// returned to be sent right away (libmicrokit would lose it).
    pub fn after_init(&mut self, passive: bool) -> Option<Signal> {
        if !passive {
            return None;
        }
        self.deferred.replace(Signal {
            cap: caps::MONITOR_EP,
            info: MessageInfo::EMPTY,
        })
    }

    /// IRQ ids to ack once before the first receive (libmicrokit works
    /// around seL4 issue 1536 this way), in ascending order.
    pub fn initial_irq_acks(&self) -> impl Iterator<Item = u64> {
        let irqs = self.masks.irqs;
        (0..caps::MAX_CHANNELS).filter(move |i| irqs & (1 << i) != 0)
    }

    /// Decides the next system call and consumes what it sends.
    pub fn next_step(&mut self) -> Step {
        if let Some(reply) = self.reply.take() {
            Step::ReplyRecv {
                flush: self.deferred.take(),
                reply,
            }
        } else if let Some(s) = self.deferred.take() {
            Step::NBSendRecv(s)
        } else {
            Step::Recv
        }
    }

    /// Handles what the receive returned.
    pub fn on_receive<D: Dispatch + ?Sized>(&mut self, d: &mut D, badge: u64, info: MessageInfo) {
        let mut defer = Deferred {
            slot: &mut self.deferred,
            masks: &self.masks,
        };
        self.reply = match decode(badge) {
            Event::Fault(child) => d.fault(child, info, &mut defer),
            Event::Protected(ch) => Some(d.protected(ch, info, &mut defer)),
            Event::Notified(bits) => {
                if bits != 0 {
                    d.notified(bits, &mut defer);
                }
                None
            }
        };
    }
}

/// Runs the loop on seL4 forever. Call it after `init` ran with
/// `state.deferred()`; `passive` is `microkit_passive`. It does what
/// libmicrokit does after `init()`: the passive hand-over to the monitor,
/// one ack per IRQ, then the receive loop. MR0..MR3 are copied between
/// registers and the IPC buffer around every receive, as libsel4 does, so
/// `protected()` and `fault()` use message words through
/// [`crate::ipc_buffer`]. Needs the SDK's labels (IRQ acks).
#[cfg(all(target_arch = "aarch64", target_os = "none", sel4_sdk))]
pub fn run<D: Dispatch + ?Sized>(d: &mut D, mut state: LoopState, passive: bool) -> ! {
    use crate::ipc_buffer::{get_mr, set_mr};
    use crate::sdk::labels::IRQ_ACK_IRQ;
    use crate::syscall;
    if let Some(early) = state.after_init(passive) {
        syscall::send(early.cap, early.info, [0; 4]);
    }
    let load = || {
        let g = |i| get_mr(i).unwrap_or_default();
        [g(0), g(1), g(2), g(3)]
    };
    for id in state.initial_irq_acks() {
        // libmicrokit ignores a failed ack here too; the kernel reports it
        // in the reply label and the IRQ simply stays masked.
        let _ = syscall::call(
            caps::BASE_IRQ + id,
            MessageInfo::with_label(IRQ_ACK_IRQ, 0),
            [0; 4],
        );
    }
    loop {
        let rx = match state.next_step() {
            Step::ReplyRecv { flush, reply } => {
                if let Some(s) = flush {
                    syscall::send(s.cap, s.info, [0; 4]);
                }
                syscall::reply_recv(caps::INPUT, reply, load(), caps::REPLY)
            }
            Step::NBSendRecv(s) => {
                syscall::nb_send_recv(s.cap, s.info, load(), caps::INPUT, caps::REPLY)
            }
            Step::Recv => syscall::recv(caps::INPUT, caps::REPLY),
        };
        for (i, v) in rx.mrs.iter().enumerate() {
            set_mr(i, *v);
        }
        state.on_receive(d, rx.badge, rx.info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::badge::{FAULT_BIT, PPC_BIT};

    /// Records calls and answers as configured.
    #[derive(Default)]
    struct Rec {
        log: Vec<String>,
        notify_on: Option<u64>,
        fault_reply: bool,
    }

    impl Dispatch for Rec {
        fn notified(&mut self, channels: u64, defer: &mut Deferred<'_>) {
            self.log.push(format!("notified {channels:#b}"));
            if let Some(ch) = self.notify_on {
                self.log.push(format!("defer {:?}", defer.notify(ch)));
            }
        }
        fn protected(&mut self, ch: u64, info: MessageInfo, _: &mut Deferred<'_>) -> MessageInfo {
            self.log
                .push(format!("protected {ch} label {}", info.label()));
            MessageInfo::with_label(info.label() + 1, 0)
        }
        fn fault(
            &mut self,
            child: u64,
            _: MessageInfo,
            _: &mut Deferred<'_>,
        ) -> Option<MessageInfo> {
            self.log.push(format!("fault {child}"));
            self.fault_reply.then_some(MessageInfo::EMPTY)
        }
    }

    fn masks() -> Masks {
        Masks {
            notifications: 0b0110,
            irqs: 0b1001,
            irq_ack_label: Some(42),
        }
    }

    #[test]
    fn an_active_pd_starts_with_recv() {
        let mut s = LoopState::new(masks());
        assert_eq!(s.after_init(false), None);
        assert_eq!(s.next_step(), Step::Recv);
    }

    #[test]
    fn a_passive_pd_first_signals_the_monitor_with_nbsendrecv() {
        let mut s = LoopState::new(masks());
        assert_eq!(s.after_init(true), None);
        assert_eq!(
            s.next_step(),
            Step::NBSendRecv(Signal {
                cap: caps::MONITOR_EP,
                info: MessageInfo::EMPTY
            })
        );
        assert_eq!(s.next_step(), Step::Recv, "the signal is sent once");
    }

    #[test]
    fn a_signal_deferred_in_init_of_a_passive_pd_is_not_lost() {
        let mut s = LoopState::new(masks());
        s.deferred().notify(1).unwrap();
        let early = s.after_init(true);
        assert_eq!(
            early,
            Some(Signal {
                cap: 11,
                info: MessageInfo::EMPTY
            })
        );
        assert!(matches!(
            s.next_step(),
            Step::NBSendRecv(Signal {
                cap: caps::MONITOR_EP,
                ..
            })
        ));
    }

    #[test]
    fn irqs_are_acked_once_at_start_in_order() {
        let s = LoopState::new(masks());
        assert_eq!(s.initial_irq_acks().collect::<Vec<_>>(), [0, 3]);
    }

    #[test]
    fn a_ppc_is_answered_with_replyrecv() {
        let mut s = LoopState::new(masks());
        let mut d = Rec::default();
        s.on_receive(&mut d, PPC_BIT | 7, MessageInfo::with_label(5, 1));
        assert_eq!(d.log, ["protected 7 label 5"]);
        assert_eq!(
            s.next_step(),
            Step::ReplyRecv {
                flush: None,
                reply: MessageInfo::with_label(6, 0)
            }
        );
        assert_eq!(s.next_step(), Step::Recv, "one reply per call");
    }

    #[test]
    fn a_fault_is_replied_to_only_when_fault_says_so() {
        let mut s = LoopState::new(masks());
        let mut d = Rec::default();
        s.on_receive(&mut d, FAULT_BIT | 2, MessageInfo::EMPTY);
        assert_eq!(s.next_step(), Step::Recv);
        d.fault_reply = true;
        s.on_receive(&mut d, FAULT_BIT | 2, MessageInfo::EMPTY);
        assert!(matches!(s.next_step(), Step::ReplyRecv { .. }));
        assert_eq!(d.log, ["fault 2", "fault 2"]);
    }

    #[test]
    fn a_deferred_notify_rides_on_the_next_nbsendrecv() {
        let mut s = LoopState::new(masks());
        let mut d = Rec {
            notify_on: Some(2),
            ..Rec::default()
        };
        s.on_receive(&mut d, 0b1000, MessageInfo::EMPTY);
        assert_eq!(d.log, ["notified 0b1000", "defer Ok(())"]);
        assert_eq!(
            s.next_step(),
            Step::NBSendRecv(Signal {
                cap: 12,
                info: MessageInfo::EMPTY
            })
        );
    }

    #[test]
    fn a_deferred_signal_is_flushed_before_a_reply() {
        let mut s = LoopState::new(masks());
        let mut d = Rec::default();
        s.deferred().irq_ack(3).unwrap();
        s.on_receive(&mut d, PPC_BIT | 1, MessageInfo::EMPTY);
        assert_eq!(
            s.next_step(),
            Step::ReplyRecv {
                flush: Some(Signal {
                    cap: caps::BASE_IRQ + 3,
                    info: MessageInfo::with_label(42, 0)
                }),
                reply: MessageInfo::with_label(1, 0),
            }
        );
    }

    #[test]
    fn deferring_checks_the_patched_masks_and_the_single_slot() {
        let mut s = LoopState::new(masks());
        let mut def = s.deferred();
        assert_eq!(def.notify(0), Err(DeferError::InvalidChannel(0)));
        assert_eq!(def.notify(62), Err(DeferError::InvalidChannel(62)));
        assert_eq!(def.irq_ack(1), Err(DeferError::InvalidChannel(1)));
        assert_eq!(def.notify(1), Ok(()));
        assert_eq!(def.notify(2), Err(DeferError::SlotTaken));
        let mut s = LoopState::new(Masks {
            irq_ack_label: None,
            ..masks()
        });
        assert_eq!(s.deferred().irq_ack(0), Err(DeferError::NoIrqAckLabel));
    }

    #[test]
    fn a_zero_badge_calls_nothing() {
        let mut s = LoopState::new(masks());
        let mut d = Rec::default();
        s.on_receive(&mut d, 0, MessageInfo::EMPTY);
        assert!(d.log.is_empty());
        assert_eq!(s.next_step(), Step::Recv);
    }

    /// libmicrokit's `handler_loop` transliterated (main.c, 2.3.0): the
    /// globals `have_reply`, `reply_tag`, `microkit_have_signal`,
    /// `microkit_signal_cap`, `microkit_signal_msg`, kept as in C.
    struct CLoop {
        have_reply: bool,
        reply_tag: MessageInfo,
        have_signal: bool,
        signal_cap: CPtr,
        signal_msg: MessageInfo,
    }

    impl CLoop {
        fn step(&mut self) -> Step {
            if self.have_reply {
                // deferred_flush(); then seL4_ReplyRecv
                let flush = self.have_signal.then_some(Signal {
                    cap: self.signal_cap,
                    info: self.signal_msg,
                });
                self.have_signal = false;
                Step::ReplyRecv {
                    flush,
                    reply: self.reply_tag,
                }
            } else if self.have_signal {
                self.have_signal = false;
                Step::NBSendRecv(Signal {
                    cap: self.signal_cap,
                    info: self.signal_msg,
                })
            } else {
                Step::Recv
            }
        }
    }

    /// xorshift64: deterministic, dependency-free.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Makes the same choices for both loops from one random word.
    struct Scripted {
        r: u64,
        deferred: Option<Signal>,
    }

    impl Dispatch for Scripted {
        fn notified(&mut self, _: u64, defer: &mut Deferred<'_>) {
            // Defer only into an empty slot: there libmicrokit and we agree
            // (a second deferral is where we deliberately differ).
            if self.r & 1 == 1 && !defer.is_pending() {
                let ch = if self.r & 2 == 2 { 1 } else { 2 };
                defer.notify(ch).unwrap();
                self.deferred = Some(Signal {
                    cap: caps::BASE_OUTPUT_NOTIFICATION + ch,
                    info: MessageInfo::EMPTY,
                });
            }
        }
        fn protected(&mut self, ch: u64, _: MessageInfo, defer: &mut Deferred<'_>) -> MessageInfo {
            if self.r & 4 == 4 && !defer.is_pending() {
                defer.irq_ack(0).unwrap();
                self.deferred = Some(Signal {
                    cap: caps::BASE_IRQ,
                    info: MessageInfo::with_label(42, 0),
                });
            }
            MessageInfo::with_label(ch, 1)
        }
        fn fault(
            &mut self,
            child: u64,
            _: MessageInfo,
            _: &mut Deferred<'_>,
        ) -> Option<MessageInfo> {
            (self.r & 8 == 8).then_some(MessageInfo::with_label(child, 0))
        }
    }

    #[test]
    fn matches_libmicrokits_loop_over_random_event_sequences() {
        for passive in [false, true] {
            let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(passive);
            let mut ours = LoopState::new(masks());
            assert_eq!(ours.after_init(passive), None);
            let mut c = CLoop {
                have_reply: false,
                reply_tag: MessageInfo::EMPTY,
                have_signal: passive,
                signal_cap: caps::MONITOR_EP,
                signal_msg: MessageInfo::EMPTY,
            };
            for _ in 0..20_000 {
                assert_eq!(ours.next_step(), c.step());
                let r = next(&mut rng);
                let badge = match r >> 60 {
                    0..=4 => PPC_BIT | (r >> 8) & 0x3f,
                    5..=7 => FAULT_BIT | (r >> 8) & 0xff,
                    8 => 0,
                    _ => (r >> 8) & ((1 << 62) - 1),
                };
                let mut d = Scripted { r, deferred: None };
                ours.on_receive(&mut d, badge, MessageInfo::EMPTY);
                // The C loop's reaction, from main.c.
                c.have_reply = false;
                match decode(badge) {
                    Event::Fault(child) => {
                        if let Some(t) = (r & 8 == 8).then_some(MessageInfo::with_label(child, 0)) {
                            c.have_reply = true;
                            c.reply_tag = t;
                        }
                    }
                    Event::Protected(ch) => {
                        c.have_reply = true;
                        c.reply_tag = MessageInfo::with_label(ch, 1);
                    }
                    Event::Notified(_) => {}
                }
                if let Some(s) = d.deferred {
                    c.have_signal = true;
                    c.signal_cap = s.cap;
                    c.signal_msg = s.info;
                }
            }
        }
    }
}
