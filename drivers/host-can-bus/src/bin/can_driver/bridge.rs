//! The optional bridge to a host SocketCAN interface (resource `can0`, a
//! raw CAN socket the supervisor bound before lockdown): every frame on the
//! model's bus goes out as a classic `struct can_frame`, and frames from
//! the interface enter the bus from a node of their own. FD frames are not
//! bridged (the socket was not switched to FD mode before lockdown) and are
//! counted.

use drv_host_can_bus::bulkhead_can_frame::{CanId, Frame};
use drv_host_can_bus::{CanBus, NodeConfig, NodeId};

const EFF: u32 = 0x8000_0000;
const RTR: u32 = 0x4000_0000;
const ERR: u32 = 0x2000_0000;

/// The bridge.
pub struct Bridge {
    fd: i32,
    /// The node frames from the interface are sent from.
    pub node: NodeId,
    /// The node that receives what goes out (set by the driver).
    pub monitor: Option<NodeId>,
    /// Frames not bridged (FD, errors from the socket).
    pub skipped: u64,
}

impl Bridge {
    /// A bridge if `can0` is bound.
    pub fn open(bus: &mut CanBus) -> Option<Self> {
        let fd = bulkhead_runtime::host_resource("can0").ok()?;
        let node = bus.attach(NodeConfig::named("socketcan"));
        Some(Self {
            fd,
            node,
            monitor: None,
            skipped: 0,
        })
    }

    /// Writes `f` to the interface.
    pub fn send(&mut self, f: &Frame) {
        if f.is_fd() {
            self.skipped += 1;
            return;
        }
        let mut b = [0u8; 16];
        let mut id = f.id().raw();
        if f.id().is_extended() {
            id |= EFF;
        }
        if f.is_remote() {
            id |= RTR;
        }
        b[..4].copy_from_slice(&id.to_ne_bytes());
        b[4] = f.dlc().min(8);
        b[8..8 + f.len()].copy_from_slice(f.data());
        // SAFETY: writes 16 bytes from a local buffer to our own socket.
        if unsafe { libc::write(self.fd, b.as_ptr().cast(), b.len()) } != 16 {
            self.skipped += 1;
        }
    }

    /// Frames waiting on the interface (never blocks).
    pub fn receive(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        for _ in 0..64 {
            let mut b = [0u8; 16];
            // SAFETY: receives at most 16 bytes into a local buffer.
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
                    b.as_mut_ptr().cast(),
                    b.len(),
                    libc::MSG_DONTWAIT,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                )
            };
            if n != 16 {
                break;
            }
            let raw = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            if raw & ERR != 0 {
                self.skipped += 1;
                continue;
            }
            let id = if raw & EFF != 0 {
                CanId::extended(raw & 0x1fff_ffff)
            } else {
                CanId::standard(u16::try_from(raw & 0x7ff).unwrap_or(0))
            };
            let len = usize::from(b[4].min(8));
            let f = id.and_then(|id| {
                if raw & RTR != 0 {
                    Frame::remote(id, b[4].min(8))
                } else {
                    Frame::classic(id, &b[8..8 + len])
                }
            });
            match f {
                Ok(f) => out.push(f),
                Err(_) => self.skipped += 1,
            }
        }
        out
    }
}
