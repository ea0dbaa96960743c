//! The host board's CAN bus: a deterministic discrete-event model in
//! simulated bit time, with ISO 11898-1 arbitration, bit stuffing, CAN FD,
//! fault confinement and error injection.
//!
//! ```
//! use bulkhead_can_frame::{CanId, Frame};
//! use drv_host_can_bus::{BusConfig, CanBus, NodeConfig};
//! let mut bus = CanBus::new(BusConfig::classic(500_000).unwrap());
//! let a = bus.attach(NodeConfig::named("a"));
//! let b = bus.attach(NodeConfig::named("b"));
//! let f = Frame::classic(CanId::standard(0x100).unwrap(), &[1, 2, 3]).unwrap();
//! bus.submit(a, f).unwrap();
//! bus.run_until(1_000_000);
//! let rx = bus.receive(b).unwrap();
//! assert_eq!(rx.frame, f);
//! // Valid for receivers after the 6th of 7 EOF bits: the frame's stuffed
//! // bits minus 3 intermission bits minus the last EOF bit.
//! assert_eq!(rx.timestamp_ns, u64::from(f.wire_bits() - 4) * 2_000);
//! ```
//!
//! # What is modelled
//!
//! - **Arbitration** bit by bit on the wired-AND bus: every node with a
//!   pending frame when the bus becomes idle starts its SOF together; a node
//!   sending recessive and seeing dominant inside its arbitration field
//!   (through RTR/RRS) becomes a receiver. Each node offers its
//!   highest-priority pending frame (or its oldest, in FIFO mode).
//! - **Frame time**: the exact stuffed bit sequence of
//!   [`bulkhead_can_frame::FrameBits`], nominal rate, FD data phase at the
//!   data rate with BRS; 3 bits of intermission; an error-passive node that
//!   transmitted waits 8 more bits (suspend transmission).
//! - **ACK** by any receiving node that can drive the bus (error-active or
//!   error-passive, ISO 11898-1 — not only error-active ones); none → ACK error.
//! - **Errors**: a transmitter that sees dominant where it sent recessive
//!   after arbitration, or recessive where it sent dominant, detects a bit
//!   error; its error flag (6 dominant bits if error-active, recessive if
//!   error-passive) makes the other nodes detect a stuff, bit or form error
//!   within 6 bits, computed from the bits actually on the bus; flags
//!   superpose (6 to 12 dominant bits), then an 8-bit delimiter and
//!   intermission.
//! - **Fault confinement** (ISO 11898-1 §12.1.4): TEC +8 for a transmitter
//!   that sends an error flag (not for a passive ACK error with no dominant
//!   bit during its passive flag), REC +1 for a receiver that detects an error
//!   and +8 if it sees dominant right after its own active flag, TEC −1 after
//!   a success, REC −1 (or back to 127 from above) after a reception;
//!   error-passive at 128, bus-off above 255, error-active again when both
//!   counters are ≤ 127; bus-off recovery only after the controller is told to
//!   recover and then 128 occurrences of 11 consecutive recessive bits.
//! - **Error injection**: two nodes with the same id and different data
//!   (bit error after arbitration for the one sending recessive first), a
//!   node whose transceiver cannot drive the bus ([`NodeFault::TxDead`]), a
//!   node whose receive path corrupts every frame ([`NodeFault::RxCorrupt`]:
//!   CRC error flagged after the ACK delimiter),
//!   stuck-dominant and stuck-recessive bus intervals.
//!   An id collision is not one-sided: while both nodes are error-active,
//!   the one that wins the differing bit sees the other's error flag as a bit
//!   error too, so both gain 8 per attempt; at 128 both are error-passive,
//!   the loser's flag becomes invisible and only it keeps gaining. Two nodes
//!   that keep offering the colliding frames therefore put the loser bus-off
//!   after exactly 32 attempts while the winner peaks at TEC 128
//!   (error-passive) and then recovers by sending.
//! - **Scripted nodes** (other ECUs): periodic frames with exact periods, or
//!   a flood that always keeps a frame pending; everything they receive is
//!   kept.
//!
//! # Simplifications (each bounded, each stated)
//!
//! - Counter changes, deliveries and completions of a transaction are applied
//!   at its end (after intermission); they carry their exact times (a
//!   reception: the last-but-one EOF bit; a completion: the end of EOF).
//! - The FD bit-rate switch happens at bit boundaries rather than at the
//!   sample points of BRS and the CRC delimiter (< 1 nominal bit per frame).
//! - A node that joins only after the SOF of another node is a receiver of
//!   that frame (no hard-synchronisation join).
//! - A failed attempt nobody can see (dead transceiver, stuck-recessive bus)
//!   still occupies the model's bus for its 18 bits; bit errors during one's
//!   own invisible error flag are not counted again.
//! - A stuck-dominant interval starts at the next idle bus, and counts every
//!   node's first detection at the 6th dominant bit.
//! - REC saturates at 255.
//! - Overload frames are not generated.

#![forbid(unsafe_code)]

mod resolve;

