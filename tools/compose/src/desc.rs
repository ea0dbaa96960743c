//! The description format: TOML → typed [`Description`], strictly
//! (`deny_unknown_fields` everywhere) and with a span on every value that a
//! later check may need to point at.
//!
//! ```
//! let d = bulkhead_compose::desc::parse("boards = [\"host\"]\n[[guest]]\nname = \"g\"\nram = \"64M\"\n").unwrap();
//! assert_eq!(d.guest[0].ram.get_ref().0, 64 << 20);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A whole description (the top-level table).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// Name of the system, used in generated comments.
    #[serde(default)]
    pub name: Option<String>,
    /// One line for humans, copied into the generated `.system` header.
    #[serde(default)]
    pub description: Option<String>,
    /// Boards this description is composed for, in output order. `bulkhead
    /// compose` without `--board` writes every one.
    pub boards: Spanned<Vec<Spanned<String>>>,
    /// Per-board adjustments.
    #[serde(default)]
    pub per_board: BTreeMap<String, Spanned<PerBoard>>,
    /// Disk partitions the storage grants refer to.
    #[serde(default)]
    pub partition: Vec<Partition>,
    /// Ethernet link facts.
    #[serde(default)]
    pub ethernet: EthernetLink,
    /// Scheduling overrides of the implied driver and virtualiser PDs.
    #[serde(default)]
    pub services: BTreeMap<String, Spanned<ServiceSched>>,
    /// The guests, in order (the order fixes hop slots and channel ids).
    #[serde(default)]
    pub guest: Vec<Guest>,
    /// What the host board binds to the drivers (written to the host-binding
    /// file when composing for `host`).
    #[serde(default)]
    pub host: HostResources,
}

/// Adjustments for one board.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerBoard {
    /// Device classes to leave out on this board (because it lacks them):
    /// every grant of such a class is dropped there. Without this, a grant
    /// of a class the board lacks is an error.
    #[serde(default)]
    pub omit: Vec<Spanned<String>>,
}

/// One partition of the disk behind `blk_driver`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Name a storage grant uses.
    pub name: Spanned<String>,
    /// First byte on the disk (a multiple of 512).
    pub start: Spanned<Size>,
    /// Length in bytes (a multiple of 512, non-zero).
    pub size: Spanned<Size>,
}

/// Ethernet link facts shared by all guests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthernetLink {
    /// Link speed in Mbit/s (default 1000).
    #[serde(default = "default_link")]
    pub link_mbps: Spanned<u32>,
}

impl Default for EthernetLink {
    fn default() -> Self {
        EthernetLink {
            link_mbps: Spanned::new(0..0, default_link().into_inner()),
        }
    }
}

fn default_link() -> Spanned<u32> {
    Spanned::new(0..0, 1000)
}

/// Scheduling overrides of one class's driver and virtualiser.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSched {
    /// The driver PD.
    #[serde(default)]
    pub driver: Option<Sched>,
    /// The virtualiser PD.
    #[serde(default)]
    pub virt: Option<Sched>,
}

/// Priority, budget, period (µs) and core of one PD.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sched {
    /// Microkit priority 0..=254.
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    /// Budget in µs per period.
    #[serde(default)]
    pub budget: Option<Spanned<i64>>,
    /// Period in µs.
    #[serde(default)]
    pub period: Option<Spanned<i64>>,
    /// Core.
    #[serde(default)]
    pub cpu: Option<Spanned<i64>>,
}

/// One guest: a virtual machine and the VMM PD that owns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    /// Name of the VM; its VMM is `<name>_vmm`.
    pub name: Spanned<String>,
    /// Guest RAM in bytes (integer, or a string like `"128M"`, `"1G"`).
    pub ram: Spanned<Size>,
    /// Number of vCPUs (default 1).
    #[serde(default)]
    pub vcpus: Option<Spanned<i64>>,
    /// Kernel image (recorded in the VMM's configuration).
    #[serde(default)]
    pub kernel: Option<Spanned<String>>,
    /// Initial RAM disk; its size is read from the file (relative to the
    /// description) to fill in the device tree's `/chosen`.
    #[serde(default)]
    pub initrd: Option<Spanned<String>>,
    /// A device tree blob to give the guest instead of the generated one
    /// (relative to the description; copied byte for byte).
    #[serde(default)]
    pub device_tree: Option<Spanned<String>>,
    /// Kernel command line (`/chosen/bootargs`).
    #[serde(default)]
    pub bootargs: Option<String>,
    /// VM priority (default 100).
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    /// VM budget in µs (default: the period, i.e. unbudgeted).
    #[serde(default)]
    pub budget: Option<Spanned<i64>>,
    /// VM period in µs (default 10000).
    #[serde(default)]
    pub period: Option<Spanned<i64>>,
    /// First core of the VM (vCPU i runs on core cpu + i); also the VMM's.
    #[serde(default)]
    pub cpu: Option<Spanned<i64>>,
    /// Whether the guest is in the safety domain (scheduling isolation is
    /// then checked for it).
    #[serde(default)]
    pub safety: bool,
    /// The VMM PD's scheduling (default: priority of the VM + 10,
    /// 500 µs per 10 ms).
    #[serde(default)]
    pub vmm: Option<Spanned<Sched>>,
    /// Console grant.
    #[serde(default)]
    pub console: Option<Spanned<ConsoleGrant>>,
    /// Storage grant.
    #[serde(default)]
    pub storage: Option<Spanned<StorageGrant>>,
    /// CAN grant.
    #[serde(default)]
    pub can: Option<Spanned<CanGrant>>,
    /// Ethernet grant.
    #[serde(default)]
    pub ethernet: Option<Spanned<EthGrant>>,
    /// Audio grant.
    #[serde(default)]
    pub audio: Option<Spanned<AudioGrant>>,
}