use bulkhead_can_frame::bits::{longest_frame_ns, Shape};
use bulkhead_can_frame::{BitTiming, CanId, Frame, FrameBits};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

pub use bulkhead_can_frame;

/// Nominal rate, optional FD data rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusConfig {
    /// Bit times.
    pub timing: BitTiming,
    /// Whether FD frames may be sent.
    pub fd: bool,
}

/// Why a bus or a submission was refused. Each variant's doc is its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// bit rate not exact in ns, above 1 Mbit/s nominal or 16 Mbit/s data, or data < nominal
    BadBitRate,
    /// an FD frame on a bus configured for classic CAN only
    FdNotEnabled,
    /// the node's TX queue is full
    TxQueueFull,
    /// no such node on this bus
    NoSuchNode,
    /// recovery requested from a node that is not bus-off
    NotBusOff,
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadBitRate => "bit rate not representable exactly or out of range",
            Self::FdNotEnabled => "FD frame on a classic-only bus",
            Self::TxQueueFull => "TX queue full",
            Self::NoSuchNode => "no such node",
            Self::NotBusOff => "recovery requested while not bus-off",
        })
    }
}

impl std::error::Error for BusError {}

impl BusConfig {
    /// A classic CAN bus at `bps` (e.g. 500 kbit/s or 1 Mbit/s).
    pub fn classic(bps: u32) -> Result<Self, BusError> {
        let timing = BitTiming::from_bps(bps, bps).ok_or(BusError::BadBitRate)?;
        Ok(Self { timing, fd: false })
    }

    /// A CAN FD bus: `nominal` for arbitration, `data` for BRS data phases.
    pub fn fd(nominal: u32, data: u32) -> Result<Self, BusError> {
        let timing = BitTiming::from_bps(nominal, data).ok_or(BusError::BadBitRate)?;
        Ok(Self { timing, fd: true })
    }

    /// The longest frame this bus allows, in ns ("one frame time" in a
    /// blocking bound): extended 8-byte classic, or extended 64-byte FD with
    /// BRS where FD is on.
    pub fn longest_frame_ns(&self) -> u64 {
        longest_frame_ns(
            &self.timing,
            self.fd,
            self.fd && self.timing.data_ns < self.timing.nominal_ns,
        )
    }

    /// Nominal bit time in ns.
    pub fn bit_ns(&self) -> u64 {
        u64::from(self.timing.nominal_ns)
    }
}

/// Handle of a node (controller) attached to a bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// Handle of one submitted frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub u64);

/// Fault-confinement state (ISO 11898-1 §12.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorState {
    /// Both counters ≤ 127: active error flags, may transmit freely.
    Active,
    /// TEC or REC ≥ 128: passive error flags, suspend transmission.
    Passive,
    /// TEC > 255: takes no part in bus activity until recovered.
    BusOff,
}

/// What a controller reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// Fault-confinement state.
    pub state: ErrorState,
    /// Transmit error counter.
    pub tec: u16,
    /// Receive error counter.
    pub rec: u16,
    /// Bus-off and told to recover: counting 11-recessive-bit sequences.
    pub recovering: bool,
}

/// Order in which a node offers its pending frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TxOrder {
    /// Highest priority (lowest arbitration key) first; FIFO among equals.
    #[default]
    Priority,
    /// Oldest first (one hardware TX buffer), whatever the id.
    Fifo,
}

/// A node's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Name in traces and reports.
    pub name: String,
    /// Received frames kept before new ones are dropped (counted as overruns).
    pub rx_capacity: usize,
    /// Pending TX frames accepted.
    pub tx_capacity: usize,
    /// Which pending frame is offered.
    pub tx_order: TxOrder,
}

impl NodeConfig {
    /// Defaults: 1024 RX, 64 TX, priority order.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            rx_capacity: 1024,
            tx_capacity: 64,
            tx_order: TxOrder::Priority,
        }
    }
}

/// A fault of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NodeFault {
    /// Healthy.
    #[default]
    None,
    /// The transceiver cannot drive dominant: this node's frames, error flags
    /// and ACKs never reach the bus (it still receives).
    TxDead,
    /// The receive path corrupts every frame (local interference): the node
    /// sees a CRC error, does not acknowledge, and while error-active
    /// signals it after the ACK delimiter, so the frame is retransmitted.
    RxCorrupt,
}

/// Traffic a scripted node (another ECU) generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// `frame` released at `offset_ns + k·period_ns`, exactly.
    Periodic {
        /// The frame.
        frame: Frame,
        /// Period.
        period_ns: u64,
        /// First release.
        offset_ns: u64,
        /// Payload byte that carries a wrapping sequence number, if any.
        counter_byte: Option<usize>,
    },
    /// Always keeps `depth` copies of `frame` pending (100 % load when the
    /// id wins arbitration).
    Flood {
        /// The frame.
        frame: Frame,
        /// How many stay pending.
        depth: usize,
        /// Payload byte that carries a wrapping sequence number, if any.
        counter_byte: Option<usize>,
    },
}

/// A received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame {
    /// The frame.
    pub frame: Frame,
    /// When it became valid for receivers (end of the last-but-one EOF
    /// bit, ISO 11898-1 §10.7), in simulated ns.
    pub timestamp_ns: u64,
    /// Who sent it — model metadata for tests; a real controller cannot know.
    pub source: NodeId,
}

/// How a submitted frame ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// On the bus, acknowledged.
    Sent,
    /// Removed by [`CanBus::cancel`] or [`CanBus::abort_all`] before it was sent.
    Cancelled,
}

/// A TX completion (for LATE_TX_ACK-style reporting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxCompletion {
    /// Which submission.
    pub tx: TxId,
    /// The frame.
    pub frame: Frame,
    /// How it ended.
    pub outcome: TxOutcome,
    /// When it was submitted.
    pub submitted_ns: u64,
    /// SOF of the successful transmission (or cancel time).
    pub started_ns: u64,
    /// End of its EOF (or cancel time).
    pub done_ns: u64,
    /// Transmission attempts (1 = no error, no lost arbitration).
    pub attempts: u32,
}

/// Per-node counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Frames sent and acknowledged.
    pub tx_ok: u64,
    /// Error flags sent as transmitter.
    pub tx_errors: u64,
    /// Times arbitration was lost.
    pub arbitration_lost: u64,
    /// Frames received.
    pub rx_ok: u64,
    /// Errors detected as receiver.
    pub rx_errors: u64,
    /// Frames dropped because the RX queue was full.
    pub rx_overruns: u64,
    /// Submissions refused because the TX queue was full.
    pub tx_queue_full: u64,
    /// Entries into bus-off.
    pub bus_off: u64,
    /// Bits this node won on the bus (its successful frames).
    pub tx_bits: u64,
}

/// Delay statistics of the frames of one id sent by one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyStats {
    /// Frames measured.
    pub count: u64,
    /// Longest submit → SOF of the successful transmission.
    pub max_queuing_ns: u64,
    /// Longest submit → end of EOF.
    pub max_response_ns: u64,
    /// Shortest submit → end of EOF.
    pub min_response_ns: u64,
    /// Sum of responses, for the mean.
    pub total_response_ns: u64,
}

/// Whole-bus counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Successful frames.
    pub frames_ok: u64,
    /// Error frames (visible error flags).
    pub error_frames: u64,
    /// Attempts nobody could see (dead transceiver, stuck-recessive).
    pub invisible_attempts: u64,
    /// Time spent by successful frames, SOF through intermission.
    pub busy_ok_ns: u64,
    /// Time spent by failed transactions and stuck-dominant intervals.
    pub busy_error_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    tx: TxId,
    frame: Frame,
    submitted_ns: u64,
    attempts: u32,
    scripted: bool,
}

#[derive(Clone, Debug)]
struct Script {
    traffic: Traffic,
    next_release: u64,
    seq: u8,
}

#[derive(Clone, Debug)]
struct Node {
    cfg: NodeConfig,
    tec: u16,
    rec: u16,
    bus_off: bool,
    /// Recovery requested: occurrences counted and start of the current recessive run.
    recovery: Option<(u32, u64)>,
    pending: BTreeMap<(u64, u64), Pending>,
    rx: VecDeque<RxFrame>,
    completions: VecDeque<TxCompletion>,
    ready_at: u64,
    fault: NodeFault,
    scripts: Vec<Script>,
    stats: NodeStats,
    latency: BTreeMap<(bool, u32), LatencyStats>,
    states: Vec<(u64, ErrorState)>,
}

impl Node {
    fn state(&self) -> ErrorState {
        if self.bus_off {
            ErrorState::BusOff
        } else if self.tec >= 128 || self.rec >= 128 {
            ErrorState::Passive
        } else {
            ErrorState::Active
        }
    }

    fn head(&self) -> Option<((u64, u64), Pending)> {
        self.pending.iter().next().map(|(k, p)| (*k, *p))
    }
}

/// One effect of a transaction, applied at its end.
#[derive(Clone, Copy, Debug)]
enum Effect {
    TecError(usize),
    TecSuccess(usize),
    RecError(usize, u16),
    RecSuccess(usize),
    ArbitrationLost(usize),
    Deliver {
        to: usize,
        from: usize,
        frame: Frame,
        at: u64,
    },
    Sent {
        node: usize,
        key: (u64, u64),
        sof: u64,
        eof_end: u64,
        bits: u16,
    },
    Failed {
        node: usize,
        key: (u64, u64),
    },
    Suspend(usize),
}