/// Console access.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleGrant {
    /// Prefix of this guest's output lines (default: the guest's name).
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    /// Whether console input goes to this guest (at most one guest).
    #[serde(default)]
    pub input: Option<Spanned<bool>>,
}

/// Storage access: one partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageGrant {
    /// Name of a `[[partition]]`.
    pub partition: Spanned<String>,
    /// Read-only access (default false).
    #[serde(default)]
    pub read_only: bool,
    /// I/O budget per period.
    #[serde(default)]
    pub budget: Option<IoBudget>,
}

/// Storage I/O budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoBudget {
    /// Requests per period.
    pub ops: Spanned<i64>,
    /// Bytes per period.
    pub bytes: Spanned<Size>,
    /// Period in µs.
    pub period_us: Spanned<i64>,
}

/// CAN access.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanGrant {
    /// Board device name of the controller (default: the board's first).
    #[serde(default)]
    pub controller: Option<Spanned<String>>,
    /// Receive acceptance filters: a frame is delivered if `id & mask ==
    /// filter.id & mask` for any filter.
    #[serde(default)]
    pub rx_filters: Vec<Spanned<CanFilter>>,
    /// IDs this guest may send.
    #[serde(default)]
    pub tx_whitelist: Vec<Spanned<i64>>,
    /// Token-bucket budget.
    pub budget: CanBudget,
}

/// One acceptance filter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanFilter {
    /// Identifier.
    pub id: Spanned<i64>,
    /// Mask (1 = bit must match).
    pub mask: Spanned<i64>,
}

/// CAN transmit budget per period.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanBudget {
    /// Frames per period.
    pub frames: Spanned<i64>,
    /// Bits on the wire per period.
    pub bits: Spanned<i64>,
    /// Period in µs.
    pub period_us: Spanned<i64>,
}

/// Ethernet access.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthGrant {
    /// The guest's MAC address, `aa:bb:cc:dd:ee:ff` (unicast).
    pub mac: Spanned<String>,
    /// 802.1Q VLAN id 1..=4094 (untagged when absent).
    #[serde(default)]
    pub vlan: Option<Spanned<i64>>,
    /// 802.1p priority code point 0..=7 enforced on its frames (default 0).
    #[serde(default)]
    pub pcp: Option<Spanned<i64>>,
    /// Reserved bandwidth (credit-based shaper), Mbit/s.
    #[serde(default)]
    pub reserved_mbps: Option<Spanned<i64>>,
}

/// Audio access.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioGrant {
    /// `safety` (preempts), `media` (ducked) or `background`.
    pub priority_class: Spanned<String>,
    /// The guest's streams.
    pub streams: Vec<Spanned<Stream>>,
}

/// One audio stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// Name (at most 15 bytes).
    pub name: Spanned<String>,
    /// `playback` or `capture`.
    pub direction: Spanned<String>,
    /// Channels 1..=8.
    pub channels: Spanned<i64>,
    /// Sample rate in Hz.
    pub rate: Spanned<i64>,
}

/// Host resources for the host board's binding file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostResources {
    /// Disk image for `blk_driver` (relative to the `.system` file).
    #[serde(default)]
    pub disk: Option<String>,
    /// TAP interface for `eth_driver`.
    #[serde(default)]
    pub tap: Option<String>,
    /// SocketCAN interface for `can_driver`.
    #[serde(default)]
    pub can: Option<String>,
    /// Extra program search directories (relative to the `.system` file).
    #[serde(default)]
    pub search_path: Vec<String>,
    /// Test-guest program per guest name.
    #[serde(default)]
    pub guest_program: BTreeMap<String, String>,
    /// Host program per PD name (relative to the `.system` file); PDs not
    /// listed run the program named after the PD, found on the search path.
    #[serde(default)]
    pub programs: BTreeMap<String, String>,
}

/// A byte count: an integer, or a string with a binary suffix (`"64K"`,
/// `"128M"`, `"1G"`, also `"128 MiB"`) or in hex (`"0x800_0000"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a non-negative integer or a string like \"128M\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).ok_or_else(|| {
                    E::custom(format!(
                        "`{v}` is not a size (write e.g. 4096, \"64K\", \"128M\", \"1G\" or \"0x1000\")"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `"128M"`, `"128 MiB"`, `"1G"`, `"0x800_0000"` or `"4096"`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    if let Some(hex) = s.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok();
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Parses description text; the error is the toml crate's, with a span.
pub fn parse(src: &str) -> Result<Description, toml::de::Error> {
    toml::from_str(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128M"), Some(128 << 20));
        assert_eq!(parse_size("128 MiB"), Some(128 << 20));
        assert_eq!(parse_size("0x800_0000"), Some(0x800_0000));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }
}