#[derive(Clone, Debug)]
enum InFlight {
    Frame {
        end: u64,
        /// Last dominant bit ends here (None: nothing visible).
        last_dominant_end: Option<u64>,
        first_dominant: Option<u64>,
        effects: Vec<Effect>,
        ok: bool,
    },
    StuckDominant {
        start: u64,
        next_tick: u64,
        end: u64,
        ticks: u32,
        transmitters: Vec<usize>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Complete,
    Recover(usize),
    Release(usize, usize),
    StuckTick,
    StuckStart,
    Start,
}

/// The bus and every node on it.
#[derive(Clone, Debug)]
pub struct CanBus {
    cfg: BusConfig,
    now: u64,
    bus_free: u64,
    nodes: Vec<Node>,
    in_flight: Option<InFlight>,
    seq: u64,
    stats: BusStats,
    stuck_dominant: VecDeque<(u64, u64)>,
    stuck_recessive: Vec<(u64, u64)>,
}

impl CanBus {
    /// An idle bus with no nodes, at simulated time 0.
    pub fn new(cfg: BusConfig) -> Self {
        Self {
            cfg,
            now: 0,
            bus_free: 0,
            nodes: Vec::new(),
            in_flight: None,
            seq: 0,
            stats: BusStats::default(),
            stuck_dominant: VecDeque::new(),
            stuck_recessive: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BusConfig {
        &self.cfg
    }

    /// Current simulated time in ns.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Whole-bus counters.
    pub fn bus_stats(&self) -> BusStats {
        self.stats
    }

    /// Attaches a controller (for a driver PD or a test).
    pub fn attach(&mut self, cfg: NodeConfig) -> NodeId {
        self.nodes.push(Node {
            cfg,
            tec: 0,
            rec: 0,
            bus_off: false,
            recovery: None,
            pending: BTreeMap::new(),
            rx: VecDeque::new(),
            completions: VecDeque::new(),
            ready_at: self.now,
            fault: NodeFault::None,
            scripts: Vec::new(),
            stats: NodeStats::default(),
            latency: BTreeMap::new(),
            states: vec![(self.now, ErrorState::Active)],
        });
        NodeId(self.nodes.len() - 1)
    }

    /// Attaches a scripted node (another ECU) with its traffic. It keeps
    /// what it receives (RX capacity unlimited) and drops its completions.
    pub fn attach_scripted(&mut self, name: &str, traffic: &[Traffic]) -> Result<NodeId, BusError> {
        for t in traffic {
            let f = match t {
                Traffic::Periodic { frame, .. } | Traffic::Flood { frame, .. } => frame,
            };
            if f.is_fd() && !self.cfg.fd {
                return Err(BusError::FdNotEnabled);
            }
        }
        let mut cfg = NodeConfig::named(name);
        cfg.rx_capacity = usize::MAX;
        cfg.tx_capacity = usize::MAX;
        let id = self.attach(cfg);
        let now = self.now;
        let node = &mut self.nodes[id.0];
        for &traffic in traffic {
            let next_release = match traffic {
                Traffic::Periodic { offset_ns, .. } => now + offset_ns,
                Traffic::Flood { .. } => now,
            };
            node.scripts.push(Script {
                traffic,
                next_release,
                seq: 0,
            });
        }
        Ok(id)
    }

    /// A view of one controller.
    pub fn controller(&mut self, node: NodeId) -> Controller<'_> {
        Controller { bus: self, node }
    }

    fn node(&self, n: NodeId) -> Result<&Node, BusError> {
        self.nodes.get(n.0).ok_or(BusError::NoSuchNode)
    }

    fn node_mut(&mut self, n: NodeId) -> Result<&mut Node, BusError> {
        self.nodes.get_mut(n.0).ok_or(BusError::NoSuchNode)
    }

    /// Queues `frame` for transmission from `node` at the current time.
    pub fn submit(&mut self, node: NodeId, frame: Frame) -> Result<TxId, BusError> {
        self.submit_inner(node.0, frame, false)
    }

    fn submit_inner(&mut self, n: usize, frame: Frame, scripted: bool) -> Result<TxId, BusError> {
        if frame.is_fd() && !self.cfg.fd {
            return Err(BusError::FdNotEnabled);
        }
        let now = self.now;
        self.seq += 1;
        let seq = self.seq;
        let node = self.nodes.get_mut(n).ok_or(BusError::NoSuchNode)?;
        if node.pending.len() >= node.cfg.tx_capacity {
            node.stats.tx_queue_full += 1;
            return Err(BusError::TxQueueFull);
        }
        let prio = match node.cfg.tx_order {
            TxOrder::Priority => u64::from(frame.arbitration_key()),
            TxOrder::Fifo => 0,
        };
        let tx = TxId(seq);
        node.pending.insert(
            (prio, seq),
            Pending {
                tx,
                frame,
                submitted_ns: now,
                attempts: 0,
                scripted,
            },
        );
        Ok(tx)
    }

    /// Removes a pending frame (not one already on the bus); true if found.
    pub fn cancel(&mut self, node: NodeId, tx: TxId) -> bool {
        let now = self.now;
        let Ok(n) = self.node_mut(node) else {
            return false;
        };
        let key = n.pending.iter().find(|(_, p)| p.tx == tx).map(|(k, _)| *k);
        match key.and_then(|k| n.pending.remove(&k)) {
            Some(p) => {
                n.completions.push_back(TxCompletion {
                    tx,
                    frame: p.frame,
                    outcome: TxOutcome::Cancelled,
                    submitted_ns: p.submitted_ns,
                    started_ns: now,
                    done_ns: now,
                    attempts: p.attempts,
                });
                true
            }
            None => false,
        }
    }

    /// Cancels every pending frame of `node` (a driver does this on bus-off
    /// or STOP); returns how many.
    pub fn abort_all(&mut self, node: NodeId) -> usize {
        let txs: Vec<TxId> = match self.node(node) {
            Ok(n) => n.pending.values().map(|p| p.tx).collect(),
            Err(_) => return 0,
        };
        txs.into_iter().filter(|&t| self.cancel(node, t)).count()
    }

    /// Frames pending in `node`'s TX queue.
    pub fn tx_pending(&self, node: NodeId) -> usize {
        self.node(node).map(|n| n.pending.len()).unwrap_or(0)
    }

    /// Takes the oldest received frame.
    pub fn receive(&mut self, node: NodeId) -> Option<RxFrame> {
        self.node_mut(node).ok()?.rx.pop_front()
    }

    /// Everything `node` has received and not yet taken (a scripted node's log).
    pub fn received(&self, node: NodeId) -> Vec<RxFrame> {
        self.node(node)
            .map(|n| n.rx.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Takes the oldest TX completion.
    pub fn take_completion(&mut self, node: NodeId) -> Option<TxCompletion> {
        self.node_mut(node).ok()?.completions.pop_front()
    }

    /// Fault-confinement status.
    pub fn status(&self, node: NodeId) -> Result<NodeStatus, BusError> {
        let n = self.node(node)?;
        Ok(NodeStatus {
            state: n.state(),
            tec: n.tec,
            rec: n.rec,
            recovering: n.recovery.is_some(),
        })
    }

    /// Every state change of `node` with its time (starts with Active at attach).
    pub fn state_log(&self, node: NodeId) -> &[(u64, ErrorState)] {
        self.nodes
            .get(node.0)
            .map(|n| n.states.as_slice())
            .unwrap_or(&[])
    }

    /// Tells a bus-off controller to start recovery: it becomes error-active
    /// after 128 occurrences of 11 consecutive recessive bits from now.
    pub fn request_recovery(&mut self, node: NodeId) -> Result<(), BusError> {
        let now = self.now;
        let n = self.node_mut(node)?;
        if !n.bus_off {
            return Err(BusError::NotBusOff);
        }
        if n.recovery.is_none() {
            n.recovery = Some((0, now));
        }
        Ok(())
    }

    /// Counters of `node`.
    pub fn stats(&self, node: NodeId) -> NodeStats {
        self.node(node).map(|n| n.stats).unwrap_or_default()
    }

    /// Delay statistics of the frames with `id` sent by `node`.
    pub fn latency(&self, node: NodeId, id: CanId) -> Option<LatencyStats> {
        self.node(node)
            .ok()?
            .latency
            .get(&(id.is_extended(), id.raw()))
            .copied()
    }

    /// Sets or clears a node's fault.
    pub fn set_fault(&mut self, node: NodeId, fault: NodeFault) -> Result<(), BusError> {
        self.node_mut(node)?.fault = fault;
        Ok(())
    }

    /// Holds the bus dominant for `duration_ns`, from the first idle bus at
    /// or after `at_ns`.
    pub fn inject_stuck_dominant(&mut self, at_ns: u64, duration_ns: u64) {
        self.stuck_dominant.push_back((at_ns, duration_ns));
    }

    /// Holds the bus recessive (no node can drive it) during `[at_ns, at_ns + duration_ns)`.
    pub fn inject_stuck_recessive(&mut self, at_ns: u64, duration_ns: u64) {
        self.stuck_recessive
            .push((at_ns, at_ns.saturating_add(duration_ns)));
    }

    fn stuck_recessive_at(&self, t: u64) -> bool {
        self.stuck_recessive.iter().any(|&(a, b)| a <= t && t < b)
    }

    /// Time of the next event, if any.
    pub fn next_event_time(&self) -> Option<u64> {
        self.next_event().map(|(t, _)| t)
    }

    fn start_candidates(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        for n in &self.nodes {
            if n.bus_off {
                continue;
            }
            if let Some((_, p)) = n.head() {
                let s = self
                    .bus_free
                    .max(n.ready_at)
                    .max(p.submitted_ns)
                    .max(self.now);
                best = Some(best.map_or(s, |b| b.min(s)));
            }
        }
        best
    }

    fn next_event(&self) -> Option<(u64, Ev)> {
        let mut evs: Vec<(u64, Ev)> = Vec::new();
        match &self.in_flight {
            Some(InFlight::Frame { end, .. }) => evs.push((*end, Ev::Complete)),
            Some(InFlight::StuckDominant { next_tick, end, .. }) => {
                evs.push((*end, Ev::Complete));
                if next_tick < end {
                    evs.push((*next_tick, Ev::StuckTick));
                }
            }
            None => {
                if let Some(&(at, _)) = self.stuck_dominant.front() {
                    evs.push((at.max(self.bus_free).max(self.now), Ev::StuckStart));
                }
                if let Some(t) = self.start_candidates() {
                    evs.push((t, Ev::Start));
                }
                let run_bits = 11 * self.cfg.bit_ns();
                for (i, n) in self.nodes.iter().enumerate() {
                    if let Some((occ, from)) = n.recovery {
                        let left = u64::from(128u32.saturating_sub(occ));
                        evs.push((from + left * run_bits, Ev::Recover(i)));
                    }
                }
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for (k, s) in n.scripts.iter().enumerate() {
                if s.next_release != u64::MAX {
                    evs.push((s.next_release.max(self.now), Ev::Release(i, k)));
                }
            }
        }
        evs.into_iter().min()
    }

    /// Processes the next event; returns its time (None: nothing will ever happen).
    pub fn step(&mut self) -> Option<u64> {
        let (t, ev) = self.next_event()?;
        self.now = self.now.max(t);
        match ev {
            Ev::Complete => self.complete(),
            Ev::Recover(i) => self.recover(i),
            Ev::Release(i, k) => self.release(i, k),
            Ev::StuckStart => self.stuck_start(),
            Ev::StuckTick => self.stuck_tick(),
            Ev::Start => self.start(),
        }
        Some(t)
    }

    /// Processes every event up to and including `t`, then sets the time to `t`.
    pub fn run_until(&mut self, t: u64) {
        while let Some(next) = self.next_event_time() {
            if next > t {
                break;
            }
            self.step();
        }
        self.now = self.now.max(t);
    }

    fn set_state_log(&mut self, i: usize, before: ErrorState) {
        let now = self.now;
        let n = &mut self.nodes[i];
        let after = n.state();
        if after != before {
            n.states.push((now, after));
            if after == ErrorState::BusOff {
                n.stats.bus_off += 1;
            }
        }
    }

    fn bump_tec(&mut self, i: usize) {
        let before = self.nodes[i].state();
        let n = &mut self.nodes[i];
        if n.bus_off {
            return;
        }
        n.tec = n.tec.saturating_add(8);
        if n.tec > 255 {
            n.bus_off = true;
            n.recovery = None;
        }
        self.set_state_log(i, before);
    }

    fn bump_rec(&mut self, i: usize, by: u16) {
        let before = self.nodes[i].state();
        let n = &mut self.nodes[i];
        if n.bus_off {
            return;
        }
        n.rec = n.rec.saturating_add(by).min(255);
        self.set_state_log(i, before);
    }

    fn release(&mut self, i: usize, k: usize) {
        let now = self.now;
        let script = self.nodes[i].scripts[k].clone();
        let (frame, counter) = match script.traffic {
            Traffic::Periodic {
                frame,
                counter_byte,
                ..
            }
            | Traffic::Flood {
                frame,
                counter_byte,
                ..
            } => (frame, counter_byte),
        };
        let frame = match counter {
            Some(b) => frame.with_byte(b, script.seq),
            None => frame,
        };
        match script.traffic {
            Traffic::Periodic { period_ns, .. } => {
                // A rejected release (queue full) is counted by submit_inner.
                let _ = self.submit_inner(i, frame, true);
                let s = &mut self.nodes[i].scripts[k];
                s.seq = s.seq.wrapping_add(1);
                s.next_release = if period_ns == 0 {
                    u64::MAX
                } else {
                    script.next_release + period_ns
                };
            }
            Traffic::Flood { depth, .. } => {
                let pending = self.nodes[i]
                    .pending
                    .values()
                    .filter(|p| p.scripted)
                    .count();
                if pending < depth {
                    let _ = self.submit_inner(i, frame, true);
                    let s = &mut self.nodes[i].scripts[k];
                    s.seq = s.seq.wrapping_add(1);
                }
                let still = self.nodes[i]
                    .pending
                    .values()
                    .filter(|p| p.scripted)
                    .count();
                // Refill again as soon as one of ours leaves the queue.
                self.nodes[i].scripts[k].next_release = if still < depth { now } else { u64::MAX };
            }
        }
    }

    /// Re-arms flood scripts of node `i` after one of its frames left the queue.
    fn rearm_floods(&mut self, i: usize) {
        let now = self.now;
        for s in &mut self.nodes[i].scripts {
            if matches!(s.traffic, Traffic::Flood { .. }) {
                s.next_release = now;
            }
        }
    }

    fn recover(&mut self, i: usize) {
        let before = self.nodes[i].state();
        let n = &mut self.nodes[i];
        n.recovery = None;
        n.bus_off = false;
        n.tec = 0;
        n.rec = 0;
        n.ready_at = self.now;
        self.set_state_log(i, before);
    }

    /// Closes recovering nodes' recessive runs at `t` (a dominant bit starts).
    fn close_recessive_runs(&mut self, t: u64) {
        let run_bits = 11 * self.cfg.bit_ns();
        for n in &mut self.nodes {
            if let Some((occ, from)) = n.recovery {
                let add = t.saturating_sub(from) / run_bits;
                n.recovery = Some((
                    occ.saturating_add(u32::try_from(add).unwrap_or(u32::MAX)),
                    t,
                ));
            }
        }
    }

    fn reopen_recessive_runs(&mut self, t: u64) {
        for n in &mut self.nodes {
            if let Some((occ, _)) = n.recovery {
                n.recovery = Some((occ, t));
            }
        }
    }

    fn start(&mut self) {
        let t0 = self.now;
        let mut contenders = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.bus_off {
                continue;
            }
            if let Some((key, p)) = n.head() {
                let s = self.bus_free.max(n.ready_at).max(p.submitted_ns);
                if s <= t0 {
                    let frame = p.frame.with_esi(n.state() == ErrorState::Passive);
                    let visible = n.fault != NodeFault::TxDead && !self.stuck_recessive_at(t0);
                    contenders.push(resolve::Contender {
                        node: i,
                        key,
                        frame,
                        bits: FrameBits::new(&frame),
                        visible,
                        rx_corrupt: n.fault == NodeFault::RxCorrupt,
                    });
                }
            }
        }
        if contenders.is_empty() {
            return;
        }
        let receivers: Vec<resolve::Receiver> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| !n.bus_off && !contenders.iter().any(|c| c.node == *i))
            .map(|(i, n)| resolve::Receiver {
                node: i,
                active: n.state() == ErrorState::Active,
                can_drive: n.fault != NodeFault::TxDead && !self.stuck_recessive_at(t0),
                rx_corrupt: n.fault == NodeFault::RxCorrupt,
            })
            .collect();
        let states: Vec<ErrorState> = self.nodes.iter().map(Node::state).collect();
        let out = resolve::resolve(&self.cfg.timing, t0, &contenders, &receivers, &states);
        if let Some(fd) = out.first_dominant {
            self.close_recessive_runs(fd);
        }
        self.in_flight = Some(InFlight::Frame {
            end: out.end,
            last_dominant_end: out.last_dominant_end,
            first_dominant: out.first_dominant,
            effects: out.effects,
            ok: out.ok,
        });
    }

    fn complete(&mut self) {
        let Some(fl) = self.in_flight.take() else {
            return;
        };
        match fl {
            InFlight::Frame {
                end,
                last_dominant_end,
                first_dominant,
                effects,
                ok,
            } => {
                let start_busy = first_dominant.unwrap_or(end);
                if ok {
                    self.stats.frames_ok += 1;
                    self.stats.busy_ok_ns += end - start_busy;
                } else if first_dominant.is_some() {
                    self.stats.error_frames += 1;
                    self.stats.busy_error_ns += end - start_busy;
                } else {
                    self.stats.invisible_attempts += 1;
                }
                self.bus_free = end;
                for e in effects {
                    self.apply(e);
                }
                if let Some(t) = last_dominant_end {
                    self.reopen_recessive_runs(t);
                }
            }
            InFlight::StuckDominant { start, end, .. } => {
                self.stats.busy_error_ns += end - start;
                // Error delimiter and intermission: 11 recessive bits before anyone starts.
                let integ = 11 * self.cfg.bit_ns();
                for n in &mut self.nodes {
                    n.ready_at = n.ready_at.max(end + integ);
                }
                self.bus_free = end + integ;
                self.reopen_recessive_runs(end);
            }
        }
    }

    fn apply(&mut self, e: Effect) {
        let now = self.now;
        let bit = self.cfg.bit_ns();
        match e {
            Effect::TecError(i) => {
                self.nodes[i].stats.tx_errors += 1;
                self.bump_tec(i);
            }
            Effect::TecSuccess(i) => {
                let before = self.nodes[i].state();
                let n = &mut self.nodes[i];
                n.tec = n.tec.saturating_sub(1);
                self.set_state_log(i, before);
            }
            Effect::RecError(i, by) => {
                // One detected error (+1, or +9 with rule 2's +8).
                self.nodes[i].stats.rx_errors += 1;
                self.bump_rec(i, by);
            }
            Effect::RecSuccess(i) => {
                let before = self.nodes[i].state();
                let n = &mut self.nodes[i];
                if n.rec > 127 {
                    n.rec = 127;
                } else {
                    n.rec = n.rec.saturating_sub(1);
                }
                self.set_state_log(i, before);
            }
            Effect::ArbitrationLost(i) => self.nodes[i].stats.arbitration_lost += 1,
            Effect::Deliver {
                to,
                from,
                frame,
                at,
            } => {
                let n = &mut self.nodes[to];
                if n.bus_off {
                    return;
                }
                if n.rx.len() >= n.cfg.rx_capacity {
                    n.stats.rx_overruns += 1;
                } else {
                    n.rx.push_back(RxFrame {
                        frame,
                        timestamp_ns: at,
                        source: NodeId(from),
                    });
                    n.stats.rx_ok += 1;
                }
            }
            Effect::Sent {
                node,
                key,
                sof,
                eof_end,
                bits,
            } => {
                let n = &mut self.nodes[node];
                if let Some(mut p) = n.pending.remove(&key) {
                    p.attempts += 1;
                    n.stats.tx_ok += 1;
                    n.stats.tx_bits += u64::from(bits);
                    let id = p.frame.id();
                    let l = n.latency.entry((id.is_extended(), id.raw())).or_default();
                    let resp = eof_end - p.submitted_ns;
                    l.count += 1;
                    l.max_queuing_ns = l.max_queuing_ns.max(sof - p.submitted_ns);
                    l.max_response_ns = l.max_response_ns.max(resp);
                    l.min_response_ns = if l.count == 1 {
                        resp
                    } else {
                        l.min_response_ns.min(resp)
                    };
                    l.total_response_ns += resp;
                    if !p.scripted {
                        n.completions.push_back(TxCompletion {
                            tx: p.tx,
                            frame: p.frame,
                            outcome: TxOutcome::Sent,
                            submitted_ns: p.submitted_ns,
                            started_ns: sof,
                            done_ns: eof_end,
                            attempts: p.attempts,
                        });
                    } else {
                        self.rearm_floods(node);
                    }
                }
            }
            Effect::Failed { node, key } => {
                if let Some(p) = self.nodes[node].pending.get_mut(&key) {
                    p.attempts += 1;
                }
            }
            Effect::Suspend(i) => {
                let n = &mut self.nodes[i];
                if n.state() == ErrorState::Passive {
                    n.ready_at = n.ready_at.max(now + 8 * bit);
                }
            }
        }
    }

    fn stuck_start(&mut self) {
        let Some((_, dur)) = self.stuck_dominant.pop_front() else {
            return;
        };
        let start = self.now;
        self.close_recessive_runs(start);
        // Nodes with a frame pending start their SOF into it: transmitters.
        let transmitters: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                !n.bus_off
                    && n.head().is_some_and(|(_, p)| {
                        self.bus_free.max(n.ready_at).max(p.submitted_ns) <= start
                    })
            })
            .map(|(i, _)| i)
            .collect();
        let bit = self.cfg.bit_ns();
        self.in_flight = Some(InFlight::StuckDominant {
            start,
            next_tick: start + 12 * bit,
            end: start + dur.max(bit),
            ticks: 0,
            transmitters,
        });
    }

    /// ISO 11898-1 fault confinement under a dominant bus: detection at the
    /// 6th bit (TEC +8 / REC +1, and REC +8 for dominant after the flag),
    /// then +8 for every node after the 14th dominant bit following the flag
    /// start and after each further 8.
    fn stuck_tick(&mut self) {
        let bit = self.cfg.bit_ns();
        let Some(InFlight::StuckDominant {
            ticks,
            transmitters,
            next_tick,
            ..
        }) = self.in_flight.clone()
        else {
            return;
        };
        for i in 0..self.nodes.len() {
            if self.nodes[i].bus_off {
                continue;
            }
            let tx = transmitters.contains(&i);
            if tx {
                self.nodes[i].stats.tx_errors += 1;
                self.bump_tec(i);
            } else if ticks == 0 {
                let active = self.nodes[i].state() == ErrorState::Active;
                self.nodes[i].stats.rx_errors += 1;
                self.bump_rec(i, if active { 9 } else { 1 });
            } else {
                self.bump_rec(i, 8);
            }
        }
        if let Some(InFlight::StuckDominant {
            ticks,
            next_tick: nt,
            ..
        }) = &mut self.in_flight
        {
            *ticks += 1;
            *nt = next_tick + 8 * bit;
        }
    }
}

/// A view of one controller: the API the host board's CAN driver PD uses.
pub struct Controller<'a> {
    bus: &'a mut CanBus,
    node: NodeId,
}

impl Controller<'_> {
    /// Queues a frame.
    pub fn submit(&mut self, frame: Frame) -> Result<TxId, BusError> {
        self.bus.submit(self.node, frame)
    }

    /// Takes the oldest received frame.
    pub fn receive(&mut self) -> Option<RxFrame> {
        self.bus.receive(self.node)
    }

    /// Takes the oldest TX completion.
    pub fn completion(&mut self) -> Option<TxCompletion> {
        self.bus.take_completion(self.node)
    }

    /// State and error counters.
    pub fn status(&self) -> Result<NodeStatus, BusError> {
        self.bus.status(self.node)
    }

    /// Starts bus-off recovery.
    pub fn request_recovery(&mut self) -> Result<(), BusError> {
        self.bus.request_recovery(self.node)
    }

    /// Cancels a pending frame.
    pub fn cancel(&mut self, tx: TxId) -> bool {
        self.bus.cancel(self.node, tx)
    }
}

/// Response-time bound of a frame under fixed-priority, non-preemptive
/// arbitration with one blocking frame: `blocking + own` where `blocking` is
/// the longest frame of the bus (a lower-priority frame that just started)
/// and `own` this frame's worst-case time. Valid when no higher-priority
/// frame competes and there are no errors.
pub fn blocking_bound_ns(cfg: &BusConfig, own: Shape) -> u64 {
    cfg.longest_frame_ns() + own.max_duration_ns(&cfg.timing)
}
